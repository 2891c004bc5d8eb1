"""``timewait kernel run|compare|cleanup|scenarios`` and ``timewait inspect``."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from timewait.errors import UsageError

kernel_app = typer.Typer(help="The kernel lab: scenarios in real network namespaces, compared with the simulator.",
                         no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _assignments(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _err(messages: list[str]) -> None:
    for m in messages:
        print(m, file=sys.stderr)


@kernel_app.command("run")
def run_cmd(
    scenario: Annotated[str, typer.Argument(help="Scenario name (see `timewait kernel scenarios`).")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Scenario parameter KEY=VALUE (repeatable).")] = None,
    sysctl: Annotated[list[str] | None, typer.Option("--sysctl", help="HOST:NAME=VALUE written inside HOST's namespace.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Recorded for symmetry with the simulator (the kernel has no seed).")] = 1,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run as one JSON document.")] = False,
    pcap: Annotated[Path | None, typer.Option("--pcap", help="Capture with tcpdump into this file.")] = None,
    pcap_host: Annotated[str | None, typer.Option("--pcap-host", help="Host whose eth0 to capture (default: first).")] = None,
) -> None:
    """Run a scenario on the running kernel, in network namespaces made for it and removed after."""
    from timewait.bounds import SEED
    from timewait.kernel.scenarios import run_kernel
    from timewait.report.outputs import prepare_outputs

    SEED.check(f"--seed {seed}", seed, "--seed")
    prepare_outputs([("--pcap", pcap, None)])  # before the lab is built: tcpdump writes it, in a folder that exists
    messages: list[str] = []
    result = run_kernel(scenario, params=_assignments(set_ or []), sysctls=list(sysctl or []), seed=seed,
                        pcap=str(pcap) if pcap else None, pcap_host=pcap_host,
                        progress=not json_out and sys.stderr.isatty(), messages=messages)
    if json_out:
        _err(messages)
        print(json.dumps(result.to_json(), indent=2))
        return
    _print_run(result, messages)
    if not result.passed:
        raise typer.Exit(1)


def _print_run(result: Any, messages: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from timewait.kernel.compare import short

    con = Console(highlight=False, soft_wrap=True)
    title = Text(result.scenario, style="bold")
    title.append(f"  on {result.profile}, {result.sim_time:g} s", style="dim")
    con.print(title)
    if result.params:
        con.print(Text("params: " + " ".join(f"{k}={v}" for k, v in result.params.items()), style="dim"))
    t = Table(box=None, header_style="bold")
    t.add_column("host")
    t.add_column("sockets at the end")
    for h, snap in result.hosts.items():
        t.add_row(h, "  ".join(f"{k} {v}" for k, v in snap["states"].items()) or "none")
    con.print(t)
    m = Table(box=None, header_style="bold")
    m.add_column("metric")
    m.add_column("value")
    for k, v in result.metrics.items():
        if k != "netstat":
            m.add_row(k, short(v, 70))
    _print_netstat(con, result.metrics.get("netstat"))
    con.print(m)
    for c in result.checks:
        mark = Text("PASS " if c.passed else "FAIL ", style="green" if c.passed else "red bold")
        mark.append(f"{c.name}: {c.detail}", style="")
        con.print(mark)
    for msg in messages:
        con.print(Text(msg, style="italic"))


def _print_netstat(con: Any, views: dict[str, Any] | None) -> None:
    """The ``netstat -atn`` rows a kernel run read from inet_diag, as the simulator's console shows its own."""
    from rich.text import Text

    if not views:
        return
    con.rule("sockets (netstat -atn on each host, read from the kernel)", style="dim")
    for name, view in views.items():
        con.print(Text(f"at {view['at']:.4f} s, {name.replace('_', ' ')}:", style="bold"))
        for host, rows in view.items():
            if host == "at":
                continue
            if not rows:
                con.print(Text(f"  {host}: no sockets", style="dim"))
                continue
            con.print(Text(f"  {host}:"))
            con.print(Text("    Proto Recv-Q Send-Q Local Address           Foreign Address         State", style="dim"))
            for row in rows:
                con.print(Text("    " + row, style="yellow" if row.endswith("TIME_WAIT") else ""))


@kernel_app.command("compare")
def compare_cmd(
    scenario: Annotated[str, typer.Argument(help="Scenario name known to both the simulator and the kernel lab.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Scenario parameter KEY=VALUE (repeatable).")] = None,
    sysctl: Annotated[list[str] | None, typer.Option("--sysctl", help="HOST:NAME=VALUE, applied on both sides.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="The simulator's seed.")] = 1,
    json_out: Annotated[bool, typer.Option("--json", help="Print the comparison as one JSON document.")] = False,
) -> None:
    """Run a scenario in the simulator and on the kernel with the same parameters; compare."""
    from timewait.bounds import SEED
    from timewait.kernel.compare import agrees, compare

    SEED.check(f"--seed {seed}", seed, "--seed")
    messages: list[str] = []
    sim, kern, rows = compare(scenario, params=_assignments(set_ or []), sysctls=list(sysctl or []), seed=seed,
                              messages=messages)
    ok = agrees(rows)
    if json_out:
        _err(messages)
        print(json.dumps({"scenario": scenario, "params": kern.params, "sysctls": list(sysctl or []),
                          "simulator": sim.profile, "kernel": kern.profile, "agree": ok,
                          "rows": [r.to_json() for r in rows]}, indent=2, default=str))
    else:
        _print_compare(scenario, sim, kern, rows, ok, messages)
    if not ok:
        raise typer.Exit(1)


def _print_compare(scenario: str, sim: Any, kern: Any, rows: list[Any], ok: bool, messages: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from timewait.kernel.compare import short

    con = Console(highlight=False, soft_wrap=True)
    con.print(Text(f"{scenario}: simulator ({sim.profile}) vs {kern.profile}", style="bold"))
    con.print(Text("params: " + " ".join(f"{k}={v}" for k, v in kern.params.items()), style="dim"))
    colour = {"agree": "green", "differs": "red bold", "fails on both": "red bold", "ignored": "dim",
              "input": "dim", "sim only": "yellow", "kernel only": "yellow"}
    t = Table(box=None, header_style="bold")
    for col in ("metric", "simulator", "kernel", "tolerance", "verdict"):
        t.add_column(col, no_wrap=col != "simulator" and col != "kernel")
    for r in rows:
        if r.kind == "metric":
            t.add_row(r.name, short(r.sim), short(r.kernel), r.tolerance,
                      Text(r.verdict, style=colour.get(r.verdict, "")))
    con.print(t)
    c = Table(box=None, header_style="bold")
    for col in ("check", "simulator", "kernel", "verdict"):
        c.add_column(col, no_wrap=col != "check")
    for r in rows:
        if r.kind == "check":
            c.add_row(r.name, short(r.sim), short(r.kernel), Text(r.verdict, style=colour.get(r.verdict, "")))
    con.print(c)
    whys = {(r.tolerance, r.why) for r in rows if r.why and r.tolerance not in ("exact", "—")}
    for tol, why in sorted(whys):
        if why:
            con.print(Text(f"{tol}: {why}", style="dim"))
    n_agree = sum(r.verdict == "agree" for r in rows)
    n_input = sum(r.verdict == "input" for r in rows)
    con.print(Text(f"agree within tolerances ({n_agree} rows agree; {n_input} inputs, not counted)" if ok
                   else "DIFFERS", style="green bold" if ok else "red bold"))
    for m in messages:
        con.print(Text(m, style="italic"))


@kernel_app.command("scenarios")
def scenarios_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The scenarios the kernel lab can run, and those it cannot (with why)."""
    from timewait.kernel.scenarios import UNSUPPORTED, all_kernel_scenarios

    ks = all_kernel_scenarios()
    doc = {"supported": {n: {"params": list(s.params), "kernel_defaults": s.kernel_defaults,
                             "default_sysctls": s.default_sysctls,
                             "ipv6": s.no_ipv6 is None, **({"no_ipv6": s.no_ipv6} if s.no_ipv6 else {})}
                         for n, s in ks.items()},
           "unsupported": UNSUPPORTED}
    if json_out:
        print(json.dumps(doc, indent=2))
        return
    for n, s in ks.items():
        extra = ", ".join(f"{k}={v}" for k, v in s.kernel_defaults.items())
        print(f"{n:28} params: {', '.join(s.params)}" + (f"  (kernel defaults: {extra})" if extra else "")
              + ("  [family=ipv6 too]" if s.no_ipv6 is None else f"  [IPv4 only: {s.no_ipv6}]"))
    for n, why in UNSUPPORTED.items():
        print(f"{n:28} not on a kernel: {why}")


@kernel_app.command("cleanup")
def cleanup_cmd(
    all_: Annotated[bool, typer.Option("--all", help="Also remove tw-* namespaces and veths in no owner record "
                                       "(an older timewait's) whose pid is in use; a recorded live lab is "
                                       "never removed.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
) -> None:
    """Remove what kernel runs that died left (namespaces, veths, temp dirs); live runs' labs are left alone."""
    from timewait.kernel.topology import cleanup, require_lab

    require_lab()
    removed, kept = cleanup(include_unrecorded=all_, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    nss = [n for lab in removed for n in lab.namespaces]
    links = [n for lab in removed for n in lab.links]
    dirs = [os.path.basename(d) for lab in removed for d in lab.dirs]
    print(f"{verb} {len(nss)} namespace(s){': ' + ', '.join(nss) if nss else ''}; "
          f"{len(links)} veth(s){': ' + ', '.join(links) if links else ''}; "
          f"{len(dirs)} temp dir(s){': ' + ', '.join(dirs) if dirs else ''}")
    for lab in kept:
        who = (f"its owner, pid {lab.pid}, is alive" if lab.owner is not None
               else f"no owner record, and pid {lab.pid} is in use; --all removes it" if lab.pid is not None
               else "no owner record; --all removes it")
        print(f"left alone: {lab.describe()} ({who})")


def inspect_cmd(
    filter_: Annotated[list[str] | None, typer.Argument(metavar="[FILTER]...", help="ss-style filter, e.g. state time-wait dst 10.0.0.2 dport = 6379.")] = None,
    processes: Annotated[bool, typer.Option("--processes", "-p", help="Sockets per owning process (TIME_WAIT has none).")] = False,
    netns: Annotated[str | None, typer.Option("--netns", help="A namespace `ip netns` knows (default: this one).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the census as one JSON document (per refresh).")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh like top, with counter rates (Ctrl-C stops).")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between refreshes with --watch.")] = 2.0,
    count: Annotated[int, typer.Option("--count", help="Stop after N refreshes (0: until Ctrl-C).")] = 0,
    top: Annotated[int, typer.Option("--top", help="Rows per table.")] = 10,
) -> None:
    """Live census of TCP sockets and TIME_WAIT through netlink inet_diag, with advice when a limit is near."""
    from timewait.bounds import COUNT, POSITIVE_INT, POSITIVE_SECONDS
    from timewait.kernel.ssfilter import parse

    POSITIVE_SECONDS.check(f"--interval {interval}", interval, "--interval")
    COUNT.check(f"--count {count}", count, "--count")
    POSITIVE_INT.check(f"--top {top}", top, "--top")
    flt = parse(list(filter_ or []))
    from timewait.kernel.inspect import render, resolve_netns, take
    from timewait.kernel.topology import KernelUnavailable

    if sys.platform != "linux":
        raise KernelUnavailable("inspect reads Linux's inet_diag; this is not Linux")
    ns = resolve_netns(netns)
    if not watch:
        c = take(ns, top=top, flt=flt, processes=processes)
        if json_out:
            print(json.dumps(c.to_json(), indent=2))
        else:
            _console().print(render(c))
        return
    _watch(ns, json_out, interval, count, top, flt, processes)


def _console() -> Any:
    """A console that never cuts an address: a terminal's width, or wide rows when piped."""
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 250)


def _watch(ns: str | None, json_out: bool, interval: float, count: int, top: int, flt: Any,
           processes: bool) -> None:
    from rich.live import Live

    from timewait.kernel.inspect import render, take

    prev = None
    n = 0
    try:
        if json_out:
            while count == 0 or n < count:
                prev = take(ns, top=top, previous=prev, flt=flt, processes=processes)
                print(json.dumps(prev.to_json()), flush=True)
                n += 1
                if count == 0 or n < count:
                    time.sleep(interval)
            return
        with Live(console=_console(), auto_refresh=False, screen=False) as live:
            while count == 0 or n < count:
                prev = take(ns, top=top, previous=prev, flt=flt, processes=processes)
                live.update(render(prev), refresh=True)
                n += 1
                if count == 0 or n < count:
                    time.sleep(interval)
    except KeyboardInterrupt:
        return


def register(app: typer.Typer) -> None:
    """Add the ``kernel`` group and the top-level ``inspect`` command to the CLI."""
    app.add_typer(kernel_app, name="kernel")
    app.command("inspect")(inspect_cmd)
