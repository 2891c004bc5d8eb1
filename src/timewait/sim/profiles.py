"""Kernel profiles: sysctl defaults plus the compiled-in behaviour of a kernel generation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from timewait.errors import UsageError
from timewait.tcp.config import SEC


@dataclass(frozen=True, slots=True)
class Profile:
    """Defaults of one kernel (or textbook) generation.

    ``tw_from_msl``: TIME_WAIT lasts 2 x MSL (the textbook) instead of Linux's
    compiled-in TCP_TIMEWAIT_LEN = 60 s (TW-3).
    """

    name: str
    doc: str
    sysctls: dict[str, Any]
    msl: int = 30 * SEC                 # the network's maximum segment lifetime
    tw_from_msl: bool = False
    tw_len: int = 60 * SEC
    legacy: bool = False                # has tcp_tw_recycle (before 4.12)
    ts_offsets: str = "4tuple"
    challenge_ack: bool = True
    quick_syn_resend: bool = True
    syn_in_lastack_rst: bool = False
    isn_tick_ns: int = 64               # ISN clock: Linux 64 ns (ISN-1), RFC 793 4 µs
    # TcpConfig fields; the textbook profiles set delack False: every ACK at once (4-segment close)
    cfg: dict[str, Any] = field(default_factory=dict)


_LINUX = {
    "net.ipv4.tcp_fin_timeout": 60,
    "net.ipv4.ip_local_port_range": (32768, 60999),
    "net.ipv4.ip_local_reserved_ports": frozenset(),
    "net.ipv4.tcp_max_tw_buckets": 131072,
    "net.ipv4.tcp_rfc1337": 0,
    "net.ipv4.tcp_timestamps": 1,
    "net.ipv4.tcp_tw_reuse": 2,
    "net.ipv4.tcp_tw_reuse_delay": 1000,
    "net.ipv4.tcp_syn_retries": 6,
    "net.ipv4.tcp_syn_linear_timeouts": 4,
    "net.ipv4.tcp_synack_retries": 5,
    "net.ipv4.tcp_orphan_retries": 0,
    "net.ipv4.tcp_retries2": 15,
    "net.ipv4.tcp_sack": 1,
    "net.ipv4.tcp_window_scaling": 1,
    "net.ipv4.tcp_invalid_ratelimit": 500,
    "net.ipv4.ip_default_ttl": 64,
    "net.ipv4.tcp_max_orphans": 131072,
    "net.ipv4.tcp_max_syn_backlog": 2048,
    "net.core.somaxconn": 4096,
    # 6.18: tcp_rmem[2] is 32 MB (raised from 6 MB in 6.16) and rmem_max 4 MB: window scale 10 (WIN-2)
    "net.ipv4.tcp_rmem": (4096, 131072, 33554432),
    "net.core.rmem_max": 4194304,
}

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("linux", "Linux 6.18 defaults: TIME_WAIT 60 s fixed, tw_reuse=2, per-4-tuple TS offsets", _LINUX),
        Profile(
            "linux-4.9",
            "Linux 4.9: tcp_tw_recycle exists, no TS offsets, tw_reuse=0, doubling SYN RTOs, no quick SYN resend",
            {**_LINUX, "net.ipv4.tcp_tw_reuse": 0, "net.ipv4.tcp_tw_recycle": 0,
             "net.ipv4.tcp_syn_linear_timeouts": 0, "net.ipv4.tcp_rmem": (4096, 87380, 6291456),
             "net.core.rmem_max": 212992},
            legacy=True, ts_offsets="none", quick_syn_resend=False,
        ),
        Profile(
            "rfc793",
            "The textbook: MSL 120 s, TIME_WAIT = 2 x MSL, no timestamps, 4 µs ISN clock, RST for an in-window SYN",
            {**_LINUX, "net.ipv4.tcp_timestamps": 0, "net.ipv4.tcp_tw_reuse": 0,
             "net.ipv4.ip_local_port_range": (1025, 65535), "net.ipv4.tcp_syn_linear_timeouts": 0},
            msl=120 * SEC, tw_from_msl=True, challenge_ack=False, quick_syn_resend=False,
            syn_in_lastack_rst=True, isn_tick_ns=4000, cfg={"delack": False},
        ),
        Profile(
            "chapter",
            "The chapter's model: MSL 30 s so TIME_WAIT = 2 x MSL = 60 s, and a SYN meeting LAST_ACK is reset",
            {**_LINUX, "net.ipv4.tcp_syn_linear_timeouts": 0},
            msl=30 * SEC, tw_from_msl=True, challenge_ack=False, quick_syn_resend=False,
            syn_in_lastack_rst=True, isn_tick_ns=4000, cfg={"delack": False},
        ),
    )
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(f"unknown profile {name!r}; allowed: {', '.join(PROFILES)}") from None
