"""The ``timewait`` command line (Typer + Rich).

Every command reports bad input as one line on stderr and exits with status 2; a
run stopped by its budget is one line too, with status 1. ``--json`` prints one
JSON document and nothing else on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

try:  # Typer >= 0.16 vendors Click as typer._click; older ones use Click itself
    from typer._click import exceptions as cx
except ImportError:  # pragma: no cover
    from click import exceptions as cx  # type: ignore[no-redef]

from timewait.errors import BudgetExceeded, UsageError, missing_extra

app = typer.Typer(
    name="timewait",
    help="A laboratory for TCP connection teardown and TIME_WAIT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    """``--version``: the version and the build (compiled hot path or pure Python), then exit."""
    if value:
        from timewait.buildinfo import describe

        print(describe())
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version,
        help="Print the version and the build (compiled: N modules / pure Python), then exit.",
    ),
) -> None:
    """A laboratory for TCP connection teardown and TIME_WAIT."""


@app.command("scenarios")
def scenarios_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the ready scenarios, one line each."""
    from timewait.scenarios import all_scenarios

    registry = all_scenarios()
    if json_out:
        print(json.dumps({n: s.summary for n, s in registry.items()}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(show_header=True, header_style="bold", box=None)
    t.add_column("scenario")
    t.add_column("what it shows")
    for name, sc in registry.items():
        t.add_row(name, sc.summary)
    Console().print(t)


@app.command("run")
def run_cmd(
    scenario: str = typer.Argument(..., help="Scenario name (see `timewait scenarios`)."),
    set_: list[str] = typer.Option([], "--set", help="Scenario parameter KEY=VALUE (repeatable)."),
    sysctl: list[str] = typer.Option(
        [], "--sysctl", help="HOST:NAME=VALUE, e.g. c1:net.ipv4.tcp_tw_reuse=1 (repeatable; HOST may be '*')."
    ),
    profile: str | None = typer.Option(
        None, "--profile", help="Kernel profile: linux, linux-4.9, rfc793, chapter (default: the scenario's)."
    ),
    fault: list[str] = typer.Option(
        [], "--fault", help="Fault rule, e.g. 'drop from=c1 flags=. len=0 nth=2' or 'hold 45 from=c1 flags=P.'."
    ),
    seed: int = typer.Option(1, "--seed", help="Seed of the run's one RNG."),
    json_out: bool = typer.Option(False, "--json", help="Print the run as one JSON document."),
    trace: bool = typer.Option(False, "--trace", help="Print every event tcpdump-style (relative sequence numbers)."),
    absolute: bool = typer.Option(False, "--absolute", "-S", help="With --trace: absolute sequence numbers, as tcpdump -S."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="With --trace: TTL and IP id on every packet, as tcpdump -v."),
    pcap: Path | None = typer.Option(None, "--pcap", help="Write the packets to a pcap file."),
    pcap_host: str | None = typer.Option(None, "--pcap-host", help="Only what this host's interface saw."),
    diagram: Path | None = typer.Option(None, "--diagram", help="Ladder diagram: FILE.svg or FILE.mmd."),
    conn: str | None = typer.Option(None, "--conn", help="Diagram one connection: PORT or ADDR:PORT."),
    window: str | None = typer.Option(None, "--window", help="Diagram a time window: START:END seconds."),
    plot: Path | None = typer.Option(None, "--plot", help="Plot sockets by state over time to FILE.png."),
    ss: float | None = typer.Option(None, "--ss", help="Print an `ss -tan -o` table at simulated time T s."),
    ss_summary: bool = typer.Option(False, "--ss-summary", help="With --ss: TIME_WAIT per remote and local address."),
    ss_all: bool = typer.Option(False, "--ss-all", help="With --ss: every row (else a big table shows its first rows and totals)."),
    sample_every: float | None = typer.Option(
        None, "--sample-every", help="Telemetry grid step in seconds (default: about 1,000 points over the run)."),
    html: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML report."),
    trace_select: str | None = typer.Option(
        None, "--trace-select", help="Which connections the trace records: all, none, first:N, host:NAME, "
        "conn:FILTER ('host A', 'port P', 'A:P-B:Q', joined by and/or). Default: all for small runs, "
        "first:200 (and those a fault touches) for big ones."),
    budget: str | None = typer.Option(
        None, "--budget", help="Limits of the run: events=N,mem=MB,time=SECONDS (each optional, 'off' lifts one; "
        "default: derived from the parameters). Past them the run stops, exit 1."),
    lang: str | None = typer.Option(
        None, "--lang", help="Language of the story, checks and captions: en or zh (default: from LANG)."
    ),
) -> None:
    """Run a scenario in the simulator."""
    from timewait.i18n import localize, resolve_lang
    from timewait.progress import wanted as progress_wanted
    from timewait.scenarios import run_scenario

    check_run_numbers(seed=seed, ss=ss, ss_summary=ss_summary, conn=conn, window=window)
    lang = resolve_lang(lang)  # before the run: a wrong --lang is one line, not a wasted run
    views = dict(pcap=pcap, pcap_host=pcap_host, diagram=diagram, conn=conn, window=window,
                 plot=plot, html=html)
    if any(v is not None for v in views.values()):
        from timewait.report.outputs import check_views

        check_views(**views, create=False)  # before the run: a bad path costs nothing, writes nothing
    # --json alone needs no trace (scenarios that measure from it keep one anyway).
    # --ss reads the census the engine takes at T during the run, not the trace.
    need_trace = not json_out or trace or any(v is not None for v in views.values())
    snapshot_rows = 0
    if html is not None:  # the report's scrubbed socket table: the engine's snapshots where the trace is partial
        from timewait.report.explorer import MAX_ROWS as snapshot_rows
    result = run_scenario(
        scenario, params=parse_assignments(set_, "--set"), sysctls=list(sysctl), profile=profile,
        seed=seed, trace=need_trace, progress=progress_wanted(), faults=list(fault), budget=budget,
        announce=lambda line: print(f"timewait: {line}", file=sys.stderr, flush=True),
        sample_every_s=sample_every, census_at=[ss] if ss is not None else None,
        census_end=ss_summary and ss is None, trace_select=trace_select,
        snapshot_rows=snapshot_rows,
    )
    result = localize(result, lang)
    messages: list[str] = []
    if any(v is not None for v in views.values()):
        from timewait.report.outputs import write_outputs

        messages = write_outputs(result, **views)
    if json_out:
        print(json.dumps(result.to_json(), indent=2, sort_keys=False))
        return
    from timewait.report.console import print_run

    print_run(result, trace=trace, ss_at=ss, ss_summary=ss_summary, messages=messages, absolute=absolute,
              verbose=verbose, lang=lang, ss_all=ss_all)
    if not result.passed:
        raise typer.Exit(1)


def check_run_numbers(*, seed: int, ss: float | None, ss_summary: bool, conn: str | None,
                      window: str | None) -> None:
    """The run's own numbers, checked before anything runs (scenario parameters check themselves)."""
    from timewait.bounds import SECONDS, SEED, finite
    from timewait.report.ladder import parse_conn, parse_window

    SEED.check(f"--seed {seed}", seed, "--seed")
    finite(f"--ss {ss}", ss, SECONDS, "T")
    if ss_summary and ss is None:
        raise UsageError("--ss-summary summarizes the --ss table: add --ss T")
    if conn is not None:
        parse_conn(conn)
    if window is not None:
        parse_window(window)


def parse_assignments(items: list[str], flag: str) -> dict[str, str]:
    """``["k=v", …]`` to a dict; a malformed item is a :class:`UsageError`."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _register_plugins() -> None:
    """Commands that live beside their subsystem (capacity, sweep, kernel, views)."""
    import importlib

    for mod in ("timewait.capacity.cli", "timewait.sweep.cli", "timewait.kernel.cli", "timewait.report.cli",
                "timewait.explain.cli", "timewait.script.cli"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        m.register(app)


_register_plugins()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning usage errors into one line and status 2."""
    try:
        rv = app(args=argv, standalone_mode=False)
    except UsageError as e:
        print(f"timewait: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        hint = missing_extra(e)
        if hint is None:
            raise
        print(f"timewait: error: {hint}", file=sys.stderr)
        return 2
    except BudgetExceeded as e:
        print(f"timewait: budget exceeded: {e}", file=sys.stderr)
        return 1
    except cx.NoSuchOption as e:
        names = sorted(o for p in (e.ctx.command.params if e.ctx else []) for o in p.opts if o.startswith("--"))
        allowed = ", ".join(e.possibilities or names) or "see --help"
        print(f"timewait: error: no such option {e.option_name}; allowed: {allowed}", file=sys.stderr)
        return 2
    except cx.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":
            print(e.format_message())
            return 0
        ctx = f" ({e.ctx.command_path})" if e.ctx else ""
        print(f"timewait: error{ctx}: {' '.join(e.format_message().split())}", file=sys.stderr)
        return 2
    except cx.ClickException as e:
        print(f"timewait: error: {' '.join(e.format_message().split())}", file=sys.stderr)
        return 2
    except typer.Abort:
        print("timewait: aborted", file=sys.stderr)
        return 130
    except typer.Exit as e:
        return e.exit_code
    except BrokenPipeError:
        return 0
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
