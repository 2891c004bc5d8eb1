"""S5 two-msl: the worst case of the close fits in 2 MSL; a TIME_WAIT shorter than that does not."""

from __future__ import annotations

import pytest

from timewait.errors import UsageError
from timewait.measure import state_intervals
from timewait.scenarios import run_scenario
from timewait.scenarios.two_msl import computed_timeline
from timewait.tcp.config import SEC
from timewait.tcp.segment import ACK, FIN
from timewait.trace import RX, TIMER, TX


@pytest.fixture(scope="module")
def base():
    return run_scenario("two-msl")


def test_default_passes_and_fits(base) -> None:
    assert base.passed, [c for c in base.checks if not c.passed]
    assert base.metrics["fits"] is True
    assert (base.metrics["msl_s"], base.metrics["timewait_s"], base.metrics["worst_case_s"]) == (30, 60, 60)


def test_computed_timeline_is_one_msl_each_way() -> None:
    tl = computed_timeline(30, 60)
    assert [e["t"] for e in tl] == [0, 30, 30, 60, 60]
    assert "2 MSL" in tl[3]["event"]
    assert computed_timeline(45, 60)[3]["t"] == 90


def test_last_ack_and_repeated_fins_are_each_held_nearly_msl(base) -> None:
    recs = base.trace.records
    last_ack = next(r for r in recs if r[1] == TX and r[2] == "c1" and r[3].flags == ACK and r[0] == 2_001_400)
    arrive = next(r for r in recs if r[1] == RX and r[2] == "c2" and r[3].pid == last_ack[3].pid)
    assert arrive[0] - last_ack[0] == 29_900_200  # MSL - 0.1 s, plus the 0.2 ms link
    fins = [r for r in recs if r[1] == TX and r[2] == "c2" and r[3].flags == FIN | ACK]
    assert len(fins) == 9  # the FIN, then 8 repeats while the ACK is on its way
    rows = base.metrics["repeated_fins"]
    assert [r["sent"] for r in rows][:3] == [0.2002, 0.4006, 0.8014]
    assert all(r["arrived"] - r["sent"] == pytest.approx(29.9002) for r in rows)
    assert base.metrics["latest_fin_arrival_s"] == pytest.approx(55.5512)
    assert all(r["met"] == "TIME_WAIT: answered ACK" for r in rows)


def test_each_repeated_fin_restarts_the_timewait_timer(base) -> None:
    recs = base.trace.records
    rearms = [r for r in recs if r[1] == TIMER and r[2] == "c1" and r[4] == "timewait"]
    assert rearms[0][5] == 62_001_400
    assert rearms[-1][5] == rearms[-1][0] + 60 * SEC
    tw = [i for i in state_intervals(base.trace, "TIME_WAIT") if i.host == "c1"]
    assert len(tw) == 1 and tw[0].end == pytest.approx(2.0014 + 55.5512 + 60)


def test_timeline_simulated_is_sorted(base) -> None:
    ts = [e["t"] for e in base.metrics["timeline_simulated"]]
    assert ts == sorted(ts) and ts[0] == 0


def test_longer_msl_under_linux_does_not_fit() -> None:
    res = run_scenario("two-msl", params={"msl": 45})
    assert res.passed, [c for c in res.checks if not c.passed]
    assert res.metrics["fits"] is False
    assert res.metrics["latest_fin_arrival_s"] > 60


def test_msl_beyond_timewait_leaves_repeated_fins_to_a_closed_port() -> None:
    res = run_scenario("two-msl", params={"msl": 90})
    assert res.passed, [c for c in res.checks if not c.passed]
    assert all(r["met"] == "CLOSED: answered RST" for r in res.metrics["repeated_fins"])


def test_textbook_timewait_follows_msl_and_fits() -> None:
    res = run_scenario("two-msl", params={"msl": 45}, profile="rfc793")
    assert res.passed, [c for c in res.checks if not c.passed]
    assert res.metrics["timewait_s"] == 90 and res.metrics["fits"] is True


def test_without_rfc1337_an_rst_assassinates_the_timewait() -> None:
    res = run_scenario("two-msl", params={"rfc1337": "off"})
    assert res.passed, [c for c in res.checks if not c.passed]
    tw = [i for i in state_intervals(res.trace, "TIME_WAIT") if i.host == "c1"]
    assert tw[0].seconds < 60


def test_margin_must_stay_below_msl() -> None:
    with pytest.raises(UsageError, match="margin"):
        run_scenario("two-msl", params={"margin": 30})


def test_checks_hold_when_the_caller_turns_the_trace_off() -> None:
    # The checks are measured from the trace, so the scenario records it anyway (Lab.need_trace).
    assert run_scenario("two-msl", trace=False).passed
