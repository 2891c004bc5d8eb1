"""Run every benchmark, print one table, write bench/results/latest.json.

``python bench/run.py`` runs W1 at N = 10,000 / 100,000 / 1,000,000 on the
installed build (the mypyc-compiled hot path when the install compiled it; each
row says which), W1 at 100,000 again with ``TIMEWAIT_PURE_PYTHON=1`` (the pure
modules), W2 (a million concurrent TIME_WAIT entries),
W3 (the W1 workload in ns-3, side by side) and the kernel lab's inspect
benchmark. ``--quick`` skips W1 at 1,000,000 and shrinks W2. ``--only W1,pure,W3``
picks workloads. Every point runs
in a fresh subprocess with a time limit; a point that fails or times out
becomes a row saying why, and the run goes on.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# The issues' targets (14: the compiled build, and pure Python no slower than before it).
W1_RATE_TARGET = 50_000  # lifecycles per wall-second at N = 100,000, compiled build
W1_PURE_RATE_TARGET = 10_000  # the same with TIMEWAIT_PURE_PYTHON=1
FLAT_TARGET = 0.8  # rate at N = 1,000,000 over rate at N = 10,000
W2_BYTES_TARGET = 400  # bytes per TIME_WAIT entry, compiled build
W3_RATIO_TARGET = 10.0  # timewait lifecycles per wall-second over ns-3's
INSPECT_TARGET_S = 2.0  # timewait inspect census of 100,000 TIME_WAIT


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=10, cwd=HERE.parent).stdout.strip() or None
    except (subprocess.TimeoutExpired, OSError):
        commit = None
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "platform": platform.platform(), "date": datetime.date.today().isoformat(), "commit": commit}


def run_json(cmd: list[str], timeout_s: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a benchmark script that prints one JSON object as its last stdout line."""
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=HERE.parent,
                             env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    took = time.perf_counter() - t0
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {out.returncode}: {' | '.join(tail) or 'no output'}"}
    doc = json.loads(lines[-1])
    doc["process_wall_s"] = took
    return doc


def run_w1(n: int, repeat: int = 1, pure: bool = False) -> dict[str, Any]:
    """One W1 point; with ``repeat`` > 1, the run with the median wall time (each in its own process).

    ``pure`` runs it with ``TIMEWAIT_PURE_PYTHON=1`` (workload "W1 pure"); otherwise on the
    installed build, compiled or not (the row's ``compiled`` lists the modules that ran compiled).
    """
    workload = "W1 pure" if pure else "W1"
    env = {k: v for k, v in os.environ.items() if k != "TIMEWAIT_PURE_PYTHON"}
    if pure:
        env["TIMEWAIT_PURE_PYTHON"] = "1"
    runs = []
    for _ in range(repeat):
        # About 10,000 lifecycles/s pure: a generous limit that still ends a stuck run.
        doc = run_json([sys.executable, str(HERE / "w1_redis.py"), "--connections", str(n),
                        "--rate", "1000", "--ports", "3"], timeout_s=60 + n / 300, env=env)
        if "error" in doc:
            return {"workload": workload, "connections": n, **doc}
        runs.append(doc)
    runs.sort(key=lambda d: d["wall_s"])
    doc = runs[len(runs) // 2]
    if repeat > 1:
        doc["wall_s_runs"] = [d["wall_s"] for d in runs]
    return {**doc, "workload": workload, "connections": n}


def run_w2(entries: int) -> dict[str, Any]:
    doc = run_json([sys.executable, str(HERE / "w2_timewait_memory.py"), "--entries", str(entries)],
                   timeout_s=60 + entries / 300)
    return {"workload": "W2", "entries": entries, **doc}


def run_w3(n: int, timewait: dict[str, Any] | None) -> dict[str, Any]:
    """ns-3 on the W1 workload; ``timewait`` is W1's row at the same N, for the ratios."""
    # Generous: a first run installs ns3 (a ~100 MB wheel) and its import takes ~15 s.
    doc = run_json([sys.executable, str(HERE / "w3_ns3.py"), "--connections", str(n)],
                   timeout_s=1800)
    doc = {"workload": "W3", "connections": n, **doc}
    if timewait and "error" not in timewait and doc.get("lifecycles_per_s"):
        doc["ratio"] = timewait["lifecycles_per_s"] / doc["lifecycles_per_s"]
        # The same ratio in CPU seconds: less sensitive to a busy machine.
        doc["cpu_ratio"] = doc["cpu_s"] / timewait["cpu_s"]
    return doc


def run_inspect(sockets: int) -> dict[str, Any]:
    """The kernel lab's bench_inspect.py (root and network namespaces needed)."""
    if os.geteuid() != 0:
        return {"workload": "inspect", "sockets": sockets, "error": "needs root (network namespaces)"}
    cmd = [sys.executable, str(HERE / "bench_inspect.py"), "--sockets", str(sockets)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return {"workload": "inspect", "sockets": sockets, "error": "timed out after 900 s"}
    census = re.search(r"census \(in-process\): ([\d.]+) s", out.stdout)
    cli = re.search(r"--json: ([\d.]+) s wall", out.stdout)
    made = re.search(r"made \d+ TIME_WAIT sockets in ([\d.]+) s", out.stdout)
    if out.returncode != 0 or not census:
        tail = (out.stderr or out.stdout).strip().splitlines()[-2:]
        return {"workload": "inspect", "sockets": sockets, "error": f"exit {out.returncode}: {' | '.join(tail)}"}
    return {"workload": "inspect", "sockets": sockets, "census_s": float(census.group(1)),
            "cli_s": float(cli.group(1)) if cli else None,
            "fill_s": float(made.group(1)) if made else None}


def verdicts(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each target: the measured figure and whether it is met (None when not measured)."""
    w1 = {r["connections"]: r for r in rows if r["workload"] == "W1" and "error" not in r}
    out: dict[str, dict[str, Any]] = {}

    def put(name: str, value: float | None, target: float, higher_is_better: bool) -> None:
        met = None if value is None else (value >= target if higher_is_better else value <= target)
        out[name] = {"value": value, "target": target, "higher_is_better": higher_is_better, "met": met}

    r100 = w1.get(100_000)
    put("W1 lifecycles/s at N=100,000 (compiled)", r100 and r100["lifecycles_per_s"], W1_RATE_TARGET, True)
    if r100 and not r100.get("compiled"):
        out["W1 lifecycles/s at N=100,000 (compiled)"].update(met=None, note="the install is pure Python")
    pure = next((r for r in rows if r["workload"] == "W1 pure" and "error" not in r), None)
    put("W1 pure lifecycles/s at N=100,000", pure and pure["lifecycles_per_s"], W1_PURE_RATE_TARGET, True)
    r10, r1m = w1.get(10_000), w1.get(1_000_000)
    flat = r10 and r1m and r1m["lifecycles_per_s"] / r10["lifecycles_per_s"]
    put("W1 rate(1M) / rate(10k)", flat or None, FLAT_TARGET, True)
    w2 = next((r for r in rows if r["workload"] == "W2" and "error" not in r), None)
    put("W2 bytes per TIME_WAIT", w2 and w2["bytes_per_entry"], W2_BYTES_TARGET, False)
    if w2 and w2["entries"] < 1_000_000:
        # The target is for a million entries; a smaller run carries a fixed start-up cost per entry.
        out["W2 bytes per TIME_WAIT"].update(met=None, note=f"only {w2['entries']:,} entries (--quick)")
    w3 = next((r for r in rows if r["workload"] == "W3" and "ratio" in r), None)
    put("W3 timewait / ns-3 lifecycles/s", w3 and w3["ratio"], W3_RATIO_TARGET, True)
    ins = next((r for r in rows if r["workload"] == "inspect" and "error" not in r), None)
    put("inspect census of 100k TIME_WAIT (s)", ins and ins["census_s"], INSPECT_TARGET_S, False)
    return out


def fmt(v: Any, spec: str = ",.0f") -> str:
    return "" if v is None else format(v, spec)


def render(rows: list[dict[str, Any]], targets: dict[str, dict[str, Any]], console: Console) -> None:
    t = Table(title="timewait benchmarks")
    for col, just in [("workload", "left"), ("point", "left"), ("wall s", "right"), ("CPU s", "right"),
                      ("lifecycles/s", "right"), ("events/s", "right"), ("peak RSS MiB", "right"),
                      ("other", "left")]:
        t.add_column(col, justify=just, no_wrap=col != "other")  # type: ignore[arg-type]
    for r in rows:
        w = r["workload"]
        if "error" in r:
            point = f"N={r.get('connections') or r.get('entries') or r.get('sockets'):,}"
            t.add_row(w, point, "", "", "", "", "", f"[red]not measured: {r['error'][:160]}[/red]")
            continue
        if w in ("W1", "W1 pure"):
            other = "all answered" if r["ok"] else f"[red]{r['succeeded']:,} answered[/red]"
            if r.get("wall_s_runs"):
                rates = sorted(r["connections"] / s for s in r["wall_s_runs"])
                other += f"; median of {len(rates)} runs ({' / '.join(fmt(x) for x in rates)} /s)"
            other += f"; {len(r['compiled'])} modules compiled" if r.get("compiled") else "; pure Python"
            if w == "W1 pure":
                comp = next((x for x in rows if x["workload"] == "W1" and x["connections"] == r["connections"]
                             and "error" not in x and x.get("compiled")), None)
                if comp:
                    other += f"; compiled is {comp['lifecycles_per_s'] / r['lifecycles_per_s']:.1f}x this"
            t.add_row(w, f"N={r['connections']:,}", fmt(r["wall_s"], ".1f"), fmt(r["cpu_s"], ".1f"),
                      fmt(r["lifecycles_per_s"]), fmt(r["events_per_s"]), fmt(r["peak_rss_mib"], ".0f"), other)
        elif w == "W2":
            t.add_row(w, f"{r['entries']:,} TIME_WAIT", fmt(r["wall_s"], ".1f"), fmt(r["cpu_s"], ".1f"),
                      "", "", fmt(r["peak_rss_mib"], ".0f"),
                      f"{r['bytes_per_entry']:.0f} B/entry (RSS growth); "
                      f"{r.get('tracemalloc_bytes_per_entry', 0):.0f} B/entry (tracemalloc)")
        elif w == "W3":
            ratio = (f"timewait/ns-3 = {r['ratio']:.1f}x per wall-s, {r['cpu_ratio']:.1f}x per CPU-s; "
                     if "ratio" in r else "")
            ratio += f"{r['time_wait']:,} TIME_WAIT at the end" if "time_wait" in r else ""
            t.add_row("W3 ns-3", f"N={r['connections']:,}", fmt(r["wall_s"], ".1f"), fmt(r.get("cpu_s"), ".1f"),
                      fmt(r["lifecycles_per_s"]), fmt(r.get("events_per_s")), fmt(r.get("peak_rss_mib"), ".0f"),
                      f"{ratio}; ns3 {r.get('ns3_version', '?')}")
        elif w == "inspect":
            t.add_row("inspect", f"{r['sockets']:,} TIME_WAIT", fmt(r["census_s"], ".2f"), "", "", "", "",
                      f"census in-process; CLI {fmt(r.get('cli_s'), '.2f')} s with start-up; "
                      f"made in {fmt(r.get('fill_s'), '.1f')} s (kernel, loopback)")
    console.print(t)
    tt = Table(title="targets")
    for col in ("target", "measured", "wanted", "met"):
        tt.add_column(col)
    for name, v in targets.items():
        want = (">= " if v["higher_is_better"] else "<= ") + fmt(v["target"], ",g")
        met = {True: "[green]yes[/green]", False: "[red]no[/red]", None: v.get("note", "not measured")}[v["met"]]
        tt.add_row(name, fmt(v["value"], ",.2f"), want, met)
    console.print(tt)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip W1 at N = 1,000,000; W2 with 200,000 entries")
    ap.add_argument("--only", default="W1,pure,W2,W3,inspect", help="comma-separated: W1,pure,W2,W3,inspect")
    args = ap.parse_args()
    only = {w.strip().lower() for w in args.only.split(",")}
    # Piped output keeps a readable width instead of Rich's 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 170)
    rows: list[dict[str, Any]] = []

    def step(label: str, fn: Any, *a: Any) -> dict[str, Any]:
        with console.status(f"{label} ..."):
            r = fn(*a)
        rows.append(r)
        console.log(f"{label}: " + (f"[red]{r['error']}[/red]" if "error" in r else "done"))
        return r

    w1_10k = None
    w1_points = (10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000)
    if "w1" not in only:
        w1_points = (10_000,) if "w3" in only else ()  # W3's ratio needs W1 at N = 10,000
    for n in w1_points:
        # Runs on this shared 2-core VM move by up to 30 % within minutes: the median of three
        # separate runs (all three are printed); the 1,000,000 point (2 minutes) runs once.
        r = step(f"W1 N={n:,}", run_w1, n, 3 if n <= 100_000 else 1)
        if n == 10_000:
            w1_10k = r
    if "pure" in only:
        step("W1 pure N=100,000", run_w1, 100_000, 3, True)
    if "w2" in only:
        step("W2", run_w2, 200_000 if args.quick else 1_000_000)
    if "w3" in only:
        step("W3 ns-3 N=10,000", run_w3, 10_000, w1_10k)
    if "inspect" in only:
        step("inspect 100k TIME_WAIT", run_inspect, 100_000)
    targets = verdicts(rows)
    render(rows, targets, console)
    RESULTS.mkdir(exist_ok=True)
    doc = {"machine": machine(), "quick": args.quick, "rows": rows, "targets": targets}
    (RESULTS / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    console.print(f"wrote {(RESULTS / 'latest.json').relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
