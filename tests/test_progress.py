"""Progress on long runs (issue 11 item 7): a bar with simulated time, events/s and an ETA on
a terminal, for max-rate too (its two runs used to be silent for ~14 s); nothing when stderr
is piped, and ``--json`` stays one JSON document."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pty_support import read_terminal

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TERM": "xterm", "COLUMNS": "120",
       "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
ENV.pop("NO_COLOR", None)
# A narrower port range: the same two runs (under and over the limit), a few seconds long.
MAX_RATE = [sys.executable, "-m", "timewait", "run", "max-rate", "--set", "ports=40000-51999"]


def _read_terminal(args: list[str]) -> tuple[int, str]:
    """Run ``args`` with stdout and stderr on a pseudo-terminal; its exit status and output."""
    return read_terminal(args, env=ENV, cwd=REPO)


def test_max_rate_draws_a_progress_bar_on_a_terminal():
    rc, text = _read_terminal(MAX_RATE)
    assert rc == 0, text[-2000:]
    # Both runs, each with simulated time against its end, events/s and an ETA.
    assert "max-rate (under)" in text and "max-rate (over)" in text
    assert "events/s" in text and "s simulated" in text and "ETA" in text
    assert "all checks passed" in text


def test_no_bar_when_piped_and_json_stays_one_document():
    p = subprocess.run([*MAX_RATE, "--json"], capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "events/s" not in p.stderr and "\r" not in p.stderr and "\x1b" not in p.stderr
    doc = json.loads(p.stdout)  # the whole of stdout is one document
    assert doc["scenario"] == "max-rate"


def test_the_kernel_labs_status_is_a_bar_with_an_eta_on_a_terminal():
    # progress_line, the kernel scenarios' status during their waits, draws timewait.progress.status.
    code = ("import time\nfrom timewait.kernel.scenarios import progress_line\n"
            "for i in range(8):\n    progress_line(f'port-exhaustion: {i} s', i, 8); time.sleep(0.1)\n"
            "progress_line('')\n")
    rc, text = _read_terminal([sys.executable, "-c", code])
    assert rc == 0 and "port-exhaustion: 7 s" in text and "ETA" in text
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert p.returncode == 0 and p.stderr == "" and p.stdout == ""  # piped: nothing at all
