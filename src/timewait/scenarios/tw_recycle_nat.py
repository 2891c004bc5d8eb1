"""S9: tcp_tw_recycle behind a NAT. The server remembers the newest timestamp per peer IP
and drops SYNs with older ones; clients behind one NAT share that IP but not a clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from timewait.apps.basic import listen
from timewait.scenarios import Lab, Param, scenario
from timewait.sim.host import Host, Socket
from timewait.sim.nat import Nat
from timewait.tcp.config import SEC
from timewait.tcp.segment import RST, SYN, ip_ntoa
from timewait.trace import DROP, TX, views

PUBLIC, INSIDE, SERVER, PORT = "203.0.113.1", "192.168.1.0/24", "198.51.100.10", 80
A_ADDR, B_ADDR = "192.168.1.10", "192.168.1.11"
RECYCLE = "net.ipv4.tcp_tw_recycle"
REQUEST = b"GET / HTTP/1.0\r\n\r\n"
RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n"
TS_MODES = ("none", "host", "random", "4tuple")
PAWS_MSL_S = 60  # TCP_PAWS_MSL: how long a cached timestamp blocks older SYNs


class HttpServer:
    """An HTTP/1.0 server: answers one request per connection, then closes first.

    ``close="shutdown"`` is nginx's lingering close (shutdown(SHUT_WR), close()
    on the client's EOF); ``"close"`` calls close() at once, orphaning the socket.
    """

    def __init__(self, host: Host, port: int, close: str) -> None:
        self.host = host
        self.close_mode = close
        self.served = 0
        self.lsock = listen(host, port, 511, self._serve, reuseaddr=True)

    def _serve(self, s: Socket) -> None:
        s.app = bytearray()
        s.on_data = self._data
        s.on_eof = lambda x: (x.recv(), x.close())

    def _data(self, s: Socket) -> None:
        s.app += s.recv()
        if b"\r\n\r\n" in s.app and s.state == "ESTABLISHED":
            s.send(RESPONSE)
            self.served += 1
            if self.close_mode == "close":
                s.close()
            else:
                s.shutdown()


@dataclass
class Attempt:
    """One request of a client: when it started, connected, finished, and how."""

    start: float
    connected: float | None = None
    done: float | None = None
    error: str | None = None
    data: bytearray = field(default_factory=bytearray)
    port: int = 0

    @property
    def ok(self) -> bool:
        return RESPONSE in bytes(self.data)

    @property
    def connect_delay(self) -> float | None:
        return None if self.connected is None else round(self.connected - self.start, 6)


class Requester:
    """A client making one request at a time; the next ``every_s`` after the previous ended."""

    def __init__(self, host: Host, start_s: float, every_s: float, until_s: float, server: str = SERVER) -> None:
        self.host = host
        self.server = server
        self.every = every_s
        self.until = until_s
        self.attempts: list[Attempt] = []
        host.call_at(int(start_s * SEC), self._go)

    def _now(self) -> float:
        return self.host.net.sched.now / SEC

    def _go(self) -> None:
        if self._now() >= self.until:
            return
        a = Attempt(self._now())
        self.attempts.append(a)
        s = self.host.socket()

        def connected(x: Socket) -> None:
            a.connected = self._now()
            x.send(REQUEST)

        def eof(x: Socket) -> None:
            a.data += x.recv()
            a.done = self._now()
            x.close()
            self._next()

        def error(x: Socket, errno: str) -> None:
            a.error = errno
            a.done = self._now()
            x.close()
            self._next()

        s.on_connected = connected
        s.on_data = lambda x: a.data.extend(x.recv())
        s.on_eof = eof
        s.on_error = error
        s.connect(self.server, PORT)
        a.port = s.lport

    def _next(self) -> None:
        if self.every > 0:
            self.host.call_later(self.every, self._go)


@scenario(
    "tw-recycle-nat",
    "S9: tcp_tw_recycle drops SYNs of NATed clients whose timestamp clock is behind (legacy kernels)",
    params={
        "client_ts": Param("none", "TCP timestamp offsets on the clients: none (<=4.9: TSval = uptime), host "
                           "(4.11), random (4.10: per connection), 4tuple (6.18 stable)", str, TS_MODES),
        "a_uptime": Param(864000.0, "A's uptime in seconds: its timestamp clock (10 days ahead)", float, lo=0),
        "b_uptime": Param(3600.0, "B's uptime in seconds: its timestamp clock (1 hour)", float, lo=0),
        "a_every": Param(20.0, "seconds between A's requests (0 = one request only)", float, lo=0),
        "b_every": Param(20.0, "seconds between B's requests (0 = one request only)", float, lo=0),
        "duration": Param(150.0, "seconds during which the clients start requests", float, lo=0,
                          lo_open=True),
        "server_close": Param("shutdown", "how the server closes first: shutdown (lingering close, as nginx) "
                              "or close (orphaned socket)", str, ("shutdown", "close")),
    },
    story=f"""
Two office PCs, A ({A_ADDR}, up for 10 days) and B ({B_ADDR}, up for an hour), reach a web
server {SERVER}:{PORT} through one NAT ({PUBLIC}). The server runs Linux 4.9 with
net.ipv4.tcp_tw_recycle=1 and closes each HTTP/1.0 connection first, so it holds the
TIME_WAIT. With recycle on, entering TIME_WAIT stores the peer's newest TSval in a cache kept
per peer IP (RC-1), and the TIME_WAIT lasts only 3.5 x RTO (RC-2). A new SYN from that IP with
a TSval more than 1 below the cached one, within 60 s, is dropped silently and counted as
PAWSPassive (RC-3). Timestamps are the senders' uptime in ms (no offsets before 4.10): A's are
10 days ahead of B's. Both come from {PUBLIC}, so once A was served, B is a peer whose clock
went backwards: no SYN-ACK, no RST, only retransmitted SYNs and a connect() timeout (RC-4).
tcp_tw_recycle was removed in Linux 4.12; run under --profile linux-4.9 (the default here).
""",
    contrast="Try --sysctl server:net.ipv4.tcp_tw_recycle=0 (both served), --set client_ts=random "
    "(4.10's per-connection offsets: drops hit both clients at random), --set a_every=0 (B waits "
    "out the 60 s cache), or --profile linux (no such sysctl).",
    mission="S9",
    profile="linux-4.9",
)
def run(lab: Lab) -> None:
    p = lab.p
    sim = lab.sim
    lab.need_trace()  # which client sent each dropped SYN is read from the trace
    if sim.profile.legacy:
        lab.default_sysctl("server", RECYCLE, "1")
    # IPv6: 4.9's tcp_conn_request (both families) checked tcp_peer_is_proven against a
    # tcp_metrics entry per peer address of either family; the NAT is NAT66 masquerade.
    a = sim.add_host("A", lab.addr(A_ADDR), uptime_s=p["a_uptime"])
    b = sim.add_host("B", lab.addr(B_ADDR), uptime_s=p["b_uptime"])
    srv = sim.add_host("server", lab.addr(SERVER), uptime_s=5_000_000)
    nat = Nat("nat", lab.addr(PUBLIC), lab.prefix(INSIDE))
    sim.add_node(nat)
    sim.link(a, nat, delay_ms=1)
    sim.link(b, nat, delay_ms=1)
    sim.link(nat, srv, delay_ms=20)
    for h in (a, b):
        h.cfg.ts_offsets = p["client_ts"]
    HttpServer(srv, PORT, p["server_close"])
    ra = Requester(a, 1.0, p["a_every"], p["duration"], lab.addr(SERVER))
    rb = Requester(b, 3.0, p["b_every"], p["duration"], lab.addr(SERVER))
    first_cache: dict[str, Any] = {}
    sim.at(2.5, lambda: first_cache.update(srv.deathrow.peer_ts))
    # Long enough for a pending connect() to time out (4.9: 1+2+...+64 = 127 s of SYNs).
    lab.run(p["duration"] + 130)
    _report(lab, nat, srv, ra, rb, first_cache)


def _attempts_json(r: Requester) -> list[dict[str, Any]]:
    return [{"start": x.start, "connect_delay_s": x.connect_delay, "ok": x.ok, "error": x.error}
            for x in r.attempts]


def _report(lab: Lab, nat: Nat, srv: Host, ra: Requester, rb: Requester, first_cache: dict) -> None:
    p = lab.p
    sim = lab.sim
    recycle = bool(srv.sysctls.get(RECYCLE, 0))
    legacy = sim.profile.legacy
    pub = nat.public
    m = lab.metrics
    m["recycle"] = recycle
    m["client_ts"] = p["client_ts"]
    m["A_attempts"] = _attempts_json(ra)
    m["B_attempts"] = _attempts_json(rb)
    m["paws_passive"] = srv.counters.get("TcpExtPAWSPassive", 0)
    m["server_time_wait_killed_fast"] = srv.counters.get("TcpExtTWKilled", 0)
    m["server_ts_cache"] = {ip_ntoa(k): v[0] for k, v in srv.deathrow.peer_ts.items()}

    # Which client sent each SYN the server dropped for recycle (packet ids survive the NAT).
    drops: dict[str, list[tuple]] = {"A": [], "B": []}
    syns: dict[str, int] = {"A": 0, "B": 0}
    rsts_to_clients = 0
    sender: dict[int, str] = {}
    for r in views(sim.trace.records):
        if r.kind == TX:
            sender[r.seg.pid] = r.node
            if r.node in syns and r.seg.flags & SYN:
                syns[r.node] += 1
            if r.node == "server" and r.seg.flags & RST:
                rsts_to_clients += 1
        elif r.kind == DROP and r.node == "server" and r.reason == "recycle":
            who = sender.get(r.seg.pid)
            if who in drops:
                drops[who].append(r)
    m["syns_dropped"] = {k: len(v) for k, v in drops.items()}
    m["syns_sent"] = syns
    a_ok = [x.ok for x in ra.attempts]
    b_ok = [x.ok for x in rb.attempts]
    a_clock = p["a_uptime"] * 1000
    b_clock = p["b_uptime"] * 1000

    if not legacy:
        lab.say(f"Profile {sim.profile.name} has no tcp_tw_recycle: it was removed in Linux 4.12 (RC-5), so this "
                f"server cannot drop SYNs by timestamp and both clients are served. Run with --profile linux-4.9 "
                f"(this scenario's default) to see the breakage.")
    if not recycle:
        lab.check("without tcp_tw_recycle both clients behind the NAT are served, every time",
                  all(a_ok) and all(b_ok) and bool(a_ok) and bool(b_ok) and m["paws_passive"] == 0,
                  f"A {sum(a_ok)}/{len(a_ok)}, B {sum(b_ok)}/{len(b_ok)} requests served; PAWSPassive "
                  f"{m['paws_passive']}")
        lab.check("and no connection waits for a SYN retransmission",
                  all(x.connect_delay is not None and x.connect_delay < 1 for x in ra.attempts + rb.attempts),
                  f"longest connect: {max((x.connect_delay or 0) for x in ra.attempts + rb.attempts):.3f} s")
        if legacy:
            lab.say("With tcp_tw_recycle=0 the server keeps no per-IP timestamp cache: a SYN is judged on its own "
                    "4-tuple (TW-B), so A's fast clock is no business of B's. Both are served at once.")
        return

    # Recycle on: the cache is per peer IP, and the NAT makes A and B one peer.
    lab.check("the server's timestamp cache has one entry for both clients: the NAT's address",
              list(first_cache) == [pub] or (not first_cache and list(srv.deathrow.peer_ts) == [pub]),
              f"cache after A's first request: {_fmt_cache(first_cache) or 'empty'}; RC-1 stores it when the "
              f"server's socket enters TIME_WAIT")
    if p["client_ts"] in ("none", "host"):
        _monotonic_clocks(lab, ra, rb, drops, syns, rsts_to_clients, a_clock, b_clock)
    else:
        _random_offsets(lab, ra, rb, drops)


def _fmt_cache(cache: dict) -> str:
    return ", ".join(f"{ip_ntoa(k)} -> TSval {v[0]}" for k, v in cache.items())


def _monotonic_clocks(lab: Lab, ra: Requester, rb: Requester, drops: dict, syns: dict, rsts: int,
                      a_clock: float, b_clock: float) -> None:
    """Clocks without per-connection offsets: the slower one is blackholed while the faster talks."""
    p = lab.p
    sim = lab.sim
    a_ok = [x.ok for x in ra.attempts]
    b_fail = [x for x in rb.attempts if not x.ok or (x.connect_delay or 0) >= PAWS_MSL_S]
    lab.check("A, the client with the faster clock, is served every time",
              bool(a_ok) and all(a_ok) and all((x.connect_delay or 9) < 1 for x in ra.attempts),
              f"A {sum(a_ok)}/{len(a_ok)} requests served, none delayed")
    n_paws = sim.hosts["server"].counters.get("TcpExtPAWSPassive", 0)
    lab.check("B's SYNs are dropped silently: TcpExtPAWSPassive, no SYN-ACK, no RST",
              len(drops["B"]) > 0 and not drops["A"] and n_paws == len(drops["B"]) and rsts == 0,
              f"{len(drops['B'])} of B's {syns['B']} SYNs dropped with reason 'recycle' (PAWSPassive "
              f"{n_paws}); the server sent {rsts} RSTs")
    first = rb.attempts[0] if rb.attempts else None
    lab.check("B times out or waits out the 60 s cache instead of connecting",
              first is not None and first in b_fail,
              f"B's first request: {_describe(first)}" if first else "B made no request")
    gap_days = (a_clock - b_clock) / 86_400_000
    if first is not None and first.error:
        what = (f"B's connect() failed with {first.error} after {first.done - first.start:.0f} s of "
                f"retransmitted SYNs")
    elif first is not None:
        what = f"B connected only after {first.connect_delay:.0f} s, once the cached stamp was older than 60 s"
    else:
        what = "B made no request"
    lab.say(f"A's timestamp clock runs {gap_days:.1f} days ahead of B's (uptimes {p['a_uptime']:g} s and "
            f"{p['b_uptime']:g} s, TSval = uptime in ms{' plus a per-host offset' if p['client_ts'] == 'host' else ''}). "
            f"After the server closed A's connection it cached A's TSval for {lab.addr(PUBLIC)}; B's SYNs from the same "
            f"address carry TSvals {gap_days:.1f} days lower, so tcp_tw_recycle dropped every one of them "
            f"within 60 s of A's last visit, silently (RC-3, RC-4). {what}. With "
            f"--sysctl server:net.ipv4.tcp_tw_recycle=0 both are served.")


def _random_offsets(lab: Lab, ra: Requester, rb: Requester, drops: dict) -> None:
    """4.10's random per-connection offsets: TSvals jump at random, so the drops do too."""
    p = lab.p
    sim = lab.sim
    a_hit = [x for x in ra.attempts if not x.ok or (x.connect_delay or 0) >= 1]
    b_hit = [x for x in rb.attempts if not x.ok or (x.connect_delay or 0) >= 1]
    hit_a, hit_b = len(drops["A"]) > 0, len(drops["B"]) > 0
    b_served = [x for x in rb.attempts if x.ok]
    lab.check(f"with {p['client_ts']} timestamp offsets the clocks no longer decide who is dropped: "
              "A's SYNs are dropped too, or B gets through",
              hit_a or bool(b_served),
              f"SYNs dropped: A {len(drops['A'])}, B {len(drops['B'])}; requests delayed or failed: "
              f"A {len(a_hit)} of {len(ra.attempts)}, B {len(b_hit)} of {len(rb.attempts)}; "
              f"B served {len(b_served)} times")
    lab.check("recycle still drops SYNs: random offsets do not make it safe",
              hit_a or hit_b, f"TcpExtPAWSPassive {sim.hosts['server'].counters.get('TcpExtPAWSPassive', 0)}")
    lab.say(f"With {p['client_ts']} offsets each connection's TSvals start at a random point, unrelated to "
            f"the previous connection's, even from the same host. A new SYN is 'older' than the cached TSval "
            f"about half the time, whichever host sent it: tcp_tw_recycle delayed or failed {len(a_hit)} of A's "
            f"{len(ra.attempts)} requests and {len(b_hit)} of B's {len(rb.attempts)}. The uptimes no longer "
            f"matter, and the drops no longer need a NAT: recycle broke for everyone. That is why 4.11 "
            f"went back to per-host offsets and 4.12 removed tcp_tw_recycle (RC-5); per-4-tuple offsets "
            f"returned in 7.0 (stable 6.12+), long after recycle was gone.")


def _describe(x: Attempt | None) -> str:
    if x is None:
        return "none"
    if x.error:
        return f"started at {x.start:.1f} s, {x.error} at {x.done:.1f} s"
    if x.connected is None:
        return f"started at {x.start:.1f} s, still connecting at the end"
    return f"started at {x.start:.1f} s, connected after {x.connect_delay:.1f} s"
