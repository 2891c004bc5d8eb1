"""timewait: a laboratory for TCP connection teardown and TIME_WAIT."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("timewait")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+src"

__all__ = ["Simulation", "__version__"]


def __getattr__(name: str):  # lazy, so `import timewait` stays cheap for the CLI
    if name == "Simulation":
        from timewait.sim.simulation import Simulation

        return Simulation
    raise AttributeError(name)
