"""W3: the W1 workload in ns-3, in a virtual environment of the bench's own.

``python bench/w3_ns3.py [--connections 10000]`` makes ``bench/.venv-ns3``
(gitignored) if it is missing, installing PyPI's ``ns3==3.44.post0`` there (a
bench-only dependency, never the project's; see ``ns3/setup_venv.py``), runs
``ns3/w1_program.py`` inside it and prints its JSON line. Every step has a time
limit; when one fails the JSON line says why (``{"error": ...}``) and the exit status is still 0, so the
caller's table shows the reason and goes on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "ns3"))
from setup_venv import Unavailable, run_step, venv_python  # noqa: E402

PROGRAM = HERE / "ns3" / "w1_program.py"


def measure(connections: int, rate: float, ports: int, timeout_s: float) -> dict[str, Any]:
    """Run the ns-3 program for one point and return its JSON figures."""
    py = venv_python()
    out = run_step([str(py), str(PROGRAM), "--connections", str(connections), "--rate", str(rate),
                    "--ports", str(ports), "--msl", "30"], timeout_s, "the ns-3 program")
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise Unavailable("the ns-3 program printed no result")
    return json.loads(lines[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--ports", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=1500.0, help="seconds for the ns-3 run itself")
    args = ap.parse_args()
    try:
        doc = measure(args.connections, args.rate, args.ports, args.timeout)
    except Unavailable as e:
        doc = {"workload": "W3", "connections": args.connections, "error": f"ns-3 not measured: {e}"}
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
