"""The files ``timewait run`` writes on request: pcap, ladder diagram, plot, HTML report.

Every argument is checked before anything is written, and each file is written
to a temporary file beside its target and renamed into place, so an error
never leaves a half-written file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from timewait.errors import UsageError
from timewait.report.ladder import build_ladder, parse_conn, parse_window, render_mermaid
from timewait.report.ladder_svg import render_svg
from timewait.result import RunResult

PCAP_SUFFIXES = (".pcap", ".cap", ".pcapng")
DIAGRAM_SUFFIXES = (".svg", ".mmd")
PLOT_SUFFIXES = (".png",)
HTML_SUFFIXES = (".html", ".htm")


def _check_path(flag: str, path: Path | None, suffixes: tuple[str, ...]) -> None:
    if path is None:
        return
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"{flag} {str(path)!r}: the file name must end in {' or '.join(suffixes)}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{flag} {str(path)!r}: directory {str(parent)!r} does not exist")
    if path.is_dir():
        raise UsageError(f"{flag} {str(path)!r} is a directory; give a file name")


def check_output_path(flag: str, path: Path, suffixes: tuple[str, ...]) -> None:
    """Refuse (UsageError) an output path that cannot be written: suffix, directory, permissions.

    For callers that write ``path`` later, after a long run: every reason it
    would fail then is said now.
    """
    _check_path(flag, path, suffixes)
    parent = path.parent if str(path.parent) else Path(".")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {str(path)!r}: directory {str(parent)!r} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{flag} {str(path)!r}: the file exists and is not writable")


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through ``write(file)`` into a temporary file beside ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_outputs(
    result: RunResult,
    *,
    pcap: Path | None = None,
    pcap_host: str | None = None,
    diagram: Path | None = None,
    conn: str | None = None,
    window: str | None = None,
    plot: Path | None = None,
    html: Path | None = None,
) -> list[str]:
    """Write the requested files; return one message per file (e.g. ``wrote x.pcap (42 packets)``).

    ``conn`` (``PORT`` or ``ADDR:PORT``) and ``window`` (``START:END`` seconds)
    select what the ladder shows, in ``diagram`` and in ``html``. A run without
    a trace (some scenarios switch it off for big runs) still gets every file:
    an empty pcap, a diagram and a page that say there were no packets to show.
    """
    pcap, diagram, plot, html = (Path(p) if p is not None else None for p in (pcap, diagram, plot, html))
    _check_path("--pcap", pcap, PCAP_SUFFIXES)
    _check_path("--diagram", diagram, DIAGRAM_SUFFIXES)
    _check_path("--plot", plot, PLOT_SUFFIXES)
    _check_path("--html", html, HTML_SUFFIXES)
    if pcap_host is not None:
        if pcap is None:
            raise UsageError("--pcap-host needs --pcap FILE.pcap")
        if pcap_host not in result.nodes:
            raise UsageError(f"--pcap-host {pcap_host!r}: no such node in {result.scenario}; "
                             f"nodes: {', '.join(result.nodes)}")
    if (conn is not None or window is not None) and diagram is None and html is None:
        raise UsageError("--conn and --window choose what the ladder shows: add --diagram FILE.svg or --html FILE.html")
    if conn is not None:
        parse_conn(conn)
    if window is not None:
        parse_window(window)

    messages: list[str] = []
    ladder = build_ladder(result, conn=conn, window=window) if diagram is not None else None
    if pcap is not None:
        seen = f", as {pcap_host} saw them" if pcap_host else ""
        why = "" if result.trace.records else ": no packets in the trace, this run was made without one"
        if pcap.suffix.lower() == ".pcapng":
            from timewait.report.pcapng import encode_pcapng

            count: list[int] = []
            write_atomically(pcap, lambda f: count.append(encode_pcapng(result, f, pcap_host)))
            where = f"{pcap_host}'s interface" if pcap_host else f"{len(result.nodes)} interfaces, one per node"
            messages.append(f"wrote {pcap} ({count[0]} frames, {where}, fates as packet comments{why})")
        else:
            from timewait.report.pcap import captured_packets, encode_pcap

            packets = captured_packets(result, pcap_host)
            write_atomically(pcap, lambda f: encode_pcap(packets, f))
            messages.append(f"wrote {pcap} ({len(packets)} packets{seen}{why})")
    if diagram is not None and ladder is not None:
        text = render_mermaid(ladder) if diagram.suffix.lower() == ".mmd" else render_svg(ladder)
        write_atomically(diagram, lambda f: f.write(text.encode("utf-8")))
        more = f", {ladder.truncated} more left out" if ladder.truncated else ""
        if ladder.empty:
            more += ": no packets in the trace, the diagram says so"
        messages.append(f"wrote {diagram} (ladder diagram, {len(ladder.hops)} packet hops{more})")
    png: bytes | None = None
    if plot is not None:
        from timewait.report.plots import render_png

        png = render_png(result)
        data = png
        write_atomically(plot, lambda f: f.write(data))
        messages.append(f"wrote {plot} (from the telemetry: sockets by state, ports in use, connect() per second, TIME_WAIT records)")
    if html is not None:
        from timewait.report.html import render_html

        page = render_html(result, conn=conn, window=window, plot_png=png)
        write_atomically(html, lambda f: f.write(page.encode("utf-8")))
        messages.append(f"wrote {html} (self-contained HTML report)")
    return messages
