"""Issue 11's views target: ``run port-exhaustion --plot F --ss 30 --html F`` against the same run
without views, whole command, medians of three (each run a fresh process).

``python bench/bench_views.py [--runs 3]`` prints one JSON line: the wall times of each run, the
medians and their ratio (target: at most 1.5). Needs the ``plot`` extra (matplotlib).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(args: list[str]) -> float:
    """Wall seconds of ``python -m timewait ARGS`` (output discarded; a failure stops the bench)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "timewait", *args], check=True, timeout=600,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        plain = ["run", "port-exhaustion"]
        views = [*plain, "--plot", str(out / "pe.png"), "--ss", "30", "--html", str(out / "pe.html")]
        bare, full = [], []
        for _ in range(a.runs):  # interleaved, so a phase of the machine hits both alike
            bare.append(timed(plain))
            full.append(timed(views))
    mb, mf = statistics.median(bare), statistics.median(full)
    print(json.dumps({"bench": "views", "plain_s": bare, "views_s": full, "plain_median_s": round(mb, 2),
                      "views_median_s": round(mf, 2), "ratio": round(mf / mb, 2), "target": 1.5,
                      "met": mf / mb <= 1.5}))


if __name__ == "__main__":
    main()
