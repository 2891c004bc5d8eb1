"""Parameter sweeps: one scenario over a grid of parameters, sysctls, profiles and seeds.

A sweep is described by a TOML file (``docs/sweep.md``)::

    scenario = "port-exhaustion"
    profile = ["linux"]
    seeds = [1, 2]
    metrics = ["succeeded", "first_failure_at"]
    [grid]
    "params.duration" = [10, 20]
    "sysctl.c1:net.ipv4.ip_local_port_range" = ["32768 60999", "1025 65535"]
    [output]
    csv = "out/sweep.csv"
    parquet = "out/sweep.parquet"
    plot = { x = "params.duration", y = "succeeded", file = "out/sweep.png" }

:func:`load_spec` validates all of it before anything runs; :func:`expand`
turns it into :class:`Point` s (profile x seed x grid, in that order);
:func:`run_sweep` runs the points that are not in the cache, on local
processes or on a Dask cluster, and :func:`write_outputs` writes the table
(CSV, Parquet) and the plot atomically.

Each point calls the *runner*, by default
``timewait.scenarios.run_scenario(scenario, params=..., sysctls=[...],
profile=..., seed=..., trace=False)``. The runner is named ``"module:function"``
so that worker processes and Dask workers import it themselves; tests pass
their own (any callable with that signature returning an object with
``to_json()`` or a dict of the same shape).
"""

from __future__ import annotations

import ast
import csv
import difflib
import hashlib
import importlib
import inspect
import io
import itertools
import json
import math
import os
import re
import socket
import sys
import tempfile
import time
import tomllib
import traceback
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timewait.errors import BudgetExceeded, UsageError

DEFAULT_RUNNER = "timewait.scenarios:run_scenario"
DEFAULT_CACHE = ".sweep-cache"
MAX_POINTS = 100_000
# A sysctl's host is checked by building the scenario's world for each distinct
# (profile, params) combination; past this many, the remaining combinations are
# left to the run itself (the engine refuses the point alone).
MAX_HOST_PROBES = 64
TOP_KEYS = ("scenario", "profile", "seeds", "metrics", "grid", "output", "trace")
OUTPUT_KEYS = ("csv", "parquet", "plot")
PLOT_KEYS = ("x", "y", "file")
SPECIAL_METRICS = ("checks_passed", "sim_time")
FIXED_COLUMNS = ("point", "scenario", "profile", "seed")
STATUS_COLUMNS = ("status", "error", "cached")

_PARAM_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_SYSCTL_RE = re.compile(r"([A-Za-z0-9_*-]+):([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)+)")
_SCHEDULER_RE = re.compile(r"(tcp|tls)://([^\s:/]+):(\d{1,5})")
# A wrong --scheduler is one line within 5 s of the command's start: the TCP
# connect gets DASK_CONNECT_S, and importing distributed (about 1.2 s), the Dask
# handshake and the wait for a first worker share DASK_BUDGET_S, the wait getting
# at least DASK_MIN_WAIT_S. Interpreter start and timewait's imports take the rest.
DASK_CONNECT_S = 1.5
DASK_BUDGET_S = 2.0
DASK_MIN_WAIT_S = 0.5
# During a sweep, a cluster left without workers this long fails its remaining points.
DASK_IDLE_S = 30.0

Runner = Callable[..., Any]


# ---------------------------------------------------------------- the spec


@dataclass(frozen=True, slots=True)
class PlotSpec:
    """Plot metric ``y`` against ``x`` (a grid key, ``seed`` or ``profile``) into ``file``."""

    x: str
    y: str
    file: Path


@dataclass(frozen=True, slots=True)
class SweepSpec:
    """A validated sweep; output paths are absolute (resolved against the spec's folder)."""

    path: Path
    scenario: str
    profiles: tuple[str, ...]
    seeds: tuple[int, ...]
    metrics: tuple[str, ...]
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    csv: Path
    parquet: Path
    plot: PlotSpec | None
    trace: bool = False
    parquet_asked: bool = False  # named in [output]; by default it is written only where pyarrow is

    @property
    def grid_keys(self) -> list[str]:
        return [k for k, _ in self.grid]

    @property
    def columns(self) -> list[str]:
        """The columns of the result table, in order."""
        return [*FIXED_COLUMNS, *self.grid_keys, *self.metrics, *STATUS_COLUMNS]

    @property
    def point_count(self) -> int:
        return len(self.profiles) * len(self.seeds) * math.prod(len(v) for _, v in self.grid)


def load_spec(
    path: str | Path,
    *,
    out_dir: str | Path | None = None,
    known_scenarios: Collection[str] | None = None,
    base: str | Path | None = None,
) -> SweepSpec:
    """Read and validate a sweep spec; any problem is one :class:`UsageError` line.

    ``out_dir`` replaces the folder of every output file (``--out``); ``base`` is the folder
    relative output names are resolved against (default: the spec's own).
    ``known_scenarios`` overrides the scenario registry (tests with a stub runner).
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"sweep spec {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"sweep spec {str(path)!r} cannot be read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path.name}: not valid TOML: {e}") from None
    where = path.name
    _only_keys(raw, TOP_KEYS, where)

    scenario = raw.get("scenario")
    if not isinstance(scenario, str) or not scenario:
        raise UsageError(f"{where}: 'scenario' must be a scenario name (a string)")
    scenarios = _registry_names() if known_scenarios is None else set(known_scenarios)
    if scenarios is not None and scenario not in scenarios:
        raise UsageError(f"{where}: unknown scenario {scenario!r}; known: {', '.join(sorted(scenarios))}")

    profiles = _str_list(raw.get("profile", ["linux"]), "profile", where)
    for p in profiles:
        _check_profile(p, where)
    seeds = _seed_list(raw.get("seeds", [1]), where)
    metrics = _str_list(raw.get("metrics"), "metrics", where, required=True)
    for m in metrics:
        if m in FIXED_COLUMNS or m in STATUS_COLUMNS:
            raise UsageError(f"{where}: metric {m!r} clashes with a column of the table ({', '.join(FIXED_COLUMNS + STATUS_COLUMNS)})")

    grid_raw = raw.get("grid", {})
    if not isinstance(grid_raw, dict):
        raise UsageError(f"{where}: [grid] must be a table of \"params.NAME\" or \"sysctl.HOST:NAME\" = [values]")
    grid = tuple((k, _grid_values(k, v, where)) for k, v in grid_raw.items())
    for key, values in grid:
        _check_grid_key(key, values, scenario, profiles, where)
    _check_metrics(scenario, metrics, where)
    _check_sysctl_hosts(scenario, profiles, seeds[0], grid, where)

    spec_dir = Path(base).resolve() if base is not None else path.resolve().parent
    output = raw.get("output", {})
    if not isinstance(output, dict):
        raise UsageError(f"{where}: [output] must be a table with keys {', '.join(OUTPUT_KEYS)}")
    _only_keys(output, OUTPUT_KEYS, f"{where} [output]")
    stem = path.stem
    csv_path = _out_path(output.get("csv", f"out/{stem}.csv"), "csv", ".csv", spec_dir, out_dir, where)
    pq_path = _out_path(output.get("parquet", f"out/{stem}.parquet"), "parquet", ".parquet", spec_dir, out_dir, where)
    plot = None
    if "plot" in output:
        plot = _plot_spec(output["plot"], [k for k, _ in grid], metrics, spec_dir, out_dir, where)

    trace = raw.get("trace", False)
    if not isinstance(trace, bool):
        raise UsageError(f"{where}: 'trace' must be true or false")
    spec = SweepSpec(path.resolve(), scenario, tuple(profiles), tuple(seeds), tuple(metrics), grid,
                     csv_path, pq_path, plot, trace, "parquet" in output)
    if spec.point_count > MAX_POINTS:
        raise UsageError(f"{where}: {spec.point_count} points; a sweep may have at most {MAX_POINTS}")
    return spec


def _only_keys(table: dict[str, Any], allowed: Iterable[str], where: str) -> None:
    allowed = tuple(allowed)
    for k in table:
        if k not in allowed:
            raise UsageError(f"{where}: unknown key {k!r}; allowed: {', '.join(allowed)}")


def _str_list(v: Any, name: str, where: str, required: bool = False) -> list[str]:
    if v is None and required:
        raise UsageError(f"{where}: '{name}' is required: a list of strings")
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        raise UsageError(f"{where}: '{name}' must be a non-empty list of strings")
    if len(set(v)) != len(v):
        raise UsageError(f"{where}: '{name}' lists a value twice")
    return v


def _seed_list(v: Any, where: str) -> list[int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v]
    if (not isinstance(v, list) or not v
            or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)):
        raise UsageError(f"{where}: 'seeds' must be a non-empty list of integers >= 0")
    if len(set(v)) != len(v):
        raise UsageError(f"{where}: 'seeds' lists a value twice")
    return v


def _grid_values(key: str, v: Any, where: str) -> tuple[Any, ...]:
    scalar = (str, int, float, bool)
    if not isinstance(v, list) or not v or not all(isinstance(x, scalar) for x in v):
        raise UsageError(f"{where}: grid {key!r} must be a non-empty list of strings, numbers or booleans")
    for x in v:
        # TOML has nan and inf; no parameter or sysctl means anything by them, and
        # nan != nan would also slip past the duplicate check below.
        if isinstance(x, float) and not math.isfinite(x):
            raise UsageError(f"{where}: grid {key!r}: {x} is not a finite number; values must be finite")
    if len({(type(x), x) for x in v}) != len(v):
        raise UsageError(f"{where}: grid {key!r} lists a value twice")
    return tuple(v)


def _check_grid_key(key: str, values: tuple[Any, ...], scenario: str, profiles: list[str], where: str) -> None:
    kind, _, rest = key.partition(".")
    if kind == "params":
        if not _PARAM_RE.fullmatch(rest):
            raise UsageError(f"{where}: grid key {key!r}: expected \"params.NAME\"")
        _check_param(scenario, rest, values, where)
    elif kind == "sysctl":
        m = _SYSCTL_RE.fullmatch(rest)
        if m is None:
            raise UsageError(f"{where}: grid key {key!r}: expected \"sysctl.HOST:NAME\", e.g. \"sysctl.c1:net.ipv4.tcp_tw_reuse\"")
        for p in profiles:
            _check_sysctl(p, m[2], values, where)
    else:
        raise UsageError(f"{where}: grid key {key!r}: must start with \"params.\" or \"sysctl.\"")


def _plot_spec(v: Any, grid_keys: list[str], metrics: list[str], spec_dir: Path,
               out_dir: str | Path | None, where: str) -> PlotSpec:
    if not isinstance(v, dict):
        raise UsageError(f"{where}: [output] plot must be a table {{ x = ..., y = ..., file = ... }}")
    _only_keys(v, PLOT_KEYS, f"{where} [output] plot")
    for k in PLOT_KEYS:
        if not isinstance(v.get(k), str) or not v[k]:
            raise UsageError(f"{where}: [output] plot needs '{k}' (a string)")
    xs = [*grid_keys, "seed", "profile"]
    if v["x"] not in xs:
        raise UsageError(f"{where}: plot x {v['x']!r} is not swept; allowed: {', '.join(xs)}")
    if v["y"] not in metrics:
        raise UsageError(f"{where}: plot y {v['y']!r} is not among the metrics: {', '.join(metrics)}")
    file = _out_path(v["file"], "plot file", ".png", spec_dir, out_dir, where)
    return PlotSpec(v["x"], v["y"], file)


def _out_path(v: Any, name: str, suffix: str, spec_dir: Path, out_dir: str | Path | None, where: str) -> Path:
    if not isinstance(v, str) or not v.strip():
        raise UsageError(f"{where}: [output] {name} must be a file path (a string)")
    p = Path(v)
    if p.suffix.lower() != suffix:
        raise UsageError(f"{where}: [output] {name} {v!r} must end in {suffix}")
    if out_dir is not None:
        return Path(out_dir).resolve() / p.name
    return p if p.is_absolute() else spec_dir / p


# The checks below ask the simulator's own tables, so a spec fails before any
# point runs; they are skipped where that part of the engine is not present.


def _registry_names() -> set[str] | None:
    try:
        from timewait.scenarios import all_scenarios
    except ImportError:
        return None
    return set(all_scenarios())


def _check_profile(name: str, where: str) -> None:
    try:
        from timewait.sim.profiles import get_profile
    except ImportError:
        return
    try:
        get_profile(name)
    except UsageError as e:
        raise UsageError(f"{where}: {e}") from None


def _check_sysctl(profile: str, name: str, values: tuple[Any, ...], where: str) -> None:
    try:
        from timewait.sim.profiles import get_profile
        from timewait.sim.sysctl import lookup
    except ImportError:
        return
    try:
        s = lookup(name, get_profile(profile).legacy)
        for v in values:
            s.parse(s.name, as_text(v))
    except UsageError as e:
        raise UsageError(f"{where}: {e} (profile {profile})") from None


def _check_param(scenario: str, name: str, values: tuple[Any, ...], where: str) -> None:
    """Parse every value as the scenario would (``parse_params``): name, type, finiteness, range."""
    sc = _real_scenario(scenario)
    if sc is None:
        return
    from timewait.scenarios import COMMON_PARAMS, parse_params

    param = {**COMMON_PARAMS, **sc.params}.get(name)
    for v in values:
        try:
            value = parse_params(sc, {name: as_text(v)})[name]
        except UsageError as e:
            raise UsageError(f"{where}: grid 'params.{name}': {e}") from None
        # float("nan") parses, so a quoted "nan" would pass the type check above.
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{where}: grid 'params.{name}': {as_text(v)!r} is not a finite number")
        # Bounds where the parameter declares them (Param.min / Param.max).
        lo, hi = getattr(param, "min", None), getattr(param, "max", None)
        if isinstance(value, int | float) and not isinstance(value, bool) and (
                (lo is not None and value < lo) or (hi is not None and value > hi)):
            allowed = f"{'' if lo is None else lo}..{'' if hi is None else hi}"
            raise UsageError(f"{where}: grid 'params.{name}': {as_text(v)} is out of range; allowed: {allowed}")


def _real_scenario(name: str) -> Any:
    """The registered scenario, or None for a stand-in of the tests (or a tree without scenarios)."""
    try:
        from timewait.scenarios import get_scenario
    except ImportError:
        return None
    try:
        return get_scenario(name)
    except UsageError:
        return None  # a stub scenario of the tests; unknown names were refused above


def _check_metrics(scenario: str, metrics: list[str], where: str) -> None:
    """Every metric must be one the scenario can record, so a typo fails before any point runs."""
    sc = _real_scenario(scenario)
    names = scenario_metrics(sc) if sc is not None else None
    if names is None:
        return  # not knowable statically: each row still reports a metric its run lacks
    for m in metrics:
        if m in SPECIAL_METRICS:
            continue
        parts = m.split(".")
        # metric_value finds a key containing dots first, then walks a dotted path:
        # the name is known when some leading part of it is a key the scenario writes.
        if any(".".join(parts[:i]) in names for i in range(1, len(parts) + 1)):
            continue
        near = difflib.get_close_matches(m, names, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise UsageError(f"{where}: metric {m!r} is not one {scenario} records{hint}; its metrics: "
                         f"{', '.join(sorted(names))}, and {', '.join(SPECIAL_METRICS)}")


def scenario_metrics(sc: Any) -> frozenset[str] | None:
    """The names of every top-level metric ``sc`` can record, or None when that cannot be known.

    A scenario that declares them (a ``metrics`` attribute) is taken at its word.
    Otherwise the names are read from the source of the scenario's module (and of
    ``scenarios/common.py``): every ``X.metrics["name"] = ...``,
    ``X.metrics.update(name=...)``, ``setdefault("name", ...)``, also through an
    alias ``m = X.metrics``. That is the union over every code path, which a run
    cannot give: ``tw-reuse`` writes ``connect_error_at`` only when a connect fails,
    ``timestamps`` writes ``offset_gap`` only in one mode, so a probe run with the
    defaults would refuse names that other points record. Where a write cannot be
    read (a computed key, ``update(**d)``, the dict handed to another function),
    the answer is None and the per-row check is all there is.
    """
    declared = getattr(sc, "metrics", None)
    if declared is not None:
        return frozenset(declared)
    names: set[str] = set()
    modules = [inspect.getmodule(sc.fn)]
    with _suppress_import_error():
        from timewait.scenarios import common

        modules.append(common)
    for mod in dict.fromkeys(m for m in modules if m is not None):
        try:
            tree = ast.parse(inspect.getsource(mod))
        except (OSError, TypeError, SyntaxError):
            return None
        found = _MetricWrites.of(tree)
        if found is None:
            return None
        names |= found
    return frozenset(names)


@contextmanager
def _suppress_import_error() -> Iterator[None]:
    try:
        yield
    except ImportError:
        pass


class _MetricWrites:
    """Reads the literal metric names a module writes (see :func:`scenario_metrics`)."""

    _READ_METHODS = frozenset({"get", "items", "keys", "values", "copy", "__contains__"})

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.unknown = False  # a write or an escape whose names cannot be read

    @classmethod
    def of(cls, tree: ast.Module) -> set[str] | None:
        w = cls()
        w._scope(tree.body, frozenset())
        return None if w.unknown else w.names

    def _scope(self, body: list[ast.stmt], outer: frozenset[str]) -> None:
        # Aliases are per function (closures see their parent's); a name bound to
        # X.metrics anywhere in the function counts throughout it, a superset.
        own = {t.id for node in _own_nodes(body) if isinstance(node, ast.Assign) and self._is_attr(node.value)
               for t in node.targets if isinstance(t, ast.Name)}
        aliases = outer | own
        for node in _own_nodes(body):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self._scope(node.body, aliases)
            elif isinstance(node, ast.ClassDef):
                self._scope(node.body, frozenset())
            elif isinstance(node, ast.Lambda):
                self._scope([ast.Expr(node.body)], aliases)
            else:
                self._node(node, aliases)

    def _is_attr(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "metrics"

    def _is_metrics(self, node: ast.AST, aliases: frozenset[str]) -> bool:
        return self._is_attr(node) or (isinstance(node, ast.Name) and node.id in aliases)

    def _node(self, node: ast.AST, aliases: frozenset[str]) -> None:
        if isinstance(node, ast.Subscript) and self._is_metrics(node.value, aliases):
            if isinstance(node.ctx, ast.Store):
                key = node.slice
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    self.names.add(key.value)
                else:
                    self.unknown = True
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and self._is_metrics(f.value, aliases):
                self._method(f.attr, node)
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                if self._is_metrics(arg, aliases):
                    self.unknown = True  # handed to a function that may write to it
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(self._is_attr(t) for t in targets):
                self.unknown = True  # X.metrics = {...}: a whole table of unread names
            value = node.value
            if value is not None and self._is_metrics(value, aliases) and not all(
                    isinstance(t, ast.Name) for t in targets):
                self.unknown = True  # stored somewhere an alias cannot follow
        elif isinstance(node, ast.Return | ast.Yield) and node.value is not None and self._is_metrics(node.value, aliases):
            self.unknown = True

    def _method(self, name: str, call: ast.Call) -> None:
        if name == "update":
            for k in call.keywords:
                if k.arg is None:
                    self.unknown = True  # update(**d)
                else:
                    self.names.add(k.arg)
            for a in call.args:
                if isinstance(a, ast.Dict) and all(isinstance(k, ast.Constant) and isinstance(k.value, str)
                                                    for k in a.keys):
                    self.names.update(k.value for k in a.keys if isinstance(k, ast.Constant))
                else:
                    self.unknown = True
        elif name == "setdefault":
            key = call.args[0] if call.args else None
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                self.names.add(key.value)
            else:
                self.unknown = True
        elif name not in self._READ_METHODS and name not in ("pop", "clear"):
            self.unknown = True  # |=, a method this reader does not know


def _own_nodes(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """Every node of ``body``, not descending into nested functions, classes and lambdas
    (which are yielded themselves, so the caller can give them their own scope)."""
    stack: list[ast.AST] = list(reversed(body))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _check_sysctl_hosts(scenario: str, profiles: list[str], seed: int,
                        grid: tuple[tuple[str, tuple[Any, ...]], ...], where: str) -> None:
    """A sysctl's HOST must be a host of the scenario in every point.

    Hosts are made by the scenario's code (``nat`` makes ``c1..cN`` from its
    ``clients``), so they are asked of the scenario itself: its world is built for
    each distinct (profile, params) combination and stopped before its first
    event, which is where the engine checks ``--sysctl`` hosts in a real run.
    """
    named = {}
    for key, _ in grid:
        if key.startswith("sysctl."):
            m = _SYSCTL_RE.fullmatch(key.removeprefix("sysctl."))
            if m is not None and m[1] != "*":
                named.setdefault(m[1], key)
    sc = _real_scenario(scenario)
    if not named or sc is None:
        return
    pgrid = [(k, v) for k, v in grid if k.startswith("params.")]
    combos = itertools.product(profiles, *(v for _, v in pgrid))
    for profile, *values in itertools.islice(combos, MAX_HOST_PROBES):
        params = {k.removeprefix("params."): as_text(v) for (k, _), v in zip(pgrid, values, strict=True)}
        hosts = scenario_hosts(sc, params, profile, seed)
        if hosts is None:
            continue  # the build itself failed: that point will fail alone, with its error
        for host, key in named.items():
            if host not in hosts:
                at = " ".join([*(f"{k}={as_text(v)}" for (k, _), v in zip(pgrid, values, strict=True)),
                               f"profile={profile}"])
                raise UsageError(f"{where}: grid {key!r}: {scenario} has no host {host!r} ({at}); "
                                 f"its hosts: {', '.join(hosts) or 'none'}, or '*' for all")


class _Built(Exception):
    """Raised by the probe of :func:`scenario_hosts` at the scenario's first run."""


def scenario_hosts(sc: Any, params: dict[str, str], profile: str, seed: int) -> list[str] | None:
    """The hosts ``sc`` makes with ``params``: its world built, stopped before its first event.

    None when building raises (bad parameters the scenario checks itself, ...).
    """
    from timewait.scenarios import Lab, parse_params

    try:
        lab = Lab(sc, parse_params(sc, params), [], profile, seed, False, False)
    except Exception:
        return None
    sim = lab.sim

    def stop(*args: Any, **kwargs: Any) -> None:
        raise _Built

    # The instance attribute shadows Simulation.run for this one world only.
    sim.run = stop  # type: ignore[method-assign]
    try:
        sc.fn(lab)
    except _Built:
        pass
    except Exception:
        return None
    return list(sim.hosts)


# ---------------------------------------------------------------- the points


def as_text(v: Any) -> str:
    """A grid value as it would be typed after ``--set k=`` or ``--sysctl h:n=``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


@dataclass(frozen=True, slots=True)
class Point:
    """One run of the sweep: a scenario with one choice from each grid line."""

    index: int
    scenario: str
    profile: str
    seed: int
    coords: tuple[tuple[str, Any], ...]
    trace: bool = False

    @property
    def params(self) -> dict[str, str]:
        return {k.removeprefix("params."): as_text(v) for k, v in self.coords if k.startswith("params.")}

    @property
    def sysctls(self) -> list[str]:
        return [f"{k.removeprefix('sysctl.')}={as_text(v)}" for k, v in self.coords if k.startswith("sysctl.")]

    def label(self) -> str:
        parts = [f"{k}={as_text(v)!r}" if " " in as_text(v) else f"{k}={as_text(v)}" for k, v in self.coords]
        return " ".join([*parts, f"profile={self.profile}", f"seed={self.seed}"])

    def cache_key(self, engine: str, runner: str) -> str:
        """A hash of what decides the result: scenario, params, sysctls, profile, seed, engine."""
        doc = {"scenario": self.scenario, "params": self.params, "sysctls": sorted(self.sysctls),
               "profile": self.profile, "seed": self.seed, "engine": engine}
        if self.trace:  # only where asked, so default keys stay the documented five
            doc["trace"] = True
        if runner != DEFAULT_RUNNER:
            doc["runner"] = runner
        blob = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def expand(spec: SweepSpec) -> list[Point]:
    """Every point of the sweep: profile x seed x grid (last grid key varies fastest)."""
    keys = spec.grid_keys
    points = []
    combos = itertools.product(spec.profiles, spec.seeds, *(v for _, v in spec.grid))
    for i, (profile, seed, *values) in enumerate(combos):
        points.append(Point(i, spec.scenario, profile, seed, tuple(zip(keys, values, strict=True)), spec.trace))
    return points


# Parts of the package that cannot change a run's result: views and front ends.
_NOT_ENGINE = ("report", "kernel", "capacity", "explain", "script", "sweep",
               "cli.py", "__main__.py")


def engine_version() -> str:
    """The package version plus a digest of the engine's source files.

    The version alone (``timewait.__version__``) does not move while the code
    is edited in place, so the digest keeps a cache from serving results of an
    older engine; the views (``report/``), the kernel lab and the front ends are
    left out because they cannot change a result.
    """
    import timewait

    v = str(getattr(timewait, "__version__", "") or "unknown")
    root = Path(timewait.__file__).parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root)
        if rel.parts[0] in _NOT_ENGINE:
            continue
        h.update(str(rel).encode() + b"\0" + f.read_bytes() + b"\0")
    return f"{v}+{h.hexdigest()[:12]}"


# ------------------------------------------------------------- one point run


def resolve_runner(runner: str | Runner) -> Runner:
    """``"module:function"`` to the function; a callable is returned as is."""
    if callable(runner):
        return runner
    mod, sep, attr = runner.partition(":")
    if not sep:
        raise UsageError(f"runner {runner!r}: expected 'module:function'")
    return getattr(importlib.import_module(mod), attr)


def runner_name(runner: str | Runner) -> str:
    if isinstance(runner, str):
        return runner
    return f"{runner.__module__}:{runner.__qualname__}"


def execute_point(point: Point, runner: str | Runner = DEFAULT_RUNNER) -> dict[str, Any]:
    """Run one point and return ``{"ok", "result" | "error", "wall_s"}``; never raises.

    This is what a worker process or a Dask worker executes. ``result`` keeps
    the run's ``metrics``, ``checks`` and ``sim_time`` (not its trace or host
    tables), so any metric can be picked from the cache later.
    """
    t0 = time.perf_counter()
    try:
        fn = resolve_runner(runner)
        res = fn(point.scenario, params=point.params, sysctls=point.sysctls, profile=point.profile,
                 seed=point.seed, trace=point.trace)
        doc = res.to_json() if hasattr(res, "to_json") else dict(res)
        result = {"metrics": doc.get("metrics", {}), "checks": doc.get("checks", []),
                  "sim_time": doc.get("sim_time")}
        result = json.loads(json.dumps(result, default=str))  # plain JSON, as the cache keeps it
        return {"ok": True, "result": result, "wall_s": time.perf_counter() - t0}
    except Exception as e:  # a failing point is reported, the sweep goes on
        tb = traceback.extract_tb(e.__traceback__)
        # A point past its budget is its own one-line reason, not a bug to locate.
        where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb and not isinstance(e, BudgetExceeded) else ""
        return {"ok": False, "error": f"{type(e).__name__}: {e}{where}", "wall_s": time.perf_counter() - t0}


def run_point(point: Point, runner: str | Runner = DEFAULT_RUNNER) -> dict[str, Any]:
    """Alias of :func:`execute_point`: the documented hook to run one point by hand."""
    return execute_point(point, runner)


# ----------------------------------------------------------------- the cache


CACHE_FORMAT = 2


class Cache:
    """Finished points as JSON files named by :meth:`Point.cache_key`, written atomically.

    Each entry carries its own key and a SHA-256 digest of its content, so an
    entry copied over another point's file (swapped) or edited by hand is told
    apart from a good one. A bad entry is a miss: the point is recomputed and
    its file replaced; :attr:`warnings` says which entries were bad and why.
    """

    def __init__(self, root: Path, engine: str, runner: str) -> None:
        self.root, self.engine, self.runner = root, engine, runner
        self.warnings: list[str] = []

    def _file(self, point: Point) -> Path:
        return self.root / f"{point.cache_key(self.engine, self.runner)}.json"

    def get(self, point: Point) -> dict[str, Any] | None:
        """The cached result of ``point``, or None (missing, or bad: then a warning is kept)."""
        f = self._file(point)
        try:
            data = f.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            return self._bad(f, point, f"cannot be read ({e.strerror or e})")
        why, result = check_entry(data, f.stem)
        if why is not None:
            return self._bad(f, point, why)
        return result

    def _bad(self, f: Path, point: Point, why: str) -> None:
        self.warnings.append(f"cache entry {f} (point {point.index}: {point.label()}) {why}; recomputing it")
        return None

    def put(self, point: Point, result: dict[str, Any], wall_s: float) -> None:
        key = point.cache_key(self.engine, self.runner)
        doc = {"format": CACHE_FORMAT, "key": key, "scenario": point.scenario, "params": point.params,
               "sysctls": point.sysctls, "profile": point.profile, "seed": point.seed, "engine": self.engine,
               "runner": self.runner, "wall_s": round(wall_s, 3), "result": result}
        doc["digest"] = entry_digest(doc)
        atomic_write_bytes(self.root / f"{key}.json", json.dumps(doc, indent=1).encode())


def entry_digest(doc: dict[str, Any]) -> str:
    """SHA-256 of an entry's content: every field but ``digest``, as canonical JSON."""
    body = {k: v for k, v in doc.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_entry(data: bytes, key: str) -> tuple[str | None, dict[str, Any] | None]:
    """``(None, result)`` for a good entry of ``key``, else ``(why it is bad, None)``.

    The digest guards against accidents (a hand edit, a file copied over another,
    a truncated write by another tool), not against someone who recomputes it.
    """
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "is not valid JSON (truncated or damaged)", None
    if not isinstance(doc, dict):
        return "is malformed: not a JSON object", None
    if "key" not in doc or "digest" not in doc:
        return "is malformed: it has no key and digest (written by an older timewait?)", None
    if doc["key"] != key:
        return f"holds the entry of another point (key {str(doc['key'])[:12]}...): swapped or copied", None
    if doc["digest"] != entry_digest(doc):
        return "was edited: its digest does not match its content", None
    result = doc.get("result")
    if not isinstance(result, dict):
        return f"is malformed: 'result' is {type(result).__name__}, not a table", None
    if not isinstance(result.get("metrics", {}), dict) or not isinstance(result.get("checks", []), list):
        return "is malformed: 'result' needs a 'metrics' table and a 'checks' list", None
    return None, result


# ----------------------------------------------------------------- the sweep


@dataclass(slots=True)
class PointOutcome:
    """What became of one point."""

    point: Point
    ok: bool
    result: dict[str, Any] | None = None
    error: str | None = None
    cached: bool = False
    wall_s: float = 0.0


@dataclass(slots=True)
class SweepReport:
    """The outcome of :func:`run_sweep`; ``computed`` counts the points actually run."""

    spec: SweepSpec
    outcomes: list[PointOutcome]
    computed: int = 0
    cached: int = 0
    failed: int = 0
    where: str = "local"
    written: list[Path] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[PointOutcome]:
        return [o for o in self.outcomes if not o.ok or row_error(self.spec, o)]

    def error_of(self, o: PointOutcome) -> str:
        """Why ``o`` failed: the scenario's exception, or a metric it does not have."""
        return o.error or row_error(self.spec, o) or ""

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": str(self.spec.path.name),
            "scenario": self.spec.scenario,
            "points": len(self.outcomes),
            "computed": self.computed,
            "cached": self.cached,
            "failed": len(self.failures),
            "where": self.where,
            "failures": [{"point": o.point.index, "label": o.point.label(),
                          "error": self.error_of(o)} for o in self.failures],
            "written": [str(p) for p in self.written],
            "messages": self.messages,
            "warnings": self.warnings,
        }


def run_sweep(
    spec: SweepSpec,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    runner: str | Runner = DEFAULT_RUNNER,
    progress: bool | None = None,
    write: bool = True,
) -> SweepReport:
    """Run every point not in the cache, then write the outputs; never raises for a bad point.

    ``scheduler`` (``tcp://HOST:PORT``) sends the points to an existing Dask
    cluster; otherwise ``workers`` local processes run them (default: one per
    core; 1 runs them in this process). ``progress=None`` shows a bar only
    when stderr is a terminal.

    Before any point runs, the output files and the cache folder are checked
    (:func:`check_paths`) and a scheduler must answer and have a worker
    (:func:`connect_dask`); each failure is one :class:`UsageError`. A bad cache
    entry is recomputed with one ``timewait: warning:`` line on stderr (also in
    :attr:`SweepReport.warnings`).
    """
    m = _SCHEDULER_RE.fullmatch(scheduler) if scheduler is not None else None
    if scheduler is not None and (m is None or not 1 <= int(m[3]) <= 65535):
        raise UsageError(f"--scheduler {scheduler!r}: expected tcp://HOST:PORT (PORT 1..65535)")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1 (got {workers})")
    root = Path(cache_dir) if cache_dir is not None else spec.path.parent / DEFAULT_CACHE
    targets = [(f"[output] {name}", f, False) for name, f in output_files(spec)] if write else []
    if use_cache:
        targets.append(("--cache" if cache_dir is not None else "cache folder", root, True))
    # Before any point runs: a path that cannot be written is said now, not as a
    # traceback after the whole sweep ran. Nothing is created until all else passed.
    check_paths(targets, create=False)
    # A cluster that cannot take the points is said at once rather than after (or
    # instead of) a silent wait.
    client = connect_dask(scheduler) if scheduler is not None else None
    try:
        check_paths(targets, create=True)
    except UsageError:
        if client is not None:
            client.close()
        raise
    try:
        return _sweep(spec, client, scheduler, workers, cache_dir, use_cache, runner, progress, write)
    finally:
        if client is not None:
            client.close()


def _sweep(spec: SweepSpec, client: Any, scheduler: str | None, workers: int | None,
           cache_dir: str | Path | None, use_cache: bool, runner: str | Runner, progress: bool | None,
           write: bool) -> SweepReport:
    points = expand(spec)
    rname = runner_name(runner)
    root = Path(cache_dir) if cache_dir is not None else spec.path.parent / DEFAULT_CACHE
    cache = Cache(root, engine_version(), rname) if use_cache else None
    outcomes: dict[int, PointOutcome] = {}
    pending: list[Point] = []
    for p in points:
        hit = cache.get(p) if cache else None
        if hit is not None:
            outcomes[p.index] = PointOutcome(p, True, hit, cached=True)
        else:
            pending.append(p)
    report = SweepReport(spec, [], cached=len(outcomes), where=scheduler or "local")
    show = sys.stderr.isatty() if progress is None else progress

    def done(p: Point, res: dict[str, Any]) -> None:
        ok = bool(res.get("ok"))
        outcomes[p.index] = PointOutcome(p, ok, res.get("result"), res.get("error"), False, res.get("wall_s", 0.0))
        report.computed += 1
        if ok and cache is not None:
            try:
                cache.put(p, res["result"], res.get("wall_s", 0.0))
            except OSError as e:  # the folder was checked; this is e.g. a full disk: the point still counts
                warn(f"point {p.index} not cached: {e.strerror or e}")

    def warn(msg: str) -> None:
        report.warnings.append(msg)
        print(f"timewait: warning: {msg}", file=sys.stderr)

    # Said before the points run, one line per bad entry, so the recomputing is not a surprise.
    for w in cache.warnings if cache is not None else []:
        warn(w)
    with _progress(show, len(points), len(outcomes)) as tick:
        if client is not None:
            source = _run_dask(client, pending, runner, scheduler or "")
        elif (workers or os.cpu_count() or 1) == 1 or len(pending) <= 1:
            source = ((p, execute_point(p, runner)) for p in pending)
        else:
            source = _run_processes(pending, runner, workers or os.cpu_count() or 1)
        for p, res in source:
            done(p, res)
            tick(p, bool(res.get("ok")))
    report.outcomes = [outcomes[p.index] for p in points]
    report.failed = len(report.failures)
    if write:
        rows = table(spec, report.outcomes)
        report.written, report.messages = write_outputs(spec, rows)
    return report


def _run_processes(points: list[Point], runner: str | Runner, workers: int) -> Iterator[tuple[Point, dict[str, Any]]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: the parent may hold threads (a Dask client, Rich's refresher).
    pool = ProcessPoolExecutor(max_workers=min(workers, len(points)), mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(execute_point, p, runner): p for p in points}
        for fut in as_completed(futures):
            p = futures[fut]
            try:
                yield p, fut.result()
            except Exception as e:  # the worker process died (BrokenProcessPool, ...)
                yield p, {"ok": False, "error": f"{type(e).__name__}: {e}", "wall_s": 0.0}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def connect_dask(address: str) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address`` with at least one worker.

    Raises :class:`UsageError` (exit 2) within about 5 s when the scheduler cannot
    be reached or has no workers: nothing has run then, and 1 is kept for a sweep
    whose table was written with failed points.
    """
    m = _SCHEDULER_RE.fullmatch(address)
    assert m is not None
    import importlib.util

    if importlib.util.find_spec("distributed") is None:  # the missing extra first, before any network
        raise UsageError("--scheduler needs distributed, from the 'cluster' extra: pip install 'timewait[cluster]'")
    # A plain TCP connect first, before distributed is even imported: a closed port
    # is refused at once and an unroutable host times out in DASK_CONNECT_S, where
    # the Client alone retries for its whole timeout without a word.
    try:
        with socket.create_connection((m[2], int(m[3])), timeout=DASK_CONNECT_S) as s:
            # Over plain TCP a scheduler sends its handshake as soon as it accepts;
            # the Client would wait for it forever (its read has no timeout).
            first = s.recv(1) if m[1] == "tcp" else b"-"
    except TimeoutError:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: what listens there says nothing "
                         f"in {DASK_CONNECT_S:g} s; it is not a Dask scheduler") from None
    except OSError as e:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: "
                         f"{(e.strerror or str(e)).lower()}") from None
    if not first:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: what listens there closed the "
                         "connection; it is not a Dask scheduler")
    t0 = time.monotonic()
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs distributed, from the 'cluster' extra: pip install 'timewait[cluster]'") from None
    client = _bounded(lambda: Client(address, timeout=f"{DASK_CONNECT_S}s"), DASK_CONNECT_S + 1.0, address)
    try:
        client.wait_for_workers(1, timeout=max(DASK_MIN_WAIT_S, DASK_BUDGET_S - (time.monotonic() - t0)))
    except (OSError, TimeoutError):
        client.close()
        raise UsageError(f"the Dask scheduler at {address} has no workers; start one with: "
                         f"dask worker {address}") from None
    return client


def _bounded(make: Callable[[], Any], limit_s: float, address: str) -> Any:
    """``make()`` (the Client) within ``limit_s``, else one :class:`UsageError` line.

    Something that answers but not as a scheduler can stall the Client's
    handshake past its own timeout (a frame length it then waits to fill); the
    construction runs in a daemon thread so that never holds the sweep. A
    Client made after the limit is closed by that thread.
    """
    import threading

    box: dict[str, Any] = {}
    gave_up = threading.Event()

    def run() -> None:
        try:
            box["client"] = make()
        except BaseException as e:  # handed to the caller below
            box["error"] = e
        if gave_up.is_set() and "client" in box:
            box["client"].close()

    th = threading.Thread(target=run, name="timewait-dask-connect", daemon=True)
    th.start()
    th.join(limit_s)
    if th.is_alive():
        gave_up.set()
        raise UsageError(f"cannot reach the Dask scheduler at {address}: no Dask handshake in {limit_s:g} s; "
                         "what answers there is not a Dask scheduler")
    e = box.get("error")
    if isinstance(e, OSError | TimeoutError):
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {' '.join(str(e).split())}") from None
    if e is not None:  # something listens there but does not speak Dask (garbage frame sizes, ...)
        raise UsageError(f"cannot reach the Dask scheduler at {address}: what answers there is not a Dask "
                         f"scheduler ({type(e).__name__})") from None
    return box["client"]


def _workers_of(client: Any) -> int:
    try:
        return len(client.nthreads())
    except Exception:  # the scheduler itself is gone: as good as no workers
        return 0


def _run_dask(client: Any, points: list[Point], runner: str | Runner,
              address: str) -> Iterator[tuple[Point, dict[str, Any]]]:
    """Send every point with ``client.map``; yield each result as it is done.

    Futures report to a queue, so the wait can look up every second whether the
    cluster still has workers: without any for DASK_IDLE_S, the points left fail
    (the scheduler would otherwise hold them forever).
    """
    from queue import Empty, Queue

    if not points:
        return
    done: Queue[Any] = Queue()
    futures = client.map(execute_point, points, runner=runner, pure=False)
    by_key = {f.key: p for f, p in zip(futures, points, strict=True)}
    left = {f.key: f for f in futures}
    for f in futures:
        f.add_done_callback(done.put)
    idle_since: float | None = None
    try:
        while left:
            try:
                fut = done.get(timeout=1.0)
            except Empty:
                if _workers_of(client):
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > DASK_IDLE_S:
                    err = f"the Dask scheduler at {address} has had no workers for {DASK_IDLE_S:g} s"
                    for key in list(left):
                        yield by_key[key], {"ok": False, "error": err, "wall_s": 0.0}
                    return
                continue
            if left.pop(fut.key, None) is None:
                continue
            p = by_key[fut.key]
            try:
                yield p, fut.result()
            except Exception as e:  # lost worker, unpicklable result, ...
                yield p, {"ok": False, "error": f"{type(e).__name__}: {e}", "wall_s": 0.0}
    finally:
        client.cancel(list(left.values()))


@contextmanager
def _progress(show: bool, total: int, already: int) -> Iterator[Callable[[Point, bool], None]]:
    """A Rich progress bar on stderr, or nothing."""
    if not show:
        yield lambda p, ok: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    failed = 0
    with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(f"{already} cached", total=total, completed=already)

        def tick(p: Point, ok: bool) -> None:
            nonlocal failed
            failed += not ok
            bar.update(task, advance=1, description=f"{already} cached, {failed} failed")

        yield tick


# ----------------------------------------------------------------- the table


def metric_value(result: dict[str, Any], name: str) -> Any:
    """A metric from a run's result: ``checks_passed``, ``sim_time``, or a dotted path in ``metrics``.

    Raises ``KeyError`` with the available names when the path does not exist.
    """
    if name == "checks_passed":
        return all(c.get("passed") for c in result.get("checks", []))
    if name == "sim_time":
        return result.get("sim_time")
    node: Any = result.get("metrics", {})
    if isinstance(node, dict) and name in node:
        return node[name]
    for part in name.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            avail = ", ".join(sorted(result.get("metrics", {}))) or "none"
            raise KeyError(f"metric {name!r} not in the results; metrics: {avail}")
    return node


def row_error(spec: SweepSpec, o: PointOutcome) -> str | None:
    """Why a finished point cannot fill its row (a metric it does not have), if so."""
    if not o.ok or o.result is None:
        return None
    for m in spec.metrics:
        try:
            metric_value(o.result, m)
        except KeyError as e:
            return str(e.args[0])
    return None


def table(spec: SweepSpec, outcomes: list[PointOutcome]) -> list[dict[str, Any]]:
    """One row per point: fixed columns, grid values, metrics, status, error, cached."""
    rows = []
    for o in outcomes:
        p = o.point
        row: dict[str, Any] = {"point": p.index, "scenario": p.scenario, "profile": p.profile, "seed": p.seed}
        row.update(dict(p.coords))
        err = o.error if not o.ok else row_error(spec, o)
        for m in spec.metrics:
            try:
                row[m] = _cell(metric_value(o.result, m)) if o.result is not None else None
            except KeyError:
                row[m] = None
        row.update(status="failed" if err else "ok", error=err, cached=o.cached)
        rows.append(row)
    return rows


def _cell(v: Any) -> Any:
    """Scalars stay; lists and tables become JSON text, the same in CSV and Parquet."""
    if v is None or isinstance(v, str | int | float | bool):
        return v
    return json.dumps(v, sort_keys=True)


# ---------------------------------------------------------------- the files


def output_files(spec: SweepSpec) -> list[tuple[str, Path]]:
    """The files a sweep writes, by their spec key."""
    files = [("csv", spec.csv), ("parquet", spec.parquet)]
    if spec.plot is not None:
        files.append(("plot file", spec.plot.file))
    return files


def check_paths(targets: list[tuple[str, Path, bool]], *, create: bool) -> None:
    """Each ``(what, path, is_folder)`` must be writable; else one :class:`UsageError` line.

    A file must not be a folder; a folder must not be a file; the nearest existing
    ancestor must be a writable folder. ``create=True`` then makes the folders and
    writes a temporary file in each, the one exact test of writability (``access``
    says yes to root on any mode, and knows nothing of read-only mounts of some kinds).
    """
    for what, path, is_folder in targets:
        folder = path if is_folder else path.parent
        if not is_folder and path.is_dir():
            raise UsageError(f"{what} {path}: is a folder; expected a file name")
        if is_folder and path.exists() and not path.is_dir():
            raise UsageError(f"{what} {path}: is a file; expected a folder (created if missing)")
        top = folder
        while not top.exists() and top.parent != top:
            top = top.parent
        if not top.is_dir():
            raise UsageError(f"{what} {path}: {top} is a file, so no folder can be made in it")
        if not create:
            if not os.access(top, os.W_OK | os.X_OK):
                raise UsageError(f"{what} {path}: {top} is not writable")
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as e:
            raise UsageError(f"{what} {path}: cannot write in {folder}: {e.strerror or e}") from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name in the same folder (same file system, so the rename is atomic);
    # two writers, even threads of one process, never share a temporary file.
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_extras(spec: SweepSpec) -> None:
    """Before any point runs: the plot needs matplotlib, a Parquet file the spec names needs pyarrow
    (UsageError with the extra that installs it)."""
    import importlib.util

    from timewait.errors import missing_extra

    needs = [("matplotlib", spec.plot is not None), ("pyarrow", spec.parquet_asked)]
    for module, needed in needs:
        if needed and importlib.util.find_spec(module) is None:
            raise UsageError(f"{spec.path.name}: {missing_extra(ModuleNotFoundError(name=module))}")


def write_outputs(spec: SweepSpec, rows: list[dict[str, Any]]) -> tuple[list[Path], list[str]]:
    """CSV, Parquet and (if asked) the plot; returns the files written and any remarks.

    Parquet by default only where pyarrow (the 'parquet' extra) is installed; a spec that
    names it gets it or, before anything runs, the hint (:func:`check_extras`).
    """
    import importlib.util

    cols = spec.columns
    written = [write_csv(spec.csv, cols, rows)]
    messages: list[str] = []
    if spec.parquet_asked or importlib.util.find_spec("pyarrow") is not None:
        written.append(write_parquet(spec.parquet, cols, rows))
    else:
        messages.append("no Parquet file: that needs pyarrow, from the 'parquet' extra "
                        "(pip install 'timewait[parquet]')")
    if spec.plot is not None:
        msg = write_plot(spec, rows)
        if msg:
            messages.append(msg)
        else:
            written.append(spec.plot.file)
    return written, messages


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r[k]) for k in columns})
    atomic_write_bytes(path, buf.getvalue().encode())
    return path


def write_parquet(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for c in columns:
        values = [r.get(c) for r in rows]
        try:
            arrays[c] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types in one column: keep them as text
            arrays[c] = pa.array([None if v is None else as_text(v) for v in values], type=pa.string())
    buf = pa.BufferOutputStream()
    pq.write_table(pa.table(arrays), buf)
    atomic_write_bytes(path, buf.getvalue().to_pybytes())
    return path


def write_plot(spec: SweepSpec, rows: list[dict[str, Any]]) -> str | None:
    """Metric ``y`` against ``x``: one line per combination of the other swept values,
    the mean over seeds with min-max bars. Returns a remark instead when nothing can be drawn."""
    assert spec.plot is not None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = spec.plot.x, spec.plot.y
    others = [k for k in ["profile", *spec.grid_keys] if k != x]
    others = [k for k in others if len({as_text(r[k]) for r in rows}) > 1]
    series: dict[tuple[str, ...], dict[Any, list[float]]] = {}
    for r in rows:
        v = r.get(y)
        if r["status"] != "ok" or isinstance(v, str) or v is None:
            continue
        label = tuple(f"{k}={as_text(r[k])}" for k in others)
        series.setdefault(label, {}).setdefault(r[x], []).append(float(v))
    if not series:
        return f"plot not written: metric {y!r} has no numeric values"
    xs_all = list(dict.fromkeys(r[x] for r in rows))
    numeric_x = all(isinstance(v, int | float) and not isinstance(v, bool) for v in xs_all)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for label, pts in series.items():
        xs = sorted(pts) if numeric_x else [v for v in xs_all if v in pts]
        pos = xs if numeric_x else [xs_all.index(v) for v in xs]
        means = [sum(pts[v]) / len(pts[v]) for v in xs]
        lo = [m - min(pts[v]) for m, v in zip(means, xs, strict=True)]
        hi = [max(pts[v]) - m for m, v in zip(means, xs, strict=True)]
        ax.errorbar(pos, means, yerr=[lo, hi], marker="o", capsize=3, label=", ".join(label) or None)
    if not numeric_x:
        ax.set_xticks(range(len(xs_all)), [as_text(v) for v in xs_all])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    seeds = f", mean of {len(spec.seeds)} seeds" if len(spec.seeds) > 1 else ""
    ax.set_title(f"{spec.scenario}: {y} vs {x}{seeds}")
    ax.grid(True, alpha=0.3)
    if any(series) and any(label for label in series):
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(spec.plot.file, buf.getvalue())
    return None
