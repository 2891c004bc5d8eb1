"""Scenario nat (S10): the mapping table, the hidden hosts, rewriting, the NAT's own port exhaustion."""

from __future__ import annotations

import json

import pytest

from timewait.errors import UsageError
from timewait.scenarios import run_scenario
from timewait.trace import DROP


def checks(result) -> dict[str, bool]:
    return {c.name: c.passed for c in result.checks}


def test_default_run_passes_and_shows_the_table_and_the_exhaustion() -> None:
    r = run_scenario("nat")
    assert r.passed, [c for c in r.checks if not c.passed]
    assert len(r.checks) == 6
    m = r.metrics
    assert [(x["client"], x["private"], x["public"]) for x in m["mappings"]] == [
        ("c1", "192.168.1.10:40000", "203.0.113.1:65534"),
        ("c2", "192.168.1.11:40000", "203.0.113.1:65535"),
    ]
    assert m["nat_table"].count("ESTABLISHED src=192.168.1.1") == 2
    assert "dst=203.0.113.1 sport=6379 dport=65534 [ASSURED]" in m["nat_table"]
    assert m["nat_table_after_close"].count(" TIME_WAIT ") == 2
    assert m["served"] == ["c1", "c2"] and m["blocked"] == ["c3"]
    assert m["mapping_hold_after_last_packet_s"] == [120.0, 120.0]
    drops = [rec for rec in r.trace.records if rec[1] == DROP and rec[4] == "nat-exhausted"]
    assert len(drops) == m["nat_exhausted_drops"] >= 5
    assert r.nodes["nat"].kind == "nat"
    assert "c3 found none" in r.contrast and "nat_ports=65535" in r.contrast
    json.dumps(r.to_json())


def test_contrast_with_enough_ports_everyone_gets_through_and_ports_are_kept() -> None:
    r = run_scenario("nat", params={"nat_ports": "65535"})
    assert r.passed, [c for c in r.checks if not c.passed]
    c = checks(r)
    assert c["with 65535 public ports every one of the 3 clients gets through"]
    assert c["a free source port is kept; a port already used toward the server is remapped"]
    pubs = {x["client"]: x["public"] for x in r.metrics["mappings"]}
    assert pubs["c1"] == "203.0.113.1:40000" and pubs["c2"] != "203.0.113.1:40000"
    assert r.metrics["nat_exhausted_drops"] == 0 and r.metrics["blocked"] == []


def test_a_run_asked_without_trace_still_checks_every_rewrite() -> None:
    r = run_scenario("nat", trace=False)  # as a sweep asks: the scenario keeps its trace anyway
    assert r.passed and len(r.checks) == 6
    assert r.metrics["blocked"] == ["c3"]


def test_conntrack_time_wait_timeout_is_a_parameter() -> None:
    r = run_scenario("nat", params={"ct_time_wait": "30", "clients": "2"})
    assert r.passed
    assert r.metrics["mapping_hold_after_last_packet_s"] == [30.0, 30.0]
    assert r.sim_time == pytest.approx(20 + 30 + 10)


@pytest.mark.parametrize("params,msg", [
    ({"clients": "0"}, "clients='0': out of range"), ({"nat_ports": "70000"}, "nat_ports='70000': out of range"),
    ({"give_up": "30"}, "give_up"), ({"ct_time_wait": "0"}, "ct_time_wait"),
])
def test_bad_parameters(params: dict, msg: str) -> None:
    with pytest.raises(UsageError, match=msg):
        run_scenario("nat", params=params)
