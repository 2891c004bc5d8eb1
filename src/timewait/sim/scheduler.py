"""The one clock: a heap of events ordered by (time, insertion sequence)."""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any


class Scheduler:
    """Discrete-event scheduler. Times are integer microseconds.

    Ties are broken by insertion order, so a run is a pure function of its
    inputs and seed.
    """

    __slots__ = ("now", "_heap", "_seq", "events", "stopped")

    def __init__(self) -> None:
        self.now = 0
        self._heap: list[tuple[int, int, Callable[[Any], None], Any]] = []
        self._seq = 0
        self.events = 0
        self.stopped = False

    def at(self, t: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Call ``fn(arg)`` at time ``t`` (not before now)."""
        if t < self.now:
            t = self.now
        heappush(self._heap, (t, self._seq, fn, arg))
        self._seq += 1

    def after(self, dt: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        self.at(self.now + dt, fn, arg)

    def pending(self) -> int:
        return len(self._heap)

    def next_time(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def run(self, until: int | None = None, max_events: int | None = None) -> None:
        """Process events up to and including time ``until`` (all, if None)."""
        heap = self._heap
        n = 0
        limit = max_events if max_events is not None else -1
        self.stopped = False
        while heap and not self.stopped:
            if until is not None and heap[0][0] > until:
                break
            t, _, fn, arg = heappop(heap)
            self.now = t
            fn(arg)
            n += 1
            if n == limit:
                break
        if until is not None and not self.stopped and (not heap or heap[0][0] > until):
            self.now = max(self.now, until)
        self.events += n
