"""Opening a connection: handshakes, SYN retransmission (SYN-1), SYN_SENT answers (LA-3, TS-6),
simultaneous open. Exact segments and times (µs)."""

from __future__ import annotations

import pytest

from conftest import (
    LOCAL_ADDR,
    LOCAL_PORT,
    LOCAL_SEQ,
    LOCAL_WIN,
    MSS,
    REMOTE_ADDR,
    REMOTE_PORT,
    REMOTE_SEQ,
    REMOTE_TS,
    WSCALE,
    FakeEnv,
    Tcb,
    ls,
    make_tcb,
    rs,
)
from timewait.tcp.config import MS, SEC
from timewait.tcp.connection import Connection
from timewait.tcp.segment import ACK, PSH, RST, SYN
from timewait.tcp.states import NAMES


def _syn_ack(t, *, at_ms: int = 1, **kw):
    opts = {"mss": MSS, "wscale": WSCALE, "sack_ok": True, "ts": (REMOTE_TS, at_ms - 1)}
    opts.update(kw)
    return t.seg(SYN | ACK, REMOTE_SEQ, ls(1), win=65160, **opts)


def test_active_open_sends_linux_syn():
    env = FakeEnv()
    conn = Connection(env, LOCAL_ADDR, LOCAL_PORT, REMOTE_ADDR, REMOTE_PORT)
    conn.open_active(5 * MS, LOCAL_SEQ, 0)
    t = Tcb(conn, env)
    assert t.drain() == [t.out(SYN, LOCAL_SEQ, 0, win=64240, mss=MSS, wscale=WSCALE, sack_ok=True, ts=(5, 0))]
    assert t.state == "SYN_SENT"
    assert conn.poll_at() == 5 * MS + SEC  # TCP_TIMEOUT_INIT
    assert env.counters["TcpActiveOpens"] == 1


def test_handshake_syn_ack_gives_established_and_third_ack():
    t = make_tcb("SYN_SENT")
    out = t.send(_syn_ack(t), at=1 * MS)
    assert out == [t.out(ACK, ls(1), rs(1), ts=(1, REMOTE_TS))]
    assert t.state == "ESTABLISHED"
    assert t.conn.poll_at() == 0


def test_fixtures_match_the_states_the_api_reaches():
    """The direct-state fixtures agree with what the state machine itself produces."""
    fields = ("state", "iss", "irs", "snd_una", "snd_nxt", "rcv_nxt", "snd_wscale", "rcv_wscale",
              "ts_ok", "ts_recent", "snd_mss", "sack_ok", "fin_sent")
    a = make_tcb("SYN_SENT")
    a.send(_syn_ack(a), at=1 * MS)

    def same(t, state):
        ref = make_tcb(state)
        return {f: getattr(t.conn, f) for f in fields} == {f: getattr(ref.conn, f) for f in fields}

    assert same(a, "ESTABLISHED")
    a.conn.close(2 * MS)
    a.drain()
    assert same(a, "FIN_WAIT_1")
    a.send(a.seg(ACK, rs(1), ls(2), ts=(REMOTE_TS, 2)), at=3 * MS)
    assert same(a, "FIN_WAIT_2")

    b = make_tcb("SYN_SENT")
    b.send(_syn_ack(b), at=1 * MS)
    b.send(b.seg(ACK | 0x01, rs(1), ls(1), ts=(REMOTE_TS, 1)), at=2 * MS)  # peer FIN
    assert same(b, "CLOSE_WAIT")
    b.conn.close(3 * MS)
    b.drain()
    assert same(b, "LAST_ACK")


def test_passive_open_answers_syn_ack_then_ack_establishes():
    t = make_tcb("SYN_RECEIVED")
    assert t.state == "SYN_RECEIVED"
    assert t.conn.poll_at() == SEC
    out = t.send(t.seg(ACK, rs(1), ls(1), ts=(REMOTE_TS + 1, 0)), at=2 * MS)
    assert out == []
    assert t.state == "ESTABLISHED"
    assert t.counters["TcpPassiveOpens"] == 1


def test_syn_received_retransmitted_syn_gets_syn_ack_again():
    t = make_tcb("SYN_RECEIVED")
    syn = t.seg(SYN, REMOTE_SEQ, 0, win=64240, ts=(REMOTE_TS, 0), mss=MSS, wscale=WSCALE, sack_ok=True)
    out = t.send(syn, at=3 * MS)
    assert out == [t.out(SYN | ACK, LOCAL_SEQ, rs(1), win=65160, mss=MSS, wscale=WSCALE, sack_ok=True,
                         ts=(3, REMOTE_TS))]
    assert t.state == "SYN_RECEIVED"


def test_syn_received_unacceptable_ack_gets_rst_seq_eq_ack():
    """tcp_check_req: an ACK outside (snd_una, snd_nxt] -> tcp_v4_send_reset: RST, seq = SEG.ACK, no options."""
    t = make_tcb("SYN_RECEIVED")
    out = t.send(t.seg(ACK, rs(1), ls(500), ts=(REMOTE_TS, 0)), at=2 * MS)
    assert out == [t.out(RST, ls(500), 0, win=0)]
    assert t.state == "SYN_RECEIVED"


def test_synack_retransmission_1_2_4_8_16_then_give_up():
    """SYN-1: the passive SYN-ACK schedule is not linear: 1, 2, 4, 8, 16 s (tcp_synack_retries=5)."""
    t = make_tcb("SYN_RECEIVED")
    sent = t.run_timers(63 * SEC - 1)
    assert [at for at, _ in sent] == [s * SEC for s in (1, 3, 7, 15, 31)]
    assert all(s.flags == SYN | ACK and s.seq == LOCAL_SEQ for _, s in sent)
    assert t.state == "SYN_RECEIVED"
    t.run_timers(63 * SEC)
    assert t.state == "CLOSED"


def test_SYN_1_schedule_0_1_2_3_4_5_7_11_19_35_67_etimedout_131():
    t = make_tcb("SYN_SENT")
    sent = t.run_timers(300 * SEC)
    assert [at // SEC for at, _ in sent] == [1, 2, 3, 4, 5, 7, 11, 19, 35, 67]
    assert [at % SEC for at, _ in sent] == [0] * 10
    assert all(s == t.out(SYN, LOCAL_SEQ, 0, win=64240, mss=MSS, wscale=WSCALE, sack_ok=True, ts=(at // MS, 0))
               for at, s in sent)
    assert t.state == "CLOSED"
    assert t.conn.err == "ETIMEDOUT"
    assert t.counters["TcpExtTCPAbortOnTimeout"] == 1
    # The give-up happened at the timer firing at 131 s.
    t2 = make_tcb("SYN_SENT")
    t2.run_timers(131 * SEC - 1)
    assert t2.state == "SYN_SENT"
    t2.run_timers(131 * SEC)
    assert t2.state == "CLOSED"


@pytest.mark.parametrize(
    ("syn_retries", "times", "gone"),
    [(2, [1, 2, 3, 4, 5], 7), (3, [1, 2, 3, 4, 5, 7, 11], 19)],  # [obs] TCP_SYNCNT=2 / =3
)
def test_SYN_1_syn_retries_observed(syn_retries, times, gone):
    t = make_tcb("SYN_SENT", syn_retries=syn_retries)
    sent = t.run_timers(gone * SEC - 1)
    assert [at // SEC for at, _ in sent] == times
    assert t.state == "SYN_SENT"
    t.run_timers(gone * SEC)
    assert t.state == "CLOSED"


def test_SYN_1_pre_6_5_doubling_schedule():
    """Pre-6.5 (syn_linear_timeouts = 0): SYNs at 0, 1, 3, 7, 15, 31, 63, ETIMEDOUT at 127 s."""
    t = make_tcb("SYN_SENT", syn_linear_timeouts=0)
    sent = t.run_timers(300 * SEC)
    assert [at // SEC for at, _ in sent] == [1, 3, 7, 15, 31, 63]
    assert t.state == "CLOSED"
    t2 = make_tcb("SYN_SENT", syn_linear_timeouts=0)
    t2.run_timers(127 * SEC)
    assert t2.state == "CLOSED"


def test_LA_3_SYN_2_synsent_unacceptable_ack_rst_seq_eq_ack_quick_resend():
    """A challenge ACK from a LAST_ACK peer: RST seq = SEG.ACK (no ACK flag, no options), stay in
    SYN_SENT, SYN resent after TCP_TIMEOUT_MIN (2 jiffies = 8 ms at HZ=250)."""
    t = make_tcb("SYN_SENT")
    challenge = t.seg(ACK, 5_000_000, 777_777, ts=(REMOTE_TS, 0))
    out = t.send(challenge, at=1 * MS)
    assert out == [t.out(RST, 777_777, 0, win=0)]
    assert t.state == "SYN_SENT"
    assert t.conn.poll_at() == 1 * MS + 8 * MS
    assert t.tick(9 * MS) == [t.out(SYN, LOCAL_SEQ, 0, win=64240, mss=MSS, wscale=WSCALE, sack_ok=True,
                                    ts=(9, 0))]
    # The quick resend counts as the first retransmission: the next RTO is the normal 1 s.
    assert t.conn.poll_at() == 9 * MS + SEC


def test_LA_3_no_quick_resend_once_the_syn_was_retransmitted():
    t = make_tcb("SYN_SENT")
    t.run_timers(SEC)  # first retransmission at 1 s
    out = t.send(t.seg(ACK, 5_000_000, 777_777, ts=(REMOTE_TS, 0)), at=SEC + 10 * MS)
    assert out == [t.out(RST, 777_777, 0, win=0)]
    assert t.conn.poll_at() == 2 * SEC


def test_LA_3_pre_5_6_waits_for_the_rto():
    t = make_tcb("SYN_SENT", quick_syn_resend=False)
    t.send(t.seg(ACK, 5_000_000, 777_777, ts=(REMOTE_TS, 0)), at=1 * MS)
    assert t.conn.poll_at() == SEC


def test_synsent_rst_with_acceptable_ack_refuses():
    t = make_tcb("SYN_SENT")
    out = t.send(t.seg(RST | ACK, 0, ls(1), ts=False), at=1 * MS)
    assert out == []
    assert t.state == "CLOSED"
    assert t.conn.err == "ECONNREFUSED"


def test_synsent_rst_without_ack_is_ignored():
    t = make_tcb("SYN_SENT")
    assert t.send(t.seg(RST, 0, 0, ts=False), at=1 * MS) == []
    assert t.state == "SYN_SENT"


def test_TS_6_synack_echoing_a_future_tsval_gets_rst():
    t = make_tcb("SYN_SENT")
    bad = _syn_ack(t, ts=(REMOTE_TS, 50))  # we sent TSval 0 at t=0 and it is 1 ms now
    out = t.send(bad, at=1 * MS)
    assert out == [t.out(RST, ls(1), 0, win=0)]
    assert t.state == "SYN_SENT"
    assert t.counters["TcpExtPAWSActive"] == 1


def _opened_at(at: int, **cfg) -> Tcb:
    """A connection whose SYN left at ``at`` µs (TSval = at in ms, TSecr 0), drained."""
    env = FakeEnv(**cfg)
    conn = Connection(env, LOCAL_ADDR, LOCAL_PORT, REMOTE_ADDR, REMOTE_PORT)
    conn.open_active(at, LOCAL_SEQ, 0)
    t = Tcb(conn, env)
    t.drain()
    return t


@pytest.mark.parametrize(("tsecr", "ok"), [(9, False), (10, True), (20, True), (21, False)])
def test_TS_6_synack_tsecr_must_lie_between_the_first_syn_and_now(tsecr, ok):
    """SYN at 10 ms (TSval 10), SYN-ACK at 20 ms: TSecr in [10, 20] is accepted; outside it the
    SYN-ACK gets tcp_v4_send_reset's RST (seq = its ACK), PAWSActive counts, the connection stays
    in SYN_SENT and its SYN timer (10 ms + 1 s) is not touched (no quick resend here)."""
    t = _opened_at(10 * MS)
    out = t.send(_syn_ack(t, ts=(REMOTE_TS, tsecr)), at=20 * MS)
    if ok:
        assert out == [t.out(ACK, ls(1), rs(1), ts=(20, REMOTE_TS))]
        assert t.state == "ESTABLISHED"
    else:
        assert out == [t.out(RST, ls(1), 0, win=0)]
        assert t.state == "SYN_SENT"
        assert t.conn.poll_at() == 10 * MS + SEC
        assert t.counters["TcpExtPAWSActive"] == 1


def test_TS_6_retransmitted_syn_keeps_the_first_syn_as_the_lower_bound():
    """The lower bound is the first SYN's time (retrans_stamp), not the retransmission's: a
    SYN-ACK echoing the first SYN after the SYN was resent at 1.01 s is accepted."""
    t = _opened_at(10 * MS)
    t.run_timers(10 * MS + SEC)
    out = t.send(_syn_ack(t, ts=(REMOTE_TS, 10)), at=SEC + 20 * MS)
    assert out == [t.out(ACK, ls(1), rs(1), ts=(1020, REMOTE_TS))]


def test_TS_4_syn_echoes_zero_syn_ack_echoes_the_syn_tsval():
    """Outgoing TSecr = ts_recent: 0 in a fresh SYN; the peer's SYN TSval in our SYN-ACK; the
    SYN-ACK's TSval in the handshake's last ACK."""
    t = _opened_at(5 * MS)
    assert t.conn.ts_recent == 0
    assert t.send(_syn_ack(t, ts=(REMOTE_TS, 5)), at=6 * MS) == [t.out(ACK, ls(1), rs(1), ts=(6, REMOTE_TS))]
    p = make_tcb("SYN_RECEIVED")  # the peer's SYN carried TSval REMOTE_TS at 0
    assert p.tick(SEC) == [p.out(SYN | ACK, LOCAL_SEQ, rs(1), win=65160, mss=MSS, wscale=WSCALE,
                                 sack_ok=True, ts=(1000, REMOTE_TS))]


def test_TS_1_passive_side_with_timestamps_off_answers_without_them():
    """The SYN offers timestamps, our tcp_timestamps = 0: the SYN-ACK has none, nor does anything
    after it (tstamp_ok never set)."""
    env = FakeEnv(timestamps=0)
    conn = Connection(env, LOCAL_ADDR, LOCAL_PORT, REMOTE_ADDR, REMOTE_PORT)
    t = Tcb(conn, env)
    syn = t.seg(SYN, REMOTE_SEQ, 0, win=64240, ts=(REMOTE_TS, 0), mss=MSS, wscale=WSCALE, sack_ok=True)
    conn.open_passive(syn, 1 * MS, LOCAL_SEQ, 0)
    # WIN-1: without timestamps the window is 44 x 1460, not 45 x 1448 (kernel-measured:
    # tests/scripts/synack-window-without-timestamps.pkt)
    assert t.drain() == [t.out(SYN | ACK, LOCAL_SEQ, rs(1), win=64240, mss=MSS, wscale=WSCALE, sack_ok=True)]
    t.send(t.seg(ACK, rs(1), ls(1), ts=(REMOTE_TS + 1, 1)), at=2 * MS)
    assert t.state == "ESTABLISHED" and not t.conn.ts_ok
    conn.send(b"x", 3 * MS)
    assert t.drain() == [t.out(ACK | PSH, ls(1), rs(1), b"x")]


def test_TS_1_synack_without_timestamps_turns_them_off():
    t = make_tcb("SYN_SENT")
    out = t.send(_syn_ack(t, ts=None), at=1 * MS)
    assert out == [t.out(ACK, ls(1), rs(1))]
    assert t.conn.ts_ok is False


def test_TS_1_no_timestamps_when_sysctl_off():
    t = make_tcb("SYN_SENT", ts=False)
    out = t.send(_syn_ack(t), at=1 * MS)
    assert out == [t.out(ACK, ls(1), rs(1))]


def test_simultaneous_open_both_established():
    """SYN_SENT + SYN -> SYN_RECEIVED (SYN-ACK with our ISS); the peer's SYN-ACK then
    completes it (tcp_validate_incoming lets that SYN-ACK pass in SYN_RECV)."""
    t = make_tcb("SYN_SENT")
    syn = t.seg(SYN, REMOTE_SEQ, 0, win=64240, ts=(REMOTE_TS, 0), mss=MSS, wscale=WSCALE, sack_ok=True)
    out = t.send(syn, at=1 * MS)
    assert out == [t.out(SYN | ACK, LOCAL_SEQ, rs(1), win=65160, mss=MSS, wscale=WSCALE, sack_ok=True,
                         ts=(1, REMOTE_TS))]
    assert t.state == "SYN_RECEIVED"
    peer_synack = t.seg(SYN | ACK, REMOTE_SEQ, ls(1), win=65160, ts=(REMOTE_TS + 1, 0), mss=MSS,
                        wscale=WSCALE, sack_ok=True)
    out = t.send(peer_synack, at=2 * MS)
    assert t.state == "ESTABLISHED"
    assert all(s.flags & SYN == 0 for s in out)


def test_window_in_syn_ack_is_not_scaled():
    """RFC 7323 §2.2: the window field of a SYN is never scaled; 65160 bytes may be in flight."""
    t = make_tcb("SYN_SENT")
    t.send(_syn_ack(t), at=1 * MS)
    t.conn.send(b"x" * 200_000, 2 * MS)
    sent = sum(len(s.payload) for s in t.drain())
    assert sent == 65160


def test_states_are_named():
    t = make_tcb("SYN_SENT")
    assert NAMES[t.conn.state] == "SYN_SENT"
    assert LOCAL_WIN == (64240 + 127) >> WSCALE  # WIN-3


def test_emit_sets_every_segment_field():
    """``Connection._emit`` builds segments field by field (for speed): every field of
    :class:`Segment` must be set, to what the constructor would give."""
    from dataclasses import fields

    from timewait.tcp.segment import Segment

    env = FakeEnv()
    conn = Connection(env, LOCAL_ADDR, LOCAL_PORT, REMOTE_ADDR, REMOTE_PORT)
    conn.open_active(5 * MS, LOCAL_SEQ, 0)
    t = Tcb(conn, env)
    segs = t.drain() + t.send(_syn_ack(t), at=1 * SEC)
    conn.send(b"PING\r\n", 1 * SEC)
    segs += t.drain()
    assert [s.flags for s in segs] == [SYN, ACK, ACK | PSH]
    for seg in segs:
        for f in fields(Segment):
            getattr(seg, f.name)  # AttributeError if _emit left a slot unset
        rebuilt = Segment(seg.src, seg.dst, seg.sport, seg.dport, seg.seq, seg.ack, seg.flags, seg.win,
                          seg.payload, seg.mss, seg.wscale, seg.sack_ok, seg.ts, seg.ttl)
        assert seg == rebuilt
