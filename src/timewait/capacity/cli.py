"""``timewait capacity``: the closed-form answers of :mod:`timewait.capacity`, printed."""

from __future__ import annotations

import json
import math

import typer
from rich.console import RenderableType

from timewait.capacity import (
    LINUX_TIME_WAIT_S,
    LINUX_TW_REUSE_DELAY_MS,
    Answer,
    CapacityQuestion,
    CapacityReport,
    answer,
    parse_ports,
)
from timewait.errors import UsageError


def capacity_cmd(
    ports: str | None = typer.Option(None, "--ports", help="Local port range LOW-HIGH (net.ipv4.ip_local_port_range; default 32768-60999)."),
    time_wait: float | None = typer.Option(None, "--time-wait", help="TIME_WAIT length in seconds (default: 60, Linux's fixed value)."),
    msl: float | None = typer.Option(None, "--msl", help="Maximum segment lifetime in seconds; TIME_WAIT = 2 x MSL."),
    destinations: int = typer.Option(1, "--destinations", help="Distinct (remote addr, remote port) pairs the client spreads over."),
    tw_reuse: int | None = typer.Option(None, "--tw-reuse", help="net.ipv4.tcp_tw_reuse: 0, 1 or 2 (loopback only) (default: 2)."),
    tw_reuse_delay: int | None = typer.Option(None, "--tw-reuse-delay", help="net.ipv4.tcp_tw_reuse_delay in ms (1..60000; default 1000)."),
    timestamps: bool | None = typer.Option(None, "--timestamps/--no-timestamps", help="TCP timestamps on both sides (reuse needs them; default on)."),
    loopback: bool = typer.Option(False, "--loopback", help="The destination is on loopback (127.0.0.0/8 or ::1)."),
    linger0: bool = typer.Option(False, "--linger0", help="Clients close with SO_LINGER {1, 0} (RST, no TIME_WAIT)."),
    pool: int | None = typer.Option(None, "--pool", help="A pool of N long-lived connections instead of one per request."),
    request_ms: float | None = typer.Option(None, "--request-ms", help="How long one request holds its connection, in ms."),
    max_tw_buckets: int | None = typer.Option(None, "--max-tw-buckets", help="net.ipv4.tcp_max_tw_buckets of the host holding TIME_WAIT."),
    server_closes: bool = typer.Option(False, "--server-closes", help="The server closes first, so TIME_WAIT lands on the server."),
    nat_ports: int | None = typer.Option(None, "--nat-ports", help="Public ports of a NAT in front of the clients (default: 64512)."),
    clients: int | None = typer.Option(None, "--clients", help="Clients behind that NAT (default: 1)."),
    nat_timeout: float | None = typer.Option(None, "--nat-timeout", help="Seconds the NAT keeps a closed flow's mapping (default: 120, conntrack)."),
    rate: float | None = typer.Option(None, "--rate", help="Ask whether R new connections/s are sustainable."),
    from_host: bool = typer.Option(False, "--from-host", help="Take the port range, reserved ports, tcp_tw_reuse(_delay), tcp_max_tw_buckets and tcp_timestamps from this host's sysctls (options given override them)."),
    netns: str | None = typer.Option(None, "--netns", help="With --from-host or --dest: read that network namespace instead."),
    dest: str | None = typer.Option(None, "--dest", help="ADDR:PORT: count this host's sockets to that destination now (needs the 'kernel' extra)."),
    json_out: bool = typer.Option(False, "--json", help="Print the answers as one JSON document."),
) -> None:
    """How many new connections per second a host can open, with the formulas."""
    if time_wait is not None and msl is not None:
        raise UsageError("give --time-wait or --msl, not both (TIME_WAIT = 2 x MSL)")
    if msl is not None:
        if not (math.isfinite(msl) and msl > 0):
            raise UsageError(f"--msl must be a number of seconds > 0 (got {msl})")
        time_wait = 2 * msl
    if netns is not None and not (from_host or dest):
        raise UsageError("--netns needs --from-host or --dest (it says where to read them)")
    sources: dict[str, str] = {}
    host = None
    if from_host:
        from timewait.capacity.host import read_host

        host = read_host(netns)
    dest_pair = None
    if dest is not None:
        from timewait.capacity.host import parse_dest

        dest_pair = parse_dest(dest)
    given = {"--ports": ports, "--tw-reuse": tw_reuse, "--tw-reuse-delay": tw_reuse_delay,
             "--max-tw-buckets": max_tw_buckets, "--timestamps": timestamps}
    if host is not None:
        for flag, sysctl in (("--ports", "net.ipv4.ip_local_port_range"),
                             ("--tw-reuse", "net.ipv4.tcp_tw_reuse"),
                             ("--tw-reuse-delay", "net.ipv4.tcp_tw_reuse_delay"),
                             ("--max-tw-buckets", "net.ipv4.tcp_max_tw_buckets"),
                             ("--timestamps", "net.ipv4.tcp_timestamps")):
            sources[flag] = (f"{flag} (given; the host has {host.sources[sysctl]})"
                             if given[flag] is not None and sysctl in host.sources
                             else host.sources.get(sysctl, f"{flag}: not on this kernel"))
        if host.reserved:
            sources["reserved"] = host.sources["net.ipv4.ip_local_reserved_ports"]
        ports = ports if ports is not None else "{} {}".format(*host.ports)
        tw_reuse = host.tw_reuse if tw_reuse is None else tw_reuse
        if tw_reuse_delay is None and host.tw_reuse_delay_ms is not None:
            tw_reuse_delay = host.tw_reuse_delay_ms
        max_tw_buckets = host.max_tw_buckets if max_tw_buckets is None else max_tw_buckets
        timestamps = host.timestamps if timestamps is None else timestamps
    in_use = None
    if dest_pair is not None:
        from timewait.capacity.host import dest_sockets

        now = dest_sockets(dest_pair, netns)
        in_use = now.local_ports
        states = ", ".join(f"{n} {k}" for k, n in now.by_state.items()) or "none"
        sources["--dest"] = f"sockets to {now.dest} now ({f'netns {netns}' if netns else 'this host'}): {states}"
    q = CapacityQuestion(
        ports=parse_ports("32768-60999" if ports is None else ports),
        time_wait=LINUX_TIME_WAIT_S if time_wait is None else time_wait,
        destinations=destinations,
        tw_reuse=tw_reuse,
        tw_reuse_delay_ms=LINUX_TW_REUSE_DELAY_MS if tw_reuse_delay is None else tw_reuse_delay,
        timestamps=True if timestamps is None else timestamps,
        loopback=loopback,
        linger0=linger0,
        pool=pool,
        request_ms=request_ms,
        max_tw_buckets=max_tw_buckets,
        server_closes=server_closes,
        nat_ports=nat_ports,
        clients=clients,
        nat_timeout=nat_timeout,
        rate=rate,
        reserved=host.reserved if host is not None else frozenset(),
        sources=tuple(sources.items()),
        ports_in_use=in_use,
    )
    report = answer(q)
    if json_out:
        print(json.dumps(report.to_json(), indent=2))
        return
    print_report(report)


def print_report(report: CapacityReport) -> None:
    """The chain of answers as Rich text: each step's formula, numbers and why."""
    from rich.console import Console, Group
    from rich.padding import Padding
    from rich.panel import Panel
    from rich.text import Text

    console = Console()
    blocks = [_step_block(i, step) for i, step in enumerate(report.steps, 1)]
    head = report.answer
    value = "no limit from ports or TIME_WAIT" if head.value is None else f"{head.value:.1f} {head.unit}"
    if report.question.sources:
        src = [Text(f"- {where}") for _, where in report.question.sources]
        console.print(Panel(Group(*src), title="read from", title_align="left"))
    if report.now is not None:
        blocks.append(_step_block(None, report.now))
    console.print(Panel(Group(*blocks), title="timewait capacity", title_align="left"))
    console.print(Text.assemble(("Answer: ", "bold"), (value, "bold green"), ("  = ", ""),
                                (head.formula, "cyan")))
    if report.rate_check is not None:
        rc = report.rate_check
        verdict = Text("yes" if rc.sustainable else "no", style="bold green" if rc.sustainable else "bold red")
        lines = [Text.assemble(("Is ", ""), (f"{rc.rate:g} {rc.headroom.unit}", "bold"), (" sustainable? ", ""), verdict)]
        for a in (rc.headroom, rc.time_wait_count):
            lines.append(_step_block(None, a))
        console.print(Panel(Group(*lines), title="--rate", title_align="left"))
    for a in report.assumptions:
        console.print(Padding(Text(f"- {a}", style="dim"), (0, 1)))


def _step_block(index: int | None, step: Answer) -> RenderableType:
    from rich.console import Group
    from rich.padding import Padding
    from rich.text import Text

    label = f"{index}. {step.title}" if index is not None else step.title
    return Group(
        Text(label, style="bold"),
        Padding(Text.assemble((step.formula, "cyan"), "\n= ", (step.computation, "green")), (0, 0, 0, 3)),
        Padding(Text(step.explanation), (0, 0, 1, 3)),
    )


def register(app: typer.Typer) -> None:
    """Add the ``capacity`` command to the ``timewait`` app."""
    app.command("capacity")(capacity_cmd)
