"""User-facing errors: one line, exit status 2, never a traceback."""


class UsageError(Exception):
    """Bad input from the user (flag, scenario, sysctl, parameter or file).

    The message names what is wrong and what is allowed.
    """


class BudgetExceeded(Exception):
    """A run went past its budget of simulated time, events or memory.

    The message is one line naming the budget and the value reached; the CLI
    prints it and exits with status 1, a sweep records the point as failed.
    """


#: Optional dependencies by top-level module, and the extra that installs each.
EXTRAS = {"matplotlib": "plot", "pyroute2": "kernel", "distributed": "cluster", "dask": "cluster", "pyarrow": "parquet"}


def missing_extra(e: ModuleNotFoundError) -> str | None:
    """The one-line hint for a feature whose optional dependency is missing, else None.

    The core install carries the simulator and its views; the kernel lab, Dask
    sweeps and Parquet output live in extras so that ``pip install timewait``
    stays small. Any other missing module is a real bug and is not hidden.
    """
    top = (e.name or "").partition(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return None
    return f"this needs {top}, from the '{extra}' extra: pip install 'timewait[{extra}]'"
