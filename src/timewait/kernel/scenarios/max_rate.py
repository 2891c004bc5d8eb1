"""max-rate on the kernel: ports / TIME_WAIT, one loop just under the limit and one just over.

Linux's TIME_WAIT is TCP_TIMEWAIT_LEN, 60 s (the simulator's twin runs with
msl=30 to match), so the limit is ``ports / 60 s``. The port range is narrowed
(``kernel_defaults``) to keep the rate, and the load, low; how long the run takes
does not depend on it: the over-limit loop runs out after ``60 / (1 + margin)`` s
and the under-limit loop must outlive the first TIME_WAIT's end (60 s) to show the
freed ports keep up, about 70 s in all. The two loops run at once, each from its
own client namespace (c1 under, c1-over over; a ``--sysctl c1:`` applies to
both) toward one server, each paced on a fixed grid like the simulator's loop:
attempt i at ``i / rate``, whether the one before succeeded or not.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from timewait.kernel.apps import Worker, connect, errno_name, ping
from timewait.kernel.scenarios import KLab, kscenario, progress_line
from timewait.scenarios.max_rate import CLIENT, SERVER, judge
from timewait.sim.sysctl import parse_local_port_range

TW_LEN_S = 60.0  # TCP_TIMEWAIT_LEN
CLIENT_OVER, SERVER_OVER = "10.0.1.1", "10.0.1.2"
PORT = 80
RANGE = "40000-40999"


@kscenario(
    "max-rate",
    # margin 0.08: the under-limit loop reuses its first port at ports / rate = 65.2 s, which
    # leaves the first TIME_WAIT 5.2 s to end; the timer wheel may fire a 60 s timer one bucket
    # late, 2.048 s at HZ=250 and 4.096 s at HZ=1000 (the simulator's 0.05 leaves 3.2 s).
    kernel_defaults={"msl": 30.0, "ports": RANGE, "margin": 0.08},
    note=f"max-rate on the kernel: TIME_WAIT is Linux's 60 s (the simulator runs with msl=30 to match); the "
         f"port range is narrowed to {RANGE} (1000 ports) so the rates stay low; the run still takes about "
         f"70 s, since the under-limit loop must outlive the first TIME_WAIT.",
    no_ipv6=None,
)
def run(lab: KLab) -> None:
    p = lab.p
    k = lab.k
    lo, hi = parse_local_port_range("--set ports", p["ports"])
    ports = hi - lo + 1
    limit = ports / TW_LEN_S
    a = lab.addr  # on IPv6 each /24 is a /112 of ULAs: the two links stay two subnets
    lab.host("c1", a(CLIENT))
    lab.host("c1-over", a(CLIENT_OVER))
    lab.host("server", a(SERVER), a(SERVER_OVER))
    k.link("c1", f"{a(CLIENT)}/{lab.plen}", "server", f"{a(SERVER)}/{lab.plen}")
    k.link("c1-over", f"{a(CLIENT_OVER)}/{lab.plen}", "server", f"{a(SERVER_OVER)}/{lab.plen}")
    for h in ("c1", "c1-over"):
        k.sysctl(h, "net.ipv4.ip_local_port_range", f"{lo} {hi}")
    lab.ready()
    for host, name, value in lab.sysctls:  # c1's --sysctl is the over-limit client's too
        if host == "c1":
            k.sysctl("c1-over", name, value)
    server = Worker(k, "server", "ping", a("0.0.0.0"), [PORT])
    m = lab.metrics
    m.update(ports=ports, time_wait_seconds=None, limit_per_second=round(limit, 1),
             formula=f"{ports} ports / {TW_LEN_S:g} s = {limit:.1f} connections/s")
    loops = {"under": _Loop(lab, "c1", a(SERVER), limit * (1 - p["margin"]), ports),
             "over": _Loop(lab, "c1-over", a(SERVER_OVER), limit * (1 + p["margin"]), ports)}
    lab.start_clock()
    threads = [threading.Thread(target=lp.run, daemon=True) for lp in loops.values()]
    for t in threads:
        t.start()
    first_tw = _watch_first_time_wait(lab, loops["under"])
    while any(t.is_alive() for t in threads):
        u, o = loops["under"], loops["over"]
        progress_line(f"max-rate: {lab.now():5.1f} s  under {u.succeeded} ok  over {o.succeeded} ok, "
                      f"failures {o.failed}")
        time.sleep(0.5)
    progress_line("")
    lab.t_end = lab.now()
    server.stop()
    m["time_wait_seconds"] = first_tw
    for label, lp in loops.items():
        m[label] = lp.result()
    judge(lab, m["under"], m["over"], ports=ports, lo=lo, hi=hi, tw=TW_LEN_S, formula=m["formula"])


class _Loop:
    """The simulator's ShortConnectionLoop on the kernel: connect, PING, PONG, close first."""

    def __init__(self, lab: KLab, host: str, server: str, rate: float, ports: int) -> None:
        self.lab, self.host, self.server, self.rate = lab, host, server, rate
        self.until = max(TW_LEN_S, ports / rate) * 1.08  # as the simulator's run
        self.succeeded = 0
        self.failed: dict[str, int] = {}
        self.first_failure_at: float | None = None
        self.first_key: tuple[str, int, str, int] | None = None
        self.first_closed_at: float | None = None
        self.tw_peak = 0

    def run(self) -> None:
        lab = self.lab
        interval = 1 / self.rate
        i = 0
        while (at := i * interval) < self.until:
            left = at - lab.now()
            if left > 0:
                time.sleep(left)
            i += 1
            try:
                s = connect(lab.k, self.host, self.server, PORT)
            except OSError as e:
                name = errno_name(e)
                self.failed[name] = self.failed.get(name, 0) + 1
                if self.first_failure_at is None:
                    self.first_failure_at = round(lab.now(), 4)
                    self.tw_peak = len(lab.tw(self.host))
                continue
            try:
                if ping(s):
                    self.succeeded += 1
                if self.first_key is None:
                    la, lp = s.getsockname()[:2]  # an IPv6 name has flow info and scope too
                    self.first_key = (la, lp, self.server, PORT)
            except OSError as e:
                self.failed[errno_name(e)] = self.failed.get(errno_name(e), 0) + 1
            finally:
                lab.k.forget(s)
                if self.first_closed_at is None:
                    self.first_closed_at = lab.now()

    def result(self) -> dict[str, Any]:
        return dict(rate=round(self.rate, 2), simulated_seconds=round(self.until, 1), succeeded=self.succeeded,
                    failed=dict(self.failed), first_failure_at=self.first_failure_at,
                    time_wait_peak=self.tw_peak if self.failed else None)


def _watch_first_time_wait(lab: KLab, loop: _Loop) -> float | None:
    """How long the under-limit loop's first connection stayed in TIME_WAIT (inet_diag, 20 ms polls)."""
    while loop.first_key is None or loop.first_closed_at is None:
        if lab.now() > 5:
            return None
        time.sleep(0.01)
    lab.sleep_until(TW_LEN_S - 1)
    while lab.now() < loop.first_closed_at + TW_LEN_S + 10:
        key = loop.first_key
        if not any((s.laddr, s.lport, s.raddr, s.rport) == key for s in lab.tw(loop.host)):
            return round(lab.now() - loop.first_closed_at, 3)
        time.sleep(0.02)
    return None
