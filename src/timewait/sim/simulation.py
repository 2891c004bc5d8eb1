"""The Python API: build hosts, links, routers, NATs and apps; run; read the results."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from timewait.errors import UsageError
from timewait.result import CensusRow, Snapshot
from timewait.sim.host import Host
from timewait.sim.network import Fault, Network, Node, Router, check_fault_nodes, parse_fault
from timewait.sim.profiles import Profile, get_profile
from timewait.sim.scheduler import Scheduler
from timewait.sim.sysctl import lookup
from timewait.sim.telemetry import Telemetry, census, census_all, state_counts
from timewait.tcp.config import SEC
from timewait.trace import NOTE, Trace


def parse_sysctl_override(text: str) -> tuple[str, str, str]:
    """``"c1:net.ipv4.tcp_tw_reuse=1"`` to ``("c1", name, value)``; HOST may be ``*``."""
    host, sep, rest = text.partition(":")
    name, eq, value = rest.partition("=")
    if not sep or not eq or not host or not name:
        raise UsageError(f"--sysctl {text!r}: expected HOST:NAME=VALUE, e.g. c1:net.ipv4.tcp_tw_reuse=1")
    return host.strip(), name.strip(), value.strip()


class Simulation:
    """A deterministic world: one scheduler (the only clock), one seeded RNG, one trace.

    >>> sim = Simulation(seed=1)
    >>> c1 = sim.add_host("c1", "10.0.0.1"); c2 = sim.add_host("c2", "10.0.0.2")
    >>> _ = sim.link(c1, c2, delay_ms=1)
    >>> sim.run(until_s=1)
    """

    def __init__(self, *, profile: str | Profile = "linux", seed: int = 1, trace: bool = True,
                 sysctls: list[str] | None = None, msl_s: float | None = None,
                 sample_every_s: float | None = None, census_at_s: list[float] | None = None,
                 snapshot_rows: int = 0) -> None:
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.seed = seed
        self.rng = random.Random(seed)
        self.sched = Scheduler()
        self.trace = Trace(trace)
        msl = int(msl_s * SEC) if msl_s is not None else self.profile.msl
        self.msl = msl
        self.net = Network(self.sched, self.trace, self.rng, max_age=msl)
        self.hosts: dict[str, Host] = {}
        self.overrides = [parse_sysctl_override(s) for s in (sysctls or [])]
        for _, name, value in self.overrides:  # a bad name or value is refused now, not at add_host
            s = lookup(name, self.profile.legacy)
            s.parse(s.name, value)
        self.user_faults: list[Fault] = []
        self._used_overrides: set[int] = set()
        self.timewait_enabled = True
        self.mem: int | None = None
        # Telemetry: sampled at grid instants between scheduler runs (see run()); a census of
        # every host's sockets at each instant asked for, taken when the run is there.
        self.telemetry = Telemetry(self.sched, sample_every_s)
        self.census_pending = sorted({int(round(t * SEC)) for t in census_at_s or []})
        self.census: dict[int, dict[str, list[CensusRow]]] = {}
        # Snapshots for the HTML report's scrubbed socket table (``snapshot_rows`` > 0): at every
        # SNAPSHOT_STRIDE-th grid instant, ``snapshot_rows`` of each host's sockets (the first its
        # tables hold, in ss order) and its exact count per state, whatever the trace keeps.
        self.snapshot_rows = snapshot_rows
        self.snapshot_every = 0
        self.snapshots: dict[int, dict[str, Snapshot]] = {}

    # ------------------------------------------------------------------ building

    @property
    def now(self) -> float:
        """Simulated time in seconds."""
        return self.sched.now / SEC

    def add_host(self, name: str, *addrs: str, uptime_s: float | None = None) -> Host:
        """A host with its addresses; the profile's sysctls, then ``--sysctl`` overrides, apply."""
        prof = self.profile
        if prof.tw_from_msl:
            prof = _with_tw_len(prof, 2 * self.msl)
        uptime = int((uptime_s if uptime_s is not None else self.rng.uniform(1000, 5_000_000)) * 1000)
        h = Host(name, list(addrs), prof, self.rng.randbytes(16), self.rng, uptime_ms=uptime, mem=self.mem)
        h.timewait_enabled = self.timewait_enabled
        for i, (hn, sname, value) in enumerate(self.overrides):
            if hn in (name, "*"):
                h.set_sysctl(sname, value)
                self._used_overrides.add(i)
        self.net.add(h)
        self.hosts[name] = h
        self.telemetry.add_host(h)
        return h

    def add_router(self, name: str, *addrs: str) -> Router:
        from timewait.tcp.segment import ip_aton

        r = Router(name, [ip_aton(a) for a in addrs])
        self.net.add(r)
        return r

    def add_node(self, node: Node) -> Node:
        return self.net.add(node)

    def link(self, a: Node, b: Node, *, delay_ms: float = 0.1, jitter_ms: float = 0.0, loss: float = 0.0,
             dup: float = 0.0, reorder: float = 0.0, reorder_ms: float = 0.0) -> Any:
        return self.net.connect(a, b, delay=int(delay_ms * 1000), jitter=int(jitter_ms * 1000), loss=loss,
                                dup=dup, reorder=reorder, reorder_delay=int(reorder_ms * 1000))

    def fault(self, text: str) -> Fault:
        """Add a fault rule, e.g. ``"drop from=c1 flags=. len=0 nth=2"``; returns it (to remove later)."""
        f = parse_fault(text)
        self.net.faults.append(f)
        return f

    def note(self, node: str, text: str) -> None:
        if self.trace.on:
            self.trace.records.append((self.sched.now, NOTE, node, text))

    def at(self, t_s: float, fn: Callable[[], None]) -> None:
        """Call ``fn()`` at simulated time ``t_s``."""
        self.sched.at(int(t_s * SEC), _call0, fn)

    def every(self, period_s: float, fn: Callable[[float], None], until_s: float | None = None) -> None:
        """Call ``fn(t_seconds)`` every ``period_s`` (a sampler for time series)."""
        period = int(period_s * SEC)
        if period <= 0:  # a zero period would fire forever at one instant
            raise ValueError(f"every(): period {period_s!r} s is below the clock's 1 µs")
        end = int(until_s * SEC) if until_s is not None else None

        def tick(_: object) -> None:
            fn(self.sched.now / SEC)
            nxt = self.sched.now + period
            if end is None or nxt <= end:
                self.sched.at(nxt, tick, None)

        self.sched.at(self.sched.now, tick, None)

    # ------------------------------------------------------------------ running

    def check_overrides(self) -> None:
        """The user's ``--sysctl`` hosts and ``--fault`` nodes must exist once the scenario is built."""
        unused = [f"{h}:{n}" for i, (h, n, _) in enumerate(self.overrides) if i not in self._used_overrides]
        if unused:
            raise UsageError(f"--sysctl for unknown host in {', '.join(unused)}; hosts: {', '.join(self.hosts)}")
        check_fault_nodes(self.user_faults, list(self.net.nodes))

    def run(self, until_s: float | None = None, max_events: int | None = None) -> None:
        """Advance simulated time to ``until_s`` (or until nothing is left to do).

        The scheduler runs in stretches that end at each telemetry grid instant and
        census instant, where the sample or the census is taken: running up to an
        instant and on from it processes the same events in the same order as one
        run would, and nothing is scheduled for it, so results cannot change.
        """
        self.check_overrides()
        sched = self.sched
        end = None if until_s is None else int(until_s * SEC)
        tel = self.telemetry
        if end is not None:
            tel.plan(end)
        e0 = sched.events
        pending = self.census_pending
        while True:
            stop = tel.next_at
            if pending and pending[0] < stop:
                stop = pending[0]
            if (end is not None and stop > end) or (end is None and sched.next_time() is None):
                break
            left = None if max_events is None else max_events - (sched.events - e0)
            if left is not None and left <= 0:
                return
            sched.run(stop, left)
            if max_events is not None and sched.events - e0 >= max_events:
                nxt = sched.next_time()
                if nxt is not None and nxt <= stop:
                    return  # the budget ran out inside this stretch
            if pending and pending[0] == stop:
                self.census[stop] = census_all(self.hosts)
                pending.pop(0)
            if stop == tel.next_at:
                tel.sample(stop)
                if self.snapshot_rows:
                    self._snapshot(stop)
        left = None if max_events is None else max_events - (sched.events - e0)
        if left is None or left > 0:
            sched.run(end, left)

    def _snapshot(self, t: int) -> None:
        # On the grid as it is now: a doubled step (the telemetry halves its samples) keeps
        # the snapshot instants on it, as a multiple of the new step.
        every = SNAPSHOT_STRIDE * self.telemetry.step
        if every > self.snapshot_every:
            self.snapshot_every = every
        if t % self.snapshot_every:
            return
        # The counts from the telemetry's own (exact, O(1)) tallies; rows only as many as shown.
        self.snapshots[t] = {name: Snapshot(census(h, self.snapshot_rows), state_counts(h))
                             for name, h in self.hosts.items()}


#: A snapshot every this many telemetry samples (about 100 over a run of the default grid).
SNAPSHOT_STRIDE = 10


def _with_tw_len(p: Profile, tw_len: int) -> Profile:
    from dataclasses import replace

    return replace(p, tw_len=tw_len)


def _call0(fn: Callable[[], None]) -> None:
    fn()
