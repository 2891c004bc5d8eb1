"""ESTABLISHED: data in and out, reassembly, the receive window, retransmission, RFC 5961
reset checks and PAWS (TS-5). Exact segments and times (µs)."""

from __future__ import annotations

from conftest import LOCAL_WIN, MSS, REMOTE_TS, RTO, ls, make_tcb, rs
from timewait.tcp.config import MS, SEC
from timewait.tcp.segment import ACK, FIN, PSH, RST, SYN


def test_in_order_data_is_delivered_and_acked():
    t = make_tcb("ESTABLISHED")
    out = t.send(t.seg(ACK | PSH, rs(1), ls(1), b"hello", ts=(REMOTE_TS + 1, 0)), at=1 * MS)
    assert out == [t.out(ACK, ls(1), rs(6), win=LOCAL_WIN, ts=(1, REMOTE_TS + 1))]
    assert t.conn.recv() == b"hello"


def test_sequence_numbers_wrap():
    """REMOTE_SEQ sits 300 below 2**32: 400 bytes carry rcv_nxt across the wrap."""
    t = make_tcb("ESTABLISHED")
    t.send(t.seg(ACK | PSH, rs(1), ls(1), b"a" * 400, ts=(REMOTE_TS, 0)), at=1 * MS)
    assert t.conn.rcv_nxt == rs(401) == 101
    assert t.conn.recv() == b"a" * 400


def test_out_of_order_segments_are_reassembled():
    t = make_tcb("ESTABLISHED")
    ts = (REMOTE_TS, 0)
    # 'world' arrives first (a hole at rs(1)..rs(6)): dup ACK for rs(1), nothing delivered.
    out = t.send(t.seg(ACK | PSH, rs(6), ls(1), b"world", ts=ts), at=1 * MS)
    assert out == [t.out(ACK, ls(1), rs(1), ts=(1, REMOTE_TS))]
    assert t.conn.recv() == b""
    # A later segment, also out of order.
    out = t.send(t.seg(ACK | PSH, rs(11), ls(1), b"!!", ts=ts), at=2 * MS)
    assert out == [t.out(ACK, ls(1), rs(1), ts=(2, REMOTE_TS))]
    # The hole fills: everything is delivered in order and acknowledged at once.
    out = t.send(t.seg(ACK | PSH, rs(1), ls(1), b"hello", ts=ts), at=3 * MS)
    assert out == [t.out(ACK, ls(1), rs(13), win=LOCAL_WIN, ts=(3, REMOTE_TS))]
    assert t.conn.recv() == b"helloworld!!"


def test_overlapping_retransmission_is_trimmed():
    t = make_tcb("ESTABLISHED")
    ts = (REMOTE_TS, 0)
    t.send(t.seg(ACK | PSH, rs(1), ls(1), b"abcd", ts=ts), at=1 * MS)
    out = t.send(t.seg(ACK | PSH, rs(3), ls(1), b"cdef", ts=ts), at=2 * MS)
    assert out == [t.out(ACK, ls(1), rs(7), win=LOCAL_WIN, ts=(2, REMOTE_TS))]
    assert t.conn.recv() == b"abcdef"


def test_duplicate_data_is_reacked_not_delivered():
    t = make_tcb("ESTABLISHED")
    ts = (REMOTE_TS, 0)
    t.send(t.seg(ACK | PSH, rs(1), ls(1), b"abcd", ts=ts), at=1 * MS)
    assert t.conn.recv() == b"abcd"
    out = t.send(t.seg(ACK | PSH, rs(1), ls(1), b"abcd", ts=ts), at=2 * MS)
    assert out == [t.out(ACK, ls(1), rs(5), ts=(2, REMOTE_TS))]
    assert t.conn.recv() == b""


def test_receive_window_trims_data_beyond_the_right_edge():
    """We offer 65536 bytes: a segment crossing the right edge is cut there."""
    t = make_tcb("ESTABLISHED", rcv_buf=2 * 1000)  # window = rcv_buf / 2 = 1000 bytes
    ts = (REMOTE_TS, 0)
    out = t.send(t.seg(ACK | PSH, rs(1), ls(1), b"x" * 1200, ts=ts), at=1 * MS)
    assert t.conn.rcv_nxt == rs(1001)
    assert out == [t.out(ACK, ls(1), rs(1001), win=0, ts=(1, REMOTE_TS))]
    # Window closed: new data is not accepted, the ACK repeats the zero window.
    out = t.send(t.seg(ACK | PSH, rs(1001), ls(1), b"y" * 10, ts=ts), at=2 * MS)
    assert out == [t.out(ACK, ls(1), rs(1001), win=0, ts=(2, REMOTE_TS))]
    assert t.conn.recv() == b"x" * 1000


def test_segment_beyond_the_window_gets_dupack():
    """tcp_sequence(): seq after rcv_nxt + window -> tcp_send_dupack (data, not rate limited)."""
    t = make_tcb("ESTABLISHED", rcv_buf=2 * 1000)
    out = t.send(t.seg(ACK | PSH, rs(1 + 5000), ls(1), b"zz", ts=(REMOTE_TS, 0)), at=1 * MS)
    assert out == [t.out(ACK, ls(1), rs(1), win=(1000 + 127) >> 7, ts=(1, REMOTE_TS))]  # WIN-3: rounded up
    assert t.conn.ooo == {}


def test_old_pure_acks_below_the_window_are_rate_limited():
    """Zero-length out-of-window segments get at most one dup-ACK per tcp_invalid_ratelimit."""
    t = make_tcb("ESTABLISHED")
    old = t.seg(ACK, rs(-5000), ls(1), ts=(REMOTE_TS, 0))
    assert t.send(old, at=1 * MS) == [t.out(ACK, ls(1), rs(1), ts=(1, REMOTE_TS))]
    assert t.send(old, at=100 * MS) == []
    assert t.send(old, at=501 * MS) == [t.out(ACK, ls(1), rs(1), ts=(501, REMOTE_TS))]
    assert t.counters["TcpExtTCPACKSkippedSeq"] == 1


def test_ACK_1_ack_of_unsent_data_is_dropped_with_a_challenge_ack():
    """tcp_ack: an ACK beyond snd_nxt drops the segment (its data too) and, as 6.18 does
    (tests/scripts/ack-of-unsent-data-challenged.pkt on both stacks), sends a challenge ACK:
    seq snd_nxt, ack rcv_nxt, the TSecr still the old ts_recent."""
    t = make_tcb("ESTABLISHED")
    t.conn.send(b"abc", 0)
    t.drain()
    out = t.send(t.seg(ACK | PSH, rs(1), ls(100), b"data", ts=(REMOTE_TS, 0)), at=1 * MS)
    assert [(s.seq, s.ack, s.flags, s.payload) for s in out] == [(ls(4), rs(1), ACK, b"")]
    assert t.conn.snd_una == ls(1)
    assert t.conn.rcv_nxt == rs(1)


def test_data_sent_in_mss_segments_within_the_peer_window():
    t = make_tcb("ESTABLISHED")
    t.conn.send(b"q" * 3000, 3 * MS)
    out = t.drain()
    assert out == [
        t.out(ACK, ls(1), rs(1), b"q" * MSS, ts=(3, REMOTE_TS)),
        t.out(ACK, ls(1 + MSS), rs(1), b"q" * MSS, ts=(3, REMOTE_TS)),
        t.out(ACK | PSH, ls(1 + 2 * MSS), rs(1), b"q" * 80, ts=(3, REMOTE_TS)),
    ]
    assert t.conn.poll_at() == 3 * MS + RTO


def test_data_retransmission_with_backoff():
    """The head segment is resent at r, 2r, 4r, 8r, ... after it was sent (r = RTO)."""
    t = make_tcb("ESTABLISHED")
    t.conn.send(b"abc", 0)
    assert t.drain() == [t.out(ACK | PSH, ls(1), rs(1), b"abc", ts=(0, REMOTE_TS))]
    sent = t.run_timers(7 * SEC)
    assert [at for at, _ in sent] == [RTO * k for k in (1, 2, 4, 8, 16, 32)]
    assert [s for _, s in sent] == [t.out(ACK | PSH, ls(1), rs(1), b"abc", ts=(at // MS, REMOTE_TS))
                                    for at, _ in sent]
    assert t.counters["TcpRetransSegs"] == 6
    # The ACK stops it.
    t.send(t.seg(ACK, rs(1), ls(4), ts=(REMOTE_TS + 1, 0)), at=7 * SEC)
    assert t.conn.poll_at() == 0
    assert t.conn.snd_una == ls(4)


def test_established_with_owner_gives_up_after_retries2_924_6s():
    """tcp_retries2 = 15 -> model(15) = 1023 x 0.2 + 6 x 120 s = 924.6 s after the first send."""
    t = make_tcb("ESTABLISHED")
    t.conn.send(b"abc", 0)
    t.drain()
    sent = t.run_timers(924_800 * MS - 1)
    assert len(sent) == 16 and sent[-1][0] == 804_800 * MS
    assert t.state == "ESTABLISHED"
    t.run_timers(924_800 * MS)
    assert t.state == "CLOSED"
    assert t.conn.err == "ETIMEDOUT"
    assert t.counters["TcpExtTCPAbortOnTimeout"] == 1


def test_RFC5961_rst_in_window_not_exact_gets_challenge_ack():
    t = make_tcb("ESTABLISHED")
    out = t.send(t.seg(RST, rs(100), 0, ts=None), at=1 * MS)
    assert out == [t.out(ACK, ls(1), rs(1), ts=(1, REMOTE_TS))]
    assert t.state == "ESTABLISHED"
    assert t.counters["TcpExtTCPChallengeACK"] == 1


def test_RFC5961_rst_exactly_at_rcv_nxt_resets():
    t = make_tcb("ESTABLISHED")
    assert t.send(t.seg(RST, rs(1), 0, ts=None), at=1 * MS) == []
    assert t.state == "CLOSED"
    assert t.conn.err == "ECONNRESET"


def test_RFC5961_rst_out_of_window_is_dropped_silently():
    t = make_tcb("ESTABLISHED")
    assert t.send(t.seg(RST, rs(1_000_000), 0, ts=None), at=1 * MS) == []
    assert t.state == "ESTABLISHED"


def test_rst_challenge_acks_share_the_500ms_limit():
    t = make_tcb("ESTABLISHED")
    rst = t.seg(RST, rs(100), 0, ts=None)
    assert len(t.send(rst, at=1 * MS)) == 1
    assert t.send(rst, at=2 * MS) == []
    assert len(t.send(rst, at=501 * MS)) == 1


def test_RFC793_profile_in_window_rst_resets_without_challenge():
    t = make_tcb("ESTABLISHED", challenge_ack=False)
    assert t.send(t.seg(RST, rs(100), 0, ts=None), at=1 * MS) == []
    assert t.state == "CLOSED"


def test_TS_5_paws_rejects_old_tsval_with_dupack():
    t = make_tcb("ESTABLISHED")
    out = t.send(t.seg(ACK | PSH, rs(1), ls(1), b"old", ts=(REMOTE_TS - 10, 0)), at=1 * MS)
    assert out == [t.out(ACK, ls(1), rs(1), ts=(1, REMOTE_TS))]
    assert t.conn.rcv_nxt == rs(1)
    assert t.counters["TcpExtPAWSEstab"] == 1


def test_TS_5_paws_window_of_one_tick_is_tolerated():
    t = make_tcb("ESTABLISHED")
    t.send(t.seg(ACK | PSH, rs(1), ls(1), b"ok", ts=(REMOTE_TS - 1, 0)), at=1 * MS)
    assert t.conn.recv() == b"ok"


def test_TS_5_old_pure_ack_failing_paws_is_dropped_silently():
    """6.15+: a pure ACK below rcv_nxt failing PAWS is counted as PAWSOldAck, no dup-ACK."""
    t = make_tcb("ESTABLISHED")
    assert t.send(t.seg(ACK, rs(0), ls(1), ts=(REMOTE_TS - 10, 0)), at=1 * MS) == []
    assert (t.counters["TcpExtPAWSOldAck"], t.counters["TcpExtPAWSEstab"]) == (1, 0)


def test_TS_5_disordered_duplicate_ack_passes_paws():
    t = make_tcb("ESTABLISHED")
    assert t.send(t.seg(ACK, rs(1), ls(1), ts=(REMOTE_TS - 10, 0)), at=1 * MS) == []
    assert t.counters["TcpExtPAWSEstab"] == 0


def test_TS_5_disordered_ack_only_within_the_replay_window():
    """tcp_tsval_replay: a reordered duplicate ACK passes PAWS only if its TSval is at most
    RTO x 1200 / HZ ticks (1.2 x RTO in ms: 240 for the 200 ms RTO) behind ts_recent."""
    t = make_tcb("ESTABLISHED")
    assert t.send(t.seg(ACK, rs(1), ls(1), ts=(REMOTE_TS - 240, 0)), at=1 * MS) == []
    assert t.counters["TcpExtPAWSEstab"] == 0
    out = t.send(t.seg(ACK, rs(1), ls(1), ts=(REMOTE_TS - 241, 0)), at=2 * MS)
    assert out == [t.out(ACK, ls(1), rs(1), ts=(2, REMOTE_TS))]
    assert t.counters["TcpExtPAWSEstab"] == 1


def test_TS_5_paws_dupacks_for_zero_length_segments_are_rate_limited():
    """The dup-ACK for a PAWS-rejected segment goes through tcp_oow_rate_limited: data and FIN
    always get one, zero-length segments at most one per 500 ms (the rest count TCPACKSkippedPAWS)."""
    t = make_tcb("ESTABLISHED")
    t.conn.send(b"x", 0)
    t.drain()
    fin = t.seg(FIN | ACK, rs(1), ls(1), ts=(REMOTE_TS - 1000, 0))
    data = t.seg(ACK | PSH, rs(1), ls(1), b"old", ts=(REMOTE_TS - 1000, 0))
    bare = t.seg(ACK, rs(1), ls(2), ts=(REMOTE_TS - 1000, 0))  # acks new data: not a duplicate ACK
    assert t.send(bare, at=1 * MS) == [t.out(ACK, ls(2), rs(1), ts=(1, REMOTE_TS))]
    assert t.send(bare, at=2 * MS) == []
    assert t.send(data, at=3 * MS) == [t.out(ACK, ls(2), rs(1), ts=(3, REMOTE_TS))]
    assert t.send(fin, at=4 * MS) == [t.out(ACK, ls(2), rs(1), ts=(4, REMOTE_TS))]
    assert t.send(bare, at=501 * MS) == [t.out(ACK, ls(2), rs(1), ts=(501, REMOTE_TS))]
    assert (t.counters["TcpExtPAWSEstab"], t.counters["TcpExtTCPACKSkippedPAWS"]) == (5, 1)
    assert (t.state, t.conn.rcv_nxt, t.conn.snd_una) == ("ESTABLISHED", rs(1), ls(1))


def test_TS_5_segment_without_ack_flag_failing_paws_is_dropped_silently():
    """Neither ACK, RST nor SYN: discarded before tcp_validate_incoming, so no PAWS dup-ACK (nor
    tcp_sequence's for one beyond the window)."""
    t = make_tcb("ESTABLISHED")
    assert t.send(t.seg(PSH, rs(1), 0, b"noack", ts=(REMOTE_TS - 1000, 0)), at=1 * MS) == []
    assert t.send(t.seg(FIN, rs(1_000_000), 0, ts=(REMOTE_TS, 0)), at=2 * MS) == []
    assert t.counters["TcpExtPAWSEstab"] == 0


def test_TS_5_paws_failing_syn_gets_challenge_ack():
    t = make_tcb("ESTABLISHED")
    out = t.send(t.seg(SYN, rs(50), 0, ts=(REMOTE_TS - 10, 0)), at=1 * MS)
    assert out == [t.out(ACK, ls(1), rs(1), ts=(1, REMOTE_TS))]
    assert t.counters["TcpExtTCPSYNChallenge"] == 1


def test_TS_4_tsecr_echoes_ts_recent_which_only_in_order_segments_move():
    """Every segment we send echoes ts_recent. It moves (with its stamp) only for a segment
    starting at or before rcv_nxt (Last.ACK.sent) whose TSval is not older."""
    t = make_tcb("ESTABLISHED")
    out = t.send(t.seg(ACK | PSH, rs(1), ls(1), b"a", ts=(REMOTE_TS + 7, 0)), at=1 * MS)
    assert out == [t.out(ACK, ls(1), rs(2), win=LOCAL_WIN, ts=(1, REMOTE_TS + 7))]
    assert (t.conn.ts_recent, t.conn.ts_recent_stamp) == (REMOTE_TS + 7, 1 * MS)
    # Out of order (seq after rcv_nxt): ACKed, TSecr unchanged.
    out = t.send(t.seg(ACK | PSH, rs(10), ls(1), b"b", ts=(REMOTE_TS + 9, 0)), at=2 * MS)
    assert out == [t.out(ACK, ls(1), rs(2), win=LOCAL_WIN, ts=(2, REMOTE_TS + 7))]
    # In order and within the PAWS window (1 behind): accepted, but ts_recent does not go back.
    out = t.send(t.seg(ACK | PSH, rs(2), ls(1), b"c", ts=(REMOTE_TS + 6, 0)), at=3 * MS)
    assert out == [t.out(ACK, ls(1), rs(3), win=LOCAL_WIN, ts=(3, REMOTE_TS + 7))]
    assert t.conn.ts_recent_stamp == 1 * MS
    # Our own data echoes it too.
    t.conn.send(b"x", 4 * MS)
    assert t.drain() == [t.out(ACK | PSH, ls(1), rs(3), b"x", win=LOCAL_WIN, ts=(4, REMOTE_TS + 7))]


def test_TS_4_segment_acking_unsent_data_does_not_move_ts_recent():
    """tcp_ack replaces ts_recent only once the ACK is known acceptable: a segment acking data
    never sent is discarded, and its far newer TSval must not make later segments fail PAWS."""
    t = make_tcb("ESTABLISHED")
    challenge = t.send(t.seg(ACK | PSH, rs(1), ls(500), b"bogus", ts=(REMOTE_TS + 100_000, 0)), at=1 * MS)
    assert len(challenge) == 1 and challenge[0].ts == (1, REMOTE_TS)  # ACK-1, echoing the old ts_recent
    assert t.conn.ts_recent == REMOTE_TS
    out = t.send(t.seg(ACK | PSH, rs(1), ls(1), b"ok", ts=(REMOTE_TS + 5, 0)), at=2 * MS)
    assert out == [t.out(ACK, ls(1), rs(3), win=LOCAL_WIN, ts=(2, REMOTE_TS + 5))]
    assert t.conn.recv() == b"ok"


def test_TS_4_segment_without_ack_flag_does_not_move_ts_recent():
    t = make_tcb("ESTABLISHED")
    assert t.send(t.seg(PSH, rs(1), 0, b"noack", ts=(REMOTE_TS + 100_000, 0)), at=1 * MS) == []
    out = t.send(t.seg(ACK | PSH, rs(1), ls(1), b"ok", ts=(REMOTE_TS + 5, 0)), at=2 * MS)
    assert out == [t.out(ACK, ls(1), rs(3), win=LOCAL_WIN, ts=(2, REMOTE_TS + 5))]


def test_segment_without_ack_flag_is_dropped():
    t = make_tcb("ESTABLISHED")
    assert t.send(t.seg(PSH, rs(1), 0, b"noack", ts=(REMOTE_TS, 0)), at=1 * MS) == []
    assert t.conn.rcv_nxt == rs(1)


def test_peer_fin_moves_established_to_close_wait():
    """The ACK of the FIN is delayed (DA-4: tcp_fin enters pingpong mode); with no data ever
    received ato is 0, so the delack timer fires on the next tick (4 ms at HZ=250)."""
    t = make_tcb("ESTABLISHED")
    out = t.send(t.seg(FIN | ACK, rs(1), ls(1), ts=(REMOTE_TS + 1, 0)), at=1 * MS)
    assert out == [] and t.state == "CLOSE_WAIT"
    assert t.conn.poll_at() == 4 * MS and t.conn.timer_name() == "delack"
    assert t.tick(4 * MS) == [t.out(ACK, ls(1), rs(2), ts=(4, REMOTE_TS + 1))]
    assert t.counters["TcpExtDelayedACKs"] == 1


def test_fin_out_of_order_is_taken_when_the_hole_fills():
    """tcp_data_queue_ofo keeps the FIN with its segment; tcp_ofo_queue processes it in order."""
    t = make_tcb("ESTABLISHED")
    ts = (REMOTE_TS, 0)
    t.send(t.seg(FIN | ACK | PSH, rs(4), ls(1), b"def", ts=ts), at=1 * MS)
    out = t.send(t.seg(ACK | PSH, rs(1), ls(1), b"abc", ts=ts), at=2 * MS)
    assert t.state == "CLOSE_WAIT"
    assert t.conn.rcv_nxt == rs(8)
    assert out == [t.out(ACK, ls(1), rs(8), win=LOCAL_WIN, ts=(2, REMOTE_TS))]


def test_window_field_uses_our_scale():
    t = make_tcb("ESTABLISHED")
    out = t.send(t.seg(ACK | PSH, rs(1), ls(1), b"x" * 2000, ts=(REMOTE_TS, 0)), at=1 * MS)
    # WIN-3: the free space (under the initial 64240 now) rounded up to the 2**7 unit
    assert out[0].win == (65536 - 2000 + 127) >> 7 == LOCAL_WIN - 5
