"""Facts measured from a trace (pure functions; scenarios' checks use them)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from timewait.tcp.config import SEC
from timewait.trace import STATE, TX, Record


@dataclass(frozen=True, slots=True)
class Interval:
    """One stay of one connection in one state on one host (``end`` None = still there)."""

    host: str
    key: tuple[int, int, int, int]
    state: str
    start: float
    end: float | None

    @property
    def seconds(self) -> float | None:
        return None if self.end is None else round(self.end - self.start, 6)


def state_intervals(records: Iterable[Record], state: str) -> list[Interval]:
    """Every stay in ``state``, from STATE records, in order of entry."""
    open_: dict[tuple[str, tuple[int, int, int, int]], float] = {}
    out: list[Interval] = []
    for r in records:
        if r[1] != STATE:
            continue
        t, _, host, key, old, new = r
        k = (host, key)
        if new == state:
            open_[k] = t / SEC
        elif old == state and k in open_:
            out.append(Interval(host, key, state, open_.pop(k), t / SEC))
    out.extend(Interval(h, key, state, s, None) for (h, key), s in open_.items())
    out.sort(key=lambda i: i.start)
    return out


def transmitted(records: Iterable[Record], host: str | None = None) -> list[Record]:
    return [r for r in records if r[1] == TX and (host is None or r[2] == host)]
