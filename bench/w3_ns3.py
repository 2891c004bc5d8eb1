"""W3: the W1 workload in ns-3, in a virtual environment of the bench's own.

``python bench/w3_ns3.py [--connections 10000]`` makes ``bench/.venv-ns3``
(gitignored) if it is missing, installs PyPI's ``ns3==3.44.post0`` there (a
bench-only dependency, never the project's), runs ``ns3_w1.py`` inside it and
prints its JSON line. Every step has a time limit; when one fails the JSON
line says why (``{"error": ...}``) and the exit status is still 0, so the
caller's table shows the reason and goes on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-ns3"
NS3_REQUIREMENT = "ns3==3.44.post0"
NS3_VERSION = NS3_REQUIREMENT.split("==")[1]


class Unavailable(Exception):
    """ns-3 cannot be installed or run here; the message says why."""


def _run(cmd: list[str], timeout_s: float, what: str) -> subprocess.CompletedProcess[str]:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{what} took longer than {timeout_s:.0f} s") from None
    except OSError as e:
        raise Unavailable(f"{what}: {e}") from None
    if out.returncode != 0:
        tail = " | ".join((out.stderr or out.stdout).strip().splitlines()[-2:])
        raise Unavailable(f"{what} failed (exit {out.returncode}): {tail}")
    return out


def venv_python() -> Path:
    """The virtual environment's interpreter, with ns3 installed at the pinned version."""
    py = VENV / "bin" / "python"
    if not py.exists():
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        except Exception as e:  # noqa: BLE001 -- any failure means: no ns-3 here
            raise Unavailable(f"cannot create {VENV.name}: {e}") from None
    if installed_ns3(py) != NS3_VERSION:
        _run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", NS3_REQUIREMENT],
             1200, f"pip install {NS3_REQUIREMENT}")
    return py


def installed_ns3(py: Path) -> str | None:
    """The ns3 version installed for ``py``, None when there is none."""
    try:
        out = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('ns3'))"],
                             capture_output=True, text=True, timeout=60)
    except (subprocess.TimeoutExpired, OSError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def measure(connections: int, rate: float, ports: int, timeout_s: float) -> dict[str, Any]:
    py = venv_python()
    out = _run([str(py), str(HERE / "ns3_w1.py"), "--connections", str(connections), "--rate", str(rate),
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
