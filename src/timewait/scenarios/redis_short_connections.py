"""S6: a short-connection loop against a Redis-like server fills the client with TIME_WAIT."""

from __future__ import annotations

from typing import Any

from timewait.apps.basic import PingServer, PoolClient, ShortConnectionLoop
from timewait.plain import plain
from timewait.scenarios import Lab, Param, scenario
from timewait.sim.budget import Scale

CLIENT, SERVER = "10.211.55.5", "10.211.55.10"


def _scale(p: dict[str, Any]) -> Scale:
    """``connections`` requests over ``connections / rate`` s, the last 60 s of them held in
    TIME_WAIT, and a sample every ``sample`` s (a period <= 0 counts none: it is a runaway)."""
    n, rate, every = p["connections"], p["rate"], p["sample"]
    sim_s = n / rate + 1 if rate > 0 else 1.0
    return Scale(connections=n, sim_s=sim_s, held=min(n, max(rate, 0) * 61),
                 timers=3 * sim_s / every if every > 0 else 0.0)


@scenario(
    "redis-short-connections",
    "S6: `echo ping | nc redis 6379` in a loop leaves one TIME_WAIT per request on the client",
    params={
        "connections": Param(10000, "requests (one connection each)", lo=1),
        "rate": Param(1000.0, "new connections per second (at most one per µs, the clock's tick)", float, lo=0,
                      lo_open=True, hi=1e6),
        "pool": Param(0, "0 = one connection per request; N = a pool of N long-lived connections", lo=0, hi=65535),
        # A sample period below the clock's resolution is 0 µs: the sampler would fire forever at one instant.
        "sample": Param(1.0, "seconds between TIME_WAIT samples", float, lo=0.001),
        "ports": Param(1, "server ports 6379.. the loop spreads over (each is a destination of its own)",
                       lo=1, hi=65535 - 6379 + 1),
    },
    story="""
The chapter's loop `for i in {1..10000}; do echo ping | nc localhost 6379; done`: every request
opens a connection, gets +PONG and the client closes first, so every request leaves one socket in
TIME_WAIT on the client for 60 s, none on the server. Here the client (c1) and the Redis-like
server (redis) are two hosts, so each side's sockets can be counted apart. The count is capped by
`tcp_max_tw_buckets` (8192 on a ~2 GiB machine: the chapter's figure): past it, closing
connections skip TIME_WAIT and TcpExtTCPTimeWaitOverflow counts them. A connection pool
(`--set pool=N`) carries the same requests on N long-lived connections: no TIME_WAIT at all.
""",
    contrast="Try --sysctl c1:net.ipv4.tcp_max_tw_buckets=8192, --set mem=2G, or --set pool=8.",
    mission="S6",
    scale=_scale,
)
def run(lab: Lab) -> None:
    sim = lab.sim
    p = lab.p
    server = lab.addr(SERVER)
    c1, redis = lab.two_hosts("c1", lab.addr(CLIENT), "redis", server, delay_ms=0.05)
    k = p["ports"]  # >= 1 by its range
    servers = [PingServer(redis, 6379 + i) for i in range(k)]
    n, rate, pool = p["connections"], p["rate"], p["pool"]
    duration = n / rate

    def sample(t: float) -> None:
        lab.sample("c1.TIME_WAIT", t, len(c1.twhash))
        lab.sample("redis.TIME_WAIT", t, len(redis.twhash))
        lab.sample("c1.ESTABLISHED", t, len(c1.ehash))

    sim.every(p["sample"], sample, until_s=duration + 1)
    if pool:
        client = PoolClient(c1, server, 6379, size=pool, count=n, interval_s=1 / rate)
        lab.run(duration + 1)
        succeeded = client.answered
        failed: dict[str, int] = {}
    else:
        loop = ShortConnectionLoop(c1, lambda i: (server, 6379 + i % k), count=n, interval_s=1 / rate)
        loop.start()
        lab.run(duration + 1)
        succeeded = loop.stats.succeeded
        failed = loop.stats.failed
    sample(sim.now)

    tw_c, tw_s = len(c1.twhash), len(redis.twhash)
    cap = c1.sysctls["net.ipv4.tcp_max_tw_buckets"]
    overflow = c1.counters.get("TcpExtTCPTimeWaitOverflow", 0)
    m = lab.metrics
    m.update(connections=n, rate=rate, pool=pool, succeeded=succeeded, failed=failed, served=sum(x.served for x in servers),
             time_wait_client=tw_c, time_wait_server=tw_s, tcp_max_tw_buckets=cap, tw_overflow=overflow,
             time_wait_over_time=[[t, v] for t, v in lab.series["c1.TIME_WAIT"]])
    lab.check("every request was answered", succeeded == n and not failed, f"{succeeded}/{n} answered, failures {plain(failed)}")
    lab.check("the server keeps no TIME_WAIT (the client closes first)", tw_s == 0, f"redis has {tw_s} TIME_WAIT")
    if pool:
        lab.check("a pool leaves at most one TIME_WAIT per pooled connection", tw_c <= pool,
                  f"{pool} long-lived connections carried {n} requests; c1 has {tw_c} TIME_WAIT "
                  "(from closing the pool at the end)")
        lab.say(f"With a pool of {pool} connections the {n} requests opened only {pool} connections; "
                f"only closing the pool at the end leaves {tw_c} TIME_WAIT instead of {n}.")
        return
    tw_len = c1.cfg.tw_len / 1e6
    if duration + 1 <= tw_len:
        expected = min(n, cap)
        lab.check("one TIME_WAIT per request on the client, up to tcp_max_tw_buckets",
                  tw_c == expected, f"c1 has {tw_c} TIME_WAIT (expected min({n}, cap {cap}) = {expected})")
    else:
        # Longer than TIME_WAIT: the oldest entries have expired. The run stops 1 s after the
        # last request, so those of the last (TIME_WAIT - 1 s) remain.
        expected = min(cap, round(rate * (tw_len - 1)))
        lab.check("one TIME_WAIT per request of the last TIME_WAIT period, up to tcp_max_tw_buckets",
                  abs(tw_c - expected) <= rate * 0.002 + 2,
                  f"c1 has {tw_c} TIME_WAIT (expected about min(cap {cap}, {rate:g}/s x {tw_len - 1:g} s) = {expected})")
    lab.check("connections past the cap skip TIME_WAIT and are counted",
              overflow == n - expected if duration + 1 <= tw_len else (overflow > 0) == (cap < rate * tw_len), f"TcpExtTCPTimeWaitOverflow = {overflow}")
    if overflow:
        lab.say(f"tcp_max_tw_buckets = {cap}: {overflow} connections closed without TIME_WAIT "
                "(TcpExtTCPTimeWaitOverflow); their 4-tuples lost the protection against old duplicates.")
    else:
        lab.say(f"All {n} client-closed connections are in TIME_WAIT on c1 for 60 s; "
                "try --set pool=8 to see a connection pool avoid it.")
