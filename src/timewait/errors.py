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
