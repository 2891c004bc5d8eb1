"""Declared ranges (issue 15): scenario parameters, sysctls, fault fields and the shared validator."""

from __future__ import annotations

import math

import pytest

from timewait.bounds import Bounds
from timewait.errors import UsageError
from timewait.scenarios import COMMON_PARAMS, all_scenarios, run_scenario
from timewait.sim.network import parse_fault
from timewait.sim.simulation import Simulation
from timewait.sim.sysctl import lookup


def _numeric_params() -> list[tuple[str, str, object]]:
    out = [("common", k, p) for k, p in COMMON_PARAMS.items()]
    for name, sc in all_scenarios().items():
        out += [(name, k, p) for k, p in sc.params.items()]
    return [(s, k, p) for s, k, p in out if p.kind in (int, float)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("scenario", "key", "param"), _numeric_params(),
                         ids=[f"{s}.{k}" for s, k, _ in _numeric_params()])
def test_every_numeric_parameter_declares_its_range_and_its_default_is_in_it(scenario: str, key: str,
                                                                             param: object) -> None:
    assert param.lo is not None, f"{scenario}: {key} has no declared lower bound"  # type: ignore[attr-defined]
    if param.default is not None:  # type: ignore[attr-defined]
        assert param.bounds.contains(param.default), (scenario, key)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("bounds", "name", "text"), [
    (Bounds(0, 1, lo_open=True, hi_open=True), "margin", "a finite number, 0 < margin < 1"),
    (Bounds(1, 65535, integer=True), "port", "an integer 1..65535"),
    (Bounds(0.001), "sample", "a finite number, sample >= 0.001"),
    (Bounds(1, integer=True), "nth", "an integer, nth >= 1"),
    (Bounds(hi=5), "x", "a finite number, x <= 5"),
    (Bounds(), "x", "a finite number"),
])
def test_bounds_word_their_range(bounds: Bounds, name: str, text: str) -> None:
    assert bounds.describe(name) == text


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1, 2, 0, 1])
def test_bounds_refuse_non_finite_and_out_of_range(value: float) -> None:
    with pytest.raises(UsageError, match=r"^--x v: (not a finite number|out of range); allowed "):
        Bounds(0, 1, lo_open=True, hi_open=True).check("--x v", value, "x")


def test_bounds_parse_gives_an_int_or_a_float() -> None:
    assert Bounds(integer=True).parse("n", "7") == 7
    assert Bounds().parse("t", "1e3") == 1000.0
    with pytest.raises(UsageError, match="expected an integer"):
        Bounds(integer=True).parse("n", "7.5")


@pytest.mark.parametrize(("name", "good", "bad"), [
    # the kernel's own bounds (net/ipv4/sysctl_net_ipv4.c)
    ("tcp_tw_reuse", ["0", "2"], ["3", "-1"]),
    ("tcp_tw_reuse_delay", ["1", "60000"], ["0", "60001"]),
    ("tcp_syn_retries", ["1", "127"], ["0", "128"]),
    ("tcp_syn_linear_timeouts", ["0", "127"], ["-1", "128"]),
    ("tcp_synack_retries", ["0", "255"], ["256"]),
    ("tcp_retries2", ["0", "255"], ["256"]),
    ("ip_default_ttl", ["1", "255"], ["0", "256"]),
    ("tcp_max_tw_buckets", ["0", "2147483647"], ["-1", "2147483648", "1.5", "nan"]),
    ("tcp_fin_timeout", ["0", "60", "2147483"], ["-1", "2147484", "inf"]),
    ("ip_local_port_range", ["1024 65535", "32768 60999", "40000 40000"], ["1023 2000", "0 10", "9 3",
                                                                          "1 65536", "2000", "1 2 3"]),
    ("ip_local_reserved_ports", ["0", "8000,9000-9010", ""], ["70000", "9-3"]),
    ("net.core.somaxconn", ["0", "4096"], ["-1"]),
])
def test_sysctl_values_follow_the_kernels_bounds(name: str, good: list[str], bad: list[str]) -> None:
    s = lookup(name, legacy=False)
    for v in good:
        s.parse(s.name, v)
    for v in bad:
        with pytest.raises(UsageError, match=s.name):
            s.parse(s.name, v)


def test_a_pre_4_11_profile_takes_a_port_range_below_1024() -> None:
    s = lookup("ip_local_port_range", legacy=True)
    assert s.parse(s.name, "1 65535") == (1, 65535)


def test_a_bad_sysctl_value_is_refused_when_the_simulation_is_made() -> None:
    with pytest.raises(UsageError, match="tcp_tw_reuse='7'"):
        Simulation(sysctls=["nohost:net.ipv4.tcp_tw_reuse=7"])


@pytest.mark.parametrize(("text", "attrs"), [
    ("drop from=c1 flags=. len=0 nth=2", dict(src="c1", length=0, nth=2, count=1)),
    ("hold 45 from=c1 flags=P.", dict(seconds=45.0, src="c1")),
    ("hold 0 to=c2", dict(seconds=0.0, dst="c2")),
    ("dup 0.5 count=all", dict(seconds=0.5, count=0)),
    ("drop sport=60494 dport=8888 count=3", dict(sport=60494, dport=8888, count=3)),
])
def test_good_fault_rules_parse(text: str, attrs: dict[str, object]) -> None:
    f = parse_fault(text)
    for k, v in attrs.items():
        assert getattr(f, k) == v, k


def test_a_fault_from_a_node_the_scenario_lacks_is_refused_before_it_runs() -> None:
    with pytest.raises(UsageError, match="from=nohost: no such node; nodes: c1, c2"):
        run_scenario("nc-timewait", faults=["drop from=nohost"], trace=False)


def test_an_empty_profile_name_is_an_unknown_profile_not_the_default() -> None:
    with pytest.raises(UsageError, match="unknown profile ''"):
        run_scenario("nc-timewait", profile="", trace=False)


def test_a_sampler_below_the_clock_tick_is_refused_instead_of_firing_forever() -> None:
    with pytest.raises(ValueError, match="period"):
        Simulation().every(1e-7, lambda t: None)


@pytest.mark.parametrize(("scenario", "params"), [
    ("redis-short-connections", {"sample": "0"}),     # ran forever: a 0 µs sampler at one instant
    ("max-rate", {"margin": "1"}),                    # ZeroDivisionError: the under-limit rate was 0
    ("max-rate", {"margin": "2"}),                    # ran forever: a negative rate
    ("port-exhaustion", {"destinations": "0"}),       # ran as 1 and reported 0
    ("lost-last-ack", {"port": "70000"}),             # a traceback
])
def test_the_issue_15_runaways_and_nonsense_are_refused(scenario: str, params: dict[str, str]) -> None:
    with pytest.raises(UsageError, match=r"out of range; allowed "):
        run_scenario(scenario, params=params, trace=False)


def test_margin_just_under_one_is_a_legitimate_slow_run_of_the_formula() -> None:
    """0 < margin < 1 keeps both rates positive: the formula no longer divides by zero."""
    from timewait.scenarios import get_scenario, parse_params

    p = parse_params(get_scenario("max-rate"), {"margin": "0.5"})
    assert p["margin"] == 0.5
