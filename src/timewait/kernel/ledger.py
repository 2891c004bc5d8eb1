"""Who owns a lab: each run records its owner and everything it makes, so cleanup spares live labs.

A run's temporary directory is named ``timewait-kernel-<pid>-<start>-XXXX``
(``start``: the owner's start time in clock ticks since boot, field 22 of
``/proc/PID/stat``, so a reused pid is not mistaken for the owner) and holds
``lab.json``: the owner and the namespaces and root-namespace links of the
lab, each written there (atomically) *before* it is made. ``kernel cleanup``
removes a lab only when its owner is gone; a ``tw-<pid>-*`` namespace or
``tw<pid>v*`` veth in no record (an older timewait's, or made by hand) goes
when no process has that pid, or with ``--all``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

TMP_PREFIX = "timewait-kernel-"
RECORD = "lab.json"
DIR_RE = re.compile(r"^timewait-kernel-(\d+)-(\d+)-")
NS_RE = re.compile(r"^tw-(\d+)-")
VETH_RE = re.compile(r"^tw(\d+)v\d+[ab]$")


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2:].split()


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), None if there is none."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def running(pid: int) -> bool:
    """A process ``pid`` exists and is not a zombie (dead, waiting to be reaped)."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != b"Z"  # type: ignore[index]


@dataclass(frozen=True, slots=True)
class Owner:
    """A process, told apart from a later one with the same pid by its start time."""

    pid: int
    start: int

    @classmethod
    def me(cls) -> Owner:
        return cls(os.getpid(), start_time(os.getpid()) or 0)

    def alive(self) -> bool:
        return running(self.pid) and start_time(self.pid) == self.start


class Ledger:
    """The record of one lab: a fresh temp directory owned by this process, and ``lab.json`` in it."""

    def __init__(self) -> None:
        self.owner = Owner.me()
        self.dir = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{self.owner.pid}-{self.owner.start}-")
        self.namespaces: list[str] = []
        self.links: list[str] = []
        self._write()

    def add(self, namespaces: list[str] | None = None, links: list[str] | None = None) -> None:
        """Record what is about to be made (call before making it)."""
        self.namespaces += namespaces or []
        self.links += links or []
        self._write()

    def _write(self) -> None:
        doc = {"pid": self.owner.pid, "start": self.owner.start, "namespaces": self.namespaces,
               "links": self.links}
        tmp = os.path.join(self.dir, f".{RECORD}.tmp")
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, os.path.join(self.dir, RECORD))  # a reader sees the old record or the new one

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Found:
    """One lab's things on this host, and whether its owner still runs."""

    pid: int | None
    owner: Owner | None            # None: no record (an older timewait's, or made by hand)
    alive: bool
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.namespaces or self.links or self.dirs)

    def describe(self) -> str:
        parts = [", ".join(x) for x in (self.namespaces, self.links, [os.path.basename(d) for d in self.dirs]) if x]
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "recorded": self.owner is not None, "alive": self.alive,
                "namespaces": self.namespaces, "links": self.links, "dirs": self.dirs}


def _read(path: str) -> dict[str, Any]:
    try:
        with open(os.path.join(path, RECORD)) as f:
            doc = json.load(f)
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def survey(namespaces: list[str], links: list[str]) -> list[Found]:
    """Group the lab-named ``namespaces`` and root ``links`` (listed *before* this call) by owner.

    Listing them first matters: a lab records each thing before making it, so
    anything that existed then is in a record read now.
    """
    root = tempfile.gettempdir()
    labs: list[Found] = []
    recorded: set[str] = set()
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        entries = []
    for name in entries:
        path = os.path.join(root, name)
        if not name.startswith(TMP_PREFIX) or not os.path.isdir(path) or os.path.islink(path):
            continue
        m = DIR_RE.match(name)
        if m is None:  # a directory of a timewait without owner records: owner unknown
            labs.append(Found(None, None, True, dirs=[path]))
            continue
        owner = Owner(int(m.group(1)), int(m.group(2)))
        doc = _read(path)
        nss = [n for n in doc.get("namespaces", []) if n in namespaces]
        lks = [n for n in doc.get("links", []) if n in links]
        recorded.update(doc.get("namespaces", []))
        recorded.update(doc.get("links", []))
        labs.append(Found(owner.pid, owner, owner.alive(), nss, lks, [path]))
    loose: dict[int, Found] = {}
    for n in namespaces:
        if n not in recorded and (m := NS_RE.match(n)):
            pid = int(m.group(1))
            loose.setdefault(pid, Found(pid, None, running(pid))).namespaces.append(n)
    for n in links:
        if n not in recorded and (m := VETH_RE.match(n)):
            pid = int(m.group(1))
            loose.setdefault(pid, Found(pid, None, running(pid))).links.append(n)
    return labs + [loose[p] for p in sorted(loose)]
