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
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from timewait.tcp.segment import Segment

TX = "tx"
RX = "rx"
FWD = "fwd"
DROP = "drop"
HOLD = "hold"
DUP = "dup"
ICMP = "icmp"
STATE = "state"
TIMER = "timer"
FIRE = "fire"
CALL = "call"
COUNTER = "counter"
NOTE = "note"

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


def cut_notice(records: list[Record]) -> str | None:
    """The sentence every view of a trace shows when the trace was cut, or None.

    A big run stops tracing at a record limit (``Lab.run`` writes a NOTE starting with
    :data:`CUT_PREFIX` and the instant); what a trace view draws ends there, while counts,
    ``ss`` tables and plots come from the telemetry and stay whole.
    """
    for rec in reversed(records):
        if rec[1] == NOTE and str(rec[3]).startswith(CUT_PREFIX):
            return (f"The {rec[3]}: this view shows nothing after that. Counts, ss tables and plots "
                    "come from the telemetry and cover the whole run.")
    return None


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
    ``tcbs`` holds the TCB snapshots (plain tuples in :class:`Tcb`'s order).
    """

    __slots__ = ("records", "on", "tcbs")

    def __init__(self, enabled: bool = True) -> None:
        self.records: list[Record] = []
        self.on = enabled
        self.tcbs: list[Record] = []

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)
