"""PNG plots of a run (matplotlib, Agg), drawn from the run's telemetry, never from the trace.

The trace may be off or cut at its limit; the telemetry (``RunResult.telemetry``,
see :class:`timewait.result.SeriesRun`) is exact at any run size. One column
per simulation the scenario ran (max-rate: just under and just over the limit,
side by side), four panels sharing the time axis (simulated seconds):

1. sockets by state per host, TIME_WAIT thick, its exact maximum marked, and
   ``tcp_max_tw_buckets`` drawn where the run changed it or reached it;
2. local ports in use on each connecting host against its ``ip_local_port_range``;
3. connect() outcomes per second: answered, and each errno (``EADDRNOTAVAIL``);
4. TIME_WAIT records so far: created, expired, reused, killed and overflowed
   (``TcpExtTCPTimeWaitOverflow``: connections that closed past the cap).

The title states the scenario, profile, seed and every sysctl changed from the
profile's. :func:`plot_figure` returns the matplotlib Figure (tests read its
lines back); :func:`render_png` its PNG bytes.
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from timewait.result import RunResult, SeriesRun

_STATE_COLORS = {
    "TIME_WAIT": "#d62728", "ESTABLISHED": "#1f77b4", "FIN_WAIT_2": "#ff7f0e", "FIN_WAIT_1": "#e6a23c",
    "CLOSE_WAIT": "#9467bd", "LAST_ACK": "#8c564b", "SYN_SENT": "#2ca02c", "SYN_RECEIVED": "#17becf",
    "CLOSING": "#7f7f7f", "LISTEN": "#bcbd22",
}
STATES = ("TIME_WAIT", "ESTABLISHED", "SYN_SENT", "SYN_RECEIVED", "FIN_WAIT_1", "FIN_WAIT_2", "CLOSE_WAIT",
          "CLOSING", "LAST_ACK", "LISTEN")
MAX_STATE_LINES = 12
_TW_FATES = (("tw.created", "created", "#d62728"), ("tw.expired", "expired", "#2ca02c"),
             ("tw.reused", "reused", "#1f77b4"), ("tw.killed", "killed (RST)", "#7f7f7f"),
             ("tw.overflowed", "overflowed (TcpExtTCPTimeWaitOverflow)", "#9467bd"))
_STYLES = ["-", "--", ":", "-."]


def _sysctl(result: RunResult, run: SeriesRun, host: str, name: str) -> str | None:
    """A host's sysctl as text: the run's changes first, else the main run's end-of-run snapshot."""
    v = run.sysctls_changed.get(host, {}).get(name)
    if v is None and run is (result.telemetry[0] if result.telemetry else None):
        v = result.hosts.get(host, {}).get("sysctls", {}).get(name)
    return None if v is None else str(v)


def _port_range(result: RunResult, run: SeriesRun, host: str) -> tuple[int, int] | None:
    text = _sysctl(result, run, host, "net.ipv4.ip_local_port_range")
    if text is None:
        return None
    try:
        lo, hi = (int(x) for x in text.replace(",", " ").replace("-", " ").split()[:2])
    except ValueError:
        return None
    return lo, hi


def sysctls_line(result: RunResult) -> str:
    """``sysctls changed: c1 net.ipv4.tcp_max_tw_buckets=8192; …`` over every run (once each)."""
    seen: dict[str, None] = {}
    for run in result.telemetry:
        for host, changed in run.sysctls_changed.items():
            for k, v in changed.items():
                seen[f"{host} {k}={str(v).replace(chr(9), chr(32))}"] = None  # /proc spells ranges with a tab
    return "sysctls changed: " + ("; ".join(seen) if seen else "none (the profile's defaults)")


def plot_figure(result: RunResult) -> Figure:
    """The plots as a matplotlib Figure: one column per simulation, four panels each."""
    runs = result.telemetry
    ncols = max(1, len(runs))
    fig = Figure(figsize=(10 if ncols == 1 else 8 * ncols, 12), dpi=100, layout="constrained")
    axes = fig.subplots(4, ncols, sharex="col", squeeze=False)
    fig.suptitle(f"{result.scenario} (profile {result.profile}, seed {result.seed})\n{sysctls_line(result)}",
                 fontweight="bold", fontsize=11)
    if not runs:
        for ax in axes[:, 0]:
            _empty(ax, "no telemetry in this result")
        return fig
    for col, run in enumerate(runs):
        _draw_run(result, run, axes[:, col], f"{run.label}: " if len(runs) > 1 else "")
    return fig


def _draw_run(result: RunResult, run: SeriesRun, axes: Any, prefix: str) -> None:
    ax1, ax2, ax3, ax4 = axes
    xs = run.times()
    hosts = run.hosts
    end = run.end_us / 1e6

    # 1. sockets by state
    lines = [(h, st) for st in STATES for h in hosts if any(run.get(h, st))][:MAX_STATE_LINES]
    for host, st in lines:
        tw = st == "TIME_WAIT"
        ax1.step(xs, run.get(host, st), where="post", label=f"{host} {st}", color=_STATE_COLORS.get(st, "#333"),
                 linewidth=2.6 if tw else 1.2, linestyle=_STYLES[hosts.index(host) % len(_STYLES)],
                 zorder=3 if tw else 2)
    for host in hosts:
        peak = run.maximum(host, "TIME_WAIT")
        if peak is None:
            continue
        value, at = peak
        ax1.plot([at], [value], marker="o", color="#d62728", linestyle="none", label=f"{host} TIME_WAIT max")
        ax1.annotate(f"{host}: {value:,} TIME_WAIT at {at:.6g} s", xy=(at, value), xytext=(6, -12),
                     textcoords="offset points", fontsize=8, color="#d62728")
        cap_text = _sysctl(result, run, host, "net.ipv4.tcp_max_tw_buckets")
        cap = int(cap_text) if cap_text and cap_text.isdigit() else None
        if cap is not None and (host in run.sysctls_changed and "net.ipv4.tcp_max_tw_buckets"
                                in run.sysctls_changed[host] or value >= cap):
            ax1.axhline(cap, linestyle="--", color="#9467bd", linewidth=1.2, label=f"{host} tcp_max_tw_buckets {cap:,}")
    ax1.set_ylabel("sockets")
    ax1.set_title(f"{prefix}sockets by state (TIME_WAIT thick; dot: its exact maximum)", loc="left", fontsize=10)
    _legend_or_empty(ax1, bool(lines), "no sockets")

    # 2. local ports in use, on the hosts that connect()ed
    connecting = [h for h in hosts if run.names(h, "connect.") or run.names(h, "ports_to.")]
    for host in connecting:
        ax2.step(xs, run.get(host, "ports_in_use"), where="post", label=f"{host} ports in use", linewidth=2)
        dests = run.names(host, "ports_to.")
        if 1 < len(dests) <= 4:
            for d in dests:
                ax2.step(xs, run.get(host, d), where="post", linewidth=1, linestyle=":",
                         label=f"{host} toward {d.removeprefix('ports_to.')}")
        rng = _port_range(result, run, host)
        if rng is not None:
            size = rng[1] - rng[0] + 1
            ax2.axhline(size, linestyle="--", color="#555", linewidth=1,
                        label=f"{host} ip_local_port_range {rng[0]}-{rng[1]}: {size:,} ports")
    ax2.set_ylabel("local ports")
    ax2.set_title(f"{prefix}local ports in use against the range", loc="left", fontsize=10)
    _legend_or_empty(ax2, bool(connecting), "no host called connect()")

    # 3. connect() outcomes per second
    drawn = False
    step = run.step_us / 1e6
    for host in connecting:
        for name in run.names(host, "connect."):
            what = name.removeprefix("connect.")
            ok = what == "ok"
            ax3.plot(xs, run.rate(host, name), linewidth=1.6 if ok else 2,
                     color="#2ca02c" if ok else None,
                     label=f"{host} {'answered' if ok else 'failed: ' + what} per second")
            drawn = True
    ax3.set_ylabel("connect() per second")
    window = max(1, -(-1_000_000 // run.step_us)) * step if run.step_us else 1.0
    ax3.set_title(f"{prefix}connect() outcomes per second (over the last {window:g} s)", loc="left", fontsize=10)
    _legend_or_empty(ax3, drawn, "no connect() calls")

    # 4. TIME_WAIT records so far
    drawn = False
    for host in hosts:
        for name, what, color in _TW_FATES:
            if name in run.names(host, "tw."):
                ax4.step(xs, run.get(host, name), where="post", color=color,
                         linestyle=_STYLES[hosts.index(host) % len(_STYLES)], label=f"{host} TIME_WAIT {what}")
                drawn = True
    ax4.set_ylabel("records so far")
    ax4.set_xlabel("simulated time (s)")
    ax4.set_title(f"{prefix}TIME_WAIT records: created, expired, reused, killed, overflowed", loc="left",
                  fontsize=10)
    _legend_or_empty(ax4, drawn, "no TIME_WAIT records")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.set_xlim(0, max(end, 1e-3))


_last_png: list[tuple[RunResult, bytes]] = []  # the last run drawn: --plot and --html share one rendering


def render_png(result: RunResult) -> bytes:
    """:func:`plot_figure` as PNG bytes (drawn once per run: the same run gives the same picture)."""
    if _last_png and _last_png[0][0] is result:
        return _last_png[0][1]
    buf = io.BytesIO()
    plot_figure(result).savefig(buf, format="png")
    png = buf.getvalue()
    _last_png[:] = [(result, png)]
    return png


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#777")


def _legend_or_empty(ax: Axes, has_data: bool, empty_text: str) -> None:
    if has_data:
        ax.legend(loc="best", fontsize=7, ncols=2)
    else:
        _empty(ax, empty_text)
