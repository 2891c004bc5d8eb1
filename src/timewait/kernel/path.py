"""A path the lab emulates in user space between two real kernels: hold, drop, duplicate, delay.

This kernel has no ``sch_netem``, but it has TUN devices in network
namespaces. :class:`Path` joins two lab namespaces through a TUN device in
each (:mod:`timewait.kernel.tun`) and forwards every IP packet between them
in one thread of the lab's process, applying the simulator's fault grammar
(``--fault``: ``drop``, ``dup [S]``, ``hold S`` with ``from=``, ``to=``,
``flags=``, ``len=``, ``sport=``, ``dport=``, ``nth=``, ``count=``, the very
:class:`timewait.sim.network.Fault` objects) plus a one-way delay and jitter
from a seeded RNG.

What crossed the path is recorded as the simulator records it (``TX`` when a
packet leaves a host, ``RX`` when it is handed to the other, ``DROP``,
``HOLD``, ``DUP``), in the trace's own tuples with times on the run's clock,
so the simulator's views (tcpdump lines, ladder, pcap) and checks read a
kernel run too. The queue of packets in flight is bounded
(:data:`MAX_IN_FLIGHT`); past it a packet is dropped and recorded as such.
"""

from __future__ import annotations

import heapq
import random
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from timewait.kernel.tun import Tun
from timewait.sim.network import Fault, parse_fault
from timewait.tcp.segment import DecodeError, Segment, decode
from timewait.trace import DROP, DUP, HOLD, NOTE, RX, TX

MAX_IN_FLIGHT = 10_000


@dataclass(slots=True)
class _End:
    name: str
    tun: Tun


@dataclass
class Path:
    """Two namespaces joined through TUN devices; start with :meth:`start`, stop with :meth:`stop`.

    ``a`` and ``b`` are ``(host name, Tun)``; ``clock`` gives the run's time in
    seconds (the trace's times are its microseconds).
    """

    a: tuple[str, Tun]
    b: tuple[str, Tun]
    clock: Callable[[], float]
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int = 1
    #: The network's MSL, as the simulator's (``Network.too_old``): a packet older than this when it
    #: is due is discarded (``DROP`` ``"msl"`` at the receiving end). No real network does that; the
    #: ttl twin asks it of the emulated link so both sides hold the scenario's same network.
    max_age_s: float | None = None
    faults: list[Fault] = field(default_factory=list)
    records: list[tuple] = field(default_factory=list)
    other_packets: int = 0  # not TCP (none expected: the devices send no ND or RS of their own)

    def __post_init__(self) -> None:
        self._ends = (_End(self.a[0], self.a[1]), _End(self.b[0], self.b[1]))
        self._rng = random.Random(self.seed)
        self._queue: list[tuple[float, int, int, bytes, Segment | None]] = []
        self._n = 0
        self._pid = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # -- control
    def fault(self, text: str) -> Fault:
        """Add a rule in the simulator's grammar (``"drop from=c1 flags=. len=0"``); returns it."""
        f = parse_fault(text)
        with self._lock:
            self.faults.append(f)
        return f

    def remove(self, f: Fault) -> None:
        with self._lock:
            if f in self.faults:
                self.faults.remove(f)

    def release(self, later_than_s: float = 0.0) -> int:
        """Deliver now every packet due more than ``later_than_s`` from now (held ones); returns how many.

        A real run's timing drifts with the machine's load, so a twin that must have a held
        packet arrive *after* an event releases it at that event instead of at a fixed time.
        """
        with self._lock:
            now = time.monotonic()
            n = 0
            for i, (due, k, to, pkt, seg) in enumerate(self._queue):
                if due > now + later_than_s:
                    self._queue[i] = (now, k, to, pkt, seg)
                    n += 1
                    self.records.append((self._now_us(), NOTE, self._ends[to].name,
                                         f"the path lets a held packet go {due - now:.3f} s early"))
            heapq.heapify(self._queue)
        return n

    def start(self) -> Path:
        self._thread = threading.Thread(target=self._run, name="timewait-path", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop forwarding (packets still held are dropped with the path) and close the devices."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for e in self._ends:
            e.tun.close()
        if self.error is not None:
            raise RuntimeError(f"the emulated path failed: {self.error!r}") from self.error

    # -- the forwarding loop
    def _now_us(self) -> int:
        return int(round(self.clock() * 1e6))

    def _run(self) -> None:
        try:
            fds = [e.tun.fileno() for e in self._ends]
            while not self._stop.is_set():
                timeout = 0.05
                if self._queue:
                    timeout = max(0.0, min(timeout, self._queue[0][0] - time.monotonic()))
                ready, _, _ = select.select(fds, [], [], timeout)
                for i, e in enumerate(self._ends):
                    if e.tun.fileno() in ready:
                        while (pkt := e.tun.read()) is not None:
                            self._from(i, pkt)
                self._deliver_due()
        except BaseException as exc:  # recorded and raised by stop(), never lost in the thread
            self.error = exc

    def _from(self, i: int, pkt: bytes) -> None:
        src, dst = self._ends[i], self._ends[1 - i]
        now = self._now_us()
        seg: Segment | None
        try:
            seg = decode(pkt, verify=False) if _is_tcp(pkt) else None
        except DecodeError:
            seg = None
        if seg is None:
            self.other_packets += 1
            self._enqueue(1 - i, pkt, None, 0.0)
            return
        self._pid += 1  # one identity per packet, as the simulator's network gives (measure.fate)
        seg.pid, seg.born = self._pid, now
        self.records.append((now, TX, src.name, seg))
        extra = 0.0
        with self._lock:
            rules = list(self.faults)
        node = _Named(src.name)
        for f in rules:
            if f.matches(node, seg, dst.name) and f.fires():
                if f.action == "drop":
                    self.records.append((now, DROP, src.name, seg, "fault"))
                    return
                if f.action == "hold":
                    self.records.append((now, HOLD, src.name, seg, f.seconds))
                    extra += f.seconds
                elif f.action == "dup":
                    self.records.append((now, DUP, src.name, seg, f.seconds))
                    self._enqueue(1 - i, pkt, seg, f.seconds)
        self._enqueue(1 - i, pkt, seg, extra)

    def _enqueue(self, to: int, pkt: bytes, seg: Segment | None, extra_s: float) -> None:
        if len(self._queue) >= MAX_IN_FLIGHT:
            if seg is not None:
                self.records.append((self._now_us(), DROP, self._ends[1 - to].name, seg, "loss"))
            return
        one_way = self.delay_ms + (self._rng.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0)
        due = time.monotonic() + max(0.0, one_way) / 1000 + extra_s
        self._n += 1
        with self._lock:
            heapq.heappush(self._queue, (due, self._n, to, pkt, seg))

    def _deliver_due(self) -> None:
        now = time.monotonic()
        while self._queue and self._queue[0][0] <= now:
            with self._lock:
                _, _, to, pkt, seg = heapq.heappop(self._queue)
            end = self._ends[to]
            if seg is not None and self.max_age_s is not None and self._now_us() - seg.born > self.max_age_s * 1e6:
                self.records.append((self._now_us(), DROP, end.name, seg, "msl"))
                continue
            end.tun.write(pkt)
            if seg is not None:
                self.records.append((self._now_us(), RX, end.name, seg))


def _is_tcp(pkt: bytes) -> bool:
    """An IPv4 packet carrying TCP, or an IPv6 one whose first header is TCP (no extension headers)."""
    version = pkt[0] >> 4 if pkt else 0
    if version == 4:
        return len(pkt) >= 40 and pkt[9] == 6
    return version == 6 and len(pkt) >= 60 and pkt[6] == 6


@dataclass(slots=True)
class _Named:
    """What :meth:`Fault.matches` reads of a node: its name."""

    name: str
