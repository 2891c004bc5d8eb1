"""``timewait inspect``: a live census of TCP sockets, TIME_WAIT and the limits they approach.

One inet_diag dump (see :mod:`timewait.kernel.diag`) gives every socket with its
timer; from it: counts by state, TIME_WAIT per remote endpoint and per local
address with how long the entries have left, ephemeral ports in use per
destination against ``ip_local_port_range``, headroom to ``tcp_max_tw_buckets``.
Counters come from /proc/net/netstat and snmp; advice is given in plain words
when a limit is near, and only advice that holds on the running kernel.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from timewait.kernel import counters as kcounters
from timewait.kernel import diag
from timewait.kernel.nsenter import read_sysctl
from timewait.kernel.ssfilter import SockFilter

#: Remaining-time buckets of the TIME_WAIT histogram (seconds, 10 s wide up to 60 s).
BUCKETS = (0, 10, 20, 30, 40, 50)
SYSCTLS = ("net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_max_tw_buckets",
           "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_tw_reuse_delay", "net.ipv4.tcp_timestamps",
           "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_rfc1337", "net.ipv4.tcp_max_syn_backlog", "net.core.somaxconn",
           "net.ipv4.tcp_tw_recycle")
COUNTERS = ("TcpActiveOpens", "TcpPassiveOpens", "TcpAttemptFails", "TcpEstabResets", "TcpRetransSegs",
            "TcpExtTW", "TcpExtTWRecycled", "TcpExtTWKilled", "TcpExtTCPTimeWaitOverflow", "TcpExtTCPAbortOnData",
            "TcpExtTCPAbortOnClose", "TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtPAWSEstab",
            "TcpExtTCPChallengeACK")
PORT_WARN = 0.5      # advise when one destination uses this share of the ephemeral range
BUCKET_WARN = 0.8    # ... or the TIME_WAIT table this share of tcp_max_tw_buckets


@dataclass
class Census:
    """What one look at a namespace found."""

    netns: str | None
    kernel: str
    taken_at: float
    elapsed_s: float
    total: int
    states: dict[str, int]
    time_wait: int
    tw_by_remote: list[tuple[str, int, list[int]]]   # ("addr:port", count, histogram)
    tw_by_local: list[tuple[str, int, list[int]]]
    tw_histogram: list[int]
    tw_new_per_s: float                              # entries with > 50 s left, / 10 s
    server_side_tw: int                              # TIME_WAIT whose local port is a listening port
    ports: list[dict[str, Any]]                      # per (local addr, destination) ephemeral use
    port_range: tuple[int, int]
    max_tw_buckets: int
    sysctls: dict[str, str]
    counters: dict[str, int]
    rates: dict[str, float] = field(default_factory=dict)
    advice: list[str] = field(default_factory=list)
    filter: str | None = None                        # the ss-style filter the census was taken with
    processes: list[dict[str, Any]] | None = None    # with -p: sockets per owning process

    @property
    def range_size(self) -> int:
        lo, hi = self.port_range
        return hi - lo + 1

    def to_json(self) -> dict[str, Any]:
        hist_keys = [f"{b}-{b + 10}s" for b in BUCKETS]
        return {
            "netns": self.netns, "kernel": self.kernel, "taken_at": self.taken_at, "elapsed_s": self.elapsed_s,
            "total": self.total, "states": self.states,
            "time_wait": {
                "count": self.time_wait, "max_tw_buckets": self.max_tw_buckets,
                "headroom": self.max_tw_buckets - self.time_wait,
                "remaining_histogram": dict(zip(hist_keys, self.tw_histogram, strict=True)),
                "new_per_second": self.tw_new_per_s, "server_side": self.server_side_tw,
                "by_remote": [{"remote": r, "count": n, "remaining_histogram": h} for r, n, h in self.tw_by_remote],
                "by_local": [{"local": r, "count": n, "remaining_histogram": h} for r, n, h in self.tw_by_local],
            },
            "ephemeral_ports": {"range": list(self.port_range), "size": self.range_size, "by_destination": self.ports},
            "sysctls": self.sysctls, "counters": self.counters, "rates": self.rates, "advice": self.advice,
            "filter": self.filter, "processes": self.processes,
        }


def socket_owners() -> dict[int, tuple[int, str]]:
    """Socket inode -> (pid, command) from every process's fds, as ``ss -p`` finds them."""
    owners: dict[int, tuple[int, str]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                owners.setdefault(int(link[8:-1]), (int(pid), comm))
    return owners


def _by_process(socks: list[diag.DiagSock], top: int) -> list[dict[str, Any]]:
    owners = socket_owners()
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for s in socks:
        who = owners.get(s.inode) if s.inode else None
        # TIME_WAIT and SYN_RECV minisockets have no inode, nor do orphans after close(): no owner.
        key = f"{who[1]} (pid {who[0]})" if who else "no process"
        per[key][diag.STATE_NAMES.get(s.state, str(s.state))] += 1
    rows = [{"process": k, "count": sum(v.values()), "states": dict(sorted(v.items()))} for k, v in per.items()]
    rows.sort(key=lambda r: (r["process"] == "no process", -r["count"], r["process"]))
    return rows[:top] + [r for r in rows[top:] if r["process"] == "no process"]


def take(netns: str | None = None, top: int = 10, previous: Census | None = None,
         flt: SockFilter | None = None, processes: bool = False) -> Census:
    """Look once at namespace ``netns`` (None: this process's), at the sockets ``flt`` selects."""
    t0 = time.perf_counter()
    if flt is None:
        socks = diag.dump(netns)
    else:
        mask = flt.state_mask
        socks = diag.dump(netns) if mask is None else diag.dump(netns, states=mask)
        # Matched on the addresses as ss sees them: 0.0.0.0/0 and ::/0 both hold ::ffff:a.b.c.d.
        socks = [s for s in socks if flt.match(s.state, (w := s.wire_addrs)[0], s.lport, w[1], s.rport)]
    sysctls = {}
    for name in SYSCTLS:
        try:
            sysctls[name] = read_sysctl(netns, name)
        except OSError:
            continue
    lo, hi = (int(x) for x in sysctls.get("net.ipv4.ip_local_port_range", "32768 60999").split())
    cap = int(sysctls.get("net.ipv4.tcp_max_tw_buckets", "0") or 0)
    all_counters = kcounters.read(netns)
    ctrs = {k: all_counters.get(k, 0) for k in COUNTERS}

    states: Counter[str] = Counter()
    listen_ports: set[int] = set()
    tw_remote: dict[str, list[int]] = defaultdict(lambda: [0] * 6)
    tw_local: dict[str, list[int]] = defaultdict(lambda: [0] * 6)
    hist = [0] * 6
    ports: Counter[tuple[str, str, int]] = Counter()
    tw_rows = []
    names = diag.STATE_NAMES
    for s in socks:
        state = s.state
        states[names.get(state, str(state))] += 1
        if state == 10:
            listen_ports.add(s.lport)
            continue
        if state == diag.TIME_WAIT:
            b = min(s.expires_ms // 10000, 5)
            hist[b] += 1
            tw_remote[_endpoint(s.raddr, s.rport)][b] += 1
            tw_local[s.laddr][b] += 1
            tw_rows.append(s.lport)
        if lo <= s.lport <= hi:
            ports[(s.laddr, s.raddr, s.rport)] += 1
    tw = sum(hist)
    server_side = sum(1 for p in tw_rows if p in listen_ports)
    by_remote = sorted(((k, sum(v), v) for k, v in tw_remote.items()), key=lambda r: -r[1])[:top]
    by_local = sorted(((k, sum(v), v) for k, v in tw_local.items()), key=lambda r: -r[1])[:top]
    size = hi - lo + 1
    port_rows = [{"local": la, "destination": _endpoint(ra, rp), "in_use": n, "range": size, "share": round(n / size, 4)}
                 for (la, ra, rp), n in ports.most_common(top)]
    elapsed = time.perf_counter() - t0
    c = Census(netns=netns, kernel=os.uname().release, taken_at=time.time(), elapsed_s=round(elapsed, 3),
               total=len(socks), states=dict(sorted(states.items())), time_wait=tw, tw_by_remote=by_remote,
               tw_by_local=by_local, tw_histogram=hist, tw_new_per_s=round(hist[5] / 10.0, 1),
               server_side_tw=server_side, ports=port_rows, port_range=(lo, hi), max_tw_buckets=cap,
               sysctls=sysctls, counters=ctrs)
    c.filter = flt.text if flt is not None and flt.text else None
    if processes:
        c.processes = _by_process(socks, top)
    if previous is not None and c.taken_at > previous.taken_at:
        dt = c.taken_at - previous.taken_at
        c.rates = {k: round((v - previous.counters.get(k, 0)) / dt, 1) for k, v in ctrs.items()}
        # Entries into TIME_WAIT are TcpExtTW's rate (all of the namespace); exits follow from
        # the count: entered - (change of the count) / dt.
        entered = c.rates.get("TcpExtTW", 0.0)
        c.rates["time_wait_entered_per_s"] = entered
        c.rates["time_wait_left_per_s"] = round(max(entered - (c.time_wait - previous.time_wait) / dt, 0.0), 1)
    c.advice = advise(c)
    return c


def kernel_version() -> tuple[int, int]:
    parts = os.uname().release.split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def advise(c: Census) -> list[str]:
    """Plain-word advice for the limits that are near; nothing that is wrong for this kernel."""
    out: list[str] = []
    reuse = c.sysctls.get("net.ipv4.tcp_tw_reuse", "2")
    ts = c.sysctls.get("net.ipv4.tcp_timestamps", "1")
    delay = c.sysctls.get("net.ipv4.tcp_tw_reuse_delay")
    worst = c.ports[0] if c.ports else None
    if worst and worst["share"] >= PORT_WARN:
        pct = f"{worst['share']:.0%}"
        out.append(f"Connections from {worst['local']} to {worst['destination']} hold {worst['in_use']} of the "
                   f"{c.range_size} ephemeral ports ({pct}); at 100% connect() fails with EADDRNOTAVAIL. "
                   "Each client-closed connection keeps its port for 60 s in TIME_WAIT.")
        out.append("Reuse connections instead of opening one per request (a connection pool, HTTP keep-alive, "
                   "a persistent Redis client): no close, no TIME_WAIT.")
        out.append("Let the server close first where the protocol allows it: TIME_WAIT then sits on the server, "
                   "which needs no ephemeral port for it.")
        loopback = _loopback(worst["local"]) or _loopback(worst["destination"].rsplit(":", 1)[0])
        when = f"older than tcp_tw_reuse_delay ({delay} ms)" if delay else "older than 1 s"
        if ts == "0":
            out.append("tcp_tw_reuse cannot help while net.ipv4.tcp_timestamps is 0: connect() only takes over "
                       "a TIME_WAIT that saw timestamps.")
        elif reuse == "2" and loopback:
            out.append(f"tcp_tw_reuse=2 already lets connect() take over these loopback TIME_WAIT entries {when}; "
                       "if it still runs out, connections are opened faster than that.")
        elif reuse != "1":
            now = "2, which applies only to loopback connections" if reuse == "2" else reuse
            out.append(f"net.ipv4.tcp_tw_reuse=1 lets connect() take over a TIME_WAIT 4-tuple {when} for outgoing "
                       f"connections only; it needs TCP timestamps on both ends (on here). It is {now} now.")
        lo, hi = c.port_range
        if c.range_size < 60000:
            out.append(f"Widen net.ipv4.ip_local_port_range (now {lo}-{hi}, {c.range_size} ports; e.g. 1024 65535, "
                       "keeping clear of ports your services listen on).")
        out.append("Spread connections over more destination addresses or ports: every (destination address, "
                   "port) has its own 64k 4-tuple space. If you bind() a source address, set "
                   "IP_BIND_ADDRESS_NO_PORT so the port is still chosen per destination.")
    if c.max_tw_buckets and c.time_wait >= BUCKET_WARN * c.max_tw_buckets:
        out.append(f"{c.time_wait} TIME_WAIT entries: {c.time_wait / c.max_tw_buckets:.0%} of "
                   f"net.ipv4.tcp_max_tw_buckets ({c.max_tw_buckets}). Past it, closing connections skip TIME_WAIT "
                   "(TcpExtTCPTimeWaitOverflow counts them) and lose the protection against old duplicates; "
                   "fewer short connections is the fix, a higher cap only costs memory (~200 bytes per entry).")
    if c.counters.get("TcpExtTCPTimeWaitOverflow"):
        out.append(f"TcpExtTCPTimeWaitOverflow = {c.counters['TcpExtTCPTimeWaitOverflow']}: that many connections "
                   "closed without TIME_WAIT because the table was full.")
    if c.server_side_tw and c.server_side_tw >= 0.5 * max(c.time_wait, 1) and c.time_wait > 1000:
        out.append(f"{c.server_side_tw} TIME_WAIT entries are on listening ports: this host closes first as a "
                   "server. That costs memory, not ports; it is harmless below tcp_max_tw_buckets.")
    if out and any("TIME_WAIT" in a for a in out):
        out.append("net.ipv4.tcp_fin_timeout does not shorten TIME_WAIT (fixed at 60 s in Linux); it only limits "
                   "orphaned FIN_WAIT2 sockets.")
        if kernel_version() >= (4, 12):
            out.append("tcp_tw_recycle no longer exists (removed in Linux 4.12), and it broke clients behind NAT.")
        elif c.sysctls.get("net.ipv4.tcp_tw_recycle") == "1":
            out.append("tcp_tw_recycle=1 drops SYNs from clients behind a NAT; turn it off.")
    return out


def _loopback(addr: str) -> bool:
    """Linux's test for tcp_tw_reuse=2 (PS-5): 127/8, ::1 or ::ffff:127/104."""
    a = addr.strip("[]")
    return a.startswith(("127.", "::ffff:127.")) or a == "::1"


def resolve_netns(name: str | None) -> str | None:
    """Check ``--netns`` names a namespace ``ip netns`` knows (UsageError otherwise)."""
    if name is None:
        return None
    from pyroute2 import netns as pr_netns

    from timewait.errors import UsageError
    from timewait.kernel.nsenter import inside

    known = pr_netns.listnetns()
    if name not in known:
        raise UsageError(f"--netns {name!r}: no such network namespace; known: {', '.join(sorted(known)) or 'none'}")
    try:  # entering another namespace needs CAP_SYS_ADMIN: find out now, not halfway through a census
        with inside(name):
            pass
    except OSError as e:
        raise UsageError(f"--netns {name!r}: cannot enter it ({e.strerror}); reading another network "
                         "namespace needs root (CAP_SYS_ADMIN); without --netns inspect reads its own") from None
    return name


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def render(c: Census) -> Any:
    """The census as Rich renderables (tables and advice), for a terminal or ``--watch``."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    where = f"netns {c.netns}" if c.netns else "this namespace"
    head = Text(f"timewait inspect: {where}, kernel {c.kernel}", style="bold")
    head.append(f"  {c.total} TCP sockets, census in {c.elapsed_s:.2f} s", style="dim")
    parts.append(head)
    if c.filter:
        parts.append(Text(f"filter: {c.filter} (counts and tables below are of these sockets; counters and "
                          "sysctls are the namespace's)", style="dim"))
    parts.append(Text("states: " + ("  ".join(f"{k} {v}" for k, v in c.states.items()) or "none")))
    lo, hi = c.port_range
    cap = c.max_tw_buckets
    parts.append(Text(f"TIME_WAIT {c.time_wait} of tcp_max_tw_buckets {cap} (headroom {cap - c.time_wait}); "
                      f"~{c.tw_new_per_s:g} new per second over the last 10 s; {c.server_side_tw} on listening ports"))

    def tw_table(title: str, rows: list[tuple[str, int, list[int]]]) -> Table:
        t = Table(title=title, title_justify="left", box=None, header_style="bold")
        t.add_column(title.split()[-1])
        t.add_column("TIME_WAIT", justify="right")
        for b in BUCKETS:
            t.add_column(f"{b}-{b + 10}s left", justify="right")
        for name, n, h in rows:
            t.add_row(Text(name), str(n), *(str(x) for x in h))  # Text: [fd00::1]:80 is no markup
        return t

    if c.tw_by_remote:
        parts.append(tw_table("TIME_WAIT by remote", c.tw_by_remote))
        parts.append(tw_table("TIME_WAIT by local", c.tw_by_local))
    if c.ports:
        t = Table(title=f"ephemeral ports in use (ip_local_port_range {lo}-{hi}, {c.range_size} ports)",
                  title_justify="left", box=None, header_style="bold")
        for col in ("local", "destination", "in use", "share"):
            t.add_column(col, justify="right" if col in ("in use", "share") else "left")
        for r in c.ports:
            style = "red" if r["share"] >= PORT_WARN else ""
            t.add_row(Text(r["local"]), Text(r["destination"]), str(r["in_use"]), f"{r['share']:.1%}", style=style)
        parts.append(t)
    if c.processes is not None:
        t = Table(title="sockets by process (-p)", title_justify="left", box=None, header_style="bold")
        for col in ("process", "sockets", "states"):
            t.add_column(col, justify="right" if col == "sockets" else "left")
        for r in c.processes:
            t.add_row(Text(r["process"]), str(r["count"]), "  ".join(f"{k} {v}" for k, v in r["states"].items()))
        parts.append(t)
        if any(r["process"] == "no process" for r in c.processes):
            parts.append(Text("TIME_WAIT (and SYN_RECV) entries are minisockets of the kernel: no process owns "
                              "them, and closed sockets still in FIN_WAIT/LAST_ACK are orphans.", style="dim"))
    t = Table(title="counters", title_justify="left", box=None, header_style="bold")
    t.add_column("counter")
    t.add_column("value", justify="right")
    if c.rates:
        t.add_column("per second", justify="right")
    for k, v in c.counters.items():
        row = [k, str(v)] + ([f"{c.rates.get(k, 0):g}"] if c.rates else [])
        t.add_row(*row)
    parts.append(t)
    if "time_wait_entered_per_s" in c.rates:
        parts.append(Text(f"TIME_WAIT: {c.rates['time_wait_entered_per_s']:g}/s entering, "
                          f"{c.rates['time_wait_left_per_s']:g}/s leaving (since the last refresh)"))
    parts.append(Text("sysctls: " + "  ".join(f"{k.split('.')[-1]}={v.replace(chr(9), ' ')}"
                                              for k, v in c.sysctls.items()), style="dim"))
    if c.advice:
        parts.append(Text("advice:", style="bold"))
        for a in c.advice:
            parts.append(Text("- " + a))
    else:
        parts.append(Text("no limit is near.", style="green"))
    return Group(*parts)
