"""The real stack: the running kernel in a fresh network namespace behind a TUN device.

Per script: a namespace from :class:`~timewait.kernel.topology.KernelLab`, a
``tun0`` opened there (IFF_TUN | IFF_NO_PI) with 192.168.0.1/24 and a route to
192.0.2.0/24 through it. This process is the remote: it writes the ``<``
packets (checksums by :func:`timewait.tcp.segment.encode`) and reads what the
kernel sends. Sockets are real, made inside the namespace; the script's
blocking calls are emulated on non-blocking sockets so that the script goes on
while they wait. Sysctls are written inside the namespace only. The namespace
is removed afterwards, whatever ends the run (the lab's close, reached from
``finally``, also on Ctrl-C and SIGTERM).
"""

from __future__ import annotations

import errno as errno_mod
import os
import select
import socket
import struct
import time
from dataclasses import dataclass, field

from timewait.kernel import counters as kcounters
from timewait.kernel.nsenter import inside, sysctl_path, write_sysctl
from timewait.kernel.topology import KernelLab
from timewait.kernel.tun import Tun
from timewait.script.engine import SHUT, Pending, Req, Result, Stack, fcntl
from timewait.script.parse import Unsupported
from timewait.script.wire import LOCAL_ADDR, REMOTE_ADDR, read
from timewait.tcp.segment import ip_aton

POLL_S = 0.001          # how often waiting blocking calls are retried
MAX_SLEEP_S = 0.25     # longest single wait: its timer slack is then at most 0.25 ms
_SYSCTL_OK = ("net.ipv4.", "net.core.somaxconn")   # per-namespace on 6.x; others could touch the host
_GAUGES = {"TcpRtoAlgorithm", "TcpRtoMin", "TcpRtoMax", "TcpMaxConn", "TcpCurrEstab"}


def _errname(e: OSError) -> str:
    return errno_mod.errorcode.get(e.errno or 0, str(e.errno))


# linux/in.h; Python's socket module names neither.
_IP_OPTS = {"IP_BIND_ADDRESS_NO_PORT": 24, "IP_LOCAL_PORT_RANGE": 51}


@dataclass(slots=True)
class _KFd:
    sock: socket.socket
    nonblock: bool = False
    waiting: list[Pending] = field(default_factory=list)


class KernelStack(Stack):
    """The running kernel, one fresh namespace per script."""

    name = "kernel"

    def __init__(self) -> None:
        super().__init__()
        self.fds: dict[int, _KFd] = {}
        self.lab = KernelLab()
        self.lab.__enter__()
        self.tun: Tun | None = None
        try:
            self.ns = self.lab.add_host("pkt")
            # The lab's own TUN device (kernel/tun.py), shared with the emulated path.
            self.tun = Tun(self.ns, f"{LOCAL_ADDR}/24", routes=("192.0.2.0/24",))
        except BaseException:
            self.close()
            raise
        self._local = ip_aton(LOCAL_ADDR)
        self._remote = ip_aton(REMOTE_ADDR)
        self.t0 = time.monotonic()

    def close(self) -> None:
        for f in self.fds.values():
            try:
                f.sock.close()
            except OSError:
                pass
        self.fds.clear()
        if self.tun is not None:
            self.tun.close()
            self.tun = None
        self.lab.close()

    # ------------------------------------------------------------------ time and wire

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _read_tun(self, timeout: float) -> None:
        assert self.tun is not None
        r, _, _ = select.select([self.tun], [], [], max(timeout, 0.0))
        if not r:
            return
        t = self.now()
        while True:
            data = self.tun.read()
            if data is None:
                return
            w = read(data)
            if w is not None and w.seg.src == self._local and w.seg.dst == self._remote:
                self.out.append((t, data))

    def _step(self, until: float) -> None:
        # Never one long select: Linux lets a sleep of T end up to T/1000 late (at most 100 ms,
        # select_estimate_accuracy), so a 40 s wait injected the next line ~40 ms late.
        wait = min(until - self.now(), POLL_S if self.pending else MAX_SLEEP_S)
        self._read_tun(wait)
        self._progress()

    def advance_to(self, t: float) -> None:
        while self.now() < t:
            self._step(t)
        self.drain()

    def drain(self) -> None:
        self._read_tun(0)
        self._progress()

    def wait_packet(self, deadline: float) -> tuple[float, bytes] | None:
        self.drain()
        while not self.out and self.now() < deadline:
            self._step(deadline)
        return self.out.popleft() if self.out else None

    def inject(self, data: bytes) -> None:
        assert self.tun is not None
        self.tun.write(data)

    def set_sysctl(self, name: str, value: str, line: int) -> None:
        if not name.startswith(_SYSCTL_OK):
            raise Unsupported(line, f"sysctl {name}: only net.ipv4.* (per namespace) is set on the kernel")
        with inside(self.ns):
            there = os.path.exists(sysctl_path(name))
        if not there:
            raise Unsupported(line, f"sysctl {name}: not on this kernel ({os.uname().release})")
        try:
            write_sysctl(self.ns, name, value)
        except OSError as e:
            raise Unsupported(line, f"sysctl {name}={value}: the kernel refused it ({e.strerror})") from None

    def counters(self) -> dict[str, int]:
        c = kcounters.read(self.ns)
        return {k: v for k, v in c.items() if k.startswith("Tcp") and k not in _GAUGES}

    # ------------------------------------------------------------------ system calls

    def _lowest_fd(self) -> int:
        fd = 3
        while fd in self.fds:
            fd += 1
        return fd

    def _add(self, s: socket.socket) -> int:
        s.setblocking(False)  # the script's blocking calls are emulated (they must not stop us)
        fd = self._lowest_fd()
        self.fds[fd] = _KFd(s)
        return fd

    def _progress(self) -> None:
        for p in list(self.pending):
            f = self.fds.get(p.req.fd)
            r = self._retry(p.req, f) if f is not None else Result(-1, "EBADF")
            if r is not None:
                p.result, p.t = r, self.now()
                self.pending.remove(p)

    def _retry(self, req: Req, f: _KFd) -> Result | None:
        """A blocking call's next attempt: its result, or None while it would still block."""
        s = f.sock
        try:
            if req.name == "accept":
                c, _ = s.accept()
                return Result(self._add(c))
            if req.name == "read":
                return Result(len(s.recv(req.arg)))
            if req.name == "connect":
                _, w, _ = select.select([], [s], [], 0)
                if not w:
                    return None
                e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                return Result(0) if e == 0 else Result(-1, errno_mod.errorcode.get(e, str(e)))
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as e:
            return Result(-1, _errname(e))
        raise AssertionError(req.name)

    def call(self, req: Req) -> Result | Pending:
        try:
            return self._call(req)
        except OSError as e:
            return Result(-1, _errname(e))
        finally:
            self.drain()

    def _block(self, req: Req, f: _KFd) -> Result | Pending:
        r = self._retry(req, f)
        if r is not None:
            return r
        if f.nonblock:
            return Result(-1, "EAGAIN")
        p = Pending(req)
        self.pending.append(p)
        return p

    def _call(self, req: Req) -> Result | Pending:
        name = req.name
        if name == "socket":
            fd = self._add(self.lab.socket("pkt"))
            self.fds[fd].nonblock = bool(req.arg)
            return Result(fd)
        f = self.fds.get(req.fd)
        if f is None:
            return Result(-1, "EBADF")
        s = f.sock
        if name == "bind":
            s.bind((LOCAL_ADDR, req.arg))
            return Result(0)
        if name == "listen":
            s.listen(req.arg)
            return Result(0)
        if name in ("accept", "read"):
            return self._block(req, f)
        if name == "connect":
            e = s.connect_ex((REMOTE_ADDR, req.arg))
            if e != errno_mod.EINPROGRESS or f.nonblock:
                return Result(0) if e == 0 else Result(-1, errno_mod.errorcode.get(e, str(e)))
            p = Pending(req)
            self.pending.append(p)
            return p
        if name == "write":
            return Result(s.send(b"\0" * req.arg))
        if name == "shutdown":
            s.shutdown(SHUT[req.arg])
            return Result(0)
        if name == "close":
            del self.fds[req.fd]
            self.pending = [p for p in self.pending if p.req.fd != req.fd]
            s.close()
            return Result(0)
        if name == "setsockopt":
            opt, v = req.arg
            if opt == "SO_LINGER":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", *v))
            elif opt in _IP_OPTS:
                s.setsockopt(socket.IPPROTO_IP, _IP_OPTS[opt], struct.pack("I", v & 0xFFFFFFFF))
            elif opt == "TCP_NODELAY":
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, v)
            elif opt == "TCP_QUICKACK":
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, v)
            else:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, v)
            return Result(0)
        if name == "getsockopt":
            if req.arg[0] == "SO_RCVBUF":
                return Result(0, value=s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
            e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            return Result(0, value=errno_mod.errorcode.get(e, str(e)) if e else 0)
        if name == "fcntl":
            return fcntl(f, req.arg)
        raise AssertionError(name)
