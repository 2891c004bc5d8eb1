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

from timewait.bounds import Bounds
from timewait.errors import UsageError
from timewait.result import Findings, NodeInfo, RunResult
from timewait.sim.budget import Budget, Scale
from timewait.sim.host import Host
from timewait.sim.simulation import Simulation
from timewait.sim.sysctl import parse_mem
from timewait.tcp.config import SEC
from timewait.tcp.segment import ULA_PREFIX, ula_of
from timewait.trace import CUT_PREFIX, NOTE, TraceSelect


@dataclass(frozen=True, slots=True)
class Param:
    """A scenario parameter: default, type, allowed range and one line of help.

    A number is allowed in ``[lo, hi]`` (``lo_open``/``hi_open`` make a bound exclusive;
    None = unbounded) and must be finite; ``lo`` left undeclared means 0, as a count or a
    time. ``check(name, text)`` validates a string kind (a port range, a size). Every
    violation is one :class:`UsageError` naming the value and the allowed range.
    """

    default: Any
    doc: str
    kind: type = int
    choices: tuple[Any, ...] | None = None
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    check: Callable[[str, str], object] | None = None  # (label, value); raises UsageError

    @property
    def bounds(self) -> Bounds:
        return Bounds(0 if self.lo is None else self.lo, self.hi, self.lo_open, self.hi_open,
                      integer=self.kind is int)

    def allowed(self, name: str) -> str:
        """The allowed values in words (for ``--help``-like listings and errors)."""
        if self.choices is not None:
            return ", ".join(map(str, self.choices))
        if self.kind is bool:
            return "on or off"
        if self.kind in (int, float):
            return self.bounds.describe(name)
        return self.kind.__name__

    def parse(self, name: str, text: Any) -> Any:
        label = f"--set {name}={text!r}"
        if not isinstance(text, str):
            value = text
            if self.kind is bool and not isinstance(value, bool):
                raise UsageError(f"{label}: expected on or off")
        elif self.kind is bool:
            t = text.lower()
            if t not in ("on", "off", "1", "0", "true", "false", "yes", "no"):
                raise UsageError(f"{label}: expected on or off")
            value = t in ("on", "1", "true", "yes")
        else:
            try:
                value = self.kind(text)
            except ValueError:
                raise UsageError(f"{label}: expected {self.kind.__name__}; allowed {self.allowed(name)}") from None
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"{label}: allowed {', '.join(map(str, self.choices))}")
        if self.kind in (int, float):
            self.bounds.check(label, value, name)
        if self.check is not None:
            self.check(f"--set {name}", value)
        return value


def _mem(name: str, text: str) -> None:
    parse_mem(text)


COMMON_PARAMS: dict[str, Param] = {
    "msl": Param(None, "the network's maximum segment lifetime in seconds (TIME_WAIT = 2 x MSL in "
                 "textbook profiles; Linux's 60 s does not follow it)", float, lo=0, lo_open=True),
    "timewait": Param(True, "lesson knob: off = the active closer skips TIME_WAIT entirely", bool),
    "mem": Param(None, "memory of every host (e.g. 2G): derives tcp_max_tw_buckets as Linux does", str,
                 check=_mem),
    "family": Param("ipv4", "address family of the run: ipv6 puts the chapter's addresses under the ULA "
                    f"prefix {ULA_PREFIX} (10.211.55.5 -> {ula_of('10.211.55.5')})", str,
                    choices=("ipv4", "ipv6")),
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
    # What a run with these parameters is expected to do, for its budget and estimate;
    # None: :func:`default_scale`.
    scale: Callable[[dict[str, Any]], Scale] | None = None
    # Why ``--set family=ipv6`` is refused ("": the scenario has an IPv6 version).
    no_ipv6: str = ""


REGISTRY: dict[str, Scenario] = {}


def scenario(name: str, summary: str, *, params: dict[str, Param] | None = None, story: str = "",
             contrast: str = "", mission: str = "", profile: str = "linux",
             scale: Callable[[dict[str, Any]], Scale] | None = None, no_ipv6: str = "",
             ) -> Callable[[Callable[[Lab], None]], Callable[[Lab], None]]:
    """Register a scenario function under ``name``; ``scale(params)`` says how big a run is
    expected to be (connections, simulated seconds), from which its budget is derived.
    ``no_ipv6`` is why the chapter's point does not hold the same on IPv6 (then
    ``--set family=ipv6`` is refused); empty, the scenario has an IPv6 version."""

    def deco(fn: Callable[[Lab], None]) -> Callable[[Lab], None]:
        REGISTRY[name] = Scenario(name, summary, fn, params or {}, story.strip(), contrast.strip(), mission,
                                  profile, scale, no_ipv6)
        return fn

    return deco


class Lab(Findings):
    """What a scenario function works with: parameters, the simulation, checks, metrics."""

    def __init__(self, sc: Scenario, params: dict[str, Any], sysctls: list[str], profile: str, seed: int,
                 trace: bool, progress: bool, *, sample_every_s: float | None = None,
                 census_at_s: list[float] | None = None, snapshot_rows: int = 0) -> None:
        super().__init__()
        self.scenario = sc
        self.p = params
        self.profile = profile
        self.seed = seed
        self.progress = progress
        self.sample_every_s = sample_every_s
        self.sim = Simulation(profile=profile, seed=seed, trace=trace, sysctls=sysctls, msl_s=params.get("msl"),
                              sample_every_s=sample_every_s, census_at_s=census_at_s,
                              snapshot_rows=snapshot_rows)
        # Every simulation the scenario runs, labelled, for the telemetry (max-rate runs two).
        self.runs: list[tuple[str, Simulation]] = [("main", self.sim)]
        self.sim.timewait_enabled = params.get("timewait", True)
        if params.get("mem"):
            self.sim.mem = parse_mem(params["mem"])

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

    @property
    def ipv6(self) -> bool:
        """Whether this run is an IPv6 one (``--set family=ipv6``)."""
        return self.p.get("family") == "ipv6"

    def addr(self, v4: str) -> str:
        """The text of one of the chapter's addresses for this run's family: ``v4`` itself,
        or its ULA twin in an IPv6 run (:func:`~timewait.tcp.segment.ula_of`). Scenarios
        name every address they create, connect to and judge with through this."""
        return family_addr(self.p, v4)

    def prefix(self, v4net: str) -> str:
        """An IPv4 prefix such as ``192.168.1.0/24`` for this run's family (:func:`family_prefix`)."""
        return family_prefix(self.p, v4net)

    def two_hosts(self, a: str, a_addr: str, b: str, b_addr: str, *, delay_ms: float,
                  uptime_s: tuple[float | None, float | None] = (None, None)) -> tuple[Host, Host]:
        """Hosts ``a`` and ``b`` of the main simulation on one link, ``delay_ms`` each way
        (the kernel twin's :meth:`timewait.kernel.scenarios.KLab.two_hosts`)."""
        ha = self.sim.add_host(a, a_addr, uptime_s=uptime_s[0])
        hb = self.sim.add_host(b, b_addr, uptime_s=uptime_s[1])
        self.sim.link(ha, hb, delay_ms=delay_ms)
        return ha, hb

    def need_trace(self) -> None:
        """Record the full trace even when the caller asked for none or for a selection
        (small scenarios whose checks measure their facts from every connection of it).

        A check must not pass or fail on connections a ``--trace-select`` left out, so the
        selection is lifted, and the run says so."""
        tr = self.sim.trace
        tr.on = True
        if tr.select is not None:
            if not tr.select.reason:  # the user's choice, not a default: say why it is not applied
                self.say(f"--trace-select {tr.select.text} was not applied: {self.scenario.name}'s checks read "
                         "every connection of the trace, so it records them all.")
            tr.select = None

    def default_sysctl(self, host: str, name: str, value: str) -> None:
        """A sysctl this scenario sets on ``host`` unless the user's ``--sysctl`` says otherwise.

        Call before the host is added.
        """
        self.sim.overrides.insert(0, (host, name, value))
        self.sim._used_overrides = {i + 1 for i in self.sim._used_overrides} | {0}

    def run(self, until_s: float, sim: Simulation | None = None, label: str | None = None) -> None:
        """Run ``sim`` (default: the main simulation) to ``until_s``, with a progress bar on a
        terminal (simulated time, events/s, ETA; :mod:`timewait.progress`).

        A full trace stops growing at :data:`TRACE_LIMIT` records (the run goes on
        with counters only, and the trace says where it stopped), so a view of a
        big run shows its beginning instead of exhausting memory.
        """
        sim = self.sim if sim is None else sim
        sim.telemetry.plan(int(until_s * SEC))  # the grid from the whole run, not from its first step
        if not self.progress and not sim.trace.on:
            sim.run(until_s)
            return
        from timewait.progress import RunProgress

        name = self.scenario.name + (f" ({label})" if label else "")
        sched = sim.sched
        with RunProgress(name, until_s, show=self.progress, events=lambda: sched.events) as bar:
            step = max((until_s - sim.now) / 200, 0.05)  # stretches: the same events as one run
            t = sim.now
            while t < until_s:
                t = min(t + step, until_s)
                sim.run(t)
                tr = sim.trace
                if tr.on and len(tr.records) > TRACE_LIMIT:
                    sim.note("-", f"{CUT_PREFIX} {TRACE_LIMIT} records, t = {sim.now:.3f} s")
                    tr.on = False
                bar.update(t)


TRACE_LIMIT = 1_000_000
# --trace-select's default: a run expected to open more connections than this (its declared
# scale) records the first TRACE_FIRST of them, and those a fault rule touches.
TRACE_ALL_UP_TO = 1_000
TRACE_FIRST = 200


def family_addr(p: dict[str, Any], v4: str) -> str:
    """:meth:`Lab.addr` from a run's parameters ``p`` alone (judges shared with the kernel
    twin, whose parameters may have no ``family``: IPv4)."""
    return ula_of(v4) if p.get("family") == "ipv6" else v4


def family_prefix(p: dict[str, Any], v4net: str) -> str:
    """An IPv4 prefix for the run's family: in an IPv6 run the ULA prefix holding
    :func:`family_addr` of every address in it (each dotted part is a 16-bit group, so
    ``192.168.1.0/24`` becomes ``fd00::192:168:1:0/112``)."""
    if p.get("family") != "ipv6":
        return v4net
    net, _, bits = v4net.partition("/")
    n = int(bits or 32)
    if n % 8:
        raise ValueError(f"{v4net}: only a prefix of whole dotted parts has an IPv6 twin")
    return f"{ula_of(net)}/{128 - 16 * (4 - n // 8)}"


def trace_selection(sc: Scenario, p: dict[str, Any], text: str | None) -> TraceSelect | None:
    """The run's selection (None: every connection): ``text`` is ``--trace-select``'s
    value (a bad one is a :class:`UsageError`), None the default from the scenario's scale."""
    if text is not None:
        try:
            sel = TraceSelect(text)
        except ValueError as e:
            raise UsageError(str(e)) from None
        return None if sel.whole else sel
    try:
        n = (sc.scale(p) if sc.scale is not None else default_scale(p)).connections
    except (ArithmeticError, ValueError, TypeError, KeyError):
        n = 0
    if n <= TRACE_ALL_UP_TO:
        return None
    return TraceSelect(f"first:{TRACE_FIRST}", reason=f"default for about {n:,.0f} connections; "
                       "--trace-select all for every one")


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
    if out.get("family") == "ipv6" and sc.no_ipv6:
        raise UsageError(f"--set family=ipv6: {sc.name} has no IPv6 version: {sc.no_ipv6}")
    return out


def default_scale(p: dict[str, Any]) -> Scale:
    """The scale of a scenario that declares none: its ``connections`` (or ``clients``)
    parameter; its length is bounded by the end times it runs to."""
    n = p.get("connections", p.get("clients", 0))
    return Scale(connections=n if isinstance(n, int | float) else 0)


def run_budget(sc: Scenario, p: dict[str, Any], override: str | None = None) -> Budget:
    """The budget of a run of ``sc`` with parameters ``p``: from its declared scale, or the
    generic default; ``override`` is ``--budget``'s text."""
    try:
        scale = sc.scale(p) if sc.scale is not None else default_scale(p)
    except (ArithmeticError, ValueError, TypeError, KeyError):
        scale = default_scale(p)  # parameters the scenario itself will refuse, or a runaway
    b = Budget.for_scale(scale, label=sc.name)
    return b.override(override) if override is not None else b


def run_scenario(name: str, *, params: dict[str, Any] | None = None, sysctls: list[str] | None = None,
                 profile: str | None = None, seed: int = 1, trace: bool = True, progress: bool = False,
                 faults: list[str] | None = None, budget: str | None = None,
                 announce: Callable[[str], None] | None = None, sample_every_s: float | None = None,
                 census_at: list[float] | None = None, census_end: bool = False,
                 trace_select: str | None = None, snapshot_rows: int = 0) -> RunResult:
    """Run one scenario and return its :class:`~timewait.result.RunResult`.

    ``profile`` None means the scenario's own default (``linux`` for most). The run is
    bounded by its budget (:func:`run_budget`; ``budget`` is ``--budget``'s override text):
    past it, :class:`~timewait.errors.BudgetExceeded`. ``announce`` receives the one-line
    estimate of a big run before it starts. ``sample_every_s`` sets the telemetry's grid
    step (default: about 1,000 points over the run); ``census_at`` lists instants (seconds)
    at which every host's sockets are listed while the run is there, and ``census_end`` adds
    one at the end (``RunResult.census``). ``trace_select`` is ``--trace-select``'s text
    (:class:`~timewait.trace.TraceSelect`; None: the default from the scenario's scale).
    ``snapshot_rows`` > 0 has the engine list every host's first ``snapshot_rows`` sockets and
    its exact count per state at every tenth telemetry sample (``RunResult.snapshots``, what
    the HTML report's socket table shows where the trace does not hold every socket).
    """
    sc = get_scenario(name)
    profile = sc.profile if profile is None else profile  # '' is a wrong name, not "the default"
    p = parse_params(sc, params)
    if sample_every_s is not None and not 0 < sample_every_s < float("inf"):
        raise UsageError(f"--sample-every {sample_every_s:g}: must be a finite number of seconds > 0")
    selection = trace_selection(sc, p, trace_select)  # a bad one is refused before the run
    bud = run_budget(sc, p, budget)
    estimate = bud.estimate()
    if announce is not None and estimate is not None:
        announce(f"{name}: {estimate} estimated (budget: {bud.describe()}; --budget to change)")
    with bud.active():
        lab = Lab(sc, p, list(sysctls or []), profile, seed, trace, progress, sample_every_s=sample_every_s,
                  census_at_s=census_at, snapshot_rows=snapshot_rows)
        lab.sim.trace.select = selection
        for f in faults or []:
            lab.sim.user_faults.append(lab.sim.fault(f))
        sc.fn(lab)
    sim = lab.sim
    tr = sim.trace
    if tr.select is not None and (tr.on or tr.records):  # said on every view (trace.cut_notice)
        tr.records.append((sim.sched.now, NOTE, "-", tr.select.describe()))
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
        snapshots=dict(sim.snapshots),
    )


def all_scenarios() -> dict[str, Scenario]:
    _load_all()
    return dict(sorted(REGISTRY.items()))
