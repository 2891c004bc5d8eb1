"""Port exhaustion on the kernel: short connections to one destination until connect() fails."""

from __future__ import annotations

import errno
import time

from timewait.capacity import port_count
from timewait.errors import UsageError
from timewait.kernel.apps import Worker, connect, errno_name, ping
from timewait.kernel.scenarios import KLab, kscenario, progress_line
from timewait.plain import plain
from timewait.scenarios.port_exhaustion import judge

CLIENT, SERVER = "10.0.0.1", "10.0.0.2"
RETRY_S = 0.001  # as the simulator's loop: try again 1 ms after a failed connect()


@kscenario(
    "port-exhaustion",
    kernel_defaults={"duration": 5.0},
    default_sysctls=["c1:net.ipv4.ip_local_port_range=40000 40999"],
    note="port-exhaustion on the kernel: the port range is narrowed to 1000 ports so it runs out in well "
         "under a second (override with --sysctl 'c1:net.ipv4.ip_local_port_range=LOW HIGH').",
    no_ipv6=None,  # the port range and tcp_tw_reuse are net.ipv4 settings that IPv6 sockets obey too
)
def run(lab: KLab) -> None:
    k = lab.k
    p = lab.p
    if p["rtt_ms"] <= 0:
        raise UsageError("--set rtt_ms must be > 0")
    # No netem here: a veth RTT is microseconds. Each connection (handshake, then PING/PONG) takes
    # two round trips in the simulator, so the loop paces itself to the same two RTTs per connection.
    cycle_s = 2 * p["rtt_ms"] / 1000
    client, server_addr = lab.addr(CLIENT), lab.addr(SERVER)
    lab.two_hosts("c1", client, "server", server_addr)
    lab.ready()
    dests = max(1, p["destinations"])
    server = Worker(k, "server", "ping", server_addr, [6379 + i for i in range(dests)])
    duration = p["duration"]
    before = lab.counters("c1")
    succeeded = 0
    failed: dict[str, int] = {}
    first_failure_at: float | None = None
    per_sec: dict[int, int] = {}
    fail_per_sec: dict[int, int] = {}
    tw_peak = 0
    next_sample = 0.0
    i = 0
    retry_at = 0.0
    lab.start_clock()
    while (now := lab.now()) < duration:
        cycle_start = time.perf_counter()
        if now >= next_sample:
            tw_peak = max(tw_peak, len(lab.tw("c1")))
            lab.sample("c1.TIME_WAIT", now, tw_peak)
            next_sample += 1.0
            progress_line(f"port-exhaustion: {now:4.1f} s, {succeeded} connections, failures {plain(failed)}",
                          now, duration)
        try:
            s = connect(k, "c1", server_addr, 6379 + i % dests)
        except OSError as e:
            name = errno_name(e)
            failed[name] = failed.get(name, 0) + 1
            fail_per_sec[int(now)] = fail_per_sec.get(int(now), 0) + 1
            if first_failure_at is None:
                first_failure_at = round(now, 4)
            if e.errno not in (errno.EADDRNOTAVAIL, errno.EADDRINUSE, errno.ETIMEDOUT, errno.ECONNREFUSED):
                raise
            # Retries on a 1 ms grid, as the simulator's loop does, not 1 ms plus Python's overhead.
            retry_at = max(retry_at + RETRY_S, now - RETRY_S)
            wait = retry_at - lab.now()  # read the clock once: it moves between two reads
            if wait > 0:
                time.sleep(wait)
            continue
        i += 1
        try:
            ok = ping(s)
        except OSError as e:
            ok = False
            failed[errno_name(e)] = failed.get(errno_name(e), 0) + 1
        finally:
            k.forget(s)
        if ok:
            succeeded += 1
            sec = int(lab.now())
            per_sec[sec] = per_sec.get(sec, 0) + 1
        while time.perf_counter() - cycle_start < cycle_s:
            pass  # sub-millisecond: sleep() would overshoot
    progress_line("")
    lab.t_end = lab.now()
    tw_peak = max(tw_peak, len(lab.tw("c1")))
    server.stop()
    lo, hi = (int(x) for x in lab.k.read_sysctl("c1", "net.ipv4.ip_local_port_range").split())
    usable = port_count(lo, hi)  # every port of the range, but of a 3-port one (PS-2)
    secs = int(duration)
    after = lab.counters("c1")
    m = lab.metrics
    m.update(succeeded=succeeded, failed=failed, first_failure_at=first_failure_at,
             succeeded_per_second=[per_sec.get(s, 0) for s in range(secs)],
             failed_per_second=[fail_per_sec.get(s, 0) for s in range(secs)],
             port_range=[lo, hi], usable_ports=usable, destinations=dests, time_wait_peak=tw_peak,
             tw_recycled=after.get("TcpExtTWRecycled", 0) - before.get("TcpExtTWRecycled", 0))
    try:
        delay = lab.sysctl_int("c1", "net.ipv4.tcp_tw_reuse_delay") / 1000
    except OSError:  # before 6.13 there is no sysctl: the delay is 1 s
        delay = 1.0
    judge(lab, per_sec=m["succeeded_per_second"], failed=failed, first_failure_at=first_failure_at,
          succeeded=succeeded, tw_recycled=m["tw_recycled"], usable=usable, dests=dests, duration=duration,
          reuse=lab.may_reuse("c1"), delay_s=delay, toward=server_addr)

