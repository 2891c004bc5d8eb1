"""Small programs that run on simulated hosts: nc, a Redis-like PING server, loops, a pool."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from timewait.sim.host import Host, Socket, SocketError
from timewait.tcp.config import SEC


def listen(host: Host, port: int, backlog: int, on_conn: Callable[[Socket], None], reuseaddr: bool = False) -> Socket:
    """A listening socket on ``port`` that hands every accepted connection to ``on_conn``.

    One wake-up of the listener drains the whole accept queue (a server's accept loop).
    """
    lsock = host.socket()
    if reuseaddr:
        lsock.setsockopt("SO_REUSEADDR", 1)
    lsock.bind(0, port)
    lsock.listen(backlog)

    def accept_all(ls: Socket) -> None:
        s = ls.accept()
        while s is not None:
            on_conn(s)
            s = ls.accept()

    lsock.on_accept = accept_all
    return lsock


class NcServer:
    """``nc -l PORT``: accept one connection, print what arrives, exit on end of stream.

    ``close_delay_s`` is how long nc takes to notice EOF and exit (its close()).
    """

    def __init__(self, host: Host, port: int, close_delay_s: float = 0.001, reuseaddr: bool = False) -> None:
        self.host = host
        self.received = bytearray()
        self.close_delay_s = close_delay_s
        self.lsock = host.socket()
        if reuseaddr:
            self.lsock.setsockopt("SO_REUSEADDR", 1)
        self.lsock.bind(0, port)
        self.lsock.listen(1)
        self.lsock.on_accept = self._accept
        self.conn: Socket | None = None

    def _accept(self, lsock: Socket) -> None:
        s = lsock.accept()
        if s is None:
            return
        self.conn = s
        s.on_data = self._data
        s.on_eof = self._eof
        lsock.close()  # nc -l serves one client

    def _data(self, s: Socket) -> None:
        self.received += s.recv()

    def _eof(self, s: Socket) -> None:
        self.received += s.recv()
        self.host.call_later(self.close_delay_s, s.close)


class NcClient:
    """``nc HOST PORT``: connect, send lines at given times, Ctrl+C (close) at ``close_at_s``."""

    def __init__(self, host: Host, daddr: str, dport: int, lines: list[tuple[float, bytes]] | None = None,
                 close_at_s: float | None = None, linger0: bool = False, bind_port: int | None = None) -> None:
        self.host = host
        self.sock = host.socket()
        self.received = bytearray()
        self.error: str | None = None
        if linger0:
            self.sock.setsockopt("SO_LINGER", (1, 0))
        if bind_port is not None:
            self.sock.bind(0, bind_port)
        self.sock.on_data = lambda s: self.received.extend(s.recv())
        self.sock.on_error = self._error
        self.sock.connect(daddr, dport)
        for t, data in lines or []:
            host.call_at(int(t * SEC), functools.partial(self._send, data))
        if close_at_s is not None:
            host.call_at(int(close_at_s * SEC), self.sock.close)

    def _send(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except SocketError as e:
            self.error = e.errno_name

    def _error(self, s: Socket, errno: str) -> None:
        self.error = errno


class PingServer:
    """A Redis-like server: answers ``+PONG\\r\\n`` to each ``PING``; the client closes."""

    def __init__(self, host: Host, port: int = 6379, backlog: int = 511) -> None:
        self.host = host
        self.lsock = listen(host, port, backlog, self._serve, reuseaddr=True)  # as redis-server does
        self.served = 0

    def _serve(self, s: Socket) -> None:
        s.on_data = self._data
        s.on_eof = self._eof

    def _data(self, s: Socket) -> None:
        data = s.recv()
        n = data.upper().count(b"PING")
        if n:
            self.served += n
            s.send(b"+PONG\r\n" * n)

    @staticmethod
    def _eof(s: Socket) -> None:
        s.close()


@dataclass
class LoopStats:
    """What a client loop saw."""

    started: int = 0
    succeeded: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    first_failure_at: float | None = None
    per_second: dict[int, int] = field(default_factory=dict)
    failed_per_second: dict[int, int] = field(default_factory=dict)


class ShortConnectionLoop:
    """``for i in …; do echo ping | nc SERVER PORT; done``: one connection per request.

    Opens a connection every ``interval_s`` (0 = the next one as soon as the
    previous finished), sends ``PING``, waits for the answer, closes first.
    ``pick_dest(i)`` chooses (addr, port) for the i-th connection.
    """

    def __init__(self, host: Host, pick_dest: Callable[[int], tuple[str | int, int]], count: int | None,
                 interval_s: float, until_s: float | None = None, retry_s: float = 0.001,
                 on_done: Callable[[], None] | None = None, linger0: bool = False, sequential: bool = False) -> None:
        self.host = host
        self.pick = pick_dest
        self.count = count
        self.interval = int(interval_s * SEC)
        self.until = int(until_s * SEC) if until_s is not None else None
        self.retry = int(retry_s * SEC)
        self.stats = LoopStats()
        self.on_done = on_done
        self.linger0 = linger0
        self.sequential = sequential or interval_s == 0
        self.i = 0
        self.active = 0
        # Bound once, not per connection: a loop opens hundreds of thousands of sockets.
        self._cbs = (self._connected, self._data, self._error, self._eof)

    def start(self, at_s: float = 0.0) -> None:
        self.host.call_at(int(at_s * SEC), self._next)

    def _done(self) -> bool:
        now = self.host.net.sched.now
        return (self.count is not None and self.i >= self.count) or (self.until is not None and now >= self.until)

    def _next(self) -> None:
        if self._done():
            if self.active == 0 and self.on_done is not None:
                self.on_done()
            return
        host = self.host
        sched = host.net.sched
        st = self.stats
        addr, port = self.pick(self.i)
        s = host.socket()
        if self.linger0:
            s.setsockopt("SO_LINGER", (1, 0))
        s.on_connected, s.on_data, s.on_error, s.on_eof = self._cbs
        try:
            s.connect(addr, port)
        except SocketError as e:
            st.failed[e.errno_name] = st.failed.get(e.errno_name, 0) + 1
            sec = sched.now // SEC
            st.failed_per_second[sec] = st.failed_per_second.get(sec, 0) + 1
            if st.first_failure_at is None:
                st.first_failure_at = sched.now / SEC
            host.net.sched.after(self.retry if self.sequential else self.interval, _tick, self)
            return
        self.i += 1
        st.started += 1
        self.active += 1
        if not self.sequential:
            sched.after(self.interval, _tick, self)

    def _connected(self, s: Socket) -> None:
        s.send(b"PING\r\n")

    def _data(self, s: Socket) -> None:
        if b"PONG" in s.recv():
            st = self.stats
            st.succeeded += 1
            sec = self.host.net.sched.now // SEC
            st.per_second[sec] = st.per_second.get(sec, 0) + 1
            self._finish(s)

    def _eof(self, s: Socket) -> None:
        self._finish(s)

    def _error(self, s: Socket, errno: str) -> None:
        st = self.stats
        st.failed[errno] = st.failed.get(errno, 0) + 1
        if st.first_failure_at is None:
            st.first_failure_at = self.host.net.sched.now / SEC
        self._finish(s)

    def _finish(self, s: Socket) -> None:
        if s.closed:
            return
        s.close()
        self.active -= 1
        if self.sequential:
            self._next()
        elif self._done() and self.active == 0 and self.on_done is not None:
            self.on_done()


def _tick(loop: ShortConnectionLoop) -> None:
    loop._next()


class PoolClient:
    """A connection pool: ``size`` long-lived connections carry ``count`` PINGs, then close."""

    def __init__(self, host: Host, daddr: str, dport: int, size: int, count: int, interval_s: float) -> None:
        self.host = host
        self.socks: list[Socket] = []
        self.ready: list[Socket] = []
        self.count = count
        self.sent = 0
        self.answered = 0
        self.interval = int(interval_s * SEC)
        for _ in range(size):
            s = host.socket()
            s.on_connected = self._connected
            s.on_data = self._data
            s.connect(daddr, dport)
            self.socks.append(s)

    def _connected(self, s: Socket) -> None:
        self.ready.append(s)
        if len(self.ready) == 1:
            self.host.net.sched.after(0, _pool_tick, self)

    def _data(self, s: Socket) -> None:
        self.answered += s.recv().count(b"PONG")
        self.ready.append(s)
        if self.answered >= self.count:
            for x in self.socks:
                x.close()

    def _tick(self) -> None:
        if self.sent >= self.count:
            return
        if self.ready:
            s = self.ready.pop(0)
            s.send(b"PING\r\n")
            self.sent += 1
        self.host.net.sched.after(self.interval, _pool_tick, self)


def _pool_tick(p: PoolClient) -> None:
    p._tick()
