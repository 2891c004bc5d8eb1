"""Trace records as text: packets the way ``tcpdump -i any -n`` prints them, the rest readably.

A packet line reads like tcpdump on the ``any`` interface, the host in the
interface's place and the direction after it::

    0.000000 c1 Out IP 10.211.55.5.60494 > 10.211.55.10.8888: Flags [S], seq 1234, win 64240, options [mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7], length 0
    0.000200 c2 In  IP 10.211.55.5.60494 > 10.211.55.10.8888: Flags [S], seq 1234, ...

Sequence numbers are relative as tcpdump prints them by default (:class:`RelSeq`:
a SYN or the first packet of a flow prints absolute and sets the base),
absolute with ``absolute=True`` (tcpdump's ``-S``). A router's or NAT's
forwarding line says ``fwd`` and shows the TTL where it is not 64 (packet
lines show TTL and IP id with ``verbose``, as ``tcpdump -v``). IPv6 packets read
``IP6 fd00::10:211:55:5.60494 > fd00::10:211:55:10.8888: ...`` as tcpdump prints them, their
hop limit as ``hlim`` (IPv6 has no IP id). Every other record (state changes, timers, socket calls,
counters, drops with their reason) is set apart with ``#`` after the host, so a
reader of packet lines can skip them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any

from timewait import trace as T
from timewait.tcp.segment import (
    ACK,
    CWR,
    DEFAULT_TTL,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    V4_MAX,
    Segment,
    encode_options,
    ip_ntoa,
)
from timewait.tcp.seq import M32

# tcpdump's tcp_flag_values order (print-tcp.c); ACK is printed as '.' last.
_FLAG_LETTERS = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (URG, "U"), (ECE, "E"), (CWR, "W"), (ACK, "."))
# tcpdump's names for TCP option kinds.
_OPT_NAMES = {0: "eol", 1: "nop", 2: "mss", 3: "wscale", 4: "sackOK", 5: "sack", 8: "TS", 19: "md5", 28: "utoenc",
              29: "tcp-ao", 30: "mptcp", 34: "tfo", 254: "exp"}


def fmt_time(time_us: int) -> str:
    """Simulated microseconds as seconds with six decimals, e.g. ``60.000150``."""
    sign = "-" if time_us < 0 else ""
    s, us = divmod(abs(int(time_us)), 1_000_000)
    return f"{sign}{s}.{us:06d}"


def endpoint(addr: int, port: int, sep: str = ":") -> str:
    """``10.211.55.5:60494`` (or with ``sep='.'`` tcpdump's ``10.211.55.5.60494``); an IPv6
    address in brackets before ``:`` (``[fd00::1]:8888``), bare before tcpdump's ``.``."""
    if sep == ":" and addr > V4_MAX:
        return f"[{ip_ntoa(addr)}]:{port}"
    return f"{ip_ntoa(addr)}{sep}{port}"


def key_text(key: tuple[int, int, int, int]) -> str:
    """A connection key ``(laddr, lport, raddr, rport)`` as ``L:P -> R:P`` (``R:*`` for a listener)."""
    laddr, lport, raddr, rport = key
    peer = "*:*" if raddr == 0 and rport == 0 else endpoint(raddr, rport)
    return f"{endpoint(laddr, lport)} -> {peer}"


def flag_letters(flags: int) -> str:
    """tcpdump's flag string: ``S``, ``S.``, ``F.``, ``R``, ``P.``; ``none`` when no flag is set."""
    out = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
    return out or "none"


def flag_names(flags: int) -> str:
    """Flags as words, the way textbook figures write them: ``SYN,ACK``, ``FIN,ACK``, ``RST``."""
    names = [n for bit, n in ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (URG, "URG"),
                              (ECE, "ECE"), (CWR, "CWR"), (ACK, "ACK")) if flags & bit]
    return ",".join(names) or "none"


def format_options(opts: bytes) -> str:
    """TCP option bytes as tcpdump prints them, e.g. ``nop,nop,TS val 100 ecr 7``."""
    parts: list[str] = []
    i, n = 0, len(opts)
    while i < n:
        kind = opts[i]
        name = _OPT_NAMES.get(kind, f"unknown-{kind}")
        if kind in (0, 1):
            parts.append(name)
            i += 1
            if kind == 0:  # tcpdump stops at end-of-list
                break
            continue
        if i + 1 >= n or opts[i + 1] < 2 or i + opts[i + 1] > n:
            parts.append(f"{name} [bad opt]")
            break
        length = opts[i + 1]
        body = opts[i + 2 : i + length]
        if kind == 2 and length == 4:
            parts.append(f"mss {struct.unpack('!H', body)[0]}")
        elif kind == 3 and length == 3:
            parts.append(f"wscale {body[0]}")
        elif kind == 8 and length == 10:
            val, ecr = struct.unpack("!II", body)
            parts.append(f"TS val {val} ecr {ecr}")
        elif kind == 5 and (length - 2) % 8 == 0:
            blocks = [struct.unpack("!II", body[j : j + 8]) for j in range(0, len(body), 8)]
            parts.append(f"sack {len(blocks)} " + "".join(f"{{{a}:{b}}}" for a, b in blocks))
        else:
            parts.append(name if length == 2 else f"{name} len {length}")
        i += length
    return ",".join(parts)


class RelSeq:
    """tcpdump's relative sequence numbers (``print-tcp.c``, without ``-S``).

    Only packets with ACK take part: per flow (both directions share one
    entry), the first such packet seen or one with SYN sets the bases (``seq``
    of its sender, ``ack - 1`` of the other side) and prints absolute; later
    ones print ``seq - base`` and ``ack - base`` of the other side, modulo
    2**32. A packet without ACK (a SYN, a bare RST) prints absolute and
    changes nothing.
    """

    __slots__ = ("flows",)

    def __init__(self) -> None:
        self.flows: dict[tuple[int, int, int, int], list[int]] = {}

    def __call__(self, seg: Segment) -> tuple[int, int]:
        if not seg.flags & ACK:
            return seg.seq, seg.ack
        fwd = (seg.src, seg.sport, seg.dst, seg.dport)
        rev = (seg.dst, seg.dport, seg.src, seg.sport)
        key, flip = (fwd, False) if fwd <= rev else (rev, True)
        base = self.flows.get(key)
        if base is None or seg.flags & SYN:
            mine, other = seg.seq, (seg.ack - 1) & M32
            self.flows[key] = [other, mine] if flip else [mine, other]
            return seg.seq, seg.ack
        mine_base, other_base = (base[1], base[0]) if flip else (base[0], base[1])
        return (seg.seq - mine_base) & M32, (seg.ack - other_base) & M32


def format_segment(seg: Segment, *, verbose: bool = False, rel: RelSeq | None = None,
                   show_ttl: bool = False) -> str:
    """One packet like ``tcpdump -n``: ``IP``, addresses, flags, seq, ack, win, options, length.

    ``seq`` is printed as tcpdump does (``seq A:B`` with payload, ``seq A`` for
    SYN/FIN/RST, absent on a pure ACK unless ``verbose``), relative to the
    flow's bases when ``rel`` is given, absolute (``-S``) otherwise. The TTL
    and IP id are appended with ``verbose``; ``show_ttl`` appends the TTL when
    it is not 64 (for lines that are not tcpdump's: forwarding, drops).
    """
    length = len(seg.payload)
    seq, ack = rel(seg) if rel is not None else (seg.seq, seg.ack)
    v6 = seg.src > V4_MAX
    parts = [f"{'IP6' if v6 else 'IP'} {endpoint(seg.src, seg.sport, '.')} > {endpoint(seg.dst, seg.dport, '.')}: "
             f"Flags [{flag_letters(seg.flags)}]"]
    if length:
        parts.append(f"seq {seq}:{(seq + length) & M32}")
    elif seg.flags & (SYN | FIN | RST) or verbose:
        parts.append(f"seq {seq}")
    if seg.flags & ACK:
        parts.append(f"ack {ack}")
    parts.append(f"win {seg.win}")
    opts = encode_options(seg)
    if opts:
        parts.append(f"options [{format_options(opts)}]")
    parts.append(f"length {length}")
    if verbose:
        parts.append(f"hlim {seg.ttl}" if v6 else f"ttl {seg.ttl}, id {seg.ip_id}")
    elif show_ttl and seg.ttl != DEFAULT_TTL:
        parts.append(f"{'hlim' if v6 else 'ttl'} {seg.ttl}")
    return ", ".join(parts)


def _call_args(args: Any) -> str:
    if args is None:
        return ""
    if isinstance(args, (tuple, list)):
        return ", ".join(_call_arg(a) for a in args)
    if isinstance(args, dict):
        return ", ".join(f"{k}={_call_arg(v)}" for k, v in args.items())
    return _call_arg(args)


def _call_arg(a: Any) -> str:
    if isinstance(a, tuple) and len(a) == 2 and all(isinstance(x, int) for x in a) and a[0] > 0xFFFF:
        return endpoint(a[0], a[1])  # (addr, port)
    if isinstance(a, bytes):
        return _bytes_text(a)
    return str(a)


def _bytes_text(data: bytes, limit: int = 40) -> str:
    shown = data[:limit].decode("latin-1").encode("unicode_escape").decode("ascii")
    return f'"{shown}"' + ("..." if len(data) > limit else "")


def format_record(rec: tuple[Any, ...], *, verbose: bool = False, rel: RelSeq | None = None) -> str:
    """One trace record as one line, starting with its time and node.

    Pass one :class:`RelSeq` for a whole trace to get tcpdump's relative
    sequence numbers; without it they are absolute (``-S``).
    """
    t, kind, node = rec[0], rec[1], rec[2]
    head = f"{fmt_time(t)} {node}"

    def pkt(seg: Segment) -> str:  # not a tcpdump line: the TTL shown where it is not 64
        return format_segment(seg, verbose=verbose, rel=rel, show_ttl=True)

    if kind == T.TX:
        return f"{head} Out {format_segment(rec[3], verbose=verbose, rel=rel)}"
    if kind == T.RX:
        return f"{head} In  {format_segment(rec[3], verbose=verbose, rel=rel)}"
    if kind == T.FWD:
        seg_in, seg_out = rec[3], rec[4]
        line = f"{head} fwd {pkt(seg_out)}"
        if (seg_in.src, seg_in.sport, seg_in.dst, seg_in.dport) != (seg_out.src, seg_out.sport, seg_out.dst, seg_out.dport):
            line += (f" (rewritten from {endpoint(seg_in.src, seg_in.sport, '.')} > "
                     f"{endpoint(seg_in.dst, seg_in.dport, '.')})")
        return line
    head = f"{head} #"  # not a packet on a wire: set apart
    if kind == T.DROP:
        seg, reason = rec[3], rec[4]
        why = T.DROP_REASONS.get(reason, "")
        return f"{head} DROP {pkt(seg)} [{reason}{': ' + why if why else ''}]"
    if kind == T.DUP:
        later = f", the copy {rec[4]:g} s later" if rec[4] else ""
        return f"{head} DUP {pkt(rec[3])} [duplicated by the network{later}]"
    if kind == T.HOLD:
        return f"{head} HOLD {pkt(rec[3])} [held {rec[4]:g} s by a fault rule]"
    if kind == T.ICMP:
        seg, what = rec[3], rec[4]
        return f"{head} {'ICMP6' if seg.src > V4_MAX else 'ICMP'} {what} for {pkt(seg)}"
    if kind == T.STATE:
        return f"{head} {key_text(rec[3])} {rec[4]} -> {rec[5]}"
    if kind == T.TIMER:
        key, name, deadline = rec[3], rec[4], rec[5]
        if deadline is None:
            return f"{head} {key_text(key)} timer {name} cancelled"
        return f"{head} {key_text(key)} timer {name} armed, fires at {fmt_time(deadline)} (in {(deadline - t) / 1e6:g} s)"
    if kind == T.FIRE:
        return f"{head} {key_text(rec[3])} timer {rec[4]} fired"
    if kind == T.CALL:
        sock, call, args, result = rec[3], rec[4], rec[5], rec[6]
        outcome = "ok" if result is None else str(result)
        return f"{head} call {call}({_call_args(args)}) sock {sock} -> {outcome}"
    if kind == T.COUNTER:
        name, delta = rec[3], rec[4]
        return f"{head} counter {name} {delta:+d}" if isinstance(delta, int) else f"{head} counter {name} {delta}"
    if kind == T.NOTE:
        return f"{head} note: {rec[3]}"
    return f"{head} {kind} " + " ".join(str(x) for x in rec[3:])


def format_trace(records: Iterable[tuple[Any, ...]], *, verbose: bool = False,
                 absolute: bool = False) -> Iterator[str]:
    """Every record as a line, in trace order; relative sequence numbers unless ``absolute``."""
    rel = None if absolute else RelSeq()
    for rec in records:
        yield format_record(rec, verbose=verbose, rel=rel)
