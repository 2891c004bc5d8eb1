"""User-facing errors: one line, exit status 2, never a traceback."""


class UsageError(Exception):
    """Bad input from the user (flag, scenario, sysctl, parameter or file).

    The message names what is wrong and what is allowed.
    """
