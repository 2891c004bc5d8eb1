"""Taps on real hosts and routers: what each namespace's kernel sent, forwarded, received or refused.

A tap is an ``AF_PACKET`` socket bound to one interface of a lab namespace; it
sees every IPv4 packet that crosses the interface, either way, stamped by the
kernel (``SO_TIMESTAMPNS``). One thread reads all of them while the run lasts;
:meth:`Taps.records` then turns what was seen into the simulator's trace
records, so the simulator's checks judge real forwarding:

- a packet leaving a host is ``TX``, one arriving at a host ``RX``;
- a packet that arrived at a router and left it again is ``FWD`` (both copies,
  the TTL as each interface saw it: the router's own decrement, ``ip_forward``);
- a router's ICMP time-exceeded quoting a packet it received is ``DROP``
  (``"ttl"``) and ``ICMP`` (``"time-exceeded"``) of that packet, the kernel's
  own word that it discarded it (``ip_forward``: ``too_many_hops``).

A packet is the same packet on every hop when its addresses, IP id, ports and
sequence number are (TTL and header checksum change); each ``TX`` gives it a
new identity (``seg.pid``), as the simulator's network does.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from timewait.kernel.nsenter import inside
from timewait.tcp.segment import DecodeError, Segment, decode
from timewait.trace import DROP, FWD, ICMP, RX, TX

ETH_P_ALL = 0x0003  # outgoing packets reach only ETH_P_ALL taps (dev_queue_xmit_nit)
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35  # SCM_TIMESTAMPNS: a struct timespec of the kernel's receive (or send) time
ICMP_TIME_EXCEEDED = 11

Key = tuple[int, int, int, int, int, int]


@dataclass(slots=True)
class _Tap:
    node: str
    router: bool
    sock: socket.socket


@dataclass
class Taps:
    """Taps on interfaces of lab namespaces; ``to_run`` turns a wall-clock time into the run's seconds."""

    to_run: Callable[[float], float]
    taps: list[_Tap] = field(default_factory=list)
    seen: list[tuple[float, str, bool, bool, bytes]] = field(default_factory=list)  # t, node, router, out, pkt
    icmp_received: list[tuple[float, str, int]] = field(default_factory=list)  # t, host, ICMP type

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def add(self, node: str, netns: str, ifname: str, *, router: bool, track: Callable[[socket.socket], Any]) -> None:
        """Tap ``ifname`` of ``node``'s namespace; ``track`` hands the socket to the lab (closed with it)."""
        with inside(netns):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        track(s)
        s.bind((ifname, ETH_P_ALL))
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.setblocking(False)
        self.taps.append(_Tap(node, router, s))

    def start(self) -> Taps:
        self._thread = threading.Thread(target=self._run, name="timewait-taps", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop reading (the sockets are the lab's to close)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.error is not None:
            raise RuntimeError(f"the taps failed: {self.error!r}") from self.error

    def _run(self) -> None:
        try:
            by_fd = {t.sock.fileno(): t for t in self.taps}
            while not self._stop.is_set():
                ready, _, _ = select.select(list(by_fd), [], [], 0.05)
                for fd in ready:
                    self._drain(by_fd[fd])
            for t in self.taps:  # what arrived while stopping
                self._drain(t)
        except BaseException as exc:  # raised by stop(), never lost in the thread
            self.error = exc

    def _drain(self, tap: _Tap) -> None:
        while True:
            try:
                pkt, anc, _flags, addr = tap.sock.recvmsg(65535, socket.CMSG_SPACE(16))
            except BlockingIOError:
                return
            if addr[1] != ETH_P_IP:
                continue  # ARP and the like
            wall = None
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                    sec, nsec = struct.unpack("qq", data[:16])
                    wall = sec + nsec / 1e9
            if wall is None:
                import time

                wall = time.time()
            self.seen.append((self.to_run(wall), tap.node, tap.router, addr[2] == PACKET_OUTGOING, pkt))

    # -- what was seen, as trace records
    def records(self) -> list[tuple[Any, ...]]:
        """``TX``/``RX``/``FWD``/``DROP``/``ICMP`` records in time order (times in µs of the run)."""
        out: list[tuple[Any, ...]] = []
        last: dict[Key, tuple[int, int]] = {}  # key -> (pid, born) of its latest TX
        pending: dict[tuple[str, Key], Segment] = {}  # a packet a router received, until it leaves
        pid = 0
        for t, node, router, outgoing, pkt in sorted(self.seen, key=lambda e: e[0]):
            us = int(round(t * 1e6))
            if len(pkt) < 20 or pkt[0] >> 4 != 4:
                continue
            proto = pkt[9]
            if proto == 1:
                self._icmp(out, pending, us, node, router, outgoing, pkt)
                continue
            if proto != 6:
                continue
            try:
                seg = decode(pkt, verify=False)
            except DecodeError:
                continue
            key = _key(seg)
            if not router and outgoing:
                pid += 1
                last[key] = (pid, us)
            elif key not in last:
                pid += 1  # from nowhere we tap: a fresh identity
                last[key] = (pid, us)
            seg.pid, seg.born = last[key]
            if not router:
                out.append((us, TX if outgoing else RX, node, seg))
            elif not outgoing:
                pending[(node, key)] = seg
            elif (node, key) in pending:
                out.append((us, FWD, node, pending.pop((node, key)), seg))
        return out

    def _icmp(self, out: list[tuple[Any, ...]], pending: dict[tuple[str, Key], Segment], us: int, node: str,
              router: bool, outgoing: bool, pkt: bytes) -> None:
        ihl = (pkt[0] & 0x0F) * 4
        if len(pkt) < ihl + 8 + 28:
            return
        kind = pkt[ihl]
        if not router and not outgoing:
            self.icmp_received.append((us / 1e6, node, kind))
            return
        if not (router and outgoing and kind == ICMP_TIME_EXCEEDED):
            return
        q = pkt[ihl + 8:]  # the quoted IP header and the first 8 bytes of its TCP header
        qihl = (q[0] & 0x0F) * 4
        if q[9] != 6 or len(q) < qihl + 8:
            return
        src, dst = struct.unpack("!II", q[12:20])
        ip_id = struct.unpack("!H", q[4:6])[0]
        sport, dport, seq = struct.unpack("!HHI", q[qihl:qihl + 8])
        seg = pending.pop((node, (src, dst, ip_id, sport, dport, seq)), None)
        if seg is not None:
            out.append((us, DROP, node, seg, "ttl"))
            out.append((us, ICMP, node, seg, "time-exceeded"))


def _key(seg: Segment) -> Key:
    return (seg.src, seg.dst, seg.ip_id, seg.sport, seg.dport, seg.seq)


def assign(records: list[tuple[Any, ...]], taps: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``records`` of an emulated path (its ``HOLD``/``DROP``/``DUP``/``NOTE``) merged into ``taps``'
    records, each path segment given the identity and birth of the tapped packet it is."""
    latest: dict[Key, tuple[int, int]] = {}
    ours = {id(r) for r in records}
    merged = sorted([*taps, *records], key=lambda r: r[0])
    for r in merged:
        if len(r) < 4 or not isinstance(r[3], Segment):
            continue
        seg = r[3]
        if id(r) in ours:
            if _key(seg) in latest:
                seg.pid, seg.born = latest[_key(seg)]
        elif r[1] == TX:
            latest[_key(seg)] = (seg.pid, seg.born)
    return merged
