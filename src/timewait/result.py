"""What a scenario run returns: the JSON contract plus the trace views read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from timewait.trace import Trace


@dataclass(slots=True)
class Check:
    """One fact a scenario exists to show, and whether the run showed it."""

    name: str
    passed: bool
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass(slots=True)
class NodeInfo:
    """A node of the topology as views need it: its kind and addresses."""

    name: str
    kind: str  # "host", "router" or "nat"
    addrs: list[int] = field(default_factory=list)


@dataclass(slots=True)
class RunResult:
    """The outcome of one scenario run.

    ``hosts`` is the end-of-run snapshot of the JSON contract
    (``{name: {"states": …, "counters": …, "sysctls": …}}``); ``series`` holds
    time series sampled during the run (``{name: [(t_seconds, value), …]}``),
    which stay available when the full trace is switched off.
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

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """The document ``timewait run SCENARIO --json`` prints."""
        return {
            "scenario": self.scenario,
            "profile": self.profile,
            "seed": self.seed,
            "params": self.params,
            "sim_time": self.sim_time,
            "checks": [c.to_json() for c in self.checks],
            "metrics": self.metrics,
            "hosts": self.hosts,
        }
