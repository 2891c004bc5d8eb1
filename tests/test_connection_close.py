"""Closing: who reaches TIME_WAIT (TW-1, TW-2), the passive closer's LAST_ACK (LA-1, LA-2, LA-4),
close() variants (CL-1..CL-3). Exact segments and times (µs)."""

from __future__ import annotations

import pytest

from conftest import LOCAL_WIN, REMOTE_TS, RTO, ls, make_tcb, rs
from timewait.tcp.config import MS, SEC
from timewait.tcp.segment import ACK, FIN, PSH, RST, SYN

# ---------------------------------------------------------------- CL-3: close() sends a FIN


def test_CL_3_close_in_established_sends_fin_and_arms_rto():
    t = make_tcb("ESTABLISHED")
    t.conn.close(0)
    assert t.drain() == [t.out(FIN | ACK, ls(1), rs(1), ts=(0, REMOTE_TS))]
    assert t.state == "FIN_WAIT_1"
    assert t.conn.poll_at() == RTO


def test_CL_3_close_in_close_wait_sends_fin_goes_last_ack():
    t = make_tcb("CLOSE_WAIT")
    t.conn.close(3 * MS)
    assert t.drain() == [t.out(FIN | ACK, ls(1), rs(2), ts=(3, REMOTE_TS))]
    assert t.state == "LAST_ACK"


def test_CL_3_fin_follows_queued_data():
    t = make_tcb("ESTABLISHED")
    t.conn.send(b"bye", 0)
    t.conn.close(0)
    assert t.drain() == [
        t.out(ACK | PSH, ls(1), rs(1), b"bye", ts=(0, REMOTE_TS)),
        t.out(FIN | ACK, ls(4), rs(1), ts=(0, REMOTE_TS)),
    ]


@pytest.mark.parametrize("state", ["FIN_WAIT_1", "FIN_WAIT_2", "CLOSING", "LAST_ACK"])
def test_CL_3_close_after_fin_changes_nothing(state):
    """close() after shutdown(SHUT_WR) or a second close: FIN_WAIT*/CLOSING/LAST_ACK stay."""
    t = make_tcb(state)
    deadline = t.conn.poll_at()
    t.conn.close(7 * MS)
    assert t.drain() == []
    assert t.state == state and t.conn.poll_at() == deadline
    assert t.conn.orphan


def test_close_in_syn_sent_sends_nothing():
    t = make_tcb("SYN_SENT")
    t.conn.close(1 * MS)
    assert t.drain() == []
    assert t.state == "CLOSED"


def test_CL_1_unread_data_close_sends_rst():
    """Unread data at close(): RST+ACK seq = snd_nxt, ack = rcv_nxt, timestamps; no FIN."""
    t = make_tcb("ESTABLISHED")
    t.send(t.seg(ACK | PSH, rs(1), ls(1), b"unread", ts=(REMOTE_TS + 1, 0)), at=1 * MS)
    t.conn.close(2 * MS)
    assert t.drain() == [t.out(RST | ACK, ls(1), rs(7), win=LOCAL_WIN, ts=(2, REMOTE_TS + 1))]
    assert t.state == "CLOSED"
    assert t.counters["TcpExtTCPAbortOnClose"] == 1


def test_CL_1_out_of_order_data_alone_is_not_unread():
    """__tcp_close counts only sk_receive_queue; the out-of-order queue is just purged."""
    t = make_tcb("ESTABLISHED")
    t.send(t.seg(ACK | PSH, rs(10), ls(1), b"later", ts=(REMOTE_TS, 0)), at=1 * MS)
    t.conn.close(2 * MS)
    assert t.drain() == [t.out(FIN | ACK, ls(1), rs(1), ts=(2, REMOTE_TS))]
    assert t.state == "FIN_WAIT_1"


@pytest.mark.parametrize("state", ["ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT_1", "FIN_WAIT_2"])
def test_CL_2_linger0_rst_no_timewait(state):
    t = make_tcb(state)
    c = t.conn
    c.linger0 = True
    c.close(5 * MS)
    assert t.drain() == [t.out(RST | ACK, c.snd_nxt, c.rcv_nxt, ts=(5, REMOTE_TS))]
    assert t.state == "CLOSED"
    assert t.counters["TcpExtTCPAbortOnData"] == 1


def test_CL_2_linger0_in_syn_received_sends_rst():
    t = make_tcb("SYN_RECEIVED")
    t.conn.abort(5 * MS)
    # WIN-3: the SYN-ACK's 65160 (with timestamps) rounded up to the 2**7 unit
    assert t.drain() == [t.out(RST | ACK, ls(1), rs(1), win=(65160 + 127) >> 7, ts=(5, REMOTE_TS))]
    assert t.state == "CLOSED"


@pytest.mark.parametrize("state", ["CLOSING", "LAST_ACK"])
def test_CL_2_linger0_in_closing_last_ack_without_unsent_data_is_silent(state):
    t = make_tcb(state)
    t.conn.abort(5 * MS)
    assert t.drain() == []
    assert t.state == "CLOSED"


def test_CL_2_linger0_in_last_ack_with_unsent_data_sends_rst():
    """tcp_disconnect: CLOSING/LAST_ACK reset too when snd_nxt != write_seq (data held by a zero window)."""
    t = make_tcb("CLOSE_WAIT")
    t.conn.snd_wnd = 0
    t.conn.send(b"x" * 100, 0)
    t.conn.close(1 * MS)
    assert t.drain() == [] and t.state == "LAST_ACK"  # data and FIN wait for the window
    t.conn.abort(2 * MS)
    assert t.drain() == [t.out(RST | ACK, ls(1), rs(2), ts=(2, REMOTE_TS))]
    assert t.state == "CLOSED"


def test_CL_2_linger0_in_syn_sent_no_rst():
    t = make_tcb("SYN_SENT")
    t.conn.abort(5 * MS)
    assert t.drain() == []
    assert t.state == "CLOSED"


# ---------------------------------------------------------------- TW-1, TW-2: the active closer


def test_TW_1_fin_wait_1_ack_of_fin_goes_fin_wait_2():
    t = make_tcb("FIN_WAIT_1")
    assert t.send(t.seg(ACK, rs(1), ls(2), ts=(REMOTE_TS + 1, 0)), at=1 * MS) == []
    assert t.state == "FIN_WAIT_2"
    assert t.conn.poll_at() == 0


def test_TW_1_fin_wait_2_fin_acked_enters_time_wait():
    t = make_tcb("FIN_WAIT_2")
    out = t.send(t.seg(FIN | ACK, rs(1), ls(2), ts=(REMOTE_TS + 1, 0)), at=1 * MS)
    assert out == [t.out(ACK, ls(2), rs(2), ts=(1, REMOTE_TS + 1))]
    assert t.state == "TIME_WAIT"


def test_TW_1_fin_ack_covering_our_fin_goes_straight_to_time_wait():
    t = make_tcb("FIN_WAIT_1")
    out = t.send(t.seg(FIN | ACK, rs(1), ls(2), ts=(REMOTE_TS + 1, 0)), at=1 * MS)
    assert out == [t.out(ACK, ls(2), rs(2), ts=(1, REMOTE_TS + 1))]
    assert t.state == "TIME_WAIT"
    assert t.conn.poll_at() == 0


def test_TW_1_passive_closer_never_time_wait():
    t = make_tcb("LAST_ACK")
    assert t.send(t.seg(ACK, rs(2), ls(2), ts=(REMOTE_TS + 1, 0)), at=1 * MS) == []
    assert t.state == "CLOSED"
    assert t.conn.poll_at() == 0


def test_TW_2_simultaneous_close_both_time_wait_core():
    """FIN_WAIT_1 + a FIN that does not ack ours -> ACK, CLOSING; the ACK of our FIN -> TIME_WAIT."""
    t = make_tcb("FIN_WAIT_1")
    out = t.send(t.seg(FIN | ACK, rs(1), ls(1), ts=(REMOTE_TS + 1, 0)), at=1 * MS)
    assert out == [t.out(ACK, ls(2), rs(2), ts=(1, REMOTE_TS + 1))]
    assert t.state == "CLOSING"
    assert t.send(t.seg(ACK, rs(2), ls(2), ts=(REMOTE_TS + 2, 0)), at=2 * MS) == []
    assert t.state == "TIME_WAIT"


def test_closing_retransmits_its_fin():
    t = make_tcb("CLOSING")
    assert t.tick(RTO) == [t.out(FIN | ACK, ls(1), rs(2), ts=(RTO // MS, REMOTE_TS))]


def test_fin_wait_1_retransmits_fin_until_acked():
    t = make_tcb("FIN_WAIT_1")
    assert t.tick(RTO) == [t.out(FIN | ACK, ls(1), rs(1), ts=(RTO // MS, REMOTE_TS))]
    t.send(t.seg(ACK, rs(1), ls(2), ts=(REMOTE_TS + 1, 0)), at=RTO + MS)
    assert t.state == "FIN_WAIT_2"
    assert t.conn.poll_at() == 0


def test_new_data_after_close_in_fin_wait_2_resets():
    """tcp_rcv_state_process: data after close() in FIN_WAIT1/2 -> RST (TCPAbortOnData); the
    reset is tcp_v4_send_reset's: seq = SEG.ACK, no ACK flag, no options."""
    t = make_tcb("FIN_WAIT_2", orphan=True)
    out = t.send(t.seg(ACK | PSH, rs(1), ls(2), b"more", ts=(REMOTE_TS + 1, 0)), at=1 * MS)
    assert out == [t.out(RST, ls(2), 0, win=0)]
    assert t.state == "CLOSED"
    assert t.counters["TcpExtTCPAbortOnData"] == 1


def test_half_closed_fin_wait_2_still_receives_data():
    """shutdown(SHUT_WR): no orphan, data keeps flowing until the peer's FIN."""
    t = make_tcb("FIN_WAIT_2")
    out = t.send(t.seg(ACK | PSH, rs(1), ls(2), b"more", ts=(REMOTE_TS + 1, 0)), at=1 * MS)
    assert out == [t.out(ACK, ls(2), rs(5), win=LOCAL_WIN, ts=(1, REMOTE_TS + 1))]
    assert t.conn.recv() == b"more"
    assert t.conn.poll_at() == 0  # TW-6: a non-orphaned FIN_WAIT2 has no timer


# ---------------------------------------------------------------- LA-1, LA-2: SYN in a synchronized state


@pytest.mark.parametrize("state", ["ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "CLOSE_WAIT", "CLOSING", "LAST_ACK"])
@pytest.mark.parametrize("where", ["below", "at", "in-window", "beyond"])
def test_LA_1_syn_in_synchronized_state_gets_challenge_ack(state, where):
    t = make_tcb(state)
    c = t.conn
    seq = {"below": rs(-1_000_000), "at": c.rcv_nxt, "in-window": c.rcv_nxt + 1000,
           "beyond": rs(100_000_000)}[where]
    before = (c.state, c.snd_nxt, c.rcv_nxt, c.poll_at(), c.ts_recent)
    out = t.send(t.seg(SYN, seq, 0, win=64240, ts=(REMOTE_TS + 50_000, 0), mss=1460), at=10 * MS)
    assert out == [t.out(ACK, c.snd_nxt, c.rcv_nxt, ts=(10, REMOTE_TS))]
    assert (c.state, c.snd_nxt, c.rcv_nxt, c.poll_at(), c.ts_recent) == before
    assert t.counters["TcpExtTCPSYNChallenge"] == 1
    assert t.counters["TcpExtTCPChallengeACK"] == 1


def test_LA_1_syn_in_last_ack_gets_challenge_ack():
    """The new incarnation's SYN meets the old LAST_ACK: ACK seq = snd_nxt (after our FIN),
    ack = rcv_nxt (after the peer's FIN), TSecr = ts_recent (not the SYN's TSval)."""
    t = make_tcb("LAST_ACK")
    out = t.send(t.seg(SYN, 123_456_789, 0, win=64240, ts=(REMOTE_TS + 3000, 0), mss=1460), at=50 * MS)
    assert out == [t.out(ACK, ls(2), rs(2), ts=(50, REMOTE_TS))]
    assert t.state == "LAST_ACK"
    assert t.conn.poll_at() == RTO


def test_LA_2_challenge_ack_format_and_ratelimit():
    """At most one challenge ACK per tcp_invalid_ratelimit (500 ms) per socket."""
    t = make_tcb("LAST_ACK")
    syn = t.seg(SYN, 123_456_789, 0, win=64240, ts=(REMOTE_TS + 3000, 0), mss=1460)
    assert t.send(syn, at=50 * MS) == [t.out(ACK, ls(2), rs(2), ts=(50, REMOTE_TS))]
    assert t.send(syn, at=150 * MS) == []
    assert t.send(syn, at=549 * MS) == []
    assert t.send(syn, at=550 * MS) == [t.out(ACK, ls(2), rs(2), ts=(550, REMOTE_TS))]
    assert t.counters["TcpExtTCPSYNChallenge"] == 4
    assert t.counters["TcpExtTCPChallengeACK"] == 2
    assert t.counters["TcpExtTCPACKSkippedChallenge"] == 2


def test_LA_1_pre_3_6_lesson_profile_resets_an_in_window_syn():
    """RFC 793 (profiles rfc793, chapter): an in-window SYN is an error: RST seq 0, ack SEG.SEQ+1, CLOSED."""
    t = make_tcb("LAST_ACK", syn_in_lastack_rst=True)
    out = t.send(t.seg(SYN, rs(2) + 1000, 0, ts=None), at=50 * MS)
    assert [(s.flags, s.seq, s.ack) for s in out] == [(RST | ACK, 0, (rs(2) + 1001) & 0xFFFFFFFF)]
    assert t.state == "CLOSED" and t.conn.err == "ECONNRESET"


def test_LA_1_pre_3_6_lesson_profile_acks_an_out_of_window_syn():
    """RFC 793: an unacceptable segment gets an ACK, a SYN outside the window too."""
    t = make_tcb("LAST_ACK", syn_in_lastack_rst=True)
    out = t.send(t.seg(SYN, rs(2) + 10_000_000, 0, ts=None), at=50 * MS)
    assert [s.flags for s in out] == [ACK] and t.state == "LAST_ACK"


def test_LA_3_rst_seq_eq_ack_is_accepted_by_last_ack():
    """The SYN_SENT peer's RST carries seq = our challenge ACK's ack = rcv_nxt: LAST_ACK closes."""
    t = make_tcb("LAST_ACK")
    assert t.send(t.seg(RST, rs(2), 0, ts=None), at=60 * MS) == []
    assert t.state == "CLOSED"
    assert t.conn.poll_at() == 0


@pytest.mark.parametrize("state", ["CLOSE_WAIT", "LAST_ACK", "CLOSING"])
def test_rst_at_rcv_nxt_minus_1_accepted_after_peer_fin(state):
    """tcp_validate_incoming step 2: rcv_nxt - 1 is also exact in CLOSE_WAIT/LAST_ACK/CLOSING."""
    t = make_tcb(state)
    assert t.send(t.seg(RST, rs(1), 0, ts=None), at=1 * MS) == []
    assert t.state == "CLOSED"
    assert t.conn.err == ("EPIPE" if state == "CLOSE_WAIT" else "ECONNRESET")


# ---------------------------------------------------------------- LA-4: FIN retransmission and give-up


def test_LA_4_orphan_fin_retransmit_schedule_and_give_up_102s():
    """Orphan in LAST_ACK: FIN at 0, r, 2r, 4r, ... (r = RTO = 200 ms); destroyed at the first
    timer firing after model(8) = 511 x 200 ms = 102.2 s; no RST; TcpExtTCPAbortOnTimeout."""
    t = make_tcb("LAST_ACK", orphan=True)
    sent = t.run_timers(300 * SEC)
    times = [at for at, _ in sent]
    assert times == [RTO * k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256)]
    assert [s for _, s in sent] == [t.out(FIN | ACK, ls(1), rs(2), ts=(at // MS, REMOTE_TS)) for at in times]
    assert t.state == "CLOSED"
    assert t.conn.poll_at() == 0
    assert t.counters["TcpExtTCPAbortOnTimeout"] == 1
    # Destroyed exactly at the firing at 512 r = 102.4 s, the first after 102.2 s.
    t2 = make_tcb("LAST_ACK", orphan=True)
    t2.run_timers(102_400 * MS - 1)
    assert t2.state == "LAST_ACK"
    assert t2.tick(102_400 * MS) == []
    assert t2.state == "CLOSED"


@pytest.mark.parametrize("state", ["FIN_WAIT_1", "CLOSING"])
def test_LA_4_same_budget_in_fin_wait_1_and_closing(state):
    t = make_tcb(state, orphan=True)
    t.run_timers(102_400 * MS - 1)
    assert t.state == state
    t.run_timers(102_400 * MS)
    assert t.state == "CLOSED"


def test_LA_4_orphan_retries_sysctl_sets_the_boundary():
    """tcp_orphan_retries = 3 -> model(3) = 15 x 200 ms = 3 s: gone at the firing at 3.2 s."""
    t = make_tcb("LAST_ACK", orphan=True, orphan_retries=3)
    sent = t.run_timers(10 * SEC)
    assert [at for at, _ in sent] == [RTO * k for k in (1, 2, 4, 8)]
    assert t.state == "CLOSED"


def test_LA_4_not_orphaned_uses_retries2():
    """shutdown(SHUT_WR) from CLOSE_WAIT keeps the fd: budget tcp_retries2 (924.6 s)."""
    t = make_tcb("LAST_ACK")
    t.conn.orphan = False
    sent = t.run_timers(924_800 * MS - 1)
    # 0.2 .. 102.4 s doubling, then RTO capped at TCP_RTO_MAX = 120 s: 204.8, 324.8, ... 804.8 s.
    assert [at // MS for at, _ in sent] == [200 * 2**k for k in range(10)] + [204_800 + 120_000 * k for k in range(6)]
    assert t.state == "LAST_ACK"
    assert t.tick(924_800 * MS) == []  # the first firing past model(15) = 924.6 s
    assert t.state == "CLOSED"
    assert t.conn.err == "ETIMEDOUT"


def test_LA_4_ack_of_fin_stops_retransmission():
    t = make_tcb("LAST_ACK", orphan=True)
    t.run_timers(RTO)
    assert t.send(t.seg(ACK, rs(2), ls(2), ts=(REMOTE_TS + 1, 0)), at=RTO + 1) == []
    assert t.state == "CLOSED"


def test_syn_ack_in_close_wait_gets_challenge_ack():
    t = make_tcb("CLOSE_WAIT")
    out = t.send(t.seg(SYN | ACK, rs(2), ls(1), ts=(REMOTE_TS, 0)), at=1 * MS)
    assert out == [t.out(ACK, ls(1), rs(2), ts=(1, REMOTE_TS))]
    assert t.state == "CLOSE_WAIT"


def test_data_in_close_wait_is_ignored():
    t = make_tcb("CLOSE_WAIT")
    t.send(t.seg(ACK | PSH, rs(2), ls(1), b"late", ts=(REMOTE_TS, 0)), at=1 * MS)
    assert t.conn.recv() == b""
    assert t.conn.rcv_nxt == rs(2)

