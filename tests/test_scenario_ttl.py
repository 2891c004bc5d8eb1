"""S2 ttl: routers decrement TTL and drop at 0; the network discards packets older than MSL."""

from __future__ import annotations

import pytest

from timewait.errors import UsageError
from timewait.scenarios import run_scenario
from timewait.tcp.config import SEC
from timewait.tcp.segment import SYN
from timewait.trace import DROP, FWD, ICMP, RX, TX


@pytest.fixture(scope="module")
def ttl():
    return run_scenario("ttl")


def test_default_run_passes_every_check(ttl) -> None:
    assert ttl.passed, [c for c in ttl.checks if not c.passed]
    assert len(ttl.checks) >= 8


def test_ttl_12_loses_one_per_router_and_dies_at_r12(ttl) -> None:
    assert ttl.metrics["ttl_per_hop"] == [12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    assert ttl.metrics["dropped_at"] == "R12"
    assert ttl.metrics["drop_reason"] == "ttl"
    recs = ttl.trace.records
    syn = next(r[3] for r in recs if r[1] == TX and r[2] == "c1" and r[3].flags & SYN)
    assert syn.ttl == 12
    r1 = next(r for r in recs if r[1] == FWD and r[2] == "R1" and r[3].pid == syn.pid)
    assert (r1[3].ttl, r1[4].ttl) == (12, 11)
    # R12 receives it with TTL 1: dropped, and an ICMP time-exceeded is recorded at the same instant.
    drop = next(r for r in recs if r[1] == DROP and r[3].pid == syn.pid)
    icmp = next(r for r in recs if r[1] == ICMP and r[3].pid == syn.pid)
    assert drop[2] == icmp[2] == "R12" and drop[3].ttl == 1 and drop[0] == icmp[0]
    assert icmp[4] == "time-exceeded"
    # 12 links of 1 ms from c1 to R12.
    assert drop[0] == 12_000


def test_IC_1_the_icmp_ends_c1s_connect_at_once_with_ehostunreach(ttl) -> None:
    """tcp_v4_err: in SYN_SENT an ICMP time-exceeded is a hard error (the kernel lab's c1 sends one SYN
    and connect() fails 1.2 ms later): no SYN is retransmitted, and c1 never reaches c2."""
    recs = ttl.trace.records
    syns = [r[3] for r in recs if r[1] == TX and r[2] == "c1" and r[3].flags & SYN]
    assert [r[0] for r in recs if r[1] == TX and r[2] == "c1"] == [0]
    assert ttl.metrics["icmp_time_exceeded"] == len(syns) == 1
    # 12 links of 1 ms to R12, and the ICMP's 12 back.
    assert ttl.metrics["c1_connect"] == {"at": 0.024, "result": "EHOSTUNREACH"}
    closed = [r for r in recs if r[1] == "state" and r[2] == "c1" and r[5] == "CLOSED"]
    assert [(r[0], r[4]) for r in closed] == [(24_000, "SYN_SENT")]
    assert ttl.hosts["c1"]["counters"].get("TcpAttemptFails") == 1
    assert not any(r[1] == RX and r[2] == "c2" and r[3].src == syns[0].src for r in recs)


def test_ttl_64_crosses_the_same_path(ttl) -> None:
    assert ttl.metrics["ttl_initial_c3"] == 64
    assert ttl.metrics["ttl_at_c2_from_c3"] == 50


def test_segment_held_past_msl_dies_on_arrival_at_the_next_router(ttl) -> None:
    long_, short = ttl.metrics["held"]
    assert long_["data"] == "two\n" and long_["fate"] == "msl" and long_["where"] == "R1"
    assert long_["at"] == pytest.approx(1.1 + 45 + 0.001)
    assert short["data"] == "three\n" and short["fate"] == "arrived" and short["where"] == "c2"
    assert short["age_s"] == pytest.approx(20 + 0.015)
    assert short["ttl"] == 50  # a hop count, not a clock: 20 s of waiting cost no TTL
    assert ttl.metrics["msl_s"] == 30
    assert ttl.metrics["oldest_packet_delivered_s"] <= 30


def test_no_packet_travels_older_than_msl(ttl) -> None:
    for r in ttl.trace.records:
        if r[1] in (RX, FWD):
            assert r[0] - r[3].born <= 30 * SEC


def test_short_path_lets_ttl_12_through() -> None:
    res = run_scenario("ttl", params={"hops": 8})
    assert res.passed, [c for c in res.checks if not c.passed]
    assert res.metrics["ttl_per_hop"] == [12, 11, 10, 9, 8, 7, 6, 5, 4]
    assert res.metrics["ttl_at_c2"] == 4
    assert res.metrics["dropped_at"] is None


def test_sysctl_override_for_c1_wins_over_the_param() -> None:
    res = run_scenario("ttl", sysctls=["c1:net.ipv4.ip_default_ttl=20"])
    assert res.passed, [c for c in res.checks if not c.passed]
    assert res.metrics["ttl_initial"] == 20
    assert res.metrics["ttl_at_c2"] == 6


def test_longer_msl_lets_the_held_segment_live() -> None:
    res = run_scenario("ttl", params={"msl": 60})
    assert res.passed, [c for c in res.checks if not c.passed]
    long_ = res.metrics["held"][0]
    assert long_["fate"] == "arrived" and long_["where"] == "c2"


def test_zero_routers_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="hops"):
        run_scenario("ttl", params={"hops": "0"})


def test_checks_hold_when_the_caller_turns_the_trace_off() -> None:
    # The checks are measured from the trace, so the scenario records it anyway (Lab.need_trace).
    assert run_scenario("ttl", trace=False).passed
