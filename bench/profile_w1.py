"""cProfile of W1 (redis-short-connections, 1,000/s, 3 server ports, no trace).

``python bench/profile_w1.py [--connections 100000] [--top 20] [--out FILE]``
prints the top functions by own time (tottime) as a Markdown table, ready to
paste into bench/README.md, and optionally dumps the raw stats to FILE (read it
with ``python -m pstats FILE`` or snakeviz).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from w1_redis import build_lab  # noqa: E402


def short_path(filename: str) -> str:
    """``.../src/timewait/sim/host.py`` -> ``timewait/sim/host.py``; builtins unchanged."""
    marker = os.sep + "timewait" + os.sep
    i = filename.rfind(marker)
    return filename[i + 1:] if i >= 0 else os.path.basename(filename)


def top_table(stats: pstats.Stats, top: int) -> str:
    """The ``top`` functions by tottime as Markdown rows."""
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    lines = ["| # | function | calls | tottime s | % | cumtime s |", "|---|---|---:|---:|---:|---:|"]
    for i, ((file, line, func), (_cc, nc, tt, ct, _callers)) in enumerate(rows, 1):
        where = f"{short_path(file)}:{line}" if line else short_path(file)
        lines.append(f"| {i} | `{func}` ({where}) | {nc:,} | {tt:.2f} | {100 * tt / total:.1f} | {ct:.2f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=100_000)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--out", help="also write the raw pstats here")
    args = ap.parse_args()
    lab = build_lab(args.connections, 1000.0, 3)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.runcall(lab.scenario.fn, lab)
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    if args.out:
        stats.dump_stats(args.out)
    print(f"W1 N = {args.connections:,} under cProfile: {wall:.1f} s wall "
          f"({stats.total_tt:.1f} s profiled), {lab.sim.sched.events:,} events\n")  # type: ignore[attr-defined]
    print(top_table(stats, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
