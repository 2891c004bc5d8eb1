"""--trace-select (issue 11 item 2): which connections the trace records, decided once per
connection when it is created; big runs record their first connections by default; every
trace view says what the selection left out; results, counts and the census do not change."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from timewait.cli import main
from timewait.scenarios import run_scenario
from timewait.sim.simulation import Simulation
from timewait.tcp.segment import SYN, ip_aton
from timewait.trace import DROP, NOTE, RX, STATE, TX, TraceSelect, cut_notice

# port-exhaustion, 3 s through 1,000 ports; its scale (from the parameters) expects ~15,000 connections.
PE = ["--set", "duration=3", "--sysctl", "c1:net.ipv4.ip_local_port_range=40000 40999"]
PE_PARAMS = {"duration": "3"}
PE_SYSCTLS = ["c1:net.ipv4.ip_local_port_range=40000 40999"]


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


def syns(records, node: str = "c1") -> list:
    return [r[3] for r in records if r[1] == TX and r[2] == node and r[3].flags == SYN]


@pytest.mark.parametrize("bad, words", [
    ("bogus", "allowed: all, none, first:N, host:NAME, conn:FILTER"),
    ("first:x", "first:N needs a whole number N >= 0"),
    ("first:-3", "first:N needs a whole number N >= 0"),
    ("conn:", "allowed: all, none"),
    ("conn:port 0", "port '0' must be 1..65535"),
    ("conn:host 10.0.0", "'10.0.0' is not an IP address (IPv4 a.b.c.d or IPv6"),
    ("conn:host fd00:::1", "'fd00:::1' is not an IP address"),
    ("conn:host 10.0.0.1 and", "'and' needs a term on each side"),
    ("conn:10.0.0.1-10.0.0.2:80", "a 4-tuple is ADDR:PORT-ADDR:PORT"),
    ("all:1", "allowed: all, none"),
])
def test_a_bad_selection_is_one_line_and_nothing_runs(bad, words):
    rc, out, err = cli("run", "port-exhaustion", "--trace-select", bad)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and words in err and "Traceback" not in err


def test_a_big_run_records_its_first_200_connections_by_default():
    r = run_scenario("port-exhaustion", params=PE_PARAMS, sysctls=PE_SYSCTLS)
    first = syns(r.trace.records)
    assert len({(s.sport, s.seq) for s in first}) == 200  # 200 connections, each its one SYN
    # Both ends of each: the server's SYN-ACKs answer exactly those SYNs.
    answers = [x for x in r.trace.records if x[1] == TX and x[2] == "server" and x[3].flags == SYN | 0x10]
    assert sorted(a[3].dport for a in answers) == sorted(s.sport for s in first)
    notice = cut_notice(r.trace.records)
    assert notice is not None and "trace selection first:200 (default for about 15,000 connections" in notice
    assert "200 connections recorded, 800 left out" in notice
    whole = run_scenario("port-exhaustion", params=PE_PARAMS, sysctls=PE_SYSCTLS, trace_select="all")
    assert cut_notice(whole.trace.records) is None and len(syns(whole.trace.records)) == 1000  # every port once
    # The engine ran the same run: metrics, counters and telemetry do not depend on the trace.
    assert r.metrics == whole.metrics and r.hosts == whole.hosts
    assert r.to_json()["series"] == whole.to_json()["series"]


def test_every_trace_view_names_the_selection(tmp_path):
    svg, html, pcap = tmp_path / "l.svg", tmp_path / "r.html", tmp_path / "p.pcapng"
    rc, out, _ = cli("run", "port-exhaustion", *PE, "--trace", "--ss", "2.5", "--diagram", str(svg),
                     "--html", str(html), "--pcap", str(pcap))
    assert rc == 0
    said = "trace selection first:200"
    assert [ln for ln in out.splitlines() if ln.startswith("# The trace selection first:200")]  # --trace's end
    assert said in svg.read_text() and html.read_text().count(said) >= 2
    assert "trace selection first:200 (default for about 15,000 connections; --trace-select all for every one): " \
           "only its connections are in the capture" in out
    assert said.encode() in pcap.read_bytes()[:4096]  # the section header's comment
    # The census at 2.5 s is the engine's: every port of the range is waiting, selection or not.
    assert "TIME-WAIT 1000" in out


def test_conn_filter_records_only_the_matching_connection():
    r = run_scenario("port-exhaustion", params=PE_PARAMS, sysctls=PE_SYSCTLS, trace_select="conn:port 40007")
    segs = [x[3] for x in r.trace.records if x[1] in (TX, RX, DROP)]
    assert segs and all(40007 in (s.sport, s.dport) for s in segs)
    keys = {x[3] for x in r.trace.records if x[1] == STATE}
    assert keys and all(40007 in (k[1], k[3]) for k in keys)
    # Its port is used once in 3 s (60 s of TIME_WAIT), so one connection: both its ends.
    assert {x[2] for x in r.trace.records if x[1] == STATE} == {"c1", "server"}
    assert "1 connection recorded" in cut_notice(r.trace.records)


def test_a_four_tuple_filter_matches_either_direction():
    sel = TraceSelect("conn:10.0.0.2:80-10.0.0.1:5000 or host 10.9.9.9 and port 22")
    a, b = ip_aton("10.0.0.1"), ip_aton("10.0.0.2")
    assert sel.choose("c1", (a, 5000, b, 80)) and sel.choose("server", (b, 80, a, 5000))
    assert not sel.choose("c1", (a, 5001, b, 80))
    assert sel.choose("x", (ip_aton("10.9.9.9"), 22, a, 1)) and not sel.choose("x", (ip_aton("10.9.9.9"), 23, a, 1))
    assert (sel.chosen, sel.left_out) == (3, 2)


def test_none_records_no_connection_but_results_stay():
    r = run_scenario("port-exhaustion", params=PE_PARAMS, sysctls=PE_SYSCTLS, trace_select="none")
    assert not [x for x in r.trace.records if x[1] != NOTE]
    assert "0 connections recorded" in cut_notice(r.trace.records)
    assert r.passed


def test_a_fault_rule_records_the_connection_it_touches():
    # The 500th SYN of c1 is dropped: its connection is not among the first 200, yet the
    # trace shows the drop and the SYN's retransmission 1 s later (the same port).
    r = run_scenario("port-exhaustion", params=PE_PARAMS, sysctls=PE_SYSCTLS,
                     faults=["drop from=c1 flags=S nth=500"])
    drops = [x for x in r.trace.records if x[1] == DROP and x[4] == "fault"]
    assert len(drops) == 1
    port = drops[0][3].sport
    again = [s for s in syns(r.trace.records) if s.sport == port]
    assert len(again) == 2 and again[1].seq == again[0].seq  # the dropped SYN and its retransmission
    assert "+1 from a fault rule's packet on" in cut_notice(r.trace.records)


def test_checks_that_read_the_trace_lift_a_selection_and_say_so():
    rc, out, _ = cli("run", "nc-timewait", "--trace-select", "none")
    assert rc == 0 and "all checks passed" in out
    assert "--trace-select none was not applied: nc-timewait's checks read every connection" in out
    assert "trace selection" not in out  # the trace is whole, so no view says otherwise


def test_the_selection_is_decided_at_creation_through_the_api():
    sim = Simulation(seed=1)
    sim.trace.select = TraceSelect("first:1")
    c1, srv = sim.add_host("c1", "10.0.0.1"), sim.add_host("srv", "10.0.0.2")
    sim.link(c1, srv, delay_ms=1)
    lsock = srv.socket()
    lsock.bind(0, 80)
    lsock.listen()
    socks = []
    for _ in range(3):
        s = c1.socket()
        s.connect("10.0.0.2", 80)
        socks.append(s)
    sim.run(until_s=1)
    traced = {x[3].sport for x in sim.trace.records if x[1] == TX and x[2] == "c1"}
    assert traced == {socks[0].lport}
    assert (sim.trace.select.chosen, sim.trace.select.left_out) == (1, 2)


def test_json_keeps_one_document_with_a_selection():
    rc, out, _ = cli("run", "port-exhaustion", *PE, "--json", "--trace-select", "first:3")
    assert rc == 0 and json.loads(out)["scenario"] == "port-exhaustion"


def test_aggregate_views_do_not_read_the_trace():
    # The census (--ss) and the plots come from the engine's telemetry: the same with no
    # connection recorded as with every one, and with the trace's records thrown away.
    pytest.importorskip("matplotlib")
    from timewait.report.plots import render_png
    from timewait.report.ss import ss_table

    runs = [run_scenario("port-exhaustion", params=PE_PARAMS, sysctls=PE_SYSCTLS, trace_select=sel,
                         census_at=[2.5]) for sel in ("none", "all")]
    tables = [ss_table(r, 2.5) for r in runs]
    assert tables[0] == tables[1] and "TIME-WAIT 1000" in tables[0]
    pngs = [render_png(r) for r in runs]
    runs[1].trace.records.clear()
    assert pngs[0] == pngs[1] == render_png(runs[1])
