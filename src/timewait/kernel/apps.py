"""Programs of the kernel lab: the worker servers, a real redis-server, and in-process clients."""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from timewait.kernel.topology import KernelLab, KernelUnavailable, family_of, stop_process

LINGER0 = struct.pack("ii", 1, 0)


class Worker:
    """A ``timewait.kernel.worker`` server running in a host's namespace."""

    def __init__(self, lab: KernelLab, host: str, mode: str, bind: str, ports: list[int],
                 close_at: float | None = None, close_delay: float = 0.0, linger0: bool = False,
                 once: bool = False) -> None:
        argv = [sys.executable, "-m", "timewait.kernel.worker", "serve", "--mode", mode, "--bind", bind]
        for p in ports:
            argv += ["--port", str(p)]
        if close_at is not None:
            argv += ["--close-at", repr(close_at)]
        if close_delay:
            argv += ["--close-delay", repr(close_delay)]
        if linger0:
            argv.append("--linger0")
        if once:
            argv.append("--once")
        self.proc = lab.spawn(host, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = _readline(self.proc, 10.0)
        if line.strip() != "READY":
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""  # type: ignore[union-attr]
            raise RuntimeError(f"worker in {host} did not start: {line.strip() or err.strip()}")

    def stop(self) -> dict[str, Any]:
        """Stop the server and return what it saw (accepted, served, received, ...)."""
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
            return {}
        for line in reversed(out.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        return {}


class ReadingServer:
    """A server in a host's namespace that keeps listening: a thread per connection reads it to
    EOF, hands its bytes to :meth:`got`, and closes it ``close_delay`` s later (the passive close).

    Accepted sockets are the lab's, so a failed run closes them too.
    """

    def __init__(self, lab: KernelLab, host: str, addr: str, port: int, backlog: int,
                 close_delay: float = 0.0) -> None:
        self.lab = lab
        self.close_delay = close_delay
        self.sock = lab.socket(host, family_of(addr))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(backlog)
        self.lock = threading.Lock()  # held around got(): readers run in parallel
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def got(self, peer: str, data: bytes) -> None:
        """One connection's bytes, from ``peer`` (its address), at its EOF."""

    def _serve(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if r:
                c, peer = self.sock.accept()
                self.lab.socks.append(c)
                t = threading.Thread(target=self._read, args=(c, peer[0]), daemon=True)
                t.start()
                self._threads.append(t)

    def _read(self, c: socket.socket, peer: str) -> None:
        buf = bytearray()
        c.settimeout(120)
        try:
            while chunk := c.recv(4096):
                buf += chunk
        except OSError:
            pass
        with self.lock:
            self.got(peer, bytes(buf))
        if self.close_delay:
            time.sleep(self.close_delay)
        c.close()

    def stop(self) -> None:
        """Stop listening, waiting a little for the connections still being read."""
        self._stop.set()
        self._thread.join(timeout=2)
        for t in self._threads:
            t.join(timeout=2)
        self.lab.forget(self.sock)


def drain(s: socket.socket, timeout: float = 10) -> None:
    """Read ``s`` until EOF, an error or ``timeout`` s of silence, keeping nothing."""
    s.settimeout(timeout)
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass


def _readline(p: subprocess.Popen[Any], timeout: float) -> str:
    r, _, _ = select.select([p.stdout], [], [], timeout)
    return p.stdout.readline() if r else ""  # type: ignore[union-attr]


class Redis:
    """A real ``redis-server`` in a host's namespace, queried over its unix socket.

    The unix socket lives in the file system, not in a network namespace, so
    ``INFO`` does not add a TCP connection (or a TIME_WAIT) to the counts.
    """

    def __init__(self, lab: KernelLab, host: str, bind: str, port: int = 6379) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise KernelUnavailable("redis-short-connections needs redis-server (apt-get install redis-server)")
        d = os.path.join(lab.tmpdir, f"redis-{host}")
        os.makedirs(d, exist_ok=True)
        self.unix = os.path.join(d, "redis.sock")
        self.proc = lab.spawn(host, [exe, "--save", "", "--appendonly", "no", "--port", str(port), "--bind", bind,
                                     "--protected-mode", "no", "--daemonize", "no", "--dir", d, "--logfile", "",
                                     "--unixsocket", self.unix, "--unixsocketperm", "700", "--maxclients", "10000",
                                     "--tcp-backlog", "511"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with status {self.proc.returncode}")
            try:
                if self.command("PING").startswith("+PONG"):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def command(self, *words: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.unix)
            s.sendall((f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)).encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                data += chunk
                if not chunk or _complete(data):
                    break
        return data.decode()

    def info(self, section: str = "stats") -> dict[str, str]:
        text = self.command("INFO", section)
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))

    def version(self) -> str:
        return self.info("server").get("redis_version", "?")


def _complete(data: bytes) -> bool:
    if data.startswith(b"$"):
        head, _, rest = data.partition(b"\r\n")
        return len(rest) >= int(head[1:]) + 2 if head[1:].lstrip(b"-").isdigit() else False
    return data.endswith(b"\r\n")


def errno_name(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, str(e.errno))


def connect(lab: KernelLab, host: str, addr: str, port: int, timeout: float = 5.0,
            linger0: bool = False) -> socket.socket:
    """A connected client socket in ``host``'s namespace (OSError as connect() raised it);
    IPv6 if ``addr`` is."""
    s = lab.socket(host, family_of(addr))
    try:
        if linger0:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
        s.settimeout(timeout)
        s.connect((addr, port))
    except OSError:
        lab.forget(s)
        raise
    return s


def ping(s: socket.socket) -> bool:
    """Send ``PING`` and wait for ``+PONG`` (True) or EOF/reset (False)."""
    s.sendall(b"PING\r\n")
    data = b""
    while b"\n" not in data:
        chunk = s.recv(64)
        if not chunk:
            return False
        data += chunk
    return data.startswith(b"+PONG")


def tcp_info_options(s: socket.socket) -> int:
    """``tcpi_options`` of a connected socket (bit 0: timestamps negotiated)."""
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return info[5]
