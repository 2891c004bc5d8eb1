"""SNMP/TcpExt counters of a namespace under ``nstat`` names (``TcpExtTW``, ``TcpActiveOpens``)."""

from __future__ import annotations

from timewait.kernel.nsenter import inside

# /proc/thread-self/net follows this thread's namespace (/proc/self/net follows the main thread's).
FILES = ("/proc/thread-self/net/snmp", "/proc/thread-self/net/netstat")


def parse(text: str) -> dict[str, int]:
    """The two-line ``Group: names`` / ``Group: values`` layout of /proc/net/snmp and netstat."""
    out: dict[str, int] = {}
    lines = text.splitlines()
    for head, vals in zip(lines[::2], lines[1::2], strict=False):
        group, _, names = head.partition(":")
        group2, _, values = vals.partition(":")
        if group != group2:
            continue
        for n, v in zip(names.split(), values.split(), strict=False):
            try:
                out[group + n] = int(v)
            except ValueError:
                continue
    return out


def read(netns: str | None = None) -> dict[str, int]:
    """Every counter of the namespace (``nstat -a`` without history)."""
    out: dict[str, int] = {}
    with inside(netns):
        for path in FILES:
            with open(path) as f:
                out.update(parse(f.read()))
    return out


def tcp_nonzero(counters: dict[str, int]) -> dict[str, int]:
    """The TCP counters that are not zero, sorted: what a run's JSON reports (as the simulator does).

    Gauges (``TcpCurrEstab``) and constants (``TcpRtoMin``…) are left out.
    """
    skip = {"TcpRtoAlgorithm", "TcpRtoMin", "TcpRtoMax", "TcpMaxConn", "TcpCurrEstab"}
    return {k: v for k, v in sorted(counters.items())
            if v and k.startswith("Tcp") and k not in skip}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items()}
