"""The bench's own virtual environment for ns-3: ``bench/.venv-ns3`` with PyPI's ns3.

``python bench/ns3/setup_venv.py`` creates it (if missing) and installs
``ns3==3.44.post0`` there -- a bench-only dependency, never the project's --
then prints the interpreter's path. ``bench/w3_ns3.py`` calls
:func:`venv_python` itself, so running this first is optional. Every step has a
time limit; a failure raises :class:`Unavailable` with the reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))
from venvs import Unavailable, ensure_venv, run_step  # noqa: E402

VENV = BENCH / ".venv-ns3"
NS3_REQUIREMENT = "ns3==3.44.post0"
NS3_VERSION = NS3_REQUIREMENT.split("==")[1]
PIP_TIMEOUT_S = 1200  # the wheel is ~70 MB, plus cppyy's

__all__ = ["Unavailable", "run_step", "venv_python"]


def venv_python() -> Path:
    """The virtual environment's interpreter, with ns3 installed at the pinned version."""
    return ensure_venv(VENV, NS3_REQUIREMENT, PIP_TIMEOUT_S)


def main() -> int:
    try:
        print(venv_python())
    except Unavailable as e:
        print(f"ns-3 not available: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
