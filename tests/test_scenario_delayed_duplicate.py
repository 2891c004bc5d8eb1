"""S3 delayed-duplicate: TIME_WAIT outlives a delayed segment; without it the new connection is corrupted."""

from __future__ import annotations

import pytest

from timewait.measure import state_intervals
from timewait.scenarios import run_scenario
from timewait.tcp.config import SEC
from timewait.tcp.segment import ACK, RST, SYN
from timewait.trace import RX, TX

CPORT, SPORT = 61594, 8080


def _tx(res, host):
    return [r for r in res.trace.records if r[1] == TX and r[2] == host]


def _stale(res):
    """The held copy of old-3: the c1 data segment sent at 1.2 s."""
    return next(r for r in _tx(res, "c1") if r[0] == 1_200_000)


@pytest.fixture(scope="module")
def on():
    return run_scenario("delayed-duplicate")


@pytest.fixture(scope="module")
def off():
    return run_scenario("delayed-duplicate", params={"timewait": "off"})


def test_timewait_on_passes_and_the_data_is_intact(on) -> None:
    assert on.passed, [c for c in on.checks if not c.passed]
    assert on.metrics["corrupted"] is False
    assert on.metrics["received_new"] == "new-1\nnew-2\nnew-3\n"


def test_on_the_4tuple_is_the_chapters_and_stays_held_60s(on) -> None:
    syns = [r[3] for r in _tx(on, "c1") if r[3].flags == SYN]
    assert [(s.sport, s.dport) for s in syns] == [(CPORT, SPORT), (CPORT, SPORT)]
    tw = [i for i in state_intervals(on.trace, "TIME_WAIT") if i.host == "c1"][0]
    assert tw.start == pytest.approx(2.0014) and tw.seconds == 60
    assert on.metrics["eaddrnotavail"] == 12  # 3, 8, ..., 58 s
    assert on.metrics["new_connection_at"] == pytest.approx(63.0004)


def test_on_the_delayed_segment_meets_no_connection_and_is_refused(on) -> None:
    stale = _stale(on)[3]
    assert stale.payload == b"old-3\n" and stale.sport == CPORT
    rx = next(r for r in on.trace.records if r[1] == RX and r[2] == "c2" and r[3].pid == stale.pid)
    assert rx[0] == 6_200_200
    rst = next(r for r in _tx(on, "c2") if r[0] == rx[0])
    assert rst[3].flags == RST and rst[3].seq == stale.ack  # TW-R3: seq = the trigger's ACK
    # c1's TIME_WAIT drops that RST silently (seq != rcv_nxt): still there afterwards.
    tw = [i for i in state_intervals(on.trace, "TIME_WAIT") if i.host == "c1"][0]
    assert tw.end == pytest.approx(62.0014)
    assert on.metrics["stale_fate"] == "no connection for it: answered with RST"


def test_timewait_off_passes_and_the_data_is_corrupted(off) -> None:
    assert off.passed, [c for c in off.checks if not c.passed]
    assert off.metrics["corrupted"] is True
    assert off.metrics["received_new"] == "new-1\nnew-2\nold-3\n"
    assert off.metrics["eaddrnotavail"] == 0
    assert off.metrics["new_connection_at"] == pytest.approx(3.0004)


def test_off_the_stale_segment_lands_exactly_at_rcv_nxt(off) -> None:
    syns = [r for r in _tx(off, "c1") if r[3].flags == SYN]
    synacks = [r for r in _tx(off, "c2") if r[3].flags == SYN | ACK]
    assert syns[1][0] == 3 * SEC
    # Both ends start the new incarnation at the old ISNs: the arranged wrap coincidence.
    assert syns[1][3].seq == syns[0][3].seq and synacks[1][3].seq == synacks[0][3].seq
    stale = _stale(off)[3]
    assert stale.seq == (syns[1][3].seq + 1 + 12) & 0xFFFFFFFF  # after "new-1\n" and "new-2\n"
    assert off.metrics["stale_seq_minus_rcv_nxt"] == 0
    ack = next(r for r in _tx(off, "c2") if r[0] == 6_200_200)
    assert ack[3].flags == ACK and ack[3].ack == stale.end_seq  # taken in order
    # The genuine "new-3\n" arrives later as a duplicate: same ACK again, nothing delivered.
    new3 = next(r for r in _tx(off, "c1") if r[3].payload == b"new-3\n")
    assert new3[3].seq == stale.seq
    dup = next(r for r in _tx(off, "c2") if r[0] > new3[0])
    assert dup[3].ack == stale.end_seq


def test_off_with_timestamps_paws_rejects_the_stale_segment() -> None:
    res = run_scenario("delayed-duplicate", params={"timewait": "off", "timestamps": "on"})
    assert res.passed, [c for c in res.checks if not c.passed]
    assert res.metrics["corrupted"] is False
    assert res.hosts["c2"]["counters"]["TcpExtPAWSEstab"] >= 1


def test_off_with_distant_isn_the_stale_segment_misses_the_window() -> None:
    res = run_scenario("delayed-duplicate", params={"timewait": "off", "isn_shift": 100000})
    assert res.passed, [c for c in res.checks if not c.passed]
    assert res.metrics["corrupted"] is False
    assert res.metrics["stale_seq_minus_rcv_nxt"] == -100000


def test_off_with_a_delay_beyond_msl_the_network_kills_it() -> None:
    res = run_scenario("delayed-duplicate", params={"timewait": "off", "delay": 45})
    assert res.passed, [c for c in res.checks if not c.passed]
    assert res.metrics["stale_fate"] == "dropped (msl)"
    assert res.metrics["corrupted"] is False


def test_on_with_timestamps_linux_takes_the_timewait_over_and_paws_guards() -> None:
    res = run_scenario("delayed-duplicate", params={"timestamps": "on"})
    assert res.passed, [c for c in res.checks if not c.passed]
    assert res.hosts["c1"]["counters"]["TcpExtTWRecycled"] == 1
    assert res.metrics["corrupted"] is False


def test_timeline_is_sorted_and_names_the_stale_arrival(off) -> None:
    times = [t for t, _ in off.metrics["timeline"]]
    assert times == sorted(times)
    assert any("c2 takes the stale bytes" in what for _, what in off.metrics["timeline"])


def test_checks_hold_when_the_caller_turns_the_trace_off() -> None:
    # The checks are measured from the trace, so the scenario records it anyway (Lab.need_trace).
    assert run_scenario("delayed-duplicate", trace=False).passed
