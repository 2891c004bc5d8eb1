"""Closing a listener (LS-1..LS-4): its children do not outlive it.

Two hosts, one-way delay 0.5 ms; c2 listens on :8888 and never calls accept(). Expectations
are exact packets ``(time_us, host, flags, seq, ack, len)`` and state changes. What the
kernel did (loopback, 6.18.44, plain sockets): a client connected, the listener was closed
before accept(); the child sent RST+ACK (seq = snd_nxt, ack = rcv_nxt), the client's recv()
failed with ECONNRESET, nstat moved TcpEstabResets by 2 (child and client) and TcpOutRsts by
1 and no TcpExtTCPAbortOn* counter, with or without unread data; bind() to the port then
succeeded.
"""

from __future__ import annotations

import pytest

from conftest import C2, make_lan, states, tx
from timewait.sim.host import SocketError
from timewait.tcp.config import MS, SEC

D = 500


def setup(*, lose_final_ack: bool = False, close_at: int = SEC):
    sim, c1, c2 = make_lan()
    lsock = c2.socket()
    lsock.bind(0, 8888)
    lsock.listen()
    if lose_final_ack:
        sim.fault("drop from=c1 flags=. nth=1")
    s = c1.socket()
    s.connect(C2, 8888)
    errors: list[tuple[int, str]] = []
    s.on_error = lambda _s, e: errors.append((sim.sched.now, e))
    c2.call_at(close_at, lsock.close)
    return sim, c1, c2, s, errors


def isn(sim, host: str) -> int:
    return next(p[3] for p in tx(sim, host) if "S" in p[2])


def bind_result(c2, port: int = 8888) -> str:
    try:
        c2.socket().bind(0, port)
    except SocketError as e:
        return e.errno_name
    return "ok"


@pytest.mark.parametrize("data", [0, 5])
def test_LS_1_unaccepted_established_child_is_reset(data):
    """The child is ESTABLISHED (with ``data`` unread bytes) when the listener closes at 1 s:
    RST+ACK at snd_nxt/rcv_nxt, the client gets ECONNRESET, both count TcpEstabResets, no
    TCPAbortOn* counter moves, and the port binds again at once."""
    sim, c1, c2, s, errors = setup()
    if data:
        c1.call_at(10 * MS, lambda: s.send(b"x" * data))
    results: list[str] = []
    c2.call_at(SEC + 1, lambda: results.append(bind_result(c2)))
    sim.run(10)
    i, j = isn(sim, "c1"), isn(sim, "c2")
    assert [p for p in tx(sim) if p[0] >= SEC] == [(SEC, "c2", "R.", j + 1, i + 1 + data, 0)]
    assert errors == [(SEC + D, "ECONNRESET")]
    assert [(t, h, old, new) for t, h, old, new in states(sim) if t >= SEC] == [
        (SEC, "c2", "ESTABLISHED", "CLOSED"), (SEC + D, "c1", "ESTABLISHED", "CLOSED")]
    assert c2.counters["TcpEstabResets"] == 1 and c1.counters["TcpEstabResets"] == 1
    assert c2.counters["TcpOutRsts"] == 1
    assert not [k for k in c2.counters if k.startswith("TcpExtTCPAbortOn")]
    assert results == ["ok"] and c2.states() == {}


def test_LS_1_unaccepted_close_wait_child_is_reset():
    """The client closed first (its FIN made the child CLOSE_WAIT): the listener's close
    resets the child, and the RST ends the client's FIN_WAIT_2 record (TW-F2)."""
    sim, c1, c2, s, errors = setup()
    c1.call_at(10 * MS, s.close)
    sim.run(10)
    i, j = isn(sim, "c1"), isn(sim, "c2")
    assert [p for p in tx(sim) if p[0] >= 10 * MS] == [
        (10 * MS, "c1", "F.", i + 1, j + 1, 0),
        # DA-3/DA-4: the child delays the ACK of the bare FIN (at 10.5 ms) to the next tick
        (12 * MS, "c2", ".", j + 1, i + 2, 0),
        (SEC, "c2", "R.", j + 1, i + 2, 0),
    ]
    assert c2.counters["TcpEstabResets"] == 1
    assert c1.states() == {} and not c1.twhash and c2.states() == {}


def test_LS_2_LS_4_request_of_a_closed_listener_is_dropped_at_its_timer():
    """The handshake's last ACK is lost, so the child is still SYN_RECEIVED when the
    listener closes at 100 ms. The port binds again at once (a request holds no share of the
    port); at the SYN-ACK timer (1 s after the SYN-ACK) the request is dropped without a
    resend (reqsk_timer_handler); nothing else is ever sent."""
    sim, c1, c2, s, errors = setup(lose_final_ack=True, close_at=100 * MS)
    results: list[str] = []
    c2.call_at(100 * MS + 1, lambda: results.append(bind_result(c2)))
    sim.run(30)
    assert [p[:3] for p in tx(sim)] == [(0, "c1", "S"), (D, "c2", "S."), (2 * D, "c1", ".")]
    assert [(t, h, old, new) for t, h, old, new in states(sim, "c2")] == [
        (D, "c2", "CLOSED", "SYN_RECEIVED"), (SEC + D, "c2", "SYN_RECEIVED", "CLOSED")]
    assert results == ["ok"]
    assert c2.states() == {} and "TcpExtTCPSynRetrans" not in c2.counters and "TcpRetransSegs" not in c2.counters


def test_LS_3_segment_for_a_request_of_a_closed_listener_gets_a_reset():
    """As LS-2, but the client (ESTABLISHED on its side) sends data at 0.5 s, before the
    request's timer: tcp_v4_rcv drops the request, finds no socket on the second lookup and
    answers with tcp_v4_send_reset (RST, seq = the segment's ack); the client: ECONNRESET."""
    sim, c1, c2, s, errors = setup(lose_final_ack=True, close_at=100 * MS)
    c1.call_at(500 * MS, lambda: s.send(b"hello"))
    sim.run(30)
    i, j = isn(sim, "c1"), isn(sim, "c2")
    assert [p for p in tx(sim) if p[0] >= 100 * MS] == [
        (500 * MS, "c1", "P.", i + 1, j + 1, 5),
        (500 * MS + D, "c2", "R", j + 1, 0, 0),
    ]
    assert [(t, h, old, new) for t, h, old, new in states(sim) if t >= 100 * MS] == [
        (500 * MS + D, "c2", "SYN_RECEIVED", "CLOSED"), (500 * MS + 2 * D, "c1", "ESTABLISHED", "CLOSED")]
    assert errors == [(500 * MS + 2 * D, "ECONNRESET")]
    assert c1.states() == {} and c2.states() == {}


def test_LS_3_LS_4_a_new_listener_takes_the_port_and_the_old_request_s_ack_is_reset():
    """A new listener binds :8888 right after the old one closed (100 ms); the old request's
    late ACK (the client's data at 0.5 s) finds the new listener on the second lookup, which
    answers an ACK that opens nothing with an RST; the new listener then serves a new client."""
    sim, c1, c2, s, errors = setup(lose_final_ack=True, close_at=100 * MS)
    accepted: list[object] = []

    def relisten() -> None:
        ls2 = c2.socket()
        ls2.bind(0, 8888)
        ls2.listen()
        ls2.on_accept = lambda l_: accepted.append(l_.accept())

    c2.call_at(100 * MS + 1, relisten)
    c1.call_at(500 * MS, lambda: s.send(b"hello"))
    s2 = c1.socket()
    c1.call_at(2 * SEC, lambda: s2.connect(C2, 8888))
    sim.run(5)
    i, j = isn(sim, "c1"), isn(sim, "c2")
    assert [p for p in tx(sim) if 100 * MS <= p[0] < 2 * SEC] == [
        (500 * MS, "c1", "P.", i + 1, j + 1, 5),
        (500 * MS + D, "c2", "R", j + 1, 0, 0),
    ]
    assert errors == [(500 * MS + 2 * D, "ECONNRESET")]
    assert len(accepted) == 1 and s2.state == "ESTABLISHED"
