"""Packets of a script on the wire: build the ``<`` ones, read and print what a stack sent.

Both stacks see the same bytes: the simulator decodes them into a
:class:`~timewait.tcp.segment.Segment`, the kernel runner writes them to its
TUN device. What a stack sends is read back from bytes the same way for both.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from timewait.script.parse import FLAG_LETTERS, Packet, TcpOption
from timewait.tcp.segment import (
    ACK,
    CWR,
    ECE,
    FIN,
    OPT_EOL,
    OPT_MSS,
    OPT_NOP,
    OPT_SACK,
    OPT_SACK_PERM,
    OPT_TS,
    OPT_WSCALE,
    PSH,
    RST,
    SYN,
    URG,
    DecodeError,
    Segment,
    decode,
    encode,
)
from timewait.tcp.seq import M32

LOCAL_ADDR = "192.168.0.1"    # packetdrill's default local (kernel-side) address
REMOTE_ADDR = "192.0.2.1"     # packetdrill's default remote address
LOCAL_PORT = 8080             # bind(..., ...) binds this; connect(..., ...) targets it on the remote
REMOTE_PORT = 48000           # the remote's port for connections it opens
DEFAULT_WIN = 65535           # window of an injected packet that names none

_BITS = {"F": FIN, "S": SYN, "R": RST, "P": PSH, ".": ACK, "E": ECE, "W": CWR, "U": URG}
_ORDER = "SFRPU.EW"  # how flags are printed (packetdrill/tcpdump order)


def flag_bits(letters: str) -> int:
    bits = 0
    for ch in letters:
        if ch != "-":  # packetdrill's "no flags"
            bits |= _BITS[ch]
    return bits


def flag_letters(bits: int) -> str:
    return "".join(ch for ch in _ORDER if bits & _BITS[ch]) or "-"


@dataclass(slots=True)
class Wire:
    """A TCP segment read from bytes, with its options in the order they were sent."""

    seg: Segment
    options: list[TcpOption]


def encode_options(opts: list[TcpOption], ts_ecr_shift: int = 0) -> bytes:
    """Option bytes in the order written; ``TS ecr`` is shifted onto the stack's clock."""
    out = bytearray()
    for o in opts:
        k, v = o.kind, o.values
        if k == "nop":
            out.append(OPT_NOP)
        elif k == "eol":
            out.append(OPT_EOL)
        elif k == "mss":
            out += struct.pack("!BBH", OPT_MSS, 4, v[0])
        elif k == "wscale":
            out += bytes((OPT_WSCALE, 3, v[0]))
        elif k == "sackOK":
            out += bytes((OPT_SACK_PERM, 2))
        elif k == "TS":
            ecr = (v[1] + ts_ecr_shift) & M32 if v[1] else 0
            out += struct.pack("!BBII", OPT_TS, 10, v[0] & M32, ecr)
        elif k == "sack":
            out += bytes((OPT_SACK, 2 + 4 * len(v)))
            for x in v:
                out += struct.pack("!I", x & M32)
    while len(out) & 3:
        out.append(OPT_EOL)
    return bytes(out)


def build(pkt: Packet, lport: int, rport: int, ack_base: int, ts_ecr_shift: int) -> bytes:
    """The IPv4 bytes of a ``<`` line: remote sequence numbers as written (packetdrill's
    remote is the script itself), ACK numbers relative to the local ISN ``ack_base``."""
    from timewait.tcp.segment import ip_aton

    bits = flag_bits(pkt.flags)
    ack = (pkt.ack + ack_base) & M32 if pkt.ack is not None else 0
    seg = Segment(ip_aton(REMOTE_ADDR), ip_aton(LOCAL_ADDR), rport, lport, pkt.seq & M32, ack, bits,
                  DEFAULT_WIN if pkt.win is None else pkt.win, b"\0" * pkt.length)
    seg.raw_options = encode_options(pkt.options or [], ts_ecr_shift)
    return encode(seg)


def read(data: bytes) -> Wire | None:
    """A TCP/IPv4 packet's segment and options; None for anything else (IPv6, ICMP, junk)."""
    if len(data) < 20 or data[0] >> 4 != 4 or data[9] != 6:
        return None
    try:
        seg = decode(data, verify=False)
    except DecodeError:
        return None
    ihl = (data[0] & 15) * 4
    doff = (data[ihl + 12] >> 4) * 4
    return Wire(seg, parse_options(data[ihl + 20:ihl + doff]))


def parse_options(raw: bytes) -> list[TcpOption]:
    out: list[TcpOption] = []
    i = 0
    while i < len(raw):
        k = raw[i]
        if k == OPT_NOP:
            out.append(TcpOption("nop"))
            i += 1
            continue
        if k == OPT_EOL:
            break  # the rest is padding
        if i + 1 >= len(raw) or raw[i + 1] < 2:
            break
        n = raw[i + 1]
        body = raw[i + 2:i + n]
        if k == OPT_MSS and n == 4:
            out.append(TcpOption("mss", (struct.unpack("!H", body)[0],)))
        elif k == OPT_WSCALE and n == 3:
            out.append(TcpOption("wscale", (body[0],)))
        elif k == OPT_SACK_PERM:
            out.append(TcpOption("sackOK"))
        elif k == OPT_TS and n == 10:
            out.append(TcpOption("TS", struct.unpack("!II", body)))
        elif k == OPT_SACK:
            out.append(TcpOption("sack", struct.unpack(f"!{len(body) // 4}I", body[:len(body) // 4 * 4])))
        else:
            out.append(TcpOption(f"opt{k}", tuple(body)))
        i += n
    return out


def format_options(opts: list[TcpOption]) -> str:
    parts = []
    for o in opts:
        if o.kind == "TS":
            parts.append(f"TS val {o.values[0]} ecr {o.values[1]}")
        elif o.kind == "sack":
            v = o.values
            parts.append("sack " + " ".join(f"{v[i]}:{v[i + 1]}" for i in range(0, len(v) - 1, 2)))
        else:
            parts.append(" ".join([o.kind, *map(str, o.values)]))
    return "<" + ",".join(parts) + ">"


def format_packet(direction: str, flags: str, seq: int, length: int, ack: int | None, win: int | None,
                  opts: list[TcpOption] | None) -> str:
    """packetdrill's notation: ``> F. 1:1(0) ack 2 win 502 <nop,nop,TS val 1 ecr 2>``."""
    s = f"{direction} {flags} {seq}:{(seq + length) & M32}({length})"
    if ack is not None:
        s += f" ack {ack}"
    if win is not None:
        s += f" win {win}"
    if opts:
        s += " " + format_options(opts)
    return s


def format_expected(pkt: Packet) -> str:
    letters = "".join(ch for ch in _ORDER if ch in pkt.flags)
    s = format_packet(pkt.direction, letters, pkt.seq, pkt.length, pkt.ack, pkt.win, pkt.options)
    return s + (" <...>" if pkt.any_options else "")


__all__ = ["FLAG_LETTERS", "Wire", "build", "read", "format_packet", "format_expected"]
