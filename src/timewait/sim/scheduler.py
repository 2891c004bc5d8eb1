"""The one clock: events kept per instant, instants on a heap.

Times are integer microseconds. Events due at the same instant run in the order
they were scheduled, so a run is a pure function of its inputs and seed.

Layout, for speed: a heap of the distinct instants that have events (plain ints,
so the heap compares ints, not tuples: with (time, seq, fn, arg) tuples the
compares were an eighth of a short-connection run) and, per instant, a list of
``(fn, arg)`` in scheduling order. Scheduling is a dict lookup, an append, and
for a new instant an int pushed on the heap. Timers that are due in the order
they are set, like every TIME_WAIT's 60 s, go on a :class:`Lane` and cost the
heap nothing. Everything schedules through :meth:`at` and :meth:`after`; nothing else touches the layout.

A scheduler made while a :class:`~timewait.sim.budget.Budget` is active counts
against it: its loop compares the event count with a threshold (the one cost per
event) and calls the budget's checkpoint every few ten thousand events; the
budget's simulated-time bound only lowers the loop's end time.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable
from heapq import heappop, heappush
from typing import TYPE_CHECKING, Any, Protocol

from timewait.errors import BudgetExceeded
from timewait.sim import budget as _budget

if TYPE_CHECKING:
    from timewait.sim.budget import Budget

Event = tuple[Callable[[Any], None], Any]
_GC_YOUNG = 100_000  # gc threshold 0 (allocations between young collections) during run(); 700 by default
_LANE_HEAD = object()  # the argument of every lane's head event, so at_first() can tell them apart


class Scheduler:
    """Discrete-event scheduler: one per simulation, the only clock there is."""

    __slots__ = ("now", "_times", "_at", "events", "budget")

    def __init__(self) -> None:
        self.now = 0
        self._times: list[int] = []                 # heap of instants that have events
        self._at: dict[int, list[Event]] = {}       # instant -> its events in scheduling order
        self.events = 0
        self.budget: Budget | None = _budget.current()
        if self.budget is not None:
            self.budget.register(self)

    def at(self, t: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Call ``fn(arg)`` at time ``t`` (not before now)."""
        if t < self.now:
            t = self.now
        # The instant as one int object for the dict and the heap (compiled, an int is kept
        # unboxed and each use would allocate it again).
        tk: Any = t
        b = self._at.get(tk)
        if b is None:
            self._at[tk] = [(fn, arg)]
            heappush(self._times, tk)
        else:
            b.append((fn, arg))

    def after(self, dt: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        self.at(self.now + dt, fn, arg)

    def at_first(self, t: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Like :meth:`at`, but before the events already scheduled for ``t``, after other
        lanes' heads (a lane's head was, in effect, set long ago). At the running instant it
        can only go last."""
        b = self._at.get(t)
        if b is None or t <= self.now:
            self.at(t, fn, arg)
        else:
            i = 0
            while i < len(b) and b[i][1] is _LANE_HEAD:
                i += 1
            b.insert(i, (fn, arg))

    def cancel(self, t: int, fn: Callable[[Any], None], arg: Any) -> bool:
        """Withdraw the event ``fn(arg)`` due at ``t`` (compared by identity first, then
        equality); False if it is not there or ``t`` is the running instant, whose events
        are being iterated (the caller then lets it run and ignores it)."""
        if t <= self.now:
            return False
        b = self._at.get(t)
        if not b:
            return False
        try:
            b.remove((fn, arg))  # an emptied instant stays; run() passes over it
        except ValueError:
            return False
        return True

    def pending(self) -> int:
        """Events scheduled and not yet run (a lane's queued items count as one)."""
        return sum(len(b) for b in self._at.values())

    def next_time(self) -> int | None:
        return self._times[0] if self._times else None

    def run(self, until: int | None = None, max_events: int | None = None) -> None:
        """Process events up to and including time ``until`` (all, if None), at most
        ``max_events`` of them; past the budget (if any), raise :class:`BudgetExceeded`."""
        budget = self.budget
        end = until if until is not None else 1 << 62
        lim = 1 << 62  # the event count of the next budget checkpoint: never, without a budget
        if budget is not None:
            if until is not None:
                budget.note_end(until)
            lim = budget.checkpoint(self, 0)
            if budget.sim_s is not None:
                end = min(end, int(budget.sim_s * 1_000_000))
        # The cyclic GC would otherwise scan every object made before the run (modules, the
        # set-up) on each full collection, and run a young collection every 700 allocations
        # of segments and event tuples that die young anyway: for the run, what existed
        # before is frozen (gc.freeze) and the young generation's threshold raised; both are
        # put back after. Nothing simulated depends on when the GC runs.
        frozen = gc.get_freeze_count() == 0 and gc.isenabled()
        if frozen:
            threshold = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(_GC_YOUNG, *threshold[1:])
        try:
            if max_events is not None:
                self._run_counted(end, max_events, lim)
            else:
                self._run(end, lim)
        finally:
            if frozen:
                gc.set_threshold(*threshold)
                gc.unfreeze()
        times = self._times
        if budget is not None and times and end < times[0] <= (until if until is not None else 1 << 62):
            budget.time_exceeded(self)  # stopped by the time bound, not by ``until``
        if until is not None and self.now < until and (not times or times[0] > until):
            self.now = until

    def _run(self, end: int, lim: int) -> None:
        times, at = self._times, self._at
        budget = self.budget
        pop = heappop  # a local: compiled, a module global imported from heapq is a dict lookup per call
        n = 0
        try:
            while times:
                t: Any = times[0]  # the heap's int object, not unboxed and boxed again (at())
                if t > end:
                    break
                self.now = t
                b = at[t]
                n0 = n
                try:
                    for fn, arg in b:  # a list iterator sees events appended meanwhile
                        if n >= lim:  # the only per-event cost of the budget
                            lim = budget.checkpoint(self, n)  # type: ignore[union-attr]
                        fn(arg)
                        n += 1
                except BudgetExceeded:
                    del b[: n - n0]  # what ran; the event it stopped before stays
                    raise
                except BaseException:
                    del b[: n - n0 + 1]  # what ran, the failing event included
                    if not b:
                        heappop(times)
                        del at[t]
                    raise
                pop(times)
                del at[t]
        finally:
            self.events += n

    def _run_counted(self, end: int, max_events: int, lim: int) -> None:
        times, at = self._times, self._at
        budget = self.budget
        n = 0
        try:
            while times and n < max_events:
                t = times[0]
                if t > end:
                    break
                self.now = t
                b = at[t]
                while b and n < max_events:
                    if n >= lim:
                        lim = budget.checkpoint(self, n)  # type: ignore[union-attr]
                    fn, arg = b.pop(0)
                    n += 1
                    fn(arg)
                if not b:
                    heappop(times)
                    del at[t]
        finally:
            self.events += n


class LaneItem(Protocol):
    """What a :class:`Lane` keeps on its items: ``due``, the time due while the item is
    queued and -1 otherwise (an item is queued at most once)."""

    due: int


class Lane:
    """Timers whose due times never decrease in the order they are set.

    Every TIME_WAIT lasts the same 60 s, so the records expire in the order they
    were made (Linux keeps them on its timer wheel, not in a sorted tree). A lane
    holds such timers in a FIFO with only its head on the scheduler: a million
    TIME_WAIT records cost the scheduler one event, and each record a deque slot
    and its ``due`` slot instead of an event tuple. At an instant, the lane's
    items run before the other events of that instant (they were set long before).
    """

    __slots__ = ("sched", "q", "fn", "_fire_cb")

    def __init__(self, sched: Scheduler, fn: Callable[[Any], None]) -> None:
        self.sched = sched
        self.q: deque[LaneItem] = deque()
        self.fn = fn
        self._fire_cb = self._fire

    def __len__(self) -> int:
        return len(self.q)

    def push(self, item: LaneItem, t: int) -> bool:
        """Call ``fn(item)`` at ``t``; False (nothing done) if ``t`` is before the lane's last
        or the item is still queued."""
        q = self.q
        if (q and q[-1].due > t) or item.due >= 0:
            return False
        sched = self.sched
        if t < sched.now:
            t = sched.now
        item.due = t
        q.append(item)
        if len(q) == 1:
            sched.at_first(t, self._fire_cb, _LANE_HEAD)
        return True

    def _fire(self, _: object) -> None:
        """Run every item due now, then put the next head on the scheduler."""
        q = self.q
        sched = self.sched
        now = sched.now
        fn = self.fn
        k = 0
        while q and q[0].due <= now:
            item = q.popleft()
            item.due = -1
            k += 1
            fn(item)
        if k > 1:
            sched.events += k - 1  # one event each, as if each had its own
        if q:
            sched.at_first(q[0].due, self._fire_cb, _LANE_HEAD)
