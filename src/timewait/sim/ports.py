"""Local ports: the bind hash and connect()'s ephemeral port search.

Linux keeps who uses a local port in ``inet_bind_bucket``s (the bind hash,
``bhash``) and chooses a connecting socket's port in ``__inet_hash_connect``
(``net/ipv4/inet_hashtables.c``); bind() with port 0 searches in
``inet_csk_find_open_port`` and decides sharing in ``inet_csk_bind_conflict``
(``net/ipv4/inet_connection_sock.c``). This module is those pieces of one host:
:class:`PortTable` owns the buckets and the search state (the perturbation
table, per-destination port maps) and reads the host's 4-tuple tables and
sysctls. Rules PS-1..PS-8 in ``docs/linux-rules.md``.

The port space is one for both families, as Linux's: the buckets hold IPv4 and IPv6
sockets alike, and the port search keys by 4-tuple, so connections of either family toward
different destinations may share a local port (V6-5, V6-8). Whether two bound sockets'
addresses overlap follows ``inet_rcv_saddr_equal`` (V6-2, V6-3: :func:`rcv_saddr_equal`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from timewait.tcp.segment import V4_MAX, V6_ANY
from timewait.tcp.timewait import TimeWait, is_loopback, tw_reuse_allowed

if TYPE_CHECKING:
    from timewait.sim.host import Host
    from timewait.sim.socket import Socket


_AF_INET6 = 10  # timewait.sim.socket.AF_INET6 (imported there from here would be circular)
_LOOPBACK4_IPV6 = 0x7F000006  # 127.0.0.6: inet_rcv_saddr of an AF_INET6 socket on a unicast IPv6 address


def _v4_view(s: Socket) -> int:
    """``sk_rcv_saddr``: the IPv4 address of a socket's bind (0 for 0.0.0.0 and ``::``)."""
    a = s.laddr
    if a <= V4_MAX:
        return a
    return 0 if a == V6_ANY else _LOOPBACK4_IPV6


def rcv_saddr_equal(sk: Socket, sk2: Socket) -> bool:
    """``inet_rcv_saddr_equal(sk, sk2, match_wildcard=true)``: do the two binds' addresses overlap?

    For an AF_INET ``sk`` it is ``ipv4_rcv_saddr_equal``: never against an IPv6-only ``sk2``,
    else equal IPv4 views or a wildcard on either side. For an AF_INET6 ``sk`` it is
    ``ipv6_rcv_saddr_equal``: both v4-mapped (an AF_INET ``sk2`` counts as mapped) compare as
    IPv4; ``::`` overlaps everything except a v4-mapped bind when its own side is IPv6-only;
    otherwise equal IPv6 addresses. (V6-2, V6-3.)
    """
    if sk.family != _AF_INET6:
        if sk2.family == _AF_INET6 and sk2.v6only:
            return False
        a1, a2 = _v4_view(sk), _v4_view(sk2)
        return a1 == a2 or not a1 or not a2
    t1 = _addr_type(sk)
    t2 = _addr_type(sk2) if sk2.family == _AF_INET6 else "mapped"
    if t1 == "mapped" and t2 == "mapped":
        if sk2.v6only:
            return False
        a1, a2 = _v4_view(sk), _v4_view(sk2)
        return a1 == a2 or not a1 or not a2
    if t1 == "any" and t2 == "any":
        return True
    if t2 == "any" and not (sk2.v6only and t1 == "mapped"):
        return True
    if t1 == "any" and not (sk.v6only and t2 == "mapped"):
        return True
    return sk2.family == _AF_INET6 and sk.laddr == sk2.laddr


def _addr_type(s: Socket) -> str:
    """``ipv6_addr_type`` of an AF_INET6 socket's bind: "any" (``::``), "mapped" (its laddr is the
    IPv4 address inside ``::ffff:a.b.c.d``) or "unicast"."""
    a = s.laddr
    if a == V6_ANY:
        return "any"
    return "mapped" if a <= V4_MAX else "unicast"


class DestPorts:
    """Auto-selected local ports holding an entry (connection or TIME_WAIT) toward one
    (saddr, daddr, dport), as one byte per port split by parity, plus counts.

    The port search finds the next port free toward the destination with
    ``bytearray.find`` instead of a Python loop: the same port the kernel's walk
    would take, at C speed (``__inet_hash_connect`` walks up to n/2 ports).
    """

    __slots__ = ("count", "maps")

    def __init__(self) -> None:
        self.count = [0, 0]
        self.maps = (bytearray(32768), bytearray(32768))  # even ports, odd ports; index = port >> 1

    def add(self, port: int) -> None:
        self.count[port & 1] += 1
        self.maps[port & 1][port >> 1] = 1

    def remove(self, port: int) -> bool:
        """Forget ``port``; True when nothing is left."""
        self.count[port & 1] -= 1
        self.maps[port & 1][port >> 1] = 0
        return not (self.count[0] or self.count[1])


_NO_DEST = DestPorts()


class Bucket:
    """``inet_bind_bucket``: who uses one local port.

    ``bind_created`` marks a port taken by bind() (a listener, an explicit or a
    bind(0) socket): connect()'s port search skips such ports (PS-4). The
    counters let bind() decide conflicts with SO_REUSEADDR (PS-8) in O(1).
    """

    __slots__ = ("bind_created", "bound", "conns", "conns_noreuse", "tws", "tws_noreuse")

    def __init__(self, bind_created: bool) -> None:
        self.bind_created = bind_created
        self.bound: list[Socket] = []
        self.conns = 0
        self.conns_noreuse = 0
        self.tws = 0
        self.tws_noreuse = 0

    def empty(self) -> bool:
        return not (self.bound or self.conns or self.tws)


class PortTable:
    """One host's bind hash and port search state.

    ``buckets`` maps a local port to its :class:`Bucket`; ``bind_ports`` are the
    ports of bind-created buckets (PS-4); ``dest_use`` maps (saddr, daddr, dport)
    to the auto-selected ports held toward it, which lets the search skip what
    cannot succeed; ``perturb`` is the kernel's ``table_perturb`` (PS-3).
    """

    __slots__ = ("host", "buckets", "bind_ports", "dest_use", "perturb")

    def __init__(self, host: Host) -> None:
        self.host = host
        self.buckets: dict[int, Bucket] = {}
        self.bind_ports: set[int] = set()
        self.dest_use: dict[tuple[int, int, int], DestPorts] = {}
        self.perturb: dict[int, int] = {}

    # ------------------------------------------------------------------ bind()

    def bind(self, sock: Socket, port: int) -> None:
        """Put a bound socket in its port's bucket; the port is bind-created from now on."""
        b = self.buckets.get(port)
        if b is None:
            b = self.buckets[port] = Bucket(True)
        b.bind_created = True
        self.bind_ports.add(port)
        b.bound.append(sock)

    def unbind(self, sock: Socket, port: int) -> None:
        """The bound socket leaves its bucket (it connected, or closed unconnected)."""
        b = self.buckets.get(port)
        if b is not None and sock in b.bound:
            b.bound.remove(sock)
            if b.empty():
                self.drop(port)

    def bind_conflict(self, sock: Socket, port: int) -> bool:
        """``inet_csk_bind_conflict`` (PS-8): every owner must allow sharing."""
        b = self.buckets.get(port)
        if b is None:
            return False
        r = sock.reuseaddr
        for other in b.bound:
            if not (r and other.reuseaddr and not other.listening) and (
                rcv_saddr_equal(sock, other) if sock.family == _AF_INET6 or other.family == _AF_INET6
                else not sock.laddr or not other.laddr or sock.laddr == other.laddr
            ):
                return True
        if b.conns and (not r or b.conns_noreuse):
            return True
        return bool(b.tws and (not r or b.tws_noreuse))

    def bind_search(self) -> int:
        """``inet_csk_find_open_port``: odd ports first (PS-2), a port nobody uses; 0 if none."""
        sysctls = self.host.sysctls
        lo, hi = sysctls["net.ipv4.ip_local_port_range"]
        reserved = sysctls["net.ipv4.ip_local_reserved_ports"]
        n = hi - lo + 1
        start = self.host.rng.randrange(n)
        for parity in (1, 0):
            for i in range(n):
                port = lo + (start + i) % n
                if port & 1 != parity or port in reserved:
                    continue
                if port not in self.buckets:
                    return port
        return 0

    # ------------------------------------------------------------------ connect()

    def connect_search(self, saddr: int, daddr: int, dport: int, now: int) -> tuple[int, TimeWait | None]:
        """``__inet_hash_connect`` (PS-2..PS-5): parity, hashed start, 4-tuple uniqueness.

        Returns ``(port, TIME_WAIT record to take over or None)``; port 0 means
        EADDRNOTAVAIL.
        """
        host = self.host
        sysctls = host.sysctls
        lo, hi = sysctls["net.ipv4.ip_local_port_range"]
        reserved = sysctls["net.ipv4.ip_local_reserved_ports"]
        size = hi - lo + 1
        n = size & ~1 if size > 1 else size  # `remaining`: an even count (PS-2)
        reuse = sysctls["net.ipv4.tcp_tw_reuse"]
        loopback = is_loopback(saddr) or is_loopback(daddr)
        may_reuse = tw_reuse_allowed(reuse, host.cfg.timestamps != 0, loopback, False)  # PS-5
        dk = (saddr, daddr, dport)
        buckets = self.buckets
        h = host.secure.port_offset(saddr, daddr, dport, now)
        idx = h & 0xFFFF
        offset = (self.perturb.get(idx, 0) + (h >> 32)) % n
        offset &= ~1
        if not may_reuse and n > 1:
            return self._fast_search(dk, lo, size, n, offset, idx, reserved)
        delay = sysctls["net.ipv4.tcp_tw_reuse_delay"] * 1000
        ehash, twhash = host.ehash, host.twhash
        for _ in range(2):
            i = 0
            while i < n:
                # A port past hi wraps by `remaining`, not modulo it: with an odd range the
                # top port is reached from any start above lo (PS-2; kernel-measured).
                x = offset + i
                port = lo + (x - n if x >= size else x)
                i += 2
                if port in reserved:
                    continue
                b = buckets.get(port)
                if b is None:
                    self._perturb(idx, i - 2)
                    return port, None
                if b.bind_created:
                    continue
                key = (saddr, port, daddr, dport)
                if key in ehash:
                    continue
                tw = twhash.get(key)
                if tw is None:
                    self._perturb(idx, i - 2)
                    return port, None
                if tw.reusable(now, reuse, delay, loopback, bound=False):
                    self._perturb(idx, i - 2)
                    return port, tw
            offset += 1
        return 0, None

    def _perturb(self, idx: int, i: int) -> None:
        """After a success the table entry climbs by ``max(i, rand(0..7)*2) + 2`` (PS-3)."""
        bits = self.host.rng.getrandbits
        r = bits(4)
        while r >= 8:  # rng.randrange(8), the same draws, without its Python-level overhead
            r = bits(4)
        step = r * 2
        self.perturb[idx] = self.perturb.get(idx, 0) + (i if i > step else step) + 2

    def _fast_search(self, dk: tuple[int, int, int], lo: int, size: int, n: int, offset: int,
                     idx: int, reserved: frozenset[int]) -> tuple[int, None]:
        """The walk of :meth:`connect_search` when no TIME_WAIT may be taken over.

        A port qualifies iff it has no entry toward ``dk`` and is neither
        bind-created nor reserved. A pass from ``start`` visits one parity class
        of the range in circular order from ``lo + start``; with an odd ``size``
        the class of ``lo``'s parity is one port longer than the pass, which then
        misses ``lo`` (start > 0) or the top port (start = 0). Here the first
        qualifying port of a pass is found with ``bytearray.find`` over the
        destination's port map.
        """
        use = self.dest_use.get(dk, _NO_DEST)
        skip = self.bind_ports
        hi = lo + size - 1
        for start in (offset, offset + 1):
            par = (lo + start) & 1
            m = use.maps[par]
            if par != lo & 1:                                 # lo + 1, lo + 3, ...
                first, last = lo + 1, hi if hi & 1 == par else hi - 1
            elif size == n:                                   # even size: lo, lo + 2, ... hi - 1
                first, last = lo, hi - 1
            elif start == 0:                                  # odd size: the top port is missed
                first, last = lo, hi - 2
            else:                                             # odd size: lo is missed
                first, last = lo + 2, hi
            a, b = first >> 1, (last >> 1) + 1               # map indices [a, b)
            s = (lo + start) >> 1
            span = b - a
            for lo_i, hi_i in ((s, b), (a, s)):
                j = m.find(0, lo_i, hi_i)
                while j >= 0:
                    port = (j << 1) | par
                    if port not in skip and port not in reserved:
                        steps = (j - s) % span
                        self._perturb(idx, 2 * steps)
                        return port, None
                    j = m.find(0, j + 1, hi_i)
        return 0, None

    # ------------------------------------------------------------------ holding and freeing

    def acquire(self, port: int, reuse: bool, bind_created: bool) -> None:
        """A connection takes its share of ``port`` (``inet_bind_hash``)."""
        b = self.buckets.get(port)
        if b is None:
            b = self.buckets[port] = Bucket(bind_created)
        b.conns += 1
        if not reuse:
            b.conns_noreuse += 1

    def release(self, port: int, reuse: bool, tw: bool) -> None:
        """A connection or a TIME_WAIT record gives its share back (``inet_put_port``,
        ``inet_twsk_bind_unhash``); an empty bucket is freed."""
        b = self.buckets.get(port)
        if b is None:
            return
        if tw:
            b.tws -= 1
            if not reuse:
                b.tws_noreuse -= 1
        else:
            b.conns -= 1
            if not reuse:
                b.conns_noreuse -= 1
        if b.empty():
            self.drop(port)

    def to_time_wait(self, port: int, reuse: bool) -> None:
        """The connection's share passes to its TIME_WAIT record (``inet_twsk_hashdance``)."""
        b = self.buckets.get(port)
        if b is not None:
            b.conns -= 1
            b.tws += 1
            if not reuse:
                b.conns_noreuse -= 1
                b.tws_noreuse += 1

    def drop(self, port: int) -> None:
        del self.buckets[port]
        self.bind_ports.discard(port)

    def dest_add(self, saddr: int, daddr: int, dport: int, lport: int) -> None:
        """An auto-selected port now holds an entry toward (saddr, daddr, dport)."""
        dk = (saddr, daddr, dport)
        use = self.dest_use.get(dk)
        if use is None:
            use = self.dest_use[dk] = DestPorts()
        use.add(lport)

    def dest_release(self, key: tuple[int, int, int, int]) -> None:
        """The entry of 4-tuple ``key`` is gone from its destination's port map."""
        dk = (key[0], key[2], key[3])
        use = self.dest_use.get(dk)
        if use is not None and use.remove(key[1]):
            del self.dest_use[dk]
