"""The BSD socket calls of a simulated host.

A :class:`Socket` is a file descriptor of a simulated application. Its methods
are the system calls, written after the kernel functions they stand for:
``inet_bind`` / ``__inet_bind`` (bind), ``inet_listen`` (listen),
``tcp_v4_connect`` / ``tcp_v6_connect`` (connect: the port search is :mod:`timewait.sim.ports`),
``tcp_sendmsg_locked`` (send), ``tcp_recvmsg`` (recv), ``inet_shutdown``
(shutdown) and ``tcp_close`` / ``inet_csk_listen_stop`` (close). They work on
the host's tables and leave what the TCP core produced to the host's
``after()``, which delivers it.

Families (V6-1..V6-7 in ``docs/linux-rules.md``): a socket is AF_INET or AF_INET6. Made with
:data:`AF_UNSPEC` (the default), its family is the family of the first address it is bound or
connected with; a wildcard bind (address 0) takes the family of the host's first address. For
an AF_INET6 socket address 0 means ``::``. An AF_INET6 socket without IPV6_V6ONLY bound to
``::`` also accepts IPv4 connections: their wire stays IPv4 and the connection's addresses
are the IPv4 integers; the socket's :attr:`Socket.mapped` is True, and Linux names such
addresses ``::ffff:a.b.c.d`` (:meth:`Socket.name_of`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from timewait.errors import UsageError
from timewait.sim.socket_error import SocketError
from timewait.tcp.connection import Connection
from timewait.tcp.segment import V4_MAX, V6_ANY, ip_aton, ip_ntoa, is_v4_mapped, unmapped, v4_mapped
from timewait.tcp.states import CLOSED, NAMES, TW_REUSE
from timewait.tcp.timewait import TimeWait
from timewait.trace import CALL

if TYPE_CHECKING:
    from timewait.sim.host import Host

# Address families (Linux's values) and the IPv6 socket option (IPPROTO_IPV6 level).
AF_UNSPEC = 0   # the family is decided by the first bind() or connect() address
AF_INET = 2
AF_INET6 = 10
IPV6_V6ONLY = "IPV6_V6ONLY"


class Socket:
    """A file descriptor of a simulated application.

    Calls raise :class:`SocketError` on failure. Completion and arrival are
    reported through the ``on_*`` callbacks the application sets.
    """

    __slots__ = (
        "host", "fd", "family", "v6only", "mapped", "conn", "laddr", "lport", "reuseaddr", "linger0",
        "bind_no_port", "bound",
        "listening", "backlog", "accept_queue", "closed", "rd_shut",
        "on_connected", "on_data", "on_eof", "on_error", "on_accept", "on_closed", "app",
    )

    def __init__(self, host: Host, fd: int, family: int = AF_UNSPEC) -> None:
        self.host = host
        self.fd = fd
        self.family = family  # AF_UNSPEC until the first bind() or connect() decides (V6-1)
        self.v6only = False   # IPV6_V6ONLY, set or implied by a bind to a unicast IPv6 address (V6-3)
        self.mapped = False   # an AF_INET6 socket carrying IPv4 (v4-mapped addresses, V6-5)
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

    def name_of(self, addr: int) -> str:
        """An address of this socket as Linux's ``getsockname``/``ss`` show it: IPv4 addresses of
        an AF_INET6 socket (:attr:`mapped`) as ``::ffff:a.b.c.d``."""
        return ip_ntoa(v4_mapped(addr) if self.family == AF_INET6 and addr <= V4_MAX else addr)

    @property
    def state(self) -> str:
        return NAMES[self.conn.state] if self.conn is not None else ("LISTEN" if self.listening else "CLOSED")

    # ------------------------------------------------------------------ tracing a call

    def _traced(self, call: str, args: tuple, result: str | None) -> None:
        """A CALL record, when the host traces."""
        host = self.host
        tr = host.trace
        if tr.on:
            conn = self.conn  # trace-select: a call on a left-out connection is left out
            if conn.traced if conn is not None else tr.select is None or tr.select.loose(host.name):
                tr.records.append((host.net.sched.now, CALL, host.name, self.fd, call, args, result))

    def _fail(self, call: str, args: tuple, errno: str) -> None:
        self._traced(call, args, errno)
        self.host.tel.failed(call, errno)
        raise SocketError(errno, call)

    # ------------------------------------------------------------------ the calls

    def setsockopt(self, name: str, value: Any) -> None:
        """SO_REUSEADDR, SO_LINGER ``(on, secs)``, IP_BIND_ADDRESS_NO_PORT, TCP_QUICKACK, IPV6_V6ONLY."""
        if name == "SO_REUSEADDR":
            self.reuseaddr = bool(value)
        elif name == "SO_LINGER":
            on, secs = value
            self.linger0 = bool(on) and secs == 0
            if self.conn is not None:
                self.conn.linger0 = self.linger0
        elif name == "IP_BIND_ADDRESS_NO_PORT":
            self.bind_no_port = bool(value)
        elif name == "TCP_QUICKACK":  # DA-8: acts on the connection now, nothing is kept
            if self.conn is not None:
                self.conn.set_quickack(int(value))
        elif name == IPV6_V6ONLY:
            # V6-2 (do_ipv6_setsockopt): IPPROTO_IPV6 options exist only on AF_INET6 sockets
            # (ENOPROTOOPT on AF_INET; an AF_UNSPEC socket becomes AF_INET6), and V6ONLY cannot
            # change once the socket has a port (EINVAL).
            if self.family == AF_INET:
                self._fail("setsockopt", (name, value), "ENOPROTOOPT")
            if self.lport or self.conn is not None:
                self._fail("setsockopt", (name, value), "EINVAL")
            self.family = AF_INET6
            self.v6only = bool(value)
        else:
            raise UsageError(f"unknown socket option {name!r}; known: SO_REUSEADDR, SO_LINGER, "
                             "IP_BIND_ADDRESS_NO_PORT, TCP_QUICKACK, IPV6_V6ONLY")
        self._traced("setsockopt", (name, value), None)
        conn = self.conn
        if conn is not None and conn.ack_pending and not conn.busy:
            self.host.after(conn)  # the ACK TCP_QUICKACK made due

    def bind(self, addr: str | int, port: int) -> None:
        """``__inet_bind`` / ``__inet6_bind``: PS-7 (IP_BIND_ADDRESS_NO_PORT), bind(0) odd-first
        search, PS-8 conflicts; the family rules V6-1, V6-3, V6-4."""
        host = self.host
        ports = host.ports
        a = addr if isinstance(addr, int) else ip_aton(addr)
        fam = self.family
        if fam == AF_UNSPEC:  # V6-1: the address decides; a wildcard, the host's first address
            fam = AF_INET6 if (a > V4_MAX if a else host.addr > V4_MAX) else AF_INET
        if fam == AF_INET6 and not a:
            a = V6_ANY
        args = (ip_ntoa(a), port)
        v6only = self.v6only
        mapped = False
        if fam == AF_INET6:
            if a <= V4_MAX:  # an AF_INET address for an AF_INET6 socket
                self._fail("bind", args, "EAFNOSUPPORT")
            if is_v4_mapped(a):
                if v6only:  # V6-4: "binding to v4-mapped address on a v6-only socket makes no sense"
                    self._fail("bind", args, "EINVAL")
                a, mapped = unmapped(a), True
            elif a != V6_ANY:
                v6only = True  # V6-3: a unicast IPv6 address makes the socket IPv6-only
        elif a > V4_MAX:
            self._fail("bind", args, "EAFNOSUPPORT")
        if a and a != V6_ANY and a not in host.addr_set:
            self._fail("bind", args, "EADDRNOTAVAIL")
        if self.bound or self.conn is not None:
            self._fail("bind", args, "EINVAL")
        saved = (self.family, self.v6only)
        self.family, self.v6only, self.mapped = fam, v6only, mapped
        self.laddr = a
        if port == 0:
            if self.bind_no_port:
                self._traced("bind", args, None)
                return
            port = ports.bind_search()
            if not port:
                self._fail("bind", args, "EADDRINUSE")
        elif ports.bind_conflict(self, port):
            self.laddr = 0
            (self.family, self.v6only), self.mapped = saved, False  # inet6_bind restores ipv6only
            self._fail("bind", args, "EADDRINUSE")
        ports.bind(self, port)
        self.lport = port
        self.bound = True
        self._traced("bind", args, None)

    def listen(self, backlog: int = 128) -> None:
        """``inet_listen``: the accept queue holds min(backlog, somaxconn)."""
        host = self.host
        if not self.bound:
            self.bind(0, 0)
        self.backlog = min(backlog, host.sysctls["net.core.somaxconn"])
        self.listening = True
        host.listeners[(self.laddr, self.lport)] = self
        self._traced("listen", (backlog,), None)

    def connect(self, addr: str | int, port: int) -> None:
        """``tcp_v4_connect`` / ``tcp_v6_connect``: pick the source port (PS-1..PS-6) and send
        the SYN; the family rules V6-1, V6-6."""
        host = self.host
        daddr = addr if isinstance(addr, int) else ip_aton(addr)
        now = host.net.sched.now
        if daddr <= V4_MAX and self.family != AF_INET6:  # IPv4 (V6-1): the family is AF_INET
            self.family = AF_INET
            saddr = self.laddr or host.addr
            if saddr > V4_MAX:  # the host's first address is IPv6: its first IPv4 one, if any
                saddr = self._v6_connect_addrs(daddr, port)
        else:
            saddr = self._v6_connect_addrs(daddr, port)
            daddr = unmapped(daddr)
        tw: TimeWait | None = None
        if self.bound and self.lport:
            # PS-1: an explicitly bound port only needs a unique 4-tuple.
            lport = self.lport
            key = (saddr, lport, daddr, port)
            if key in host.ehash:
                self._fail("connect", (ip_ntoa(daddr), port), "EADDRNOTAVAIL")
            tw = host.twhash.get(key)
            if tw is not None and not tw.reusable(now, 0, 0, False, bound=True):
                self._fail("connect", (ip_ntoa(daddr), port), "EADDRNOTAVAIL")
            auto = False
        else:
            lport, tw = host.ports.connect_search(saddr, daddr, port, now)
            if not lport:
                self._fail("connect", (ip_ntoa(daddr), port), "EADDRNOTAVAIL")
            key = (saddr, lport, daddr, port)
            auto = True
        conn = Connection(host, saddr, lport, daddr, port)
        if daddr > V4_MAX:
            conn.cfg = host.cfg_v6()  # V6-7: the IPv6 MSS (and the windows it rounds)
        tr = host.trace
        if tr.on:
            # trace-select: decided here, once; the connection and its segments carry it.
            if tr.select is None or tr.select.choose(host.name, key):
                conn.hist = []
            else:
                conn.traced = False
        conn.sock = self
        conn.linger0 = self.linger0
        conn.port_auto = auto
        self.conn = conn
        self.laddr, self.lport = saddr, lport
        ts_recent = ts_stamp = 0
        if tw is not None:
            # PS-6: take over the TIME_WAIT: ISN from it, ts_recent inherited.
            isn = tw.reuse_isn()
            ts_recent, ts_stamp = tw.ts_recent, tw.ts_recent_stamp
            host.deathrow.kill(tw, TW_REUSE)
            host.bump("TcpExtTWRecycled")
            _, ts_off = host.isn(saddr, daddr, lport, port, now)
        else:
            isn, ts_off = host.isn(saddr, daddr, lport, port, now)
        conn.reuse = self.reuseaddr
        if not auto:
            b = host.ports.buckets.get(lport)
            if b is not None and self in b.bound:
                b.bound.remove(self)  # the connection owns the port from now on
        host.ports.acquire(lport, reuse=self.reuseaddr, bind_created=not auto)
        conn.port_held = True
        host.ehash[key] = conn
        if auto:
            host.ports.dest_add(saddr, daddr, port, lport)
        self._traced("connect", (ip_ntoa(daddr), port), None)
        conn.open_active(now, isn, ts_off, ts_recent, ts_stamp)
        host.after(conn)

    def _v6_connect_addrs(self, daddr: int, port: int) -> int:
        """The family checks of connect() and the source address (``tcp_v6_connect``,
        ``inet_hash_connect``'s route lookup): V6-1 and V6-6. Sets :attr:`family` (and
        :attr:`mapped`); returns the source address (failing the call if there is none)."""
        host = self.host
        fam = self.family
        if fam == AF_UNSPEC:
            fam = self.family = AF_INET6 if daddr > V4_MAX else AF_INET
        args = (ip_ntoa(daddr), port)
        if (fam == AF_INET6) != (daddr > V4_MAX):
            self._fail("connect", args, "EAFNOSUPPORT")
        if fam == AF_INET6 and is_v4_mapped(daddr):
            # V6-6: a v4-mapped destination is an IPv4 connection (tcp_v6_connect calls
            # tcp_v4_connect), refused on an IPv6-only socket with ENETUNREACH.
            if self.v6only:
                self._fail("connect", args, "ENETUNREACH")
            self.mapped = True
            daddr = unmapped(daddr)
        saddr = self.laddr
        if saddr and saddr != V6_ANY:
            if (saddr > V4_MAX) != (daddr > V4_MAX):
                self._fail("connect", args, "ENETUNREACH")
            return saddr
        saddr = host.source_for(daddr)
        if not saddr:  # no address of the destination's family: no route
            self._fail("connect", args, "ENETUNREACH")
        return saddr

    def accept(self) -> Socket | None:
        """The oldest established child, or None (the accept queue is filled by the host)."""
        return self.accept_queue.pop(0) if self.accept_queue else None

    def send(self, data: bytes) -> int:
        """``tcp_sendmsg_locked``: queue ``data``; EPIPE after SHUT_WR or the FIN (SEND_SHUTDOWN)."""
        conn = self.conn
        if conn is None or conn.state == CLOSED or conn.fin_queued:
            self._fail("send", (len(data),), "EPIPE" if conn is not None else "ENOTCONN")
        host = self.host
        if host.trace.on:
            host.trace_conn(conn, "call")  # type: ignore[arg-type]
        n = conn.send(data, host.net.sched.now)  # type: ignore[union-attr]
        self._traced("send", (len(data),), None)
        if not conn.busy:  # type: ignore[union-attr]  # else the after() running for it delivers
            host.after(conn)  # type: ignore[arg-type]
        return n

    def recv(self, n: int = -1) -> bytes:
        """``tcp_recvmsg``: every byte received so far (at most ``n``); a window update (PR-6)
        or an ACK the read makes due (DA-7) goes out."""
        conn = self.conn
        if conn is None:
            return b""
        data = conn.recv(n)
        if conn.ack_pending and not conn.busy:
            self.host.after(conn)
        return data

    def shutdown(self, how: str = "SHUT_WR") -> None:
        """``inet_shutdown``: SHUT_RD only marks the socket (RCV_SHUTDOWN: reads end at once,
        nothing is sent); SHUT_WR queues the FIN (``tcp_shutdown``); SHUT_RDWR both (SH-1, SH-2)."""
        if how not in ("SHUT_RD", "SHUT_WR", "SHUT_RDWR"):
            raise ValueError(f"shutdown how={how!r}: SHUT_RD, SHUT_WR or SHUT_RDWR")
        conn = self.conn
        self._traced("shutdown", (how,), None)
        if conn is not None and self.host.trace.on:
            self.host.trace_conn(conn, "call")
        if how != "SHUT_WR":
            self.rd_shut = True
        if conn is not None and how != "SHUT_RD":
            conn.shutdown_write(self.host.net.sched.now)
            self.host.after(conn)

    def close(self) -> None:
        """``tcp_close``: FIN (or RST: CL-2), orphan accounting and CL-4; a listener resets
        its unaccepted children (``inet_csk_listen_stop``, LS-1)."""
        if self.closed:
            return
        host = self.host
        self.closed = True
        self._traced("close", (), None)
        if self.conn is not None and host.trace.on:
            host.trace_conn(self.conn, "call")
        if self.listening:
            # inet_csk_listen_stop (LS-1): every child nobody accepted is reset and freed.
            # Its requests (SYN_RECEIVED) are found lazily, as Linux finds them (LS-2, LS-3).
            host.listeners.pop((self.laddr, self.lport), None)
            self.listening = False
            queue, self.accept_queue = self.accept_queue, []
            for child in queue:
                child._forget()
        if self.bound and self.conn is None:
            host.ports.unbind(self, self.lport)
        conn = self.conn
        if conn is not None:
            conn.sock = None
            if conn.state != CLOSED and not conn.orphan:
                host.orphans += 1  # tcp_orphan_count_inc(); given back when the connection goes
            conn.close(host.net.sched.now)
            if conn.state != CLOSED and host.orphans > host.sysctls["net.ipv4.tcp_max_orphans"]:
                # CL-4 (__tcp_close -> tcp_check_oom): too many orphans: reset and destroy.
                host.bump("TcpExtTCPAbortOnMemory")
                conn.abort_now(host.net.sched.now)
            if not conn.busy:
                host.after(conn)

    def _forget(self) -> None:
        """``inet_child_forget`` (LS-1) on an unaccepted child: ``tcp_disconnect`` (RST+ACK
        from ESTABLISHED or CLOSE_WAIT), orphan and destroy. Linux counts TcpEstabResets
        (``tcp_set_state``) and no TCPAbortOn* counter [obs]."""
        self.closed = True
        conn = self.conn
        if conn is None:
            return
        host = self.host
        conn.sock = None
        if conn.state != CLOSED:
            conn.disconnect(host.net.sched.now)  # TcpEstabResets: Connection._go (CT-4)
        if not conn.busy:
            host.after(conn)
