"""Progress bars of long runs: simulated time, events per second and an ETA, on a terminal only.

A bar is drawn on stderr, only when stderr is a terminal (:func:`wanted`): a piped or
redirected stderr (scripts, CI, tests) sees nothing, and stdout stays exactly what the
command prints (``--json`` is still one document). The bar reads the wall clock to say how fast
the run goes; the simulator itself never does (its clock is the scheduler's).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

SHOW_AFTER_S = 0.3  # a run shorter than this draws nothing (no flicker for small scenarios)


def wanted() -> bool:
    """True when a progress bar may be drawn: stderr, where it draws, is a terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


class RunProgress:
    """A bar over ``total`` units (simulated seconds by default) that appears only after
    :data:`SHOW_AFTER_S` wall seconds; ``events()`` gives the scheduler's event count
    for the events/s column.

    >>> with RunProgress("max-rate", 130.0, show=False) as bar:
    ...     bar.update(65.0)
    """

    def __init__(self, label: str, total: float, *, show: bool, events: Callable[[], int] | None = None,
                 unit: str = "s simulated") -> None:
        self.label = label
        self.total = total
        self.show = show
        self.events = events
        self.unit = unit
        self._t0 = time.monotonic()
        self._e0 = events() if events is not None else 0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[done]}"),
            TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
            console=Console(stderr=True), transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=self.total, done="", rate="")

    def update(self, done: float) -> None:
        """``done`` units of ``total`` are behind (simulated seconds, points of a sweep)."""
        if not self.show:
            return
        wall = time.monotonic() - self._t0
        if self._bar is None:
            if wall < SHOW_AFTER_S:
                return
            self._start()
        rate = ""
        if self.events is not None and wall > 0:
            rate = f"{(self.events() - self._e0) / wall:,.0f} events/s"
        self._bar.update(self._task, completed=min(done, self.total),
                         done=f"{done:,.1f}/{self.total:,.1f} {self.unit}", rate=rate)

    def close(self) -> None:
        """Remove the bar (it is transient: the terminal keeps only the report)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


_status: Any = None  # the one status bar of a kernel run: (Progress, task id)


def status(text: str, done: float | None = None, total: float | None = None) -> None:
    """A one-line status of a long wait (the kernel lab's runs), drawn as a Rich bar on a
    terminal: ``text`` with a spinner and the elapsed time, plus a bar and an ETA when
    ``done`` of ``total`` (seconds) is known. ``""`` removes it. Nothing when not wanted."""
    global _status
    if not text:
        if _status is not None:
            _status[0].stop()
            _status = None
        return
    if not wanted():
        return
    if _status is None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                       TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        bar.start()
        _status = (bar, bar.add_task(text, total=total))
    bar, task = _status
    bar.update(task, description=text, completed=done if done is not None else 0, total=total)
