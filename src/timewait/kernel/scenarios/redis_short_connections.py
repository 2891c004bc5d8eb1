"""S6 on the kernel: `echo ping | nc redis 6379` in a loop against a real redis-server."""

from __future__ import annotations

import time

from timewait.errors import UsageError
from timewait.kernel.apps import Redis, connect, errno_name, ping
from timewait.kernel.scenarios import KLab, kscenario, progress_line

CLIENT, SERVER = "10.211.55.5", "10.211.55.10"


@kscenario(
    "redis-short-connections",
    kernel_defaults={"connections": 2000},
    no_ipv6=None,
)
def run(lab: KLab) -> None:
    k = lab.k
    p = lab.p
    client, server = lab.addr(CLIENT), lab.addr(SERVER)
    lab.two_hosts("c1", client, "redis", server)
    lab.ready()
    redis = Redis(k, "redis", server)
    n, rate, pool = p["connections"], p["rate"], p["pool"]
    if rate <= 0:
        raise UsageError("--set rate must be > 0 (connections per second)")
    if p["ports"] != 1:
        raise UsageError("--set ports: the kernel lab runs one redis-server on 6379; allowed: 1")
    before = int(redis.info().get("total_commands_processed", "0"))
    succeeded = 0
    failed: dict[str, int] = {}
    next_sample = 0.0
    lab.start_clock()

    def sample(t: float) -> None:
        lab.sample("c1.TIME_WAIT", t, len(lab.tw("c1")))
        lab.sample("redis.TIME_WAIT", t, len(lab.tw("redis")))

    conns = [connect(k, "c1", server, 6379) for _ in range(pool)]
    for i in range(n):
        due = i / rate
        now = lab.now()
        if now >= next_sample:
            sample(now)
            next_sample += p["sample"]
            progress_line(f"redis-short-connections: {i}/{n} requests", i, n)
        if due > now:
            time.sleep(due - now)
        try:
            if pool:
                ok = ping(conns[i % pool])
            else:
                s = connect(k, "c1", server, 6379)
                try:
                    ok = ping(s)
                finally:
                    k.forget(s)  # the client closes first, as nc does on EOF of its stdin
        except OSError as e:
            failed[errno_name(e)] = failed.get(errno_name(e), 0) + 1
            continue
        if ok:
            succeeded += 1
        else:
            failed["EOF"] = failed.get("EOF", 0) + 1
    progress_line("")
    lab.t_end = lab.now()
    sample(lab.t_end)
    served = int(redis.info().get("total_commands_processed", "0")) - before - 1  # minus our INFO
    tw_c, tw_s = len(lab.tw("c1")), len(lab.tw("redis"))
    cap = lab.sysctl_int("c1", "net.ipv4.tcp_max_tw_buckets")
    overflow = lab.counters("c1").get("TcpExtTCPTimeWaitOverflow", 0)
    m = lab.metrics
    m.update(connections=n, rate=rate, pool=pool, succeeded=succeeded, failed=failed, served=served,
             time_wait_client=tw_c, time_wait_server=tw_s, tcp_max_tw_buckets=cap, tw_overflow=overflow,
             time_wait_over_time=[[t, v] for t, v in lab.series["c1.TIME_WAIT"]],
             redis_version=redis.version())
    for s in conns:
        k.forget(s)
    lab.check("every request was answered", succeeded == n and not failed, f"{succeeded}/{n} answered, failures {failed}")
    lab.check("the server keeps no TIME_WAIT (the client closes first)", tw_s == 0, f"redis has {tw_s} TIME_WAIT")
    if pool:
        lab.check("a pool leaves no TIME_WAIT behind", tw_c == 0,
                  f"{pool} long-lived connections carried {n} requests; c1 has {tw_c} TIME_WAIT")
        return
    expected = min(n, cap)
    lab.check("one TIME_WAIT per request on the client, up to tcp_max_tw_buckets",
              tw_c == expected, f"c1 has {tw_c} TIME_WAIT (expected min({n}, cap {cap}) = {expected})")
    lab.check("connections past the cap skip TIME_WAIT and are counted",
              overflow == n - expected, f"TcpExtTCPTimeWaitOverflow = {overflow}")
    lab.say(f"redis-server {m['redis_version']} answered {served} PINGs; c1 holds {tw_c} TIME_WAIT, redis {tw_s}.")
