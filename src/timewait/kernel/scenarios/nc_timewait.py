"""S1 on the kernel: the side that closes first holds TIME_WAIT for 60 s (plus timer-wheel slack).

The chapter's experiment: ``nc -l 8888`` on c2, ``nc`` on c1, a line, Ctrl+C, then
``netstat -atn`` on each host. c1 and c2 are joined by the lab's emulated path
(kernel/path.py, 0.2 ms each way as the simulator's link), so the run's trace is
every packet that crossed; at three instants (connected, just after the close,
just after the TIME_WAIT ends) each host's sockets are read from inet_diag and
written as netstat rows (metric ``netstat``), which ``kernel compare`` sets beside
the simulator's own netstat view at the same instants.
"""

from __future__ import annotations

import time
from typing import Any

from timewait.kernel import diag
from timewait.kernel.apps import Worker, connect
from timewait.kernel.scenarios import KLab, Param, kscenario, progress_line
from timewait.report.sockets import Socket, netstat_lines
from timewait.tcp.segment import ip_aton

C1, C2 = "10.211.55.5", "10.211.55.10"
PORT = 8888
POLL_S = 0.5        # how often the countdown is read (the brief's 0.5 s)
FINE_POLL_S = 0.02  # near the end, so the moment it disappears is known to 20 ms
TW_LEN = 60.0       # TCP_TIMEWAIT_LEN
SETTLE_S = 0.05     # a netstat view this long after a change: the burst of the close is over
CONNECTED_AT = 0.5  # the first view: connected, before the line at 1 s


def sim_netstat(sim: Any, kernel_views: dict[str, Any]) -> dict[str, Any]:
    """The simulator's netstat view (rebuilt from its trace) at the instants the kernel run read its own."""
    from timewait.report.sockets import netstat_at

    m = sim.metrics
    at = {"connected": CONNECTED_AT}
    if m.get("time_wait_entered_at") is not None:
        at["after_close"] = round(m["time_wait_entered_at"] + SETTLE_S, 4)
    if m.get("time_wait_left_at") is not None:
        at["after_time_wait"] = round(m["time_wait_left_at"] + SETTLE_S, 4)
    return {name: {"at": at[name], **netstat_at(sim, at[name])} for name in kernel_views if name in at}


@kscenario(
    "nc-timewait",
    sim_view=("netstat", sim_netstat),
    no_ipv6=None,
    kernel_params={
        "wait": Param(0.0, "kernel only: stop watching after N s of TIME_WAIT and report the timer "
                      "left (0 = watch it to the end, ~60 s)", float),
    },
)
def run(lab: KLab) -> None:
    k = lab.k
    c1, c2 = lab.addr(C1), lab.addr(C2)
    lab.two_hosts("c1", c1, "c2", c2, delay_ms=0.2)
    lab.ready()
    close_at = lab.p["close_at"]
    server_close = lab.p["server_close"]
    t_start = time.time()
    server = Worker(k, "c2", "nc", c2, [PORT], once=True,
                    close_at=t_start + close_at if server_close else None, close_delay=0.001)
    closer, other = ("c2", "c1") if server_close else ("c1", "c2")
    lab.start_clock(t_start)
    s = connect(k, "c1", c2, PORT)
    client_port = s.getsockname()[1]
    key = (c1, client_port, c2, PORT)
    views: dict[str, dict[str, list[str]]] = {}
    lab.sleep_until(CONNECTED_AT)
    views["connected"] = netstat(lab)
    lab.sleep_until(1.0)
    s.sendall(b"hello\n")
    if server_close:
        s.settimeout(close_at + 5)
        while s.recv(4096):
            pass  # nc sees EOF from the server and exits: the client's close follows
        time.sleep(0.001)
        k.forget(s)
        t_close = lab.now()
    else:
        lab.sleep_until(close_at)
        t_close = lab.now()
        k.forget(s)

    # Entry: read inet_diag every 2 ms until the 4-tuple shows up in TIME_WAIT.
    entered = None
    deadline = t_close + 2.0
    while lab.now() < deadline:
        if _find(lab, closer, key):
            entered = lab.now()
            break
        time.sleep(0.002)
    hosts_seen = {h for h in ("c1", "c2") if _find(lab, h, key)}
    if entered is not None:
        lab.sleep_until(entered + SETTLE_S)
        views["after_close"] = netstat(lab)
    wait = lab.p["wait"]
    first_remaining = last_remaining = None
    left = None
    t_last = entered
    while entered is not None:
        now = lab.now()
        tw = _find(lab, closer, key)
        hosts_seen |= {h for h in ("c1", "c2") if h != closer and _find(lab, h, key)}
        if tw is None:
            left = now
            lab.sleep_until(left + SETTLE_S)
            views["after_time_wait"] = netstat(lab)
            break
        t_last = now
        last_remaining = tw.expires_ms / 1000
        if first_remaining is None:
            first_remaining = last_remaining
        progress_line(f"nc-timewait: {closer} TIME_WAIT {now - entered:5.1f} s, timer {last_remaining:5.1f} s left")
        if wait and now - entered >= wait:
            break
        if now - entered > TW_LEN + 15:  # bounded: a TIME_WAIT never outlives 60 s + wheel slack
            break
        time.sleep(FINE_POLL_S if last_remaining < 1.0 else min(POLL_S, max(last_remaining - 0.9, FINE_POLL_S)))
    progress_line("")
    lab.t_end = lab.now()
    got = server.stop()
    lab.stop_paths()

    hosts = sorted(hosts_seen)
    m = lab.metrics
    m["time_wait_hosts"] = hosts
    if left is not None and entered is not None:
        m["time_wait_seconds"] = round(left - entered, 3)
    elif entered is not None and last_remaining is not None and t_last is not None:
        m["time_wait_seconds"] = round(t_last - entered + last_remaining, 3)  # watched part + timer left
    else:
        m["time_wait_seconds"] = None
    m["time_wait_entered_at"] = round(entered, 4) if entered is not None else None
    if left is not None:  # not observed with --set wait: left out rather than guessed
        m["time_wait_left_at"] = round(left, 4)
    m["client_port"] = client_port
    m["time_wait_timer_at_entry"] = first_remaining
    m["time_wait_timer_left"] = last_remaining if left is None else 0.0
    m["time_wait_watched_to_end"] = left is not None
    at = {"connected": CONNECTED_AT}
    if entered is not None:
        at["after_close"] = round(entered + SETTLE_S, 4)
    if left is not None:
        at["after_time_wait"] = round(left + SETTLE_S, 4)
    m["netstat"] = {name: {"at": at[name], **rows} for name, rows in views.items()}
    lab.check("only the active closer enters TIME_WAIT", hosts == [closer],
              f"hosts with TIME_WAIT: {hosts or 'none'}; {other} went through LAST_ACK to CLOSED")
    tws = m["time_wait_seconds"]
    if left is not None:
        detail = f"{closer} held TIME_WAIT {tws} s (60 s plus the timer wheel's rounding)"
    else:
        detail = (f"watched {t_last - entered if t_last and entered else 0:.1f} s, timer left "
                  f"{last_remaining} s: {tws} s in all" if tws is not None else "no TIME_WAIT seen")
    lab.check("TIME_WAIT lasts the profile's 2 MSL", tws is not None and TW_LEN - 0.6 <= tws <= TW_LEN + 4.5, detail)
    if left is not None:
        lab.check("the entry is gone afterwards", _find(lab, closer, key) is None,
                  "no TIME_WAIT left at the end of the run")
    else:
        lab.say(f"Stopped watching after {wait} s (--set wait); the entry had {last_remaining} s left.")
    lab.check("the server received the line", got.get("received") == "hello\n",
              f"c2 read {got.get('received', '')!r}")


def netstat(lab: KLab) -> dict[str, list[str]]:
    """Each host's ``netstat -atn`` rows now, from inet_diag (TCP of the run's family, every state)."""
    out = {}
    for host, ns in lab.k.hosts.items():
        socks = sorted(diag.dump(ns, families=lab.families), key=lambda d: (ip_aton(d.laddr), d.lport, ip_aton(d.raddr), d.rport))
        out[host] = netstat_lines([Socket(host, (ip_aton(d.laddr), d.lport, ip_aton(d.raddr), d.rport),
                                          diag.SIM_STATE_NAMES.get(d.state, d.state_name), None)
                                   for d in socks])[1:]
    return out



def _find(lab: KLab, host: str, key: tuple[str, int, str, int]):  # type: ignore[no-untyped-def]
    la, lp, ra, rp = key
    for s in lab.tw(host):
        if (s.laddr, s.lport, s.raddr, s.rport) in ((la, lp, ra, rp), (ra, rp, la, lp)):
            return s
    return None
