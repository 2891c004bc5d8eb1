"""Run a command with its output on a pseudo-terminal (for the progress bars' tests)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path


def read_terminal(args: list[str], *, env: dict[str, str], cwd: Path, stdout_on_tty: bool = True,
                  limit_s: float = 300) -> tuple[int, str]:
    """Run ``args`` with stderr (and stdout, unless ``stdout_on_tty`` is False: then it is
    discarded) on a pseudo-terminal; return its exit status and what the terminal showed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=slave if stdout_on_tty else subprocess.DEVNULL,
                            stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + limit_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        rc = proc.wait(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return rc, seen.decode(errors="replace")
