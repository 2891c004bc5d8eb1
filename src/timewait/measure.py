"""Queries over a trace: the facts scenarios' checks are made of (pure functions).

They read typed record views (:func:`timewait.trace.views`), so a check says
``r.seg.flags`` and ``r.new`` rather than positions. Scenarios share these
instead of importing helpers from one another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from timewait.tcp.config import SEC
from timewait.tcp.segment import ACK, FIN, RST, SYN
from timewait.trace import DROP, FWD, ICMP, RX, STATE, TX, Record, select

Key = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Interval:
    """One stay of one connection in one state on one host (``end`` None = still there)."""

    host: str
    key: Key
    state: str
    start: float
    end: float | None

    @property
    def seconds(self) -> float | None:
        return None if self.end is None else round(self.end - self.start, 6)


def state_intervals(records: Iterable[Record], state: str) -> list[Interval]:
    """Every stay in ``state``, from STATE records, in order of entry."""
    open_: dict[tuple[str, Key], float] = {}
    out: list[Interval] = []
    for r in select(records, STATE):
        k = (r.node, r.key)
        if r.new == state:
            open_[k] = r.t / SEC
        elif r.old == state and k in open_:
            out.append(Interval(r.node, r.key, state, open_.pop(k), r.t / SEC))
    out.extend(Interval(h, key, state, s, None) for (h, key), s in open_.items())
    out.sort(key=lambda i: i.start)
    return out


def first(recs: list[Any], pred: Callable[[Any], Any], after: int = -1) -> Any:
    """The first view later than ``after`` (µs) that satisfies ``pred``, or None."""
    return next((r for r in recs if r.t > after and pred(r)), None)


def seconds(r: Any) -> float | None:
    """A view's time in seconds (None for None)."""
    return None if r is None else r.t / SEC


def seg_of(kind: str, host: str, flags: int | None = None) -> Callable[[Any], bool]:
    """A predicate: a ``kind`` (TX/RX/DROP) view at ``host`` whose SYN/ACK/FIN/RST bits are ``flags``."""
    return lambda r: r.kind == kind and r.node == host and (
        flags is None or r.seg.flags & (SYN | ACK | FIN | RST) == flags)


def state_at(recs: list[Any], host: str, key: Key, t: int) -> str:
    """The state ``host`` had for ``key`` just before time ``t`` (µs), from STATE views."""
    st = "CLOSED"
    for r in recs:
        if r.t >= t:
            break
        if r.kind == STATE and r.node == host and r.key == key:
            st = r.new
    return st


def time_wait_keys_at(recs: list[Any], host: str, t: int) -> set[Key]:
    """Keys with a TIME_WAIT on ``host`` just before ``t`` (µs)."""
    keys: set[Key] = set()
    for r in recs:
        if r.t >= t:
            break
        if r.kind == STATE and r.node == host:
            if r.new == "TIME_WAIT":
                keys.add(r.key)
            elif r.old == "TIME_WAIT":
                keys.discard(r.key)
    return keys


def fate(recs: list[Any], pid: int) -> Any:
    """Where packet ``pid`` ended: its arrival at a host (RX), else where it was dropped, else None."""
    rx = next((r for r in recs if r.kind == RX and r.seg.pid == pid), None)
    return rx or next((r for r in recs if r.kind == DROP and r.seg.pid == pid), None)


def path_of(recs: list[Any], pid: int) -> list[Any]:
    """Every hop of packet ``pid``: sent, forwarded, received, dropped, ICMP."""
    return [r for r in recs if r.kind in (TX, FWD, RX, DROP, ICMP) and r.seg.pid == pid]


def flag_names(r: Any, bits: tuple[tuple[int, str], ...] = ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"),
                                                            (ACK, "ACK"))) -> str:
    """A packet view's flags as ``SYN+ACK`` (``nothing`` for None, ``?`` when none of ``bits``)."""
    if r is None:
        return "nothing"
    f = r.seg.flags
    return "+".join(n for bit, n in bits if f & bit) or "?"
