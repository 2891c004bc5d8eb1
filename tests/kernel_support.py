"""What the kernel-lab tests share: whether the lab can run here, and why not."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest


@functools.cache
def lab_missing() -> str | None:
    """Why the kernel lab cannot run here (None: it can), found by trying."""
    if sys.platform != "linux":
        return "not Linux"
    from timewait.kernel.topology import KernelLab, KernelUnavailable, require_lab

    try:
        require_lab()
        with KernelLab(prefix=f"tw-{os.getpid()}-probe-") as k:
            k.add_host("x")
    except KernelUnavailable as e:
        return str(e)
    except OSError as e:
        return f"cannot create a network namespace: {e}"
    return None


@contextlib.contextmanager
def kernel_lab() -> Iterator[Any]:
    """A fresh :class:`~timewait.kernel.topology.KernelLab` (closed after), or the test skipped
    with the reason the lab cannot run here."""
    reason = lab_missing()
    if reason:
        pytest.skip(reason)
    from timewait.kernel.topology import KernelLab

    with KernelLab() as k:
        yield k
