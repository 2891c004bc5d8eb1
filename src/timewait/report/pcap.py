"""Classic pcap files of a run: the real packet bytes, stamped with simulated time.

Link type ``LINKTYPE_RAW`` (101): each record is the IPv4 packet exactly as
:func:`timewait.tcp.segment.encode` builds it, checksums included, so
Wireshark and tshark decode it with no made-up link layer. Timestamps are the
simulated time (the run starts at the epoch).

Without a host the capture holds every packet each time it crossed a link:
what hosts transmitted (TX) and what routers and NATs sent on after
forwarding (FWD, with the new TTL and rewritten addresses). With a host it
holds what that node's interface saw: its TX and RX records, a router's or
NAT's FWD in and out, and packets that reached it only to be dropped before
the stack took them (wrong address, too old, TTL expired).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import dpkt

from timewait import trace as T
from timewait.errors import UsageError
from timewait.result import RunResult
from timewait.tcp.segment import Segment, encode

LINKTYPE_RAW = 101  # raw IPv4/IPv6, no link header (tcpdump.org link-layer header types)
SNAPLEN = 65535

# Drops that happen where a packet arrives, before any RX or FWD record is written.
_ARRIVAL_DROPS = frozenset({"not-for-us", "msl", "ttl"})


@dataclass(slots=True, frozen=True)
class Captured:
    """One packet in a capture: when, which record it came from, and the segment."""

    time_us: int
    kind: str   # "tx", "rx", "fwd-in", "fwd-out", "drop"
    node: str
    seg: Segment


def captured_packets(result: RunResult, host: str | None = None) -> list[Captured]:
    """The packets a capture holds, in time order (see the module docstring)."""
    if host is not None and host not in result.nodes:
        raise UsageError(f"--pcap-host {host!r}: no such node in {result.scenario}; "
                         f"nodes: {', '.join(result.nodes)}")
    out: list[Captured] = []
    for rec in result.trace.records:
        kind, node = rec[1], rec[2]
        if host is None:
            if kind == T.TX:
                out.append(Captured(rec[0], "tx", node, rec[3]))
            elif kind == T.FWD:
                out.append(Captured(rec[0], "fwd-out", node, rec[4]))
            continue
        if node != host:
            continue
        if kind == T.TX:
            out.append(Captured(rec[0], "tx", node, rec[3]))
        elif kind == T.RX:
            out.append(Captured(rec[0], "rx", node, rec[3]))
        elif kind == T.FWD:
            out.append(Captured(rec[0], "fwd-in", node, rec[3]))
            out.append(Captured(rec[0], "fwd-out", node, rec[4]))
        elif kind == T.DROP and rec[4] in _ARRIVAL_DROPS:
            out.append(Captured(rec[0], "drop", node, rec[3]))
    return out


def encode_pcap(packets: list[Captured], f: BinaryIO) -> None:
    """Write ``packets`` as a classic pcap stream to the binary file ``f``."""
    writer = dpkt.pcap.Writer(f, snaplen=SNAPLEN, linktype=LINKTYPE_RAW)
    writer.writepkts((p.time_us / 1_000_000, encode(p.seg)) for p in packets)


def write_pcap(result: RunResult, path: str | os.PathLike[str], host: str | None = None) -> int:
    """Write the run's packets (or one node's view) to ``path``; returns the packet count.

    This writes straight to ``path``; ``timewait run --pcap`` goes through
    :func:`timewait.report.outputs.write_outputs`, which writes atomically.
    """
    packets = captured_packets(result, host)
    with Path(path).open("wb") as f:
        encode_pcap(packets, f)
    return len(packets)
