"""The files ``timewait run`` writes on request: pcap, ladder diagram, plot, HTML report.

Every command checks its output paths before it runs anything
(:func:`prepare_outputs`: suffix, not a directory, a writable parent, created if
missing), and writes its files through an :class:`OutputSet`: each to a
temporary file beside its target, all renamed into place at the end, so an
error never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from timewait.errors import UsageError, missing_extra
from timewait.report.ladder import build_ladder, parse_conn, parse_window, render_mermaid
from timewait.report.ladder_svg import render_svg
from timewait.result import RunResult
from timewait.trace import CUT_PREFIX, limits

PCAP_SUFFIXES = (".pcap", ".cap", ".pcapng")
DIAGRAM_SUFFIXES = (".svg", ".mmd")
PLOT_SUFFIXES = (".png",)
HTML_SUFFIXES = (".html", ".htm")


Output = tuple[str, "str | os.PathLike[str] | None", "tuple[str, ...] | None"]
"""``(flag, path or None, allowed suffixes or None)``: one output a command was asked for."""


def check_output(flag: str, path: str | os.PathLike[str] | None, suffixes: tuple[str, ...] | None = None) -> Path | None:
    """Check one output path without touching the file system; :class:`UsageError` if it
    cannot be written: wrong suffix, a directory, an existing non-regular file, a parent that
    is a file or is not writable. A parent that does not exist yet is fine
    (:func:`prepare_outputs` creates it)."""
    if path is None:
        return None
    path = Path(path)
    shown = repr(str(path))
    if not path.name or str(path).endswith(os.sep) or path.is_dir():
        raise UsageError(f"{flag} {shown} is a directory; give a file name")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise UsageError(f"{flag} {shown}: the file name must end in {' or '.join(suffixes)}")
    if path.exists() and not path.is_file():
        raise UsageError(f"{flag} {shown} exists and is not a regular file")
    _check_parent(flag, shown, path.parent)
    return path


def check_output_dir(flag: str, path: str | os.PathLike[str] | None) -> Path | None:
    """Check a directory a command will write into (created if missing)."""
    if path is None:
        return None
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {str(path)!r} is not a directory")
    _check_parent(flag, repr(str(path)), path if path.exists() else path.parent)
    return path


def _check_parent(flag: str, shown: str, parent: Path) -> None:
    """The nearest existing ancestor of ``parent`` must be a directory this process may write."""
    d = parent if str(parent) else Path(".")
    while not d.exists():
        if d == d.parent:
            break
        d = d.parent
    if d.exists() and not d.is_dir():
        raise UsageError(f"{flag} {shown}: {str(d)!r} is a file, not a directory")
    if d.exists() and not os.access(d, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {shown}: directory {str(d)!r} is not writable")


def prepare_outputs(outputs: list[Output], dirs: list[tuple[str, str | os.PathLike[str] | None]] | None = None,
                    *, create: bool = True) -> None:
    """Check every output of a command, then (``create``) make the missing parent directories
    (a user who names ``out/x.svg`` means the folder too). Commands call it with
    ``create=False`` before they run anything, so a bad path is one line and no work, and
    again with ``create=True`` when they write, so a run that fails creates nothing."""
    make: list[tuple[str, Path]] = []  # (flag, directory to create), once every path is checked
    for flag, path in dirs or []:  # first: a file given as --out is named as such
        if (d := check_output_dir(flag, path)) is not None:
            make.append((flag, d))
    for flag, path, suffixes in outputs:
        if (f := check_output(flag, path, suffixes)) is not None:
            make.append((flag, f.parent))
    for flag, d in make if create else []:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"{flag}: cannot create directory {str(d)!r}: {e.strerror or e}") from None


class OutputSet:
    """Files written together: each to a temporary file beside its target, all renamed into
    place only when every one was written, so an error (or an interrupt) leaves no partial
    file and no half of the set behind.

    >>> with OutputSet() as out:  # doctest: +SKIP
    ...     out.write(Path("a.svg"), lambda f: f.write(b"<svg/>"))
    """

    def __init__(self) -> None:
        self._staged: list[tuple[str, Path]] = []

    def write(self, path: Path, write: Callable[[BinaryIO], None]) -> None:
        """Write ``path``'s content through ``write(file)`` into its temporary file."""
        parent = path.parent if str(path.parent) else Path(".")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
            self._staged.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would make a report only its writer can read
        except OSError as e:  # a full disk, a directory removed meanwhile: one line, not a traceback
            raise UsageError(f"cannot write {str(path)!r}: {e.strerror or e}") from None

    def commit(self) -> None:
        for tmp, path in self._staged:
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise UsageError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
        self._staged.clear()

    def abort(self) -> None:
        for tmp, _ in self._staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._staged.clear()

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.commit()
            finally:
                self.abort()  # whatever a failed rename left
        else:
            self.abort()


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through ``write(file)`` into a temporary file beside ``path``, then rename it over ``path``."""
    with OutputSet() as out:
        out.write(Path(path), write)


def run_outputs(*, pcap: Path | None = None, diagram: Path | None = None, plot: Path | None = None,
                html: Path | None = None) -> list[Output]:
    """The output files of ``timewait run`` (and of ``explain``'s views) with their suffixes."""
    return [("--pcap", pcap, PCAP_SUFFIXES), ("--diagram", diagram, DIAGRAM_SUFFIXES),
            ("--plot", plot, PLOT_SUFFIXES), ("--html", html, HTML_SUFFIXES)]


def check_views(*, pcap: Path | None = None, pcap_host: str | None = None, diagram: Path | None = None,
                conn: str | None = None, window: str | None = None, plot: Path | None = None,
                html: Path | None = None, create: bool = True) -> None:
    """Everything about the views that can be checked before the run (all but whether
    ``pcap_host`` names a node); ``create``: make the missing output directories."""
    if pcap_host is not None and pcap is None:
        raise UsageError("--pcap-host needs --pcap FILE.pcap")
    if (conn is not None or window is not None) and diagram is None and html is None:
        raise UsageError("--conn and --window choose what the ladder shows: add --diagram FILE.svg or --html FILE.html")
    if conn is not None:
        parse_conn(conn)
    if window is not None:
        parse_window(window)
    if plot is not None:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:  # said before the run, not after it
            raise UsageError(missing_extra(ModuleNotFoundError(name="matplotlib")) or "--plot needs matplotlib")
    prepare_outputs(run_outputs(pcap=pcap, diagram=diagram, plot=plot, html=html), create=create)


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
    # Commands call check_views before their run; again here for callers of this function.
    check_views(pcap=pcap, pcap_host=pcap_host, diagram=diagram, conn=conn, window=window, plot=plot, html=html)
    if pcap_host is not None and pcap_host not in result.nodes:
        raise UsageError(f"--pcap-host {pcap_host!r}: no such node in {result.scenario}; "
                         f"nodes: {', '.join(result.nodes)}")
    with OutputSet() as out:
        return _write(out, result, pcap, pcap_host, diagram, conn, window, plot, html)


def _write(out: OutputSet, result: RunResult, pcap: Path | None, pcap_host: str | None, diagram: Path | None,
           conn: str | None, window: str | None, plot: Path | None, html: Path | None) -> list[str]:
    messages: list[str] = []
    ladder = build_ladder(result, conn=conn, window=window) if diagram is not None else None
    if pcap is not None:
        seen = f", as {pcap_host} saw them" if pcap_host else ""
        why = "" if result.trace.records else ": no packets in the trace, this run was made without one"
        for limit in limits(result.trace.records):  # a .pcap cannot say it on a packet: the message says it
            why += (f"; {limit}: the capture ends there" if limit.startswith(CUT_PREFIX)
                    else f"; {limit.split(': ')[0]}: only its connections are in the capture")
        if pcap.suffix.lower() == ".pcapng":
            from timewait.report.pcapng import encode_pcapng

            count: list[int] = []
            out.write(pcap, lambda f: count.append(encode_pcapng(result, f, pcap_host)))
            where = f"{pcap_host}'s interface" if pcap_host else f"{len(result.nodes)} interfaces, one per node"
            messages.append(f"wrote {pcap} ({count[0]} frames, {where}, fates as packet comments{why})")
        else:
            from timewait.report.pcap import captured_packets, encode_pcap

            packets = captured_packets(result, pcap_host)
            out.write(pcap, lambda f: encode_pcap(packets, f))
            messages.append(f"wrote {pcap} ({len(packets)} packets{seen}{why})")
    if diagram is not None and ladder is not None:
        text = render_mermaid(ladder) if diagram.suffix.lower() == ".mmd" else render_svg(ladder)
        out.write(diagram, lambda f: f.write(text.encode("utf-8")))
        more = f", {ladder.truncated} more left out" if ladder.truncated else ""
        if ladder.empty:
            more += ": no packets in the trace, the diagram says so"
        messages.append(f"wrote {diagram} (ladder diagram, {len(ladder.hops)} packet hops{more})")
    png: bytes | None = None
    if plot is not None:
        from timewait.report.plots import render_png

        png = render_png(result)
        data = png
        out.write(plot, lambda f: f.write(data))
        messages.append(f"wrote {plot} (from the telemetry: sockets by state, ports in use, connect() per second, "
                        "TIME_WAIT records)")
    if html is not None:
        from timewait.report.html import render_html

        page = render_html(result, conn=conn, window=window, plot_png=png)
        out.write(html, lambda f: f.write(page.encode("utf-8")))
        messages.append(f"wrote {html} (self-contained HTML report)")
    return messages
