"""`timewait run X --diagram F.svg --html F.html --plot F.png --pcap F.pcap` for every scenario.

Big scenarios run with smaller settings (LIGHT); max-rate still runs
without a trace, as it does by default, and one test stops a trace at a small
record limit the way big runs stop at a million: every view must then say what
it lacks rather than fail.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import dpkt
import pytest

from test_report_support import light_args, png_pixels, registered
from timewait.cli import main

SVG = "{http://www.w3.org/2000/svg}"
FILES = {"--pcap": "run.pcap", "--diagram": "run.svg", "--plot": "run.png", "--html": "run.html"}


def run_cli(name: str, *extra: str) -> tuple[int, str, str]:
    """``timewait run NAME EXTRA...`` in this process: exit status, stdout, stderr."""
    import contextlib
    import io

    args = ["run", name, *extra]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    return rc, out.getvalue(), err.getvalue()


def check_files(out: str) -> dict[str, object]:
    """Every file is there, valid for its kind, and agrees with what the run printed about it."""
    found: dict[str, object] = {}
    m = re.search(r"wrote run\.pcap \((\d+) packets", out)
    assert m, out
    with open("run.pcap", "rb") as f:
        packets = list(dpkt.pcap.Reader(f))
    assert len(packets) == int(m.group(1))
    found["packets"] = len(packets)

    m = re.search(r"wrote run\.svg \(ladder diagram, (\d+) packet hops", out)
    assert m, out
    root = ET.parse("run.svg").getroot()
    assert root.tag == SVG + "svg"
    hops = [e for e in root.iter(SVG + "line") if "hop" in (e.get("class") or "").split()]
    assert len(hops) == int(m.group(1))
    found["hops"] = len(hops)

    assert "wrote run.png (" in out
    px = png_pixels(open("run.png", "rb").read())
    assert px.shape[0] > 500 and px.std() > 0.05

    assert "wrote run.html (" in out
    page = open("run.html", encoding="utf-8").read()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert 'src="data:image/png;base64,' in page
    found["page"] = page
    return found


@pytest.mark.parametrize("name", registered())
def test_every_view_for_every_scenario(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = [arg for flag, path in FILES.items() for arg in (flag, path)]
    rc, out, err = run_cli(name, *args, *light_args(name))
    assert "Traceback" not in err and "error" not in err, err
    assert rc == 0, out[-2000:]  # and every check passed
    found = check_files(out)
    if found["packets"] == 0:
        assert "no packets in the trace" in out
        assert "No packets in the trace" in open("run.svg", encoding="utf-8").read()
        assert "No packets in the trace" in found["page"]  # type: ignore[operator]
    else:
        assert found["hops"] > 0 and "<svg" in found["page"]  # type: ignore[operator]


def test_trace_stopped_at_its_limit(tmp_path, monkeypatch) -> None:
    """A trace that stops part-way (big runs stop at TRACE_LIMIT records) still gives every view, and the
    ladder says where the trace stopped."""
    import timewait.scenarios as scenarios

    monkeypatch.setattr(scenarios, "TRACE_LIMIT", 3000)
    monkeypatch.chdir(tmp_path)
    args = [arg for flag, path in FILES.items() for arg in (flag, path)]
    rc, out, err = run_cli("redis-short-connections", *args, "--set", "connections=200")
    assert rc == 0 and "Traceback" not in err, err
    found = check_files(out)
    # at most every packet: 10 a connection (the server quick-ACKs the request, DA-1); the cut
    # is made at a step boundary, which this short run may finish before
    assert 0 < found["packets"] <= 200 * 10
    svg = open("run.svg", encoding="utf-8").read()
    assert re.search(r"The trace stopped at 3000 records, t = [\d.]+ s: this view shows nothing after that\.", svg)


def test_ss_countdown_from_the_command_line() -> None:
    """`timewait run nc-timewait --ss T`: one second after the close (2 s) the countdown reads 59sec; the
    socket is there until 60 s after it entered TIME_WAIT and gone at 60 s."""
    rc, out, _ = run_cli("nc-timewait", "--ss", "3")
    assert rc == 0
    rows = [ln for ln in out.splitlines() if ln.startswith("TIME-WAIT")]
    assert len(rows) == 1 and "timer:(timewait,59sec,0)" in rows[0]
    from timewait.scenarios import run_scenario

    entered = run_scenario("nc-timewait").metrics["time_wait_entered_at"]
    _, before, _ = run_cli("nc-timewait", "--ss", f"{entered + 59.9:.6f}")
    _, after, _ = run_cli("nc-timewait", "--ss", f"{entered + 60:.6f}")
    assert "TIME-WAIT" in before and "timer:(timewait,100ms,0)" in before
    assert "TIME-WAIT" not in after


def test_bad_view_arguments_are_usage_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for args, needle in [
        (["--diagram", "x.txt"], "--diagram 'x.txt': the file name must end in .svg or .mmd"),
        (["--pcap", "."], "--pcap '.' is a directory"),  # a missing folder is created: test_outputs_validated
        (["--pcap-host", "c1"], "--pcap-host needs --pcap FILE.pcap"),
        (["--pcap", "x.pcap", "--pcap-host", "zz"], "--pcap-host 'zz': no such node in nc-timewait; nodes: c1, c2"),
        (["--conn", "8888"], "--conn and --window choose what the ladder shows"),
        (["--diagram", "x.svg", "--conn", "99"], "--conn '99' matches no connection of this run"),
        (["--diagram", "x.svg", "--window", "5:1"], "--window '5:1': expected START:END"),
    ]:
        rc, out, err = run_cli("nc-timewait", *args)
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_state_diagram_draws_the_engine_table(tmp_path, monkeypatch) -> None:
    """`timewait diagram --states`: every transition of the table the engine runs is on the picture, as an
    arrow label or in the list of exits straight to CLOSED; the Mermaid text has one line per transition."""
    from timewait.tcp.states import NAMES, TRANSITIONS

    monkeypatch.chdir(tmp_path)
    for out in ("states.svg", "states.mmd"):
        rc = main(["diagram", "--states", "--out", out])
        assert rc == 0
    root = ET.parse("states.svg").getroot()
    texts = [e.text for e in root.iter(SVG + "text")]
    for (_, event), (_, sent) in TRANSITIONS.items():
        assert (f"{event} / {sent}" if sent else event) in texts
    assert {NAMES[s] for s, _ in TRANSITIONS} <= set(texts)
    mermaid = open("states.mmd", encoding="utf-8").read().splitlines()
    assert mermaid[0] == "stateDiagram-v2" and len([ln for ln in mermaid if " --> " in ln]) == len(TRANSITIONS) + 1
