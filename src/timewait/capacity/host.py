"""Capacity inputs read off a running Linux host or one of its network namespaces.

``timewait capacity --from-host`` answers for this machine instead of Linux's
defaults: the port range and reserved ports the connect() walk uses
(``inet_sk_get_local_port_range``, ``inet_is_local_reserved_port``), the
``tcp_tw_reuse`` mode and delay, ``tcp_max_tw_buckets`` and whether timestamps
are on. Every value keeps the place it came from, so the report can say it.
With ``--dest``, the sockets this host holds toward that destination right now
(read through ``inet_diag``, as ``ss`` does) say how many ports are free now.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from timewait.errors import UsageError
from timewait.sim.sysctl import parse_reserved_ports

SYSCTLS = (
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_tw_reuse_delay",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_timestamps",
)


@dataclass(frozen=True, slots=True)
class HostValues:
    """The capacity inputs of one host; ``sources`` maps each to where it was read."""

    ports: tuple[int, int]
    reserved: frozenset[int]
    tw_reuse: int
    tw_reuse_delay_ms: int | None  # None: a kernel before 6.13 (no sysctl; the delay is 1 s)
    max_tw_buckets: int
    timestamps: bool
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DestSockets:
    """This host's sockets toward one (remote addr, remote port) now, by state."""

    dest: str
    by_state: dict[str, int]
    local_ports: int  # distinct local ports those sockets hold

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


def parse_reserved(text: str) -> frozenset[int]:
    """``ip_local_reserved_ports`` text (``"8080,9000-9010"`` or empty) to a set of ports."""
    return parse_reserved_ports("net.ipv4.ip_local_reserved_ports", text)


def _reader(netns: str | None):
    if netns is None:
        def read(name: str) -> str:
            with open("/proc/sys/" + name.replace(".", "/")) as f:
                return f.read().strip()
        return read
    from timewait.kernel.inspect import resolve_netns
    from timewait.kernel.nsenter import read_sysctl

    resolve_netns(netns)
    return lambda name: read_sysctl(netns, name)


def read_host(netns: str | None = None) -> HostValues:
    """Read this host's (or namespace ``netns``'s) capacity sysctls; OSError if not Linux."""
    read = _reader(netns)
    where = f"netns {netns}" if netns else "this host"
    raw: dict[str, str | None] = {}
    for name in SYSCTLS:
        try:
            raw[name] = read(name)
        except FileNotFoundError:
            raw[name] = None
    if raw["net.ipv4.ip_local_port_range"] is None:
        raise UsageError("--from-host reads /proc/sys/net/ipv4; this system has none (not Linux?)")
    lo, hi = (int(x) for x in str(raw["net.ipv4.ip_local_port_range"]).split())
    sources = {name: f"{name} = {' '.join(value.split()) or '(empty)'} ({where})"
               for name, value in raw.items() if value is not None}
    delay = raw["net.ipv4.tcp_tw_reuse_delay"]
    if delay is None:
        sources["net.ipv4.tcp_tw_reuse_delay"] = "tcp_tw_reuse_delay: not on this kernel (before 6.13): 1 s"
    return HostValues(
        ports=(lo, hi),
        reserved=parse_reserved(raw["net.ipv4.ip_local_reserved_ports"] or ""),
        tw_reuse=int(raw["net.ipv4.tcp_tw_reuse"] or 2),
        tw_reuse_delay_ms=None if delay is None else int(delay),
        max_tw_buckets=int(raw["net.ipv4.tcp_max_tw_buckets"] or 0),
        timestamps=int(raw["net.ipv4.tcp_timestamps"] or 0) != 0,
        sources=sources,
    )


def parse_dest(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` (``[V6]:PORT`` for IPv6) to a pair."""
    import ipaddress

    addr, sep, port = text.rpartition(":")
    addr = addr.strip("[]")
    try:
        ipaddress.ip_address(addr)
        p = int(port)
    except ValueError:
        p = -1
    if not sep or not 1 <= p <= 65535:
        raise UsageError(f"--dest {text!r}: expected ADDR:PORT (IPv6 as [ADDR]:PORT), port 1..65535")
    return addr, p


def dest_sockets(dest: tuple[str, int], netns: str | None = None) -> DestSockets:
    """The sockets toward ``dest`` now, from ``inet_diag`` (needs the 'kernel' extra)."""
    from timewait.kernel import diag

    addr, port = dest
    states: Counter[str] = Counter()
    ports: set[tuple[str, int]] = set()
    for s in diag.dump(netns):
        if s.raddr == addr and s.rport == port and s.state != 10:  # LISTEN has no peer
            states[diag.STATE_NAMES.get(s.state, str(s.state))] += 1
            ports.add((s.laddr, s.lport))
    text = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
    return DestSockets(text, dict(sorted(states.items())), len(ports))
