"""Telemetry beside the trace: per-host counts kept at O(1) per event, sampled on a grid.

The trace records every event and may be switched off or cut at its limit; the
telemetry is independent of it and always exact. Each host keeps a
:class:`HostTelemetry` that the host updates where it changes a socket's state
(the places that also write STATE records), so keeping it costs a few list
operations per state change and never a scan over sockets:

- sockets per state (TIME_WAIT and FIN_WAIT_2 records included, as ``ss`` lists
  them), with the first instant each count reached its maximum;
- local ports in use (``len(host.ports.buckets)``, one bucket per port), with its maximum;
- ``connect()`` outcomes: ``ok`` (the SYN was answered) and one count per errno,
  both the immediate ones (``EADDRNOTAVAIL``) and those reported later
  (``ECONNREFUSED``, ``ETIMEDOUT``);
- TIME_WAIT records created / expired / killed / reused / overflowed.

A :class:`Telemetry` (one per :class:`~timewait.sim.simulation.Simulation`)
samples those counts, the host's nstat counters, its listeners and its ports in
use per destination on a fixed simulated-time grid. The simulation runs the
scheduler up to each grid instant and samples there (no event is added, so a
run's results do not change). The grid step is chosen from the run's planned
length (about :data:`TARGET_POINTS` points); a run that goes on past its plan
halves its resolution (every other sample dropped, the step doubled) whenever
it holds twice that many, so the grid stays uniform and exact.

The same module takes a **census** at an instant: every host's sockets as plain
rows of :class:`timewait.report.sockets.Socket`'s shape, taken while the run is
at that instant.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Final

from timewait.result import CensusRow, SeriesRun
from timewait.tcp.segment import ip_ntoa
from timewait.tcp.states import (
    CLOSED,
    NAMES,
    RCV_RST,
    RCV_SYN,
    RCV_SYN_OR_DATA,
    SYN_SENT,
    TIME_WAIT,
    TIMEOUT_2MSL,
    TIMEOUT_FW2,
    TW_OFF,
    TW_REUSE,
)

if TYPE_CHECKING:
    from timewait.sim.host import Host
    from timewait.sim.scheduler import Scheduler
    from timewait.tcp.connection import Connection

TARGET_POINTS = 1000
#: A grid with a step set by hand still halves past this many points (memory bound).
MAX_POINTS = 1_000_000

# TIME_WAIT record fates, indices into HostTelemetry.tw.
TW_CREATED: Final = 0
TW_EXPIRED: Final = 1
TW_KILLED: Final = 2
TW_REUSED: Final = 3
TW_OVERFLOWED: Final = 4
TW_SERIES = ("tw.created", "tw.expired", "tw.killed", "tw.reused", "tw.overflowed")
# Why DeathRow.kill removed a record -> its fate.
# The state table's event a record leaves through (DeathRow.kill) -> what happened to it.
_GONE = {TIMEOUT_2MSL: TW_EXPIRED, TIMEOUT_FW2: TW_EXPIRED, TW_REUSE: TW_REUSED, RCV_SYN: TW_REUSED,
         RCV_RST: TW_KILLED, RCV_SYN_OR_DATA: TW_KILLED, TW_OFF: TW_KILLED}
# The states counted per host (CLOSED is no socket; LISTEN is sampled from the listeners).
_COUNTED = tuple(i for i, n in enumerate(NAMES) if n not in ("CLOSED", "LISTEN"))
# The series every host has, in the order Telemetry.sample appends them.
_FIXED = (*(NAMES[i] for i in _COUNTED), "LISTEN", "ports_in_use", "nstat.TcpInSegs", "nstat.TcpOutSegs",
          *TW_SERIES)
#: Series whose maximum is tracked exactly, at the instant it is first reached.
PORTS: Final = 11  # index of ports_in_use in HostTelemetry.peak (after the 11 states)


class HostTelemetry:
    """One host's exact counts, updated by the host at each change (O(1) each).

    ``states[s]`` is the number of sockets in state ``s`` (an int of
    :mod:`timewait.tcp.states`); ``peak[i]`` / ``peak_at[i]`` the highest count
    and the first instant (µs) it was reached, for the states and, at index
    :data:`PORTS`, the local ports in use.
    """

    __slots__ = ("host", "states", "peak", "peak_at", "connect", "tw")

    def __init__(self, host: Host) -> None:
        self.host = host
        self.states = [0] * len(NAMES)
        self.peak = [0] * (len(NAMES) + 1)
        self.peak_at = [0] * (len(NAMES) + 1)
        self.connect: dict[str, int] = {}
        self.tw = [0] * len(TW_SERIES)

    def _up(self, st: int) -> None:
        n = self.states[st] + 1
        self.states[st] = n
        if n > self.peak[st]:
            self.peak[st] = n
            self.peak_at[st] = self.host.sched.now

    def state(self, old: int, new: int, conn: Connection) -> None:
        """A connection went from ``old`` to ``new`` (Host.after, where STATE records are made).

        A connection entering TIME_WAIT is counted at once (the trace says so too),
        but TIME_WAIT's maximum is taken in :meth:`tw_made`: past
        ``tcp_max_tw_buckets`` the connection leaves TIME_WAIT at the same instant,
        and the cap, not cap + 1, is what ``ss`` could ever list. Hot: a few list
        operations, the rest only on a connection's first and SYN_SENT changes.
        """
        states = self.states
        if old:
            states[old] -= 1
            if old == SYN_SENT:
                c = self.connect
                why = "ok" if new else (conn.err or "EIO")
                c[why] = c.get(why, 0) + 1
        elif new:
            # A new socket: the only moment a port can have been added (bind, connect, SYN).
            n = len(self.host.ports.buckets)
            if n > self.peak[PORTS]:
                self.peak[PORTS] = n
                self.peak_at[PORTS] = self.host.sched.now
        if new:
            n = states[new] + 1
            states[new] = n
            if n > self.peak[new] and new != TIME_WAIT:
                self.peak[new] = n
                self.peak_at[new] = self.host.sched.now

    def failed(self, call: str, errno: str) -> None:
        """A socket call returned ``errno`` at once; connect()'s are counted (EADDRNOTAVAIL: no port left)."""
        if call == "connect":
            c = self.connect
            c[errno] = c.get(errno, 0) + 1

    def tw_made(self, substate: int) -> None:
        """A TIME_WAIT (or FIN_WAIT_2) record replaced its connection; the count is unchanged."""
        self.tw[TW_CREATED] += 1
        if substate == TIME_WAIT:
            n = self.states[TIME_WAIT]
            if n > self.peak[TIME_WAIT]:
                self.peak[TIME_WAIT] = n
                self.peak_at[TIME_WAIT] = self.host.sched.now

    def tw_skipped(self, substate: int, overflow: bool) -> None:
        """No record: the connection goes to CLOSED (TW-8 overflow, or the lesson knob)."""
        self.states[substate] -= 1
        if overflow:
            self.tw[TW_OVERFLOWED] += 1

    def tw_substate(self, old: int, new: int) -> None:
        """A FIN_WAIT_2 record got its FIN and is a TIME_WAIT record now (TW-F6)."""
        self.states[old] -= 1
        self._up(new)

    def tw_gone(self, substate: int, why: str) -> None:
        """A record was removed (DeathRow.kill) through the table's event ``why``: expired,
        killed (RST, a SYN or data on a FIN_WAIT_2 record, the lesson knob) or reused."""
        self.states[substate] -= 1
        self.tw[_GONE.get(why, TW_KILLED)] += 1


class Telemetry:
    """The sampler of one simulation: every host's counts on a uniform simulated-time grid.

    :meth:`timewait.sim.simulation.Simulation.run` calls :meth:`sample` at each
    grid instant (``next_at``) after the events of that instant have run.
    """

    def __init__(self, sched: Scheduler, step_s: float | None = None, target: int = TARGET_POINTS) -> None:
        self.sched = sched
        self.target = max(2, target)
        self.fixed = step_s is not None
        self.step = max(1, int(round(step_s * 1_000_000))) if step_s is not None else 0
        self.next_at = 0
        self.times: array[int] = array("q")
        self.hosts: dict[str, Host] = {}
        self.values: dict[str, dict[str, array[int]]] = {}
        # Per host, the arrays of the series every host has, in _FIXED order (a sample appends
        # a list of ints to them without building names); and the names of dynamic series.
        self._fixed: dict[str, list[array[int]]] = {}
        self._names: dict[object, str] = {}

    def add_host(self, host: Host) -> None:
        k = len(self.times)
        store = self.values[host.name] = {n: array("q", bytes(8 * k)) for n in _FIXED}
        self.hosts[host.name] = host
        self._fixed[host.name] = [store[n] for n in _FIXED]

    def plan(self, end_us: int) -> None:
        """Choose the step from the run's planned end (1, 2 or 5 x 10^k µs), unless set already."""
        if self.step:
            return
        raw = max(1, -(-end_us // self.target))
        decade = 1
        while decade * 10 <= raw:
            decade *= 10
        step = next(decade * m for m in (1, 2, 5, 10) if decade * m >= raw)
        self.step = step

    def sample(self, t: int) -> None:
        """Record every host's counts at grid instant ``t`` (µs) and move to the next instant."""
        if not self.step:
            self.plan(max(t, 1_000_000))
        k = len(self.times)
        self.times.append(t)
        for name, host in self.hosts.items():
            tel = host.tel
            n = len(host.ports.buckets)
            if n > tel.peak[PORTS]:
                # A port only bound (a listener) is not seen at socket creation: caught here,
                # at the grid instant.
                tel.peak[PORTS] = n
                tel.peak_at[PORTS] = t
            st = tel.states
            vals = [st[s] for s in _COUNTED]
            vals += (len(host.listeners), n, host.in_segs, host.out_segs)
            vals += tel.tw
            for arr, v in zip(self._fixed[name], vals, strict=True):
                arr.append(v)
            store = self.values[name]
            names = self._names
            # connect() outcomes and nstat counters: dicts that only gain keys.
            for group, prefix in ((tel.connect, "connect."), (host.nstat(), "nstat.")):
                for key, v in group.items():
                    sname = names.get((prefix, key))
                    if sname is None:
                        sname = names[(prefix, key)] = prefix + key
                    got = store.get(sname)
                    if got is None:
                        got = store[sname] = array("q", bytes(8 * k))
                    got.append(v)
            # Ports in use per destination (saddr, daddr, dport): the port search's supply is
            # per destination. Destinations come and go: absent ones get 0.
            dests: dict[str, int] = {}
            for i, (dk, use) in enumerate(host.ports.dest_use.items()):
                if i >= 64:  # a host talking to many destinations: ports_in_use still counts all
                    break
                sname = names.get(dk)
                if sname is None:
                    sname = names[dk] = f"ports_to.{ip_ntoa(dk[1])}:{dk[2]}"
                dests[sname] = use.count[0] + use.count[1]
            for sname in dests.keys() - store.keys():
                store[sname] = array("q", bytes(8 * k))
            for sname, arr in store.items():
                if sname.startswith("ports_to."):
                    arr.append(dests.get(sname, 0))
        self.next_at = t + self.step
        if len(self.times) >= (MAX_POINTS if self.fixed else 2 * self.target):
            self._halve()

    def _halve(self) -> None:
        """Keep every other sample (those on the doubled grid) and double the step."""
        self.times[:] = self.times[::2]
        for store in self.values.values():
            for arr in store.values():
                arr[:] = arr[::2]  # in place: self._fixed holds the same arrays
        self.step *= 2
        self.next_at = self.times[-1] + self.step

    def freeze(self, label: str, end_us: int) -> SeriesRun:
        """The plain-data copy a :class:`~timewait.result.RunResult` carries (series that stay 0 left out)."""
        maxima: dict[str, dict[str, tuple[int, int]]] = {}
        values: dict[str, dict[str, array[int]]] = {}
        changed: dict[str, dict[str, str]] = {}
        for name, host in self.hosts.items():
            tel = host.tel
            peaks = {NAMES[s]: (tel.peak[s], tel.peak_at[s]) for s in _COUNTED if tel.peak[s]}
            if tel.peak[PORTS]:
                peaks["ports_in_use"] = (tel.peak[PORTS], tel.peak_at[PORTS])
            maxima[name] = peaks
            values[name] = {k: a for k, a in sorted(self.values[name].items()) if any(a)}
            changed[name] = _sysctls_changed(host)
        return SeriesRun(label=label, step_us=self.step, times_us=array("q", self.times), values=values,
                         maxima=maxima, end_us=end_us, sysctls_changed=changed)


def _sysctls_changed(host: Host) -> dict[str, str]:
    """The host's sysctls that differ from its profile's (overrides, scenario defaults, mem=)."""
    from timewait.sim.sysctl import format_value

    prof = host.profile.sysctls
    missing = object()
    return {k: str(format_value(v)) for k, v in sorted(host.sysctls.items()) if prof.get(k, missing) != v}


def census(host: Host, limit: int = 0) -> list[CensusRow]:
    """Every socket of ``host`` now, as ``ss -tan -o`` would list them, sorted by local then peer;
    with ``limit`` > 0 only the first ``limit`` found in the host's tables (connections, then
    TIME_WAIT records oldest first, then listeners), sorted the same way: O(limit), not O(sockets).

    Connections carry their send and receive queues from the TCB (``len(sndq)``,
    ``len(rcvq)``: what ``ss`` prints) and the timer ``ss`` shows (not the delayed ACK);
    TIME_WAIT and FIN_WAIT_2 records the ``timewait`` timer; listeners their
    backlog as Send-Q and their accept queue as Recv-Q.
    """
    name = host.name
    rows: list[CensusRow] = []
    for key, conn in host.ehash.items():
        if conn.state == CLOSED:
            continue
        if limit and len(rows) >= limit:
            break
        shown = conn.ss_timer()  # ss never lists the delayed-ACK timer
        timer, at = shown if shown is not None else (None, None)
        rows.append((name, key, NAMES[conn.state], None, len(conn.sndq), len(conn.rcvq), timer, at,
                     conn.retrans if timer == "rto" else 0))
    for key, tw in host.twhash.items():
        if limit and len(rows) >= limit:
            break
        st = "TIME_WAIT" if tw.substate == TIME_WAIT else "FIN_WAIT_2"
        since = tw.entry_stamp if tw.substate == TIME_WAIT else None
        rows.append((name, key, st, since, 0, 0, "timewait", tw.deadline, 0))
    for (addr, port), sock in host.listeners.items():
        if limit and len(rows) >= limit:
            break
        rows.append((name, (addr, port, 0, 0), "LISTEN", None, sock.backlog, len(sock.accept_queue), None,
                     None, 0))
    rows.sort(key=lambda r: r[1])
    return rows


def state_counts(host: Host) -> dict[str, int]:
    """How many sockets ``host`` has in each state now (LISTEN included; none left out), O(states)."""
    per = {NAMES[s]: host.tel.states[s] for s in _COUNTED if host.tel.states[s]}
    if host.listeners:
        per["LISTEN"] = len(host.listeners)
    return per


def census_all(hosts: dict[str, Host]) -> dict[str, list[CensusRow]]:
    """:func:`census` of every host, in topology order."""
    return {n: census(h) for n, h in hosts.items()}


__all__ = ["HostTelemetry", "Telemetry", "census", "census_all", "state_counts"]
