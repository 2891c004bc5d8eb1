"""The simulated stack: one Linux host at 192.168.0.1 and a tap standing in for the remote.

The remote (192.0.2.1) is a :class:`~timewait.sim.network.Node` joined to the
host by a zero-delay link: what the host sends arrives there at the instant it
is sent and is captured; a ``<`` packet leaves it through
:meth:`Network.transmit` like any packet. Socket calls are made on the host's
sockets; blocking ones finish from the socket's callbacks, in simulated time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from timewait.errors import UsageError
from timewait.script.engine import Pending, Req, Result, Stack, fcntl
from timewait.script.parse import Unsupported
from timewait.script.wire import LOCAL_ADDR, REMOTE_ADDR
from timewait.sim.host import Socket
from timewait.sim.network import Node
from timewait.sim.simulation import Simulation
from timewait.sim.socket_error import SocketError
from timewait.tcp.config import SEC
from timewait.tcp.segment import Segment, decode, encode, ip_aton


def _us(t: float) -> int:
    return int(round(t * SEC))


class _Tap(Node):
    """The remote end: records what arrives, as bytes, with the time."""

    kind = "tap"

    def __init__(self, stack: SimStack) -> None:
        super().__init__("remote", [ip_aton(REMOTE_ADDR)])
        self.stack = stack

    def receive(self, seg: Segment) -> None:
        self.stack.out.append((self.net.sched.now / SEC, encode(seg)))


@dataclass(slots=True)
class _Fd:
    """What the script's file descriptor knows beyond the host's socket."""

    sock: Socket
    nonblock: bool = False
    err: str | None = None            # SO_ERROR: set by an error, cleared when reported
    eof: bool = False
    connected: bool = False
    connecting: Pending | None = None
    port_range: tuple[int, int] | None = None   # IP_LOCAL_PORT_RANGE (lo, hi; 0: the host's)
    accepting: list[Pending] = field(default_factory=list)
    reading: list[Pending] = field(default_factory=list)


class SimStack(Stack):
    """A fresh simulated Linux host (profile ``linux``) for one script."""

    name = "sim"

    def __init__(self, profile: str = "linux", seed: int = 1) -> None:
        super().__init__()
        self.sim = Simulation(profile=profile, seed=seed, trace=False)
        self.host = self.sim.add_host("local", LOCAL_ADDR, uptime_s=1000)
        self.tap = _Tap(self)
        self.sim.add_node(self.tap)
        self.sim.link(self.host, self.tap, delay_ms=0)
        self.sched = self.sim.sched
        self.fds: dict[int, _Fd] = {}
        self._pending_children: dict[int, list[_Fd]] = {}   # listener id -> watched, not accepted

    # ------------------------------------------------------------------ time and wire

    def now(self) -> float:
        return self.sched.now / SEC

    def advance_to(self, t: float) -> None:
        self.sched.run(until=max(_us(t), self.sched.now))

    def drain(self) -> None:
        self.sched.run(until=self.sched.now)  # what the current instant still owes

    def wait_packet(self, deadline: float) -> tuple[float, bytes] | None:
        end = _us(deadline)
        self.drain()
        while not self.out:
            nt = self.sched.next_time()
            if nt is None or nt > end:
                self.sched.run(until=max(end, self.sched.now))
                break
            self.sched.run(until=nt)
        return self.out.popleft() if self.out else None

    def inject(self, data: bytes) -> None:
        seg = decode(data)
        seg.born = self.sched.now
        self.sim.net.transmit(self.tap, seg)
        self.drain()

    def set_sysctl(self, name: str, value: str, line: int) -> None:
        try:
            self.host.set_sysctl(name, value)
        except UsageError as e:
            raise Unsupported(line, f"sysctl {name}={value} on the simulator: {e}") from None

    def counters(self) -> dict[str, int]:
        return self.host.all_counters()

    # ------------------------------------------------------------------ system calls

    def _lowest_fd(self) -> int:
        fd = 3
        while fd in self.fds:
            fd += 1
        return fd

    def _new_fd(self, sock: Socket) -> int:
        fd = self._lowest_fd()
        f = self.fds[fd] = _Fd(sock)
        self._watch(f)
        return fd

    def _watch(self, f: _Fd) -> None:
        s = f.sock
        sched = self.sched

        def connected(_: Socket) -> None:
            f.connected = True
            if f.connecting is not None:
                f.connecting.result, f.connecting.t = Result(0), sched.now / SEC
                f.connecting = None

        def error(_: Socket, err: str) -> None:
            if f.connecting is not None:
                # A blocking connect() reports the error itself, and so clears it (sock_error).
                f.connecting.result, f.connecting.t = Result(-1, err), sched.now / SEC
                f.connecting = None
            else:
                f.err = err
            self._wake_readers(f)

        def data(_: Socket) -> None:
            self._wake_readers(f)

        def eof(_: Socket) -> None:
            f.eof = True
            self._wake_readers(f)

        def accept(_: Socket) -> None:
            child = s.accept_queue[-1]
            # Watch the child at once: its data and FIN may come before accept() (still queued).
            self._pending_children.setdefault(id(s), []).append(_Fd(child))
            self._watch(self._pending_children[id(s)][-1])
            while f.accepting and s.accept_queue:
                p = f.accepting.pop(0)
                p.result, p.t = self._take_child(f, p.req.newfd), sched.now / SEC

        s.on_connected, s.on_error, s.on_data, s.on_eof, s.on_accept = connected, error, data, eof, accept

    def _take_child(self, f: _Fd, want: int | None) -> Result:
        s = f.sock
        child = s.accept()
        assert child is not None
        kids = self._pending_children.get(id(s), [])
        cf = next((k for k in kids if k.sock is child), None) or _Fd(child)
        if cf in kids:
            kids.remove(cf)
        fd = self._lowest_fd()
        self.fds[fd] = cf
        return Result(fd)

    def _wake_readers(self, f: _Fd) -> None:
        while f.reading:
            r = self._try_read(f, f.reading[0].req.arg)
            if r is None:
                return
            p = f.reading.pop(0)
            p.result, p.t = r, self.sched.now / SEC

    def _try_read(self, f: _Fd, n: int) -> Result | None:
        conn = f.sock.conn
        q = conn.rcvq if conn is not None else bytearray()
        if q:
            # The engine's recv() takes everything; read(n) takes n and leaves the rest queued,
            # where close() still sees it (CL-1) and the window still counts it.
            k = min(n, len(q))
            del q[:k]
            return Result(k)
        if f.err is not None:
            err, f.err = f.err, None
            return Result(-1, err)
        if f.eof or conn is None:
            return Result(0)
        return None

    def call(self, req: Req) -> Result | Pending:
        try:
            return self._call(req)
        except SocketError as e:
            return Result(-1, e.errno_name)
        finally:
            self.drain()

    def _connect(self, f: _Fd, port: int) -> None:
        """connect(); a socket's IP_LOCAL_PORT_RANGE narrows the host's range for its port choice,
        as ``inet_sk_get_local_port_range`` does (a bound of 0, or an empty result, is ignored)."""
        if f.port_range is None:
            f.sock.connect(REMOTE_ADDR, port)
            return
        key = "net.ipv4.ip_local_port_range"
        saved = self.host.sysctls[key]
        lo, hi = saved
        slo, shi = f.port_range
        nlo, nhi = max(lo, slo) if slo else lo, min(hi, shi) if shi else hi
        if nlo <= nhi:
            self.host.sysctls[key] = (nlo, nhi)
        try:
            f.sock.connect(REMOTE_ADDR, port)
        finally:
            self.host.sysctls[key] = saved

    def _call(self, req: Req) -> Result | Pending:
        name = req.name
        if name == "socket":
            fd = self._new_fd(self.host.socket())
            self.fds[fd].nonblock = bool(req.arg)
            return Result(fd)
        f = self.fds.get(req.fd)
        if f is None:
            return Result(-1, "EBADF")
        s = f.sock
        if name == "bind":
            s.bind(LOCAL_ADDR, req.arg)
            return Result(0)
        if name == "listen":
            s.listen(req.arg)
            return Result(0)
        if name == "accept":
            if not s.listening:
                return Result(-1, "EINVAL")
            if s.accept_queue:
                return self._take_child(f, req.newfd)
            if f.nonblock:
                return Result(-1, "EAGAIN")
            p = Pending(req)
            f.accepting.append(p)
            return p
        if name == "connect":
            if f.connected:
                return Result(-1, "EISCONN")
            if s.conn is not None:
                return Result(-1, "EALREADY")
            if f.nonblock:
                self._connect(f, req.arg)
                return Result(-1, "EINPROGRESS")
            p = f.connecting = Pending(req)
            try:
                self._connect(f, req.arg)
            except SocketError:
                f.connecting = None
                raise
            return p
        if name == "write":
            if f.err is not None:  # sk_stream_error: a pending error first, then EPIPE
                err, f.err = f.err, None
                return Result(-1, err)
            try:
                return Result(s.send(b"\0" * req.arg))
            except SocketError as e:  # EPIPE after shutdown(SHUT_WR), as tcp_sendmsg_locked
                return Result(-1, e.errno_name)
        if name == "read":
            r = self._try_read(f, req.arg)
            if r is not None:
                return r
            if s.rd_shut:  # tcp_recvmsg: queued bytes first, then RCV_SHUTDOWN ends the read with 0
                return Result(0)
            if f.nonblock:
                return Result(-1, "EAGAIN")
            p = Pending(req)
            f.reading.append(p)
            return p
        if name == "shutdown":
            if s.conn is None:
                return Result(-1, "ENOTCONN")
            s.shutdown(req.arg)
            if s.rd_shut:  # blocked reads end with 0
                for p in f.reading:
                    p.result, p.t = Result(0), self.sched.now / SEC
                f.reading.clear()
            return Result(0)
        if name == "close":
            del self.fds[req.fd]
            s.close()
            return Result(0)
        if name == "setsockopt":
            opt, v = req.arg
            if opt == "IP_LOCAL_PORT_RANGE":  # u32: lo in the low 16 bits, hi in the high
                f.port_range = (v & 0xFFFF, v >> 16 & 0xFFFF)
            elif opt != "TCP_NODELAY":  # the engine sends at once anyway
                s.setsockopt(opt, v)
            return Result(0)
        if name == "getsockopt":
            if req.arg[0] == "SO_RCVBUF":  # sk_rcvbuf: tcp_rmem[1] (the engine never grows it)
                return Result(0, value=self.host.sysctls["net.ipv4.tcp_rmem"][1])
            err, f.err = f.err, None
            return Result(0, value=err or 0)
        if name == "fcntl":
            return fcntl(f, req.arg)
        raise AssertionError(name)
