"""py-spy profile of W1: a sampling profiler, so no per-call overhead skews the ranking.

``python bench/pyspy_w1.py [--connections 100000] [--top 20] [--raw FILE]`` runs
``w1_redis.py`` under ``py-spy record`` (``pip install py-spy``; it needs ptrace,
so root or a relaxed ``kernel.yama.ptrace_scope``) and prints the top functions
by own samples as a Markdown table, with the samples each function is on the
stack for (inclusive). Lines within a function are merged.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """``_after (timewait/sim/host.py:620)`` -> ``_after (timewait/sim/host.py)``."""
    m = FRAME.match(frame)
    return f"{m['func']} ({m['file']})" if m else frame


def aggregate(raw: str) -> tuple[Counter[str], Counter[str], int]:
    """Own and inclusive samples per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    return own, incl, total


def table(own: Counter[str], incl: Counter[str], total: int, top: int) -> str:
    lines = ["| # | function | own % | inclusive % |", "|---|---|---:|---:|"]
    for i, (f, n) in enumerate(own.most_common(top), 1):
        lines.append(f"| {i} | `{f}` | {100 * n / total:.1f} | {100 * incl[f] / total:.1f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=100_000)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--rate", type=int, default=200, help="samples per second")
    ap.add_argument("--raw", help="keep py-spy's collapsed stacks here (flamegraph.pl input)")
    args = ap.parse_args()
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        print("py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = Path(args.raw) if args.raw else Path(tmp) / "w1.txt"
        cmd = [pyspy, "record", "-r", str(args.rate), "-f", "raw", "-o", str(raw_path), "--",
               sys.executable, str(HERE / "w1_redis.py"), "--connections", str(args.connections)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if out.returncode != 0 or not raw_path.exists():
            print(f"py-spy failed (exit {out.returncode}): {out.stderr.strip()[-300:]}", file=sys.stderr)
            return 1
        own, incl, total = aggregate(raw_path.read_text())
    print(f"W1 N = {args.connections:,} under py-spy ({args.rate} Hz): {total:,} samples\n")
    print(table(own, incl, total, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
