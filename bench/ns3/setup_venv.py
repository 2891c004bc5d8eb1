"""The bench's own virtual environment for ns-3: ``bench/.venv-ns3`` with PyPI's ns3.

``python bench/ns3/setup_venv.py`` creates it (if missing) and installs
``ns3==3.44.post0`` there -- a bench-only dependency, never the project's --
then prints the interpreter's path. ``bench/w3_ns3.py`` calls
:func:`venv_python` itself, so running this first is optional. Every step has a
time limit; a failure raises :class:`Unavailable` with the reason.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
VENV = BENCH / ".venv-ns3"
NS3_REQUIREMENT = "ns3==3.44.post0"
NS3_VERSION = NS3_REQUIREMENT.split("==")[1]
PIP_TIMEOUT_S = 1200  # the wheel is ~70 MB, plus cppyy's


class Unavailable(Exception):
    """ns-3 cannot be installed or run here; the message says why."""


def run_step(cmd: list[str], timeout_s: float, what: str) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with a time limit; any failure becomes :class:`Unavailable` naming ``what``."""
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


def installed_ns3(py: Path) -> str | None:
    """The ns3 version installed for ``py``, None when there is none."""
    try:
        out = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('ns3'))"],
                             capture_output=True, text=True, timeout=60)
    except (subprocess.TimeoutExpired, OSError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def venv_python() -> Path:
    """The virtual environment's interpreter, with ns3 installed at the pinned version."""
    py = VENV / "bin" / "python"
    if not py.exists():
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        except Exception as e:  # noqa: BLE001 -- any failure means: no ns-3 here
            raise Unavailable(f"cannot create {VENV.name}: {e}") from None
    if installed_ns3(py) != NS3_VERSION:
        run_step([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", NS3_REQUIREMENT],
                 PIP_TIMEOUT_S, f"pip install {NS3_REQUIREMENT}")
    return py


def main() -> int:
    try:
        print(venv_python())
    except Unavailable as e:
        print(f"ns-3 not available: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
