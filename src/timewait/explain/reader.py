"""Streaming read of a real capture: pcap or pcapng, Ethernet, Linux cooked (v1, v2), raw IP, loopback.

Only TCP over IPv4 or IPv6 is kept; every other frame is counted and skipped.
A frame that does not decode is counted as malformed, never raised. A file
that is not a capture, or that ends in the middle of a record, raises
:class:`CaptureError` with one line saying where.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import dpkt

from timewait.tcp.seq import M32

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# Link-layer header types (tcpdump.org): those a TCP capture of a Linux machine uses.
DLT_NULL, DLT_EN10MB, DLT_RAW_BSD, DLT_RAW_OPENBSD, DLT_RAW = 0, 1, 12, 14, 101
DLT_LOOP, DLT_LINUX_SLL, DLT_IPV4, DLT_IPV6, DLT_LINUX_SLL2 = 108, 113, 228, 229, 276
LINKTYPES = {
    DLT_NULL: "BSD loopback", DLT_EN10MB: "Ethernet", DLT_RAW_BSD: "raw IP", DLT_RAW_OPENBSD: "raw IP",
    DLT_RAW: "raw IP", DLT_LOOP: "OpenBSD loopback", DLT_LINUX_SLL: "Linux cooked v1",
    DLT_IPV4: "raw IPv4", DLT_IPV6: "raw IPv6", DLT_LINUX_SLL2: "Linux cooked v2",
}
PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


class CaptureError(Exception):
    """The file is not a capture this reader knows, or it is cut short; the message is one line."""


class CapturedSegment:
    """What a captured segment says of itself from its flags, ``seq`` and payload ``length``
    (shared by this reader's :class:`Packet` and the kernel lab's ``Pkt``)."""

    __slots__ = ()
    flags: int
    seq: int
    length: int

    @property
    def end_seq(self) -> int:
        """The sequence number after this segment (SYN and FIN count one each)."""
        return (self.seq + self.length + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)) & M32

    def flag_text(self) -> str:
        """tcpdump's spelling: ``S``, ``S.``, ``F.``, ``P.``, ``R``, ``.``."""
        return "".join(c for bit, c in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, ".")) if self.flags & bit)


@dataclass(frozen=True, slots=True)
class Packet(CapturedSegment):
    """One TCP segment as the capture saw it (``t_us``: capture time in µs since the epoch)."""

    t_us: int
    src: str
    sport: int
    dst: str
    dport: int
    flags: int
    seq: int
    ack: int
    win: int
    length: int
    tsval: int | None
    tsecr: int | None
    family: int  # 4 or 6
    index: int   # frame number in the file, from 1


@dataclass(slots=True)
class ReadStats:
    """What the reader saw besides TCP: for the report's first line."""

    fmt: str = ""
    linktypes: set[str] = field(default_factory=set)
    interfaces: list[str] = field(default_factory=list)  # pcapng interface names, in file order
    interface: str | None = None  # the one read, when the file has several
    frames: int = 0
    tcp: int = 0
    other: int = 0
    malformed: int = 0


def _ip_of(linktype: int, buf: bytes) -> bytes | None:
    """The IP packet inside one frame, or None when the frame carries no IP."""
    if linktype == DLT_EN10MB:
        if len(buf) < 14:
            raise dpkt.NeedData
        etype = struct.unpack_from("!H", buf, 12)[0]
        off = 14
        while etype in (0x8100, 0x88A8):  # VLAN tags
            if len(buf) < off + 4:
                raise dpkt.NeedData
            etype = struct.unpack_from("!H", buf, off + 2)[0]
            off += 4
        return buf[off:] if etype in (0x0800, 0x86DD) else None
    if linktype == DLT_LINUX_SLL:
        if len(buf) < 16:
            raise dpkt.NeedData
        return buf[16:] if struct.unpack_from("!H", buf, 14)[0] in (0x0800, 0x86DD) else None
    if linktype == DLT_LINUX_SLL2:
        if len(buf) < 20:
            raise dpkt.NeedData
        return buf[20:] if struct.unpack_from("!H", buf, 0)[0] in (0x0800, 0x86DD) else None
    if linktype in (DLT_NULL, DLT_LOOP):
        if len(buf) < 4:
            raise dpkt.NeedData
        return buf[4:]
    return buf  # raw IP of either version


_ADDRS: dict[bytes, str] = {}  # packed address -> text: a capture has few distinct addresses


def _addr(packed: bytes) -> str:
    text = _ADDRS.get(packed)
    if text is None:
        text = str(ipaddress.ip_address(packed))
        if len(_ADDRS) < 65536:
            _ADDRS[packed] = text
    return text


def _tcp_packet(t_us: int, ipbuf: bytes, index: int) -> Packet | None:
    """The TCP segment of an IPv4 or IPv6 packet (headers read with struct: dpkt's objects cost ~15 µs each,
    half of a million-packet capture's time); None when it carries no TCP."""
    version = ipbuf[0] >> 4 if ipbuf else 0
    if version == 4:
        ihl = (ipbuf[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ipbuf, 2)[0]
        if ihl < 20 or len(ipbuf) < ihl + 20:
            raise dpkt.NeedData
        if ipbuf[9] != 6 or struct.unpack_from("!H", ipbuf, 6)[0] & 0x1FFF:  # not TCP, or a later fragment
            return None
        src, dst, fam, off = _addr(ipbuf[12:16]), _addr(ipbuf[16:20]), 4, ihl
        end = min(total, len(ipbuf)) if total >= ihl + 20 else len(ipbuf)
    elif version == 6:
        if len(ipbuf) < 60:
            raise dpkt.NeedData
        nxt, off = ipbuf[6], 40
        while nxt in (0, 43, 60):  # hop-by-hop, routing, destination options
            if len(ipbuf) < off + 8:
                raise dpkt.NeedData
            nxt, off = ipbuf[off], off + 8 + ipbuf[off + 1] * 8
        if nxt != 6 or len(ipbuf) < off + 20:
            return None
        src, dst, fam = _addr(ipbuf[8:24]), _addr(ipbuf[24:40]), 6
        end = min(40 + struct.unpack_from("!H", ipbuf, 4)[0], len(ipbuf))
    else:
        return None
    sport, dport, seq, ack, doff_flags, win = struct.unpack_from("!HHIIHH", ipbuf, off)
    doff = (doff_flags >> 12) * 4
    if doff < 20 or off + doff > end:
        raise dpkt.UnpackError("TCP header longer than the packet")
    tsval = tsecr = None
    i, oend = off + 20, off + doff
    while i < oend:  # options: only the timestamps matter here
        kind = ipbuf[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= oend or ipbuf[i + 1] < 2:
            break
        if kind == 8 and ipbuf[i + 1] == 10 and i + 10 <= oend:
            tsval, tsecr = struct.unpack_from("!II", ipbuf, i + 2)
        i += ipbuf[i + 1]
    return Packet(t_us, src, sport, dst, dport, doff_flags & 0x3F, seq, ack, win, end - oend, tsval, tsecr,
                  fam, index)


_CUT = "(use --allow-truncated to explain what came before)"


def _records(f: BinaryIO, path: str, stats: ReadStats, iface: str | None) -> Iterator[tuple[int, int, bytes]]:
    """``(time_us, linktype, frame)`` of every record, in file order.

    The record framing is read here rather than through dpkt's readers: they
    stop silently at a record cut short (a tcpdump killed mid-write), keep one
    interface per pcapng file and give float timestamps; this must say where a
    file ends early, keep every interface's link type and keep exact µs.
    """
    magic = f.read(4)
    f.seek(0)
    if magic in PCAP_MAGICS:
        stats.fmt = "pcap"
        yield from _pcap_records(f, path)
    elif magic == PCAPNG_MAGIC:
        stats.fmt = "pcapng"
        yield from _pcapng_records(f, path, stats, iface)
    else:
        raise CaptureError(f"{path}: not a capture (neither pcap nor pcapng: the file starts with "
                           f"{magic.hex() or 'nothing'}); give a file written by tcpdump, Wireshark or timewait")


def _pcap_records(f: BinaryIO, path: str) -> Iterator[tuple[int, int, bytes]]:
    head = f.read(24)
    if len(head) < 24:
        raise CaptureError(f"{path}: a pcap file cut short in its 24-byte header")
    order = "<" if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = head[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(order + "I", head, 20)[0] & 0x0FFFFFFF
    n = 0
    while True:
        hdr = f.read(16)
        if not hdr:
            return
        n += 1
        if len(hdr) < 16:
            raise CaptureError(f"{path}: cut short in the header of record {n} {_CUT}")
        sec, frac, caplen, _ = struct.unpack(order + "IIII", hdr)
        if caplen > 262144:
            raise CaptureError(f"{path}: record {n} claims {caplen} bytes (more than 262144): the file is damaged")
        buf = f.read(caplen)
        if len(buf) < caplen:
            raise CaptureError(f"{path}: cut short in record {n}: {len(buf)} of {caplen} bytes {_CUT}")
        yield sec * 1_000_000 + (frac // 1000 if nano else frac), linktype, buf


def _pcapng_records(f: BinaryIO, path: str, stats: ReadStats, want: str | None) -> Iterator[tuple[int, int, bytes]]:
    """A file of several interfaces (one per node, as timewait writes them) holds each packet at
    every interface it crossed: only one interface is read, ``want`` or the first one."""
    order = "<"
    ifaces: list[tuple[int, int]] = []  # (linktype, ticks per second) per interface of the section
    n = 0
    while True:
        hdr = f.read(8)
        if not hdr:
            return
        if len(hdr) < 8:
            raise CaptureError(f"{path}: cut short in a block header after record {n} {_CUT}")
        btype = struct.unpack_from(order + "I", hdr)[0]
        if btype == 0x0A0D0D0A:  # section header: its byte-order magic sets the order of what follows
            bom = f.read(4)
            if len(bom) < 4:
                raise CaptureError(f"{path}: cut short in a section header {_CUT}")
            order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">" if bom == b"\x1a\x2b\x3c\x4d" else ""
            if not order:
                raise CaptureError(f"{path}: a pcapng section with an unknown byte-order magic {bom.hex()}")
            blen = struct.unpack_from(order + "I", hdr, 4)[0]
            body = bom + f.read(blen - 12)
            ifaces = []
        else:
            blen = struct.unpack_from(order + "I", hdr, 4)[0]
            if blen < 12 or blen % 4 or blen > 1 << 20:
                raise CaptureError(f"{path}: a block of {blen} bytes after record {n}: the file is damaged")
            body = f.read(blen - 8)
        if len(body) < blen - 8:
            raise CaptureError(f"{path}: cut short in a block after record {n} {_CUT}")
        if btype == 1:  # interface description: link type, and its timestamp resolution option
            linktype = struct.unpack_from(order + "H", body)[0]
            ifaces.append((linktype, _tsresol(body[8:-4], order)))
            stats.interfaces.append(_option(body[8:-4], order, 2) or f"interface {len(stats.interfaces)}")
        elif btype in (6, 3):  # enhanced packet, simple packet
            n += 1
            if btype == 6:
                iface, hi, lo, caplen = struct.unpack_from(order + "IIII", body)
                data = body[20:20 + caplen]
            else:
                iface, hi, lo = 0, 0, 0
                data = body[4:-4]
            if iface >= len(ifaces) or len(data) < (caplen if btype == 6 else 0):
                raise CaptureError(f"{path}: record {n} names interface {iface}, which the file does not describe")
            name = stats.interfaces[iface] if iface < len(stats.interfaces) else ""
            if stats.interface is None:
                if want is not None and want not in stats.interfaces:
                    continue  # the interface may be described later in the file
                stats.interface = want if want is not None else name
            if name != stats.interface:
                continue
            linktype, tps = ifaces[iface]
            ticks = hi << 32 | lo
            yield (ticks * 1_000_000 // tps if tps != 1_000_000 else ticks), linktype, bytes(data)


def _option_bytes(opts: bytes, order: str, want: int) -> bytes | None:
    """The value of option ``want`` among a block's options, or None."""
    i = 0
    while i + 4 <= len(opts):
        code, length = struct.unpack_from(order + "HH", opts, i)
        if code == 0:
            break
        if code == want:
            return opts[i + 4:i + 4 + length]
        i += 4 + (length + 3) // 4 * 4
    return None


def _option(opts: bytes, order: str, want: int) -> str | None:
    v = _option_bytes(opts, order, want)
    return None if v is None else v.decode("utf-8", "replace")


def _tsresol(opts: bytes, order: str) -> int:
    """Ticks per second of an interface (``if_tsresol``; default µs)."""
    v = _option_bytes(opts, order, 9)
    if not v:
        return 1_000_000
    return 2 ** (v[0] & 0x7F) if v[0] & 0x80 else 10 ** (v[0] & 0x7F)


def read_capture(path: str, stats: ReadStats | None = None, *, allow_truncated: bool = False,
                 iface: str | None = None) -> Iterator[Packet]:
    """Every TCP segment of the capture at ``path``, in file order (streaming).

    ``stats`` (when given) is filled as the file is read. ``iface`` names the
    pcapng interface to read (default: the first that holds a packet). A truncated file raises
    :class:`CaptureError` at the cut, after the packets before it, unless
    ``allow_truncated``; then the reader stops there and ``stats`` says so.
    """
    stats = stats if stats is not None else ReadStats()
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed in finally; a generator holds it
    except OSError as e:
        raise CaptureError(f"{path}: cannot read it ({e.strerror})") from None
    try:
        records = _records(f, path, stats, iface)
        while True:
            try:
                t_us, lt, buf = next(records)
            except StopIteration:
                return
            except CaptureError:
                if allow_truncated and stats.frames:
                    stats.fmt += " (truncated)"
                    return
                raise
            stats.frames += 1
            stats.linktypes.add(LINKTYPES.get(lt, f"link type {lt}"))
            if lt not in LINKTYPES:
                stats.other += 1
                continue
            try:
                ipbuf = _ip_of(lt, buf)
                pkt = _tcp_packet(t_us, ipbuf, stats.frames) if ipbuf is not None else None
            except (dpkt.UnpackError, dpkt.NeedData, struct.error, IndexError, ValueError):
                stats.malformed += 1
                continue
            if pkt is None:
                stats.other += 1
                continue
            stats.tcp += 1
            yield pkt
    finally:
        f.close()
