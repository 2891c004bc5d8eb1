"""nstat counters as the kernel moves them (CT-1..CT-9, docs/linux-rules.md "CT: counters").

Each expected set of counter deltas below was measured on 6.18.44 with
``timewait script --kernel --json`` on the same corpus script (2026-12-03). Counters the engine
does not model (``script.cli.NOT_MODELLED``: TCPHPHits, TCPHPAcks, TCPRcvCoalesce,
TCPDSACKOldSent) are left out of the kernel's figures. The kernel half of
``tests/test_script.py`` compares every corpus script's counters on both stacks.
"""

from __future__ import annotations

from pathlib import Path

from conftest import ls, make_tcb, rs
from timewait.script.cli import NOT_MODELLED
from timewait.script.engine import Verdict, play
from timewait.script.parse import parse_text
from timewait.script.sim_runner import SimStack
from timewait.tcp.config import MS, SEC
from timewait.tcp.segment import ACK, PSH

SCRIPTS = Path(__file__).parent / "scripts"


def run(name: str) -> Verdict:
    path = next(SCRIPTS.glob(name + "*.pkt"))
    v = play(parse_text(path.read_text(), str(path)), SimStack())
    assert v.passed, v.summary()
    return v


def test_CT_1_passive_open_counted_when_the_handshake_completes():
    """tcp_create_openreq_child counts TcpPassiveOpens. The kernel counted none for a request
    that got a SYN-ACK and no ACK (ls-2-ls-3), and one for a completed handshake."""
    assert "TcpPassiveOpens" not in run("ls-2-ls-3-").counters
    assert run("ct-5-ct-7-ct-8-passive").counters["TcpPassiveOpens"] == 1


def test_CT_2_syn_in_established_counts_in_errs():
    """la-1: one SYN in ESTABLISHED; la-2: three, two of them rate limited. Each counts
    TcpInErrs beside TCPSYNChallenge (syn_inerr from tcp_rcv_established)."""
    c1 = run("la-1-").counters
    assert (c1["TcpInErrs"], c1["TcpExtTCPSYNChallenge"]) == (1, 1)
    c2 = run("la-2-").counters
    assert (c2["TcpInErrs"], c2["TcpExtTCPSYNChallenge"]) == (3, 3)


def test_CT_2_syn_outside_established_counts_no_in_errs():
    """tcp_rcv_state_process passes syn_inerr = 0: a SYN in CLOSE_WAIT is challenged, and
    TcpInErrs does not move."""
    t = make_tcb("CLOSE_WAIT", ts=False)
    t.send(t.seg(0x02, rs(5), 0), at=SEC)  # SYN
    assert t.counters["TcpExtTCPSYNChallenge"] == 1
    assert t.counters["TcpInErrs"] == 0


def test_CT_3_every_rto_counts_timeouts_and_rehash_until_the_give_up():
    """la-4: the orphan's FIN is retransmitted once, and the next expiry gives up. The kernel
    counted TCPTimeouts 2 and TcpTimeoutRehash 1 (tcp_write_timeout rehashes only when it does
    not give up)."""
    c = run("la-4-").counters
    assert (c["TcpExtTCPTimeouts"], c["TcpExtTcpTimeoutRehash"]) == (2, 1)
    assert c["TcpRetransSegs"] == 1 and c["TcpExtTCPAbortOnTimeout"] == 1


def test_CT_3_data_rtos_count_lost_retransmit_from_the_second_on():
    """Three RTOs of a data segment. Each counts TCPTimeouts and TcpTimeoutRehash. The second
    and third find the head already retransmitted (tcp_mark_skb_lost): TCPLostRetransmit 2."""
    t = make_tcb("ESTABLISHED", ts=False)
    t.conn.send(b"x" * 100, 0)
    t.drain()
    for _ in range(3):
        at = t.conn.poll_at()
        assert [s.payload for s in t.tick(at)] == [b"x" * 100]
    c = t.counters
    assert (c["TcpExtTCPTimeouts"], c["TcpExtTcpTimeoutRehash"], c["TcpExtTCPLostRetransmit"]) == (3, 3, 2)


def test_CT_4_reset_close_counts_estab_resets():
    """SO_LINGER {1, 0} (linger-zero-rst) and unread data (cl-1) reset from ESTABLISHED:
    tcp_set_state counts TcpEstabResets 1 for each (the kernel did)."""
    assert run("linger-zero-rst").counters["TcpEstabResets"] == 1
    assert run("cl-1-").counters["TcpEstabResets"] == 1


def test_CT_4_rto_give_up_from_established_counts_estab_resets():
    """An RTO give-up ends the connection with tcp_write_err -> tcp_done: TCP_CLOSE from
    ESTABLISHED, so TcpEstabResets counts too."""
    t = make_tcb("ESTABLISHED", ts=False)
    t.conn.send(b"x" * 100, 0)
    t.drain()
    while t.conn.state_name != "CLOSED":
        t.tick(t.conn.poll_at())
    assert t.counters["TcpEstabResets"] == 1
    assert t.counters["TcpExtTCPAbortOnTimeout"] == 1


# Kernel deltas of the handshake + data + close scripts, NOT_MODELLED left out.
KERNEL = {
    "ct-5-ct-7-ct-8-active": {
        "TcpActiveOpens": 1, "TcpInSegs": 6, "TcpOutSegs": 7, "TcpExtTW": 1, "TcpExtTCPHPHits": 1,
        "TcpExtTCPPureAcks": 2, "TcpExtTCPOrigDataSent": 2, "TcpExtTCPDelivered": 3},
    "ct-5-ct-7-ct-8-passive": {
        "TcpPassiveOpens": 1, "TcpInSegs": 7, "TcpOutSegs": 6, "TcpExtDelayedACKs": 1,
        "TcpExtTCPPureAcks": 2, "TcpExtTCPHPAcks": 1, "TcpExtTCPOrigDataSent": 2, "TcpExtTCPDelivered": 2},
    "active-open-nonblocking-close": {
        "TcpExtTCPDelivered": 3, "TcpExtTCPOrigDataSent": 2, "TcpExtTCPPureAcks": 1},
    "close-passive-last-ack": {
        "TcpExtTCPDelivered": 1, "TcpExtTCPOrigDataSent": 1, "TcpExtTCPPureAcks": 2},
}


def test_CT_5_CT_7_CT_8_handshake_data_and_close_each_way():
    """Every counter the kernel moved, with its exact delta, moves the same in the simulator."""
    for name in ("ct-5-ct-7-ct-8-active", "ct-5-ct-7-ct-8-passive"):
        want = {k: v for k, v in KERNEL[name].items() if k not in NOT_MODELLED}
        assert run(name).counters == want, name
    for name in ("active-open-nonblocking-close", "close-passive-last-ack"):
        got = run(name).counters
        assert {k: got.get(k, 0) for k in KERNEL[name]} == KERNEL[name], name


def test_CT_6_a_pure_ack_on_the_fast_path_is_not_a_pure_ack():
    """ESTABLISHED with the fast path on (passive open, the handshake's window predicted): an
    ACK advancing snd_una at rcv_nxt with the predicted window is TCPHPAcks (not modelled), not
    TCPPureAcks. A duplicate ACK is TCPPureAcks even on the fast path (tcp_ack: not after
    snd_una). One with another window takes the slow path: TCPPureAcks."""
    t = make_tcb("ESTABLISHED", ts=False)
    conn = t.conn
    conn.hp_win = conn.snd_wnd >> conn.snd_wscale  # as tcp_rcv_state_process leaves it
    win = conn.hp_win
    conn.send(b"x" * 100, 0)
    t.drain()
    t.send(t.seg(ACK, rs(1), ls(101), win=win), at=10 * MS)
    assert t.env.pure_acks == 0 and t.env.delivered == 1
    t.send(t.seg(ACK, rs(1), ls(101), win=win), at=20 * MS)
    assert t.env.pure_acks == 1
    conn.send(b"y" * 100, 30 * MS)
    t.drain()
    t.send(t.seg(ACK | PSH, rs(1), ls(201), win=win + 1), at=40 * MS)
    assert t.env.pure_acks == 2 and t.env.orig_data_sent == 2 and t.env.delivered == 2


def test_CT_9_takeover_syn_offers_65160():
    """tcp_connect_init: the socket took ts_recent_stamp over from the TIME_WAIT record, so its
    SYN offers the window for the MSS less the timestamp option. Both scripts check `win`."""
    for name in ("ps-1-ps-6-", "ps-5-"):
        syns = [o.text for o in run(name).seen if o.text.startswith("> S ")]
        assert [s.split(" win ")[1].split()[0] for s in syns] == ["64240", "65160"], name
