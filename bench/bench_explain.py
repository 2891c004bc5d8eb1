"""How long `timewait explain` takes on a 1,000,000-packet capture (target: under 30 s).

``python bench/bench_explain.py [--packets N] [--runs 3]`` writes a pcap of short
connections from one client to one server port (handshake, request, answer,
the client's close: 9 packets each, ports cycling through 32768-60999 so that
4-tuples come round again, as a port-exhausting client's do), then times the
whole command (``timewait explain FILE --json``, output discarded) and prints
the median of the runs with each run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import dpkt

A, B = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


def write_capture(path: str, packets: int) -> int:
    F, S, P, K = dpkt.tcp.TH_FIN, dpkt.tcp.TH_SYN, dpkt.tcp.TH_PUSH, dpkt.tcp.TH_ACK
    n = 0
    t = 1_700_000_000.0
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=101)
        i = 0
        while n < packets:
            port = 32768 + i % 28232
            c, s = 1000 + i * 7, 5000 + i * 11
            steps = [(A, B, port, 80, S, c, 0, b""), (B, A, 80, port, S | K, s, c + 1, b""),
                     (A, B, port, 80, K, c + 1, s + 1, b""), (A, B, port, 80, P | K, c + 1, s + 1, b"GET"),
                     (B, A, 80, port, P | K, s + 1, c + 4, b"OK"), (A, B, port, 80, F | K, c + 4, s + 3, b""),
                     (B, A, 80, port, F | K, s + 3, c + 5, b""), (A, B, port, 80, K, c + 5, s + 4, b""),
                     (B, A, 80, port, K, s + 4, c + 5, b"")]
            for src, dst, sp, dp, fl, seq, ack, data in steps:
                tcp = dpkt.tcp.TCP(sport=sp, dport=dp, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF, flags=fl,
                                   win=502, data=data)
                ip = dpkt.ip.IP(src=src, dst=dst, p=6, ttl=64, data=tcp)
                ip.len = len(ip)
                w.writepkt(bytes(ip), ts=t)
                t += 0.00002
                n += 1
                if n >= packets:
                    break
            i += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bench.pcap")
        t0 = time.perf_counter()
        n = write_capture(path, a.packets)
        print(f"wrote {n} packets ({os.path.getsize(path) / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")
        runs = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "timewait", "explain", path, "--json"], check=True,
                           stdout=subprocess.DEVNULL)
            runs.append(time.perf_counter() - t0)
        print(f"explain {n} packets: median {statistics.median(runs):.1f} s "
              f"(runs {', '.join(f'{r:.1f}' for r in runs)}); target < 30 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
