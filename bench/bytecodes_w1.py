"""Bytecodes and Python calls per W1 lifecycle, by function (exact counts, not timing).

``python bench/bytecodes_w1.py [--connections 3000] [--top 25]`` runs W1 under a
``sys.settrace`` opcode tracer (very slow: keep N small) and prints, per function,
the bytecodes it executed and how often it was called, both per lifecycle. Counts
do not depend on the machine or its load, so a change to the hot path can be
judged by them where wall-clock figures are noisy.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from types import FrameType
from typing import Any

from w1_redis import build_lab


def count(connections: int) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """Run W1 with ``connections`` under the tracer: (bytecodes, calls) per (file, function)."""
    lab = build_lab(connections, 1000, 3)
    ops: Counter[tuple[str, str]] = Counter()
    calls: Counter[tuple[str, str]] = Counter()

    def tracer(frame: FrameType, event: str, _: Any) -> Any:
        code = frame.f_code
        key = (code.co_filename.rpartition("/src/")[2] or code.co_filename, code.co_name)
        if event == "call":
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
            calls[key] += 1
        elif event == "opcode":
            ops[key] += 1
        return tracer

    sys.settrace(tracer)
    try:
        lab.scenario.fn(lab)
    finally:
        sys.settrace(None)
    return ops, calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=3000)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    n = args.connections
    ops, calls = count(n)
    print(f"W1 N = {n:,}: {sum(ops.values()) / n:,.0f} bytecodes and "
          f"{sum(calls.values()) / n:,.0f} Python calls per lifecycle\n")
    print("| function | bytecodes per lifecycle | calls per lifecycle |\n|---|---:|---:|")
    for (file, func), v in ops.most_common(args.top):
        print(f"| `{func}` ({file}) | {v / n:,.0f} | {calls[(file, func)] / n:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
