"""Declared ranges for every number a user can give: one validator for parameters, sysctls,
fault fields and command-line options.

A :class:`Bounds` says which values are allowed (integer or real, finite, lower and upper
bound, each inclusive or exclusive) and words its own range for the error message, so a
bad value is always one line naming the value and what is allowed, e.g.
``--set margin=1: out of range; allowed 0 < margin < 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from timewait.errors import UsageError

INT_MAX = 2**31 - 1  # a C int: the kernel's sysctl tables and counters


@dataclass(frozen=True, slots=True)
class Bounds:
    """The allowed values of one number: ``lo``/``hi`` (None = unbounded), exclusive when ``*_open``.

    Every value must be finite (NaN and infinities are never a count, a time or a port).
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def describe(self, name: str) -> str:
        """The range in words, e.g. ``0 < margin < 1``, ``an integer 1..65535``, ``sample >= 0.001``."""
        kind = "an integer" if self.integer else "a finite number"
        lo, hi = _num(self.lo), _num(self.hi)
        if self.integer and self.lo is not None and self.hi is not None and not (self.lo_open or self.hi_open):
            return f"{kind} {lo}..{hi}"
        parts = []
        if self.lo is not None and self.hi is not None:
            parts.append(f"{lo} {'<' if self.lo_open else '<='} {name} {'<' if self.hi_open else '<='} {hi}")
        elif self.lo is not None:
            parts.append(f"{name} {'>' if self.lo_open else '>='} {lo}")
        elif self.hi is not None:
            parts.append(f"{name} {'<' if self.hi_open else '<='} {hi}")
        return f"{kind}, {parts[0]}" if parts else kind

    def contains(self, v: float) -> bool:
        if not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)

    def check(self, label: str, value: Any, name: str | None = None) -> Any:
        """``value`` if allowed, else a :class:`UsageError` ``"{label}: ...; allowed ..."``.

        ``label`` names the value as the user wrote it (``--set margin=1``, ``--ss nan``);
        ``name`` is the short name used in the range (default: the label).
        """
        allowed = self.describe(name or label)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"{label}: not a number; allowed {allowed}")
        if self.integer and not isinstance(value, int):
            raise UsageError(f"{label}: not an integer; allowed {allowed}")
        if not math.isfinite(value):
            raise UsageError(f"{label}: not a finite number; allowed {allowed}")
        if not self.contains(value):
            raise UsageError(f"{label}: out of range; allowed {allowed}")
        return value

    def parse(self, label: str, text: str, name: str | None = None) -> int | float:
        """Text to a checked number (``int`` when :attr:`integer`)."""
        t = str(text).strip()
        try:
            value: int | float = int(t) if self.integer else float(t)
        except ValueError:
            raise UsageError(f"{label}: expected {self.describe(name or label)}") from None
        return self.check(label, value, name)


def _num(v: float | None) -> str:
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


# Shapes used across the project.
PORT = Bounds(1, 65535, integer=True)
COUNT = Bounds(0, integer=True)
POSITIVE_INT = Bounds(1, integer=True)
SECONDS = Bounds(0)                       # a time, 0 allowed
POSITIVE_SECONDS = Bounds(0, lo_open=True)  # a duration that must pass
SEED = Bounds(0, 2**63 - 1, integer=True)   # fits the sweep table's int64 column


def finite(label: str, value: float | None, bounds: Bounds, name: str | None = None) -> float | None:
    """Check an optional number from a typed CLI option (Click parses ``nan`` and ``inf`` as floats)."""
    if value is None:
        return None
    return bounds.check(label, value, name)
