"""What happened to the connections of a capture: lifecycles, TIME_WAIT, reuse, PAWS, port supply.

One pass over the packets, in capture order, with state per 4-tuple only (no
list of packets kept, except for the connections a ladder will draw). Both
ends' states are inferred from the segments the capture shows, as a TCP on
each side would move on them (RFC 9293's diagram, Linux's choices where they
differ: a SYN meeting TIME_WAIT, PAWS). The capture is one vantage point:
times are the capture's, and a segment lost before it was captured is not
seen.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from timewait.explain.reader import ACK, FIN, RST, SYN, Packet
from timewait.tcp.seq import M32, before

C, S = 0, 1  # the two ends of a connection: the SYN's sender (client) and its receiver (server)
SIDE = ("client", "server")
MAX_ROWS = 1000  # rows kept per list in the report (the counts stay exact)


@dataclass(slots=True)
class Conn:
    """One incarnation of a 4-tuple, from its SYN (or first segment) to its end."""

    n: int                       # incarnation on its 4-tuple, from 1
    client: tuple[str, int]
    server: tuple[str, int]
    first_us: int
    last_us: int
    syn_seen: bool
    syns: int = 0
    isn: list[int | None] = field(default_factory=lambda: [None, None])
    established_us: int | None = None
    state: list[str] = field(default_factory=lambda: ["CLOSED", "LISTEN"])
    fin_seq: list[int | None] = field(default_factory=lambda: [None, None])
    fin_us: list[int | None] = field(default_factory=lambda: [None, None])
    fin_acked_us: list[int | None] = field(default_factory=lambda: [None, None])
    closer: int | None = None
    tw_holder: int | None = None
    tw_entered_us: int | None = None  # the latest (re)start of the holder's TIME_WAIT timer
    tw_first_us: int | None = None    # when it entered TIME_WAIT (its last ACK)
    tw_restarts: int = 0
    closed_us: int | None = None
    end: str = "open"            # "fin", "rst", "open" (capture ended), "replaced" (a new SYN took the tuple)
    ts_recent: list[int | None] = field(default_factory=lambda: [None, None])
    data: list[int] = field(default_factory=lambda: [0, 0])
    met: str | None = None       # what this incarnation's SYN met on the 4-tuple (the previous one's state)
    answer: str | None = None    # the receiver's first answer to that SYN
    gap_s: float | None = None   # from the previous incarnation's end to this SYN
    transitions: list[tuple[int, int, str, str]] = field(default_factory=list)  # (t, side, old, new)
    refin: tuple[int, int] | None = None  # (side, t) of a FIN sent again, until the peer's ACK answers it

    def side_of(self, p: Packet) -> int:
        return C if (p.src, p.sport) == self.client else S

    def go(self, side: int, new: str, t: int) -> None:
        old = self.state[side]
        if old != new:
            self.state[side] = new
            self.transitions.append((t, side, old, new))

    def ended(self) -> bool:
        return self.end in ("fin", "rst")


@dataclass(slots=True)
class Event:
    """A line of the report: when, which connection, what."""

    t_us: int
    conn: str
    what: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Destination:
    """New connections from one client address to one server address and port."""

    client: str
    server: str
    port: int
    syn_times: list[int] = field(default_factory=list)
    ports: set[int] = field(default_factory=set)
    client_tw: list[tuple[int, int]] = field(default_factory=list)  # (entered, port) of client-held TIME_WAITs
    taken_over: int = 0  # new connections that took over the client's own TIME_WAIT


class Explainer:
    """Feed packets with :meth:`add`, then read the report with :meth:`report`."""

    def __init__(self, *, time_wait_s: float = 60.0, keep: Any = None) -> None:
        self.time_wait_us = int(time_wait_s * 1_000_000)
        self.conns: dict[tuple[str, int, str, int], Conn] = {}
        self.done: list[Conn] = []
        self.count = 0
        self.first_us: int | None = None
        self.last_us = 0
        self.events: dict[str, list[Event]] = defaultdict(list)
        self.counts: dict[str, int] = defaultdict(int)
        self.dests: dict[tuple[str, str, int], Destination] = {}
        self.reuse: list[dict[str, Any]] = []
        self.keep = keep  # a predicate on a Conn: whose packets to keep for a ladder
        self.kept: list[tuple[Conn, Packet]] = []

    # ------------------------------------------------------------------ feeding

    def _note(self, kind: str, t: int, c: Conn, what: str, **detail: Any) -> None:
        self.counts[kind] += 1
        rows = self.events[kind]
        if len(rows) < MAX_ROWS:
            rows.append(Event(t, _name(c), what, detail))

    def add(self, p: Packet) -> None:
        self.count += 1
        t = p.t_us
        if self.first_us is None:
            self.first_us = t
        self.last_us = t
        a, b = (p.src, p.sport), (p.dst, p.dport)
        key = (*min(a, b), *max(a, b))
        c = self.conns.get(key)
        if p.flags & SYN and not p.flags & ACK:
            c = self._syn(key, c, p)
        elif c is None:
            c = self._start(key, None, p, a, b, syn=False)
        if self.keep is not None and self.keep(c):
            self.kept.append((c, p))
        c.last_us = t
        side = c.side_of(p)
        other = 1 - side
        if c.met is not None and c.answer is None and side == S and not p.flags & SYN:
            c.answer = "RST" if p.flags & RST else "ACK"
            how = "RST" if c.answer == "RST" else (
                "a challenge ACK (RFC 5961 4.2, tcp_send_challenge_ack)" if "TIME_WAIT on the server" not in c.met
                else "an ACK (tcp_timewait_state_process: TW-ACK)")
            self._note("syn_met_state", t, c, f"its SYN met {c.met}: answered with {how}", met=c.met,
                       answer=c.answer)
        if p.flags & RST:
            if side == C and c.state[C] == "SYN_SENT" and c.answer == "ACK":
                # tcp_rcv_synsent_state_process: an ACK that does not cover our SYN gets an RST with
                # seq = its ack, which resets the peer's old connection; our SYN goes on (LA-2).
                self._note("rst", t, c, "RST from the client in SYN_SENT: resets the server's old connection "
                           "(seq = the challenge ACK's ack); its SYN goes on", side="client", state="SYN_SENT")
                return
            self._rst(c, side, p)
            return
        if p.flags & SYN and p.flags & ACK:
            if c.isn[S] is None or c.isn[S] != p.seq:
                c.isn[S] = p.seq
            if c.met is not None and c.answer is None:
                c.answer = "SYN-ACK"
                self._note("syn_met_state", t, c, f"its SYN met {c.met}: accepted (SYN-ACK)", met=c.met,
                           answer="SYN-ACK")
            c.go(S, "SYN_RECEIVED", t)
        self._paws(c, side, p)
        if p.flags & ACK:
            self._ack(c, side, other, p)
        if c.refin is not None and side != c.refin[0] and p.flags & ACK and not p.flags & FIN and not p.length:
            fside, ft = c.refin
            c.refin = None
            why = ""
            if c.state[side] == "TIME_WAIT":
                why = ": its TIME_WAIT answers and restarts the timer (tcp_timewait_state_process, TW-5)"
                c.tw_entered_us = t
                c.tw_restarts += 1
            self._note("fin_reacked", t, c, f"the {SIDE[side]} ACKs the repeated FIN {(t - ft) / 1e6:.6f} s "
                       f"later{why}", side=SIDE[side], state=c.state[side], after_s=round((t - ft) / 1e6, 6))
        if p.length:
            c.data[side] += p.length
        if p.flags & FIN:
            self._fin(c, side, other, p)

    def _syn(self, key: tuple[str, int, str, int], c: Conn | None, p: Packet) -> Conn:
        a, b = (p.src, p.sport), (p.dst, p.dport)
        if c is not None and c.client == a and c.isn[C] == p.seq and not c.ended():
            c.syns += 1  # a retransmitted SYN
            if c.syns > 1:
                self._note("syn_retransmitted", p.t_us, c, f"SYN retransmitted ({c.syns} sent)", count=c.syns)
            return c
        return self._start(key, c, p, a, b, syn=True)

    def _start(self, key: tuple[str, int, str, int], prev: Conn | None, p: Packet, a: tuple[str, int],
               b: tuple[str, int], *, syn: bool) -> Conn:
        t = p.t_us
        n = 1 if prev is None else prev.n + 1
        c = Conn(n, a, b, t, t, syn)
        if syn:
            c.isn[C] = p.seq
            c.syns = 1
            c.go(C, "SYN_SENT", t)
        else:
            c.state = ["ESTABLISHED", "ESTABLISHED"]  # a connection the capture joined midway
        if prev is not None:
            self._retire(prev, t, replaced=True)
            end = prev.closed_us if prev.closed_us is not None else prev.last_us
            c.gap_s = round((t - end) / 1e6, 6)
            holder = prev.tw_holder
            tw_live = holder is not None and prev.tw_entered_us is not None and \
                t - prev.tw_entered_us < self.time_wait_us
            # Map the previous incarnation's ends onto this one's: who holds what now.
            if holder is not None and tw_live:
                held_by = prev.client if holder == C else prev.server
                if held_by == a:
                    peer = prev.state[S if holder == C else C]
                    c.met = ("the client's own TIME_WAIT, taken over (tcp_tw_reuse, or a bound port, with "
                             "timestamps)" + (f", while the server was still in {peer}" if peer != "CLOSED" else ""))
                    self.counts["tw_taken_over"] += 1
                    dest = self.dests.get((a[0], b[0], b[1]))
                    if dest is not None:
                        dest.taken_over += 1
                else:
                    c.met = "TIME_WAIT on the server"
            elif not prev.ended():
                rx_side = C if prev.client == b else S
                c.met = f"{prev.state[rx_side]} on the server (the previous connection was not closed)"
            self.reuse.append({"tuple": _tuple_text(c), "incarnation": n, "gap_s": c.gap_s,
                               "previous_end": prev.end, "met": c.met})
            self.counts["reused_tuples"] += 1
        self.conns[key] = c
        if syn:
            d = self.dests.get((a[0], b[0], b[1]))
            if d is None:
                d = self.dests[(a[0], b[0], b[1])] = Destination(a[0], b[0], b[1])
            d.syn_times.append(t)
            d.ports.add(a[1])
        return c

    def _rst(self, c: Conn, side: int, p: Packet) -> None:
        t = p.t_us
        self._note("rst", t, c, f"RST from the {SIDE[side]}", side=SIDE[side], state=c.state[1 - side])
        for s_ in (C, S):
            c.go(s_, "CLOSED", t)
        if c.closed_us is None:
            c.closed_us = t
            c.end = "rst"

    def _paws(self, c: Conn, side: int, p: Packet) -> None:
        if p.tsval is None:
            return
        recent = c.ts_recent[side]
        if recent is not None and before(p.tsval, recent) and c.state[1 - side] != "CLOSED":
            # tcp_paws_discard: a Linux receiver drops it (tcp_validate_incoming) and sends a duplicate ACK.
            self._note("paws", p.t_us, c, f"TSval {p.tsval} older than ts_recent {recent}: a Linux receiver "
                       f"discards it by PAWS", side=SIDE[side], tsval=p.tsval, ts_recent=recent, frame=p.index)
            return
        c.ts_recent[side] = p.tsval

    def _ack(self, c: Conn, side: int, other: int, p: Packet) -> None:
        t = p.t_us
        if c.state[side] == "SYN_SENT" and c.isn[other] is not None:
            c.go(side, "ESTABLISHED", t)
        if c.state[other] == "SYN_RECEIVED" and c.isn[side] is not None and p.ack == (c.isn[other] or 0) + 1 & M32:
            c.go(other, "ESTABLISHED", t)
            if c.established_us is None:
                c.established_us = t
        fs = c.fin_seq[other]
        if fs is not None and c.fin_acked_us[other] is None and not before(p.ack, (fs + 1) & M32):
            c.fin_acked_us[other] = t
            st = c.state[other]
            if st == "FIN_WAIT_1":
                c.go(other, "FIN_WAIT_2", t)
            elif st == "CLOSING":
                self._time_wait(c, other, t, t)
            elif st == "LAST_ACK":
                c.go(other, "CLOSED", t)
                self._closed(c, t)
            if c.state[side] == "TIME_WAIT" and c.tw_holder == side and c.tw_entered_us is None:
                c.tw_entered_us = c.tw_first_us = t  # the last ACK: TIME_WAIT's 60 s run from here

    def _fin(self, c: Conn, side: int, other: int, p: Packet) -> None:
        t = p.t_us
        fin_seq = (p.seq + p.length) & M32
        if c.fin_seq[side] is not None and fin_seq == c.fin_seq[side]:
            acked = c.fin_acked_us[side] is not None
            self._note("fin_retransmitted", t, c, f"FIN from the {SIDE[side]} sent again"
                       + (" after it was ACKed: the ACK was lost before the peer" if acked else ""),
                       side=SIDE[side], seq=p.seq, holder_state=c.state[other])
            c.refin = (side, t)
            if acked and c.state[side] == "CLOSED":
                # The repeated FIN says the ACK we saw never reached its sender: it is still in LAST_ACK.
                c.go(side, "LAST_ACK", t)
                c.fin_acked_us[side] = None
                c.closed_us, c.end = None, "open"
            return
        c.fin_seq[side], c.fin_us[side] = fin_seq, t
        if c.closer is None:
            c.closer = side
        st = c.state[side]
        c.go(side, "LAST_ACK" if st == "CLOSE_WAIT" else "FIN_WAIT_1", t)
        ost = c.state[other]
        if ost in ("ESTABLISHED", "SYN_RECEIVED", "SYN_SENT"):
            c.go(other, "CLOSE_WAIT", t)
        elif ost == "FIN_WAIT_1":
            c.go(other, "CLOSING", t)  # simultaneous close: our FIN crossed theirs
        elif ost == "FIN_WAIT_2":
            self._time_wait(c, other, t, None)  # entered for good with its ACK of this FIN

    def _time_wait(self, c: Conn, side: int, t: int, entered: int | None) -> None:
        c.go(side, "TIME_WAIT", t)
        if c.tw_holder is None:
            c.tw_holder = side
            c.tw_entered_us = c.tw_first_us = entered

    def _closed(self, c: Conn, t: int) -> None:
        if c.closed_us is None:
            c.closed_us = t
            c.end = "fin"

    def _retire(self, c: Conn, t: int, *, replaced: bool = False) -> None:
        if c.end == "open" and replaced:
            c.end = "replaced"
        if c.tw_holder is not None:
            holder = c.client if c.tw_holder == C else c.server
            d = self.dests.get((c.client[0], c.server[0], c.server[1]))
            if d is not None and c.tw_holder == C and c.tw_entered_us is not None:
                d.client_tw.append((c.tw_entered_us, c.client[1]))
            first = c.tw_first_us
            seen = None if first is None else round((t - first) / 1e6, 6)
            self._note("time_wait", first or c.last_us, c,
                       f"TIME_WAIT held by the {SIDE[c.tw_holder]} {hostport(*holder)}",
                       holder=SIDE[c.tw_holder], entered_us=first, restarted=c.tw_restarts,
                       timer_from_us=c.tw_entered_us, seen_for_s=seen,
                       until="the 4-tuple's next SYN" if replaced else "the end of the capture")
        self.done.append(c)

    # ------------------------------------------------------------------ the answer

    def finish(self) -> None:
        """Close the books: every connection still tracked ends with the capture."""
        for c in list(self.conns.values()):
            self._retire(c, self.last_us)
        self.conns.clear()

    def report(self, *, port_range: tuple[int, int] | None = None) -> dict[str, Any]:
        """The whole answer as plain data (what ``--json`` prints)."""
        t0 = self.first_us or 0
        rel = lambda t: None if t is None else round((t - t0) / 1e6, 6)  # noqa: E731
        ends: dict[str, int] = defaultdict(int)
        holders: dict[str, int] = defaultdict(int)
        for c in self.done:
            ends[c.end] += 1
            if c.tw_holder is not None:
                holders[SIDE[c.tw_holder]] += 1
        sections = {}
        for kind in ("time_wait", "syn_met_state", "syn_retransmitted", "fin_retransmitted", "fin_reacked",
                     "rst", "paws"):
            sections[kind] = {"count": self.counts.get(kind, 0),
                              "rows": [{"t": rel(e.t_us), "connection": e.conn, "what": e.what, **e.detail}
                                       for e in self.events.get(kind, [])]}
        for row in sections["time_wait"]["rows"]:
            row["entered_s"] = rel(row.pop("entered_us"))
            row["timer_from_s"] = rel(row.pop("timer_from_us"))
        return {
            "span_s": rel(self.last_us) if self.first_us is not None else 0.0,
            "packets": self.count,
            "connections": {"count": len(self.done), "tuples": len({_tuple_text(c) for c in self.done}),
                            "ended": dict(sorted(ends.items()))},
            "time_wait": {"by_holder": dict(sorted(holders.items())), **sections["time_wait"]},
            "reuse": {"count": self.counts.get("reused_tuples", 0),
                      "taken_over": self.counts.get("tw_taken_over", 0),
                      "rows": self.reuse[:MAX_ROWS]},
            **{k: v for k, v in sections.items() if k != "time_wait"},
            "destinations": [self._destination(d, rel, port_range) for d in
                             sorted(self.dests.values(), key=lambda d: -len(d.syn_times))][:MAX_ROWS],
        }

    def _destination(self, d: Destination, rel: Any, port_range: tuple[int, int] | None) -> dict[str, Any]:
        from timewait.capacity import port_count

        n = len(d.syn_times)
        span = (d.syn_times[-1] - d.syn_times[0]) / 1e6 if n > 1 else 0.0
        rate = (n - 1) / span if span > 0 else None
        per_s: dict[int, int] = defaultdict(int)
        for t in d.syn_times:
            per_s[t // 1_000_000] += 1
        lo, hi = port_range or (min(d.ports), max(d.ports))
        supply = port_count(lo, hi)
        tw_s = self.time_wait_us / 1e6
        max_rate = supply / tw_s
        # The most client-held TIME_WAITs toward this destination at once (a sliding window of TIME_WAIT).
        tws = sorted(d.client_tw)
        peak, peak_at, j = 0, None, 0
        for i, (t, _) in enumerate(tws):
            while tws[j][0] <= t - self.time_wait_us:
                j += 1
            if i - j + 1 > peak:
                peak, peak_at = i - j + 1, t
        gap, gap_at = 0.0, None
        for a, b in zip(d.syn_times, d.syn_times[1:], strict=False):
            if (b - a) / 1e6 > gap:
                gap, gap_at = (b - a) / 1e6, a
        src = "--port-range" if port_range else "the client ports seen"
        if not tws:
            verdict = ("the client holds no TIME_WAIT toward this destination (the server closes first, or the "
                       "capture shows no close): its ports are free again at once")
        elif rate is None:
            verdict = "one connection: no rate to judge"
        elif d.taken_over:
            verdict = (f"the client took over its own TIME_WAIT {d.taken_over} time(s) (tcp_tw_reuse, or a bound "
                       "port, with timestamps): a port waits tcp_tw_reuse_delay (1 s), not the whole TIME_WAIT, "
                       f"so {supply} ports allow about {supply:.0f} conn/s")
        elif rate <= max_rate:
            verdict = (f"sustainable: {supply} ports / {tw_s:g} s TIME_WAIT = {max_rate:.1f} conn/s "
                       f"(ports from {src}, {lo}-{hi}) >= the observed {rate:.1f} conn/s")
        else:
            verdict = (f"this client would exhaust ports in {supply / rate:.1f} s: {rate:.1f} conn/s against "
                       f"{supply} ports / {tw_s:g} s TIME_WAIT = {max_rate:.1f} conn/s (ports from {src}, {lo}-{hi})")
        exhausted = n > 1 and peak >= supply and not d.taken_over  # every port held in TIME_WAIT at once
        return {
            "client": d.client, "server": d.server, "port": d.port, "connections": n,
            "span_s": round(span, 6), "rate": None if rate is None else round(rate, 3),
            "peak_per_second": max(per_s.values()) if per_s else 0,
            "ports": {"lowest": lo, "highest": hi, "count": supply, "distinct_seen": len(d.ports), "from": src},
            "time_wait_s": tw_s, "max_rate": round(max_rate, 3),
            "client_time_wait_peak": peak, "client_time_wait_peak_at": rel(peak_at),
            "longest_syn_gap_s": round(gap, 6), "longest_syn_gap_at": rel(gap_at),
            "taken_over": d.taken_over, "exhausted": exhausted, "verdict": verdict,
        }


def hostport(addr: str, port: int) -> str:
    """``addr:port``, an IPv6 address in brackets as ss and tcpdump -v write it: ``[fd00::1]:8888``."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _tuple_text(c: Conn) -> str:
    return f"{hostport(*c.client)} > {hostport(*c.server)}"


def _name(c: Conn) -> str:
    return _tuple_text(c) + (f" #{c.n}" if c.n > 1 else "")


def explain(packets: Iterable[Packet], **kw: Any) -> Explainer:
    """Run the analysis over ``packets`` and return the finished :class:`Explainer`."""
    ex = Explainer(**kw)
    for p in packets:
        ex.add(p)
    ex.finish()
    return ex
