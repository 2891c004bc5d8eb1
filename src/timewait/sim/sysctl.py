"""Sysctls under their Linux names: validation, defaults per profile, and their effect.

Each :class:`Sysctl` knows how to parse a value (``"32768 60999"``, ``"1"``) and
which :class:`~timewait.tcp.config.TcpConfig` field or host setting it drives.
An unknown name or a bad value is a :class:`~timewait.errors.UsageError`
naming what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from timewait.errors import UsageError
from timewait.tcp.config import MS, SEC


@dataclass(frozen=True, slots=True)
class Sysctl:
    """One sysctl: how to parse it and where its value goes."""

    name: str
    doc: str
    parse: Callable[[str, str], Any]
    cfg_field: str | None = None          # TcpConfig field it sets
    scale: int = 1                        # multiplier into the TcpConfig unit


def _int_range(lo: int, hi: int) -> Callable[[str, str], int]:
    def parse(name: str, text: str) -> int:
        try:
            v = int(str(text).strip())
        except ValueError:
            raise UsageError(f"{name}={text!r}: expected an integer {lo}..{hi}") from None
        if not lo <= v <= hi:
            raise UsageError(f"{name}={text!r}: out of range, allowed {lo}..{hi}")
        return v

    return parse


def _choice(*allowed: int) -> Callable[[str, str], int]:
    def parse(name: str, text: str) -> int:
        try:
            v = int(str(text).strip())
        except ValueError:
            v = None  # type: ignore[assignment]
        if v not in allowed:
            raise UsageError(f"{name}={text!r}: allowed values are {', '.join(map(str, allowed))}")
        return v

    return parse


def parse_port_range(name: str, text: str) -> tuple[int, int]:
    """``"LOW HIGH"`` (also ``LOW-HIGH``), 1 <= LOW <= HIGH <= 65535."""
    parts = str(text).replace("-", " ").replace(",", " ").split()
    try:
        lo, hi = (int(p) for p in parts)
    except ValueError:
        raise UsageError(f"{name}={text!r}: expected 'LOW HIGH' with 1 <= LOW <= HIGH <= 65535") from None
    if not 1 <= lo <= hi <= 65535:
        raise UsageError(f"{name}={text!r}: expected 'LOW HIGH' with 1 <= LOW <= HIGH <= 65535")
    return lo, hi


def _parse_ports(name: str, text: str) -> frozenset[int]:
    """``"8000,9000-9010"`` (empty = none)."""
    out: set[int] = set()
    for part in str(text).replace(" ", ",").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise UsageError(f"{name}={text!r}: expected ports like '8000,9000-9010'") from None
        if not 1 <= a <= b <= 65535:
            raise UsageError(f"{name}={text!r}: ports must be 1..65535")
        out.update(range(a, b + 1))
    return frozenset(out)


_P = "net.ipv4."
SYSCTLS: dict[str, Sysctl] = {
    s.name: s
    for s in (
        Sysctl(_P + "tcp_fin_timeout", "orphaned FIN_WAIT2 lifetime (s); NOT the TIME_WAIT length",
               _int_range(0, 1200), "fin_timeout", SEC),
        Sysctl(_P + "ip_local_port_range", "ephemeral ports for connect() and bind(0)", parse_port_range),
        Sysctl(_P + "ip_local_reserved_ports", "ports the automatic selection skips", _parse_ports),
        Sysctl(_P + "tcp_max_tw_buckets", "cap on TIME_WAIT records per host (netns)", _int_range(0, 1 << 31)),
        Sysctl(_P + "tcp_rfc1337", "1: an RST does not end TIME_WAIT", _choice(0, 1), "rfc1337"),
        Sysctl(_P + "tcp_timestamps", "0 off, 1 on with offsets, 2 on without offsets", _choice(0, 1, 2), "timestamps"),
        Sysctl(_P + "tcp_tw_reuse", "connect() may take over a TIME_WAIT 4-tuple: 0, 1, 2 (loopback only)",
               _choice(0, 1, 2)),
        Sysctl(_P + "tcp_tw_reuse_delay", "ms a TIME_WAIT must age before tcp_tw_reuse takes it", _int_range(1, 60000)),
        Sysctl(_P + "tcp_syn_retries", "SYN retransmissions before ETIMEDOUT", _int_range(1, 127), "syn_retries"),
        Sysctl(_P + "tcp_syn_linear_timeouts", "SYN RTOs not doubled (6.5+)", _int_range(0, 10), "syn_linear_timeouts"),
        Sysctl(_P + "tcp_synack_retries", "SYN-ACK retransmissions", _int_range(1, 255), "synack_retries"),
        Sysctl(_P + "tcp_orphan_retries", "FIN retries of an orphan (0 means 8)", _int_range(0, 255), "orphan_retries"),
        Sysctl(_P + "tcp_retries2", "retries before a connection with an owner gives up", _int_range(1, 255), "retries2"),
        Sysctl(_P + "tcp_sack", "SACK-permitted in the SYN", _choice(0, 1), "sack"),
        Sysctl(_P + "tcp_window_scaling", "window scale option", _choice(0, 1), "window_scaling"),
        Sysctl(_P + "tcp_invalid_ratelimit", "ms between ACKs for out-of-window segments", _int_range(0, 60000),
               "invalid_ratelimit", MS),
        Sysctl(_P + "ip_default_ttl", "TTL of packets this host sends", _int_range(1, 255), "ttl"),
        Sysctl(_P + "tcp_max_orphans", "cap on orphaned sockets; past it close() resets (CL-4)", _int_range(0, 1 << 31)),
        Sysctl(_P + "tcp_max_syn_backlog", "SYN queue length", _int_range(1, 1 << 31)),
        Sysctl("net.core.somaxconn", "cap on a listen() backlog", _int_range(1, 1 << 31)),
    )
}
# Legacy: only profiles of kernels before 4.12 have it.
RECYCLE = Sysctl(_P + "tcp_tw_recycle", "legacy (<4.12): fast TIME_WAIT recycling with a per-peer timestamp cache",
                 _choice(0, 1), "tw_recycle")


def known_sysctls(legacy: bool) -> dict[str, Sysctl]:
    return {**SYSCTLS, RECYCLE.name: RECYCLE} if legacy else SYSCTLS


def lookup(name: str, legacy: bool) -> Sysctl:
    table = known_sysctls(legacy)
    s = table.get(name) or table.get(_P + name)
    if s is None:
        if name.endswith("tcp_tw_recycle"):
            raise UsageError(
                f"unknown sysctl {name!r}: tcp_tw_recycle was removed in Linux 4.12; use --profile linux-4.9"
            )
        raise UsageError(f"unknown sysctl {name!r}; known: {', '.join(sorted(table))}")
    return s


def format_value(value: Any) -> str | int:
    """A sysctl value as ``sysctl -n`` prints it (ints stay ints in JSON)."""
    if isinstance(value, tuple):
        return "\t".join(map(str, value))
    if isinstance(value, frozenset):
        return ",".join(map(str, sorted(value)))
    return value


def ehash_entries(mem_bytes: int) -> int:
    """``alloc_large_system_hash("TCP established", scale 17)`` for a host's memory (TW-9).

    One bucket per 128 KiB (pages rounded up to a whole MiB, then >> 5),
    rounded up to a power of two, at most 512 Ki entries.
    """
    pages = -(-mem_bytes // (1 << 20)) * 256  # 4 KiB pages, rounded up to a whole MiB
    n = max(pages >> 5, 1)
    n = 1 << (n - 1).bit_length()
    return min(n, 524288)


def parse_mem(text: str) -> int:
    """``"2G"``, ``"512M"``, ``"24GiB"`` to bytes."""
    t = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
    num = t[:-1] if t[-1:] in "KMGT" else t
    try:
        v = float(num) * mult
    except ValueError:
        raise UsageError(f"mem={text!r}: expected a size like 2G or 512M") from None
    if v < 64 << 20:
        raise UsageError(f"mem={text!r}: at least 64M")
    return int(v)
