"""Machine instructions per W1 lifecycle, by C function, under callgrind.

``python bench/callgrind_w1.py [--small 1000] [--large 3000] [--top 25]`` runs W1
twice under ``valgrind --tool=callgrind`` and divides the difference by the
difference in connections, so start-up and imports cancel out. Instruction
counts do not move with the machine's load (wall-clock figures here move by
up to 30 %), which makes this the figure to compare two versions of the hot path
by; the string-hash seed is fixed (``PYTHONHASHSEED=0``) so that they repeat to
the instruction. Needs ``valgrind`` (``apt install valgrind``); about a minute.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LINE = re.compile(r"\s*([\d,]+) \([^)]*\)\s+(\S.*)")


def profile(connections: int, out: Path) -> dict[str, int]:
    """Instructions by function for one W1 run of ``connections``."""
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
         str(HERE / "w1_redis.py"), "--connections", str(connections)],
        # A fixed string-hash seed: randomised dict layouts move the count by a few hundred.
        check=True, capture_output=True, timeout=900, env={**os.environ, "PYTHONHASHSEED": "0"})
    text = subprocess.run(["callgrind_annotate", "--threshold=100", str(out)], check=True,
                          capture_output=True, text=True, timeout=300).stdout
    by_fn: dict[str, int] = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m and "PROGRAM TOTALS" not in line:
            name = re.sub(r" \[.*\]$", "", m.group(2)).rpartition("/")[2]
            by_fn[name] = by_fn.get(name, 0) + int(m.group(1).replace(",", ""))
    return by_fn


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--large", type=int, default=3000)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        print("valgrind is not installed (apt install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        a = profile(args.small, Path(tmp) / "small.out")
        b = profile(args.large, Path(tmp) / "large.out")
    n = args.large - args.small
    diff = {k: (b.get(k, 0) - a.get(k, 0)) / n for k in a.keys() | b.keys()}
    total = sum(diff.values())
    print(f"W1: {total:,.0f} instructions per lifecycle ({args.small:,} vs {args.large:,} connections)\n")
    print("| C function | instructions per lifecycle | share |\n|---|---:|---:|")
    for k, v in sorted(diff.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"| `{k}` | {v:,.0f} | {100 * v / total:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
