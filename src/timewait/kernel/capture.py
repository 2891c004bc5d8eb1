"""Packet capture in a namespace with tcpdump, read back with dpkt."""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass

import dpkt

from timewait.explain.reader import ACK, FIN, PSH, RST, SYN, CapturedSegment
from timewait.kernel.topology import KernelLab, stop_process

__all__ = ["ACK", "FIN", "PSH", "RST", "SYN", "Capture", "Pkt", "read_pcap"]

#: Raw-IP link types: tcpdump on a TUN device writes LINKTYPE_RAW (101); DLT_RAW is 12 (14 on OpenBSD).
RAW_LINKS = frozenset({101, 12, 14})


@dataclass(frozen=True, slots=True)
class Pkt(CapturedSegment):
    """One captured TCP segment (``t``: epoch seconds, as tcpdump stamped it)."""

    t: float
    src: str
    sport: int
    dst: str
    dport: int
    flags: int
    seq: int
    ack: int
    length: int
    ts: tuple[int, int] | None
    opts: bytes = b""

    @property
    def pure_ack(self) -> bool:
        return self.flags & (SYN | FIN | RST | ACK) == ACK and self.length == 0


class Capture:
    """``tcpdump -i IFACE -w FILE tcp`` in a host's namespace until :meth:`stop`."""

    def __init__(self, lab: KernelLab, host: str, iface: str = "eth0", path: str | None = None) -> None:
        self.path = path or os.path.join(lab.tmpdir, f"{host}-{iface}.pcap")
        self.proc = lab.tcpdump(host, iface, self.path)

    def stop(self) -> list[Pkt]:
        """Stop tcpdump (it flushes on SIGTERM) and return the TCP segments it saw."""
        stop_process(self.proc)
        return read_pcap(self.path)


def read_pcap(path: str) -> list[Pkt]:
    out: list[Pkt] = []
    try:
        f = open(path, "rb")
    except OSError:
        return out
    with f:
        try:
            reader = dpkt.pcap.Reader(f)
        except (ValueError, dpkt.NeedData):
            return out
        raw = reader.datalink() in RAW_LINKS
        for t, buf in reader:
            try:
                if raw:
                    ip = dpkt.ip6.IP6(buf) if buf[:1] and buf[0] >> 4 == 6 else dpkt.ip.IP(buf)
                else:
                    ip = dpkt.ethernet.Ethernet(buf).data
            except (dpkt.UnpackError, dpkt.NeedData):
                continue
            if isinstance(ip, dpkt.ip.IP):
                fam = socket.AF_INET
            elif isinstance(ip, dpkt.ip6.IP6):  # inet_ntop writes RFC 5952 text, as ula_of and ip_ntoa do
                fam = socket.AF_INET6
            else:
                continue
            if not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            src, dst = socket.inet_ntop(fam, ip.src), socket.inet_ntop(fam, ip.dst)
            out.append(Pkt(float(t), src, tcp.sport, dst, tcp.dport,
                           tcp.flags, tcp.seq, tcp.ack, len(tcp.data), _ts(tcp.opts), bytes(tcp.opts)))
    return out


def _ts(opts: bytes) -> tuple[int, int] | None:
    try:
        for kind, data in dpkt.tcp.parse_opts(opts):
            if kind == dpkt.tcp.TCP_OPT_TIMESTAMP and len(data) == 8:
                return struct.unpack("!II", data)
    except (dpkt.UnpackError, ValueError):
        return None
    return None
