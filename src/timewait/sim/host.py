"""A host: an operating system in miniature around the TCP core.

It offers BSD-like socket calls, demultiplexes arriving segments through
dictionaries (4-tuple -> connection, 4-tuple -> TIME_WAIT record, local
address -> listener; never a scan over sockets), chooses ephemeral ports as
Linux's ``__inet_hash_connect`` does, keeps TIME_WAIT records under
``tcp_max_tw_buckets``, and counts what Linux counts under nstat's names.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from heapq import heappush
from typing import Any

from timewait.errors import UsageError
from timewait.sim.network import Node
from timewait.sim.profiles import Profile
from timewait.sim.scheduler import Lane
from timewait.sim.socket_error import SocketError
from timewait.sim.sysctl import format_value, initial_window, lookup, rcv_wscale
from timewait.sim.telemetry import HostTelemetry
from timewait.tcp.config import SEC, TcpConfig
from timewait.tcp.connection import (
    EV_CLOSED,
    EV_CONNECTED,
    EV_DATA,
    EV_EOF,
    EV_ERROR,
    EV_FW2_TIMER,
    Connection,
)
from timewait.tcp.isn import SecureSeq
from timewait.tcp.segment import ACK, RST, SYN, Segment, ip_aton, ip_ntoa
from timewait.tcp.states import (
    CLOSE_WAIT,
    CLOSED,
    ESTABLISHED,
    FIN_WAIT_2,
    NAMES,
    RCV_RST,
    RCV_SYN,
    RCV_SYN_OR_DATA,
    SYN_RECEIVED,
    TIME_WAIT,
    TIMEOUT_2MSL,
    TIMEOUT_FW2,
    TW_HANDOFF,
    TW_OFF,
    TW_OVERFLOW,
    TW_REUSE,
)
from timewait.tcp.timewait import (
    TW_ACK,
    TW_KILL,
    TW_RST,
    TW_SUCCESS,
    TW_SYN,
    TimeWait,
    is_loopback,
    reset_for,
    tw_reuse_allowed,
)
from timewait.trace import CALL, COUNTER, DROP, FIRE, RX, STATE, TIMER, TX

_TW_NAMES = {TIME_WAIT: "TIME_WAIT", FIN_WAIT_2: "FIN_WAIT_2"}
_TW_EXPIRY = {TIME_WAIT: TIMEOUT_2MSL, FIN_WAIT_2: TIMEOUT_FW2}  # the event of a record's timer
_EV_RARE = EV_ERROR | EV_CLOSED


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


class Socket:
    """A file descriptor of a simulated application.

    Calls raise :class:`SocketError` on failure. Completion and arrival are
    reported through the ``on_*`` callbacks the application sets.
    """

    __slots__ = (
        "host", "fd", "conn", "laddr", "lport", "reuseaddr", "linger0", "bind_no_port", "bound",
        "listening", "backlog", "accept_queue", "closed", "rd_shut",
        "on_connected", "on_data", "on_eof", "on_error", "on_accept", "on_closed", "app",
    )

    def __init__(self, host: Host, fd: int) -> None:
        self.host = host
        self.fd = fd
        self.conn: Connection | None = None
        self.laddr = 0
        self.lport = 0
        self.reuseaddr = False
        self.linger0 = False
        self.bind_no_port = False
        self.bound = False
        self.rd_shut = False  # shutdown(SHUT_RD): RCV_SHUTDOWN
        self.listening = False
        self.backlog = 0
        self.accept_queue: list[Socket] = []
        self.closed = False
        self.on_connected: Callable[[Socket], None] | None = None
        self.on_data: Callable[[Socket], None] | None = None
        self.on_eof: Callable[[Socket], None] | None = None
        self.on_error: Callable[[Socket, str], None] | None = None
        self.on_accept: Callable[[Socket], None] | None = None
        self.on_closed: Callable[[Socket], None] | None = None
        self.app: Any = None

    def __repr__(self) -> str:
        return f"<Socket fd={self.fd} {ip_ntoa(self.laddr)}:{self.lport}>"

    # The BSD calls, forwarded to the host.
    def setsockopt(self, name: str, value: Any) -> None:
        self.host.setsockopt(self, name, value)

    def bind(self, addr: str | int, port: int) -> None:
        self.host.bind(self, addr, port)

    def listen(self, backlog: int = 128) -> None:
        self.host.listen(self, backlog)

    def connect(self, addr: str | int, port: int) -> None:
        self.host.connect(self, addr, port)

    def accept(self) -> Socket | None:
        return self.accept_queue.pop(0) if self.accept_queue else None

    def send(self, data: bytes) -> int:
        return self.host.send(self, data)

    def recv(self) -> bytes:
        return self.host.recv(self)

    def shutdown(self, how: str = "SHUT_WR") -> None:
        """shutdown(2): ``SHUT_WR`` sends the FIN, ``SHUT_RD`` ends reads, ``SHUT_RDWR`` both."""
        self.host.shutdown(self, how)

    def close(self) -> None:
        self.host.close(self)

    @property
    def state(self) -> str:
        return NAMES[self.conn.state] if self.conn is not None else ("LISTEN" if self.listening else "CLOSED")


class Host(Node):
    """A simulated host (one network namespace)."""

    kind = "host"

    def __init__(self, name: str, addrs: list[str | int], profile: Profile, secret: bytes,
                 rng: random.Random, uptime_ms: int = 0, mem: int | None = None) -> None:
        super().__init__(name, [a if isinstance(a, int) else ip_aton(a) for a in addrs])
        self.addr = self.addrs[0]
        self.addr_set = frozenset(self.addrs)
        self.profile = profile
        self.rng = rng
        self.secure = SecureSeq(secret, profile.isn_tick_ns)
        self.cfg = TcpConfig(
            ts_offsets=profile.ts_offsets, challenge_ack=profile.challenge_ack,
            quick_syn_resend=profile.quick_syn_resend, syn_in_lastack_rst=profile.syn_in_lastack_rst,
            tw_len=profile.tw_len, ts_base_ms=uptime_ms, **profile.cfg,
        )
        self.sysctls: dict[str, Any] = {}
        for name_, value in profile.sysctls.items():
            self._apply_sysctl(name_, value)
        if mem is not None:
            from timewait.sim.sysctl import ehash_entries

            # TW-9 (tcp_set_hashinfo, tcp_init): both caps are half the established hash.
            self._apply_sysctl("net.ipv4.tcp_max_tw_buckets", ehash_entries(mem) // 2)
            self._apply_sysctl("net.ipv4.tcp_max_orphans", ehash_entries(mem) // 2)
        self.counters: dict[str, int] = {}
        self.in_segs = 0   # TcpInSegs / TcpOutSegs: plain ints on the hot path, merged in snapshots
        self.out_segs = 0
        self.ehash: dict[tuple[int, int, int, int], Connection] = {}
        self.twhash: dict[tuple[int, int, int, int], TimeWait] = {}
        self.listeners: dict[tuple[int, int], Socket] = {}
        self.buckets: dict[int, Bucket] = {}
        self.bind_ports: set[int] = set()                   # ports of bind-created buckets (PS-4)
        self.perturb: dict[int, int] = {}
        # Auto-selected ports with an entry (connection or TIME_WAIT) toward each
        # (saddr, daddr, dport), counted by port parity: lets the port search skip a
        # parity pass that cannot succeed.
        self.dest_use: dict[tuple[int, int, int], DestPorts] = {}
        self.peer_ts: dict[int, tuple[int, int]] = {}       # legacy recycle cache: addr -> (tsval, stamp)
        self.timewait_enabled = True                        # lesson knob: --set timewait=off
        # Lesson hook: isn_hook(key, isn) -> isn lets a scenario arrange sequence-number
        # coincidences (an ISN that wrapped onto an old one) that real clocks make rare.
        self.isn_hook: Callable[[tuple[int, int, int, int], int], int] | None = None
        self.next_fd = 3
        # Bound once: every TIME_WAIT record and connection wake-up on the heap holds one
        # (W2 measured 64 bytes per record for a fresh bound method each).
        self._tw_timer_cb = self._tw_timer
        self._conn_timer_cb = self._conn_timer
        self._tw_lane: Lane | None = None                  # TIME_WAIT expiries in order (made on first use)
        self.orphans = 0                                    # closed by the application, still alive
        self.tel = HostTelemetry(self)                      # exact counts beside the trace (sim/telemetry.py)

    # ------------------------------------------------------------------ sysctls and counters

    def set_sysctl(self, name: str, text: str) -> None:
        """Set a sysctl from text; unknown names and bad values raise UsageError."""
        s = lookup(name, self.profile.legacy)
        self._apply_sysctl(s.name, s.parse(s.name, text))

    def _apply_sysctl(self, name: str, value: Any) -> None:
        s = lookup(name, self.profile.legacy)
        self.sysctls[s.name] = value
        if s.cfg_field is not None:
            v = value * s.scale if isinstance(value, int) and not isinstance(value, bool) else value
            if s.cfg_field in ("sack", "window_scaling"):
                v = bool(value)
            setattr(self.cfg, s.cfg_field, v)
        elif s.name in ("net.ipv4.tcp_rmem", "net.core.rmem_max"):
            rmem = self.sysctls.get("net.ipv4.tcp_rmem")
            core = self.sysctls.get("net.core.rmem_max")
            if rmem is not None and core is not None:  # WIN-2, once the profile has set both
                self.cfg.rcv_wscale = rcv_wscale(rmem[2], core)
            if rmem is not None:  # WIN-1: the initial windows come from tcp_rmem[1] (sk_rcvbuf)
                cfg = self.cfg
                cfg.rcv_buf = rmem[1]
                cfg.syn_win = initial_window(rmem[1], cfg.mss)
                cfg.synack_win = initial_window(rmem[1], cfg.mss - 12)  # less the timestamps option


    def sysctl(self, name: str) -> Any:
        return self.sysctls[name]

    def sysctls_json(self) -> dict[str, Any]:
        return {k: format_value(v) for k, v in sorted(self.sysctls.items())}

    def bump(self, name: str, n: int = 1) -> None:
        """Increment an nstat counter and trace it."""
        c = self.counters
        c[name] = c.get(name, 0) + n
        tr = self.trace
        if tr.on:
            tr.records.append((self.net.sched.now, COUNTER, self.name, name, n))

    # ------------------------------------------------------------------ views of the host

    def states(self) -> dict[str, int]:
        """Socket counts by state, TIME_WAIT records included, as ``ss -s`` would see them."""
        out: dict[str, int] = {}
        for c in self.ehash.values():
            n = NAMES[c.state]
            out[n] = out.get(n, 0) + 1
        for tw in self.twhash.values():
            n = _TW_NAMES[tw.substate]
            out[n] = out.get(n, 0) + 1
        if self.listeners:
            out["LISTEN"] = len(self.listeners)
        return out

    def all_counters(self) -> dict[str, int]:
        """Every nstat counter that moved, sorted by name."""
        c = dict(self.counters)
        if self.in_segs:
            c["TcpInSegs"] = self.in_segs
        if self.out_segs:
            # Retransmissions are sent but not counted (Connection._count_retransmit).
            c["TcpOutSegs"] = self.out_segs - c.get("TcpRetransSegs", 0)
        return dict(sorted(c.items()))

    def snapshot(self) -> dict[str, Any]:
        return {"states": self.states(), "counters": self.all_counters(), "sysctls": self.sysctls_json()}

    def tw_count(self) -> int:
        return len(self.twhash)

    # ------------------------------------------------------------------ socket calls

    def _call(self, sock: Socket, call: str, args: tuple, result: str | None) -> None:
        tr = self.trace
        if tr.on:
            tr.records.append((self.net.sched.now, CALL, self.name, sock.fd, call, args, result))

    def socket(self) -> Socket:
        sock = Socket(self, self.next_fd)
        self.next_fd += 1
        return sock

    def setsockopt(self, sock: Socket, name: str, value: Any) -> None:
        if name == "SO_REUSEADDR":
            sock.reuseaddr = bool(value)
        elif name == "SO_LINGER":
            on, secs = value
            sock.linger0 = bool(on) and secs == 0
            if sock.conn is not None:
                sock.conn.linger0 = sock.linger0
        elif name == "IP_BIND_ADDRESS_NO_PORT":
            sock.bind_no_port = bool(value)
        else:
            raise UsageError(f"unknown socket option {name!r}; known: SO_REUSEADDR, SO_LINGER, IP_BIND_ADDRESS_NO_PORT")
        if self.trace.on:
            self._call(sock, "setsockopt", (name, value), None)

    def _fail(self, sock: Socket, call: str, args: tuple, errno: str) -> None:
        self._call(sock, call, args, errno)
        self.tel.failed(call, errno)
        raise SocketError(errno, call)

    def bind(self, sock: Socket, addr: str | int, port: int) -> None:
        """bind(): PS-7 (IP_BIND_ADDRESS_NO_PORT), bind(0) odd-first search, PS-8 conflicts."""
        a = addr if isinstance(addr, int) else ip_aton(addr)
        args = (ip_ntoa(a), port)
        if a and a not in self.addr_set:
            self._fail(sock, "bind", args, "EADDRNOTAVAIL")
        if sock.bound or sock.conn is not None:
            self._fail(sock, "bind", args, "EINVAL")
        sock.laddr = a
        if port == 0:
            if sock.bind_no_port:
                self._call(sock, "bind", args, None)
                return
            port = self._bind_port_search(sock)
            if not port:
                self._fail(sock, "bind", args, "EADDRINUSE")
        elif self._bind_conflict(sock, port):
            sock.laddr = 0
            self._fail(sock, "bind", args, "EADDRINUSE")
        b = self.buckets.get(port)
        if b is None:
            b = self.buckets[port] = Bucket(True)
        b.bind_created = True
        self.bind_ports.add(port)
        b.bound.append(sock)
        sock.lport = port
        sock.bound = True
        if self.trace.on:
            self._call(sock, "bind", (ip_ntoa(a), port), None)

    def _bind_conflict(self, sock: Socket, port: int) -> bool:
        """``inet_csk_bind_conflict`` (PS-8): every owner must allow sharing."""
        b = self.buckets.get(port)
        if b is None:
            return False
        r = sock.reuseaddr
        for other in b.bound:
            if not (r and other.reuseaddr and not other.listening) and (
                not sock.laddr or not other.laddr or sock.laddr == other.laddr
            ):
                return True
        if b.conns and (not r or b.conns_noreuse):
            return True
        return bool(b.tws and (not r or b.tws_noreuse))

    def _bind_port_search(self, sock: Socket) -> int:
        """``inet_csk_find_open_port``: odd ports first (PS-2), a port nobody uses."""
        lo, hi = self.sysctls["net.ipv4.ip_local_port_range"]
        reserved = self.sysctls["net.ipv4.ip_local_reserved_ports"]
        n = hi - lo + 1
        start = self.rng.randrange(n)
        for parity in (1, 0):
            for i in range(n):
                port = lo + (start + i) % n
                if port & 1 != parity or port in reserved:
                    continue
                if port not in self.buckets:
                    return port
        return 0

    def listen(self, sock: Socket, backlog: int = 128) -> None:
        if not sock.bound:
            self.bind(sock, 0, 0)
        somax = self.sysctls["net.core.somaxconn"]
        sock.backlog = min(backlog, somax)
        sock.listening = True
        self.listeners[(sock.laddr, sock.lport)] = sock
        if self.trace.on:
            self._call(sock, "listen", (backlog,), None)

    def connect(self, sock: Socket, addr: str | int, port: int) -> None:
        """connect(): pick the source port (PS-1..PS-6) and send the SYN."""
        daddr = addr if isinstance(addr, int) else ip_aton(addr)
        now = self.net.sched.now
        saddr = sock.laddr or self.addr
        tw: TimeWait | None = None
        if sock.bound and sock.lport:
            # PS-1: an explicitly bound port only needs a unique 4-tuple.
            lport = sock.lport
            key = (saddr, lport, daddr, port)
            if key in self.ehash:
                self._fail(sock, "connect", (ip_ntoa(daddr), port), "EADDRNOTAVAIL")
            tw = self.twhash.get(key)
            if tw is not None and not tw.reusable(now, 0, 0, False, bound=True):
                self._fail(sock, "connect", (ip_ntoa(daddr), port), "EADDRNOTAVAIL")
            auto = False
        else:
            lport, tw = self._connect_port_search(saddr, daddr, port, now)
            if not lport:
                self._fail(sock, "connect", (ip_ntoa(daddr), port), "EADDRNOTAVAIL")
            key = (saddr, lport, daddr, port)
            auto = True
        conn = Connection(self, saddr, lport, daddr, port)
        if self.trace.on:
            conn.hist = []
        conn.sock = sock
        conn.linger0 = sock.linger0
        conn.port_auto = auto
        sock.conn = conn
        sock.laddr, sock.lport = saddr, lport
        ts_recent = ts_stamp = 0
        if tw is not None:
            # PS-6: take over the TIME_WAIT: ISN from it, ts_recent inherited.
            isn = tw.reuse_isn()
            ts_recent, ts_stamp = tw.ts_recent, tw.ts_recent_stamp
            self._kill_tw(tw, TW_REUSE)
            self.bump("TcpExtTWRecycled")
            _, ts_off = self._isn(saddr, daddr, lport, port, now)
        else:
            isn, ts_off = self._isn(saddr, daddr, lport, port, now)
        conn.reuse = sock.reuseaddr
        if not auto:
            b = self.buckets.get(lport)
            if b is not None and sock in b.bound:
                b.bound.remove(sock)  # the connection owns the port from now on
        self._port_acquire(lport, conn, reuse=sock.reuseaddr, bind_created=not auto)
        conn.port_held = True
        self.ehash[key] = conn
        if auto:
            dk = (saddr, daddr, port)
            use = self.dest_use.get(dk)
            if use is None:
                use = self.dest_use[dk] = DestPorts()
            use.add(lport)
        if self.trace.on:
            self._call(sock, "connect", (ip_ntoa(daddr), port), None)
        conn.open_active(now, isn, ts_off, ts_recent, ts_stamp)
        self._after(conn)

    def _isn(self, saddr: int, daddr: int, sport: int, dport: int, now: int) -> tuple[int, int]:
        """ISN and timestamp offset under this host's profile (ISN-1, TS-3)."""
        isn, off = self.secure.seq_and_ts_off(saddr, daddr, sport, dport, now)
        cfg = self.cfg
        if cfg.timestamps != 1 or cfg.ts_offsets == "none":
            off = 0
        elif cfg.ts_offsets == "host":
            off = self.secure.ts_off_per_host(saddr, daddr)
        elif cfg.ts_offsets == "random":
            off = self.rng.getrandbits(32)
        if self.isn_hook is not None:
            isn = self.isn_hook((saddr, sport, daddr, dport), isn)
        return isn, off

    def _connect_port_search(self, saddr: int, daddr: int, dport: int, now: int) -> tuple[int, TimeWait | None]:
        """``__inet_hash_connect`` (PS-2..PS-5): parity, hashed start, 4-tuple uniqueness.

        Returns ``(port, TIME_WAIT record to take over or None)``; port 0 means
        EADDRNOTAVAIL.
        """
        lo, hi = self.sysctls["net.ipv4.ip_local_port_range"]
        reserved = self.sysctls["net.ipv4.ip_local_reserved_ports"]
        size = hi - lo + 1
        n = size & ~1 if size > 1 else size  # `remaining`: an even count (PS-2)
        reuse = self.sysctls["net.ipv4.tcp_tw_reuse"]
        loopback = is_loopback(saddr) or is_loopback(daddr)
        may_reuse = tw_reuse_allowed(reuse, self.cfg.timestamps != 0, loopback, False)  # PS-5
        dk = (saddr, daddr, dport)
        buckets = self.buckets
        h = self.secure.port_offset(saddr, daddr, dport, now)
        idx = h & 0xFFFF
        offset = (self.perturb.get(idx, 0) + (h >> 32)) % n
        offset &= ~1
        if not may_reuse and n > 1:
            return self._fast_port_search(dk, lo, size, n, offset, idx, reserved)
        delay = self.sysctls["net.ipv4.tcp_tw_reuse_delay"] * 1000
        ehash, twhash = self.ehash, self.twhash
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
        bits = self.rng.getrandbits
        r = bits(4)
        while r >= 8:  # rng.randrange(8), the same draws, without its Python-level overhead
            r = bits(4)
        step = r * 2
        self.perturb[idx] = self.perturb.get(idx, 0) + (i if i > step else step) + 2

    def _fast_port_search(self, dk: tuple[int, int, int], lo: int, size: int, n: int, offset: int,
                          idx: int, reserved: frozenset[int]) -> tuple[int, None]:
        """The walk of :meth:`_connect_port_search` when no TIME_WAIT may be taken over.

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

    def _port_acquire(self, port: int, conn: Connection, reuse: bool, bind_created: bool) -> None:
        b = self.buckets.get(port)
        if b is None:
            b = self.buckets[port] = Bucket(bind_created)
        b.conns += 1
        if not reuse:
            b.conns_noreuse += 1

    def _port_release(self, port: int, reuse: bool, tw: bool) -> None:
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
            self._drop_bucket(port)

    def _drop_bucket(self, port: int) -> None:
        del self.buckets[port]
        self.bind_ports.discard(port)

    def send(self, sock: Socket, data: bytes) -> int:
        conn = sock.conn
        if conn is None or conn.state == CLOSED or conn.fin_queued:
            # tcp_sendmsg_locked: SEND_SHUTDOWN (shutdown(SHUT_WR) or the FIN queued) -> -EPIPE
            self._fail(sock, "send", (len(data),), "EPIPE" if conn is not None else "ENOTCONN")
        n = conn.send(data, self.net.sched.now)  # type: ignore[union-attr]
        if self.trace.on:
            self._call(sock, "send", (len(data),), None)
        if not conn.busy:  # type: ignore[union-attr]  # else the _after() running for it delivers
            self._after(conn)  # type: ignore[arg-type]
        return n

    def recv(self, sock: Socket) -> bytes:
        """recv(): every byte received so far; a window update goes out if one is owed (PR-6)."""
        conn = sock.conn
        if conn is None:
            return b""
        data = conn.recv()
        if conn.ack_pending and not conn.busy:
            self._after(conn)
        return data

    def shutdown(self, sock: Socket, how: str = "SHUT_WR") -> None:
        """``inet_shutdown``: SHUT_RD only marks the socket (RCV_SHUTDOWN: reads end at once,
        nothing is sent); SHUT_WR queues the FIN (``tcp_shutdown``)."""
        if how not in ("SHUT_RD", "SHUT_WR", "SHUT_RDWR"):
            raise ValueError(f"shutdown how={how!r}: SHUT_RD, SHUT_WR or SHUT_RDWR")
        conn = sock.conn
        if self.trace.on:
            self._call(sock, "shutdown", (how,), None)
        if how != "SHUT_WR":
            sock.rd_shut = True
        if conn is not None and how != "SHUT_RD":
            conn.shutdown_write(self.net.sched.now)
            self._after(conn)

    def close(self, sock: Socket) -> None:
        if sock.closed:
            return
        sock.closed = True
        if self.trace.on:
            self._call(sock, "close", (), None)
        if sock.listening:
            # inet_csk_listen_stop (LS-1): every child nobody accepted is reset and freed.
            # Its requests (SYN_RECEIVED) are found lazily, as Linux finds them (LS-2, LS-3).
            self.listeners.pop((sock.laddr, sock.lport), None)
            sock.listening = False
            queue, sock.accept_queue = sock.accept_queue, []
            for child in queue:
                self._child_forget(child)
        if sock.bound and sock.conn is None:
            b = self.buckets.get(sock.lport)
            if b is not None and sock in b.bound:
                b.bound.remove(sock)
                if b.empty():
                    self._drop_bucket(sock.lport)
        conn = sock.conn
        if conn is not None:
            conn.sock = None
            if conn.state != CLOSED and not conn.orphan:
                self.orphans += 1  # tcp_orphan_count_inc(); given back when the connection goes
            conn.close(self.net.sched.now)
            if conn.state != CLOSED and self.orphans > self.sysctls["net.ipv4.tcp_max_orphans"]:
                # CL-4 (__tcp_close -> tcp_check_oom): too many orphans: reset and destroy.
                self.bump("TcpExtTCPAbortOnMemory")
                conn.abort_now(self.net.sched.now)
            if not conn.busy:
                self._after(conn)

    def _child_forget(self, child: Socket) -> None:
        """``inet_child_forget`` (LS-1): ``tcp_disconnect`` (RST+ACK from ESTABLISHED or
        CLOSE_WAIT), orphan and destroy. Linux counts TcpEstabResets (``tcp_set_state``)
        and no TCPAbortOn* counter [obs]."""
        child.closed = True
        conn = child.conn
        if conn is None:
            return
        conn.sock = None
        if conn.state != CLOSED:
            if conn.state in (ESTABLISHED, CLOSE_WAIT):
                self.bump("TcpEstabResets")
            conn.disconnect(self.net.sched.now)
        if not conn.busy:
            self._after(conn)

    def _req_drop(self, conn: Connection) -> None:
        """A request whose listener closed is forgotten (LS-2, LS-3): no RST, no SYN-ACK."""
        conn.drop_request()
        self._after(conn)

    # ------------------------------------------------------------------ after every core call

    def _after(self, conn: Connection) -> None:
        """Deliver what the core left: app events, the owed ACK, segments, state, timers.

        Application callbacks run here and may call into the same connection again
        (answer in on_data, close in on_eof); those nested calls leave their work to
        this outer call (``conn.busy``), which loops until no event is left.
        """
        if conn.busy:
            return
        ev = conn.ev
        if ev:
            conn.busy = True
            while ev:
                conn.ev = 0
                sock = conn.sock
                if ev & EV_FW2_TIMER:
                    conn.busy = False
                    self._fw2_expired(conn)
                    return
                if sock is None and ev & EV_CONNECTED and conn.parent is not None and conn.state != CLOSED:
                    sock = self._accepted(conn)  # data that came with the handshake's ACK follows
                    ev &= ~EV_CONNECTED
                if sock is not None and not sock.closed:
                    if ev & EV_CONNECTED and sock.on_connected is not None:
                        sock.on_connected(sock)
                    if ev & EV_DATA and sock.on_data is not None:
                        sock.on_data(sock)
                    if ev & EV_EOF and sock.on_eof is not None:
                        sock.on_eof(sock)
                    if ev & _EV_RARE:
                        if ev & EV_ERROR and sock.on_error is not None:
                            sock.on_error(sock, conn.err or "EIO")
                        if ev & EV_CLOSED and sock.on_closed is not None:
                            sock.on_closed(sock)
                ev = conn.ev
            conn.busy = False
        if conn.ack_pending:
            conn.flush(self.net.sched.now)
        out = conn.outbox
        if out:
            transmit = self.transmit
            for seg in out:
                transmit(seg)
            out.clear()
        st = conn.state
        if st != conn.seen_state:
            old = conn.seen_state
            conn.seen_state = st
            self.tel.state(old, st, conn)
            tr = self.trace
            if tr.on:
                now = self.net.sched.now
                hist = conn.hist or (st,)
                for new in hist:
                    tr.records.append((now, STATE, self.name, conn.key, NAMES[old], NAMES[new]))
                    old = new
                if conn.hist:
                    conn.hist.clear()
            if st == TIME_WAIT:
                self._time_wait(conn, TIME_WAIT, self.cfg.tw_len)
                return
            if st == CLOSED:
                self._conn_gone(conn)
                return
        if st == FIN_WAIT_2 and conn.orphan and not conn.fw2_at:
            # TW-6: an orphan in FIN_WAIT2, reached now or closed while there (__tcp_close).
            self._orphan_fin_wait2(conn)
            if conn.state != FIN_WAIT_2 or self.ehash.get(conn.key) is not conn:
                return
        pa = conn.rto_at  # conn.poll_at(), inlined
        b = conn.fw2_at
        if b and (not pa or b < pa):
            pa = b
        if pa and (not conn.timer_at or pa < conn.timer_at):
            # One wake-up per connection at its earliest deadline (sk_reset_timer): an earlier
            # deadline moves it; a later one waits for it to fire and re-arm from here.
            sched = self.net.sched
            if conn.timer_at:
                sched.cancel(conn.timer_at, self._conn_timer_cb, conn)
            conn.timer_at = pa
            sched.at(pa, self._conn_timer_cb, conn)
        tr = self.trace
        if tr.on and pa != conn.traced_at:
            # The earliest deadline moved: armed, re-armed, or cancelled (None).
            conn.traced_at = pa
            tr.records.append((self.net.sched.now, TIMER, self.name, conn.key,
                               conn.timer_name() if pa else "rto", pa or None))

    def _accepted(self, conn: Connection) -> Socket | None:
        """A passive connection became ESTABLISHED: queue it for accept()."""
        lsock = conn.parent
        # The child takes its share of the port only now (__inet_inherit_port, LS-4).
        self._port_acquire(conn.lport, conn, reuse=conn.reuse, bind_created=True)
        conn.port_held = True
        if lsock is None or not lsock.listening:
            # The listener closed while this handshake completed: LS-1 for this child too
            # (the loop in _after then delivers the close).
            conn.disconnect(self.net.sched.now)
            return None
        child = self.socket()
        child.conn = conn
        child.laddr, child.lport = conn.laddr, conn.lport
        child.reuseaddr = lsock.reuseaddr
        conn.sock = child
        lsock.accept_queue.append(child)
        if lsock.on_accept is not None:
            lsock.on_accept(lsock)
        return child

    def _conn_timer(self, conn: Connection) -> None:
        now = self.net.sched.now
        if conn.timer_at != now:
            return  # superseded by an earlier wake-up
        conn.timer_at = 0
        if conn.state == CLOSED or self.ehash.get(conn.key) is not conn:
            return
        pa = conn.poll_at()
        if pa and pa <= now:
            tr = self.trace
            if tr.on:
                tr.records.append((now, FIRE, self.name, conn.key, conn.timer_name()))
            if conn.state == SYN_RECEIVED and conn.parent is not None and not conn.parent.listening:
                conn.drop_request()  # LS-2 (reqsk_timer_handler): no SYN-ACK for a closed listener
            else:
                conn.on_timer(now)
        self._after(conn)

    def _cancel_timer(self, conn: Connection) -> None:
        """The connection is leaving: withdraw its wake-up (inet_csk_clear_xmit_timers)."""
        if conn.timer_at:
            self.net.sched.cancel(conn.timer_at, self._conn_timer_cb, conn)
            conn.timer_at = 0

    def _conn_gone(self, conn: Connection) -> None:
        """The connection reached CLOSED: free its 4-tuple and port."""
        self._cancel_timer(conn)
        key = conn.key
        if self.ehash.get(key) is conn:
            del self.ehash[key]
            if conn.orphan:
                self.orphans -= 1
            if conn.port_held:
                self._port_release(conn.lport, conn.reuse, tw=False)
            if conn.port_auto:
                self._dest_release(key)

    def _dest_release(self, key: tuple[int, int, int, int]) -> None:
        dk = (key[0], key[2], key[3])
        use = self.dest_use.get(dk)
        if use is not None and use.remove(key[1]):
            del self.dest_use[dk]

    # ------------------------------------------------------------------ TIME_WAIT

    def _time_wait(self, conn: Connection, substate: int, timeout: int) -> None:
        """``tcp_time_wait``: replace the socket by a TW record, or skip TIME_WAIT (TW-8)."""
        now = self.net.sched.now
        key = conn.key
        reuse = conn.reuse
        tr = self.trace
        if substate == TIME_WAIT and not self.timewait_enabled:
            # The lesson knob: a stack without TIME_WAIT goes straight to CLOSED.
            if tr.on:
                tr.records.append((now, STATE, self.name, key, "TIME_WAIT", "CLOSED"))
            self.tel.tw_skipped(TIME_WAIT, False)
            conn.retire(TW_OFF)
            conn.seen_state = CLOSED
            self._conn_gone(conn)
            return
        if len(self.twhash) >= self.sysctls["net.ipv4.tcp_max_tw_buckets"]:
            # TW-8: no record; the connection is simply destroyed.
            self.bump("TcpExtTCPTimeWaitOverflow")
            if tr.on:
                tr.records.append((now, STATE, self.name, key, _TW_NAMES[substate], "CLOSED"))
            self.tel.tw_skipped(substate, True)
            conn.retire(TW_OVERFLOW)
            conn.seen_state = CLOSED
            self._conn_gone(conn)
            return
        short = 0
        if self.cfg.tw_recycle and conn.ts_ok and self._remember_stamp(conn.raddr, conn.ts_recent,
                                                                        conn.ts_recent_stamp, now):
            # RC-1/RC-2 (4.9 tcp_time_wait, both substates): a proven peer's record lasts
            # 3.5 x RTO in TIME_WAIT; a FIN_WAIT2 record keeps that for when its FIN comes.
            short = (conn.rto << 2) - (conn.rto >> 1)
            timeout = short if substate == TIME_WAIT else max(timeout, short)
        self._cancel_timer(conn)
        tw = TimeWait.from_connection(conn, now, substate, timeout, reuse)
        tw.tw_timeout = short
        tw.bound = not conn.port_auto
        del self.ehash[key]
        if conn.orphan:
            self.orphans -= 1
        self.twhash[key] = tw
        b = self.buckets.get(conn.lport)
        if b is not None:
            b.conns -= 1
            b.tws += 1
            if not reuse:
                b.conns_noreuse -= 1
                b.tws_noreuse += 1
        conn.retire(TW_HANDOFF)  # the record carries the state on (TW-4)
        conn.seen_state = CLOSED
        self.tel.tw_made(substate)
        self.bump("TcpExtTW" if timeout > 4 * SEC else "TcpExtTWKilled")
        self._tw_schedule(tw)
        if tr.on:
            tr.records.append((now, TIMER, self.name, key, "timewait", tw.deadline))

    def _tw_schedule(self, tw: TimeWait) -> None:
        """Wake up at ``tw.deadline``: on the TIME_WAIT lane when it is not earlier than the
        lane's last (all 60 s records are), else as an ordinary event (short records: TW-6, RC-2)."""
        lane = self._tw_lane
        if lane is None:
            lane = self._tw_lane = Lane(self.net.sched, self._tw_timer)
        if not lane.push(tw, tw.deadline):
            self.net.sched.at(tw.deadline, self._tw_timer_cb, tw)

    def _orphan_fin_wait2(self, conn: Connection) -> None:
        """TW-6: an orphan in FIN_WAIT2 becomes a FIN_WAIT2-substate record."""
        cfg = self.cfg
        rto = conn.rto
        tmo = max(cfg.fin_timeout, (rto << 2) - (rto >> 1))
        if tmo <= 60 * SEC:
            self._time_wait(conn, FIN_WAIT_2, tmo)
        else:
            conn.fw2_at = self.net.sched.now + tmo - 60 * SEC

    def _fw2_expired(self, conn: Connection) -> None:
        """TW-6, tmo > 60 s: after ``tmo - 60`` on the keepalive timer, a record for ``tmo - 60``."""
        tmo = max(self.cfg.fin_timeout, (conn.rto << 2) - (conn.rto >> 1))
        self._time_wait(conn, FIN_WAIT_2, tmo - 60 * SEC)

    def _tw_timer(self, tw: TimeWait) -> None:
        now = self.net.sched.now
        if self.twhash.get(tw.key) is not tw:
            return
        if tw.deadline > now:
            self._tw_schedule(tw)  # TW-5: re-armed meanwhile
            return
        tr = self.trace
        if tr.on:
            tr.records.append((now, FIRE, self.name, tw.key, "timewait"))
        self._kill_tw(tw, _TW_EXPIRY[tw.substate])

    def _kill_tw(self, tw: TimeWait, event: str) -> None:
        """``inet_twsk_kill``: unhash from the 4-tuple table and the port's bucket; ``event``
        is the table's (the record leaves through it)."""
        old = tw.substate
        tw.go(event)
        del self.twhash[tw.key]
        self._port_release(tw.key[1], tw.reuse, tw=True)
        if not tw.bound:
            self._dest_release(tw.key)
        tr = self.trace
        if tr.on:
            tr.records.append((self.net.sched.now, STATE, self.name, tw.key, _TW_NAMES[old], "CLOSED"))
        self.tel.tw_gone(old, event)

    def _tw_input(self, tw: TimeWait, seg: Segment) -> None:
        now = self.net.sched.now
        old_deadline = tw.deadline
        old_sub = tw.substate
        outcome, out = tw.process(seg, now, self.cfg, self.bump)
        tr = self.trace
        if tw.substate != old_sub:
            if tr.on:
                tr.records.append((now, STATE, self.name, tw.key, _TW_NAMES[old_sub], _TW_NAMES[tw.substate]))
            self.tel.tw_substate(old_sub, tw.substate)
            if tw.tw_timeout and tw.substate == TIME_WAIT and tw.ts_recent_stamp and self._remember_stamp(
                tw.key[2], tw.ts_recent, tw.ts_recent_stamp, now
            ):
                tw.deadline = now + tw.tw_timeout  # RC-2 via tcp_tw_remember_stamp (4.9)
            if not self.timewait_enabled:
                # The lesson knob also for an orphan whose FIN_WAIT2 record just got the FIN (TW-F6):
                # ACK it and forget the 4-tuple at once.
                if out is not None:
                    self.transmit(out)
                self._kill_tw(tw, TW_OFF)
                return
        if outcome == TW_SYN:
            lsock = self.listeners.get((seg.dst, seg.dport)) or self.listeners.get((0, seg.dport))
            if lsock is not None:
                # RO-1: the record dies and the listener takes the SYN with the fixed ISN.
                isn = tw.syn_isn
                self._kill_tw(tw, RCV_SYN)
                self._listen_input(seg, isn)
                return
            outcome, out = TW_ACK, tw.ack(now, self.cfg)
        if tw.deadline != old_deadline:
            if tw.deadline < old_deadline:
                # Moved earlier (FIN_WAIT2 substate -> TIME_WAIT shorter than fin_timeout): a new
                # wake-up; later moves are caught when the old one fires (TW-5).
                self.net.sched.at(tw.deadline, self._tw_timer_cb, tw)
            if tr.on:
                tr.records.append((now, TIMER, self.name, tw.key, "timewait", tw.deadline))
        if outcome == TW_SUCCESS:
            if tr.on:
                tr.records.append((now, DROP, self.name, seg,
                                   "paws" if self._paws_hit(tw, seg) else "discarded"))
            return
        if out is not None:
            self.transmit(out)
        if outcome == TW_KILL:
            self._kill_tw(tw, RCV_RST)  # TW-A assassination, TW-F2
        elif outcome == TW_RST:
            self._kill_tw(tw, RCV_SYN_OR_DATA)  # TW-F3, TW-F5

    @staticmethod
    def _paws_hit(tw: TimeWait, seg: Segment) -> bool:
        return seg.ts is not None and tw.ts_recent_stamp != 0 and 0 < ((tw.ts_recent - seg.ts[0]) & 0xFFFFFFFF) < 0x80000000

    def _remember_stamp(self, raddr: int, ts_recent: int, stamp: int, now: int) -> bool:
        """RC-1 (``tcp_remember_stamp``): cache the peer's newest TSval for legacy recycle.

        The entry is replaced when it is not newer than ours, or when it is older than
        TCP_PAWS_MSL and its stamp not newer than ours.
        """
        cached = self.peer_ts.get(raddr)
        if cached is None or ((cached[0] - ts_recent) & 0xFFFFFFFF) >= 0x80000000 or cached[0] == ts_recent or (
            now - cached[1] >= 60 * SEC and cached[1] <= stamp
        ):
            self.peer_ts[raddr] = (ts_recent, stamp)
        return True

    # ------------------------------------------------------------------ the wire

    def transmit(self, seg: Segment) -> None:
        """Hand a segment to the network (stamped with its birth time, and a packet id when traced)."""
        net = self.net
        sched = net.sched
        now = sched.now
        seg.born = now
        self.out_segs += 1
        if seg.flags & RST:
            c = self.counters
            c["TcpOutRsts"] = c.get("TcpOutRsts", 0) + 1
        if net.trace.on:
            seg.pid = pid = net.pid + 1  # the packet's identity, for views: only a trace reads it
            net.pid = pid
            net.trace.records.append((now, TX, self.name, seg))
        hop = self.hops.get(seg.dst)
        if hop is not None and not net.faults:
            link, nxt = hop
            if link.plain:
                # Network.transmit's plain path with Scheduler.at inlined: the commonest thing
                # the simulator does.
                t = now + link.delay
                b = sched._at.get(t)
                if b is None:
                    sched._at[t] = [(nxt.rx, seg)]
                    heappush(sched._times, t)
                else:
                    b.append((nxt.rx, seg))
                return
        net.transmit(self, seg)

    def receive(self, seg: Segment) -> None:
        """``tcp_v4_rcv``: demultiplex by 4-tuple, then TIME_WAIT, then listener."""
        net = self.net
        now = net.sched.now
        if now - seg.born > net.max_age:
            net.too_old(self, seg)
            return
        tr = self.trace
        if seg.dst not in self.addr_set:
            if tr.on:
                tr.records.append((now, DROP, self.name, seg, "not-for-us"))
            return
        if tr.on:
            tr.records.append((now, RX, self.name, seg))
        self.in_segs += 1
        key = (seg.dst, seg.dport, seg.src, seg.sport)
        conn = self.ehash.get(key)
        if conn is not None:
            if conn.state != SYN_RECEIVED or conn.parent is None:
                conn.process(seg, now)
                self._after(conn)
                return
            lsock = conn.parent
            if lsock.listening:
                if seg.flags & ACK and len(lsock.accept_queue) >= max(lsock.backlog, 1):
                    # Accept queue full: the ACK is dropped; the SYN-ACK will be resent.
                    self.bump("TcpExtListenOverflows")
                    if tr.on:
                        tr.records.append((now, DROP, self.name, seg, "backlog"))
                    return
                conn.process(seg, now)
                self._after(conn)
                return
            # LS-3 (tcp_v4_rcv, TCP_NEW_SYN_RECV): the listener is gone, so the request is
            # dropped and the segment looked up again (a new listener, or an RST).
            self._req_drop(conn)
        tw = self.twhash.get(key)
        if tw is not None:
            self._tw_input(tw, seg)
            return
        self._listen_input(seg, 0)

    def icmp_error(self, seg: Segment, what: str) -> None:
        """IC-1 (``icmp_unreach`` -> ``tcp_v4_err``): an ICMP error about ``seg``, which this host sent.

        Only time-exceeded is generated (by routers); its errno is EHOSTUNREACH.
        """
        conn = self.ehash.get((seg.src, seg.sport, seg.dst, seg.dport))
        if conn is not None and conn.icmp_error(seg.seq, "EHOSTUNREACH"):
            self._after(conn)

    def _listen_input(self, seg: Segment, tw_isn: int) -> None:
        """A segment for no connection: a listener's SYN, or an RST (TW-R3)."""
        now = self.net.sched.now
        tr = self.trace
        lsock = self.listeners.get((seg.dst, seg.dport)) or self.listeners.get((0, seg.dport))
        flags = seg.flags
        if lsock is None or flags & (SYN | ACK | RST) != SYN:
            if lsock is None and tr.on:
                tr.records.append((now, DROP, self.name, seg, "no-socket"))
            if flags & RST:
                return
            rst = reset_for(seg, self.cfg.ttl)
            if rst is not None:
                self.transmit(rst)
            return
        if self.cfg.tw_recycle and not tw_isn and self._recycle_reject(seg, now):
            self.bump("TcpExtPAWSPassive")
            if tr.on:
                tr.records.append((now, DROP, self.name, seg, "recycle"))
            return
        if len(lsock.accept_queue) >= max(lsock.backlog, 1):
            self.bump("TcpExtListenDrops")
            if tr.on:
                tr.records.append((now, DROP, self.name, seg, "backlog"))
            return
        key = (seg.dst, seg.dport, seg.src, seg.sport)
        conn = Connection(self, seg.dst, seg.dport, seg.src, seg.sport)
        if self.trace.on:
            conn.hist = []
        conn.parent = lsock
        isn, ts_off = self._isn(seg.dst, seg.src, seg.dport, seg.sport, now)
        if tw_isn:
            isn = tw_isn
        self.ehash[key] = conn
        conn.reuse = lsock.reuseaddr  # the port share is taken at ESTABLISHED (_accepted, LS-4)
        conn.seen_state = CLOSED
        conn.open_passive(seg, now, isn, ts_off)
        self._after(conn)

    def _recycle_reject(self, seg: Segment, now: int) -> bool:
        """RC-3 (``tcp_peer_is_proven``): drop a SYN whose TSval is older than the peer's cache."""
        cached = self.peer_ts.get(seg.src)
        if cached is None or now - cached[1] >= 60 * SEC:
            return False
        if seg.ts is None:
            return True
        return ((cached[0] - seg.ts[0]) & 0xFFFFFFFF) < 0x80000000 and ((cached[0] - seg.ts[0]) & 0xFFFFFFFF) > 1

    # ------------------------------------------------------------------ conveniences

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Run ``fn()`` after ``delay_s`` seconds of simulated time (applications' timers)."""
        self.net.sched.after(int(delay_s * SEC), _call0, fn)

    def call_at(self, t_us: int, fn: Callable[[], None]) -> None:
        self.net.sched.at(t_us, _call0, fn)


def _call0(fn: Callable[[], None]) -> None:
    fn()


__all__ = ["Host", "Socket", "SocketError", "RX", "TX"]
