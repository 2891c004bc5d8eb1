"""Segments arriving at a TIME_WAIT record (spec §2: TW-P, TW-A, TW-B, TW-C, TW-R1..R3, TW-F1..F6).

The record was entered at t = 0 with tw_rcv_nxt = rs(2) (after the peer's FIN), tw_snd_nxt =
ls(2) (after ours), the peer's last TSval REMOTE_TS, our TS clock = simulated ms, offset 0.
"""

from __future__ import annotations

import pytest

from conftest import (
    LOCAL_ADDR,
    LOCAL_PORT,
    LOCAL_WIN,
    REMOTE_ADDR,
    REMOTE_PORT,
    REMOTE_TS,
    TW_RCV_NXT,
    TW_SND_NXT,
    ls,
    make_record,
    make_tcb,
    rs,
)
from timewait.tcp.config import MS, SEC
from timewait.tcp.segment import ACK, FIN, PSH, RST, SYN, Segment
from timewait.tcp.states import FIN_WAIT_2, TIME_WAIT
from timewait.tcp.timewait import TW_ACK, TW_KILL, TW_RST, TW_SUCCESS, TW_SYN, TimeWait, reset_for

T = 10 * SEC  # "now" for most tests: 10 s into TIME_WAIT (deadline still 60 s)
OLD_DEADLINE = 60 * SEC
NEW_DEADLINE = T + 60 * SEC

# ---------------------------------------------------------------- TW-A


def test_TW_A_rst_kills_timewait_rfc1337_0():
    r = make_record()
    assert r.send(r.seg(RST, TW_RCV_NXT, 0), at=T) == (TW_KILL, None)


def test_TW_A_rst_with_ack_kills_too():
    r = make_record()
    assert r.send(r.seg(RST | ACK, TW_RCV_NXT, TW_SND_NXT, ts=(REMOTE_TS + 5, 0)), at=T) == (TW_KILL, None)


def test_TW_A_rst_kept_rfc1337_1_timer_not_rearmed():
    r = make_record(rfc1337=1)
    assert r.send(r.seg(RST, TW_RCV_NXT, 0, ts=(REMOTE_TS + 5, 0)), at=T) == (TW_SUCCESS, None)
    assert r.tw.deadline == OLD_DEADLINE
    assert (r.tw.ts_recent, r.tw.ts_recent_stamp) == (REMOTE_TS + 5, T)


def test_TW_A_bare_ack_rearms_60s_no_reply():
    r = make_record()
    assert r.send(r.seg(ACK, TW_RCV_NXT, TW_SND_NXT, ts=(REMOTE_TS + 9, 0)), at=T) == (TW_SUCCESS, None)
    assert r.tw.deadline == NEW_DEADLINE
    assert (r.tw.ts_recent, r.tw.ts_recent_stamp) == (REMOTE_TS + 9, T)


def test_TW_A_bare_ack_without_timestamp_keeps_ts_recent():
    r = make_record()
    assert r.send(r.seg(ACK, TW_RCV_NXT, TW_SND_NXT), at=T) == (TW_SUCCESS, None)
    assert r.tw.deadline == NEW_DEADLINE
    assert (r.tw.ts_recent, r.tw.ts_recent_stamp) == (REMOTE_TS, 1)


def test_TW_A_rearm_uses_tcp_timewait_len_not_fin_timeout():
    r = make_record(fin_timeout=5 * SEC)
    r.send(r.seg(ACK, TW_RCV_NXT, TW_SND_NXT), at=T)
    assert r.tw.deadline == T + 60 * SEC


# ---------------------------------------------------------------- TW-B


def test_TW_B_syn_newer_seq_accepted_isn_snd_nxt_plus_65537():
    r = make_record()
    out = r.send(r.seg(SYN, rs(1000), 0, ts=(REMOTE_TS + 1, 0)), at=T)
    assert out == (TW_SYN, None)
    assert r.tw.syn_isn == ls(2 + 65537)
    assert r.tw.deadline == OLD_DEADLINE  # the timer is not touched


def test_TW_B_syn_newer_ts_lower_seq_accepted():
    r = make_record()
    assert r.send(r.seg(SYN, rs(-50_000), 0, ts=(REMOTE_TS + 1, 0)), at=T) == (TW_SYN, None)


def test_TW_B_syn_newer_seq_equal_ts_accepted():
    r = make_record()
    assert r.send(r.seg(SYN, rs(3), 0, ts=(REMOTE_TS, 0)), at=T) == (TW_SYN, None)


def test_TW_B_syn_newer_seq_without_timestamp_accepted():
    r = make_record()
    assert r.send(r.seg(SYN, rs(3), 0), at=T) == (TW_SYN, None)


def test_TW_B_without_timestamps_only_seq_counts():
    r = make_record(ts=False)
    assert r.send(r.seg(SYN, rs(3), 0, ts=(REMOTE_TS + 100, 0)), at=T) == (TW_SYN, None)
    r2 = make_record(ts=False)
    outcome, seg = r2.send(r2.seg(SYN, rs(-3), 0, ts=(REMOTE_TS + 100, 0)), at=T)
    assert outcome == TW_ACK


def test_TW_B_isn_zero_becomes_one():
    r = make_record()
    r.tw.snd_nxt = (-65537) & 0xFFFFFFFF
    r.send(r.seg(SYN, rs(1000), 0), at=T)
    assert r.tw.syn_isn == 1


def test_TW_B_syn_with_ack_is_not_a_new_incarnation():
    r = make_record()
    outcome, seg = r.send(r.seg(SYN | ACK, rs(1000), 12345, ts=(REMOTE_TS + 1, 0)), at=T)
    assert (outcome, seg) == (TW_ACK, r.ack(T // MS))
    assert r.tw.deadline == NEW_DEADLINE  # TW-C: ACK flag set -> re-armed


# ---------------------------------------------------------------- TW-C


def test_TW_C_retransmitted_fin_acked_and_rearmed():
    r = make_record()
    fin = r.seg(FIN | ACK, rs(1), TW_SND_NXT, ts=(REMOTE_TS, 0))
    assert r.send(fin, at=T) == (TW_ACK, r.ack(T // MS, REMOTE_TS))
    assert r.tw.deadline == NEW_DEADLINE


def test_TW_C_new_data_at_rcv_nxt_acked_and_rearmed_data_ignored():
    r = make_record()
    data = r.seg(ACK | PSH, TW_RCV_NXT, TW_SND_NXT, b"late", ts=(REMOTE_TS + 1, 0))
    assert r.send(data, at=T) == (TW_ACK, r.ack(T // MS))
    assert r.tw.rcv_nxt == TW_RCV_NXT
    assert r.tw.deadline == NEW_DEADLINE


def test_TW_C_old_pure_ack_acked_and_rearmed():
    r = make_record()
    assert r.send(r.seg(ACK, rs(1), TW_SND_NXT, ts=(REMOTE_TS, 0)), at=T) == (TW_ACK, r.ack(T // MS))
    assert r.tw.deadline == NEW_DEADLINE


def test_TW_C_plain_syn_not_accepted_timer_unchanged():
    """SYN with seq <= rcv_nxt and no newer TSval: TW ACK, timer not restarted."""
    r = make_record()
    assert r.send(r.seg(SYN, rs(1), 0, ts=(REMOTE_TS, 0)), at=T) == (TW_ACK, r.ack(T // MS))
    assert r.tw.deadline == OLD_DEADLINE


def test_TW_C_syn_newer_seq_older_ts_paws_acked_and_rearmed():
    r = make_record()
    assert r.send(r.seg(SYN, rs(1000), 0, ts=(REMOTE_TS - 1, 0)), at=T) == (TW_ACK, r.ack(T // MS))
    assert r.tw.deadline == NEW_DEADLINE
    assert r.counters["TcpExtPAWSTimewait"] == 1


def test_TW_C_rst_not_exact_dropped_silently():
    r = make_record()
    assert r.send(r.seg(RST, rs(2 + 5), 0), at=T) == (TW_SUCCESS, None)
    assert r.tw.deadline == OLD_DEADLINE


def test_TW_C_paws_rejected_rst_ignored():
    """[obs] an RST+ACK at rcv_nxt with an old TSval is ignored (PAWS within TCP_PAWS_MSL)."""
    r = make_record()
    out = r.send(r.seg(RST | ACK, TW_RCV_NXT, TW_SND_NXT, ts=(REMOTE_TS - 1, 0)), at=T)
    assert out == (TW_SUCCESS, None)
    assert r.tw.deadline == OLD_DEADLINE
    assert r.counters["TcpExtPAWSTimewait"] == 1


# ---------------------------------------------------------------- TW-P


def test_TW_P_paws_rejects_old_tsval():
    """An otherwise exact bare ACK with an older TSval is not TW-A: PAWS-rejected, ACKed, re-armed."""
    r = make_record()
    out = r.send(r.seg(ACK, TW_RCV_NXT, TW_SND_NXT, ts=(REMOTE_TS - 1, 0)), at=T)
    assert out == (TW_ACK, r.ack(T // MS))
    assert r.tw.deadline == NEW_DEADLINE
    assert r.tw.ts_recent == REMOTE_TS
    assert r.counters["TcpExtPAWSTimewait"] == 1


def test_TW_P_paws_window_is_zero():
    """tcp_paws_reject uses window 0 in TIME_WAIT: an equal TSval passes."""
    r = make_record()
    assert r.send(r.seg(ACK, TW_RCV_NXT, TW_SND_NXT, ts=(REMOTE_TS, 0)), at=T) == (TW_SUCCESS, None)


def test_TW_P_segment_without_timestamp_never_rejected():
    r = make_record()
    assert r.send(r.seg(ACK, TW_RCV_NXT, TW_SND_NXT), at=T) == (TW_SUCCESS, None)
    assert r.counters["TcpExtPAWSTimewait"] == 0


def test_TW_P_record_without_timestamps_ignores_the_option():
    r = make_record(ts=False)
    assert r.send(r.seg(ACK, TW_RCV_NXT, TW_SND_NXT, ts=(1, 0)), at=T) == (TW_SUCCESS, None)
    assert r.tw.ts_recent == 0 and r.tw.ts_recent_stamp == 0


def test_TW_P_stale_ts_recent_after_paws_wrap_not_rejected():
    """ts_recent_stamp older than TCP_PAWS_WRAP (2147 s) disables PAWS."""
    r = make_record(timeout=3000 * SEC)
    later = 2148 * SEC
    assert r.send(r.seg(ACK, TW_RCV_NXT, TW_SND_NXT, ts=(REMOTE_TS - 1, 0)), at=later) == (TW_SUCCESS, None)


def test_TW_P_rst_with_old_ts_after_paws_msl_kills():
    """For an RST the PAWS check also needs ts_recent_stamp younger than TCP_PAWS_MSL (60 s)."""
    r = make_record(timeout=100 * SEC)
    assert r.send(r.seg(RST, TW_RCV_NXT, 0, ts=(REMOTE_TS - 1, 0)), at=61 * SEC) == (TW_KILL, None)


# ---------------------------------------------------------------- TW-R1..R3


def test_TW_R1_ack_format_includes_ts():
    """Flags ACK, seq tw_snd_nxt, ack tw_rcv_nxt, window tw_rcv_wnd >> wscale, TS (clock + offset,
    ts_recent) even when the trigger carried no timestamp."""
    r = make_record(ts_base_ms=5000)
    r.tw.ts_off = 1_000_000
    outcome, seg = r.send(r.seg(ACK, rs(1), TW_SND_NXT), at=T)
    assert outcome == TW_ACK
    assert seg == r.ack(5000 + T // MS + 1_000_000, REMOTE_TS, win=LOCAL_WIN)
    # WIN-3: the record keeps the last window offered, 64240 rounded up to the scale (2**7)
    assert (seg.flags, seg.seq, seg.ack, seg.win) == (ACK, ls(2), rs(2), -(-64240 >> 7))


def test_TW_R1_no_timestamp_when_ts_recent_is_zero():
    r = make_record(ts=False)
    outcome, seg = r.send(r.seg(ACK, rs(1), TW_SND_NXT, ts=(REMOTE_TS, 0)), at=T)
    assert (outcome, seg) == (TW_ACK, r.ack())
    assert seg.ts is None


def test_TW_R2_rate_limit_syns_not_fins():
    """[obs] 4 SYNs at 0/0.1/0.2/0.7 s -> ACKs at 0 and 0.7; 3 FINs at 0/0.1/0.7 -> 3 ACKs."""
    r = make_record()
    syn = r.seg(SYN, rs(1), 0, ts=(REMOTE_TS, 0))
    got = [r.send(syn, at=T + ms * MS)[0] for ms in (0, 100, 200, 700)]
    assert got == [TW_ACK, TW_SUCCESS, TW_SUCCESS, TW_ACK]
    assert r.counters["TcpExtTCPACKSkippedTimeWait"] == 2
    r2 = make_record()
    fin = r2.seg(FIN | ACK, rs(1), TW_SND_NXT, ts=(REMOTE_TS, 0))
    assert [r2.send(fin, at=T + ms * MS)[0] for ms in (0, 100, 700)] == [TW_ACK] * 3
    assert r2.counters["TcpExtTCPACKSkippedTimeWait"] == 0


def test_TW_R2_zero_length_old_acks_are_rate_limited_too():
    r = make_record()
    old = r.seg(ACK, rs(1), TW_SND_NXT, ts=(REMOTE_TS, 0))
    assert [r.send(old, at=T + ms * MS)[0] for ms in (0, 499, 500)] == [TW_ACK, TW_SUCCESS, TW_ACK]


def test_TW_R3_rst_format():
    """tcp_v4_send_reset: trigger with ACK -> RST seq = its ack, no ACK flag; without ACK ->
    RST+ACK seq 0, ack = seq + SYN + FIN + len; no options; never for an RST."""
    r = make_record()
    with_ack = r.seg(ACK | PSH, 5000, 7777, b"abc", ts=(1, 2))
    rst = reset_for(with_ack)
    assert (rst.flags, rst.seq, rst.ack, rst.win, rst.ts, rst.mss) == (RST, 7777, 0, 0, None, None)
    assert (rst.src, rst.dst, rst.sport, rst.dport) == (with_ack.dst, with_ack.src, with_ack.dport, with_ack.sport)
    syn = r.seg(SYN | FIN, 5000, 0, b"ab")
    rst = reset_for(syn)
    assert (rst.flags, rst.seq, rst.ack) == (RST | ACK, 0, 5004)
    assert reset_for(r.seg(RST, 1, 0)) is None
    assert reset_for(r.seg(RST | ACK, 1, 2)) is None


# ---------------------------------------------------------------- TW-F1..F6 (FIN_WAIT_2 substate)


def test_TW_F1_out_of_window_gets_ack_rate_limited():
    r = make_record("FIN_WAIT_2")
    far = r.seg(ACK, rs(1 + 70_000), TW_SND_NXT)
    assert r.send(far, at=T) == (TW_ACK, r.ack(T // MS))
    assert r.send(far, at=T + 100 * MS) == (TW_SUCCESS, None)
    assert r.counters["TcpExtTCPACKSkippedFinWait2"] == 1
    assert r.tw.deadline == 60 * SEC  # the substate's timer is not touched


def test_TW_F1_old_duplicate_data_is_out_of_window():
    """tcp_in_window: a segment ending at rcv_nxt is not in the window (only zero-length ones at
    rcv_nxt are), so an old duplicate gets the TW ACK rather than TW-F4's silent drop."""
    r = make_record("FIN_WAIT_2")
    assert r.send(r.seg(ACK | PSH, rs(0), TW_SND_NXT, b"x"), at=T) == (TW_ACK, r.ack(T // MS))


def test_TW_F1_paws_rejected_gets_ack():
    r = make_record("FIN_WAIT_2")
    seg = r.seg(FIN | ACK, rs(1), TW_SND_NXT, ts=(REMOTE_TS - 1, 0))
    assert r.send(seg, at=T) == (TW_ACK, r.ack(T // MS))
    assert r.tw.substate == FIN_WAIT_2


def test_TW_F2_in_window_rst_destroys():
    r = make_record("FIN_WAIT_2")
    assert r.send(r.seg(RST, rs(100), 0), at=T) == (TW_KILL, None)


def test_TW_F3_syn_at_or_after_rcv_nxt_gets_rst():
    r = make_record("FIN_WAIT_2")
    syn = r.seg(SYN, rs(1), 0)
    assert r.send(syn, at=T) == (TW_RST, reset_for(syn))
    assert reset_for(syn).flags == RST | ACK and reset_for(syn).ack == rs(2)


@pytest.mark.parametrize(
    "flags, seq, payload",
    [(PSH, 1, b"noack"), (ACK, 1, b""), (FIN, 1, b"")],
    ids=["no-ack-flag", "zero-length", "fin-without-ack"],
)
def test_TW_F4_silent_drop(flags, seq, payload):
    r = make_record("FIN_WAIT_2")
    assert r.send(r.seg(flags, rs(seq), TW_SND_NXT, payload), at=T) == (TW_SUCCESS, None)
    assert r.tw.substate == FIN_WAIT_2


def test_TW_F5_new_data_gets_rst():
    """[obs] data to an orphan FIN_WAIT2 -> RST (seq = the data's ack), record destroyed."""
    r = make_record("FIN_WAIT_2")
    data = r.seg(ACK | PSH, rs(1), TW_SND_NXT, b"more")
    out = r.send(data, at=T)
    assert out == (TW_RST, reset_for(data))
    assert (out[1].flags, out[1].seq) == (RST, TW_SND_NXT)


def test_TW_F5_fin_with_data_gets_rst():
    r = make_record("FIN_WAIT_2")
    seg = r.seg(FIN | ACK, rs(1), TW_SND_NXT, b"x")
    assert r.send(seg, at=T)[0] == TW_RST


def test_TW_F6_exact_fin_enters_time_wait():
    r = make_record("FIN_WAIT_2")
    fin = r.seg(FIN | ACK, rs(1), TW_SND_NXT, ts=(REMOTE_TS + 3, 0))
    outcome, seg = r.send(fin, at=T)
    assert r.tw.substate == TIME_WAIT
    assert r.tw.rcv_nxt == rs(2)
    assert (r.tw.ts_recent, r.tw.ts_recent_stamp, r.tw.entry_stamp) == (REMOTE_TS + 3, T, T)
    assert r.tw.deadline == T + 60 * SEC
    assert (outcome, seg) == (TW_ACK, r.ack(T // MS, REMOTE_TS + 3))
    assert (seg.seq, seg.ack) == (ls(2), rs(2))


def test_TW_F6_timestamp_ignored_when_the_connection_had_none():
    """Options are parsed only when tw_ts_recent_stamp != 0 (tcp_timewait_state_process): a
    FIN carrying a TSval does not turn timestamps on for a record that never used them."""
    r = make_record("FIN_WAIT_2", ts=False)
    outcome, seg = r.send(r.seg(FIN | ACK, rs(1), TW_SND_NXT, ts=(REMOTE_TS + 3, 0)), at=T)
    assert outcome == TW_ACK and r.tw.substate == TIME_WAIT
    assert (r.tw.ts_recent, r.tw.ts_recent_stamp) == (0, 0)
    assert seg.ts is None


def test_TW_F6_then_true_time_wait_rules_apply():
    r = make_record("FIN_WAIT_2")
    r.send(r.seg(FIN | ACK, rs(1), TW_SND_NXT, ts=(REMOTE_TS + 3, 0)), at=T)
    assert r.send(r.seg(RST, rs(2), 0), at=T + SEC) == (TW_KILL, None)


# ---------------------------------------------------------------- TW-4: what the record keeps


def test_TW_4_record_keeps_what_time_wait_needs():
    """inet_twsk_alloc + tcp_time_wait: the 4-tuple, rcv_nxt (after the peer's FIN), snd_nxt
    (after ours), the receive window and its scale, ts_recent/stamp, the TS offset, the entry
    time and SO_REUSEADDR."""
    t = make_tcb("FIN_WAIT_2")
    t.conn.ts_off = 12345
    t.send(t.seg(FIN | ACK, rs(1), ls(2), ts=(REMOTE_TS + 3, 0)), at=T)
    assert t.state == "TIME_WAIT"
    tw = TimeWait.from_connection(t.conn, T, TIME_WAIT, 60 * SEC, reuse=True)
    assert tw.key == t.conn.key
    assert (tw.substate, tw.rcv_nxt, tw.snd_nxt) == (TIME_WAIT, rs(2), ls(2))
    assert (tw.rcv_wnd, tw.rcv_wscale) == (LOCAL_WIN << 7, 7)  # the last window offered (WIN-3)
    assert (tw.ts_recent, tw.ts_recent_stamp, tw.ts_off) == (REMOTE_TS + 3, T, 12345)
    assert (tw.entry_stamp, tw.deadline, tw.reuse) == (T, T + 60 * SEC, True)
    assert tw.ack(T, t.cfg) == r_ack_like(tw, (T // MS + 12345, REMOTE_TS + 3))


def test_TW_4_no_timestamps_means_stamp_zero():
    t = make_tcb("FIN_WAIT_2", ts=False)
    t.send(t.seg(FIN | ACK, rs(1), ls(2), ts=False), at=T)
    tw = TimeWait.from_connection(t.conn, T, TIME_WAIT, 60 * SEC)
    assert (tw.ts_recent, tw.ts_recent_stamp) == (0, 0)
    assert not tw.reusable(T + 10 * SEC, 1, 1000 * MS, False, bound=True)


def test_TW_4_timestamps_seen_at_time_zero_still_count():
    """A ts_recent stamped at simulated time 0 must not read as "never saw timestamps"."""
    t = make_tcb("FIN_WAIT_2")
    assert t.conn.ts_recent_stamp == 0
    t.send(t.seg(FIN | ACK, rs(1), ls(2), ts=False), at=0)
    tw = TimeWait.from_connection(t.conn, 0, TIME_WAIT, 60 * SEC)
    assert tw.ts_recent_stamp != 0
    assert tw.reusable(2 * SEC, 1, 1000 * MS, False, bound=False)


def r_ack_like(tw: TimeWait, ts: tuple[int, int]):

    return Segment(LOCAL_ADDR, REMOTE_ADDR, LOCAL_PORT, REMOTE_PORT, tw.snd_nxt, tw.rcv_nxt, ACK, LOCAL_WIN, ts=ts)


# ---------------------------------------------------------------- PS-5: the one predicate


@pytest.mark.parametrize(
    ("mode", "timestamps", "saddr_lo", "daddr_lo", "allowed"),
    [
        (0, True, True, True, False),     # never
        (1, True, False, False, True),    # anywhere, with timestamps
        (1, False, False, False, False),  # no timestamps: PAWS could not guard the new connection
        (2, True, False, False, False),   # loopback only
        (2, True, True, False, True),     # either end in 127.0.0.0/8
        (2, True, False, True, True),
        (2, False, True, True, False),
    ],
)
def test_PS_5_tw_reuse_allowed(mode, timestamps, saddr_lo, daddr_lo, allowed):
    from timewait.tcp.timewait import tw_reuse_allowed, tw_reuse_verdict

    assert tw_reuse_allowed(mode, timestamps, saddr_lo, daddr_lo) is allowed
    assert tw_reuse_verdict(mode, timestamps, saddr_lo or daddr_lo)[0] is allowed
    assert tw_reuse_verdict(mode, timestamps, saddr_lo or daddr_lo, peer_timestamps=False)[0] is False
