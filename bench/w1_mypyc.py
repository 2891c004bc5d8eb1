"""W1 with the engine's hot-path modules compiled by mypyc: evidence for a proposal, bench-only.

``python bench/w1_mypyc.py --connections N`` makes ``bench/.venv-mypyc`` with PyPI's
``mypy`` at a pinned version (a bench-only tool, never the project's), copies
``src/timewait`` to ``bench/.mypyc-build/`` and compiles six modules there with
``mypyc`` (rebuilt only when a source file changed; ~30 s), then runs
``w1_redis.py`` with that copy first on ``PYTHONPATH`` and prints its JSON line,
plus ``compiled``: the modules that ran compiled (all six, or the row is an error).
The project itself stays pure Python; nothing here is installed into or imported by it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from venvs import Unavailable, ensure_venv, run_step

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src" / "timewait"
VENV = HERE / ".venv-mypyc"
BUILD = HERE / ".mypyc-build"
MYPY_REQUIREMENT = "mypy==2.4.1"
# The path every segment and connection takes (see PROFILE.md).
MODULES = ("timewait/sim/scheduler.py", "timewait/sim/host.py", "timewait/tcp/connection.py",
           "timewait/tcp/segment.py", "timewait/tcp/timewait.py", "timewait/tcp/isn.py")


def source_stamp() -> str:
    """A digest of every source file and the pinned mypy: the build is redone when it changes."""
    h = hashlib.sha256(MYPY_REQUIREMENT.encode())
    for p in sorted(SRC.rglob("*.py")):
        h.update(str(p.relative_to(SRC)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def build() -> Path:
    """``bench/.mypyc-build`` with the six modules compiled; returns the directory."""
    stamp = source_stamp()
    stamp_file = BUILD / ".stamp"
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return BUILD
    py = ensure_venv(VENV, MYPY_REQUIREMENT, pip_timeout_s=900)
    if BUILD.exists():
        shutil.rmtree(BUILD)
    shutil.copytree(SRC, BUILD / "timewait", ignore=shutil.ignore_patterns("__pycache__"))
    run_step([str(py), "-m", "mypyc", *MODULES], 1200, "mypyc", cwd=BUILD)
    stamp_file.write_text(stamp)
    return BUILD


def measure(connections: int, rate: float, ports: int) -> dict[str, Any]:
    """Build if needed, then one W1 point on the compiled copy."""
    where = build()
    env = {**os.environ, "PYTHONPATH": str(where)}
    out = run_step([sys.executable, str(HERE / "w1_redis.py"), "--connections", str(connections),
                    "--rate", str(rate), "--ports", str(ports)],
                   60 + connections / 300, "the compiled W1 run", env=env)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise Unavailable("the compiled W1 run printed no result")
    doc = json.loads(lines[-1])
    want = sorted(m[:-3].replace("/", ".") for m in MODULES)
    if doc.get("compiled") != want:
        raise Unavailable(f"compiled modules not loaded: ran {doc.get('compiled')}, wanted {want}")
    return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--ports", type=int, default=3)
    args = ap.parse_args()
    try:
        doc = measure(args.connections, args.rate, args.ports)
    except Unavailable as e:
        doc = {"error": f"mypyc build not measured: {e}"}
    print(json.dumps({**doc, "workload": "W1 mypyc", "connections": args.connections}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
