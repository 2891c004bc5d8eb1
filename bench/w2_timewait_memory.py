"""W2: memory per TIME_WAIT entry, with a million of them held at once.

``python bench/w2_timewait_memory.py [--entries 1000000] [--rate 20000]``
builds two hosts (the client with ``ip_local_port_range`` 1024 65535 and
``tcp_max_tw_buckets`` above the count), runs a PING/PONG short-connection loop
over enough server ports that 4-tuples suffice (at most 80 % of them used),
fast enough (simulated time) that every entry is still in TIME_WAIT at the end
(all made within the 60 s TIME_WAIT), and prints one JSON line:

- ``bytes_per_entry``: (RSS at the end - RSS just before the loop) / ``len(twhash)``.
  This is what a big run costs: the record, its key, the hash slot, its timer on
  the TIME_WAIT lane, and whatever the allocator keeps from the connections that came and went.
- ``tracemalloc_bytes_per_entry``: the growth as Python's allocator traces it, per entry
  added after the first simulated second, in a separate smaller run (``--trace-entries``)
  after the big one.
- ``record_bytes``: ``sys.getsizeof`` of one record's own objects (TimeWait, key tuple,
  the ints they hold, the dict slot, its timer's slot on the TIME_WAIT lane), as an itemised estimate.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import sys
import time
import tracemalloc
from typing import Any

from timewait.apps.basic import PingServer, ShortConnectionLoop
from timewait.sim.host import Host
from timewait.sim.simulation import Simulation

CLIENT, SERVER = "10.211.55.5", "10.211.55.10"
PORT_LOW, PORT_HIGH = 1024, 65535
BASE_PORT = 7000
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Current resident set size (not the peak)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def build(entries: int, rate: float) -> tuple[Simulation, Host, ShortConnectionLoop, float, int]:
    """The two hosts, the servers and the (not yet started) loop; also the run length in s
    and the number of server ports."""
    ports = math.ceil(entries / ((PORT_HIGH - PORT_LOW + 1) * 0.8))
    sim = Simulation(profile="linux", seed=1, trace=False, sysctls=[
        f"c1:net.ipv4.ip_local_port_range={PORT_LOW} {PORT_HIGH}",
        f"c1:net.ipv4.tcp_max_tw_buckets={2 * entries}",
    ])
    c1 = sim.add_host("c1", CLIENT)
    srv = sim.add_host("srv", SERVER)
    sim.link(c1, srv, delay_ms=0.05)
    for i in range(ports):
        PingServer(srv, BASE_PORT + i)
    loop = ShortConnectionLoop(c1, lambda i: (SERVER, BASE_PORT + i % ports), count=entries,
                               interval_s=1 / rate)
    duration = entries / rate + 0.1  # the last lifecycle ends within a few RTTs
    if duration >= 60:
        raise SystemExit(f"--rate {rate:g} is too slow: {entries} entries would take {duration:.0f} s "
                         "of simulated time and the first would leave TIME_WAIT at 60 s")
    return sim, c1, loop, duration, ports


def growth_per_entry(entries: int, rate: float) -> dict[str, Any]:
    """The big run: RSS before the loop and with every entry in TIME_WAIT."""
    sim, c1, loop, duration, ports = build(entries, rate)
    gc.collect()
    before = rss_bytes()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    loop.start()
    sim.run(until_s=duration)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    gc.collect()
    after = rss_bytes()
    held = len(c1.twhash)
    return {
        "entries": entries, "rate": rate, "sim_time_s": sim.now, "wall_s": wall, "cpu_s": cpu,
        "time_wait": held, "succeeded": loop.stats.succeeded, "failed": loop.stats.failed,
        "ok": held == entries and loop.stats.succeeded == entries,
        "rss_before_mib": before / 2**20, "rss_after_mib": after / 2**20,
        "bytes_per_entry": (after - before) / max(held, 1),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "server_ports": ports,
        "record_bytes": record_footprint(sim, c1),
        "events": sim.sched.events,
    }


def tracemalloc_per_entry(entries: int, rate: float) -> dict[str, float]:
    """Traced Python allocations per TIME_WAIT entry in a smaller run.

    ``average``: all growth / entries. ``marginal``: growth from the first simulated
    second to the end / entries added meanwhile -- what one more entry costs once the
    run is steady (the first second's growth includes the fixed cost of the tables and
    allocator pools, not per entry).
    """
    sim, c1, loop, duration, _ = build(entries, rate)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    loop.start()
    sim.run(until_s=min(1.0, duration / 2))
    gc.collect()
    mid, held_mid = tracemalloc.get_traced_memory()[0], len(c1.twhash)
    sim.run(until_s=duration)
    gc.collect()
    end, held = tracemalloc.get_traced_memory()[0], len(c1.twhash)
    tracemalloc.stop()
    return {"average": (end - base) / max(held, 1), "marginal": (end - mid) / max(held - held_mid, 1)}


def record_footprint(sim: Simulation, host: Host) -> dict[str, int]:
    """``sys.getsizeof`` of the objects one TIME_WAIT entry owns (shared small ints excluded)."""
    tw = next(iter(host.twhash.values()))
    # A mypyc-compiled TimeWait is a native class: no __slots__, and its int attributes are
    # stored unboxed inside the object (counted by getsizeof); the pure class boxes them.
    compiled = hasattr(type(tw), "__mypyc_attrs__")
    fields = () if compiled else type(tw).__slots__
    ints = {id(v): v for s in fields if isinstance(v := getattr(tw, s), int)
            and not isinstance(v, bool) and not -5 <= v <= 256}
    ints.update({id(v): v for v in tw.key if not -5 <= v <= 256})
    out = {
        "TimeWait": sys.getsizeof(tw),
        "key tuple": sys.getsizeof(tw.key),
        "ints (upper bound: some are shared)": sum(sys.getsizeof(v) for v in ints.values()),
        "dict slot (table size / entries)": (sys.getsizeof(host.twhash) // max(len(host.twhash), 1)),
    }
    lane = host.deathrow.lane
    if lane is not None and tw.due >= 0:
        # Its expiry sits on the host's TIME_WAIT lane (a deque of records, the due time kept in
        # the record's own slot, counted above): one deque slot, no scheduler event.
        out["timer: TIME_WAIT lane slot"] = (sys.getsizeof(lane.q) // max(len(lane.q), 1))
    out["total"] = sum(out.values())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=20_000.0,
                    help="connections per simulated second (> entries / 60 so all are held at once)")
    ap.add_argument("--trace-entries", type=int, default=60_000,
                    help="entries of the separate tracemalloc run (0 = skip)")
    args = ap.parse_args()
    doc: dict[str, Any] = {"workload": "W2", **growth_per_entry(args.entries, args.rate)}
    if args.trace_entries:
        doc["tracemalloc_entries"] = args.trace_entries
        traced = tracemalloc_per_entry(args.trace_entries, args.rate)
        doc["tracemalloc_bytes_per_entry"] = traced["marginal"]
        doc["tracemalloc_average_bytes_per_entry"] = traced["average"]
    print(json.dumps(doc))
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
