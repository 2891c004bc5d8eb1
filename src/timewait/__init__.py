"""timewait: a laboratory for TCP connection teardown and TIME_WAIT.

The engine's hot path may be installed compiled by mypyc; ``TIMEWAIT_PURE_PYTHON=1``
(set before this package is first imported) loads the pure-Python modules instead, as
does a compiled module whose source was edited since the build.
:mod:`timewait.buildinfo` explains how; :func:`build_info` says which build is running.
"""

from importlib.metadata import PackageNotFoundError, version

from timewait.buildinfo import build_info, choose_build

choose_build()  # before any engine module is imported (see timewait.buildinfo)

try:
    __version__ = version("timewait")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+src"

__all__ = ["Simulation", "__version__", "build_info"]


def __getattr__(name: str):  # lazy, so `import timewait` stays cheap for the CLI
    if name == "Simulation":
        from timewait.sim.simulation import Simulation

        return Simulation
    raise AttributeError(name)
