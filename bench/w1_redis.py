"""W1: one point of the short-connection workload, measured in this process.

``python bench/w1_redis.py --connections N [--rate 1000] [--ports 3]`` runs the
``redis-short-connections`` scenario without a trace and prints one JSON object:
wall and CPU seconds of the simulation (imports and start-up excluded),
lifecycles per wall-second (N / wall), scheduler events per wall-second, peak
RSS, whether every request was answered, and which engine modules ran compiled
(the installed mypyc build; none under ``TIMEWAIT_PURE_PYTHON=1``).

The scenario's Lab is built here (instead of calling ``run_scenario``) so the
scheduler's event count can be read after the run; the scenario function is
the same one ``run_scenario`` calls.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

from timewait.scenarios import Lab, get_scenario, parse_params

SCENARIO = "redis-short-connections"


def build_lab(connections: int, rate: float, ports: int) -> Lab:
    """The scenario's Lab with the benchmark's parameters, linux profile, no trace."""
    sc = get_scenario(SCENARIO)
    params = parse_params(sc, {"connections": connections, "rate": rate, "ports": ports})
    return Lab(sc, params, [], sc.profile, seed=1, trace=False, progress=False)


def measure(connections: int, rate: float, ports: int) -> dict[str, Any]:
    """Run one point and return its figures."""
    lab = build_lab(connections, rate, ports)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    lab.scenario.fn(lab)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    events = lab.sim.sched.events
    succeeded = lab.metrics.get("succeeded", 0)
    return {
        "workload": "W1",
        "connections": connections,
        "rate": rate,
        "ports": ports,
        "wall_s": wall,
        "cpu_s": cpu,
        "lifecycles_per_s": connections / wall,
        "events": events,
        "events_per_s": events / wall,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "succeeded": succeeded,
        "failed": lab.metrics.get("failed", {}),
        "ok": succeeded == connections,
        # Informative only: the scenario's "one TIME_WAIT per request" check assumes the run
        # is shorter than TIME_WAIT (N <= 60 x rate); past that, the oldest have expired.
        "failed_checks": [c.name for c in lab.checks if not c.passed],
        "sim_time_s": lab.sim.now,
        # The engine's modules that ran as compiled extensions (the mypyc build); [] = pure Python.
        "compiled": sorted(name for name, m in sys.modules.items()
                           if name.startswith("timewait.") and (getattr(m, "__file__", None) or "").endswith(".so")),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--ports", type=int, default=3,
                    help="server ports (one destination sustains only 28,232 ports / 60 s = 470/s)")
    args = ap.parse_args()
    print(json.dumps(measure(args.connections, args.rate, args.ports)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
