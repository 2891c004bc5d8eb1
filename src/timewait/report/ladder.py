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
time window with ``window``); :func:`render_mermaid` writes it as Mermaid text
and :func:`timewait.report.ladder_svg.render_svg` draws it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from timewait import trace as T
from timewait.errors import UsageError
from timewait.plain import endpoint
from timewait.report.tcpdump import flag_names, fmt_time
from timewait.result import RunResult
from timewait.tcp.segment import ACK, FIN, SYN, Segment, ip_aton, ip_ntoa

MAX_HOPS = 300  # arrows drawn at most; more than that is unreadable anyway

# Drops on the way (the sender's link), as opposed to at the receiving node.
_LINK_DROPS = frozenset({"loss", "fault", "no-route"})
# Counters bumped when a connection throws away the segment it was just given (no DROP record for it).
_DISCARD_COUNTERS = {"TcpExtPAWSEstab": "paws", "TcpExtPAWSActive": "paws"}
_TIMER_LABELS = {"rto": "RTO", "persist": "persist", "timewait": "TIME_WAIT", "fin_wait2": "FIN_WAIT_2"}
SHORT_REASONS = {
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
    order: float = 0.0     # where it sorts among same-instant events (see _state_order)
    by_send: bool = False  # entered by sending a SYN or FIN: drawn level with that segment


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
    state: str = ""          # the connection's state when the timer was armed
    restarted: bool = False  # armed again in the same state (TIME_WAIT re-armed by a repeated FIN)

    @property
    def label(self) -> str:
        """``RTO 200 ms``, ``TIME_WAIT 60 s``; Linux's FIN_WAIT_2 uses the timewait timer."""
        name = "FIN_WAIT_2" if self.name == "timewait" and self.state == "FIN_WAIT_2" else \
            _TIMER_LABELS.get(self.name, self.name)
        return f"{name} {duration_text(self.armed_for)}"


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
    notes: list[str] = field(default_factory=list)  # what the figure cannot show, and why

    @property
    def empty(self) -> bool:
        """Nothing to draw: no packet and no state change."""
        return not self.hops and not self.states


def parse_conn(text: str) -> tuple[int | None, int]:
    """``"PORT"`` or ``"ADDR:PORT"`` to ``(addr or None, port)``; bad text is a :class:`UsageError`."""
    addr_text, sep, port_text = text.strip().rpartition(":")
    if not sep:
        port_text, addr_text = text.strip(), ""
    if addr_text.startswith("[") and addr_text.endswith("]"):  # ss's [fd00::1]:80
        addr_text = addr_text[1:-1]
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError
        addr = ip_aton(addr_text) if addr_text else None
    except ValueError:
        raise UsageError(f"--conn {text!r}: expected PORT or ADDR:PORT, e.g. 8888, 10.211.55.5:60494 or "
                         "[fd00::10:211:55:5]:60494") from None
    return addr, port


def parse_window(text: str) -> tuple[float | None, float | None]:
    """``"START:END"`` seconds (either side may be empty) to a pair; bad text is a :class:`UsageError`."""
    start_text, sep, end_text = text.strip().partition(":")
    bad = UsageError(f"--window {text!r}: expected START:END in seconds, finite, 0 <= START < END "
                     "(either may be empty), e.g. 1.5:3 or 60:")
    if not sep:
        raise bad
    try:
        start = float(start_text) if start_text.strip() else None
        end = float(end_text) if end_text.strip() else None
    except ValueError:
        raise bad from None
    if any(v is not None and not math.isfinite(v) for v in (start, end)):
        raise bad
    if any(v is not None and v < 0 for v in (start, end)) or (start is not None and end is not None and start >= end):
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
    last_rx: dict[str, Hop] = {}  # the latest hop that reached each node's stack

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
            h = arrive(pid_of(rec[3]), rec[2], rec[0], idx)
            if h is not None:
                last_rx[rec[2]] = h
        elif kind == T.COUNTER and rec[3] in _DISCARD_COUNTERS:
            # The connection discarded what just arrived (PAWS) and says so only by a counter.
            h = last_rx.get(rec[2])
            if h is not None and h.t_arrive == rec[0] and h.drop is None:
                h.drop = _DISCARD_COUNTERS[rec[3]]
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
    armed_names: dict[tuple[str, Any], set[str]] = {}  # (node, key) -> names armed, to close them fast
    spans: list[TimerSpan] = []
    state: dict[tuple[str, Any], str] = {}

    def close(k: tuple[str, Any, str], end: int, fired: bool, restarted: bool = False) -> None:
        start, deadline, idx, st = armed.pop(k)
        armed_names[(k[0], k[1])].discard(k[2])
        if k[2] == "rto" and not fired:
            return
        spans.append(TimerSpan(k[0], k[1], k[2], start, min(end, deadline), deadline - start, fired, idx, st,
                               restarted))

    for idx, rec in enumerate(result.trace.records):
        kind = rec[1]
        if kind == T.TIMER:
            k = (rec[2], rec[3], rec[4])
            if k in armed:
                again = rec[5] is not None and armed[k][3] == state.get((rec[2], rec[3]), "")
                close(k, rec[0], False, again)
            if rec[5] is not None and rec[4] in _TIMER_LABELS:
                armed[k] = (rec[0], rec[5], idx, state.get((rec[2], rec[3]), ""))
                armed_names.setdefault((rec[2], rec[3]), set()).add(rec[4])
        elif kind == T.FIRE:
            k = (rec[2], rec[3], rec[4])
            if k in armed:
                close(k, rec[0], True)
        elif kind == T.STATE:
            state[(rec[2], rec[3])] = rec[5]
            if rec[5] != "CLOSED":
                continue
            for name in list(armed_names.get((rec[2], rec[3]), ())):
                close((rec[2], rec[3], name), rec[0], False)
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
    """Select what the diagram shows: everything, one connection, and/or a time window.

    A run without a trace (some scenarios switch it off for big runs) gives an
    empty ladder whose ``notes`` say so; ``conn`` and ``window`` are then not
    checked against it.
    """
    title = f"{result.scenario} (profile {result.profile}, seed {result.seed})"
    if not result.trace.records:
        return Ladder(title, [], {}, {}, notes=[
            "No packets in the trace: this run was made without one (the scenario switches it off for big "
            "runs), so there is nothing to draw."])
    cut = T.cut_notice(result.trace.records)
    notes = [cut] if cut else []
    hops = _hops(result)
    records = result.trace.records
    states = [StateMark(r[0], i, r[2], r[3], r[4], r[5], *_state_order(records, i)) for i, r in enumerate(records)
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
    if not hops and not states:
        notes.append("No packets in the trace and no state changes: nothing to draw.")
    return Ladder(title, columns, addrs, kinds, hops, states, timers, truncated, ", ".join(selection), notes)


def gap_cut_us(hops: list[Hop]) -> int:
    """Idle gaps longer than this (3.5 typical one-way delays) are cut from the time axis."""
    delays = [h.t_arrive - h.t_send for h in hops if h.t_arrive is not None and h.t_arrive > h.t_send]
    unit = max(statistics.median(delays), 1) if delays else 1000
    return int(3.5 * unit)


# States a connection enters by sending a SYN or FIN; the others follow a received segment (or a timer).
_SENT_STATES = frozenset({"SYN_SENT", "FIN_WAIT_1", "LAST_ACK"})
_ANCHOR_LOOKBACK = 64  # same-instant records searched for a state's cause


def _state_order(records: list[T.Record], i: int) -> tuple[float, bool]:
    """Where the STATE record ``i`` belongs among the events of its instant, and whether a send caused it.

    The engine writes a state change after the segments it sent while
    processing, so taken literally ``ESTABLISHED`` would sit below the ACK, the
    data and the FIN an application sent from its connect callback. Drawn like
    a textbook figure, the state goes level with its cause: just after the
    segment that arrived (``ESTABLISHED``, ``TIME_WAIT``, ``CLOSED`` on the
    last ACK) or level with the SYN or FIN it sent (``FIN_WAIT_1``,
    ``LAST_ACK``). Without a same-instant cause (a timer) it stays in place.
    """
    t, _, node, key, _, new = records[i][:6]
    sent = new in _SENT_STATES
    for j in range(i - 1, max(-1, i - 1 - _ANCHOR_LOOKBACK), -1):
        rec = records[j]
        if rec[0] != t:
            break
        if rec[2] != node:
            continue
        seg = rec[3] if rec[1] in (T.TX, T.RX) else None
        if seg is None:
            continue
        if sent and rec[1] == T.TX and seg.flags & (SYN | FIN) and \
                (seg.src, seg.sport, seg.dst, seg.dport) == key:
            return j - 0.5, True
        if not sent and rec[1] == T.RX and (seg.dst, seg.dport, seg.src, seg.sport) == key:
            return j + 0.5, False
    return float(i), False


def connections(result: RunResult) -> list[str]:
    """Every connection of the run as ``A:P <-> B:Q`` (first seen first)."""
    seen: dict[frozenset[tuple[int, int]], str] = {}
    for rec in result.trace.records:
        if rec[1] == T.STATE:
            la, lp, ra, rp = rec[3]
            if ra == 0:
                continue
            k = frozenset({(la, lp), (ra, rp)})
            seen.setdefault(k, f"{endpoint(ip_ntoa(la), lp)} <-> {endpoint(ip_ntoa(ra), rp)}")
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


def multi_conn_nodes(lad: Ladder) -> set[str]:
    """Nodes with more than one connection: their state labels carry the local port."""
    keys: dict[str, set[tuple[int, int, int, int]]] = {}
    for s in lad.states:
        keys.setdefault(s.node, set()).add(s.key)
    return {n for n, k in keys.items() if len(k) > 1}


def duration_text(us: int) -> str:
    """``60 s``, ``200.4 ms``, ``800 µs``."""
    s = us / 1e6
    if s >= 1:
        return f"{s:.6g} s" if s < 100 else f"{s:.0f} s"
    if s >= 0.001:
        return f"{s * 1000:.4g} ms"
    return f"{us} µs"


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
    if not lad.columns:  # a note needs a participant to hang on
        lines.append("    participant trace")
    span0 = f"{ids[lad.columns[0]]},{ids[lad.columns[-1]]}" if len(lad.columns) > 1 else \
        (ids[lad.columns[0]] if lad.columns else "trace")
    for note in lad.notes:
        lines.append(f"    Note over {span0}: {_mm(note)}")
    items: list[tuple[int, float, str]] = []
    first_col, last_col = (lad.columns[0], lad.columns[-1]) if lad.columns else ("", "")
    multi = multi_conn_nodes(lad)
    for h in lad.hops:
        if h.src not in ids:
            continue
        first, second = hop_label(h.seg)
        text = first + (f"<br/>{second}" if second else "")
        if h.drop:
            text += f"<br/>✕ {SHORT_REASONS.get(h.drop, h.drop)}"
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
        items.append((s.t, s.order, f"    Note {where} {ids[s.node]}: {_mm(label)}"))
    for tm in lad.timers:
        if tm.node in ids and tm.fired:
            where = "left of" if tm.node == first_col and len(lad.columns) > 1 else "right of"
            items.append((tm.end, 1 << 40, f"    Note {where} {ids[tm.node]}: "
                          f"{_mm(tm.label)} timer fired"))
    items.sort(key=lambda x: (x[0], x[1]))
    lay_cut = gap_cut_us(lad.hops)
    prev: int | None = None
    span = f"{ids[first_col]},{ids[last_col]}" if len(lad.columns) > 1 else (ids[first_col] if lad.columns else "")
    for t, _, line in items:
        if prev is not None and t - prev > lay_cut and span:
            lines.append(f"    Note over {span}: {_mm(duration_text(t - prev))} later (t = {fmt_time(t)} s)")
        lines.append(line)
        prev = t
    return "\n".join(lines) + "\n"
