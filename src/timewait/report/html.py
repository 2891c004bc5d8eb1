"""One self-contained HTML page per run: story, checks, ladder, plots, socket tables, how to reproduce.

Nothing is fetched from the network when the page opens: the ladder and the
series are inline SVG, the plot a ``data:`` PNG, the style an inline ``<style>``,
and the one script (:mod:`timewait.report.explorer`: the time scrubber, the
sockets and counts at the scrubbed instant, both ends' TCB of a clicked segment)
is inline and ours.
"""

from __future__ import annotations

import base64
import json
import shlex
from html import escape
from typing import Any

from timewait.errors import UsageError, missing_extra
from timewait.report.explorer import EXPLORER_CSS, explorer_html
from timewait.report.ladder import Ladder, build_ladder
from timewait.report.sockets import key_moments, netstat_lines, sockets_at
from timewait.report.ss import ss_rows
from timewait.report.tcpdump import format_trace
from timewait.result import RunResult
from timewait.trace import cut_notice

TRACE_LINES = 2000  # the trace excerpt's length; the pcap has every packet

_CSS = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1180px;
       color: #222; line-height: 1.45; padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ccd; padding-bottom: 3px; margin-top: 1.8em; }
.meta { color: #555; }
pre, code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
pre { background: #f6f7fa; border: 1px solid #e1e4ea; padding: 10px; overflow-x: auto; }
.story { white-space: pre-wrap; }
table { border-collapse: collapse; }
td, th { padding: 3px 10px; border-bottom: 1px solid #e6e6ee; text-align: left; vertical-align: top; }
.pass { color: #1b7e2c; font-weight: bold; }
.fail { color: #b3261e; font-weight: bold; }
.figure { overflow-x: auto; border: 1px solid #e1e4ea; background: #fff; }
img.plot { max-width: 100%; }
"""


def _plot_or_none(result: RunResult) -> bytes | None:
    """The run's plot as PNG, or None where matplotlib (the 'plot' extra) is not installed."""
    try:
        from timewait.report.plots import render_png
    except ModuleNotFoundError as err:
        if missing_extra(err) is None:
            raise
        return None
    return render_png(result)


def reproduce_command(result: RunResult) -> str:
    """The ``timewait run`` command line that makes this run again."""
    words = ["timewait", "run", result.scenario]
    for k, v in result.params.items():
        if v is None:
            continue
        if isinstance(v, bool):
            v = "on" if v else "off"
        words += ["--set", f"{k}={v}"]
    for s in result.sysctl_overrides:
        words += ["--sysctl", s]
    words += ["--profile", result.profile, "--seed", str(result.seed)]
    return " ".join(shlex.quote(w) for w in words)


def _value(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, default=str)
    return text if len(text) <= 300 else text[:300] + f" ... ({len(text)} characters)"


def render_html(result: RunResult, *, conn: str | None = None, window: str | None = None,
                plot_png: bytes | None = None) -> str:
    """The page as a string. ``conn``/``window`` select what the ladder shows."""
    e = escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(result.scenario)} - timewait run</title>", f"<style>{_CSS}{EXPLORER_CSS}</style></head><body>",
        f"<h1>{e(result.scenario)}</h1>",
        f'<p class="meta">profile {e(result.profile)}, seed {result.seed}, {result.sim_time:g} s of simulated time; '
        f'{"all checks passed" if result.passed else "some checks FAILED"}</p>',
    ]
    if result.story:
        parts.append(f'<p class="story">{e(result.story)}</p>')
    if result.contrast:
        parts.append(f'<p class="story"><em>{e(result.contrast)}</em></p>')

    parts.append("<h2>Checks</h2><table>")
    for c in result.checks:
        cls, word = ("pass", "PASS") if c.passed else ("fail", "FAIL")
        parts.append(f'<tr><td class="{cls}">{word}</td><td>{e(c.name)}</td><td>{e(c.detail)}</td></tr>')
    if not result.checks:
        parts.append("<tr><td>(this run has no checks)</td></tr>")
    parts.append("</table>")

    parts.append("<h2>Explorer: ladder, sockets and counts at an instant</h2>")
    lad: Ladder | None = None
    try:
        lad = build_ladder(result, conn=conn, window=window)
    except UsageError as err:
        parts.append(f"<p>{e(str(err))}</p>")
    parts.append(explorer_html(result, lad, cut=cut_notice(result.trace.records)))

    parts.append("<h2>Reproduce</h2>")
    parts.append(f"<pre>{e(reproduce_command(result))}</pre>")

    if result.metrics:
        parts.append("<h2>Metrics</h2><table>")
        for k, v in result.metrics.items():
            parts.append(f"<tr><td>{e(str(k))}</td><td><code>{e(_value(v))}</code></td></tr>")
        parts.append("</table>")

    parts.append("<h2>Plots</h2>")
    png = plot_png if plot_png is not None else _plot_or_none(result)
    if png is None:  # said on the page, not left out silently
        parts.append(f"<p>No plots: {e(missing_extra(ModuleNotFoundError(name='matplotlib')) or '')}.</p>")
    else:
        parts.append(f'<img class="plot" alt="sockets by state, ports in use and connections per second" '
                     f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">')

    cut = cut_notice(result.trace.records)
    moments = key_moments(result)
    if moments:
        parts.append("<h2>Sockets at key moments</h2>")
        if cut:  # these tables are rebuilt from the trace
            parts.append(f'<p class="cut"><b>{e(cut)}</b></p>')
    for m in moments:
        parts.append(f"<h3>at {m.at_us / 1e6:.6f} s</h3><p>{e(m.caption)}</p>")
        for host, socks in sockets_at(result, m.at_us).items():
            shown = socks[:40]
            more = f"\n... and {len(socks) - len(shown)} more" if len(socks) > len(shown) else ""
            netstat = "\n".join(netstat_lines(shown)) if socks else "(no sockets)"
            ss = "\n".join(ss_rows(shown, m.at_us))
            parts.append(f"<p><b>{e(host)}</b></p><pre>{e(host)}$ netstat -atn\n{e(netstat)}{e(more)}\n\n"
                         f"{e(host)}$ ss -tan -o\n{e(ss)}{e(more)}</pre>")

    cut_note = cut
    if result.trace.records:
        n = len(result.trace.records)
        lines = "\n".join(format_trace(result.trace.records[:TRACE_LINES]))
        cut = f" (the first {TRACE_LINES} of {n})" if n > TRACE_LINES else ""
        notice = f'<p class="cut"><b>{e(cut_note)}</b></p>' if cut_note else ""
        parts.append(f"<h2>Trace</h2>{notice}<details><summary>{n} records{cut}</summary><pre>{e(lines)}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
