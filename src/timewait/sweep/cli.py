"""``timewait sweep SPEC.toml``: run a parameter sweep and write its table and plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from timewait.errors import UsageError
from timewait.sweep import DEFAULT_CACHE, SweepReport, SweepSpec, check_extras, load_spec, run_sweep


def sweep_cmd(
    spec_file: Annotated[Path | None, typer.Argument(help="The sweep spec (TOML, see docs/sweep.md).")] = None,
    example: Annotated[str | None, typer.Option("--example", help="Run a spec shipped with timewait (see --examples), writing into this folder.")] = None,
    examples: Annotated[bool, typer.Option("--examples", help="List the shipped example specs.")] = False,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Run on an existing Dask cluster: tcp://HOST:PORT.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Local worker processes (default: one per core); 1 runs in this process.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the CSV, Parquet and plot into DIR (file names from the spec).")] = None,
    cache: Annotated[Path | None, typer.Option("--cache", help="Cache folder (default: .sweep-cache next to the spec).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache: run every point.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of text.")] = False,
) -> None:
    """Run one scenario over a grid of parameters, sysctls, profiles and seeds.

    Exit status 1 when any point failed (its parameters and error are listed).
    """
    if examples:
        for name, first in shipped_examples().items():
            print(f"{name:20} {first}")
        return
    base = None
    if example is not None:
        if spec_file is not None:
            raise UsageError("give a spec file or --example NAME, not both")
        found = shipped_examples()
        if example not in found:
            raise UsageError(f"--example {example!r}: no such example; shipped: {', '.join(found)}")
        spec_file = EXAMPLES / f"{example}.toml"
        base = Path.cwd()  # outputs and the cache go where the user is, never into the package
        if cache is None and not no_cache:
            cache = base / DEFAULT_CACHE
    if spec_file is None:
        raise UsageError("give a sweep spec file, or --example NAME (--examples lists them)")
    if scheduler is not None and workers is not None:
        raise UsageError("--workers is for local runs; a --scheduler cluster has its own workers")
    if no_cache and cache is not None:
        raise UsageError("give --cache DIR or --no-cache, not both")
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file; expected a folder (created if missing)")
    spec = load_spec(spec_file, out_dir=out, base=base)
    no_plot = False
    if example is not None and spec.plot is not None:
        import dataclasses
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:  # a shipped example's plot is a bonus
            spec, no_plot = dataclasses.replace(spec, plot=None), True
    check_extras(spec)
    _check_paths(spec, out, None if no_cache else cache if cache is not None else spec.path.parent / DEFAULT_CACHE)
    report = run_sweep(spec, scheduler=scheduler, workers=workers, cache_dir=cache,
                       use_cache=not no_cache)
    if no_plot:
        print("timewait: no plot: that needs matplotlib, from the 'plot' extra (pip install 'timewait[plot]')",
              file=sys.stderr)
    if json_out:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_summary(report)
    if report.failed:
        raise typer.Exit(1)


def _check_paths(spec: SweepSpec, out: Path | None, cache: Path | None) -> None:
    """Every file and folder the sweep writes, checked before any point runs (one line, exit 2)."""
    from timewait.report.outputs import prepare_outputs

    files: list[tuple[str, Path | None, tuple[str, ...] | None]] = [
        ("[output] csv", spec.csv, None), ("[output] parquet", spec.parquet, None),
        ("[output] plot", spec.plot.file if spec.plot is not None else None, None)]
    prepare_outputs(files, [("--out", out), ("--cache", cache)], create=False)


def print_summary(report: SweepReport) -> None:
    """What ran, what came from the cache, what failed and with which parameters, what was written."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    n = len(report.outcomes)
    status = "[red]" if report.failed else "[green]"
    console.print(
        f"{report.spec.scenario}: {n} points, {report.computed} computed, {report.cached} from cache, "
        f"{status}{report.failed} failed[/] ({'local processes' if report.where == 'local' else 'Dask at ' + report.where})"
    )
    for o in report.failures:
        err = report.error_of(o)
        console.print(f"  [red]failed[/] point {o.point.index}: {escape(o.point.label())}\n    {escape(err)}")
    for p in report.written:
        console.print(f"  wrote {escape(_rel(p))}")
    for m in report.messages:
        console.print(f"  [yellow]{escape(m)}[/]")


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


EXAMPLES = Path(__file__).parent.parent / "examples"


def shipped_examples() -> dict[str, str]:
    """The example specs shipped in the package: name -> its first comment line."""
    out = {}
    for f in sorted(EXAMPLES.glob("*.toml")):
        first = next((ln.lstrip("# ").strip() for ln in f.read_text().splitlines() if ln.startswith("#")), "")
        out[f.stem] = first
    return out


def register(app: typer.Typer) -> None:
    """Add the ``sweep`` command to the ``timewait`` app."""
    app.command("sweep")(sweep_cmd)
