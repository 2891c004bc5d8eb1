"""The bench's own virtual environments, for tools that are never the project's dependencies.

``ensure_venv(dir, "name==version")`` creates ``dir`` (if missing) with the running
interpreter and installs the pinned requirement there (if not installed at that
version), then returns the environment's ``python``. Every step has a time limit;
a failure raises :class:`Unavailable` with the reason, so a benchmark can print
"not measured: why" and go on. Used for ns-3 (``ns3/setup_venv.py``).
"""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path


class Unavailable(Exception):
    """The tool cannot be installed or run here; the message says why."""


def run_step(cmd: list[str], timeout_s: float, what: str, cwd: Path | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with a time limit; any failure becomes :class:`Unavailable` naming ``what``."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=cwd, env=env)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{what} took longer than {timeout_s:.0f} s") from None
    except OSError as e:
        raise Unavailable(f"{what}: {e}") from None
    if out.returncode != 0:
        tail = " | ".join((out.stderr or out.stdout).strip().splitlines()[-2:])
        raise Unavailable(f"{what} failed (exit {out.returncode}): {tail}")
    return out


def installed_version(py: Path, dist: str) -> str | None:
    """The version of distribution ``dist`` installed for ``py``, None when there is none."""
    try:
        out = subprocess.run([str(py), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
                             capture_output=True, text=True, timeout=60)
    except (subprocess.TimeoutExpired, OSError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_venv(path: Path, requirement: str, pip_timeout_s: float) -> Path:
    """``path``'s interpreter, with ``requirement`` (``name==version``) installed."""
    dist, _, version = requirement.partition("==")
    py = path / "bin" / "python"
    if not py.exists():
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(path)
        except Exception as e:  # noqa: BLE001 -- any failure means: not available here
            raise Unavailable(f"cannot create {path.name}: {e}") from None
    if installed_version(py, dist) != version:
        run_step([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", requirement],
                 pip_timeout_s, f"pip install {requirement}")
    return py
