"""The structured event trace: the one record of a run that every view reads.

A trace is a list of plain tuples, appended on the hot path and never
formatted there. Each record starts with ``(time_us, kind, node)``; the rest
depends on the kind:

========  =====================================================================
kind      fields after ``(time_us, kind, node)``
========  =====================================================================
TX        ``seg`` -- a host put this packet on the wire (``seg.pid`` identifies
          the packet across hops)
RX        ``seg`` -- the packet reached this host's TCP stack
FWD       ``seg_in, seg_out`` -- a router or NAT forwarded it (``seg_out`` may
          be a rewritten copy: TTL, NAT addresses)
DROP      ``seg, reason`` -- the packet died here; reasons in :data:`DROP_REASONS`
HOLD      ``seg, seconds`` -- a fault rule holds the packet back this long on
          its way from this node (it arrives that much later)
DUP       ``seg, seconds`` -- the network duplicated the packet; the copy
          arrives ``seconds`` after the original (0: together)
ICMP      ``seg, what`` -- an ICMP error was generated (``"time-exceeded"``)
STATE     ``key, old, new`` -- a connection changed state; ``key`` is
          ``(laddr, lport, raddr, rport)``, states are names such as
          ``"ESTABLISHED"``; ``"CLOSED"`` is the end of a connection
TIMER     ``key, name, deadline_us`` -- a named timer armed (``deadline_us``
          None = cancelled); names: ``rto``, ``timewait``, ``fin_wait2``,
          ``keepalive``, ``delack``
FIRE      ``key, name`` -- a named timer fired
CALL      ``sock, call, args, result`` -- a socket call and its result
          (``result`` is None for success or an errno name)
COUNTER   ``name, delta`` -- an nstat counter was bumped
NOTE      ``text`` -- a scenario's or application's remark
========  =====================================================================

``key`` tuples use integer addresses; :func:`timewait.tcp.segment.ip_ntoa`
formats them.

Beside the records, a traced run keeps **TCB snapshots** (:attr:`Trace.tcbs`) for
the HTML report's "this segment, both ends before and after": one tuple
:class:`Tcb` per snapshot, with the index of the record it comes before, taken
when a received segment reaches its socket (``"rx"``, before the socket acts),
before a timer fires (``"fire"``), before a socket call (``"call"``) and at the
end of each step that touched the socket (``"after"``). They are a list of their
own so no view of the records changes, and they are made only while tracing.

The hot path appends plain tuples. Readers that want names instead of
positions take typed views (:func:`view`, :func:`views`, :func:`select`): one
small named tuple per kind (``r.seg.flags`` rather than ``r[3].flags``), made
only when a view or a check reads the trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    from timewait.tcp.segment import Segment

TX: Final = "tx"
RX: Final = "rx"
FWD: Final = "fwd"
DROP: Final = "drop"
HOLD: Final = "hold"
DUP: Final = "dup"
ICMP: Final = "icmp"
STATE: Final = "state"
TIMER: Final = "timer"
FIRE: Final = "fire"
CALL: Final = "call"
COUNTER: Final = "counter"
NOTE: Final = "note"

KINDS = (TX, RX, FWD, DROP, HOLD, DUP, ICMP, STATE, TIMER, FIRE, CALL, COUNTER, NOTE)

DROP_REASONS = {
    "loss": "lost on the link",
    "fault": "dropped by a fault rule",
    "ttl": "TTL reached 0 at a router",
    "msl": "older than the network's maximum segment lifetime",
    "paws": "rejected by PAWS (timestamp older than ts_recent)",
    "no-socket": "no socket for it",
    "checksum": "bad checksum",
    "malformed": "malformed packet",
    "stale": "outside the receive window (old duplicate)",
    "recycle": "tcp_tw_recycle: peer timestamp went backwards",
    "nat-no-mapping": "NAT has no mapping for it",
    "nat-exhausted": "NAT ran out of public ports",
    "no-route": "no route to the destination",
    "backlog": "listen queue full",
    "not-for-us": "destination address is not this host's",
    "discarded": "discarded by the TCP state machine",
}

Record = tuple[Any, ...]


Key = tuple[int, int, int, int]


class Tx(NamedTuple):
    """A host put ``seg`` on the wire."""

    t: int
    kind: str
    node: str
    seg: Segment


class Rx(NamedTuple):
    """``seg`` reached the TCP stack of ``node``."""

    t: int
    kind: str
    node: str
    seg: Segment


class Fwd(NamedTuple):
    """A router or NAT forwarded ``seg`` as ``out`` (a rewritten copy where it changed)."""

    t: int
    kind: str
    node: str
    seg: Segment
    out: Segment


class Drop(NamedTuple):
    """``seg`` died at ``node``; ``reason`` is a key of :data:`DROP_REASONS`."""

    t: int
    kind: str
    node: str
    seg: Segment
    reason: str


class Hold(NamedTuple):
    """A fault rule holds ``seg`` back ``seconds`` on its way from ``node``."""

    t: int
    kind: str
    node: str
    seg: Segment
    seconds: float


class Dup(NamedTuple):
    """The network duplicated ``seg``; the copy arrives ``seconds`` after the original."""

    t: int
    kind: str
    node: str
    seg: Segment
    seconds: float


class Icmp(NamedTuple):
    """``node`` generated an ICMP error (``what``) about ``seg``."""

    t: int
    kind: str
    node: str
    seg: Segment
    what: str


class State(NamedTuple):
    """Connection ``key`` on ``node`` went from state ``old`` to ``new`` (names)."""

    t: int
    kind: str
    node: str
    key: Key
    old: str
    new: str


class Timer(NamedTuple):
    """Timer ``name`` of ``key`` armed for ``deadline`` (None: cancelled)."""

    t: int
    kind: str
    node: str
    key: Key
    name: str
    deadline: int | None


class Fire(NamedTuple):
    """Timer ``name`` of ``key`` fired."""

    t: int
    kind: str
    node: str
    key: Key
    name: str


class Call(NamedTuple):
    """Socket call ``call(args)`` on descriptor ``fd``; ``result`` None for success or an errno name."""

    t: int
    kind: str
    node: str
    fd: int
    call: str
    args: Any
    result: str | None


class Counter(NamedTuple):
    """nstat counter ``name`` moved by ``delta``."""

    t: int
    kind: str
    node: str
    name: str
    delta: int


class Note(NamedTuple):
    """A scenario's or application's remark."""

    t: int
    kind: str
    node: str
    text: str


View = Tx | Rx | Fwd | Drop | Hold | Dup | Icmp | State | Timer | Fire | Call | Counter | Note
_VIEWS: dict[str, Any] = {TX: Tx, RX: Rx, FWD: Fwd, DROP: Drop, HOLD: Hold, DUP: Dup, ICMP: Icmp, STATE: State, TIMER: Timer,
                          FIRE: Fire, CALL: Call, COUNTER: Counter, NOTE: Note}


def view(record: Record) -> Any:
    """The typed view of one record (a named tuple of its kind; positions still work)."""
    return _VIEWS[record[1]]._make(record)


def views(records: Iterable[Record]) -> list[Any]:
    """Typed views of ``records``, in order."""
    return [_VIEWS[r[1]]._make(r) for r in records]


def select(records: Iterable[Record], *kinds: str, node: str | None = None) -> Iterator[Any]:
    """Typed views of the records of ``kinds`` (all kinds when none), at ``node`` when given."""
    want = frozenset(kinds or KINDS)
    for r in records:
        if r[1] in want and (node is None or r[2] == node):
            yield _VIEWS[r[1]]._make(r)


CUT_PREFIX = "trace stopped at"
SELECT_PREFIX = "trace selection"


def limits(records: list[Record]) -> list[str]:
    """What of the run a trace leaves out, one short phrase each (empty: it is whole).

    A trace is limited two ways, each written as a NOTE at the run's end or where it
    happened: a selection (``--trace-select``, :data:`SELECT_PREFIX`) and the record limit
    (``Lab.run`` stops recording at it, :data:`CUT_PREFIX` and the instant).
    """
    found: list[str] = []
    for rec in reversed(records):
        if rec[1] == NOTE:
            text = str(rec[3])
            if text.startswith((CUT_PREFIX, SELECT_PREFIX)) and text not in found:
                found.append(text)
                if len(found) == 2:
                    break
    return sorted(found, key=lambda t: not t.startswith(SELECT_PREFIX))  # the selection first


def cut_notice(records: list[Record]) -> str | None:
    """The sentence every view of a trace shows when the trace is not the whole run, or None.

    The selection says which connections are in it and how many are not; the record limit
    says the instant after which nothing is. What a trace view draws is limited so, while
    counts, ``ss`` tables and plots come from the telemetry and stay whole.
    """
    found = limits(records)
    if not found:
        return None
    what = "; ".join(f"the {t}" for t in found)
    shows = "nothing after that" if found[-1].startswith(CUT_PREFIX) else "only those connections"
    return (f"{what[0].upper()}{what[1:]}: this view shows {shows}. Counts, ss tables and plots "
            "come from the telemetry and cover the whole run.")


class TraceSelect:
    """Which connections a trace records (``--trace-select``), decided once per connection
    when it is created: ``all``, ``none``, ``first:N`` (the first N connections opened),
    ``host:NAME`` (every connection of that host) or ``conn:FILTER``.

    FILTER in tcpdump's spirit: ``host A`` (either end's address), ``port P`` (either end's
    port), ``A:P-B:Q`` (one 4-tuple, either direction), joined by ``and`` / ``or``
    (``and`` binds tighter). A connection's passive end follows its SYN: traced when the
    SYN was. Records of no connection (notes, counters, routers' own packets) follow
    :meth:`loose`. Counts of chosen and left-out connections feed the notice.
    """

    __slots__ = ("text", "kind", "n", "host", "terms", "chosen", "left_out", "promoted", "reason")

    def __init__(self, text: str, reason: str = "") -> None:
        self.text = text
        self.reason = reason  # why this selection (a default says so)
        self.n = 0
        self.host = ""
        self.terms: list[list[tuple[str, Any]]] = []  # OR of ANDs
        self.chosen = 0
        self.left_out = 0
        self.promoted = 0
        kind, sep, arg = text.partition(":")
        kind = kind.strip()
        self.kind = kind
        allowed = "allowed: all, none, first:N, host:NAME, conn:FILTER (host A, port P, A:P-B:Q, joined by and/or)"
        if kind in ("all", "none") and not sep:
            return
        if kind == "first" and sep:
            try:
                self.n = int(arg)
            except ValueError:
                self.n = -1
            if self.n < 0:
                raise ValueError(f"--trace-select {text!r}: first:N needs a whole number N >= 0; {allowed}")
            return
        if kind == "host" and sep and arg.strip():
            self.host = arg.strip()
            return
        if kind == "conn" and sep and arg.strip():
            self.terms = _parse_filter(text, arg, allowed)
            return
        raise ValueError(f"--trace-select {text!r}: {allowed}")

    @property
    def whole(self) -> bool:
        """True when every connection is recorded (``all``)."""
        return self.kind == "all"

    def choose(self, node: str, key: Key) -> bool:
        """Whether the connection ``key`` that ``node`` opens now is recorded (counted)."""
        kind = self.kind
        if kind == "all":
            ok = True
        elif kind == "first":
            ok = self.chosen < self.n
        elif kind == "host":
            ok = node == self.host
        elif kind == "conn":
            ok = any(all(_term(t, key) for t in conj) for conj in self.terms)
        else:
            ok = False
        if ok:
            self.chosen += 1
        else:
            self.left_out += 1
        return ok

    def passive(self, node: str, key: Key) -> bool:
        """The passive end of a connection whose SYN was not recorded: ``host:`` and ``conn:``
        judge it by itself; ``first:N`` counts the active ends only."""
        if self.kind in ("host", "conn"):
            return self.choose(node, key)
        return False

    def loose(self, node: str) -> bool:
        """Whether a record of no connection at ``node`` is kept (a connect() that failed
        before it had one, a router's own packet): with ``all``, while ``first:N`` is
        still choosing, and at the host of ``host:NAME``."""
        kind = self.kind
        return kind == "all" or (kind == "first" and self.chosen < self.n) or (kind == "host" and node == self.host)

    def describe(self) -> str:
        """The NOTE written at the run's end: what was recorded and what was left out."""
        why = f" ({self.reason})" if self.reason else ""
        more = f" (+{self.promoted} from a fault rule's packet on)" if self.promoted else ""
        return (f"{SELECT_PREFIX} {self.text}{why}: {_n(self.chosen, 'connection')} recorded{more}, "
                f"{self.left_out:,} left out (and every nstat counter record)")


def _n(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _parse_filter(text: str, arg: str, allowed: str) -> list[list[tuple[str, Any]]]:
    from timewait.tcp.segment import ip_aton, unmapped

    def addr(a: str) -> int:
        bare = a[1:-1] if a.startswith("[") and a.endswith("]") else a  # [fd00::1]:80 in a 4-tuple
        try:
            return unmapped(ip_aton(bare))  # ::ffff:a.b.c.d names the IPv4 connection (V6-5)
        except ValueError:
            raise ValueError(f"--trace-select {text!r}: {a!r} is not an IP address (IPv4 a.b.c.d or IPv6 "
                             f"such as fd00::1); {allowed}") from None

    def port(p: str) -> int:
        if not p.isdigit() or not 0 < int(p) < 65536:
            raise ValueError(f"--trace-select {text!r}: port {p!r} must be 1..65535; {allowed}")
        return int(p)

    out: list[list[tuple[str, Any]]] = []
    for alt in _split(arg, "or"):
        conj: list[tuple[str, Any]] = []
        for term in _split(alt, "and"):
            words = term.split()
            if len(words) == 2 and words[0] == "host":
                conj.append(("host", addr(words[1])))
            elif len(words) == 2 and words[0] == "port":
                conj.append(("port", port(words[1])))
            elif len(words) == 1 and "-" in words[0]:
                a, _, b = words[0].partition("-")
                (aa, _, ap), (ba, _, bp) = a.rpartition(":"), b.rpartition(":")
                if not aa or not ba:
                    raise ValueError(f"--trace-select {text!r}: a 4-tuple is ADDR:PORT-ADDR:PORT; {allowed}")
                conj.append(("tuple", (addr(aa), port(ap), addr(ba), port(bp))))
            else:
                raise ValueError(f"--trace-select {text!r}: cannot read {term.strip()!r}; {allowed}")
        out.append(conj)
    return out


def _split(text: str, word: str) -> list[str]:
    parts = [p for p in f" {text} ".split(f" {word} ")]
    if any(not p.strip() for p in parts):
        raise ValueError(f"--trace-select 'conn:{text.strip()}': {word!r} needs a term on each side")
    return parts


def _term(t: tuple[str, Any], key: Key) -> bool:
    what, v = t
    if what == "host":
        return v == key[0] or v == key[2]
    if what == "port":
        return v == key[1] or v == key[3]
    return v == key or (v[2], v[3], v[0], v[1]) == key


class Tcb(NamedTuple):
    """A TCB snapshot: what holds ``key`` on ``node`` just before record number ``pos``.

    ``why``: ``"rx"`` (a segment reached it, before it acted), ``"fire"`` (a timer
    is about to run), ``"call"`` (a socket call is about to run) or ``"after"``
    (the end of a step that touched it). ``snd_wnd`` is None for a TIME_WAIT or
    FIN_WAIT_2 record (it keeps none); windows are in bytes; ``timers`` are the
    armed ``(name, deadline_us)`` pairs.
    """

    pos: int
    t: int
    node: str
    key: Key
    why: str
    state: str
    snd_una: int
    snd_nxt: int
    rcv_nxt: int
    snd_wnd: int | None
    rcv_wnd: int
    ts_recent: int
    timers: tuple[tuple[str, int], ...]


class Trace:
    """An append-only list of records, or a disabled trace that records nothing.

    Hot paths test ``trace.on`` (a plain bool) before building a record.
    ``tcbs`` holds the TCB snapshots (plain tuples in :class:`Tcb`'s order). ``select`` None
    records every connection; a :class:`TraceSelect` is consulted once per connection
    when it is created (the connection and its packets then carry the answer).
    """

    __slots__ = ("records", "on", "tcbs", "select")

    def __init__(self, enabled: bool = True) -> None:
        self.records: list[Record] = []
        self.on = enabled
        self.tcbs: list[Record] = []
        self.select: TraceSelect | None = None

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)
