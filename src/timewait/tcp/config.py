"""Per-host TCP settings the protocol core reads (a view of the host's sysctls).

Times are integer microseconds. The host keeps one :class:`TcpConfig` per
network namespace and updates it when a sysctl changes, so the core never
parses sysctl names on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

SEC: Final = 1_000_000
MS: Final = 1_000
PAWS_WRAP: Final = 2147 * SEC  # TCP_PAWS_WRAP (6.7+): ts_recent older than this is not trusted
PAWS_MSL: Final = 60 * SEC     # TCP_PAWS_MSL


@dataclass(slots=True)
class TcpConfig:
    """Knobs of one host's TCP. Defaults are Linux 6.x (see ``sim/profiles.py``)."""

    timestamps: int = 1            # net.ipv4.tcp_timestamps: 0 off, 1 with offset, 2 without
    ts_offsets: str = "4tuple"     # "4tuple" (6.18 stable), "host" (4.11), "random" (4.10), "none" (<=4.9)
    sack: bool = True              # net.ipv4.tcp_sack
    window_scaling: bool = True    # net.ipv4.tcp_window_scaling
    mss: int = 1460
    rcv_wscale: int = 7
    rcv_buf: int = 131072          # receive buffer; the window offered is half (Linux's rmem/2 heuristic)
    syn_win: int = 64240           # window in our SYN (Linux: 44 * mss rounded)
    rfc1337: int = 0               # net.ipv4.tcp_rfc1337
    fin_timeout: int = 60 * SEC    # net.ipv4.tcp_fin_timeout
    tw_len: int = 60 * SEC         # TCP_TIMEWAIT_LEN (linux) or 2*MSL (rfc793)
    syn_retries: int = 6
    syn_linear_timeouts: int = 4
    synack_retries: int = 5
    orphan_retries: int = 0
    retries2: int = 15
    rto_min: int = 200 * MS
    rto_init: int = 1 * SEC
    rto_max: int = 120 * SEC
    timeout_min: int = 8 * MS      # TCP_TIMEOUT_MIN: 2 jiffies at HZ=250
    invalid_ratelimit: int = 500 * MS
    challenge_ack: bool = True     # RFC 5961 (3.6+); False = RFC 793 answers
    quick_syn_resend: bool = True  # LA-3 quick resend (5.6+)
    syn_in_lastack_rst: bool = False  # pre-3.6 lesson profile: a SYN in a synchronized state gets an RST
    ts_base_ms: int = 0            # this host's monotonic clock at simulated time 0 (uptime), ms
    tw_recycle: int = 0            # legacy net.ipv4.tcp_tw_recycle (linux-4.9 profile)
    ttl: int = 64                  # net.ipv4.ip_default_ttl
    synack_win: int = 65160        # window in our SYN-ACK
    delack: bool = True            # Linux's delayed ACK and quick-ack mode (DA-1..DA-6); False: ACK at once
    jiffy: int = 4 * MS            # one tick at HZ=250: the delayed-ACK timer's granularity
    ato_min: int = 40 * MS         # TCP_ATO_MIN = TCP_DELACK_MIN = HZ/25
    delack_max: int = 200 * MS     # TCP_DELACK_MAX = HZ/5 (icsk_delack_max)

    def ts_clock(self, now: int) -> int:
        """``tcp_clock_ms()``: the host's 1 kHz monotonic clock (TS-2), as u32."""
        return (self.ts_base_ms + now // MS) & 0xFFFFFFFF
