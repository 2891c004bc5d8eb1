"""Telemetry beside the trace, the census at T, and the plots drawn from the telemetry (issue 11)."""

from __future__ import annotations

import functools
from collections import Counter

import pytest

from timewait.cli import main
from timewait.report.plots import plot_figure
from timewait.report.sockets import census_at, sockets_at, to_us
from timewait.report.ss import ss_table
from timewait.result import RunResult
from timewait.scenarios import Lab, get_scenario, parse_params, run_scenario
from timewait.sim.simulation import Simulation
from timewait.tcp.states import NAMES

SMALL = ["nc-timewait", "lost-last-ack", "tw-reuse", "tw-recycle-nat", "nat", "delayed-duplicate", "linger",
         "simultaneous-close", "two-msl", "ttl", "timestamps"]


def _lab(name: str, **params: object) -> Lab:
    sc = get_scenario(name)
    lab = Lab(sc, parse_params(sc, params), [], sc.profile, 1, True, False)
    sc.fn(lab)
    return lab


@pytest.mark.parametrize("name", SMALL)
def test_counts_match_the_trace_at_every_sample_and_the_hosts_at_the_end(name: str) -> None:
    lab = _lab(name)
    sim = lab.sim
    for host in sim.hosts.values():
        want = {k: v for k, v in host.states().items() if k != "LISTEN"}
        assert {NAMES[i]: v for i, v in enumerate(host.tel.states) if v} == want, host.name
    tel = sim.telemetry
    assert len(tel.times) > 100
    assert all(b - a == tel.step for a, b in zip(tel.times, tel.times[1:], strict=False))
    recs = sim.trace.records
    counts: Counter[tuple[str, str]] = Counter()
    i = 0
    for k, t in enumerate(tel.times):
        while i < len(recs) and recs[i][0] <= t:
            r = recs[i]
            if r[1] == "state":
                counts[(r[2], r[4])] -= r[4] != "CLOSED"
                counts[(r[2], r[5])] += r[5] != "CLOSED"
            i += 1
        for hn, store in tel.values.items():
            for st in NAMES[2:]:
                got = store[st][k] if st in store else 0
                assert got == counts[(hn, st)], (hn, st, t)


def _without_series(r: RunResult) -> dict:
    d = r.to_json()
    del d["series"]
    return d


def test_the_sampler_changes_no_result() -> None:
    """A grid 1,000 times finer runs the same events: same JSON, same trace."""
    for name, params in (("lost-last-ack", None), ("redis-short-connections", {"connections": "1500"})):
        a = run_scenario(name, params=params)
        b = run_scenario(name, params=params, sample_every_s=0.0001)
        assert _without_series(a) == _without_series(b)
        assert [r[:3] for r in a.trace.records] == [r[:3] for r in b.trace.records]
        assert b.telemetry[0].step_us == 100 and a.telemetry[0].step_us > 100


def test_grid_halves_past_twice_the_target_and_stays_uniform() -> None:
    sim = Simulation(seed=1)
    a, b = sim.add_host("a", "10.0.0.1"), sim.add_host("b", "10.0.0.2")
    sim.link(a, b)
    sim.telemetry.step = 1000  # as if planned for 1 s, then run for 7 s in small steps
    for k in range(1, 71):
        sim.run(k / 10)
    tel = sim.telemetry
    assert 1000 <= len(tel.times) < 2000
    assert tel.times[0] == 0 and all(y - x == tel.step for x, y in zip(tel.times, tel.times[1:], strict=False))
    assert tel.step == 4000 and all(len(v) == len(tel.times) for v in tel.values["a"].values())


@pytest.mark.parametrize("name,times", [("nc-timewait", [1, 2.0005, 3, 62.0014, 62.1]),
                                        ("lost-last-ack", [1, 3.0, 50, 61.5])])
def test_census_lists_what_the_trace_rebuilds(name: str, times: list[float]) -> None:
    r = run_scenario(name, census_at=times)
    for t in times:
        census = census_at(r, to_us(t))
        assert census is not None
        trace = sockets_at(r, to_us(t))
        rows = {h: [(s.key, s.state, s.send_q, s.timer, s.deadline_us, s.retrans) for s in v] for h, v in census.items()}
        assert rows == {h: [(s.key, s.state, s.send_q, s.timer, s.deadline_us, s.retrans) for s in v]
                        for h, v in trace.items()}


@functools.cache
def port_exhaustion() -> RunResult:
    """The default port-exhaustion run without a trace: the telemetry and census alone."""
    return run_scenario("port-exhaustion", trace=False, census_at=[30.0])


def test_cli_ss_30_reports_every_time_wait_of_port_exhaustion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "port-exhaustion", "--ss", "30"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("c1$ ss -tan -o   # at 30.000000 s"):]
    block = block[: block.index("\n\n")]
    assert "Total: 28232 (TIME-WAIT 28232)" in block  # the trace stopped at its limit well before 30 s
    assert "... 28212 more rows (--ss-all lists them all)" in block


def test_ss_all_lists_every_row_from_the_census() -> None:
    r = port_exhaustion()
    table = ss_table(r, 30.0, host="c1", all_rows=True)
    assert table.count("TIME-WAIT ") == 28232 and "more rows" not in table


def test_series_reach_28232_and_show_failed_connects_after_exhaustion() -> None:
    doc = port_exhaustion().to_json()["series"]["runs"][0]
    c1 = doc["hosts"]["c1"]
    peak = doc["maxima"]["c1"]["TIME_WAIT"]
    assert peak["value"] == 28232 and max(c1["TIME_WAIT"]) == 28232
    assert doc["maxima"]["c1"]["ports_in_use"]["value"] == 28232
    times, fails = doc["times"], c1["connect.EADDRNOTAVAIL"]
    before = [f for t, f in zip(times, fails, strict=True) if t < peak["at"]]
    after = [f for t, f in zip(times, fails, strict=True) if t > peak["at"] + 1]
    assert not any(before) and after[-1] > 50_000 and after[-1] == port_exhaustion().metrics["failed"]["EADDRNOTAVAIL"]
    assert len(times) == len(fails) and 500 <= len(times) <= 2000


def _lines(fig, col: int = 0) -> dict[str, tuple[list[float], list[float]]]:  # type: ignore[no-untyped-def]
    out = {}
    for ax in fig.axes:
        if ax.get_subplotspec().colspan.start != col:
            continue
        for ln in ax.get_lines():
            out[ln.get_label()] = ([float(x) for x in ln.get_xdata()], [float(y) for y in ln.get_ydata()])
    return out


def test_port_exhaustion_plot_draws_the_climb_the_plateau_and_the_failures() -> None:
    r = port_exhaustion()
    fig = plot_figure(r)
    assert "port-exhaustion (profile linux, seed 1)" in fig.get_suptitle()
    assert "sysctls changed: none" in fig.get_suptitle()
    lines = _lines(fig)
    xs, tw = lines["c1 TIME_WAIT"]
    assert max(tw) == 28232 and tw[0] < 1000
    assert lines["c1 TIME_WAIT max"][1] == [28232.0]
    at = lines["c1 TIME_WAIT max"][0][0]
    assert all(v == 28232 for x, v in zip(xs, tw, strict=True) if at <= x <= 59)  # the plateau
    fx, fy = lines["c1 failed: EADDRNOTAVAIL per second"]
    assert not any(y for x, y in zip(fx, fy, strict=True) if x < at)
    assert min(y for x, y in zip(fx, fy, strict=True) if at + 1 < x < 59) > 500  # retried every 1 ms
    assert max(lines["c1 ports in use"][1]) == 28232


def test_max_rate_plots_both_runs_side_by_side() -> None:
    r = run_scenario("max-rate", params={"ports": "40000-40999"})
    assert [s.label for s in r.telemetry] == ["under", "over"]
    under, over = r.telemetry
    assert not under.names("c1", "connect.E") and over.names("c1", "connect.EADDRNOTAVAIL")
    assert over.maximum("c1", "ports_in_use")[0] == 1000 > under.maximum("c1", "ports_in_use")[0]
    fig = plot_figure(r)
    assert "net.ipv4.ip_local_port_range=40000 40999" in fig.get_suptitle()
    for col, run in enumerate(r.telemetry):
        lines = _lines(fig, col)
        assert "c1 ip_local_port_range 40000-40999: 1,000 ports" in lines
        assert max(lines["c1 ports in use"][1]) == run.maximum("c1", "ports_in_use")[0]
    assert "c1 failed: EADDRNOTAVAIL per second" in _lines(fig, 1)
    assert "c1 failed: EADDRNOTAVAIL per second" not in _lines(fig, 0)


def test_redis_with_tcp_max_tw_buckets_shows_the_cap_and_the_overflow() -> None:
    r = run_scenario("redis-short-connections", params={"connections": "3000"},
                     sysctls=["c1:net.ipv4.tcp_max_tw_buckets=1000"])
    run = r.telemetry[0]
    assert run.maximum("c1", "TIME_WAIT")[0] == 1000  # never cap + 1, even for an instant
    assert run.get("c1", "tw.overflowed")[-1] == 2000 == run.get("c1", "nstat.TcpExtTCPTimeWaitOverflow")[-1]
    fig = plot_figure(r)
    assert "c1 net.ipv4.tcp_max_tw_buckets=1000" in fig.get_suptitle()
    lines = _lines(fig)
    assert lines["c1 tcp_max_tw_buckets 1,000"][1] == [1000.0, 1000.0]
    assert max(lines["c1 TIME_WAIT"][1]) == 1000
    assert lines["c1 TIME_WAIT overflowed (TcpExtTCPTimeWaitOverflow)"][1][-1] == 2000
