"""What a scenario run returns: the JSON contract plus the trace views read."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from timewait.trace import Trace

#: One socket of a census: ``(host, key, state, since_us, send_q, recv_q, timer, deadline_us,
#: retrans)``, the fields of :class:`timewait.report.sockets.Socket` in order (``since_us`` is
#: None where the engine does not keep it: connections and FIN_WAIT_2 records).
CensusRow = tuple[str, tuple[int, int, int, int], str, "int | None", int, int, "str | None", "int | None", int]


class Snapshot(NamedTuple):
    """One host's sockets at a snapshot instant: the first ``rows`` in ss order and the exact
    number in each state (``{"TIME_WAIT": 28232, ...}``; LISTEN included)."""

    rows: list[CensusRow]
    per_state: dict[str, int]


@dataclass(slots=True)
class Check:
    """One fact a scenario exists to show, and whether the run showed it."""

    name: str
    passed: bool
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


class Findings:
    """What a run records for its result: checks, metrics, sampled series and notes.

    The simulator's :class:`timewait.scenarios.Lab` and the kernel's
    :class:`timewait.kernel.scenarios.KLab` both record through it.
    """

    def __init__(self) -> None:
        self.checks: list[Check] = []
        self.metrics: dict[str, Any] = {}
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.notes: list[str] = []

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        """Record one fact and whether it held; returns it."""
        self.checks.append(Check(name, bool(passed), detail))
        return bool(passed)

    def say(self, text: str) -> None:
        """A sentence for the reader: what changed and why."""
        self.notes.append(text)

    def sample(self, name: str, t: float, value: float) -> None:
        """One point ``(t, value)`` of the series ``name``."""
        self.series.setdefault(name, []).append((t, value))


@dataclass(slots=True)
class NodeInfo:
    """A node of the topology as views need it: its kind and addresses."""

    name: str
    kind: str  # "host", "router" or "nat"
    addrs: list[int] = field(default_factory=list)


@dataclass(slots=True)
class SeriesRun:
    """One simulation's telemetry: every host's counts on a uniform simulated-time grid.

    ``times_us`` are the grid instants (multiples of ``step_us``, from 0); a value
    is the count just after every event of that instant. ``values[host][name]``
    holds one int per instant; series that stay 0 are left out (:meth:`get`
    gives zeros for them). The names:

    - a state name (``TIME_WAIT``, ``ESTABLISHED``, ``FIN_WAIT_2``, …, and ``LISTEN``):
      sockets in that state (TIME_WAIT and FIN_WAIT_2 records included);
    - ``ports_in_use``: local ports with a socket or record on them; ``ports_to.ADDR:PORT``:
      ports auto-selected toward that destination (the port search's supply);
    - ``connect.ok`` and ``connect.ERRNO`` (e.g. ``connect.EADDRNOTAVAIL``): connect()
      outcomes so far, cumulative;
    - ``tw.created`` / ``tw.expired`` / ``tw.killed`` / ``tw.reused`` / ``tw.overflowed``:
      TIME_WAIT records so far, cumulative (reused: taken over by connect() or by a new SYN;
      overflowed: not made, ``tcp_max_tw_buckets`` was reached);
    - ``nstat.NAME``: every nstat counter, cumulative.

    ``maxima[host][name] = (value, at_us)``: the highest count of a state or of
    ``ports_in_use`` and the first instant it was reached, exact (not from the grid).
    ``sysctls_changed[host]``: the sysctls that differ from the profile's.
    """

    label: str
    step_us: int
    times_us: array
    values: dict[str, dict[str, array]]
    maxima: dict[str, dict[str, tuple[int, int]]]
    end_us: int
    sysctls_changed: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def hosts(self) -> list[str]:
        return list(self.values)

    def times(self) -> list[float]:
        """The grid instants in seconds."""
        return [t / 1e6 for t in self.times_us]

    def get(self, host: str, name: str) -> list[int]:
        """One series (zeros when it never moved or the host is unknown)."""
        arr = self.values.get(host, {}).get(name)
        return list(arr) if arr is not None else [0] * len(self.times_us)

    def names(self, host: str, prefix: str = "") -> list[str]:
        """The series of ``host`` that moved, optionally only those starting with ``prefix``."""
        return [n for n in self.values.get(host, {}) if n.startswith(prefix)]

    def maximum(self, host: str, name: str) -> tuple[int, float] | None:
        """``(highest count, first instant in seconds)`` of a state or ``ports_in_use``."""
        m = self.maxima.get(host, {}).get(name)
        return (m[0], m[1] / 1e6) if m is not None else None

    def rate(self, host: str, name: str, window_s: float = 1.0) -> list[float]:
        """A cumulative series as a rate per second at each grid instant, over the trailing
        ``window_s`` (rounded up to whole steps; at least one): what a per-second counter
        would read, without the aliasing of a rate of a few per second over short steps."""
        vals = self.get(host, name)
        if not self.step_us:
            return []  # no grid: the simulation never ran
        k = max(1, -(-int(window_s * 1e6) // self.step_us))
        span = k * self.step_us / 1e6
        return [(v - (vals[i - k] if i >= k else 0)) / span for i, v in enumerate(vals)]

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "step": self.step_us / 1e6,
            "times": [round(t / 1e6, 6) for t in self.times_us],
            "hosts": {h: {n: list(a) for n, a in vs.items()} for h, vs in self.values.items()},
            "maxima": {h: {n: {"value": v, "at": round(at / 1e6, 6)} for n, (v, at) in ms.items()}
                       for h, ms in self.maxima.items()},
            "sysctls_changed": self.sysctls_changed,
        }


@dataclass(slots=True)
class RunResult:
    """The outcome of one scenario run.

    ``hosts`` is the end-of-run snapshot of the JSON contract
    (``{name: {"states": …, "counters": …, "sysctls": …}}``); ``series`` holds
    time series sampled during the run (``{name: [(t_seconds, value), …]}``),
    which stay available when the full trace is switched off.

    ``telemetry`` is the engine's own record of the run, independent of the
    trace and exact at any size: one :class:`SeriesRun` per simulation the
    scenario ran (most run one, labelled ``main``; max-rate runs ``under`` and
    ``over``). ``census`` maps an instant (µs) to every host's sockets at that
    instant (``{host: [CensusRow, …]}``), taken while the run was there: the
    instants asked for with ``run_scenario(census_at=…)`` (``--ss T``); ``snapshots``
    the capped ones taken on the telemetry grid for the HTML report
    (``run_scenario(snapshot_rows=…)``, :class:`Snapshot`).
    ``to_json()`` carries the telemetry as ``series``.
    """

    scenario: str
    profile: str
    seed: int
    params: dict[str, Any]
    sim_time: float
    checks: list[Check]
    metrics: dict[str, Any]
    hosts: dict[str, dict[str, Any]]
    trace: Trace
    nodes: dict[str, NodeInfo]
    story: str = ""
    contrast: str = ""
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    sysctl_overrides: list[str] = field(default_factory=list)
    telemetry: list[SeriesRun] = field(default_factory=list)
    census: dict[int, dict[str, list[CensusRow]]] = field(default_factory=dict)
    snapshots: dict[int, dict[str, Snapshot]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """The document ``timewait run SCENARIO --json`` prints (``series`` only where there is
        telemetry: not for kernel runs)."""
        doc = {
            "scenario": self.scenario,
            "profile": self.profile,
            "seed": self.seed,
            "params": self.params,
            "sim_time": self.sim_time,
            "checks": [c.to_json() for c in self.checks],
            "metrics": self.metrics,
            "hosts": self.hosts,
        }
        if self.telemetry:
            doc["series"] = {"runs": [r.to_json() for r in self.telemetry]}
        return doc
