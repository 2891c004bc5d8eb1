"""``ss -tan -o`` at a simulated time, and TIME_WAIT counts per remote and local address.

The timer column follows iproute2's ``ss``: the remaining time is taken in
whole milliseconds and printed by ``print_ms_timer`` (``59sec``, ``1min``,
``5.300ms`` for 5.3 s -- ss's own spelling), so one second after nc-timewait's
close the TIME_WAIT socket reads ``timer:(timewait,59sec,0)``.
"""

from __future__ import annotations

from collections import Counter

from timewait.errors import UsageError
from timewait.report.sockets import Socket, census_at, sockets_at, to_us
from timewait.result import RunResult
from timewait.tcp.segment import ip_ntoa
from timewait.trace import cut_notice

# ss's spelling of the states (iproute2 misc/ss.c sstate_name).
SS_STATE_NAMES = {
    "ESTABLISHED": "ESTAB",
    "SYN_SENT": "SYN-SENT",
    "SYN_RECEIVED": "SYN-RECV",
    "FIN_WAIT_1": "FIN-WAIT-1",
    "FIN_WAIT_2": "FIN-WAIT-2",
    "TIME_WAIT": "TIME-WAIT",
    "CLOSED": "UNCONN",
    "CLOSE_WAIT": "CLOSE-WAIT",
    "LAST_ACK": "LAST-ACK",
    "LISTEN": "LISTEN",
    "CLOSING": "CLOSING",
}

# ss's names for the timer kinds (tcp_timer_print: on, keepalive, timewait, persist).
_SS_TIMER_NAMES = {"rto": "on", "persist": "persist", "keepalive": "keepalive", "timewait": "timewait",
                   "fin_wait2": "timewait"}


def print_ms_timer(ms: int) -> str:
    """iproute2 ``print_ms_timer``: ``59sec``, ``1min``, ``1min30sec``, ``200ms``, ``5.300ms``."""
    ms = max(0, ms)
    secs, msecs = divmod(ms, 1000)
    minutes, secs = divmod(secs, 60)
    out = ""
    if minutes:
        msecs = 0
        out = f"{minutes}min"
        if minutes > 9:
            secs = 0
    if secs:
        if secs > 9:
            msecs = 0
        out += f"{secs}{'.' if msecs else 'sec'}"
    if msecs:
        out += f"{msecs:03d}ms"
    return out or "0ms"  # ss prints nothing here; "0ms" reads better


def timer_text(sock: Socket, at_us: int) -> str:
    """``timer:(timewait,59sec,0)`` for a socket with a pending timer, else ``""``."""
    if sock.timer is None or sock.deadline_us is None:
        return ""
    remaining_ms = (sock.deadline_us - at_us) // 1000
    name = _SS_TIMER_NAMES.get(sock.timer, sock.timer)
    return f"timer:({name},{print_ms_timer(remaining_ms)},{sock.retrans})"


def _check_host(result: RunResult, host: str | None) -> None:
    if host is not None and host not in result.nodes:
        hosts = ", ".join(n for n, i in result.nodes.items() if i.kind == "host")
        raise UsageError(f"no host {host!r} in scenario {result.scenario}; hosts: {hosts}")


def ss_rows(sockets: list[Socket], at_us: int) -> list[str]:
    """The lines ``ss -tan -o`` prints for these sockets, header first, columns aligned."""
    table = [("State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port", "Process")]
    for s in sockets:
        table.append((SS_STATE_NAMES.get(s.state, s.state), str(s.recv_q), str(s.send_q),
                      s.local, s.peer, timer_text(s, at_us)))
    widths = [max(len(r[i]) for r in table) for i in range(6)]
    lines = []
    for r in table:
        cells = [c.ljust(w) for c, w in zip(r[:5], widths, strict=False)] + [r[5]]
        lines.append("  ".join(cells).rstrip())
    return lines


#: A host's table longer than this prints its first rows and the totals per state (``--ss-all``: every row).
MAX_SS_ROWS = 20


def sockets_for(result: RunResult, at_us: int, host: str | None = None) -> tuple[dict[str, list[Socket]], str]:
    """The sockets at ``at_us`` and where they come from: the engine's census when it took one
    there (exact), else rebuilt from the trace (``"trace"``: exact only while the trace covers T)."""
    socks = census_at(result, at_us, host)
    if socks is not None:
        return socks, "census"
    return sockets_at(result, at_us, host), "trace"


def state_totals(sockets: list[Socket]) -> str:
    """``Total: 28233 (TIME-WAIT 28232, ESTAB 1)``: sockets per state, most first, as ``ss -s`` sums them."""
    per = Counter(SS_STATE_NAMES.get(s.state, s.state) for s in sockets)
    return f"Total: {len(sockets)} (" + ", ".join(f"{st} {n}" for st, n in per.most_common()) + ")"


def ss_table(result: RunResult, at_s: float, host: str | None = None, *, all_rows: bool = False) -> str:
    """``ss -tan -o`` on each host (or one ``host``) at simulated time ``at_s`` seconds.

    A host's block starts with a ``c1$ ss -tan -o   # at 1.000000 s`` line. The
    sockets are the census the engine took at ``at_s`` when there is one, else
    rebuilt from the trace (the header says so). A host with more than
    :data:`MAX_SS_ROWS` sockets prints its first rows, how many more there are
    and its totals per state, unless ``all_rows``. A time outside the run is a
    :class:`UsageError`.
    """
    _check_host(result, host)
    if at_s < 0 or at_s > result.sim_time + 1e-9:
        raise UsageError(f"--ss {at_s:g}: the run covers 0 to {result.sim_time:g} s of simulated time")
    at_us = to_us(at_s)
    socks_by_host, source = sockets_for(result, at_us, host)
    note = "" if source == "census" else "   (rebuilt from the trace: exact only while the trace covers it)"
    limited = cut_notice(result.trace.records) if source == "trace" else None
    if limited:  # rebuilt from a selected or cut trace: the table is missing what the trace is
        note += f"\n# {limited}"
    blocks = []
    for name, socks in socks_by_host.items():
        head = f"{name}$ ss -tan -o   # at {at_s:.6f} s{note}"
        if all_rows or len(socks) <= MAX_SS_ROWS:
            blocks.append("\n".join([head, *ss_rows(socks, at_us)]))
            continue
        more = len(socks) - MAX_SS_ROWS
        blocks.append("\n".join([head, *ss_rows(socks[:MAX_SS_ROWS], at_us),
                                 f"... {more} more rows (--ss-all lists them all)", state_totals(socks)]))
    return "\n\n".join(blocks)


def ss_summary(result: RunResult, at_s: float) -> str:
    """TIME_WAIT sockets at ``at_s``: counts per remote endpoint and per local address.

    The figures a person gets from ``ss -tan state time-wait`` piped through
    ``sort | uniq -c``; the port space at risk is the per-remote count.
    """
    at_us = to_us(at_s)
    per_remote: Counter[tuple[str, str]] = Counter()
    per_local: Counter[tuple[str, str]] = Counter()
    total = 0
    for host, socks in sockets_for(result, at_us)[0].items():
        for s in socks:
            if s.state == "TIME_WAIT":
                total += 1
                per_remote[(host, s.peer)] += 1
                per_local[(host, ip_ntoa(s.key[0]))] += 1
    lines = [f"TIME-WAIT sockets at {at_s:.6f} s: {total}"]
    if total:
        w = max([21, *(len(x) for _, x in (*per_remote, *per_local))])  # an IPv6 endpoint is wider
        lines.append("  per remote endpoint:")
        lines += [f"  {n:>7}  {peer:<{w}}  on {host}" for (host, peer), n in per_remote.most_common()]
        lines.append("  per local address:")
        lines += [f"  {n:>7}  {addr:<{w}}  on {host}" for (host, addr), n in per_local.most_common()]
    return "\n".join(lines)
