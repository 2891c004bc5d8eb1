"""Small TCP servers the kernel lab runs inside a namespace (``python -m timewait.kernel.worker``).

``nc`` mode behaves like ``nc -l``: it reads what a client sends and closes when
the client has closed (or first, at ``--close-at``). ``ping`` mode answers
``+PONG`` to every ``PING`` line, like Redis, and closes after the client.
The worker prints ``READY`` once it listens and, when it gets SIGTERM or SIGINT,
one JSON line with what it saw.
"""

from __future__ import annotations

import argparse
import json
import selectors
import signal
import socket
import struct
import sys
import time
from types import FrameType


class Stop(Exception):
    pass


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise Stop


def serve(args: argparse.Namespace) -> dict[str, object]:
    sel = selectors.DefaultSelector()
    listeners = []
    for port in args.port:
        ls = socket.socket(socket.AF_INET6 if ":" in args.bind else socket.AF_INET)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((args.bind, port))
        ls.listen(args.backlog)
        ls.setblocking(False)
        sel.register(ls, selectors.EVENT_READ, None)
        listeners.append(ls)
    stats: dict[str, object] = {"accepted": 0, "served": 0, "eof": 0, "resets": 0, "closed_first": 0}
    peers: dict[str, int] = {}
    received = bytearray()
    conns: dict[socket.socket, bytearray] = {}
    print("READY", flush=True)

    def close(c: socket.socket) -> None:
        sel.unregister(c)
        conns.pop(c, None)
        if args.linger0:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()

    try:
        while True:
            timeout = None
            if args.close_at is not None:
                timeout = max(0.0, args.close_at - time.time())
            events = sel.select(timeout)
            if args.close_at is not None and time.time() >= args.close_at:
                for c in list(conns):
                    stats["closed_first"] = int(stats["closed_first"]) + 1  # type: ignore[call-overload]
                    close(c)
                args.close_at = None
            for key, _ in events:
                s = key.fileobj
                if s in listeners:
                    try:
                        c, peer = s.accept()  # type: ignore[union-attr]
                    except BlockingIOError:
                        continue
                    c.setblocking(False)
                    peers[peer[0]] = peers.get(peer[0], 0) + 1
                    stats["accepted"] = int(stats["accepted"]) + 1  # type: ignore[call-overload]
                    conns[c] = bytearray()
                    sel.register(c, selectors.EVENT_READ, None)
                    if args.once:  # `nc -l` without -k: the listener is gone once a client is in
                        for ls in listeners:
                            sel.unregister(ls)
                            ls.close()
                        listeners.clear()
                    continue
                c = s  # type: ignore[assignment]
                try:
                    data = c.recv(65536)
                except ConnectionResetError:
                    stats["resets"] = int(stats["resets"]) + 1  # type: ignore[call-overload]
                    close(c)
                    continue
                except BlockingIOError:
                    continue
                if not data:
                    stats["eof"] = int(stats["eof"]) + 1  # type: ignore[call-overload]
                    if args.close_delay > 0:
                        time.sleep(args.close_delay)
                    close(c)
                    continue
                if args.mode == "nc":
                    received.extend(data)
                else:
                    buf = conns[c]
                    buf.extend(data)
                    n = sum(1 for line in bytes(buf).split(b"\n")[:-1] if line.strip().upper() == b"PING")
                    if n:
                        del buf[: bytes(buf).rfind(b"\n") + 1]
                        stats["served"] = int(stats["served"]) + n  # type: ignore[call-overload]
                        try:
                            c.sendall(b"+PONG\r\n" * n)
                        except OSError:
                            close(c)
    except Stop:
        pass
    stats["received"] = received.decode("utf-8", "replace")
    stats["open"] = len(conns)
    stats["peers"] = peers
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m timewait.kernel.worker")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("serve", help="a TCP server: nc-like or Redis-like PING")
    sv.add_argument("--mode", choices=("nc", "ping"), default="nc")
    sv.add_argument("--bind", default="0.0.0.0", help="an IPv4 or IPv6 address (:: for any IPv6)")
    sv.add_argument("--port", type=int, action="append", required=True)
    sv.add_argument("--backlog", type=int, default=4096)
    sv.add_argument("--close-at", type=float, default=None, help="close every connection first at this epoch time")
    sv.add_argument("--close-delay", type=float, default=0.0, help="seconds between the client's FIN and ours")
    sv.add_argument("--linger0", action="store_true", help="SO_LINGER {1,0}: close with RST")
    sv.add_argument("--once", action="store_true", help="close the listener after the first accept, like nc -l")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stats = serve(args)
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
