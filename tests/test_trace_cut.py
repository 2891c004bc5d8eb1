"""A run whose trace hit its record limit says so on every view that reads the trace (issue 11):
the tcpdump text, the ladder SVG, the HTML page (its socket tables and its trace) and the pcap's
message; the census (`--ss`) and the plots come from the telemetry and are whole."""

from __future__ import annotations

import pytest

import timewait.scenarios as scenarios
from timewait.cli import main

CUT = "trace stopped at 3000 records"


@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scenarios, "TRACE_LIMIT", 3000)


def test_every_trace_view_says_the_trace_was_cut(small_limit, tmp_path, capsys):
    svg, html, pcap = tmp_path / "l.svg", tmp_path / "r.html", tmp_path / "p.pcap"
    rc = main(["run", "port-exhaustion", "--set", "duration=3", "--sysctl", "c1:net.ipv4.ip_local_port_range=40000 40999",
               "--trace", "--ss", "2.5", "--trace-select", "all",
               "--diagram", str(svg), "--html", str(html), "--pcap", str(pcap)])
    out = capsys.readouterr().out
    assert rc == 0
    trace_lines = [ln for ln in out.splitlines() if ln.startswith("# The trace stopped")]
    assert len(trace_lines) == 1 and CUT in trace_lines[0]
    assert CUT in svg.read_text()
    page = html.read_text()
    assert page.count(CUT) >= 2  # above the socket tables and above the trace
    assert f"wrote {pcap}" in out and "the capture ends there" in out
    # The census at 2.5 s is the engine's, not the trace's: every port of the range is waiting.
    assert "TIME-WAIT 1000" in out


def test_an_uncut_trace_says_nothing(tmp_path, capsys):
    svg = tmp_path / "l.svg"
    assert main(["run", "nc-timewait", "--trace", "--diagram", str(svg)]) == 0
    out = capsys.readouterr().out
    assert "trace stopped" not in out and "trace stopped" not in svg.read_text()
