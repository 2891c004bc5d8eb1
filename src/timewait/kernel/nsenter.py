"""Doing things inside a network namespace from this process.

``setns(2)`` moves only the calling thread, and a socket stays in the namespace
it was created in, so a block of code can enter a namespace, create sockets or
open ``/proc/sys`` and ``/proc/thread-self/net`` files there, and come back.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pyroute2 import netns as pr_netns

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_local = threading.local()


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def ns_path(name: str) -> str:
    """Where ``ip netns`` (and pyroute2) bind-mount a named namespace."""
    return os.path.join(pr_netns.NETNS_RUN_DIR, name)


@contextmanager
def inside(name: str | None) -> Iterator[None]:
    """Run the block with this thread in namespace ``name`` (None: stay where we are)."""
    if name is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(ns_path(name), os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


@contextmanager
def fresh_netns() -> Iterator[None]:
    """Run the block with this thread in a new, empty, unnamed network namespace.

    Nothing names it (no bind mount under /run/netns), so the kernel frees it as
    soon as the thread leaves, however the process ends: it cannot be left behind.
    Needs CAP_SYS_ADMIN (OSError otherwise).
    """
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def socket_in(name: str | None, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM,
              proto: int = 0) -> socket.socket:
    """A socket created in namespace ``name``."""
    with inside(name):
        return socket.socket(family, kind, proto)


def read_text(name: str | None, path: str) -> str:
    """A ``/proc`` file as seen from namespace ``name`` (use ``/proc/thread-self/net/...``)."""
    with inside(name), open(path) as f:
        return f.read()


def sysctl_path(sysctl: str) -> str:
    return "/proc/sys/" + sysctl.replace(".", "/")


def read_sysctl(name: str | None, sysctl: str) -> str:
    """``sysctl -n NAME`` inside namespace ``name`` (OSError if it does not exist)."""
    return read_text(name, sysctl_path(sysctl)).strip()


def write_sysctl(name: str | None, sysctl: str, value: str) -> None:
    """``sysctl -w NAME=VALUE`` inside namespace ``name``."""
    with inside(name), open(sysctl_path(sysctl), "w") as f:
        f.write(str(value))
