"""The modelled network: links, routers, routing, packet age (MSL) and fault rules."""

from __future__ import annotations

import random
import shlex
from collections import deque
from dataclasses import dataclass, field

from timewait.bounds import PORT, Bounds
from timewait.errors import UsageError
from timewait.sim.scheduler import Scheduler
from timewait.tcp.segment import ACK, FIN, PSH, RST, SYN, Segment
from timewait.trace import DROP, DUP, FWD, HOLD, ICMP, TX, Trace

_FLAG_LETTERS = {"F": FIN, "S": SYN, "R": RST, "P": PSH, ".": ACK, "A": ACK}


class Node:
    """Anything with addresses that packets can reach: host, router or NAT."""

    kind = "node"

    def __init__(self, name: str, addrs: list[int]) -> None:
        self.name = name
        self.addrs = list(addrs)
        self.net: Network = None  # type: ignore[assignment]  # set by Network.add
        self.trace: Trace = None  # type: ignore[assignment]  # the network's, set by Network.add
        self.hops: dict[int, tuple[Link, Node] | None] = {}
        # One bound method for the life of the node: the scheduler holds it for every packet
        # in flight, and a fresh one per packet costs 64 bytes and an allocation.
        self.rx = self.receive

    def attach(self, net: Network) -> None:
        """The node joins ``net`` (:meth:`Network.add`): its clock and its trace."""
        self.net = net
        self.trace = net.trace

    def receive(self, seg: Segment) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def icmp_error(self, seg: Segment, what: str) -> None:
        """An ICMP error about ``seg`` reached this node (IC-1); only a host's TCP reads it."""


_IMPAIRMENTS = ("loss", "jitter", "dup", "reorder")


@dataclass(slots=True)
class Link:
    """A bidirectional link. Times in µs; probabilities in [0, 1]."""

    a: Node
    b: Node
    delay: int = 1000
    jitter: int = 0
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    reorder_delay: int = 0
    plain: bool = field(init=False, default=True)  # no loss, jitter, dup or reorder: kept by __setattr__

    def __post_init__(self) -> None:
        self._update_plain()

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        if name in _IMPAIRMENTS:
            self._update_plain()

    def _update_plain(self) -> None:
        # getattr with a default: dataclass __init__ sets the fields one by one.
        object.__setattr__(self, "plain", not any(getattr(self, f, 0) for f in _IMPAIRMENTS))

    def other(self, n: Node) -> Node:
        return self.b if n is self.a else self.a


@dataclass(slots=True)
class Fault:
    """A rule acting on matching segments as they leave ``src`` (a node name).

    ``action`` is ``drop``, ``hold`` (deliver ``seconds`` later) or ``dup`` (a copy too,
    ``seconds`` later).
    ``nth`` picks the first affected match (1-based), ``count`` how many from
    there (0 = all).
    """

    action: str
    src: str | None = None
    dst: str | None = None
    flags: int | None = None
    length: int | None = None
    sport: int | None = None
    dport: int | None = None
    nth: int = 1
    count: int = 1
    seconds: float = 0.0
    seen: int = field(default=0)
    text: str = ""

    def matches(self, node: Node, seg: Segment, dst_name: str | None) -> bool:
        if self.src is not None and node.name != self.src:
            return False
        if self.dst is not None and dst_name != self.dst:
            return False
        if self.flags is not None and seg.flags & 0x3F != self.flags:
            return False
        if self.length is not None and len(seg.payload) != self.length:
            return False
        if self.sport is not None and seg.sport != self.sport:
            return False
        return self.dport is None or seg.dport == self.dport

    def fires(self) -> bool:
        """Count a match; True when this match is one the rule acts on."""
        self.seen += 1
        k = self.seen - self.nth
        return k >= 0 and (self.count == 0 or k < self.count)


FAULT_HELP = (
    "fault: 'drop', 'dup [SECONDS]' or 'hold SECONDS', then KEY=VALUE filters: from=NODE to=NODE flags=S|S.|.|F.|P.|R "
    "len=N sport=N dport=N nth=N count=N|all"
)

# The numbers of a fault rule and their ranges (one table, as a scenario's parameters).
FAULT_SECONDS = Bounds(0)
FAULT_FIELDS: dict[str, Bounds] = {
    "len": Bounds(0, 65535, integer=True),
    "sport": PORT,
    "dport": PORT,
    "nth": Bounds(1, integer=True),
    "count": Bounds(1, integer=True),  # or "all"
}


def parse_fault(text: str) -> Fault:
    """``"drop from=c1 flags=. len=0 nth=2"`` or ``"hold 45 from=c1 flags=P."``.

    Every number is checked against :data:`FAULT_FIELDS` (``nth`` counts from 1, ``count``
    is at least 1 or ``all``, SECONDS finite and >= 0); node names are checked against the
    scenario's nodes when it runs (:func:`check_fault_nodes`).
    """
    try:
        words = shlex.split(text)
    except ValueError as e:  # an unclosed quote
        raise UsageError(f"--fault {text!r}: {e}; {FAULT_HELP}") from None
    if not words or words[0] not in ("drop", "dup", "hold"):
        raise UsageError(f"bad {FAULT_HELP}: {text!r}")
    f = Fault(words[0], text=text)
    rest = words[1:]
    if f.action == "hold":
        if not rest or "=" in rest[0]:
            raise UsageError(f"--fault {text!r}: hold needs SECONDS first; allowed "
                             f"{FAULT_SECONDS.describe('SECONDS')}")
        secs = rest.pop(0)
        f.seconds = FAULT_SECONDS.parse(f"--fault {text!r}: hold {secs}", secs, "SECONDS")
    elif f.action == "dup" and rest and "=" not in rest[0]:
        # "dup SECONDS": the copy arrives that much later (a delayed duplicate)
        secs = rest.pop(0)
        f.seconds = FAULT_SECONDS.parse(f"--fault {text!r}: dup {secs}", secs, "SECONDS")
    for w in rest:
        k, sep, v = w.partition("=")
        if not sep:
            raise UsageError(f"bad {FAULT_HELP}: {w!r}")
        if k in FAULT_FIELDS:
            if k == "count" and v == "all":
                f.count = 0
                continue
            setattr(f, "length" if k == "len" else k, int(FAULT_FIELDS[k].parse(f"--fault {text!r}: {w}", v, k)))
            continue
        if k in ("from", "to"):
            if not v:
                raise UsageError(f"--fault {text!r}: {k}= needs a node name")
            if k == "from":
                f.src = v
            else:
                f.dst = v
            continue
        if k != "flags":
            raise UsageError(f"bad {FAULT_HELP}: {w!r}")
        bits = 0
        for ch in v:
            bit = _FLAG_LETTERS.get(ch.upper() if ch != "." else ch)
            if bit is None:
                raise UsageError(f"--fault {text!r}: {w}: unknown flag {ch!r}; allowed S . F P R (A = .)")
            bits |= bit
        if not v:
            raise UsageError(f"--fault {text!r}: flags= needs flags; allowed S . F P R (A = .)")
        f.flags = bits
    return f


def check_fault_nodes(faults: list[Fault], nodes: list[str]) -> None:
    """A ``from=``/``to=`` naming no node of the scenario is a :class:`UsageError`, before it runs."""
    for f in faults:
        for key, name in (("from", f.src), ("to", f.dst)):
            if name is not None and name not in nodes:
                raise UsageError(f"--fault {f.text!r}: {key}={name}: no such node; nodes: {', '.join(nodes)}")


class Network:
    """Nodes, links and the rules packets live by.

    ``max_age`` (µs) is the MSL: a packet older than that is discarded
    wherever it arrives, so a "hold" longer than MSL kills it.
    """

    def __init__(self, sched: Scheduler, trace: Trace, rng: random.Random, max_age: int) -> None:
        self.sched = sched
        self.trace = trace
        self.rng = rng
        self.max_age = max_age
        self.nodes: dict[str, Node] = {}
        self.links: list[Link] = []
        self.adj: dict[str, list[Link]] = {}
        self.owner: dict[int, Node] = {}
        self.faults: list[Fault] = []
        self.pid = 0

    def add(self, node: Node) -> Node:
        if node.name in self.nodes:
            raise UsageError(f"node {node.name!r} exists already")
        node.attach(self)
        self.nodes[node.name] = node
        self.adj[node.name] = []
        for a in node.addrs:
            self.owner[a] = node
        return node

    def connect(self, a: Node, b: Node, **kw: object) -> Link:
        link = Link(a, b, **kw)  # type: ignore[arg-type]
        self.links.append(link)
        self.adj[a.name].append(link)
        self.adj[b.name].append(link)
        for n in self.nodes.values():
            n.hops.clear()
        return link

    def route(self, node: Node, dst: int) -> tuple[Link, Node] | None:
        """Next hop from ``node`` toward ``dst``: breadth-first over the links, cached."""
        target = self.owner.get(dst)
        hop = None
        if target is not None and target is not node:
            first: dict[str, tuple[Link, Node]] = {}
            seen = {node.name}
            queue: deque[Node] = deque()
            for link in self.adj[node.name]:
                nb = link.other(node)
                if nb.name not in seen:
                    seen.add(nb.name)
                    first[nb.name] = (link, nb)
                    queue.append(nb)
            while queue:
                n = queue.popleft()
                if n is target:
                    hop = first[n.name]
                    break
                if n.kind == "host":
                    continue  # hosts do not forward
                for link in self.adj[n.name]:
                    nb = link.other(n)
                    if nb.name not in seen:
                        seen.add(nb.name)
                        first[nb.name] = first[n.name]
                        queue.append(nb)
        node.hops[dst] = hop
        return hop

    def transmit(self, node: Node, seg: Segment) -> None:
        """Put ``seg`` on the link from ``node`` toward ``seg.dst``."""
        hops = node.hops
        hop = hops[seg.dst] if seg.dst in hops else self.route(node, seg.dst)
        sched = self.sched
        if hop is None:
            if self.trace.on and (seg.pid > 0 or self.trace.select is None):
                self.trace.records.append((sched.now, DROP, node.name, seg, "no-route"))
            return
        link, nxt = hop
        delay = link.delay
        if self.faults:
            dst_node = self.owner.get(seg.dst)
            for f in self.faults:
                if f.matches(node, seg, dst_node.name if dst_node else None) and f.fires():
                    if seg.pid <= 0 and self.trace.on and self.trace.select is not None:
                        self._promote(node, dst_node, seg)
                    if f.action == "drop":
                        if self.trace.on and (seg.pid > 0 or self.trace.select is None):
                            self.trace.records.append((sched.now, DROP, node.name, seg, "fault"))
                        return
                    if f.action == "hold":
                        delay += int(f.seconds * 1_000_000)
                        if self.trace.on and (seg.pid > 0 or self.trace.select is None):
                            self.trace.records.append((sched.now, HOLD, node.name, seg, f.seconds))
                    elif f.action == "dup":
                        sched.at(sched.now + delay + int(f.seconds * 1_000_000), nxt.rx, seg.copy())
                        if self.trace.on and (seg.pid > 0 or self.trace.select is None):
                            self.trace.records.append((sched.now, DUP, node.name, seg, f.seconds))
        rng = self.rng
        if link.loss and rng.random() < link.loss:
            if self.trace.on and (seg.pid > 0 or self.trace.select is None):
                self.trace.records.append((sched.now, DROP, node.name, seg, "loss"))
            return
        if link.jitter:
            delay += int(rng.random() * link.jitter)
        if link.reorder and rng.random() < link.reorder:
            delay += link.reorder_delay
        sched.at(sched.now + delay, nxt.rx, seg)
        if link.dup and rng.random() < link.dup:
            sched.at(sched.now + delay, nxt.rx, seg.copy())
            if self.trace.on and (seg.pid > 0 or self.trace.select is None):
                self.trace.records.append((sched.now, DUP, node.name, seg, 0.0))

    def _promote(self, node: Node, dst_node: Node | None, seg: Segment) -> None:
        """trace-select: a fault rule touched a packet of a connection the selection left out.
        From this packet on, that connection is recorded at both ends (a fault is what a
        reader looks for; its earlier packets are gone). Rare: only when a rule fires."""
        tr = self.trace
        seg.pid = self.pid = self.pid + 1
        ends = ((node, (seg.src, seg.sport, seg.dst, seg.dport)), (dst_node, (seg.dst, seg.dport, seg.src, seg.sport)))
        for n, key in ends:
            tables = [getattr(n, "ehash", None), getattr(n, "twhash", None)]
            for table in tables:
                c = table.get(key) if table is not None else None
                if c is not None and not c.traced:
                    c.traced = True
                    if tr.select is not None:
                        tr.select.promoted += 1
        if getattr(node, "ehash", None) is not None:  # the sending host: the packet's first record
            tr.records.append((self.sched.now, TX, node.name, seg))

    def icmp_back(self, node: Node, seg: Segment, what: str) -> None:
        """IC-1 (``icmp_send``): ``node``'s ICMP error about ``seg`` travels back to the host that sent it.

        It follows the route toward ``seg.src`` and arrives after those links' delays (ICMP
        errors leave with TTL 64 and no fault rule names them: they are not TCP segments).
        """
        delay = 0
        cur = node
        for _ in range(256):
            hop = cur.hops[seg.src] if seg.src in cur.hops else self.route(cur, seg.src)
            if hop is None:
                return
            link, nxt = hop
            delay += link.delay
            if nxt.kind != "router":
                self.sched.at(self.sched.now + delay, _icmp_arrives, (nxt, seg, what))
                return
            cur = nxt

    def too_old(self, node: Node, seg: Segment) -> bool:
        """Drop (and trace) a packet older than the network's MSL."""
        if self.sched.now - seg.born > self.max_age:
            if self.trace.on and (seg.pid > 0 or self.trace.select is None):
                self.trace.records.append((self.sched.now, DROP, node.name, seg, "msl"))
            return True
        return False


def _icmp_arrives(arg: tuple[Node, Segment, str]) -> None:
    node, seg, what = arg
    node.icmp_error(seg, what)


class Router(Node):
    """Decrements TTL and forwards; at TTL 0 drops with an ICMP time-exceeded (IC-1).

    IPv6 alike (V6-9, ``ip6_forward``): ``ttl`` is the hop limit, the error ICMPv6 time exceeded
    (the same ``"time-exceeded"`` record; views name it by the packet's family)."""

    kind = "router"

    def receive(self, seg: Segment) -> None:
        net = self.net
        if net.too_old(self, seg):
            return
        tr = net.trace
        if seg.ttl <= 1:
            if tr.on and (seg.pid > 0 or tr.select is None):
                now = net.sched.now
                tr.records.append((now, DROP, self.name, seg, "ttl"))
                tr.records.append((now, ICMP, self.name, seg, "time-exceeded"))
            net.icmp_back(self, seg, "time-exceeded")
            return
        out = seg.copy(ttl=seg.ttl - 1)
        if tr.on and (seg.pid > 0 or tr.select is None):
            tr.records.append((net.sched.now, FWD, self.name, seg, out))
        net.transmit(self, out)
