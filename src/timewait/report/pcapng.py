"""pcapng files of a run: one interface per node, and comments for what a capture cannot show.

A classic pcap (:mod:`timewait.report.pcap`) of the whole network holds each
packet once, as it left its sender: a packet a fault rule dropped looks
delivered, and a delayed duplicate that PAWS discards at its arrival never
appears where it arrived. Here every node (host, router, NAT) is an interface
of its own (``if_name`` = the node's name), holding what that node's
interface saw (:func:`timewait.report.pcap.captured_packets` for that node);
the whole network is the union of the interfaces. Each packet whose fate the
bytes do not tell carries a packet comment (``opt_comment``; tshark shows it
as ``frame.comment``):

- at its sender: ``dropped by a fault rule at c1: never delivered``,
  ``lost on the link``, ``held 45 s by a fault rule: arrives at 46.2 s``,
  ``duplicated by the network: a copy arrives 1.5 s after this one``;
- at its receiver: ``discarded by PAWS at c1``, ``TTL expired at r2: ICMP
  time exceeded sent``, ``older than the network's MSL: discarded at c2``,
  and every other reason of :data:`timewait.trace.DROP_REASONS`.

Link type ``LINKTYPE_RAW`` (101) on every interface and microsecond
timestamps of simulated time, as in the classic files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO

from dpkt import pcapng as P

from timewait import trace as T
from timewait.errors import UsageError
from timewait.result import RunResult
from timewait.tcp.config import SEC
from timewait.tcp.segment import Segment, encode, ip_ntoa

LINKTYPE_RAW = 101
SNAPLEN = 65535

# Drops at the receiver that happen before the stack takes the packet: no RX record precedes them.
_ARRIVAL_DROPS = frozenset({"not-for-us", "msl", "ttl", "nat-no-mapping", "nat-exhausted"})
# Drops at the sender, while the packet is put on the link: the TX record precedes them.
_SENDER_DROPS = frozenset({"fault", "loss", "no-route"})


@dataclass(slots=True)
class Frame:
    """One packet on one interface, with the comments that explain its fate."""

    time_us: int
    node: str
    seg: Segment
    comments: list[str] = field(default_factory=list)


def _arrival_text(reason: str, node: str) -> str:
    if reason == "ttl":
        return f"TTL expired at {node}: ICMP time exceeded sent"
    if reason == "msl":
        return f"older than the network's MSL: discarded at {node}"
    return f"{T.DROP_REASONS.get(reason, reason)}: dropped at {node}"


def _receiver_text(reason: str, node: str) -> str:
    if reason == "paws":
        return f"discarded by PAWS at {node} (timestamp older than ts_recent)"
    return f"{T.DROP_REASONS.get(reason, reason)}: discarded at {node}"


def frames(result: RunResult, host: str | None = None) -> list[Frame]:
    """The frames of every node's interface (or only ``host``'s), in trace order, with comments."""
    if host is not None and host not in result.nodes:
        raise UsageError(f"--pcap-host {host!r}: no such node in {result.scenario}; "
                         f"nodes: {', '.join(result.nodes)}")
    out: list[Frame] = []
    last_tx: dict[str, Frame] = {}   # the packet a node just put on the link (a sender drop follows it)
    last_rx: dict[str, Frame] = {}   # the packet a node's stack just took (a receiver drop follows it)
    for rec in result.trace.records:
        t, kind, node = rec[0], rec[1], rec[2]
        if host is not None and node != host:
            continue
        if kind == T.TX:
            fr = last_tx[node] = Frame(t, node, rec[3])
            out.append(fr)
        elif kind == T.RX:
            fr = last_rx[node] = Frame(t, node, rec[3])
            out.append(fr)
        elif kind == T.FWD:
            seg_in, seg_out = rec[3], rec[4]
            out.append(Frame(t, node, seg_in))
            fr = last_tx[node] = Frame(t, node, seg_out)
            if (seg_in.src, seg_in.sport, seg_in.dst, seg_in.dport) != (
                    seg_out.src, seg_out.sport, seg_out.dst, seg_out.dport):
                fr.comments.append(f"rewritten by {node}: {ip_ntoa(seg_in.src)}:{seg_in.sport} > "
                                   f"{ip_ntoa(seg_in.dst)}:{seg_in.dport} became {ip_ntoa(seg_out.src)}:"
                                   f"{seg_out.sport} > {ip_ntoa(seg_out.dst)}:{seg_out.dport}")
            out.append(fr)
        elif kind == T.HOLD:
            fr_tx = last_tx.get(node)
            if fr_tx is not None and fr_tx.seg is rec[3]:
                seconds = rec[4]
                fr_tx.comments.append(f"held {seconds:g} s by a fault rule: arrives at "
                                      f"{(t + round(seconds * SEC)) / SEC:.6f} s at the earliest")
        elif kind == T.DUP:
            fr_tx = last_tx.get(node)
            if fr_tx is not None and fr_tx.seg is rec[3]:
                seconds = rec[4]
                fr_tx.comments.append(f"duplicated by the network: a copy arrives {seconds:g} s after this one"
                                      if seconds else "duplicated by the network: two copies arrive")
        elif kind == T.DROP:
            seg, reason = rec[3], rec[4]
            fr_tx = last_tx.get(node)
            fr_rx = last_rx.get(node)
            if reason in _SENDER_DROPS and fr_tx is not None and fr_tx.seg is seg:
                what = "dropped by a fault rule" if reason == "fault" else T.DROP_REASONS[reason]
                fr_tx.comments.append(f"{what} at {node}: never delivered")
            elif reason in _ARRIVAL_DROPS or fr_rx is None or fr_rx.seg is not seg:
                out.append(Frame(t, node, seg, [_arrival_text(reason, node)]))
            else:
                fr_rx.comments.append(_receiver_text(reason, node))
        elif kind == T.COUNTER and rec[3] == "TcpExtPAWSEstab":
            # PAWS in a synchronized connection (tcp_validate_incoming) is counted, not traced as a
            # DROP: the counter moves while the stack processes the packet it just took.
            fr_rx = last_rx.get(node)
            if fr_rx is not None and fr_rx.time_us == t:
                fr_rx.comments.append(f"discarded by PAWS at {node} (timestamp older than ts_recent; "
                                      "a duplicate ACK answers it)")
    return out


def _option(code: int, data: bytes) -> P.PcapngOptionLE:
    return P.PcapngOptionLE(code=code, data=data)


def encode_pcapng(result: RunResult, f: BinaryIO, host: str | None = None) -> int:
    """Write the run as pcapng to the binary file ``f``; returns the number of frames."""
    names = [host] if host is not None else list(result.nodes)
    index = {n: i for i, n in enumerate(names)}
    idbs = []
    for n in names:
        info = result.nodes[n]
        addrs = ", ".join(ip_ntoa(a) if isinstance(a, int) else str(a) for a in info.addrs)
        idbs.append(P.InterfaceDescriptionBlockLE(snaplen=SNAPLEN, linktype=LINKTYPE_RAW, opts=[
            _option(P.PCAPNG_OPT_IF_NAME, n.encode()),
            _option(P.PCAPNG_OPT_IF_DESCRIPTION, f"timewait {info.kind} {n} ({addrs})".encode()),
            _option(P.PCAPNG_OPT_IF_TSRESOL, b"\x06"),  # microseconds
            _option(P.PCAPNG_OPT_ENDOFOPT, b""),
        ]))
    shb_opts = [_option(P.PCAPNG_OPT_SHB_USERAPPL, f"timewait {result.scenario} (seed {result.seed}, "
                        f"profile {result.profile})".encode())]
    cut = T.cut_notice(result.trace.records)
    if cut:  # a selected or cut trace: the capture says so in its section's comment
        shb_opts.append(P.PcapngOptionLE(code=P.PCAPNG_OPT_COMMENT, text=cut))
    shb = P.SectionHeaderBlockLE(opts=[*shb_opts, _option(P.PCAPNG_OPT_ENDOFOPT, b"")])
    P.Writer(f, snaplen=SNAPLEN, linktype=LINKTYPE_RAW, shb=shb, idb=idbs)  # writes the SHB and the IDBs
    n = 0
    for fr in frames(result, host):
        opts = [P.PcapngOptionLE(code=P.PCAPNG_OPT_COMMENT, text=c) for c in fr.comments]
        if opts:
            opts.append(_option(P.PCAPNG_OPT_ENDOFOPT, b""))
        epb = P.EnhancedPacketBlockLE(iface_id=index[fr.node], ts_high=fr.time_us >> 32,
                                      ts_low=fr.time_us & 0xFFFFFFFF, pkt_data=encode(fr.seg), opts=opts)
        f.write(bytes(epb))  # not Writer.writepkt: it stamps a packet at time 0 with the wall clock
        n += 1
    return n

