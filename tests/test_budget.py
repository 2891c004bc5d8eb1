"""Every run bounded: events, memory and simulated time; the estimate; the sweep's one failed point."""

from __future__ import annotations

import json
import re
import time

import pytest

from timewait import sweep
from timewait.cli import main
from timewait.errors import BudgetExceeded
from timewait.scenarios import get_scenario, parse_params, run_budget, run_scenario
from timewait.sim.budget import CHECK_EVERY, STUCK_EVENTS, Budget, Scale
from timewait.sim.scheduler import Scheduler
from timewait.sim.simulation import Simulation


def ticker(s: Scheduler, period: int) -> None:
    """An endless timer every ``period`` µs."""

    def tick(_: object) -> None:
        s.at(s.now + period, tick)

    s.at(0, tick)


def test_event_budget_stops_exactly_and_leaves_the_rest_pending() -> None:
    b = Budget(events=1000, mem_mb=None, sim_s=None)
    with b.active():
        s = Scheduler()
    ticker(s, 7)
    with pytest.raises(BudgetExceeded, match=r"stopped after 1,000 events at t = 0\.007 s simulated: past its budget of 1,000 events \(if"):
        s.run()
    assert s.events == 1000 and s.pending() == 1  # the next tick is still there, not lost


def test_events_of_every_scheduler_of_the_run_count() -> None:
    b = Budget(events=300, mem_mb=None, sim_s=None)
    with b.active():
        first, second = Scheduler(), Scheduler()
    ticker(first, 1)
    first.run(until=199)
    ticker(second, 1)
    with pytest.raises(BudgetExceeded):
        second.run()
    assert (first.events, second.events) == (200, 100)


def test_simulated_time_budget_stops_the_clock_without_running_past_it() -> None:
    b = Budget(events=None, mem_mb=None, sim_s=2.0)
    with b.active():
        s = Scheduler()
    ticker(s, 300_000)
    with pytest.raises(BudgetExceeded, match="past its time budget of 2 s simulated"):
        s.run()
    assert s.now == 1_800_000
    s2 = Scheduler()  # made outside the budget: unbounded, as any Scheduler used directly
    ticker(s2, 300_000)
    s2.run(until=10_000_000)
    assert s2.now == 10_000_000


def test_run_until_inside_the_time_budget_is_not_stopped() -> None:
    b = Budget(events=None, mem_mb=None, sim_s=2.0)
    with b.active():
        s = Scheduler()
    ticker(s, 300_000)
    s.run(until=1_900_000)  # the next tick (2.1 s) is past both: no budget is hit
    assert s.now == 1_900_000


def test_memory_budget_stops_a_run_that_grows() -> None:
    hoard: list[bytes] = []
    b = Budget(events=None, mem_mb=30, sim_s=None)
    with b.active():
        s = Scheduler()

    def grow(_: object) -> None:
        hoard.append(bytearray(2000))
        s.at(s.now + 1, grow)

    s.at(0, grow)
    with pytest.raises(BudgetExceeded, match=r"MB more memory, past its budget of 30 MB"):
        s.run()
    # Checked every CHECK_EVERY events: at most that much more than the budget was allocated.
    assert len(hoard) * 2000 < 30e6 + 2 * CHECK_EVERY * 2000
    hoard.clear()


def test_a_zero_period_timer_under_the_generic_budget_stops_early() -> None:
    """The runaways of issue 15 (a sample period or a connect interval of 0): events pile up
    at one instant; the default budget stops them after STUCK_EVENTS, in about a second."""
    b = Budget.for_scale(Scale())
    t0 = time.perf_counter()
    with b.active():
        sim = Simulation(trace=False)
        # every() now refuses a 0 period itself; a callback that re-arms itself at the same
        # instant is the runaway the budget must still stop.
        def again(_arg: object = None) -> None:
            sim.sched.at(sim.sched.now, again)

        again()
        with pytest.raises(BudgetExceeded, match=r"events without the simulated clock moving"):
            sim.run(10)
    assert STUCK_EVENTS <= sim.sched.events < STUCK_EVENTS + 2 * CHECK_EVERY
    assert time.perf_counter() - t0 < 30


def test_budget_derived_from_the_declared_scale() -> None:
    sc = get_scenario("redis-short-connections")
    small = run_budget(sc, parse_params(sc, {}))
    big = run_budget(sc, parse_params(sc, {"connections": "1000000"}))
    assert small.event_limit is not None and big.event_limit is not None
    assert big.event_limit > 30 * small.event_limit
    assert small.estimate() is None  # 10,000 connections: not announced
    assert re.fullmatch(r"about \d+ (s|min), \d+ MB", big.estimate() or "")
    # Parameters that make the declared scale nonsense (a runaway) keep the floors.
    nonsense = run_budget(get_scenario("max-rate"), parse_params(get_scenario("max-rate"), {"margin": "0.999999"}))
    assert nonsense.event_limit is not None and nonsense.event_limit > 0


def test_generic_budget_grows_with_the_end_time() -> None:
    sc = get_scenario("nc-timewait")
    b = run_budget(sc, parse_params(sc, {}))
    before = b.event_limit
    b.note_end(100_000 * 1_000_000)
    assert b.event_limit is not None and before is not None and b.event_limit > before


def test_override_parsing() -> None:
    sc = get_scenario("nc-timewait")
    base = run_budget(sc, parse_params(sc, {}))
    b = base.override("events=2M, mem=1.5g, time=1h")
    assert (b.events, b.mem_mb, b.sim_s) == (2_000_000, 1500.0, 3600.0)
    off = base.override("off")
    assert (off.events, off.mem_mb, off.sim_s) == (None, None, None)
    assert base.override("mem=off").mem_mb is None


@pytest.mark.parametrize("text", ["events", "events=-1", "events=0", "mem=nan", "time=inf", "speed=2", "events=x"])
def test_bad_budget_is_one_line_exit_2_and_nothing_runs(capsys, text: str) -> None:
    rc = main(["run", "nc-timewait", "--budget", text])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("timewait: error: --budget")


def test_a_run_past_its_budget_exits_1_with_one_line(capsys) -> None:
    t0 = time.perf_counter()
    rc = main(["run", "redis-short-connections", "--set", "connections=50000", "--set", "rate=20000",
               "--budget", "events=30000"])
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("timewait: budget exceeded: redis-short-connections stopped after 30,000 events")
    assert "--budget events=120000" in err
    assert time.perf_counter() - t0 < 30


def test_a_big_run_announces_its_estimate_then_stops_at_its_budget(capsys) -> None:
    rc = main(["run", "max-rate", "--json", "--budget", "events=50000"])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 1 and out == "" and len(lines) == 2
    assert re.match(r"timewait: max-rate: about \d+ s, \d+ MB estimated \(budget: 50,000 events", lines[0])
    assert lines[1].startswith("timewait: budget exceeded: max-rate stopped after 50,000 events")


def test_a_normal_run_is_unaffected_by_its_budget() -> None:
    bounded = run_scenario("nc-timewait", trace=True)
    free = run_scenario("nc-timewait", trace=True, budget="off")
    assert json.dumps(bounded.to_json()) == json.dumps(free.to_json())
    r = run_scenario("redis-short-connections", trace=False)
    assert r.passed


def budget_runner(scenario, *, params, sysctls, profile, seed, trace):
    """run_scenario with a tight event budget, so one point of a small sweep runs away."""
    return run_scenario(scenario, params=params, sysctls=sysctls, profile=profile, seed=seed, trace=trace,
                        budget="events=5000")


def test_a_sweep_point_past_its_budget_fails_alone(tmp_path) -> None:
    spec_file = tmp_path / "s.toml"
    spec_file.write_text("""
scenario = "redis-short-connections"
seeds = [1]
metrics = ["succeeded"]
[grid]
"params.connections" = [20, 50000]
[output]
csv = "out/s.csv"
parquet = "out/s.parquet"
""")
    spec = sweep.load_spec(spec_file)
    report = sweep.run_sweep(spec, workers=1, runner=budget_runner, use_cache=False, progress=False)
    assert (report.computed, report.failed) == (2, 1)
    bad = report.failures[0]
    assert bad.point.params["connections"] == "50000"
    err = report.error_of(bad)
    assert err.startswith("BudgetExceeded: redis-short-connections stopped after 5,000 events")
    assert " at scheduler.py:" not in err and " at budget.py:" not in err
    assert (tmp_path / "out" / "s.csv").exists()
