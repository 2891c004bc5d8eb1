"""Ladder (sequence) diagrams of a run, as SVG in the style of textbook figures, and as Mermaid.

One vertical line per node (hosts, and routers/NATs on the path), time
running downward, one slanted arrow per packet per hop from its send time to
its arrival time, labelled with flags, seq, ack, len and TSval/TSecr. Each
end's TCP state is written beside its line at every change; packets that were
lost or discarded stop with an ✕ and the reason; timers that matter (an RTO
that fired, the TIME_WAIT and FIN_WAIT_2 timers) are brackets beside the line.

The time axis is to scale only within bursts of activity: a gap between two
events longer than a few one-way delays is cut to a fixed height and drawn as
a break mark that says how much time was elided (a 60 s TIME_WAIT takes one
break, not sixty screens). The figure says so under its title.

:func:`build_ladder` selects what to draw (one connection with ``conn``, a
time window with ``window``); :func:`render_svg` and :func:`render_mermaid`
draw it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from timewait import trace as T
from timewait.errors import UsageError
from timewait.report.tcpdump import flag_names, fmt_time
from timewait.result import RunResult
from timewait.tcp.segment import ACK, SYN, Segment, ip_aton, ip_ntoa

MAX_HOPS = 300  # arrows drawn at most; more than that is unreadable anyway

# Drops on the way (the sender's link), as opposed to at the receiving node.
_LINK_DROPS = frozenset({"loss", "fault", "no-route"})
_TIMER_LABELS = {"rto": "RTO", "timewait": "TIME_WAIT", "fin_wait2": "FIN_WAIT_2"}
_SHORT_REASONS = {
    "loss": "lost", "fault": "dropped (fault rule)", "ttl": "TTL expired", "msl": "older than MSL",
    "paws": "PAWS: old timestamp", "no-socket": "no socket", "checksum": "bad checksum",
    "malformed": "malformed", "stale": "old duplicate", "recycle": "tw_recycle: old timestamp",
    "nat-no-mapping": "no NAT mapping", "nat-exhausted": "NAT ports exhausted", "no-route": "no route",
    "backlog": "listen queue full", "not-for-us": "not our address", "discarded": "discarded",
}


# --------------------------------------------------------------------------- the model


@dataclass(slots=True)
class Hop:
    """One packet crossing one link: an arrow."""

    pid: int
    src: str
    dst: str | None          # None: lost on the way and the next hop is unknown
    t_send: int
    t_arrive: int | None     # None: lost on the link (never arrived)
    seg: Segment
    idx_send: int
    idx_arrive: int
    drop: str | None = None  # drop reason; with t_arrive set, dropped where it arrived


@dataclass(slots=True)
class StateMark:
    t: int
    idx: int
    node: str
    key: tuple[int, int, int, int]
    old: str
    new: str


@dataclass(slots=True)
class TimerSpan:
    node: str
    key: tuple[int, int, int, int]
    name: str
    start: int
    end: int
    armed_for: int   # deadline - start, µs
    fired: bool
    idx: int
    state: str = ""  # the connection's state when the timer was armed

    @property
    def label(self) -> str:
        """``RTO 200 ms``, ``TIME_WAIT 60 s``; Linux's FIN_WAIT_2 uses the timewait timer."""
        name = "FIN_WAIT_2" if self.name == "timewait" and self.state == "FIN_WAIT_2" else \
            _TIMER_LABELS.get(self.name, self.name)
        return f"{name} {_duration(self.armed_for)}"


@dataclass(slots=True)
class Ladder:
    """What a ladder diagram shows, already filtered."""

    title: str
    columns: list[str]
    addrs: dict[str, str]
    kinds: dict[str, str]
    hops: list[Hop] = field(default_factory=list)
    states: list[StateMark] = field(default_factory=list)
    timers: list[TimerSpan] = field(default_factory=list)
    truncated: int = 0            # hops left out beyond MAX_HOPS
    selection: str = ""           # e.g. "connection 10.211.55.5:60494", "window 1:3 s"


def parse_conn(text: str) -> tuple[int | None, int]:
    """``"PORT"`` or ``"ADDR:PORT"`` to ``(addr or None, port)``; bad text is a :class:`UsageError`."""
    addr_text, sep, port_text = text.strip().rpartition(":")
    if not sep:
        port_text, addr_text = text.strip(), ""
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError
        addr = ip_aton(addr_text) if addr_text else None
    except ValueError:
        raise UsageError(f"--conn {text!r}: expected PORT or ADDR:PORT, e.g. 8888 or 10.211.55.5:60494") from None
    return addr, port


def parse_window(text: str) -> tuple[float | None, float | None]:
    """``"START:END"`` seconds (either side may be empty) to a pair; bad text is a :class:`UsageError`."""
    start_text, sep, end_text = text.strip().partition(":")
    bad = UsageError(f"--window {text!r}: expected START:END in seconds, e.g. 1.5:3 or 60: (START < END)")
    if not sep:
        raise bad
    try:
        start = float(start_text) if start_text.strip() else None
        end = float(end_text) if end_text.strip() else None
    except ValueError:
        raise bad from None
    if (start is not None and start < 0) or (start is not None and end is not None and start >= end):
        raise bad
    return start, end


def _matches(addr: int | None, port: int, a: int, p: int) -> bool:
    return p == port and (addr is None or a == addr)


def _seg_matches(sel: tuple[int | None, int], seg: Segment) -> bool:
    addr, port = sel
    return _matches(addr, port, seg.src, seg.sport) or _matches(addr, port, seg.dst, seg.dport)


def _key_matches(sel: tuple[int | None, int], key: tuple[int, int, int, int]) -> bool:
    addr, port = sel
    return _matches(addr, port, key[0], key[1]) or _matches(addr, port, key[2], key[3])


def _hops(result: RunResult) -> list[Hop]:
    """Every link crossing of every packet, from TX/FWD/RX/DROP records."""
    owner = {a: n for n, info in result.nodes.items() for a in info.addrs}
    departures: dict[int, list[tuple[str, int, Segment, int]]] = {}
    hops: list[Hop] = []
    last_hop: dict[tuple[int, str], Hop] = {}
    next_hop: dict[tuple[str, int], str] = {}

    def pid_of(seg: Segment) -> int:
        return seg.pid or id(seg)

    def arrive(pid: int, node: str, t: int, idx: int) -> Hop | None:
        deps = departures.get(pid)
        if not deps:
            return None
        for dnode, dt, dseg, didx in reversed(deps):
            if dnode != node and dt <= t:
                h = Hop(pid, dnode, node, dt, t, dseg, didx, idx)
                hops.append(h)
                last_hop[(pid, node)] = h
                next_hop[(dnode, dseg.dst)] = node
                return h
        return None

    for idx, rec in enumerate(result.trace.records):
        kind = rec[1]
        if kind == T.TX:
            departures.setdefault(pid_of(rec[3]), []).append((rec[2], rec[0], rec[3], idx))
        elif kind == T.FWD:
            pid = pid_of(rec[3])
            arrive(pid, rec[2], rec[0], idx)
            departures.setdefault(pid, []).append((rec[2], rec[0], rec[4], idx))
        elif kind == T.RX:
            arrive(pid_of(rec[3]), rec[2], rec[0], idx)
        elif kind == T.DROP:
            seg, reason, node, t = rec[3], rec[4], rec[2], rec[0]
            pid = pid_of(seg)
            deps = departures.get(pid) or []
            if reason in _LINK_DROPS and deps and deps[-1][0] == node:
                dnode, dt, dseg, didx = deps[-1]
                nxt = next_hop.get((dnode, dseg.dst)) or owner.get(dseg.dst)
                hops.append(Hop(pid, dnode, nxt if nxt != dnode else None, dt, None, dseg, didx, idx, reason))
                continue
            h = last_hop.get((pid, node))
            if h is not None and h.t_arrive == t and h.drop is None:
                h.drop = reason  # it arrived (RX/FWD) and was then discarded here
                continue
            h = arrive(pid, node, t, idx)
            if h is not None:
                h.drop = reason
    hops.sort(key=lambda h: (h.t_send, h.idx_send))
    return hops


def _timer_spans(result: RunResult) -> list[TimerSpan]:
    """Timers worth a bracket: an RTO that fired, and every TIME_WAIT / FIN_WAIT_2 timer."""
    armed: dict[tuple[str, Any, str], tuple[int, int, int, str]] = {}
    spans: list[TimerSpan] = []
    state: dict[tuple[str, Any], str] = {}

    def close(k: tuple[str, Any, str], end: int, fired: bool) -> None:
        start, deadline, idx, st = armed.pop(k)
        if k[2] == "rto" and not fired:
            return
        spans.append(TimerSpan(k[0], k[1], k[2], start, min(end, deadline), deadline - start, fired, idx, st))

    for idx, rec in enumerate(result.trace.records):
        kind = rec[1]
        if kind == T.TIMER:
            k = (rec[2], rec[3], rec[4])
            if k in armed:
                close(k, rec[0], False)
            if rec[5] is not None and rec[4] in _TIMER_LABELS:
                armed[k] = (rec[0], rec[5], idx, state.get((rec[2], rec[3]), ""))
        elif kind == T.FIRE:
            k = (rec[2], rec[3], rec[4])
            if k in armed:
                close(k, rec[0], True)
        elif kind == T.STATE:
            state[(rec[2], rec[3])] = rec[5]
            if rec[5] != "CLOSED":
                continue
            for k in [k for k in armed if k[0] == rec[2] and k[1] == rec[3]]:
                close(k, rec[0], False)
    end = int(result.sim_time * 1_000_000)
    for k in list(armed):
        close(k, end, False)
    return spans


def _order_columns(result: RunResult, hops: list[Hop], states: list[StateMark]) -> list[str]:
    """Clients (first to send a bare SYN) on the left, routers/NATs next, servers on the right."""
    used = {h.src for h in hops} | {h.dst for h in hops if h.dst} | {s.node for s in states}
    clients: list[str] = []
    for h in hops:
        if h.seg.flags & (SYN | ACK) == SYN and result.nodes.get(h.src, None) and \
                result.nodes[h.src].kind == "host" and h.src not in clients:
            clients.append(h.src)
    middle = [n for n, i in result.nodes.items() if i.kind != "host" and n in used]
    rest = [n for n, i in result.nodes.items() if i.kind == "host" and n in used and n not in clients]
    extra = sorted(used - set(clients) - set(middle) - set(rest))
    return clients + middle + rest + extra


def build_ladder(result: RunResult, conn: str | None = None, window: str | None = None) -> Ladder:
    """Select what the diagram shows: everything, one connection, and/or a time window."""
    hops = _hops(result)
    states = [StateMark(r[0], i, r[2], r[3], r[4], r[5]) for i, r in enumerate(result.trace.records)
              if r[1] == T.STATE]
    timers = _timer_spans(result)
    selection = []
    if conn is not None:
        sel = parse_conn(conn)
        pids = {h.pid for h in hops if _seg_matches(sel, h.seg)}
        hops = [h for h in hops if h.pid in pids]
        states = [s for s in states if _key_matches(sel, s.key)]
        timers = [t for t in timers if _key_matches(sel, t.key)]
        if not hops and not states:
            raise UsageError(f"--conn {conn!r} matches no connection of this run; "
                             f"connections: {', '.join(connections(result)[:6]) or 'none'}")
        selection.append(f"connection {conn}")
    if window is not None:
        start_s, end_s = parse_window(window)
        lo = int(start_s * 1e6) if start_s is not None else -1
        hi = int(end_s * 1e6) if end_s is not None else 1 << 62

        def inside(t: int | None) -> bool:
            return t is not None and lo <= t <= hi

        hops = [h for h in hops if inside(h.t_send) or inside(h.t_arrive)]
        states = [s for s in states if inside(s.t)]
        timers = [t for t in timers if t.start <= hi and t.end >= lo]
        if not hops and not states:
            raise UsageError(f"--window {window!r} holds no packet and no state change; "
                             f"the run covers 0 to {result.sim_time:g} s")
        selection.append(f"window {window} s")
    truncated = max(0, len(hops) - MAX_HOPS)
    if truncated:
        hops = hops[:MAX_HOPS]
        last = max(h.t_arrive or h.t_send for h in hops)
        states = [s for s in states if s.t <= last]
        timers = [t for t in timers if t.start <= last]
    columns = _order_columns(result, hops, states)
    addrs = {n: ", ".join(ip_ntoa(a) for a in result.nodes[n].addrs) if n in result.nodes else "" for n in columns}
    kinds = {n: result.nodes[n].kind if n in result.nodes else "host" for n in columns}
    title = f"{result.scenario} (profile {result.profile}, seed {result.seed})"
    return Ladder(title, columns, addrs, kinds, hops, states, timers, truncated, ", ".join(selection))


def connections(result: RunResult) -> list[str]:
    """Every connection of the run as ``A:P <-> B:Q`` (first seen first)."""
    seen: dict[frozenset[tuple[int, int]], str] = {}
    for rec in result.trace.records:
        if rec[1] == T.STATE:
            la, lp, ra, rp = rec[3]
            if ra == 0:
                continue
            k = frozenset({(la, lp), (ra, rp)})
            seen.setdefault(k, f"{ip_ntoa(la)}:{lp} <-> {ip_ntoa(ra)}:{rp}")
    return list(seen.values())


# --------------------------------------------------------------------------- labels


def hop_label(seg: Segment) -> tuple[str, str]:
    """The two lines written along an arrow: flags/seq/ack/len, then TSval/TSecr."""
    first = f"{flag_names(seg.flags)} seq={seg.seq}"
    if seg.flags & ACK:
        first += f" ack={seg.ack}"
    if seg.payload:
        first += f" len={len(seg.payload)}"
    second = f"TSval={seg.ts[0]} TSecr={seg.ts[1]}" if seg.ts is not None else ""
    if seg.ttl != 64:
        second = (second + f" ttl={seg.ttl}").strip()
    return first, second


def _duration(us: int) -> str:
    s = us / 1e6
    if s >= 1:
        return f"{s:.6g} s" if s < 100 else f"{s:.0f} s"
    if s >= 0.001:
        return f"{s * 1000:.4g} ms"
    return f"{us} µs"


# --------------------------------------------------------------------------- layout


FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
COL_GAP = 390         # px between lifelines
STATE_W = 118         # room for state labels beside a line
BRACKET_W = 26        # one timer lane
HOP_H = 64            # px for a typical one-way delay
BREAK_H = 44          # px a cut gap takes
TOP = 118             # y of the first event
SEP_SAME_NODE = 18    # px between two events at one node
SEP_TWO_SENDS = 40    # px between two departures from one node (two label lines each)


@dataclass(slots=True)
class _Event:
    t: int
    idx: int
    node: str | None
    what: str  # "send", "arrive", "state", "mark"
    y: float = 0.0


@dataclass(slots=True)
class _Layout:
    ys: dict[tuple[int, int], float]       # (t, idx) -> y
    anchors: list[tuple[int, float]]       # (t, y) for interpolating other times
    breaks: list[tuple[float, float, int]]  # (y_top, y_bottom, elided µs)
    height: float
    cut_us: int
    time_marks: list[tuple[float, int]]


def _layout(lad: Ladder) -> _Layout:
    found: dict[tuple[int, int], _Event] = {}
    arrival_of: dict[int, list[int]] = {}
    for h in lad.hops:
        found.setdefault((h.t_send, h.idx_send), _Event(h.t_send, h.idx_send, h.src, "send"))
        if h.t_arrive is not None:
            found.setdefault((h.t_arrive, h.idx_arrive), _Event(h.t_arrive, h.idx_arrive, h.dst, "arrive"))
        else:  # lost on the way: the arrow stops half-way down, which takes room too
            found.setdefault((h.t_send, h.idx_arrive), _Event(h.t_send, h.idx_arrive, None, "lost"))
        arrival_of.setdefault(h.idx_send, []).append(h.idx_arrive)
    for s in lad.states:
        found.setdefault((s.t, s.idx), _Event(s.t, s.idx, s.node, "state"))
    for tm in lad.timers:
        found.setdefault((tm.start, tm.idx), _Event(tm.start, tm.idx, None, "mark"))
        found.setdefault((tm.end, 1 << 40), _Event(tm.end, 1 << 40, None, "mark"))
    events = sorted(found.values(), key=lambda e: (e.t, e.idx))
    delays = [h.t_arrive - h.t_send for h in lad.hops if h.t_arrive is not None and h.t_arrive > h.t_send]
    unit = statistics.median(delays) if delays else 1000
    unit = max(unit, 1)
    scale = HOP_H / unit
    cut_us = int(3.5 * unit)
    ys: dict[tuple[int, int], float] = {}
    anchors: list[tuple[int, float]] = []
    breaks: list[tuple[float, float, int]] = []
    time_marks: list[tuple[float, int]] = []
    last_pkt: dict[str, tuple[float, str]] = {}   # last send/arrive y at each node
    last_state: dict[str, float] = {}              # last state label y at each node
    send_y: dict[int, float] = {}
    y = float(TOP)
    prev_t: int | None = None
    for e in events:
        if prev_t is not None and e.t > prev_t:
            gap = e.t - prev_t
            if gap > cut_us:
                breaks.append((y + 6, y + BREAK_H - 6, gap))
                y += BREAK_H
            else:
                y += gap * scale
        node = e.node
        if node is not None:
            if e.what == "state":
                # Written beside the line, level with the packet that caused it.
                if node in last_state:
                    y = max(y, last_state[node] + SEP_SAME_NODE)
            else:
                if node in last_pkt:
                    ly, lwhat = last_pkt[node]
                    sep = SEP_TWO_SENDS if (lwhat == "send" and e.what == "send") else SEP_SAME_NODE
                    y = max(y, ly + sep)
                if node in last_state:
                    y = max(y, last_state[node])
        if e.what == "arrive":
            y = max(y, send_y.get(e.idx, y) + 18)
        elif e.what == "lost":
            y = max(y, send_y.get(e.idx, y) + HOP_H * 0.6)
        ys[(e.t, e.idx)] = y
        if e.what == "send":
            for ia in arrival_of.get(e.idx, ()):
                send_y[ia] = y
        if not anchors or anchors[-1][0] != e.t:
            anchors.append((e.t, y))
        if node is not None:
            if e.what == "state":
                last_state[node] = y
            else:
                last_pkt[node] = (y, e.what)
            if e.what in ("send", "state") and (not time_marks or (y - time_marks[-1][0] >= 13
                                                                   and t_differs(time_marks[-1][1], e.t))):
                time_marks.append((y, e.t))
        prev_t = e.t
    return _Layout(ys, anchors, breaks, y + 40, cut_us, time_marks)


def t_differs(a: int, b: int) -> bool:
    return a != b


def _y_at(lay: _Layout, t: int) -> float:
    """y of an arbitrary time: interpolated between the events around it."""
    a = lay.anchors
    if not a:
        return TOP
    if t <= a[0][0]:
        return a[0][1]
    for (t0, y0), (t1, y1) in zip(a, a[1:], strict=False):
        if t0 <= t <= t1:
            return y0 + (y1 - y0) * (t - t0) / (t1 - t0) if t1 > t0 else y0
    return a[-1][1]


# --------------------------------------------------------------------------- SVG


def _text(x: float, y: float, s: str, *, size: float = 11, anchor: str = "start", fill: str = "#222",
          weight: str = "normal", extra: str = "", halo: bool = True) -> str:
    halo_attr = ' stroke="#fff" stroke-width="3.5" stroke-linejoin="round" paint-order="stroke"' if halo else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}" '
            f'font-weight="{weight}"{halo_attr}{extra}>{escape(s)}</text>')


def render_svg(lad: Ladder) -> str:
    """The ladder as a standalone SVG document (parses as XML)."""
    lay = _layout(lad)
    n = len(lad.columns)
    # Timer lanes per column (brackets sit outside the state labels).
    lanes: dict[str, int] = {}
    for tm in lad.timers:
        lanes[tm.node] = max(lanes.get(tm.node, 0), 1 + sum(1 for o in lad.timers if o.node == tm.node
                                                             and o is not tm and o.start < tm.start < o.end))
    left_lanes = lanes.get(lad.columns[0], 0) if lad.columns else 0
    right_lanes = lanes.get(lad.columns[-1], 0) if n > 1 else 0
    axis_w = 84
    x0 = axis_w + STATE_W + left_lanes * BRACKET_W + 34
    xs = {c: x0 + i * COL_GAP for i, c in enumerate(lad.columns)}
    width = int((xs[lad.columns[-1]] if lad.columns else x0) + STATE_W + right_lanes * BRACKET_W + 40)
    height = int(lay.height + 50)
    side = {c: ("left" if i == 0 and n > 1 else "right") for i, c in enumerate(lad.columns)}
    multi = _multi_conn_nodes(lad)
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="{FONT}">',
        "<title>" + escape(f"Ladder diagram: {lad.title}") + "</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" markerHeight="9" '
        'orient="auto-start-reverse"><path d="M0,1 L10,5 L0,9 z" fill="#1f3b73"/></marker>'
        '<marker id="arrow-red" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" markerHeight="9" '
        'orient="auto-start-reverse"><path d="M0,1 L10,5 L0,9 z" fill="#b3261e"/></marker></defs>',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
    ]
    # Title and the note about the time axis.
    out.append(_text(16, 24, lad.title + (f" - {lad.selection}" if lad.selection else ""), size=15, weight="bold"))
    note = (f"Time runs downward, to scale within bursts; idle gaps longer than {_duration(lay.cut_us)} "
            "are cut at the ≈ marks, which give the time left out.")
    if lad.truncated:
        note += f" Only the first {MAX_HOPS} packets are drawn ({lad.truncated} more: use --conn or --window)."
    out.append(_text(16, 42, note, size=11, fill="#555"))
    # Lifelines, interrupted at the breaks.
    y_top, y_bot = TOP - 22, lay.height
    for c in lad.columns:
        x = xs[c]
        out.append(f'<rect x="{x - 62}" y="{TOP - 66}" width="124" height="40" rx="6" fill="#eef2fb" stroke="#1f3b73"/>')
        out.append(_text(x, TOP - 49, c, size=13, anchor="middle", weight="bold", halo=False))
        out.append(_text(x, TOP - 34, lad.addrs.get(c, "") or lad.kinds.get(c, ""), size=10, anchor="middle",
                         fill="#444", halo=False))
        y = y_top
        for b0, b1, _ in lay.breaks:
            out.append(f'<line x1="{x}" y1="{y:.1f}" x2="{x}" y2="{b0:.1f}" stroke="#333" stroke-width="1.6"/>')
            out.append(f'<line x1="{x}" y1="{b0:.1f}" x2="{x}" y2="{b1:.1f}" stroke="#333" stroke-width="1.6" '
                       'stroke-dasharray="2 4"/>')
            y = b1
        out.append(f'<line x1="{x}" y1="{y:.1f}" x2="{x}" y2="{y_bot:.1f}" stroke="#333" stroke-width="1.6"/>')
    # Break marks across the figure, with the elided time.
    for b0, b1, gap in lay.breaks:
        mid = (b0 + b1) / 2
        x_a, x_b = axis_w - 6, width - 16
        for dy in (-3, 3):
            pts = []
            steps = int((x_b - x_a) / 12)
            for i in range(steps + 1):
                pts.append(f"{x_a + i * 12:.1f},{mid + dy + (-3 if i % 2 else 3):.1f}")
            out.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="#9aa4b8" stroke-width="1"/>')
        out.append(_text(8, mid + 4, f"≈ {_duration(gap)}", size=10.5, fill="#5b6475", weight="bold"))
    # Time axis labels.
    out.append(_text(8, TOP - 34, "time (s)", size=10, fill="#555", halo=False))
    for y, t in lay.time_marks:
        out.append(_text(8, y + 3.5, fmt_time(t), size=9.5, fill="#666"))
    # Timer brackets.
    lane_used: dict[str, list[tuple[float, float]]] = {}
    for tm in sorted(lad.timers, key=lambda t: t.start):
        if tm.node not in xs:
            continue
        ya, yb = _y_at(lay, tm.start), _y_at(lay, tm.end)
        if yb - ya < 6:
            continue
        used = lane_used.setdefault(tm.node, [])
        lane = 0
        while any(not (yb < u0 or ya > u1) for (u0, u1), ln in zip(used, range(len(used)), strict=False) if ln == lane):
            lane += 1
        used.append((ya, yb))
        sgn = -1 if side[tm.node] == "left" else 1
        bx = xs[tm.node] + sgn * (STATE_W + 14 + lane * BRACKET_W)
        tick = -sgn * 6
        color = "#8a4b08" if tm.name != "rto" else "#6b3fa0"
        out.append(f'<path d="M{bx + tick:.1f},{ya:.1f} H{bx:.1f} V{yb:.1f} H{bx + tick:.1f}" fill="none" '
                   f'stroke="{color}" stroke-width="1.5"/>')
        label = tm.label
        if yb - ya < len(label) * 6 + 8:
            label = label.split(" ", 1)[0] if yb - ya >= len(label.split(" ", 1)[0]) * 6 + 8 else ""
        cy = (ya + yb) / 2
        if label:
            out.append(_text(bx + sgn * 10, cy, label, size=10, anchor="middle", fill=color,
                             extra=f' transform="rotate(-90 {bx + sgn * 10:.1f} {cy:.1f})"', halo=False))
        if tm.fired:
            out.append(f'<circle cx="{bx:.1f}" cy="{yb:.1f}" r="3" fill="{color}"/>')
            out.append(_text(bx + sgn * 5, yb + 13, "fired", size=9, anchor="end" if sgn < 0 else "start",
                             fill=color))
    # Arrows.
    for h in lad.hops:
        out += _svg_hop(h, lay, xs)
    # States beside the lines.
    for s in lad.states:
        if s.node not in xs:
            continue
        y = lay.ys[(s.t, s.idx)]
        label = s.new + (f" :{s.key[1]}" if s.node in multi else "")
        sgn = -1 if side[s.node] == "left" else 1
        x = xs[s.node] + sgn * 8
        w = len(label) * 6.4 + 10
        rx = x - w if sgn < 0 else x
        fill = "#fff4d6" if s.new == "TIME_WAIT" else ("#f1f1f1" if s.new == "CLOSED" else "#e6f4ea")
        stroke = "#b07d00" if s.new == "TIME_WAIT" else ("#999" if s.new == "CLOSED" else "#2e7d32")
        out.append(f'<rect x="{rx:.1f}" y="{y - 8:.1f}" width="{w:.1f}" height="16" rx="3" fill="{fill}" '
                   f'stroke="{stroke}" stroke-width="0.8"/>')
        out.append(_text(rx + w / 2, y + 4, label, size=10.5, anchor="middle", weight="bold", fill="#222", halo=False))
        out.append(f'<circle cx="{xs[s.node]}" cy="{y:.1f}" r="2.6" fill="{stroke}"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _multi_conn_nodes(lad: Ladder) -> set[str]:
    keys: dict[str, set[tuple[int, int, int, int]]] = {}
    for s in lad.states:
        keys.setdefault(s.node, set()).add(s.key)
    return {n for n, k in keys.items() if len(k) > 1}


def _svg_hop(h: Hop, lay: _Layout, xs: dict[str, float]) -> list[str]:
    import math

    if h.src not in xs:
        return []
    x1 = xs[h.src]
    y1 = lay.ys[(h.t_send, h.idx_send)]
    lost_on_way = h.t_arrive is None
    if h.dst in xs:
        x2 = xs[h.dst]
    else:
        x2 = x1 + (COL_GAP if x1 == min(xs.values()) else -COL_GAP)
    if lost_on_way:
        x2 = x1 + (x2 - x1) * 0.55
        y2 = lay.ys[(h.t_send, h.idx_arrive)]
    else:
        y2 = lay.ys[(h.t_arrive, h.idx_arrive)]  # type: ignore[index]
    dropped = h.drop is not None
    color = "#b3261e" if dropped else "#1f3b73"
    parts = []
    if dropped:
        parts.append(f'<line x1="{x1}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
                     'stroke-width="1.4" stroke-dasharray="6 3"/>')
        d = 5
        parts.append(f'<path d="M{x2 - d:.1f},{y2 - d:.1f} L{x2 + d:.1f},{y2 + d:.1f} M{x2 - d:.1f},{y2 + d:.1f} '
                     f'L{x2 + d:.1f},{y2 - d:.1f}" stroke="{color}" stroke-width="2.4"/>')
    else:
        parts.append(f'<line x1="{x1}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
                     'stroke-width="1.4" marker-end="url(#arrow)"/>')
    first, second = hop_label(h.seg)
    # Label along the arrow, centred on it: main line above, timestamps below.
    ang = math.degrees(math.atan2(y2 - y1, x2 - x1))
    if ang > 90 or ang < -90:
        ang += 180
    if lost_on_way:  # a short arrow: start the label near the sender instead of centring it
        step = 16 / max(1.0, math.hypot(x2 - x1, y2 - y1))
        cx, cy = x1 + (x2 - x1) * step, y1 + (y2 - y1) * step
        anchor = "start" if x2 > x1 else "end"
    else:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        anchor = "middle"
    rot = f' transform="rotate({ang:.2f} {cx:.1f} {cy:.1f})"'
    parts.append(_text(cx, cy - 4, first, size=10.5, anchor=anchor, fill=color, extra=rot))
    if second:
        parts.append(_text(cx, cy + 11, second, size=9, anchor=anchor, fill="#5b6475" if not dropped else color,
                           extra=rot))
    if dropped:
        reason = f"✕ {_SHORT_REASONS.get(h.drop or '', h.drop)}"
        left = x2 < x1
        tx = x2 + (12 if left else -12) if not lost_on_way else x2
        anchor = "start" if left else "end"
        if lost_on_way:
            anchor = "middle"
        parts.append(_text(tx, y2 + 17, reason, size=10.5, anchor=anchor, fill=color, weight="bold"))
    return parts


# --------------------------------------------------------------------------- Mermaid


def _mm(text: str) -> str:
    """Text safe inside a Mermaid message or note (';' and '#' are entity-coded)."""
    return text.replace("#", "#35;").replace(";", "#59;")


def render_mermaid(lad: Ladder) -> str:
    """The ladder as a Mermaid ``sequenceDiagram`` (no time scale; breaks become notes)."""
    ids = {c: f"n{i}" for i, c in enumerate(lad.columns)}
    lines = ["sequenceDiagram", f"    title {_mm(lad.title + (' - ' + lad.selection if lad.selection else ''))}"]
    for c in lad.columns:
        lines.append(f"    participant {ids[c]} as {_mm(c)} {_mm(lad.addrs.get(c, ''))}".rstrip())
    items: list[tuple[int, int, str]] = []
    first_col, last_col = (lad.columns[0], lad.columns[-1]) if lad.columns else ("", "")
    multi = _multi_conn_nodes(lad)
    for h in lad.hops:
        if h.src not in ids:
            continue
        first, second = hop_label(h.seg)
        text = first + (f"<br/>{second}" if second else "")
        if h.drop:
            text += f"<br/>✕ {_SHORT_REASONS.get(h.drop, h.drop)}"
        dst = h.dst if h.dst in ids else None
        if dst is None:
            others = [c for c in lad.columns if c != h.src]
            dst = others[0] if others else h.src
        arrow = "-x" if h.drop else "->>"
        items.append((h.t_send, h.idx_send, f"    {ids[h.src]}{arrow}{ids[dst]}: {_mm(text)}"))
    for s in lad.states:
        if s.node not in ids:
            continue
        where = "left of" if s.node == first_col and len(lad.columns) > 1 else "right of"
        label = s.new + (f" :{s.key[1]}" if s.node in multi else "")
        items.append((s.t, s.idx, f"    Note {where} {ids[s.node]}: {_mm(label)}"))
    for tm in lad.timers:
        if tm.node in ids and tm.fired:
            where = "left of" if tm.node == first_col and len(lad.columns) > 1 else "right of"
            items.append((tm.end, 1 << 40, f"    Note {where} {ids[tm.node]}: "
                          f"{_mm(tm.label)} timer fired"))
    items.sort(key=lambda x: (x[0], x[1]))
    lay_cut = _layout(lad).cut_us
    prev: int | None = None
    span = f"{ids[first_col]},{ids[last_col]}" if len(lad.columns) > 1 else (ids[first_col] if lad.columns else "")
    for t, _, line in items:
        if prev is not None and t - prev > lay_cut and span:
            lines.append(f"    Note over {span}: {_mm(_duration(t - prev))} later (t = {fmt_time(t)} s)")
        lines.append(line)
        prev = t
    return "\n".join(lines) + "\n"
