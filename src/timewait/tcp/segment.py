"""TCP segments carried in IPv4 or IPv6 packets, and their wire codec.

A :class:`Segment` is the unit every layer passes around: the protocol core
builds them, the network moves them, views print them. Once handed to the
network a segment is never mutated; a router or NAT that changes a header
makes a copy (:meth:`Segment.copy`), so the trace can keep references instead
of formatted text.

The codec writes real bytes: an IPv4 header (with TTL, identification and
header checksum) or, when the addresses are IPv6 ones, an IPv6 header (hop
limit = the segment's ``ttl``; no identification on the wire), and a TCP
header with options in the order Linux's ``tcp_options_write`` uses,
checksummed over the family's pseudo-header (RFC 9293 §3.1, RFC 8200 §8.1).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
URG: Final = 0x20
ECE: Final = 0x40
CWR: Final = 0x80

IPPROTO_TCP = 6
IPV6_HDR_LEN = 40
DEFAULT_TTL = 64

# Option kinds (IANA).
OPT_EOL, OPT_NOP, OPT_MSS, OPT_WSCALE, OPT_SACK_PERM, OPT_SACK, OPT_TS = 0, 1, 2, 3, 4, 5, 8


class DecodeError(ValueError):
    """Bytes that are not a well-formed IPv4/TCP or IPv6/TCP packet."""


@dataclass(slots=True, eq=True)
class Segment:
    """One IPv4 or IPv6 packet carrying one TCP segment.

    Addresses are integers of either family (see :func:`ip_aton`; both of one
    family), ``ttl`` is the IPv6 hop limit for IPv6, ``ts`` is
    ``(tsval, tsecr)`` or ``None`` when the timestamps option is absent.
    ``born`` is the simulated time (µs) the packet first left a host and
    ``pid`` a network-assigned identity kept by router and NAT copies (assigned
    while a trace records, the only reader; -1 marks a packet of a connection the trace
    selection left out); neither is on the wire.
    """

    src: int
    dst: int
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    win: int = 0
    payload: bytes = b""
    mss: int | None = None
    wscale: int | None = None
    sack_ok: bool = False
    ts: tuple[int, int] | None = None
    ttl: int = DEFAULT_TTL
    ip_id: int = 0
    born: int = 0
    pid: int = 0
    raw_options: bytes | None = None  # set by decode() when the options are not canonical

    @property
    def seg_len(self) -> int:
        """Sequence space consumed: payload plus one for SYN and one for FIN."""
        f = self.flags
        return len(self.payload) + (f & SYN and 1) + (f & FIN and 1)

    @property
    def end_seq(self) -> int:
        return (self.seq + self.seg_len) & 0xFFFFFFFF

    def copy(self, **changes: object) -> Segment:
        """A copy with some fields changed (routers, NAT, duplication)."""
        s = Segment(
            self.src, self.dst, self.sport, self.dport, self.seq, self.ack, self.flags,
            self.win, self.payload, self.mss, self.wscale, self.sack_ok, self.ts,
            self.ttl, self.ip_id, self.born, self.pid, self.raw_options,
        )
        for k, v in changes.items():
            setattr(s, k, v)
        return s


# --------------------------------------------------------------------------- addresses
# One integer per address, of either family: an IPv4 address is its 32-bit value, an IPv6
# address its 128-bit value with bit 128 set (V6), so the two never collide (``::1`` is not
# 0.0.0.1) and the family is one comparison (:func:`is_v6`). Tuples of them key every table.

V6 = 1 << 128
V4_MAX = 0xFFFFFFFF


def is_v6(addr: int) -> bool:
    """Whether ``addr`` (as :func:`ip_aton` returns it) is an IPv6 address."""
    return addr > V4_MAX


@lru_cache(maxsize=4096)
def ip_aton(text: str) -> int:
    """An IPv4 dotted quad or an IPv6 address to one integer (see above);
    ``ValueError`` naming the text if malformed."""
    if ":" in text:
        try:
            return int(ipaddress.IPv6Address(text)) | V6
        except ValueError:
            raise ValueError(f"not an IP address: {text!r} (expected a.b.c.d or an IPv6 address such as fd00::1)") from None
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError(f"not an IP address: {text!r} (expected a.b.c.d or an IPv6 address such as fd00::1)")
    n = 0
    for p in parts:
        if not p.isdigit() or int(p) > 255:
            raise ValueError(f"not an IPv4 address: {text!r} (each part 0-255)")
        n = (n << 8) | int(p)
    return n


def ip_ntoa(n: int) -> str:
    """The text of an address from :func:`ip_aton` (IPv6 in RFC 5952 compressed form)."""
    if n > V4_MAX:
        return _ntoa6(n)
    return f"{n >> 24 & 255}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


@lru_cache(maxsize=4096)
def _ntoa6(n: int) -> str:
    a = ipaddress.IPv6Address(n & (V6 - 1))
    m = a.ipv4_mapped
    return f"::ffff:{m}" if m is not None else str(a)  # RFC 5952 §5: mapped in dotted form, as Linux


ULA_PREFIX = "fd00::"  # where the chapter's IPv4 addresses live in IPv6 runs (a ULA, RFC 4193)


def ula_of(v4: str) -> str:
    """The IPv6 twin of an IPv4 address in IPv6 runs (``--set family=ipv6``): its four parts
    written as the last four groups under :data:`ULA_PREFIX`, so 10.211.55.5 reads as
    ``fd00::10:211:55:5`` (each group's digits are the dotted quad's, read as hex)."""
    ip_aton(v4)  # a bad dotted quad is named here
    return ULA_PREFIX + ":".join(v4.split("."))


V6_ANY = V6  # "::", the IPv6 wildcard (0 is 0.0.0.0)
_MAPPED = V6 | (0xFFFF << 32)  # ::ffff:0.0.0.0, the v4-mapped prefix (RFC 4291 §2.5.5.2)


def is_v4_mapped(addr: int) -> bool:
    """Whether ``addr`` is an IPv4-mapped IPv6 address, ``::ffff:a.b.c.d``."""
    return addr >> 32 == _MAPPED >> 32


def v4_mapped(addr: int) -> int:
    """``::ffff:a.b.c.d`` for the IPv4 address ``addr`` (how an AF_INET6 socket names an IPv4 peer)."""
    return _MAPPED | addr


def unmapped(addr: int) -> int:
    """The IPv4 address inside ``::ffff:a.b.c.d`` (``addr`` itself if not v4-mapped)."""
    return addr & V4_MAX if addr >> 32 == _MAPPED >> 32 else addr


def ip_packed(n: int) -> bytes:
    """The address as on the wire: 4 bytes for IPv4, 16 for IPv6."""
    return (n & (V6 - 1)).to_bytes(16, "big") if n > V4_MAX else n.to_bytes(4, "big")


# --------------------------------------------------------------------------- checksums

def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum (ones' complement of the ones' complement sum)."""
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _pseudo(src: int, dst: int, length: int) -> bytes:
    return struct.pack("!IIBBH", src, dst, 0, IPPROTO_TCP, length)


def _pseudo6(src: bytes, dst: bytes, length: int) -> bytes:
    """RFC 8200 §8.1: source, destination, upper-layer length (32 bits), 3 zero bytes, next header."""
    return src + dst + struct.pack("!IxxxB", length, IPPROTO_TCP)


# --------------------------------------------------------------------------- options

def encode_options(seg: Segment) -> bytes:
    """Options in Linux ``tcp_options_write`` order, padded to 32 bits."""
    if seg.raw_options is not None:
        return seg.raw_options
    out = bytearray()
    if seg.mss is not None:
        out += struct.pack("!BBH", OPT_MSS, 4, seg.mss)
    if seg.ts is not None:
        if seg.sack_ok:
            out += bytes((OPT_SACK_PERM, 2))
        else:
            out += bytes((OPT_NOP, OPT_NOP))
        out += struct.pack("!BBII", OPT_TS, 10, seg.ts[0] & 0xFFFFFFFF, seg.ts[1] & 0xFFFFFFFF)
    elif seg.sack_ok:
        out += bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERM, 2))
    if seg.wscale is not None:
        out += bytes((OPT_NOP, OPT_WSCALE, 3, seg.wscale))
    while len(out) & 3:
        out.append(OPT_EOL)
    return bytes(out)


def _parse_options(data: bytes, seg: Segment) -> None:
    i, n = 0, len(data)
    while i < n:
        kind = data[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise DecodeError(f"TCP option kind {kind} truncated")
        length = data[i + 1]
        if length < 2 or i + length > n:
            raise DecodeError(f"TCP option kind {kind} has bad length {length}")
        body = data[i + 2 : i + length]
        if kind == OPT_MSS and length == 4:
            seg.mss = struct.unpack("!H", body)[0]
        elif kind == OPT_WSCALE and length == 3:
            seg.wscale = body[0]
        elif kind == OPT_SACK_PERM and length == 2:
            seg.sack_ok = True
        elif kind == OPT_TS and length == 10:
            seg.ts = struct.unpack("!II", body)
        i += length


# --------------------------------------------------------------------------- codec

def encode(seg: Segment) -> bytes:
    """The IPv4 packet as bytes, both checksums filled in; an IPv6 packet when the
    addresses are IPv6 (``ValueError`` if the two are of different families)."""
    opts = encode_options(seg)
    doff = (20 + len(opts)) // 4
    tcp_len = 20 + len(opts) + len(seg.payload)
    tcp = bytearray(
        struct.pack(
            "!HHIIBBHHH", seg.sport, seg.dport, seg.seq & 0xFFFFFFFF, seg.ack & 0xFFFFFFFF,
            doff << 4, seg.flags & 0xFF, seg.win & 0xFFFF, 0, 0,
        )
    )
    tcp += opts
    tcp += seg.payload
    if seg.src > V4_MAX or seg.dst > V4_MAX:
        return _encode6(seg, tcp)
    struct.pack_into("!H", tcp, 16, checksum(_pseudo(seg.src, seg.dst, tcp_len) + bytes(tcp)))
    ip = bytearray(
        struct.pack(
            "!BBHHHBBHII", 0x45, 0, 20 + tcp_len, seg.ip_id & 0xFFFF, 0x4000, seg.ttl & 0xFF,
            IPPROTO_TCP, 0, seg.src, seg.dst,
        )
    )
    struct.pack_into("!H", ip, 10, checksum(bytes(ip)))
    return bytes(ip) + bytes(tcp)


def _encode6(seg: Segment, tcp: bytearray) -> bytes:
    """The IPv6 packet: version 6, traffic class 0, flow label 0, next header TCP, hop limit
    ``seg.ttl``; the TCP checksum over the IPv6 pseudo-header (RFC 8200 §8.1)."""
    if not (seg.src > V4_MAX and seg.dst > V4_MAX):
        raise ValueError(f"segment {ip_ntoa(seg.src)} > {ip_ntoa(seg.dst)} mixes IPv4 and IPv6 addresses")
    src, dst = ip_packed(seg.src), ip_packed(seg.dst)
    struct.pack_into("!H", tcp, 16, checksum(_pseudo6(src, dst, len(tcp)) + bytes(tcp)))
    return struct.pack("!IHBB", 6 << 28, len(tcp), IPPROTO_TCP, seg.ttl & 0xFF) + src + dst + bytes(tcp)


def decode(data: bytes, *, verify: bool = True) -> Segment:
    """Parse an IPv4/TCP or IPv6/TCP packet (by the version nibble). Raises
    :class:`DecodeError` for anything malformed or truncated."""
    if not data:
        raise DecodeError("empty packet")
    vihl = data[0]
    if vihl >> 4 == 6:
        return _decode6(data, verify)
    if len(data) < 20:
        raise DecodeError(f"packet of {len(data)} bytes is shorter than an IPv4 header")
    if vihl >> 4 != 4:
        raise DecodeError(f"IP version {vihl >> 4}; only 4 and 6 are supported")
    ihl = (vihl & 15) * 4
    if ihl < 20 or len(data) < ihl:
        raise DecodeError(f"IPv4 header length {ihl} is invalid")
    total, ip_id, _frag, ttl, proto = struct.unpack("!HHHBB", data[2:10])
    if proto != IPPROTO_TCP:
        raise DecodeError(f"IP protocol {proto} is not TCP (6)")
    if total < ihl + 20 or total > len(data):
        raise DecodeError(f"IPv4 total length {total} does not fit {len(data)} bytes")
    if verify and checksum(data[:ihl]) != 0:
        raise DecodeError("bad IPv4 header checksum")
    src, dst = struct.unpack("!II", data[12:20])
    return _decode_tcp(data[ihl:total], src, dst, ttl, ip_id, verify)


def _decode6(data: bytes, verify: bool) -> Segment:
    """The IPv6 packet's fixed header, then its TCP segment (no extension headers: Linux's
    TCP sends none, so one here is refused by name)."""
    if len(data) < IPV6_HDR_LEN:
        raise DecodeError(f"packet of {len(data)} bytes is shorter than an IPv6 header (40)")
    plen, nxt, hlim = struct.unpack("!HBB", data[4:8])
    if nxt != IPPROTO_TCP:
        raise DecodeError(f"IPv6 next header {nxt} is not TCP (6); extension headers are not supported")
    if plen < 20 or IPV6_HDR_LEN + plen > len(data):
        raise DecodeError(f"IPv6 payload length {plen} does not fit {len(data)} bytes (TCP needs 20)")
    src = int.from_bytes(data[8:24], "big") | V6
    dst = int.from_bytes(data[24:40], "big") | V6
    return _decode_tcp(data[IPV6_HDR_LEN:IPV6_HDR_LEN + plen], src, dst, hlim, 0, verify)


def _decode_tcp(tcp: bytes, src: int, dst: int, ttl: int, ip_id: int, verify: bool) -> Segment:
    """The TCP header, options and payload of a packet whose IP header is read (``tcp`` holds
    at least 20 bytes); the checksum over the family's pseudo-header."""
    sport, dport, seqn, ackn, off, flags, win = struct.unpack("!HHIIBBH", tcp[:16])
    doff = (off >> 4) * 4
    if doff < 20 or doff > len(tcp):
        raise DecodeError(f"TCP data offset {doff} is invalid for a {len(tcp)}-byte segment")
    if verify:
        pseudo = (_pseudo6(ip_packed(src), ip_packed(dst), len(tcp)) if src > V4_MAX
                  else _pseudo(src, dst, len(tcp)))
        if checksum(pseudo + tcp) != 0:
            raise DecodeError("bad TCP checksum")
    seg = Segment(src, dst, sport, dport, seqn, ackn, flags, win, bytes(tcp[doff:]), ttl=ttl, ip_id=ip_id)
    raw = bytes(tcp[20:doff])
    _parse_options(raw, seg)
    if encode_options(seg) != raw:
        seg.raw_options = raw
    return seg
