"""The BSD socket calls of a simulated host.

A :class:`Socket` is a file descriptor of a simulated application. Its methods
are the system calls, written after the kernel functions they stand for:
``inet_bind`` / ``__inet_bind`` (bind), ``inet_listen`` (listen),
``tcp_v4_connect`` (connect: the port search is :mod:`timewait.sim.ports`),
``tcp_sendmsg_locked`` (send), ``tcp_recvmsg`` (recv), ``inet_shutdown``
(shutdown) and ``tcp_close`` / ``inet_csk_listen_stop`` (close). They work on
the host's tables and leave what the TCP core produced to the host's
``after()``, which delivers it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from timewait.errors import UsageError
from timewait.sim.socket_error import SocketError
from timewait.tcp.connection import Connection
from timewait.tcp.segment import ip_aton, ip_ntoa
from timewait.tcp.states import CLOSED, NAMES, TW_REUSE
from timewait.tcp.timewait import TimeWait
from timewait.trace import CALL

if TYPE_CHECKING:
    from timewait.sim.host import Host


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
        """SO_REUSEADDR, SO_LINGER ``(on, secs)``, IP_BIND_ADDRESS_NO_PORT, TCP_QUICKACK."""
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
        else:
            raise UsageError(f"unknown socket option {name!r}; known: SO_REUSEADDR, SO_LINGER, "
                             "IP_BIND_ADDRESS_NO_PORT, TCP_QUICKACK")
        self._traced("setsockopt", (name, value), None)
        conn = self.conn
        if conn is not None and conn.ack_pending and not conn.busy:
            self.host.after(conn)  # the ACK TCP_QUICKACK made due

    def bind(self, addr: str | int, port: int) -> None:
        """``__inet_bind``: PS-7 (IP_BIND_ADDRESS_NO_PORT), bind(0) odd-first search, PS-8 conflicts."""
        host = self.host
        ports = host.ports
        a = addr if isinstance(addr, int) else ip_aton(addr)
        args = (ip_ntoa(a), port)
        if a and a not in host.addr_set:
            self._fail("bind", args, "EADDRNOTAVAIL")
        if self.bound or self.conn is not None:
            self._fail("bind", args, "EINVAL")
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
            self._fail("bind", args, "EADDRINUSE")
        ports.bind(self, port)
        self.lport = port
        self.bound = True
        self._traced("bind", (ip_ntoa(a), port), None)

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
        """``tcp_v4_connect``: pick the source port (PS-1..PS-6) and send the SYN."""
        host = self.host
        daddr = addr if isinstance(addr, int) else ip_aton(addr)
        now = host.net.sched.now
        saddr = self.laddr or host.addr
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
