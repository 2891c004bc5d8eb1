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
    ports: str = typer.Option("32768-60999", "--ports", help="Local port range LOW-HIGH (net.ipv4.ip_local_port_range)."),
    time_wait: float | None = typer.Option(None, "--time-wait", help="TIME_WAIT length in seconds (default: 60, Linux's fixed value)."),
    msl: float | None = typer.Option(None, "--msl", help="Maximum segment lifetime in seconds; TIME_WAIT = 2 x MSL."),
    destinations: int = typer.Option(1, "--destinations", help="Distinct (remote addr, remote port) pairs the client spreads over."),
    tw_reuse: int | None = typer.Option(None, "--tw-reuse", help="net.ipv4.tcp_tw_reuse: 0, 1 or 2 (loopback only) (default: 2)."),
    tw_reuse_delay: int = typer.Option(LINUX_TW_REUSE_DELAY_MS, "--tw-reuse-delay", help="net.ipv4.tcp_tw_reuse_delay in ms (1..60000)."),
    timestamps: bool = typer.Option(True, "--timestamps/--no-timestamps", help="TCP timestamps on both sides (reuse needs them)."),
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
    json_out: bool = typer.Option(False, "--json", help="Print the answers as one JSON document."),
) -> None:
    """How many new connections per second a host can open, with the formulas."""
    if time_wait is not None and msl is not None:
        raise UsageError("give --time-wait or --msl, not both (TIME_WAIT = 2 x MSL)")
    if msl is not None:
        if not (math.isfinite(msl) and msl > 0):
            raise UsageError(f"--msl must be a number of seconds > 0 (got {msl})")
        time_wait = 2 * msl
    q = CapacityQuestion(
        ports=parse_ports(ports),
        time_wait=LINUX_TIME_WAIT_S if time_wait is None else time_wait,
        destinations=destinations,
        tw_reuse=tw_reuse,
        tw_reuse_delay_ms=tw_reuse_delay,
        timestamps=timestamps,
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
