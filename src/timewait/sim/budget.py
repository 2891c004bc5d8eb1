"""Every run bounded: a budget of events, memory and simulated time, and an estimate.

A :class:`Budget` is derived from what a run is expected to do (its :class:`Scale`:
connections opened, simulated seconds), with generous headroom, so a run that
goes far past it is a runaway (a sampling period of 0, a rate below zero) rather
than a big run. While a budget is active (:meth:`Budget.active`), every
:class:`~timewait.sim.scheduler.Scheduler` made registers with it; the scheduler
calls :meth:`Budget.checkpoint` every :data:`CHECK_EVERY` events (one integer
compare per event in its loop) and clamps its clock at the simulated-time bound
(no cost per event). Past the budget the run stops with one
:class:`~timewait.errors.BudgetExceeded` line.

The per-event and per-connection figures below were measured on W1
(``bench/w1_redis.py``) and the ready scenarios; the estimate is only as good as
those, which is why the budget keeps a wide margin over it.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from timewait.errors import BudgetExceeded, UsageError

if TYPE_CHECKING:
    from timewait.sim.scheduler import Scheduler

CHECK_EVERY = 1 << 16          # events between two checkpoints (~0.1 s of a run)
EVENTS_PER_CONNECTION = 10     # events per short connection (W1: 9.0, port-exhaustion: 9.4)
EVENTS_PER_SIM_S = 50          # timers and samplers of a run, per simulated second
SECONDS_PER_EVENT = 11e-6      # wall seconds per event (W1: ~86,000 events/s on one idle core)
BYTES_PER_CONNECTION = 1_000   # memory per connection held at once (max-rate: ~700, trace off)
HEADROOM = 4                   # budget = HEADROOM x the estimate ...
EVENTS_FLOOR = 1_000_000       # ... but never less than this (~11 s)
MEM_FLOOR_MB = 768.0           # ... nor less than this much growth of the process
MEM_SHARE = 0.8                # and never more than this share of the machine's memory
STUCK_EVENTS = 500_000         # events at one simulated instant that mark a runaway
BIG_RUN_S = 10.0               # runs estimated longer than this announce themselves
BIG_RUN_MB = 500.0             # ... or bigger than this

_current: ContextVar[Budget | None] = ContextVar("timewait_budget", default=None)


@dataclass(frozen=True, slots=True)
class Scale:
    """What a run is expected to do: the connections it opens, the simulated seconds it covers
    (None: not known in advance; the run's own end times then bound it), the connections it
    holds at once at its peak (None: all of them) and its other events (samplers, retries)."""

    connections: float = 0.0
    sim_s: float | None = None
    held: float | None = None
    timers: float = 0.0

    @property
    def events(self) -> float:
        return (EVENTS_PER_CONNECTION * self.connections + EVENTS_PER_SIM_S * (self.sim_s or 0.0)
                + self.timers)

    @property
    def mem_mb(self) -> float:
        held = self.connections if self.held is None else self.held
        return BYTES_PER_CONNECTION * held / 1e6


def rss_mb() -> float:
    """This process's resident memory now, in MB (``/proc/self/statm``; elsewhere the peak)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE / 1e6
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1e6 if sys.platform == "darwin" else peak / 1e3


def machine_mb() -> float | None:
    """Physical memory, in MB, if the system says."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * _PAGE / 1e6
    except (OSError, ValueError, AttributeError):
        return None


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Budget:
    """Limits of one run: ``events`` (all its schedulers together), ``mem_mb`` (growth of the
    process's resident memory since the run began) and ``sim_s`` (any scheduler's clock);
    None means unlimited."""

    __slots__ = ("label", "events", "mem_mb", "sim_s", "scale", "per_end_s", "_end_s", "_scheds", "_rss0",
                 "_hint", "_still", "derived")

    def __init__(self, *, events: int | None, mem_mb: float | None, sim_s: float | None,
                 label: str = "the run", scale: Scale | None = None, hint: str = "--budget") -> None:
        self.label = label
        self.events = events
        self.mem_mb = mem_mb
        self.sim_s = sim_s
        self.scale = scale
        # Events allowed per simulated second of the furthest end time a scheduler is asked
        # to run to: the generic bound of a run whose length is not declared in advance.
        self.per_end_s = 0.0
        self._end_s = 0.0
        self._scheds: list[Scheduler] = []
        self._rss0 = 0.0
        self._hint = hint
        self._still: tuple[Scheduler, int, int] | None = None  # (scheduler, its clock, events then)
        self.derived = False  # True: from the run's parameters (for_scale), not given by hand

    @property
    def _imply(self) -> str:
        return ", far more than its parameters imply" if self.derived else ""

    # ------------------------------------------------------------------ making one

    @classmethod
    def for_scale(cls, scale: Scale, label: str = "the run") -> Budget:
        """The default budget of a run of this scale: HEADROOM times the estimate, with floors."""
        scale = Scale(_sane(scale.connections), None if scale.sim_s is None else _sane(scale.sim_s),
                      None if scale.held is None else _sane(scale.held), _sane(scale.timers))
        events = int(max(EVENTS_FLOOR, HEADROOM * scale.events))
        mem = max(MEM_FLOOR_MB, HEADROOM * scale.mem_mb)
        total = machine_mb()
        if total is not None:
            mem = min(mem, MEM_SHARE * total)
        sim_s = None if scale.sim_s is None else 2 * scale.sim_s + 60
        b = cls(events=events, mem_mb=mem, sim_s=sim_s, label=label, scale=scale)
        b.derived = True
        if scale.sim_s is None:
            b.per_end_s = HEADROOM * EVENTS_PER_SIM_S
        return b

    def override(self, text: str) -> Budget:
        """This budget with ``--budget events=N,mem=MB,time=S`` applied (each part optional;
        ``off`` lifts that limit, ``--budget off`` all of them)."""
        events, mem, sim_s = self.events, self.mem_mb, self.sim_s
        if text.strip().lower() == "off":
            return Budget(events=None, mem_mb=None, sim_s=None, label=self.label, scale=self.scale)
        for part in text.split(","):
            key, sep, value = (s.strip().lower() for s in part.partition("="))
            if not sep or not key:
                raise UsageError(f"--budget {text!r}: expected events=N,mem=MB,time=SECONDS (each optional) or off")
            off = value == "off"
            try:
                if key == "events":
                    events = None if off else int(_number(value, {"k": 1e3, "m": 1e6, "g": 1e9}))
                elif key == "mem":
                    mem = None if off else _number(value, {"m": 1.0, "g": 1e3, "t": 1e6})
                elif key == "time":
                    sim_s = None if off else _number(value, {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0})
                else:
                    raise UsageError(f"--budget {text!r}: unknown part {key!r}; allowed: events, mem, time")
            except ValueError:
                raise UsageError(f"--budget {key}={value!r}: expected a number > 0 or off") from None
        b = Budget(events=events, mem_mb=mem, sim_s=sim_s, label=self.label, scale=self.scale)
        if events == self.events:  # the event limit as derived: it still grows with the end time
            b.per_end_s = self.per_end_s
        return b

    # ------------------------------------------------------------------ the estimate

    def estimate(self) -> str | None:
        """``"about 10 min, 63 MB"`` for a run expected to be big, else None."""
        if self.scale is None:
            return None
        secs = self.scale.events * SECONDS_PER_EVENT
        mb = self.scale.mem_mb
        if secs < BIG_RUN_S and mb < BIG_RUN_MB:
            return None
        return f"about {_duration(secs)}, {_size(mb)}"

    def describe(self) -> str:
        """``"1,000,000 events, 768 MB"``: the limits, for the estimate line."""
        limit = self.event_limit
        parts = [f"{limit:,} events" if limit is not None else "events unlimited",
                 f"{_size(self.mem_mb)}" if self.mem_mb is not None else "memory unlimited"]
        if self.sim_s is not None:
            parts.append(f"{self.sim_s:g} s simulated")
        return ", ".join(parts)

    # ------------------------------------------------------------------ running

    @contextlib.contextmanager
    def active(self) -> Iterator[Budget]:
        """Schedulers made inside this block count against this budget."""
        self._rss0 = rss_mb()
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)

    def register(self, sched: Scheduler) -> None:
        self._scheds.append(sched)

    def note_end(self, until_us: int) -> None:
        """A scheduler is asked to run to ``until_us``: the generic event limit grows with it."""
        if until_us > self._end_s * 1e6:
            self._end_s = until_us / 1e6

    @property
    def event_limit(self) -> int | None:
        """The event limit now (None: unlimited)."""
        if self.events is None:
            return None
        return self.events + int(self.per_end_s * self._end_s)

    def spent(self, sched: Scheduler, n: int) -> int:
        """Events run so far by every scheduler of the run, ``n`` not yet added to ``sched``'s."""
        return sum(s.events for s in self._scheds) + n

    def checkpoint(self, sched: Scheduler, n: int) -> int:
        """Called before a scheduler runs its ``n``-th event of this ``run()`` call (counting
        from 0) once ``n`` reaches the last threshold; raises :class:`BudgetExceeded` past the
        budget, else returns the next threshold."""
        spent = self.spent(sched, n)
        limit = self.event_limit
        if limit is not None:
            if spent >= limit:
                self._stop(sched, spent, f"past its budget of {limit:,} events{self._imply}",
                           f"events={4 * limit}")
            # Events without the clock moving: a timer or loop with a period of 0 (nothing
            # real does half a million things in one microsecond). Stop it early.
            still = self._still
            if still is None or still[0] is not sched or still[1] != sched.now:
                self._still = (sched, sched.now, spent)
            elif spent - still[2] >= STUCK_EVENTS:
                self._stop(sched, spent, f"{spent - still[2]:,} events without the simulated clock "
                           "moving (a period or interval of 0?)", "events=off")
        if self.mem_mb is not None:
            grown = rss_mb() - self._rss0
            if grown > self.mem_mb:
                self._stop(sched, spent, f"{_size(grown)} more memory, past its budget of {_size(self.mem_mb)}{self._imply}",
                           f"mem={4 * self.mem_mb:.0f}")
        step = CHECK_EVERY
        if limit is not None:
            step = min(step, limit - spent)  # stop exactly at the limit
        return n + max(step, 1)

    def time_exceeded(self, sched: Scheduler) -> None:
        """The scheduler's next event lies past the simulated-time budget."""
        self._stop(sched, self.spent(sched, 0), f"past its time budget of {self.sim_s:g} s simulated{self._imply}",
                   f"time={4 * (self.sim_s or 0):.0f}")

    def _stop(self, sched: Scheduler, spent: int, why: str, raise_to: str) -> None:
        raise BudgetExceeded(
            f"{self.label} stopped after {spent:,} events at t = {sched.now / 1e6:.3f} s simulated: {why} "
            f"(if the run is meant to be this big: {self._hint} {raise_to})")


def current() -> Budget | None:
    """The budget of the run in progress in this context, if any."""
    return _current.get()


def _sane(v: float) -> float:
    """A declared figure as a usable one: parameters that make it negative, NaN or infinite
    (a runaway in the making) count as 0, leaving the floors to bound the run."""
    return float(v) if math.isfinite(v) and v > 0 else 0.0


def _number(text: str, units: dict[str, float]) -> float:
    mult = 1.0
    if text and text[-1] in units:
        text, mult = text[:-1], units[text[-1]]
    v = float(text) * mult
    if not v > 0 or v == float("inf"):
        raise ValueError(text)
    return v


def _duration(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def _size(mb: float | None) -> str:
    if mb is None:
        return "unlimited"
    return f"{mb:.0f} MB" if mb < 10_000 else f"{mb / 1e3:.0f} GB"
