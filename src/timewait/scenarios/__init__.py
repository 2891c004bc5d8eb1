"""Ready scenarios: the chapter's experiments, each with its mechanism on and off.

A scenario is a function ``run(lab) -> None`` registered with :func:`scenario`;
it builds a :class:`~timewait.sim.simulation.Simulation` through the
:class:`Lab` it is given, runs it, and records checks and metrics. Parameters
come from ``--set KEY=VALUE``; a few keys mean the same in every scenario
(:data:`COMMON_PARAMS`).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from timewait.errors import UsageError
from timewait.result import Check, NodeInfo, RunResult
from timewait.sim.simulation import Simulation
from timewait.sim.sysctl import parse_mem
from timewait.tcp.config import SEC


@dataclass(frozen=True, slots=True)
class Param:
    """A scenario parameter: default, type and one line of help."""

    default: Any
    doc: str
    kind: type = int
    choices: tuple[Any, ...] | None = None

    def parse(self, name: str, text: Any) -> Any:
        if not isinstance(text, str):
            value = text
        elif self.kind is bool:
            t = text.lower()
            if t not in ("on", "off", "1", "0", "true", "false", "yes", "no"):
                raise UsageError(f"--set {name}={text!r}: expected on or off")
            value = t in ("on", "1", "true", "yes")
        else:
            try:
                value = self.kind(text)
            except ValueError:
                raise UsageError(f"--set {name}={text!r}: expected {self.kind.__name__} ({self.doc})") from None
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"--set {name}={text!r}: allowed {', '.join(map(str, self.choices))}")
        if self.kind in (int, float) and value < 0:
            raise UsageError(f"--set {name}={text!r}: must not be negative")
        return value


COMMON_PARAMS: dict[str, Param] = {
    "msl": Param(None, "the network's maximum segment lifetime in seconds (TIME_WAIT = 2 x MSL in "
                 "textbook profiles; Linux's 60 s does not follow it)", float),
    "timewait": Param(True, "lesson knob: off = the active closer skips TIME_WAIT entirely", bool),
    "mem": Param(None, "memory of every host (e.g. 2G): derives tcp_max_tw_buckets as Linux does", str),
}


@dataclass
class Scenario:
    name: str
    summary: str
    fn: Callable[[Lab], None]
    params: dict[str, Param] = field(default_factory=dict)
    story: str = ""
    contrast: str = ""
    mission: str = ""
    profile: str = "linux"  # the profile used when the caller names none


REGISTRY: dict[str, Scenario] = {}


def scenario(name: str, summary: str, *, params: dict[str, Param] | None = None, story: str = "",
             contrast: str = "", mission: str = "", profile: str = "linux",
             ) -> Callable[[Callable[[Lab], None]], Callable[[Lab], None]]:
    """Register a scenario function under ``name``."""

    def deco(fn: Callable[[Lab], None]) -> Callable[[Lab], None]:
        REGISTRY[name] = Scenario(name, summary, fn, params or {}, story.strip(), contrast.strip(), mission, profile)
        return fn

    return deco


class Lab:
    """What a scenario function works with: parameters, the simulation, checks, metrics."""

    def __init__(self, sc: Scenario, params: dict[str, Any], sysctls: list[str], profile: str, seed: int,
                 trace: bool, progress: bool, *, sample_every_s: float | None = None,
                 census_at_s: list[float] | None = None) -> None:
        self.scenario = sc
        self.p = params
        self.profile = profile
        self.seed = seed
        self.progress = progress
        self.sample_every_s = sample_every_s
        self.sim = Simulation(profile=profile, seed=seed, trace=trace, sysctls=sysctls, msl_s=params.get("msl"),
                              sample_every_s=sample_every_s, census_at_s=census_at_s)
        # Every simulation the scenario runs, labelled, for the telemetry (max-rate runs two).
        self.runs: list[tuple[str, Simulation]] = [("main", self.sim)]
        self.sim.timewait_enabled = params.get("timewait", True)
        if params.get("mem"):
            self.sim.mem = parse_mem(params["mem"])
        self.checks: list[Check] = []
        self.metrics: dict[str, Any] = {}
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.notes: list[str] = []

    def add_run(self, label: str, sim: Simulation | None = None, **kw: Any) -> Simulation:
        """Another simulation of this scenario, whose telemetry the result carries as ``label``.

        ``sim`` None makes one (``kw`` go to :class:`Simulation`) sampled as the main one.
        Labelling the main simulation itself renames it.
        """
        if sim is self.sim:
            self.runs[0] = (label, sim)
            return sim
        if sim is None:
            sim = Simulation(sample_every_s=self.sample_every_s, **kw)
        self.runs.append((label, sim))
        return sim

    def need_trace(self) -> None:
        """Record the full trace even when the caller asked for none (small scenarios that
        measure their facts from it)."""
        self.sim.trace.on = True

    def default_sysctl(self, host: str, name: str, value: str) -> None:
        """A sysctl this scenario sets on ``host`` unless the user's ``--sysctl`` says otherwise.

        Call before the host is added.
        """
        self.sim.overrides.insert(0, (host, name, value))
        self.sim._used_overrides = {i + 1 for i in self.sim._used_overrides} | {0}

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, bool(passed), detail))
        return bool(passed)

    def say(self, text: str) -> None:
        """A sentence for the reader: what changed and why."""
        self.notes.append(text)

    def sample(self, name: str, t: float, value: float) -> None:
        self.series.setdefault(name, []).append((t, value))

    def run(self, until_s: float) -> None:
        """Run the simulation, with a progress bar on a terminal for long runs.

        A full trace stops growing at :data:`TRACE_LIMIT` records (the run goes on
        with counters only, and the trace says where it stopped), so a view of a
        big run shows its beginning instead of exhausting memory.
        """
        sim = self.sim
        sim.telemetry.plan(int(until_s * SEC))  # the grid from the whole run, not from its first step
        if until_s < 30 and not sim.trace.on:
            sim.run(until_s)
            return
        bar = task = None
        if self.progress and until_s >= 30:
            from rich.console import Console
            from rich.progress import Progress

            bar = Progress(transient=True, console=Console(stderr=True))
            bar.start()
            task = bar.add_task(f"{self.scenario.name}: simulating", total=until_s)
        try:
            step = max(until_s / 100, 0.5)
            t = sim.now
            while t < until_s:
                t = min(t + step, until_s)
                sim.run(t)
                tr = sim.trace
                if tr.on and len(tr.records) > TRACE_LIMIT:
                    sim.note("-", f"trace stopped at {TRACE_LIMIT} records, t = {sim.now:.3f} s")
                    tr.on = False
                if bar is not None:
                    bar.update(task, completed=t)  # type: ignore[arg-type]
        finally:
            if bar is not None:
                bar.stop()


TRACE_LIMIT = 1_000_000


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def get_scenario(name: str) -> Scenario:
    _load_all()
    sc = REGISTRY.get(name)
    if sc is None:
        raise UsageError(f"unknown scenario {name!r}; allowed: {', '.join(sorted(REGISTRY))}")
    return sc


def parse_params(sc: Scenario, params: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid with ``params``; unknown keys name the allowed ones."""
    table = {**COMMON_PARAMS, **sc.params}
    out = {k: p.default for k, p in table.items()}
    for k, v in (params or {}).items():
        if k not in table:
            raise UsageError(f"unknown parameter {k!r} for {sc.name}; allowed: {', '.join(sorted(table))}")
        out[k] = table[k].parse(k, v)
    return out


def run_scenario(name: str, *, params: dict[str, Any] | None = None, sysctls: list[str] | None = None,
                 profile: str | None = None, seed: int = 1, trace: bool = True, progress: bool = False,
                 faults: list[str] | None = None, sample_every_s: float | None = None,
                 census_at: list[float] | None = None, census_end: bool = False) -> RunResult:
    """Run one scenario and return its :class:`~timewait.result.RunResult`.

    ``profile`` None means the scenario's own default (``linux`` for most).
    ``sample_every_s`` sets the telemetry's grid step (default: about 1,000
    points over the run); ``census_at`` lists instants (seconds) at which every
    host's sockets are listed while the run is there, and ``census_end`` adds
    one at the end (``RunResult.census``).
    """
    sc = get_scenario(name)
    profile = profile or sc.profile
    p = parse_params(sc, params)
    if sample_every_s is not None and sample_every_s <= 0:
        raise UsageError(f"--sample-every {sample_every_s:g}: must be > 0 seconds")
    lab = Lab(sc, p, list(sysctls or []), profile, seed, trace, progress, sample_every_s=sample_every_s,
              census_at_s=census_at)
    for f in faults or []:
        lab.sim.fault(f)
    sc.fn(lab)
    sim = lab.sim
    nodes = {n: NodeInfo(n, node.kind, list(node.addrs)) for n, node in sim.net.nodes.items()}
    census = dict(sim.census)
    if census_end:
        from timewait.sim.telemetry import census_all

        census[sim.sched.now] = census_all(sim.hosts)
    telemetry = [s.telemetry.freeze(label, s.sched.now) for label, s in lab.runs]
    public = {k: v for k, v in p.items() if k in sc.params or (v is not None and v != COMMON_PARAMS[k].default)}
    return RunResult(
        scenario=name, profile=profile, seed=seed, params=public, sim_time=sim.sched.now / SEC,
        checks=lab.checks, metrics=lab.metrics,
        hosts={n: h.snapshot() for n, h in sim.hosts.items()},
        trace=sim.trace, nodes=nodes, story=sc.story, contrast="\n".join(lab.notes) or sc.contrast,
        series=lab.series, sysctl_overrides=list(sysctls or []), telemetry=telemetry, census=census,
    )


def all_scenarios() -> dict[str, Scenario]:
    _load_all()
    return dict(sorted(REGISTRY.items()))
