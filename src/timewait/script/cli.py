"""``timewait script FILE|DIR…``: packetdrill scripts on the simulator, the kernel, or both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from timewait.errors import UsageError
from timewait.script.engine import Observation, Verdict, check, play
from timewait.script.parse import Script, Unsupported, parse_file


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; a directory stands for its ``*.pkt`` files, sorted."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(p.glob("*.pkt"))
            if not found:
                raise UsageError(f"{p}: no *.pkt scripts in this directory")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise UsageError(f"{p}: no such file or directory; expected a .pkt script or a directory of them")
    return out


def load(path: Path, skip_foreign: bool = False) -> Script | Unsupported:
    """The parsed and checked script, or why it cannot run (ScriptError propagates: exit 2)."""
    try:
        s = parse_file(path, skip_foreign)
        check(s)
        return s
    except Unsupported as u:
        return u


def run_one(loaded: Script | Unsupported, path: Path, stack: str, tolerance_us: int | None,
            keep_going: bool = False) -> Verdict:
    if isinstance(loaded, Unsupported):
        return Verdict(str(path), stack, "UNSUPPORTED", loaded.line, loaded.what)
    if stack == "sim":
        from timewait.script.sim_runner import SimStack

        return play(loaded, SimStack(), tolerance_us, keep_going)
    from timewait.script.kernel_runner import KernelStack

    return play(loaded, KernelStack(), tolerance_us, keep_going)


def divergence(a: Verdict, b: Verdict, tol_s: float) -> dict[str, Any] | None:
    """Where two runs part ways: the first observation that differs (or is missing) on one side."""
    first: dict[str, Any] | None = None
    count = 0
    for i in range(max(len(a.seen), len(b.seen))):
        x = a.seen[i] if i < len(a.seen) else None
        y = b.seen[i] if i < len(b.seen) else None
        if x is None or y is None or x.key != y.key or _late(a, i, y, b, tol_s):
            count += 1
            if first is None:
                first = {"index": i, a.stack: _obs(x), b.stack: _obs(y)}
    if first is None and (a.verdict != b.verdict or a.line != b.line):
        first, count = {"index": len(a.seen), a.stack: a.summary(), b.stack: b.summary()}, 1
    if first is not None:
        first["differing"] = count
    return first


def _late(a: Verdict, i: int, y: Observation, b: Verdict, tol_s: float) -> bool:
    """A packet's delay after the observation before it differs by more than the tolerance
    (absolute times would count every late wake-up of a loaded machine's real clock)."""
    x = a.seen[i]
    if not x.text.startswith(">") or i == 0:
        return False
    return abs((x.t - a.seen[i - 1].t) - (y.t - b.seen[i - 1].t)) > tol_s


# Kernel counters the engine does not model, left out of the comparison (docs/scripts.md, "Counters
# that move differently"): the kernel's --json still shows them; the simulator never has them.
NOT_MODELLED = {
    "TcpExtTCPHPHits": "data on the fast path needs skb truesize <= sk_forward_alloc (socket memory)",
    "TcpExtTCPHPAcks": "an ACK riding on fast-path data: the same memory condition",
    "TcpExtTCPRcvCoalesce": "skb coalescing in the receive queue (skb layout)",
    "TcpExtTCPDSACKOldSent": "the engine sends no D-SACK block",
}


def counter_diff(a: Verdict, b: Verdict) -> dict[str, tuple[int, int]]:
    """Counters that moved differently: name -> (simulator, kernel); :data:`NOT_MODELLED` left out."""
    names = sorted((set(a.counters) | set(b.counters)) - NOT_MODELLED.keys())
    return {n: (a.counters.get(n, 0), b.counters.get(n, 0)) for n in names
            if a.counters.get(n, 0) != b.counters.get(n, 0)}


def _obs(o: Observation | None) -> str:
    return "nothing" if o is None else f"{o.text} at {o.t:.6f} s (line {o.line})"


def script_cmd(
    paths: list[Path] = typer.Argument(..., help="Scripts (.pkt) or directories of them."),
    kernel: bool = typer.Option(False, "--kernel", help="Run on the real kernel (root: a network namespace and a TUN device)."),
    diff: bool = typer.Option(False, "--diff", help="Run on both stacks and show where they part ways."),
    json_out: bool = typer.Option(False, "--json", help="Print the verdicts as one JSON document."),
    tolerance: float | None = typer.Option(None, "--tolerance", help="Timing tolerance in ms (default: the script's, else 4)."),
    keep_going: bool = typer.Option(False, "--keep-going", help="After a FAIL play the rest of the script (the verdict is the first FAIL; --diff then compares everything both stacks did)."),
    skip_foreign: bool = typer.Option(False, "--skip-foreign", help="Leave out shell commands other than sysctl and sysctls outside net.ipv4/net.core (a FreeBSD suite's net.inet.*, sockstat, tcpdrop) instead of UNSUPPORTED."),
) -> None:
    """Run packetdrill-syntax scripts: PASS, FAIL (first mismatching line) or UNSUPPORTED."""
    if kernel and diff:
        raise UsageError("--kernel and --diff: choose one (--diff runs both stacks)")
    if tolerance is not None and not 0 <= tolerance <= 10_000:
        raise UsageError(f"--tolerance {tolerance}: expected milliseconds, 0..10000")
    tol_us = None if tolerance is None else int(tolerance * 1000)
    files = expand(paths)
    loaded = [(p, load(p, skip_foreign)) for p in files]  # every script checked before anything runs
    stacks = ["sim", "kernel"] if diff else ["kernel" if kernel else "sim"]
    if "kernel" in stacks:
        from timewait.kernel.topology import require_lab

        require_lab()
    rows: list[dict[str, Any]] = []
    all_pass = True
    for path, sc in loaded:
        verdicts = {st: run_one(sc, path, st, tol_us, keep_going) for st in stacks}
        row: dict[str, Any] = {"script": str(path), **{st: v.to_json() for st, v in verdicts.items()}}
        all_pass &= all(v.passed for v in verdicts.values())
        if diff:
            tol_s = (tol_us if tol_us is not None else getattr(sc, "tolerance_usecs", None) or 4000) / 1e6
            row["divergence"] = divergence(verdicts["sim"], verdicts["kernel"], tol_s)
            row["counters_differ"] = counter_diff(verdicts["sim"], verdicts["kernel"])
        rows.append(row)
        if not json_out:
            _print_row(path, verdicts, row.get("divergence"), diff, row.get("counters_differ"))
    if json_out:
        print(json.dumps({"stacks": stacks, "scripts": rows, "passed": all_pass}, indent=2))
    elif diff and len(rows) > 1:
        _print_table(rows)
    if not all_pass:
        raise typer.Exit(1)


def _print_row(path: Path, verdicts: dict[str, Verdict], d: dict[str, Any] | None, diff: bool,
               counters: dict[str, tuple[int, int]] | None) -> None:
    if not diff:
        v = next(iter(verdicts.values()))
        print(f"{v.verdict:<11} {path}" + ("" if v.passed else "\n    " + v.summary().replace("\n", "\n    ")))
        return
    s, k = verdicts["sim"], verdicts["kernel"]
    same = "agree" if d is None else "DIFFER"
    print(f"{same:<7} {path}: simulator {s.verdict}, kernel {k.verdict}")
    for v in (s, k):
        if not v.passed:
            print(f"    {v.stack}: " + v.summary().replace("\n", "\n    "))
    if d is not None:
        more = f"; {d['differing'] - 1} more differ" if d["differing"] > 1 else ""
        print(f"    first divergence (observation #{d['index']}{more}):\n"
              f"      simulator: {d['sim']}\n      kernel:    {d['kernel']}")
    if counters:
        print("    counters (simulator, kernel): " + ", ".join(f"{n} {s_} {k_}" for n, (s_, k_) in counters.items()))


def _print_table(rows: list[dict[str, Any]]) -> None:
    w = max(len(Path(r["script"]).name) for r in rows)
    print(f"\n{'script':<{w}}  {'simulator':<11} {'kernel':<11} stacks")
    for r in rows:
        print(f"{Path(r['script']).name:<{w}}  {r['sim']['verdict']:<11} {r['kernel']['verdict']:<11} "
              f"{'agree' if r['divergence'] is None else 'differ'}")


def register(app: typer.Typer) -> None:
    """Add the ``script`` command to the ``timewait`` app."""
    app.command("script")(script_cmd)
