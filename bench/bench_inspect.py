"""How long `timewait inspect` takes with 100,000 TIME_WAIT sockets (target: under 2 s).

Run as root: ``python bench/bench_inspect.py [--sockets N]``. It makes a network
namespace, raises ip_local_port_range and tcp_max_tw_buckets there, opens N
short connections over loopback to several destination addresses and ports
(the client closes first, so each leaves one TIME_WAIT), then times the census
in-process and the whole command line (`timewait inspect --netns NS --json`).
The namespace is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

from timewait.kernel.inspect import take
from timewait.kernel.nsenter import inside
from timewait.kernel.topology import KernelLab, require_lab

DESTS = [("127.0.1.1", 7001), ("127.0.1.1", 7002), ("127.0.1.2", 7001), ("127.0.1.2", 7002)]
LOW, HIGH = 1024, 65535


def fill(lab: KernelLab, host: str, n: int) -> float:
    """N TIME_WAIT sockets; returns the seconds it took.

    Source ports are bound explicitly (spread over two local addresses): with
    tcp_tw_reuse=0, letting connect() pick them costs a scan of the range per
    call and 100,000 would outlive their own 60 s.
    """
    listeners = {}
    with inside(lab.ns(host)):
        for d in DESTS:
            ls = socket.socket()
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind(d)
            ls.listen(4096)
            listeners[d] = ls
        span = HIGH - LOW + 1
        t0 = time.perf_counter()
        for i in range(n):
            d = DESTS[i % len(DESTS)]
            c = socket.socket()
            c.bind((f"127.0.0.{1 + i // span}", LOW + i % span))
            c.connect(d)
            a, _ = listeners[d].accept()
            c.close()  # the client closes first: TIME_WAIT on its side
            a.close()
        took = time.perf_counter() - t0
        for ls in listeners.values():
            ls.close()
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sockets", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    require_lab()
    with KernelLab() as lab:
        ns = lab.add_host("bench")
        lab.sysctl("bench", "net.ipv4.ip_local_port_range", f"{LOW} {HIGH}")
        lab.sysctl("bench", "net.ipv4.tcp_max_tw_buckets", str(args.sockets * 2))
        lab.sysctl("bench", "net.ipv4.tcp_tw_reuse", "0")
        made = fill(lab, "bench", args.sockets)
        print(f"made {args.sockets} TIME_WAIT sockets in {made:.1f} s")
        best = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            c = take(ns)
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        assert c.time_wait == args.sockets, c.time_wait
        print(f"census (in-process): {best:.2f} s for {c.total} sockets "
              f"({c.time_wait} TIME_WAIT, {len(c.tw_by_remote)} remote endpoints)")
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "timewait", "inspect", "--netns", ns, "--json"],
                             capture_output=True, text=True, timeout=120, env={**os.environ})
        cli = time.perf_counter() - t0
        doc = json.loads(out.stdout)
        print(f"timewait inspect --netns NS --json: {cli:.2f} s wall (Python start-up included); "
              f"it counted {doc['time_wait']['count']} TIME_WAIT")
        verdict = "meets" if best < 2.0 else "MISSES"
        print(f"target: census under 2 s with {args.sockets} sockets: {verdict} ({best:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
