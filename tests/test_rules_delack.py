"""Delayed ACK and quick-ack mode (DA-1..DA-7) and the window after the handshake (WIN-3).

Core-level tests on a fixture connection (ESTABLISHED at time 0, no timestamps, scale 7, RTO
200 ms, no data received yet: ato 0, no quick ACKs) and host-level ones on two hosts. Times
are µs; the engine's ticks are 4 ms (HZ=250) from time 0. Each rule was measured on 6.18
first (tests/scripts/delack-*.pkt, both stacks; docs/linux-rules.md).
"""

from __future__ import annotations

from conftest import LOCAL_WIN, ls, make_lan, make_tcb, rs, tx, tx_segments
from timewait.sim.host import Socket
from timewait.tcp.config import MS, SEC
from timewait.tcp.segment import ACK, FIN, PSH


def _data(t, n0: int, n: int, at: int) -> list:
    return t.send(t.seg(ACK | PSH, rs(1 + n0), ls(1), b"d" * n), at=at)


def _pingpong(t) -> None:
    """Data at 10 ms (a quick ACK), our answer at 20 ms: within ato, so interactive (DA-4)."""
    assert _data(t, 0, 100, 10 * MS) == [t.out(ACK, ls(1), rs(101))]
    t.conn.recv()
    t.conn.send(b"a" * 100, 20 * MS)
    assert [s.flags for s in t.drain()] == [ACK | PSH]
    assert t.conn.pingpong


def test_DA_1_DA_2_first_16_segments_are_acked_at_once_then_the_ack_waits():
    """tcp_event_data_recv: the first data starts quickack mode with min(rcv_wnd / (2 x
    rcv_mss), TCP_MAX_QUICKACKS) = 16 quick ACKs; each ACK sent spends one. The 17th
    segment (at 170 ms, tick 168 ms) waits ato = TCP_ATO_MIN: deadline 208 ms, the timer
    wheel fires one tick later, 212 ms."""
    t = make_tcb("ESTABLISHED", ts=False)
    for k in range(16):
        assert _data(t, 100 * k, 100, (k + 1) * 10 * MS) == [t.out(ACK, ls(1), rs(101 + 100 * k))]
    assert t.conn.quick == 0 and t.conn.ato == 40 * MS
    assert _data(t, 1600, 100, 170 * MS) == []
    assert t.conn.poll_at() == 212 * MS and t.conn.timer_name() == "delack"
    assert t.tick(212 * MS) == [t.out(ACK, ls(1), rs(1701))]
    assert t.counters["TcpExtDelayedACKs"] == 1


def test_DA_2_out_of_order_data_is_acked_at_once_in_pingpong_mode():
    t = make_tcb("ESTABLISHED", ts=False)
    _pingpong(t)
    assert _data(t, 300, 100, 50 * MS) == [t.out(ACK, ls(101), rs(101))]


def test_DA_2_DA_7_two_full_segments_wait_unread_and_the_read_acks_them():
    """In pingpong mode 2 x 1000 unread bytes would shrink the window (twice the unread bytes
    charged), so they wait; the read that takes them ACKs at once (__tcp_cleanup_rbuf: more
    than rcv_mss above rcv_wup)."""
    t = make_tcb("ESTABLISHED", ts=False)
    _pingpong(t)
    assert _data(t, 100, 1000, 50 * MS) == []
    assert _data(t, 1100, 1000, 55 * MS) == []
    assert t.conn.recv() == b"d" * 2000 and t.conn.ack_pending
    t.conn.flush(60 * MS)
    assert t.drain() == [t.out(ACK, ls(101), rs(2101), win=LOCAL_WIN)]


def test_DA_3_DA_4_fin_ack_waits_ato_after_data_and_the_close_carries_it():
    """tcp_fin enters pingpong mode: the ACK of the FIN (at 120 ms, tick 120) waits ato = 40 ms;
    a close() at 130 ms sends one FIN+ACK and clears the timer (tcp_event_ack_sent)."""
    t = make_tcb("ESTABLISHED", ts=False)
    assert _data(t, 0, 100, 10 * MS) == [t.out(ACK, ls(1), rs(101))]
    t.conn.recv()
    assert t.send(t.seg(FIN | ACK, rs(101), ls(1)), at=120 * MS) == []
    assert t.state == "CLOSE_WAIT" and t.conn.pingpong and t.conn.poll_at() == 164 * MS
    t.conn.close(130 * MS)
    assert t.drain() == [t.out(FIN | ACK, ls(1), rs(102))]
    assert t.conn.dack_at == 0 and t.conn.timer_name() == "rto"
    assert t.counters["TcpExtDelayedACKs"] == 0


def test_DA_3_bare_fin_without_data_is_acked_on_the_next_tick():
    """ato 0 (no data ever): tcp_send_delayed_ack arms the current tick, the wheel fires the
    next one: the FIN at 1 ms is ACKed at 4 ms, counted as TcpExtDelayedACKs."""
    t = make_tcb("ESTABLISHED", ts=False)
    assert t.send(t.seg(FIN | ACK, rs(1), ls(1)), at=1 * MS) == []
    assert t.tick(4 * MS) == [t.out(ACK, ls(1), rs(2))]
    assert t.counters["TcpExtDelayedACKs"] == 1


def test_DA_3_DA_4_the_timer_ends_pingpong_mode_so_the_next_segment_is_quick():
    t = make_tcb("ESTABLISHED", ts=False)
    _pingpong(t)
    assert _data(t, 100, 100, 60 * MS) == []
    assert t.tick(104 * MS) == [t.out(ACK, ls(101), rs(201))]
    assert not t.conn.pingpong and t.conn.ato == 40 * MS
    assert _data(t, 200, 100, 150 * MS) == [t.out(ACK, ls(101), rs(301))]


def test_DA_5_data_sent_carries_the_pending_ack_and_spends_no_quick_ack_twice():
    t = make_tcb("ESTABLISHED", ts=False)
    _pingpong(t)
    assert _data(t, 100, 100, 60 * MS) == [] and t.conn.dack_at
    t.conn.send(b"b" * 10, 61 * MS)
    assert t.drain() == [t.out(ACK | PSH, ls(101), rs(201), b"b" * 10)]
    assert t.conn.dack_at == 0 and not t.conn.ack_sched and t.conn.timer_name() == "rto"


def test_DA_6_retransmission_is_acked_at_once_and_counted_delayed_ack_lost():
    t = make_tcb("ESTABLISHED", ts=False)
    _pingpong(t)
    assert _data(t, 0, 100, 60 * MS) == [t.out(ACK, ls(101), rs(101))]
    assert t.counters["TcpExtDelayedACKLost"] == 1 and not t.conn.pingpong


def test_DA_6_retransmitted_fin_in_close_wait_is_acked_at_once():
    t = make_tcb("ESTABLISHED", ts=False)
    t.send(t.seg(FIN | ACK, rs(1), ls(1)), at=1 * MS)
    t.tick(4 * MS)
    assert t.send(t.seg(FIN | ACK, rs(1), ls(1)), at=10 * MS) == [t.out(ACK, ls(1), rs(2))]
    assert t.counters["TcpExtDelayedACKLost"] == 1


def test_DA_7_read_after_a_small_segment_acks_when_not_interactive():
    t = make_tcb("ESTABLISHED", ts=False)
    for k in range(16):
        _data(t, 100 * k, 100, (k + 1) * 10 * MS)
    assert _data(t, 1600, 100, 170 * MS) == []
    t.conn.recv()
    t.conn.flush(175 * MS)
    assert t.drain() == [t.out(ACK, ls(1), rs(1701))]


def test_DA_rfc793_profile_acks_every_segment_at_the_end_of_the_instant():
    t = make_tcb("ESTABLISHED", ts=False, delack=False)
    assert t.send(t.seg(FIN | ACK, rs(1), ls(1)), at=1 * MS) == [t.out(ACK, ls(1), rs(2))]


def _pair(server_close: bool):
    sim, c1, c2 = make_lan()
    acc: list[Socket] = []
    lsock = c2.socket()
    lsock.bind(0, 8888)
    lsock.listen()

    def accepted(ls_: Socket) -> None:
        s = ls_.accept()
        assert s is not None
        acc.append(s)
        s.on_data = lambda s_: s_.send(s_.recv())
        if server_close:
            s.on_eof = lambda s_: s_.close()

    lsock.on_accept = accepted
    s = c1.socket()
    s.on_data = lambda s_: s_.recv()
    s.connect("10.0.0.2", 8888)
    c1.call_at(100 * MS, lambda: s.send(b"ping"))
    c1.call_at(SEC, s.close)
    return sim


def test_DA_4_passive_close_is_three_segments_when_the_server_closes_on_eof():
    """c1 closes at 1 s; c2's application closes on EOF, within the delayed ACK: c2's FIN
    carries the ACK of c1's FIN, and c1 goes FIN_WAIT_1 -> FIN_WAIT_2 -> TIME_WAIT on it."""
    sim = _pair(server_close=True)
    sim.run(3)
    close = [(p[1], p[2]) for p in tx(sim) if p[0] >= SEC]
    assert close == [("c1", "F."), ("c2", "F."), ("c1", ".")]


def test_DA_1_DA_5_the_request_is_acked_at_once_then_answered():
    """The first data of a connection is quick-ACKed in the receive path, before the
    application's answer goes out (Linux wakes the reader after tcp_ack_snd_check)."""
    sim = _pair(server_close=True)
    sim.run(3)
    c2 = [(p[2], p[5]) for p in tx(sim, "c2") if 100 * MS <= p[0] < SEC]
    assert c2 == [(".", 0), ("P.", 4)]


def test_WIN_3_window_after_the_handshake_is_the_initial_one_rounded_up_to_the_scale():
    """__tcp_select_window: min(free space, rcv_ssthresh = 64240) rounded up to 2**10: 63
    (the kernel's `win 63`, tests/scripts/delack-quickack-first-segments.pkt); 65160 with
    timestamps gives 64."""
    sim, c1, c2 = make_lan(sysctls=["c1:net.ipv4.tcp_timestamps=0"])
    lsock = c2.socket()
    lsock.bind(0, 8888)
    lsock.listen()
    s = c1.socket()
    s.connect("10.0.0.2", 8888)
    sim.run(1)
    third = tx_segments(sim, "c1")[1][1]
    assert third.flags == ACK and third.win == (64240 + 1023) >> 10 == 63


def test_DA_8_tcp_quickack_sends_the_owed_ack_of_a_read_queue_and_ends_pingpong():
    t = make_tcb("ESTABLISHED", ts=False)
    _pingpong(t)
    assert _data(t, 100, 100, 60 * MS) == []
    t.conn.recv()
    assert not t.conn.ack_pending  # interactive: the read alone does not ACK (DA-7)
    t.conn.set_quickack(1)
    t.conn.flush(65 * MS)
    assert t.drain() == [t.out(ACK, ls(101), rs(201))] and not t.conn.pingpong
    assert _data(t, 200, 100, 70 * MS) == [t.out(ACK, ls(101), rs(301))]
    t.conn.set_quickack(0)
    assert t.conn.pingpong and _data(t, 300, 100, 80 * MS) == []
