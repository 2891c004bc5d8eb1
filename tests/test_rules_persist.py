"""The persist timer (PR-1..PR-6): a zero window is probed, not waited on forever.

Host-level tests run two hosts (one-way delay 0.5 ms); c2's receive buffer is 4096 bytes,
so it offers a 2048-byte window and closes it when 2048 unread bytes sit in its queue. RTO
is 201 ms (RTT 1 ms + TCP_RTO_MIN). Expectations are exact packets
``(time_us, host, flags, seq, ack, len)``. The kernel run that fixed the shape (loopback,
6.18.44): probes at +RTO, then at 2, 4, 8 ... x RTO after the answer that re-armed the timer;
the answer to the second probe is suppressed by tcp_invalid_ratelimit (TCPACKSkippedSeq).
"""

from __future__ import annotations

from conftest import C2, LOCAL_WIN, REMOTE_TS, RTO, ls, make_lan, make_tcb, rs, states, tx
from timewait.sim.host import Socket
from timewait.tcp.config import MS, SEC
from timewait.tcp.segment import ACK, PSH

D = 500  # one-way delay, µs
R = 201 * MS  # the RTO both hosts reach on this link


def zero_window_pair(*, data: int = 5000, send_at: int = 10 * MS):
    """c2 accepts and never reads unless told; c1 writes ``data`` bytes at ``send_at``."""
    sim, c1, c2 = make_lan()
    c2.cfg.rcv_buf = 4096
    accepted: list[Socket] = []
    lsock = c2.socket()
    lsock.bind(0, 8888)
    lsock.listen()
    lsock.on_accept = lambda ls_: accepted.append(ls_.accept())  # type: ignore[arg-type]
    s = c1.socket()
    s.connect(C2, 8888)
    errors: list[tuple[int, str]] = []
    s.on_error = lambda _s, e: errors.append((sim.sched.now, e))
    c1.call_at(send_at, lambda: s.send(b"x" * data))
    return sim, c1, c2, s, accepted, errors


def c1_tx(sim, since: int = 0):
    return [p for p in tx(sim, "c1") if p[0] >= since]


def isn(sim, host: str) -> int:
    return next(p[3] for p in tx(sim, host) if "S" in p[2])


# ---------------------------------------------------------------- the core alone


def test_PR_1_PR_2_PR_3_core_probe_is_ack_at_snd_una_minus_1_and_backs_off():
    """A connection whose peer offers a zero window: send() sends nothing and arms the persist
    timer for RTO (tcp_check_probe_timer); each expiry sends an ACK with seq = snd_una - 1 and
    no data (tcp_xmit_probe_skb) and doubles the wait (tcp_probe0_when); the peer's answer
    re-arms it from the answer; a window in the answer sends the data and the RTO takes over."""
    t = make_tcb("ESTABLISHED")
    c = t.conn
    c.snd_wnd = 0
    c.send(b"d" * 100, 0)
    assert t.drain() == [] and c.poll_at() == RTO and c.timer_name() == "persist"
    probe = t.out(ACK, ls(0), rs(1), win=LOCAL_WIN, ts=(200, REMOTE_TS))
    assert t.tick(RTO) == [probe]
    assert c.poll_at() == RTO + 2 * RTO and t.counters["TcpExtTCPWinProbe"] == 1
    # No answer: the next probe after 2 x RTO, then the wait is 4 x RTO.
    assert t.tick(3 * RTO) == [t.out(ACK, ls(0), rs(1), win=LOCAL_WIN, ts=(600, REMOTE_TS))]
    assert c.poll_at() == 3 * RTO + 4 * RTO
    # The answer (still zero) re-arms from its arrival with the same backoff (8 x RTO: backoff 2 -> 4 x RTO).
    at = 3 * RTO + 1 * MS
    assert t.send(t.seg(ACK, rs(1), ls(1), win=0), at=at) == []
    assert c.poll_at() == at + 4 * RTO and c.probes == 0
    # A window opens: the data goes at once, under the RTO.
    at2 = at + 5 * MS
    assert t.send(t.seg(ACK, rs(1), ls(1)), at=at2) == [
        t.out(ACK | PSH, ls(1), rs(1), b"d" * 100, win=LOCAL_WIN, ts=(at2 // MS, REMOTE_TS))]
    assert c.poll_at() == at2 + RTO and c.timer_name() == "rto" and c.backoff == 0


def test_PR_2_backoff_is_capped_at_tcp_rto_max():
    t = make_tcb("ESTABLISHED")
    c = t.conn
    c.snd_wnd = 0
    c.send(b"d", 0)
    sent = t.run_timers(1000 * SEC)
    times = [at for at, _ in sent]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[:10] == [RTO << k for k in range(1, 10)] + [120 * SEC]
    assert set(gaps[10:]) == {120 * SEC}


# ---------------------------------------------------------------- two hosts


def test_PR_1_PR_2_PR_3_PR_6_probes_until_the_reader_frees_space():
    """c1 writes 5000 bytes into c2's 2048-byte window. The ACK closing it reaches c1 at
    11 ms: probes at 212 ms (+RTO), 615 ms (+2 RTO after the answer at 213 ms), 1419 ms (the
    615 ms probe went unanswered: c2's answer fell under its 500 ms out-of-window ACK limit,
    so +4 RTO from the probe), 3028 ms (+8 RTO after the answer). At 5 s c2 reads: the window
    goes from 0 to 2048, so c2 sends a window update (tcp_cleanup_rbuf) and c1 sends at once."""
    sim, c1, c2, s, acc, errors = zero_window_pair()
    c2.call_at(5 * SEC, lambda: acc[0].recv())
    sim.run(5.1)
    i, j = isn(sim, "c1"), isn(sim, "c2")
    una = i + 1 + 2048
    assert c1_tx(sim, since=10 * MS) == [
        (10 * MS, "c1", ".", i + 1, j + 1, 1460),
        (10 * MS, "c1", ".", i + 1461, j + 1, 588),
        (212 * MS, "c1", ".", una - 1, j + 1, 0),
        (615 * MS, "c1", ".", una - 1, j + 1, 0),
        (1419 * MS, "c1", ".", una - 1, j + 1, 0),
        (3028 * MS, "c1", ".", una - 1, j + 1, 0),
        (5 * SEC + D, "c1", ".", una, j + 1, 1460),
        (5 * SEC + D, "c1", ".", una + 1460, j + 1, 588),
    ]
    assert [p for p in tx(sim, "c2") if p[0] >= 10 * MS and p[0] < 5 * SEC + 2 * D] == [
        (10 * MS + D, "c2", ".", j + 1, i + 1461, 0),
        (10 * MS + D, "c2", ".", j + 1, una, 0),
        (212 * MS + D, "c2", ".", j + 1, una, 0),
        (1419 * MS + D, "c2", ".", j + 1, una, 0),
        (3028 * MS + D, "c2", ".", j + 1, una, 0),
        (5 * SEC, "c2", ".", j + 1, una, 0),          # the window update
    ]
    assert c1.counters["TcpExtTCPWinProbe"] == 4 and c2.counters["TcpExtTCPACKSkippedSeq"] == 1
    assert errors == [] and s.state == "ESTABLISHED"


def test_PR_6_no_window_update_when_the_window_never_fell_to_half():
    """1000 bytes into a 65536-byte window, read a second later: nothing is sent on the read."""
    sim, c1, c2 = make_lan()
    acc: list[Socket] = []
    lsock = c2.socket()
    lsock.bind(0, 8888)
    lsock.listen()
    lsock.on_accept = lambda l_: acc.append(l_.accept())  # type: ignore[arg-type]
    s = c1.socket()
    s.connect(C2, 8888)
    c1.call_at(10 * MS, lambda: s.send(b"x" * 1000))
    c2.call_at(SEC, lambda: acc[0].recv())
    sim.run(2)
    assert [p for p in tx(sim, "c2") if p[0] > 20 * MS] == []


def test_PR_4_orphan_gives_up_once_rto_backoff_reaches_rto_max():
    """c1 closes at 20 ms with data queued behind the zero window (FIN_WAIT_1, orphan). The
    reader never reads but answers every probe, so unanswered probes never pile up; the
    orphan rule ends it: at the expiry where RTO << backoff (201 ms << 10) reaches 120 s the
    socket is not "alive", tcp_orphan_retries 0 gives a budget of 0, and it is destroyed
    without an RST (ETIMEDOUT, TCPAbortOnTimeout) at 205.643 + 120 s; the port is free."""
    sim, c1, c2, s, acc, errors = zero_window_pair()
    c1.call_at(20 * MS, s.close)
    sim.run(400)
    i, j = isn(sim, "c1"), isn(sim, "c2")
    una = i + 1 + 2048
    probes = [212, 615, 1419, 3028, 6245, 12678, 25543, 51272, 102729, 205642]
    assert c1_tx(sim, since=20 * MS) == [(t * MS, "c1", ".", una - 1, j + 1, 0) for t in probes]
    end = 205643 * MS + 120 * SEC
    assert [(t, old, new) for t, h, old, new in states(sim, "c1") if t > SEC] == [(end, "FIN_WAIT_1", "CLOSED")]
    assert c1.counters["TcpExtTCPAbortOnTimeout"] == 1 and "TcpOutRsts" not in c1.counters
    assert c1.states() == {} and not c1.ports.buckets and c1.orphans == 0


def test_PR_4_owner_gives_up_after_tcp_retries2_unanswered_probes():
    """From 1 s on nothing c2 sends arrives. Probe 1 was answered; probes 2..16 are not:
    probes_out reaches tcp_retries2 = 15 and the next expiry (the wait capped at 120 s)
    errors the socket: ETIMEDOUT at 925.635 + 120 s, no RST."""
    sim, c1, c2, s, acc, errors = zero_window_pair()
    sim.at(1.0, lambda: sim.fault("drop from=c2 count=all"))
    sim.run(1200)
    probes = [t for t, h, f, seq, ack, n in c1_tx(sim, since=20 * MS)]
    assert len(probes) == 16 and probes[9] == 205635 * MS
    assert [b - a for a, b in zip(probes[9:], probes[10:], strict=False)] == [120 * SEC] * 6
    end = probes[-1] + 120 * SEC
    assert errors == [(end, "ETIMEDOUT")]
    assert [(t, old, new) for t, h, old, new in states(sim, "c1") if t > SEC] == [(end, "ESTABLISHED", "CLOSED")]
    assert c1.counters["TcpExtTCPAbortOnTimeout"] == 1 and "TcpOutRsts" not in c1.counters


def test_PR_5_fin_waits_for_the_window_then_the_close_completes():
    """c1 fills the window exactly (2048 bytes) and closes at 20 ms: the FIN needs a sequence
    number inside the window (tcp_snd_wnd_test) and waits; the persist timer probes; c2
    reads at 1 s, its window update lets the FIN go, c2 closes on EOF and c1 ends in
    TIME_WAIT. (Before, the FIN went into the zero window at once.)"""
    sim, c1, c2, s, acc, errors = zero_window_pair(data=2048)

    def read_and_close() -> None:
        acc[0].recv()
        acc[0].on_eof = lambda x: x.close()

    c1.call_at(20 * MS, s.close)
    c2.call_at(SEC, read_and_close)
    sim.run(70)
    i, j = isn(sim, "c1"), isn(sim, "c2")
    una = i + 1 + 2048
    # The window closed with nothing left to send: the timer starts with the FIN, at 20 ms.
    assert c1_tx(sim, since=20 * MS) == [
        (221 * MS, "c1", ".", una - 1, j + 1, 0),
        (624 * MS, "c1", ".", una - 1, j + 1, 0),
        (SEC + D, "c1", "F.", una, j + 1, 0),
        (SEC + 3 * D, "c1", ".", una + 1, j + 2, 0),
    ]
    assert [(t, old, new) for t, h, old, new in states(sim, "c1") if t > 20 * MS] == [
        (SEC + 3 * D, "FIN_WAIT_1", "FIN_WAIT_2"), (SEC + 3 * D, "FIN_WAIT_2", "TIME_WAIT"),
        (61 * SEC + 3 * D, "TIME_WAIT", "CLOSED")]
    assert c1.states() == {} and c2.states() == {"LISTEN": 1}
