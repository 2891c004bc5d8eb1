"""Ephemeral port exhaustion: short connections to one destination as fast as possible."""

from __future__ import annotations

from typing import Any

from timewait.apps.basic import PingServer, ShortConnectionLoop
from timewait.capacity import port_count
from timewait.plain import plain
from timewait.scenarios import Lab, Param, scenario
from timewait.scenarios.common import may_reuse
from timewait.sim.budget import Scale
from timewait.tcp.segment import ip_ntoa

CLIENT, SERVER = "10.0.0.1", "10.0.0.2"
DEFAULT_PORTS = 28232  # 32768-60999; a --sysctl may widen it up to 64511 (2.3x, within the headroom)


def _scale(p: dict[str, Any]) -> Scale:
    """One connection per round trip while ports last, each port again every 60 s, and a
    connect() retry every 1 ms while none is free."""
    d, k = p["duration"], max(1, p["destinations"])
    per_rtt = d / (p["rtt_ms"] / 1000) if p["rtt_ms"] > 0 else float("inf")
    return Scale(connections=min(per_rtt, DEFAULT_PORTS * k * (d / 60 + 1)), sim_s=d + 0.5,
                 held=DEFAULT_PORTS * k, timers=d / 0.001 + 5 * d)


@scenario(
    "port-exhaustion",
    "One client opens short connections to one destination as fast as it can until ports run out",
    params={
        "duration": Param(75.0, "seconds of simulated time", float, lo=0, lo_open=True),
        "destinations": Param(1, "spread over K server ports 6379.. (4-tuples multiply)", lo=1, hi=65535 - 6379 + 1),
        # Each way is rtt/2 in whole µs: below 2 µs the link has no delay and the loop no pace.
        "rtt_ms": Param(0.2, "round-trip time in ms", float, lo=0.002),
    },
    story="""
Each connection the client closes keeps its local port in TIME_WAIT for 60 s toward that one
destination (server address and port). connect() picks ports from ip_local_port_range (28232 by
default) and needs a unique 4-tuple, so after 28232 connections in under 60 s it fails with
EADDRNOTAVAIL until the oldest TIME_WAIT expires. More destinations multiply the supply; with
tcp_tw_reuse=1 (and timestamps) connect() takes over TIME_WAIT entries older than 1 s instead.
""",
    contrast="Try --set destinations=2, --sysctl c1:net.ipv4.tcp_tw_reuse=1, or "
    "--sysctl 'c1:net.ipv4.ip_local_port_range=1024 65535'.",
    scale=_scale,
)
def run(lab: Lab) -> None:
    sim = lab.sim
    p = lab.p
    server = lab.addr(SERVER)
    c1, srv = lab.two_hosts("c1", lab.addr(CLIENT), "server", server, delay_ms=p["rtt_ms"] / 2)
    k = p["destinations"]  # >= 1 by its range
    for i in range(k):
        PingServer(srv, 6379 + i)
    loop = ShortConnectionLoop(c1, lambda i: (server, 6379 + i % k), count=None, interval_s=0,
                               until_s=p["duration"], retry_s=0.001)
    loop.start()
    def sample(t: float) -> None:
        # The series views plot when the run kept no trace (report/plots.py's names).
        st = loop.stats
        lab.sample("c1.TIME_WAIT", t, len(c1.twhash))
        lab.sample("c1.ESTABLISHED", t, len(c1.ehash))
        lab.sample("c1.ports_in_use", t, len(c1.ports.buckets))
        lab.sample("c1.connect_ok", t, st.succeeded)
        lab.sample("c1.connect_fail", t, sum(st.failed.values()))

    sim.every(1.0, sample, until_s=p["duration"])
    lab.run(p["duration"] + 0.5)

    st = loop.stats
    lo, hi = c1.sysctls["net.ipv4.ip_local_port_range"]
    usable = port_count(lo, hi)  # every port of the range, but of a 3-port one (PS-2)
    secs = int(p["duration"])
    per_sec = [st.per_second.get(s, 0) for s in range(secs)]
    m = lab.metrics
    m.update(succeeded=st.succeeded, failed=dict(st.failed), first_failure_at=st.first_failure_at,
             succeeded_per_second=per_sec, failed_per_second=[st.failed_per_second.get(s, 0) for s in range(secs)],
             port_range=[lo, hi], usable_ports=usable, destinations=k,
             time_wait_peak=max((v for _, v in lab.series.get("c1.TIME_WAIT", [])), default=0),
             tw_recycled=c1.counters.get("TcpExtTWRecycled", 0))
    reuse_ok, why = may_reuse(c1)
    judge(lab, per_sec=per_sec, failed=dict(st.failed), first_failure_at=st.first_failure_at,
          succeeded=st.succeeded, tw_recycled=m["tw_recycled"], usable=usable, dests=k,
          duration=p["duration"], reuse=(reuse_ok, why), delay_s=c1.sysctls["net.ipv4.tcp_tw_reuse_delay"] / 1000,
          toward=f"{ip_ntoa(c1.addr)} -> {server}")


def judge(lab: Any, *, per_sec: list[int], failed: dict[str, int], first_failure_at: float | None,
          succeeded: int, tw_recycled: int, usable: int, dests: int, duration: float,
          reuse: tuple[bool, str], delay_s: float, toward: str) -> None:
    """The checks of port-exhaustion, one function for the simulator and the kernel lab.

    ``lab`` is either side's lab (``check`` and ``say``); both pass what they measured, so
    ``kernel compare`` compares the same claims, worded the same.
    """
    reuse_ok, why = reuse
    supply = usable * dests
    if reuse_ok:
        # A TIME_WAIT may be taken over once it is tcp_tw_reuse_delay old: the wait per port
        # drops from 60 s to the delay, so the loop goes on at min(its own pace, ports / delay).
        free = per_sec[: int(first_failure_at)] if first_failure_at and first_failure_at >= 2 else per_sec
        pace = sum(free[:-1]) / max(1, len(free) - 1) if len(free) > 1 else (free[0] if free else 0)
        bound = min(pace, supply / delay_s)
        tail = per_sec[-10:]
        sustained = sum(tail) / max(1, len(tail))
        lab.check("tw_reuse keeps connect() going at min(its pace, ports / tcp_tw_reuse_delay)",
                  tw_recycled > 0 and sustained >= 0.9 * bound,
                  f"{why}; {tw_recycled} takeovers; last 10 s: {sustained:.0f}/s, expected about "
                  f"min({pace:.0f}, {supply} / {delay_s:g} s) = {bound:.0f}/s; failures {plain(failed)}")
        lab.say(why)
        return
    ok_before = sum(per_sec[: int(first_failure_at)]) if first_failure_at is not None else None
    lab.check("the client runs out of ports with EADDRNOTAVAIL", "EADDRNOTAVAIL" in failed,
              f"first failure at {plain(first_failure_at)} s; {why}")
    lab.check("it fails after using every usable port toward the destination(s) once",
              first_failure_at is not None and succeeded >= supply and ok_before is not None,
              f"{usable} usable ports x {dests} destination(s) = {supply}; {succeeded} succeeded in all")
    if duration > (first_failure_at or 0) + 62:
        recovered = any(per_sec[int(first_failure_at or 0) + 60:])
        lab.check("ports come back when the first TIME_WAIT entries expire (60 s after they began)",
                  recovered, f"successes per second after the failures: {per_sec[-10:]}")
    lab.say(f"{why}. Toward {toward} the client can hold at most {supply} "
            f"4-tuples at once, each for 60 s: a ceiling of {supply / 60:.1f} connections/s.")
