"""PNG plots of a run (matplotlib, Agg): sockets by state, ports in use, connection outcomes.

Three panels sharing the time axis (simulated seconds):

1. sockets by state over time, per host -- TIME_WAIT drawn thick and on top;
2. local ports in use on each connecting host, against its
   ``ip_local_port_range`` (the ceiling the chapter's S6/S11 run into);
3. connections per second that succeeded (SYN_SENT -> ESTABLISHED) and failed
   (SYN_SENT -> CLOSED, or ``connect()`` returning an error such as EADDRNOTAVAIL).

With the trace on, everything is rebuilt from STATE and CALL records. With the
trace off, the panels read ``result.series`` instead:

- ``HOST.STATE`` (e.g. ``c1.TIME_WAIT``, ``c1.ESTABLISHED``): sockets in that state;
- ``HOST.ports_in_use``: local ports in use;
- ``HOST.connect_ok`` / ``HOST.connect_fail``: cumulative counts of connections
  that succeeded / failed (differenced into per-second bars).

A panel with nothing to show says so.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict

from matplotlib.figure import Figure

from timewait import trace as T
from timewait.report.sockets import state_changes
from timewait.result import RunResult
from timewait.tcp.states import NAMES

Series = list[tuple[float, float]]
_STATE_COLORS = {
    "TIME_WAIT": "#d62728", "ESTABLISHED": "#1f77b4", "FIN_WAIT_2": "#ff7f0e", "FIN_WAIT_1": "#e6a23c",
    "CLOSE_WAIT": "#9467bd", "LAST_ACK": "#8c564b", "SYN_SENT": "#2ca02c", "SYN_RECEIVED": "#17becf",
    "CLOSING": "#7f7f7f", "LISTEN": "#bcbd22",
}
MAX_STATE_LINES = 12


def state_series(result: RunResult) -> dict[tuple[str, str], Series]:
    """Sockets per (host, state) as step points ``(t_s, count)``, from the trace or ``series``."""
    out: dict[tuple[str, str], Series] = {}
    if result.trace.records:
        counts: Counter[tuple[str, str]] = Counter()
        for t, host, old, new in state_changes(result.trace.records):
            ts = t / 1e6
            for st, d in ((old, -1), (new, 1)):
                if st is None:
                    continue
                counts[(host, st)] += d
                out.setdefault((host, st), [(0.0, 0.0)]).append((ts, float(counts[(host, st)])))
    else:
        for name, pts in result.series.items():
            host, _, st = name.rpartition(".")
            if host and st in NAMES:
                out[(host, st)] = list(pts)
    end = result.sim_time
    for pts in out.values():
        if pts and pts[-1][0] < end:
            pts.append((end, pts[-1][1]))
    return out


def _port_range(result: RunResult, host: str) -> tuple[int, int] | None:
    text = result.hosts.get(host, {}).get("sysctls", {}).get("net.ipv4.ip_local_port_range")
    if text is None:
        return None
    try:
        lo, hi = (int(x) for x in str(text).replace(",", " ").split()[:2])
    except ValueError:
        return None
    return lo, hi


def ports_series(result: RunResult) -> dict[str, Series]:
    """Local ports in use on each host that opened connections (from the trace or ``series``)."""
    out: dict[str, Series] = {}
    if not result.trace.records:
        for name, pts in result.series.items():
            host, _, what = name.rpartition(".")
            if what == "ports_in_use":
                out[host] = list(pts)
        return out
    connecting = {rec[2] for rec in result.trace.records if rec[1] == T.STATE and rec[5] == "SYN_SENT"}
    in_use: dict[str, Counter[int]] = defaultdict(Counter)
    for rec in result.trace.records:
        if rec[1] != T.STATE or rec[2] not in connecting:
            continue
        t, host, key, old, new = rec[0], rec[2], rec[3], rec[4], rec[5]
        rng = _port_range(result, host)
        if rng is not None and not rng[0] <= key[1] <= rng[1]:
            continue
        ports = in_use[host]
        before = len(ports)
        if old == "CLOSED" and new != "CLOSED":
            ports[key[1]] += 1
        elif new == "CLOSED" and old != "CLOSED":
            ports[key[1]] -= 1
            if ports[key[1]] <= 0:
                del ports[key[1]]
        if len(ports) != before:
            out.setdefault(host, [(0.0, 0.0)]).append((t / 1e6, float(len(ports))))
    for pts in out.values():
        pts.append((result.sim_time, pts[-1][1]))
    return out


def outcome_bins(result: RunResult) -> tuple[list[float], list[int], list[int]]:
    """Per-second bins: ``(bin starts, successes, failures)``."""
    ok: Counter[int] = Counter()
    fail: Counter[int] = Counter()
    if result.trace.records:
        for rec in result.trace.records:
            if rec[1] == T.STATE and rec[4] == "SYN_SENT":
                (ok if rec[5] == "ESTABLISHED" else fail if rec[5] == "CLOSED" else Counter())[rec[0] // 1_000_000] += 1
            elif rec[1] == T.CALL and rec[4] == "connect" and rec[6] not in (None, "EINPROGRESS"):
                fail[rec[0] // 1_000_000] += 1
    else:
        for name, pts in result.series.items():
            target = ok if name.endswith(".connect_ok") else fail if name.endswith(".connect_fail") else None
            if target is None:
                continue
            prev = 0.0
            for t, v in pts:
                if v > prev:
                    target[int(t)] += int(v - prev)
                prev = v
    if not ok and not fail:
        return [], [], []
    last = max([*ok, *fail])
    secs = list(range(0, last + 1))
    return [float(s) for s in secs], [ok[s] for s in secs], [fail[s] for s in secs]


def render_png(result: RunResult) -> bytes:
    """The three panels as PNG bytes."""
    fig = Figure(figsize=(10, 9.5), dpi=110, layout="constrained")
    ax1, ax2, ax3 = fig.subplots(3, 1, sharex=True)
    fig.suptitle(f"{result.scenario} (profile {result.profile}, seed {result.seed})", fontweight="bold")
    # Without a trace the panels have only what the scenario sampled; say so where that is nothing.
    why = "" if result.trace.records else "\n(no packets in the trace: this run was made without one)"

    states = state_series(result)
    order = sorted(states, key=lambda k: (k[1] != "TIME_WAIT", k[0], k[1]))[:MAX_STATE_LINES]
    styles = ["-", "--", ":", "-."]
    hosts = sorted({h for h, _ in order})
    for host, st in order:
        xs, ys = zip(*states[(host, st)], strict=True)
        tw = st == "TIME_WAIT"
        ax1.step(xs, ys, where="post", label=f"{host} {st}", color=_STATE_COLORS.get(st, "#333"),
                 linewidth=2.6 if tw else 1.2, linestyle=styles[hosts.index(host) % len(styles)],
                 zorder=3 if tw else 2)
    ax1.set_ylabel("sockets")
    ax1.set_title("Sockets by state over time (TIME_WAIT thick)", loc="left", fontsize=10)
    _legend_or_empty(ax1, bool(order), "no socket state changes recorded" + why)

    ports = ports_series(result)
    for host, pts in sorted(ports.items()):
        xs, ys = zip(*pts, strict=True)
        ax2.step(xs, ys, where="post", label=f"{host} ports in use", linewidth=2)
        rng = _port_range(result, host)
        if rng is not None:
            size = rng[1] - rng[0] + 1
            ax2.axhline(size, linestyle="--", color="#555", linewidth=1)
            ax2.annotate(f"{host} ip_local_port_range {rng[0]}-{rng[1]}: {size} ports", xy=(0.01, size),
                         xycoords=("axes fraction", "data"), xytext=(0, -12), textcoords="offset points",
                         fontsize=8, color="#555")
    ax2.set_ylabel("local ports")
    ax2.set_title("Local ports in use against the range", loc="left", fontsize=10)
    _legend_or_empty(ax2, bool(ports), "no host opened connections" + why)

    starts, ok, fail = outcome_bins(result)
    if starts:
        ax3.bar(starts, ok, width=0.9, align="edge", color="#2ca02c", label="succeeded")
        ax3.bar(starts, fail, width=0.9, align="edge", bottom=ok, color="#d62728", label="failed")
    ax3.set_ylabel("connections per second")
    ax3.set_xlabel("simulated time (s)")
    ax3.set_title("Connection attempts per second", loc="left", fontsize=10)
    _legend_or_empty(ax3, bool(starts), "no connection attempts recorded" + why)
    ax3.set_xlim(0, max(result.sim_time, 1e-3))
    for ax in (ax1, ax2, ax3):
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _legend_or_empty(ax, has_data: bool, empty_text: str) -> None:  # type: ignore[no-untyped-def]
    if has_data:
        ax.legend(loc="best", fontsize=8, ncols=2)
    else:
        ax.text(0.5, 0.5, empty_text, transform=ax.transAxes, ha="center", va="center", color="#777")
