"""``timewait explain CAPTURE``: what happened to the connections of a real capture."""

from __future__ import annotations

import ipaddress
import json
import math
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from timewait.errors import UsageError
from timewait.explain.analysis import Conn, Explainer, hostport
from timewait.explain.reader import CaptureError, ReadStats, read_capture

SHOWN = 10  # rows per section on the console unless --all


def _port_range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    lo_t, sep, hi_t = text.replace(" ", "-").partition("-")
    try:
        lo, hi = int(lo_t), int(hi_t)
    except ValueError:
        lo = hi = -1
    if not sep or not 1 <= lo <= hi <= 65535:
        raise UsageError(f"--port-range {text!r}: expected LOW-HIGH with 1 <= LOW <= HIGH <= 65535, e.g. 32768-60999")
    return lo, hi


def _conn_filter(text: str | None) -> Any:
    """``PORT``, ``ADDR`` or ``ADDR:PORT``: a predicate on a connection's two ends. An IPv6
    address is written bare (``fd00::1``) or in brackets, with a port as ``[fd00::1]:8888``."""
    if text is None:
        return None
    bad = (f"--conn {text!r}: expected PORT, ADDR or ADDR:PORT, e.g. 8888, 10.211.55.5:60494 or "
           "[fd00::10:211:55:5]:60494")
    t = text.strip()
    if t.startswith("["):
        addr, close, rest = t[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise UsageError(bad)
        port_t = rest[1:]
    elif t.count(":") > 1:  # a bare IPv6 address: its colons are not a port's
        addr, port_t = t, ""
    else:
        addr, sep, port_t = t.rpartition(":")
        if not sep:
            addr, port_t = (t, "") if "." in t else ("", t)
    if addr:
        try:
            addr = str(ipaddress.ip_address(addr))  # as the capture's text: fd00::0:1 is fd00::1
        except ValueError:
            raise UsageError(bad) from None
    port: int | None = None
    if port_t:
        try:
            port = int(port_t)
        except ValueError:
            port = -1
        if not 0 < port < 65536:
            raise UsageError(bad)

    def keep(c: Conn) -> bool:
        return any((not addr or a == addr) and (port is None or p == port) for a, p in (c.client, c.server))

    return keep


def explain_cmd(
    capture: Path = typer.Argument(..., help="A capture: pcap or pcapng (tcpdump, Wireshark, timewait)."),
    json_out: bool = typer.Option(False, "--json", help="Print the whole answer as one JSON document."),
    conn: str | None = typer.Option(None, "--conn", help="Draw these connections: PORT, ADDR or ADDR:PORT."),
    diagram: Path | None = typer.Option(None, "--diagram", help="Ladder of the --conn connections: FILE.svg or FILE.mmd."),
    html: Path | None = typer.Option(None, "--html", help="HTML report of the --conn connections."),
    port_range: str | None = typer.Option(None, "--port-range", help="The client's ip_local_port_range, LOW-HIGH "
                                          "(default: the lowest and highest client port the capture shows)."),
    time_wait: float = typer.Option(60.0, "--time-wait", help="TIME_WAIT length in seconds on the clients (Linux: 60)."),
    iface: str | None = typer.Option(None, "--iface", help="The pcapng interface to read (default: the first)."),
    allow_truncated: bool = typer.Option(False, "--allow-truncated", help="Explain what a cut-short capture holds."),
    all_rows: bool = typer.Option(False, "--all", help="Every row of every section, not the first 10."),
) -> None:
    """Explain a capture: lifecycles, TIME_WAIT holders, reuse, FIN repeats, RSTs, PAWS, the port supply."""
    ports = _port_range(port_range)
    keep = _conn_filter(conn)
    if not math.isfinite(time_wait) or time_wait <= 0:
        raise UsageError(f"--time-wait {time_wait}: expected a number of seconds > 0")
    if (diagram is not None or html is not None) and keep is None:
        raise UsageError("--diagram and --html draw chosen connections: add --conn PORT|ADDR|ADDR:PORT")
    from timewait.report.outputs import prepare_outputs, run_outputs

    prepare_outputs(run_outputs(diagram=diagram, html=html), create=False)  # write_outputs creates them
    if not capture.is_file():
        raise UsageError(f"{capture}: no such file" if not capture.exists() else f"{capture}: not a file")
    stats = ReadStats()
    ex = Explainer(time_wait_s=time_wait, keep=keep)
    try:
        for p in read_capture(str(capture), stats, allow_truncated=allow_truncated, iface=iface):
            ex.add(p)
    except CaptureError as e:
        raise UsageError(str(e)) from None
    if iface is not None and stats.interface is None and stats.fmt.startswith("pcapng"):
        raise UsageError(f"--iface {iface!r}: no such interface; the file has {', '.join(stats.interfaces) or 'none'}")
    ex.finish()
    doc = {"capture": {"file": str(capture), "format": stats.fmt, "link": sorted(stats.linktypes),
                       "interface": stats.interface, "frames": stats.frames, "tcp": stats.tcp,
                       "other": stats.other, "malformed": stats.malformed},
           **ex.report(port_range=ports)}
    messages: list[str] = []
    if keep is not None and (diagram is not None or html is not None):
        from timewait.explain.ladder import capture_result
        from timewait.report.outputs import write_outputs

        result = capture_result(ex, str(capture))
        messages = write_outputs(result, diagram=diagram, html=html)
    if json_out:
        print(json.dumps(doc, indent=2))
        return
    _print(doc, SHOWN if not all_rows else None, messages)


def _print(doc: dict[str, Any], shown: int | None, messages: list[str]) -> None:
    from rich.console import Console

    console = Console(soft_wrap=True)
    cap = doc["capture"]
    skipped = f", {cap['other']} not TCP/IP" if cap["other"] else ""
    bad = f", {cap['malformed']} malformed" if cap["malformed"] else ""
    where = f", interface {cap['interface']}" if cap["interface"] else ""
    console.print(f"[bold]{cap['file']}[/]: {cap['format']} ({', '.join(cap['link']) or 'no frames'}{where}), "
                  f"{cap['frames']} frames, {cap['tcp']} TCP{skipped}{bad}, {doc['span_s']:.3f} s")
    c = doc["connections"]
    ended = ", ".join(f"{n} {k}" for k, n in c["ended"].items())
    console.print(f"{c['count']} connections on {c['tuples']} 4-tuples ({ended})")
    holders = ", ".join(f"{n} by the {k}" for k, n in doc["time_wait"]["by_holder"].items()) or "none"
    console.print(f"TIME_WAIT: {doc['time_wait']['count']} ({holders}); 4-tuples used again: "
                  f"{doc['reuse']['count']} ({doc['reuse']['taken_over']} taking over the client's own TIME_WAIT)")
    sections = [("time_wait", "TIME_WAIT holders"), ("reuse", "4-tuples used again"),
                ("syn_met_state", "SYNs that met an existing connection"), ("fin_retransmitted", "FINs sent again"),
                ("fin_reacked", "re-ACKs of repeated FINs"), ("syn_retransmitted", "SYNs sent again"),
                ("rst", "RSTs"), ("paws", "segments a Linux receiver discards by PAWS")]
    for key, title in sections:
        sec = doc[key]
        rows = sec["rows"]
        if not rows:
            continue
        console.print(f"[bold]{title}[/]: {sec['count']}")
        for r in rows[:shown] if shown else rows:
            console.print(f"  {escape(_line(key, r))}", highlight=False)  # [fd00::1]:80 is no markup
        if shown and sec["count"] > shown:
            console.print(f"  ... {sec['count'] - shown} more (--all or --json)")
    for d in doc["destinations"][:shown] if shown else doc["destinations"]:
        rate = "-" if d["rate"] is None else f"{d['rate']:.1f}/s"
        console.print(f"[bold]{escape(d['client'])} -> {escape(hostport(d['server'], d['port']))}[/]: "
                      f"{d['connections']} connections in "
                      f"{d['span_s']:.3f} s ({rate}, peak {d['peak_per_second']}/s), {d['ports']['distinct_seen']} "
                      f"client ports seen; TIME_WAIT on the client at most {d['client_time_wait_peak']} at once")
        console.print(f"  {d['verdict']}")
        if d["exhausted"]:
            console.print(f"  [bold red]exhausted[/]: all {d['ports']['count']} ports in TIME_WAIT at "
                          f"{d['client_time_wait_peak_at']} s; longest pause between SYNs "
                          f"{d['longest_syn_gap_s']:.3f} s from {d['longest_syn_gap_at']} s")
    for m in messages:
        console.print(m)


def _line(key: str, r: dict[str, Any]) -> str:
    """One row of a section as one line: time, connection, what."""
    if key == "time_wait":
        seen = "" if r["seen_for_s"] is None else f", seen for {r['seen_for_s']:.3f} s until {r['until']}"
        again = f", timer restarted {r['restarted']}x (last at {r['timer_from_s']:.6f} s)" if r["restarted"] else ""
        return f"{r['t']:>12.6f}  {r['connection']}  {r['holder']}{again}{seen}"
    if key == "reuse":
        met = f"; its SYN met {r['met']}" if r["met"] else ""
        return f"{'':>12}  {r['tuple']} #{r['incarnation']}: {r['gap_s']:.3f} s after #{r['incarnation'] - 1} ended ({r['previous_end']}){met}"
    frame = f" (frame {r['frame']})" if r.get("frame") else ""
    return f"{r['t']:>12.6f}  {r['connection']}  {r['what']}{frame}"


def register(app: typer.Typer) -> None:
    """Add the ``explain`` command to the ``timewait`` app."""
    app.command("explain")(explain_cmd)
