"""Sysctls under their Linux names: validation, defaults per profile, and their effect.

Each :class:`Sysctl` knows how to parse a value (``"32768 60999"``, ``"1"``) and
which :class:`~timewait.tcp.config.TcpConfig` field or host setting it drives.
An unknown name or a bad value is a :class:`~timewait.errors.UsageError`
naming what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from timewait.bounds import INT_MAX, Bounds
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
    """An integer the kernel bounds to ``lo..hi`` (``extra1``/``extra2``, or the C type's range)."""
    bounds = Bounds(lo, hi, integer=True)

    def parse(name: str, text: str) -> int:
        return int(bounds.parse(f"{name}={text!r}", str(text)))

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


#: ``ip_unprivileged_port_start``'s default: since 4.11 ``ipv4_local_port_range`` refuses a LOW
#: below it (EINVAL); the simulator does not model that sysctl, so its default applies.
UNPRIVILEGED_PORT_START = 1024


def parse_port_range(name: str, text: str, floor: int = 1) -> tuple[int, int]:
    """``"LOW HIGH"`` (also ``LOW-HIGH``), ``floor <= LOW <= HIGH <= 65535``.

    The kernel's ``ipv4_local_port_range``: two ints, each 1..65535 (``proc_dointvec_minmax``
    with ``ip_local_port_range_min``/``_max``), HIGH not below LOW, and (4.11+) LOW not below
    ``ip_unprivileged_port_start``: :func:`parse_local_port_range`.
    """
    parts = str(text).replace("-", " ").replace(",", " ").split()
    usage = f"expected 'LOW HIGH' with 1 <= LOW <= HIGH <= 65535{f' and LOW >= {floor}' if floor > 1 else ''}"
    try:
        lo, hi = (int(p) for p in parts)
    except ValueError:
        raise UsageError(f"{name}={text!r}: {usage}") from None
    if not 1 <= lo <= hi <= 65535:
        raise UsageError(f"{name}={text!r}: {usage}")
    if lo < floor:
        raise UsageError(f"{name}={text!r}: {usage} (Linux refuses a LOW below ip_unprivileged_port_start, "
                         f"{floor} by default)")
    return lo, hi


def parse_local_port_range(name: str, text: str) -> tuple[int, int]:
    """``ip_local_port_range`` as Linux >= 4.11 accepts it (LOW >= ip_unprivileged_port_start)."""
    return parse_port_range(name, text, UNPRIVILEGED_PORT_START)


def parse_reserved_ports(name: str, text: str) -> frozenset[int]:
    """``ip_local_reserved_ports``: ``"8000,9000-9010"`` (empty = none), as the sysctl prints it."""
    out: set[int] = set()
    for part in str(text).replace(" ", ",").replace("\n", ",").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise UsageError(f"{name}={text!r}: expected ports like '8000,9000-9010'") from None
        if not 0 <= a <= b <= 65535:  # proc_do_large_bitmap over 65536 bits
            raise UsageError(f"{name}={text!r}: ports must be 0..65535, LOW-HIGH with LOW <= HIGH")
        out.update(range(a, b + 1))
    return frozenset(out)


def _parse_rmem(name: str, text: str) -> tuple[int, int, int]:
    """``tcp_rmem``: "MIN DEFAULT MAX" bytes, each 1..INT_MAX (proc_dointvec_minmax, extra1 = 1)."""
    parts = str(text).replace(",", " ").split()
    try:
        vals = tuple(int(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 3 or not all(1 <= v <= INT_MAX for v in vals):
        raise UsageError(f"{name}={text!r}: expected three integers MIN DEFAULT MAX, each 1..{INT_MAX}")
    return vals  # type: ignore[return-value]


def rcv_wscale(rmem_max_tcp: int, rmem_max_core: int) -> int:
    """``tcp_select_initial_window``: the window scale offered in a SYN (WIN-2).

    space = max(tcp_rmem[2], net.core.rmem_max); wscale = ilog2(space) - 15, within 0..14
    (TCP_MAX_WSCALE). Linux 6.18's defaults (tcp_rmem[2] 32 MB) give 10, older kernels' 6 MB 7.
    """
    space = max(rmem_max_tcp, rmem_max_core)
    return min(max(space.bit_length() - 1 - 15, 0), 14)


def initial_window(rcvbuf: int, mss: int) -> int:
    """``tcp_select_initial_window``: the window of a SYN or SYN-ACK (WIN-1).

    The space is half the receive buffer (tcp_win_from_space at the default scaling
    ratio), rounded down to the MSS the peer will send, at most 65535: 64240 for
    tcp_rmem[1] = 131072 and MSS 1460, 65160 with timestamps (1448), 65535 for
    packetdrill's 540000 (measured on 6.18).
    """
    space = rcvbuf >> 1
    if space > mss:
        space -= space % mss
    return min(space, 65535)


_P = "net.ipv4."
_U8 = 255  # proc_dou8vec_minmax with no extra bounds: any u8
# The bounds are the kernel's (net/ipv4/sysctl_net_ipv4.c, net/core/sysctl_net_core.c): extra1/extra2
# of proc_*_minmax, else the range of the C type. Where the kernel stores any value but gives only
# a few a meaning (tcp_timestamps, tcp_sack, tcp_rfc1337, ... are u8 with no bounds), the simulator
# takes just those values; where the kernel takes a negative int with no meaning for a count or
# a timeout (tcp_max_tw_buckets, tcp_fin_timeout), the simulator starts at 0.
SYSCTLS: dict[str, Sysctl] = {
    s.name: s
    for s in (
        # proc_dointvec_jiffies: seconds up to INT_MAX / HZ (HZ = 1000)
        Sysctl(_P + "tcp_fin_timeout", "orphaned FIN_WAIT2 lifetime (s); NOT the TIME_WAIT length",
               _int_range(0, INT_MAX // 1000), "fin_timeout", SEC),
        Sysctl(_P + "ip_local_port_range", "ephemeral ports for connect() and bind(0)", parse_local_port_range),
        Sysctl(_P + "ip_local_reserved_ports", "ports the automatic selection skips", parse_reserved_ports),
        Sysctl(_P + "tcp_max_tw_buckets", "cap on TIME_WAIT records per host (netns)", _int_range(0, INT_MAX)),
        Sysctl(_P + "tcp_rfc1337", "1: an RST does not end TIME_WAIT", _choice(0, 1), "rfc1337"),
        Sysctl(_P + "tcp_timestamps", "0 off, 1 on with offsets, 2 on without offsets", _choice(0, 1, 2), "timestamps"),
        Sysctl(_P + "tcp_tw_reuse", "connect() may take over a TIME_WAIT 4-tuple: 0, 1, 2 (loopback only)",
               _choice(0, 1, 2)),
        # 1..TCP_PAWS_MSL * MSEC_PER_SEC
        Sysctl(_P + "tcp_tw_reuse_delay", "ms a TIME_WAIT must age before tcp_tw_reuse takes it", _int_range(1, 60000)),
        # 1..MAX_TCP_SYNCNT
        Sysctl(_P + "tcp_syn_retries", "SYN retransmissions before ETIMEDOUT", _int_range(1, 127), "syn_retries"),
        Sysctl(_P + "tcp_syn_linear_timeouts", "SYN RTOs not doubled (6.5+)", _int_range(0, 127), "syn_linear_timeouts"),
        Sysctl(_P + "tcp_synack_retries", "SYN-ACK retransmissions", _int_range(0, _U8), "synack_retries"),
        Sysctl(_P + "tcp_orphan_retries", "FIN retries of an orphan (0 means 8)", _int_range(0, _U8), "orphan_retries"),
        Sysctl(_P + "tcp_retries2", "retries before a connection with an owner gives up", _int_range(0, _U8), "retries2"),
        Sysctl(_P + "tcp_sack", "SACK-permitted in the SYN", _choice(0, 1), "sack"),
        Sysctl(_P + "tcp_window_scaling", "window scale option", _choice(0, 1), "window_scaling"),
        Sysctl(_P + "tcp_rmem", "receive buffer MIN DEFAULT MAX bytes; MAX sets the window scale (WIN-2)",
               _parse_rmem),
        # The kernel's floor is SOCK_MIN_RCVBUF (about 2 kB); below the window it changes nothing here.
        Sysctl("net.core.rmem_max", "largest receive buffer a socket may ask for; also sets the window scale",
               _int_range(1, INT_MAX)),
        # proc_dointvec_ms_jiffies
        Sysctl(_P + "tcp_invalid_ratelimit", "ms between ACKs for out-of-window segments", _int_range(0, INT_MAX),
               "invalid_ratelimit", MS),
        Sysctl(_P + "ip_default_ttl", "TTL of packets this host sends", _int_range(1, 255), "ttl"),
        Sysctl(_P + "tcp_max_orphans", "cap on orphaned sockets; past it close() resets (CL-4)", _int_range(0, INT_MAX)),
        Sysctl(_P + "tcp_max_syn_backlog", "SYN queue length", _int_range(1, INT_MAX)),
        # proc_dointvec_minmax, extra1 = SYSCTL_ZERO
        Sysctl("net.core.somaxconn", "cap on a listen() backlog", _int_range(0, INT_MAX)),
    )
}
# Legacy: only profiles of kernels before 4.12 have it.
RECYCLE = Sysctl(_P + "tcp_tw_recycle", "legacy (<4.12): fast TIME_WAIT recycling with a per-peer timestamp cache",
                 _choice(0, 1), "tw_recycle")
# Before 4.11 there was no ip_unprivileged_port_start: any LOW from 1 was taken.
_LEGACY_PORT_RANGE = Sysctl(_P + "ip_local_port_range", "ephemeral ports for connect() and bind(0)",
                            parse_port_range)


def known_sysctls(legacy: bool) -> dict[str, Sysctl]:
    if not legacy:
        return SYSCTLS
    return {**SYSCTLS, RECYCLE.name: RECYCLE, _LEGACY_PORT_RANGE.name: _LEGACY_PORT_RANGE}


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
    num = t[:-1] if t[-1:] and t[-1:] in "KMGT" else t
    allowed = "allowed a size from 64M to 1024T, like 2G or 512M"
    try:
        v = float(num) * mult
    except ValueError:
        raise UsageError(f"--set mem={text!r}: expected a size; {allowed}") from None
    if not math.isfinite(v):
        raise UsageError(f"--set mem={text!r}: not a finite size; {allowed}")
    if not 64 << 20 <= v <= 1 << 50:
        raise UsageError(f"--set mem={text!r}: out of range; {allowed}")
    return int(v)
