"""The terminal report of ``timewait run``: story, trace, socket tables, checks, metrics.

Printed with Rich; colour only on a terminal, plain text when piped (so the
socket rows read exactly like ``netstat -atn``).
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from timewait.i18n import caption, moment_caption
from timewait.plain import plain
from timewait.report.sockets import key_moments, netstat_lines, sockets_at
from timewait.report.ss import ss_summary as ss_summary_text
from timewait.report.ss import ss_table
from timewait.report.tcpdump import format_trace
from timewait.result import RunResult
from timewait.trace import cut_notice

MAX_ROWS_PER_HOST = 12


def print_run(
    result: RunResult,
    trace: bool = False,
    ss_at: float | None = None,
    ss_summary: bool = False,
    messages: list[str] | None = None,
    *,
    ss_all: bool = False,
    console: Console | None = None,
    absolute: bool = False,
    verbose: bool = False,
    lang: str = "en",
) -> None:
    """Print one run for a person: what it shows, then the evidence, then the verdict.

    ``trace`` adds every trace record as a tcpdump-style line; ``ss_at`` adds
    an ``ss -tan -o`` table at that simulated time (``ss_summary`` adds TIME_WAIT
    counts per remote and local address; ``ss_all`` lists every row of a big table);
    ``messages`` (e.g. "wrote x.pcap") come last. ``lang`` is the language of the captions;
    the result's own texts are translated before (:func:`timewait.i18n.localize`).
    """
    def _(template: str, *args: object) -> str:
        return caption(lang, template, *args)

    con = console or Console(highlight=False, soft_wrap=True)
    _header(con, result, lang)
    if trace:
        con.rule(_("trace"), style="dim")
        _print_trace(con, result, absolute, verbose, lang)
    _socket_tables(con, result, lang)
    if ss_at is not None:
        con.rule(_("ss at {} s", f"{ss_at:g}"), style="dim")
        con.print(Text(ss_table(result, ss_at, all_rows=ss_all)))
        if ss_summary:
            con.print()
            con.print(Text(ss_summary_text(result, ss_at)))
    elif ss_summary:
        at = result.sim_time
        con.rule(_("TIME_WAIT summary at the end ({} s)", f"{at:g}"), style="dim")
        con.print(Text(ss_summary_text(result, at)))
    _metrics(con, result, lang)
    _checks(con, result, lang)
    for m in messages or []:
        con.print(Text(m))


def _header(con: Console, result: RunResult, lang: str = "en") -> None:
    title = Text(f"{result.scenario}", style="bold")
    title.append(caption(lang, "  profile {}, seed {}, {} s simulated", result.profile, result.seed,
                         f"{result.sim_time:g}"), style="dim")
    con.print(title)
    if result.params:
        con.print(Text(caption(lang, "params: ") + " ".join(f"{k}={v}" for k, v in result.params.items()),
                       style="dim"))
    if result.sysctl_overrides:
        con.print(Text(caption(lang, "sysctls: ") + " ".join(result.sysctl_overrides), style="dim"))
    if result.story:
        con.print(Text(result.story))
    if result.contrast:
        con.print(Text(result.contrast, style="italic"))


def _print_trace(con: Console, result: RunResult, absolute: bool = False, verbose: bool = False,
                 lang: str = "en") -> None:
    if not result.trace.on and not result.trace.records:
        con.print(Text(caption(lang, "(the trace was switched off for this run)"), style="dim"))
        return
    # One write of plain lines: Rich markup per line is too slow for big traces.
    out = con.file if con.file is not None else sys.stdout
    lines = list(format_trace(result.trace.records, absolute=absolute, verbose=verbose))
    cut = cut_notice(result.trace.records)
    if cut:  # said where a reader of the trace looks last: at its end
        lines.append(f"# {cut}")
    out.write("\n".join(lines) + ("\n" if lines else ""))
    out.flush()


def _socket_tables(con: Console, result: RunResult, lang: str = "en") -> None:
    moments = key_moments(result)
    if not moments:
        return
    con.rule(caption(lang, "sockets (netstat -atn on each host)"), style="dim")
    cut = cut_notice(result.trace.records)
    if cut:  # these tables are rebuilt from the trace
        con.print(Text(cut, style="bold yellow"))
    for m in moments:
        con.print(Text(caption(lang, "at {} s, {}:", f"{m.at_us / 1e6:.6f}", moment_caption(m.caption, lang)),
                       style="bold"))
        for host, socks in sockets_at(result, m.at_us).items():
            if not socks:
                con.print(Text(caption(lang, "  {}: no sockets", host), style="dim"))
                continue
            con.print(Text(caption(lang, "  {}:", host)))
            lines = netstat_lines(socks[:MAX_ROWS_PER_HOST])
            for i, line in enumerate(lines):
                style = "dim" if i == 0 else ("yellow" if line.endswith("TIME_WAIT") else "")
                con.print(Text("    " + line, style=style))
            if len(socks) > MAX_ROWS_PER_HOST:
                more: dict[str, int] = {}
                for s in socks[MAX_ROWS_PER_HOST:]:
                    more[s.state] = more.get(s.state, 0) + 1
                rest = ", ".join(f"{st} {n}" for st, n in sorted(more.items(), key=lambda kv: -kv[1]))
                con.print(Text(caption(lang, "    ... and {} more ({})", len(socks) - MAX_ROWS_PER_HOST, rest),
                               style="dim"))


def _is_timeline(v: Any) -> bool:
    """``[[t, text], ...]``: events with times in seconds (scenarios' ``timeline`` metrics)."""
    return (isinstance(v, list) and bool(v) and all(
        isinstance(e, list | tuple) and len(e) == 2 and isinstance(e[0], int | float) and isinstance(e[1], str)
        for e in v))


def _cell(v: Any) -> str:
    """One table cell: a list of sentences one after the other, anything else in words."""
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v) and any(", " in x for x in v):
        return "; ".join(v)  # sentences that have commas of their own
    return plain(v)


def _rows_table(rows: list[tuple[str, dict[str, Any]]], first: str) -> Table:
    """Records (dicts of like keys) as a table: one row each, one column per key."""
    cols: list[str] = []
    for _, rec in rows:
        cols += [k for k in rec if k not in cols]
    t = Table(show_header=True, header_style="dim", box=None, pad_edge=False)
    if first:
        t.add_column(first, no_wrap=True)
    for c in cols:
        t.add_column(str(c), overflow="fold")
    for name, rec in rows:
        cells = [_cell(rec.get(c)) if c in rec else "" for c in cols]
        t.add_row(*([name] if first else []), *cells)
    return t


def render_value(v: Any) -> Any:
    """A metric's value for the console: a timeline as aligned rows (time, event), records
    as a table with one row each, a mapping as name/value rows, anything else in words
    (:func:`timewait.plain.plain`): never a Python repr."""
    if _is_timeline(v):
        t = Table(show_header=False, box=None, pad_edge=False)
        t.add_column("t", justify="right", no_wrap=True)
        t.add_column("event")
        for when, text in v:
            t.add_row(f"{when:.6f} s", text)
        return t
    if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()):
        return _rows_table([(str(k), x) for k, x in v.items()], " ")
    if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
        return _rows_table([("", x) for x in v], "")
    if isinstance(v, dict) and v and any(isinstance(x, dict | list) for x in v.values()):
        t = Table(show_header=False, box=None, pad_edge=False)
        t.add_column("name", style="dim", no_wrap=True)
        t.add_column("value")
        for k, x in v.items():
            t.add_row(str(k), render_value(x))
        return t
    return _cell(v)


def _metrics(con: Console, result: RunResult, lang: str = "en") -> None:
    if not result.metrics:
        return
    con.rule(caption(lang, "metrics"), style="dim")
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column("metric", style="dim", no_wrap=True)
    t.add_column("value")
    for k, v in result.metrics.items():
        t.add_row(str(k), render_value(v))
    con.print(t)


def _checks(con: Console, result: RunResult, lang: str = "en") -> None:
    con.rule(caption(lang, "checks"), style="dim")
    if not result.checks:
        con.print(Text(caption(lang, "(this scenario has no checks)"), style="dim"))
    for c in result.checks:
        line = Text("PASS " if c.passed else "FAIL ", style="bold green" if c.passed else "bold red")
        line.append(c.name)
        if c.detail:
            line.append(caption(lang, ": ") + c.detail, style="dim")
        con.print(line)
    verdict = caption(lang, "all checks passed" if result.passed else "some checks FAILED")
    con.print(Text(verdict, style="bold green" if result.passed else "bold red"))
