"""A NAT box: Linux masquerade (SNAT) with a conntrack-like mapping table.

Packets from the inside prefix leave with the NAT's public address and a
public port; replies find their way back through the mapping table. Each
mapping is a conntrack entry with the TCP state conntrack tracks
(``nf_conntrack_proto_tcp.c``: SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT,
CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE) and that state's timeout
(``net.netfilter.nf_conntrack_tcp_timeout_*``); an entry dies when its timeout
runs out without a packet, on a lazy timer (no scan over the table).

Port choice follows ``nf_nat_l4proto_unique_tuple`` (nf_nat_core.c): keep the
source port if the reply tuple (server, server port, public address, port) is
unused and the port is inside the range; otherwise try ports from a random
offset, at most 128 attempts, then rounds of half as many from new random
offsets. A port is *taken* only toward the same destination: two flows to
different servers may share one public port (the reply tuples differ). A new
flow that finds no port has its SYN dropped ("nat-exhausted"), as a conntrack
insert clash drops it on Linux.

IPv6 works the same way (NAT66 masquerade: an IPv6 public address and inside prefix; the
hop limit is ``ttl``); one NAT translates one family, and packets of the other pass as transit.

Left out: window tracking (``tcp_in_window``; every packet is taken as in
window), the 300 s ``max_retrans``/``unacknowledged`` timeouts, simultaneous
open (SYN_SENT2), and the leak of conntrack-INVALID packets untranslated (here
they are translated and leave the state alone).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, fields
from typing import Any

from timewait.errors import UsageError
from timewait.sim.network import Node
from timewait.tcp.config import SEC
from timewait.tcp.segment import (
    ACK,
    FIN,
    RST,
    SYN,
    V4_MAX,
    V6,
    Segment,
    checksum,
    ip_aton,
    ip_ntoa,
    ip_packed,
)
from timewait.tcp.seq import newer
from timewait.trace import DROP, FWD, ICMP, NOTE

# Conntrack's TCP states, in the kernel's order (enum tcp_conntrack).
NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE = range(9)
STATE_NAMES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK",
               "TIME_WAIT", "CLOSE")
_IV = -1  # invalid: the state stays (Linux would not translate such a packet)
_IG = -2  # ignored: the state stays

# Packet classes (get_conntrack_index): RST, then SYN (with or without ACK), FIN, ACK, none.
_SYN, _SYNACK, _FIN, _ACK, _RST, _NONE = range(6)

_sNO, _sSS, _sSR, _sES, _sFW, _sCW, _sLA, _sTW, _sCL = range(9)
# tcp_conntracks[direction][class][state] from nf_conntrack_proto_tcp.c, without SYN_SENT2.
_TABLE: tuple[tuple[tuple[int, ...], ...], ...] = (
    (  # ORIGINAL (inside -> outside)
        #   sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL
        (_sSS, _sSS, _IG, _IG, _IG, _IG, _IG, _sSS, _sSS),  # syn: sTW/sCL -> sSS reopens
        (_IV, _IV, _sSR, _IV, _IV, _IV, _IV, _IV, _IV),     # synack
        (_IV, _IV, _sFW, _sFW, _sLA, _sLA, _sLA, _sTW, _sCL),  # fin
        (_sES, _IV, _sES, _sES, _sCW, _sCW, _sTW, _sTW, _sCL),  # ack
        (_IV, _sCL, _sCL, _sCL, _sCL, _sCL, _sCL, _sCL, _sCL),  # rst
        (_IV,) * 9,                                          # none
    ),
    (  # REPLY (outside -> inside)
        (_IV, _IV, _IV, _IV, _IV, _IV, _IV, _sSS, _IV),     # syn
        (_IV, _sSR, _IG, _IG, _IG, _IG, _IG, _IG, _IG),     # synack
        (_IV, _IV, _sFW, _sFW, _sLA, _sLA, _sLA, _sTW, _sCL),  # fin
        (_IV, _IG, _sSR, _sES, _sCW, _sCW, _sTW, _sTW, _sCL),  # ack
        (_IV, _sCL, _sCL, _sCL, _sCL, _sCL, _sCL, _sCL, _sCL),  # rst
        (_IV,) * 9,                                          # none
    ),
)

MAX_ATTEMPTS = 128   # NF_NAT_MAX_ATTEMPTS
HARDER_THRESH = MAX_ATTEMPTS // 4  # NF_NAT_HARDER_THRESH: the last attempts may evict a closing entry
MASQUERADE_RANGE = (1024, 65535)   # masquerade's range for a source port >= 1024


@dataclass(frozen=True, slots=True)
class ConntrackTimeouts:
    """``net.netfilter.nf_conntrack_tcp_timeout_*`` in seconds (Linux defaults)."""

    syn_sent: float = 120
    syn_recv: float = 60
    established: float = 432000
    fin_wait: float = 120
    close_wait: float = 60
    last_ack: float = 30
    time_wait: float = 120
    close: float = 10

    def of(self, state: int) -> int:
        """The timeout (µs) of a conntrack state."""
        return int(getattr(self, STATE_NAMES[state].lower()) * SEC)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _class_of(flags: int) -> int:
    """``get_conntrack_index``: which row of the table a segment uses."""
    if flags & RST:
        return _RST
    if flags & SYN:
        return _SYNACK if flags & ACK else _SYN
    if flags & FIN:
        return _FIN
    if flags & ACK:
        return _ACK
    return _NONE


@dataclass(slots=True, eq=False)
class Mapping:
    """One conntrack entry with its SNAT binding.

    The original tuple is (private address, private port, remote address,
    remote port); replies come as (remote, remote port, public, public port).
    Times are µs.
    """

    priv_addr: int
    priv_port: int
    remote_addr: int
    remote_port: int
    pub_addr: int
    pub_port: int
    created: int
    state: int = NONE
    expires: int = 0
    seen_reply: bool = False
    assured: bool = False
    orig_end: int = 0        # highest sequence end sent from inside (seen[0].td_end)
    last_seen: int = 0       # time of the last packet either way
    gone_at: int | None = None
    gone_why: str = ""
    timer_at: int = 0

    @property
    def orig(self) -> tuple[int, int, int, int]:
        return (self.priv_addr, self.priv_port, self.remote_addr, self.remote_port)

    @property
    def reply(self) -> tuple[int, int, int, int]:
        return (self.remote_addr, self.remote_port, self.pub_addr, self.pub_port)

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]

    @property
    def private(self) -> str:
        return _ep(self.priv_addr, self.priv_port)

    @property
    def public(self) -> str:
        return _ep(self.pub_addr, self.pub_port)

    @property
    def remote(self) -> str:
        return _ep(self.remote_addr, self.remote_port)


def _ep(addr: int, port: int) -> str:
    """``10.0.0.1:5000``, or ``[fd00::1]:5000`` for IPv6."""
    return f"[{ip_ntoa(addr)}]:{port}" if addr > V4_MAX else f"{ip_ntoa(addr)}:{port}"


@dataclass(frozen=True, slots=True)
class NatRow:
    """One line of the mapping table as ``conntrack -L`` shows it."""

    state: str
    timeout_s: int
    private: str
    public: str
    remote: str
    assured: bool
    unreplied: bool

    def to_json(self) -> dict[str, Any]:
        return {"proto": "tcp", "state": self.state, "timeout_s": self.timeout_s, "private": self.private,
                "public": self.public, "remote": self.remote, "assured": self.assured,
                "unreplied": self.unreplied}

    def conntrack_line(self) -> str:
        """``tcp      6 117 TIME_WAIT src=… dst=… sport=… dport=… src=… dst=… sport=… dport=… [ASSURED]``."""
        pa, pp = self.private.rsplit(":", 1)
        ra, rp = self.remote.rsplit(":", 1)
        ua, up = self.public.rsplit(":", 1)
        pa, ra, ua = (a.strip("[]") for a in (pa, ra, ua))  # conntrack prints IPv6 bare
        flag = " [UNREPLIED]" if self.unreplied else ""
        tail = " [ASSURED]" if self.assured else ""
        return (f"tcp      6 {self.timeout_s} {self.state} src={pa} dst={ra} sport={pp} dport={rp}{flag} "
                f"src={ra} dst={ua} sport={rp} dport={up}{tail} mark=0 use=1")


def parse_prefix(text: str) -> tuple[int, int]:
    """``"192.168.1.0/24"`` (or an IPv6 prefix, ``"fd00:1::/64"``) to (network, mask) as integers
    of :func:`timewait.tcp.segment.ip_aton`'s kind, so ``addr & mask == network`` holds exactly
    for the prefix's addresses of its family: an IPv6 network carries the V6 bit, and the mask
    of either family has it too, so an address of the other family never matches."""
    try:
        if ":" in text:
            net6 = ipaddress.IPv6Network(text, strict=False)
            return int(net6.network_address) | V6, int(net6.netmask) | V6
        net = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise UsageError(f"inside prefix {text!r}: expected an IPv4 prefix such as 192.168.1.0/24 or an IPv6 "
                         "one such as fd00:1::/64") from None
    return int(net.network_address), int(net.netmask) | V6


class Nat(Node):
    """A masquerading router between an inside prefix and the rest of the network.

    ``public`` is the one address the outside sees (the NAT owns it, so
    replies route to it); ``inside`` is the private prefix whose packets are
    translated. ``port_range`` is iptables' ``--to-ports LOW-HIGH`` (None:
    masquerade's default, keep the port or search 1024-65535).
    ``evict_closing``: recent Linux (``nf_nat_used_tuple_harder``, 2023) lets
    a new SYN take, in its last attempts, a public port whose entry is in
    TIME_WAIT or CLOSE once the SYN's sequence number is past that entry's;
    off by default, as in older kernels.
    """

    kind = "nat"

    def __init__(self, name: str, public: str | int, inside: str = "192.168.0.0/16", *,
                 port_range: tuple[int, int] | None = None, timeouts: ConntrackTimeouts | None = None,
                 evict_closing: bool = False) -> None:
        pub = public if isinstance(public, int) else ip_aton(public)
        super().__init__(name, [pub])
        self.public = pub
        self.inside_net, self.inside_mask = parse_prefix(inside)
        self.inside = inside
        if port_range is not None:
            lo, hi = port_range
            if not 1 <= lo <= hi <= 65535:
                raise UsageError(f"NAT port range {lo}-{hi}: need 1 <= LOW <= HIGH <= 65535")
        self.port_range = port_range
        self.timeouts = timeouts or ConntrackTimeouts()
        self.evict_closing = evict_closing
        self.by_orig: dict[tuple[int, int, int, int], Mapping] = {}
        self.by_reply: dict[tuple[int, int, int, int], Mapping] = {}
        self.by_source: dict[tuple[int, int], Mapping] = {}  # nf_nat_bysource: (priv addr, port)
        self.history: list[Mapping] = []                      # every mapping ever made, in order
        self.refused: dict[int, int] = {}                     # private address -> SYNs dropped for want of a port
        self.counters: dict[str, int] = {"created": 0, "expired": 0, "evicted": 0, "exhausted": 0,
                                         "no_mapping": 0, "out": 0, "in": 0}

    # ------------------------------------------------------------------ views

    def is_inside(self, addr: int) -> bool:
        return addr & self.inside_mask == self.inside_net

    def mappings(self) -> list[Mapping]:
        """Live entries, oldest first."""
        return sorted(self.by_orig.values(), key=lambda m: (m.created, m.priv_addr, m.priv_port))

    def table(self, now: int | None = None) -> list[NatRow]:
        """The live mapping table at ``now`` (µs; default the current time)."""
        if now is None:
            now = self.net.sched.now
        return [NatRow(m.state_name, max(0, (m.expires - now) // SEC), m.private, m.public, m.remote,
                       m.assured, not m.seen_reply) for m in self.mappings()]

    def table_text(self, now: int | None = None) -> str:
        """The table as ``conntrack -L -p tcp`` prints it, with its summary line."""
        rows = self.table(now)
        lines = [r.conntrack_line() for r in rows]
        lines.append(f"conntrack: {len(rows)} flow entries have been shown ({self.name}, public "
                     f"{ip_ntoa(self.public)}, inside {self.inside}).")
        return "\n".join(lines)

    def lookup_public(self, remote_addr: int, remote_port: int, pub_port: int) -> Mapping | None:
        """The live mapping a reply from ``remote`` to ``public:pub_port`` would use."""
        return self.by_reply.get((remote_addr, remote_port, self.public, pub_port))

    # ------------------------------------------------------------------ the wire

    def receive(self, seg: Segment) -> None:
        """Route, translate (both ways), decrement TTL and forward; or drop with a reason."""
        net = self.net
        if net.too_old(self, seg):
            return
        tr = net.trace
        now = net.sched.now
        if seg.ttl <= 1:
            if tr.on and (seg.pid > 0 or tr.select is None):
                tr.records.append((now, DROP, self.name, seg, "ttl"))
                tr.records.append((now, ICMP, self.name, seg, "time-exceeded"))
            return
        if seg.dst == self.public:
            m = self.by_reply.get((seg.src, seg.sport, seg.dst, seg.dport))
            if m is None:
                self._drop(seg, "nat-no-mapping")
                return
            self._track(m, 1, seg, now)
            out = seg.copy(dst=m.priv_addr, dport=m.priv_port, ttl=seg.ttl - 1)
            self.counters["in"] += 1
        elif self.is_inside(seg.src) and not self.is_inside(seg.dst):
            key = (seg.src, seg.sport, seg.dst, seg.dport)
            m = self.by_orig.get(key)
            if m is None:
                if seg.flags & (SYN | ACK | RST) != SYN:
                    # No entry to translate with (an ACK or RST of a flow the NAT forgot).
                    self._drop(seg, "nat-no-mapping")
                    return
                m = self._new_mapping(seg, now)
                if m is None:
                    self.counters["exhausted"] += 1
                    self.refused[seg.src] = self.refused.get(seg.src, 0) + 1
                    self._drop(seg, "nat-exhausted")
                    return
            self._track(m, 0, seg, now)
            out = seg.copy(src=m.pub_addr, sport=m.pub_port, ttl=seg.ttl - 1)
            self.counters["out"] += 1
        elif self.is_inside(seg.dst):
            # Private addresses are not reachable from outside except through a mapping.
            self._drop(seg, "nat-no-mapping")
            return
        else:
            out = seg.copy(ttl=seg.ttl - 1)  # transit: a plain router
        if tr.on and (seg.pid > 0 or tr.select is None):
            tr.records.append((now, FWD, self.name, seg, out))
        net.transmit(self, out)

    def _drop(self, seg: Segment, reason: str) -> None:
        if reason == "nat-no-mapping":
            self.counters["no_mapping"] += 1
        tr = self.net.trace
        if tr.on and (seg.pid > 0 or tr.select is None):
            tr.records.append((self.net.sched.now, DROP, self.name, seg, reason))

    def _note(self, text: str) -> None:
        tr = self.net.trace
        if tr.on:
            tr.records.append((self.net.sched.now, NOTE, self.name, text))

    # ------------------------------------------------------------------ conntrack

    def _track(self, m: Mapping, direction: int, seg: Segment, now: int) -> None:
        """``tcp_packet``: move the entry's state by the table and refresh its timeout."""
        old = m.state
        new = _TABLE[direction][_class_of(seg.flags)][old]
        if direction == 0:
            end = seg.end_seq
            if not m.orig_end or newer(end, m.orig_end):
                m.orig_end = end
        else:
            m.seen_reply = True
        if new < 0:
            new = old  # invalid or ignored: the state stays, the timeout is refreshed
        if old == SYN_RECV and new == ESTABLISHED:
            m.assured = True
        m.state = new
        m.last_seen = now
        m.expires = now + self.timeouts.of(new)
        if not m.timer_at or m.expires < m.timer_at:
            m.timer_at = m.expires
            self.net.sched.at(m.expires, self._expire, m)

    def _expire(self, m: Mapping) -> None:
        """The entry's lazy timer: re-arm if a packet refreshed it, else it dies."""
        now = self.net.sched.now
        if m.gone_at is not None or now != m.timer_at:
            return
        m.timer_at = 0
        if m.expires > now:
            m.timer_at = m.expires
            self.net.sched.at(m.expires, self._expire, m)
            return
        self.counters["expired"] += 1
        self._remove(m, "expired")

    def _remove(self, m: Mapping, why: str) -> None:
        now = self.net.sched.now
        del self.by_orig[m.orig]
        del self.by_reply[m.reply]
        src = (m.priv_addr, m.priv_port)
        if self.by_source.get(src) is m:
            del self.by_source[src]
        m.gone_at = now
        m.gone_why = why
        self._note(f"conntrack {why}: {m.private} -> {m.remote} as {m.public} ({m.state_name})")

    def _new_mapping(self, seg: Segment, now: int) -> Mapping | None:
        port = self._pick_port(seg, now)
        if port is None:
            return None
        m = Mapping(seg.src, seg.sport, seg.dst, seg.dport, self.public, port, now)
        self.by_orig[m.orig] = m
        self.by_reply[m.reply] = m
        self.by_source.setdefault((seg.src, seg.sport), m)
        self.history.append(m)
        self.counters["created"] += 1
        self._note(f"conntrack new: {m.private} -> {m.remote} as {m.public}")
        return m

    # ------------------------------------------------------------------ port choice

    def _range_for(self, sport: int) -> tuple[int, int]:
        if self.port_range is not None:
            return self.port_range
        if sport < 512:
            return (1, 511)
        if sport < 1024:
            return (600, 1023)
        return MASQUERADE_RANGE

    def _taken(self, seg: Segment, port: int, attempts_left: int) -> bool:
        """``nf_nat_used_tuple_harder``: is the reply tuple for ``port`` in use?"""
        m = self.by_reply.get((seg.dst, seg.dport, self.public, port))
        if m is None:
            return False
        if (self.evict_closing and attempts_left <= HARDER_THRESH and m.state >= TIME_WAIT
                and newer(seg.end_seq, m.orig_end)):
            # Destructive last resort: the closing entry goes, its port is free.
            self.counters["evicted"] += 1
            self._remove(m, "evicted")
            return False
        return True

    def _pick_port(self, seg: Segment, now: int) -> int | None:
        """``get_unique_tuple`` + ``nf_nat_l4proto_unique_tuple`` for a new flow."""
        lo, hi = self._range_for(seg.sport)
        # find_appropriate_src: the same source already mapped (toward another destination)
        # keeps its public port, if that port is free toward this one.
        prev = self.by_source.get((seg.src, seg.sport))
        if prev is not None and lo <= prev.pub_port <= hi and not self._taken(seg, prev.pub_port, MAX_ATTEMPTS):
            return prev.pub_port
        if lo <= seg.sport <= hi and not self._taken(seg, seg.sport, MAX_ATTEMPTS):
            return seg.sport
        size = hi - lo + 1
        attempts = min(size, MAX_ATTEMPTS)
        rng = self.net.rng
        off = rng.getrandbits(16)
        while True:
            for i in range(attempts):
                port = lo + (off + i) % size
                if not self._taken(seg, port, attempts - i):
                    return port
            if attempts >= size or attempts < 16:
                return None
            attempts //= 2
            off = rng.getrandbits(16)


# ---------------------------------------------------------------------- bytes on the wire

def _csum_update(csum: int, old: bytes, new: bytes) -> int:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), over 16-bit words."""
    s = ~csum & 0xFFFF
    for i in range(0, len(old), 2):
        (o,) = struct.unpack_from("!H", old, i)
        (n,) = struct.unpack_from("!H", new, i)
        s += (~o & 0xFFFF) + n
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def rewrite_packet(data: bytes, *, src: int | None = None, dst: int | None = None, sport: int | None = None,
                   dport: int | None = None, ttl: int | None = None) -> bytes:
    """Rewrite an encoded IPv4/TCP packet as a NAT does: patch the fields and
    adjust both checksums incrementally (RFC 1624), never summing the packet again.

    The IPv4 checksum covers the addresses and TTL; the TCP checksum covers
    the addresses (through the pseudo-header) and the ports. An IPv6 packet has no header
    checksum: its hop limit is patched alone, the 16-byte addresses move the TCP checksum.
    """
    if data[0] >> 4 == 6:
        return _rewrite6(data, src, dst, sport, dport, ttl)
    pkt = bytearray(data)
    ihl = (pkt[0] & 15) * 4
    (ip_sum,) = struct.unpack_from("!H", pkt, 10)
    (tcp_sum,) = struct.unpack_from("!H", pkt, ihl + 16)
    if ttl is not None:
        old = bytes(pkt[8:10])
        pkt[8] = ttl & 0xFF
        ip_sum = _csum_update(ip_sum, old, bytes(pkt[8:10]))
    for off, value in ((12, src), (16, dst)):
        if value is not None:
            old = bytes(pkt[off:off + 4])
            struct.pack_into("!I", pkt, off, value)
            new = bytes(pkt[off:off + 4])
            ip_sum = _csum_update(ip_sum, old, new)
            tcp_sum = _csum_update(tcp_sum, old, new)
    for off, value in ((ihl, sport), (ihl + 2, dport)):
        if value is not None:
            old = bytes(pkt[off:off + 2])
            struct.pack_into("!H", pkt, off, value)
            tcp_sum = _csum_update(tcp_sum, old, bytes(pkt[off:off + 2]))
    struct.pack_into("!H", pkt, 10, ip_sum)
    struct.pack_into("!H", pkt, ihl + 16, tcp_sum)
    return bytes(pkt)


def _rewrite6(data: bytes, src: int | None, dst: int | None, sport: int | None, dport: int | None,
              ttl: int | None) -> bytes:
    pkt = bytearray(data)
    (tcp_sum,) = struct.unpack_from("!H", pkt, 56)
    if ttl is not None:
        pkt[7] = ttl & 0xFF
    for off, value in ((8, src), (24, dst)):
        if value is not None:
            old = bytes(pkt[off:off + 16])
            pkt[off:off + 16] = ip_packed(value)
            tcp_sum = _csum_update(tcp_sum, old, bytes(pkt[off:off + 16]))
    for off, value in ((40, sport), (42, dport)):
        if value is not None:
            old = bytes(pkt[off:off + 2])
            struct.pack_into("!H", pkt, off, value)
            tcp_sum = _csum_update(tcp_sum, old, bytes(pkt[off:off + 2]))
    struct.pack_into("!H", pkt, 56, tcp_sum)
    return bytes(pkt)


def full_checksums_ok(data: bytes) -> bool:
    """Both checksums of an encoded packet verify when summed from scratch (IPv6: the TCP one)."""
    if data[0] >> 4 == 6:
        (plen,) = struct.unpack_from("!H", data, 4)
        tcp6 = data[40:40 + plen]
        return checksum(data[8:40] + struct.pack("!IxxxB", len(tcp6), 6) + tcp6) == 0
    ihl = (data[0] & 15) * 4
    (total,) = struct.unpack_from("!H", data, 2)
    src, dst = struct.unpack_from("!II", data, 12)
    tcp = data[ihl:total]
    pseudo = struct.pack("!IIBBH", src, dst, 0, 6, len(tcp))
    return checksum(data[:ihl]) == 0 and checksum(pseudo + tcp) == 0


__all__ = ["ConntrackTimeouts", "Mapping", "Nat", "NatRow", "STATE_NAMES", "full_checksums_ok",
           "parse_prefix", "rewrite_packet"]
