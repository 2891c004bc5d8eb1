"""The error simulated socket calls raise.

A module of its own: the hot-path modules stay compilable by mypyc (which cannot make a native
class of an ``OSError`` subclass) while this one stays plain Python.
"""

from __future__ import annotations


class SocketError(OSError):
    """A socket call failed; ``errno_name`` is Linux's name for it (``EADDRNOTAVAIL``…)."""

    def __init__(self, errno_name: str, call: str = "") -> None:
        super().__init__(f"{call}: {errno_name}" if call else errno_name)
        self.errno_name = errno_name
