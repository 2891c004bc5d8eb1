"""S10 on the kernel: clients behind a masquerading router share its public address.

c1..cN (192.168.1.10+) sit on a bridge inside ``nat``, which masquerades them
(nftables, ``masquerade to :PORTS``) toward a PING server 198.51.100.10:6379.
The NAT's mapping table is its conntrack table (/proc/net/nf_conntrack inside
its namespace); captures on both of its sides show the rewriting.
"""

from __future__ import annotations

import errno
import re
import select
import socket
import time
from typing import Any

from timewait.errors import UsageError
from timewait.kernel.apps import Worker
from timewait.kernel.capture import SYN, Capture, Pkt
from timewait.kernel.nsenter import read_text
from timewait.kernel.scenarios import KLab, kscenario, progress_line
from timewait.scenarios.nat import (
    PORT,
    PUBLIC,
    SAME_PORT,
    SERVER,
    judge_same_port,
    judge_table,
    record_table,
)

SHOW_AT = 5.0
_CT = re.compile(r"^ipv4\s+2\s+tcp\s+6\s+(\d+)\s+(\w+)\s+src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)"
                 r".*?src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)")


def client_addr(i: int) -> str:
    return f"192.168.1.{10 + i}"


@kscenario(
    "nat",
    no_ipv6="not ported yet: its NAT box is an IPv4 nftables masquerade and it reads IPv4 conntrack entries",
    kernel_defaults={"close_at": 10.0, "ct_time_wait": 5.0},
)
def run(lab: KLab) -> None:
    k, p = lab.k, lab.p
    n, ports = p["clients"], p["nat_ports"]
    if not 1 <= n <= 50:
        raise UsageError(f"--set clients={n}: the kernel lab allows 1..50")
    if not 1 <= ports <= 65535:
        raise UsageError(f"--set nat_ports={ports}: allowed 1..65535")
    if not 0 < p["give_up"] < p["close_at"]:
        raise UsageError(f"--set give_up={p['give_up']}: must be > 0 and before close_at={p['close_at']}")
    names = [f"c{i + 1}" for i in range(n)]
    for i, h in enumerate(names):
        lab.host(h, client_addr(i))
    lab.host("nat", "192.168.1.1", PUBLIC, kind="nat")
    lab.host("server", SERVER)
    lan = k.bridge("nat", "lan0", "192.168.1.1")
    for i, h in enumerate(names):
        k.link(h, f"{client_addr(i)}/24", "nat", None, b_bridge=lan)
        k.route(h, "192.168.1.1")
    wan, srv_if = k.link("nat", f"{PUBLIC}/24", "server", f"{SERVER}/24")
    k.route_dev("nat", f"{SERVER}/32", wan)
    k.route_dev("server", f"{PUBLIC}/32", srv_if)
    lo, hi = 65536 - ports, 65535
    k.nft("nat", f"""table ip nat {{
  chain post {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "{wan}" ip saddr 192.168.1.0/24 meta l4proto tcp masquerade to :{lo}-{hi}
  }}
}}
""")
    k.sysctl("nat", "net.netfilter.nf_conntrack_tcp_timeout_time_wait", str(int(round(p["ct_time_wait"]))))
    lab.ready()
    server = Worker(k, "server", "ping", SERVER, [PORT])
    cap_lan, cap_wan = Capture(k, "nat", lan), Capture(k, "nat", wan)
    lab.start_clock()
    clients = [_Client(lab, h, 1.0 + 0.1 * i, SAME_PORT if p["same_port"] and i < 2 else None)
               for i, h in enumerate(names)]
    snap: dict[str, list[dict[str, Any]]] = {}
    closed_at = p["close_at"]
    show_closed = closed_at + min(5.0, p["ct_time_wait"] / 2)
    end = closed_at + p["ct_time_wait"] + 10
    gone: dict[tuple[str, int], float] = {}
    seen_after_close: set[tuple[str, int]] = set()
    while lab.now() < end:
        now = lab.now()
        for c in clients:
            c.step(now, p["give_up"], closed_at)
        if "open" not in snap and now >= SHOW_AT:
            snap["open"] = _conntrack(lab)
        if "closed" not in snap and now >= show_closed:
            snap["closed"] = _conntrack(lab)
        if now >= closed_at + 0.2:
            live = {(e["private"], e["private_port"]) for e in _conntrack(lab)}
            seen_after_close |= live
            for key in seen_after_close - live:
                gone.setdefault(key, now)
            if not live and "closed" in snap:
                break
        progress_line(f"nat: {now:5.1f} s")
        socks = [c.sock for c in clients if c.sock is not None and c.waiting()]
        if socks:
            select.select(socks, [], [], 0.02)
        else:
            time.sleep(0.02)
    progress_line("")
    lab.t_end = lab.now()
    lan_pkts, wan_pkts = cap_lan.stop(), cap_wan.stop()
    got = server.stop()
    _report(lab, clients, snap, got, lan_pkts, wan_pkts, gone, (lo, hi))


class _Client:
    """``nc SERVER 6379`` with PING at +0.5 s, giving up after ``give_up`` s, closing at ``close_at``."""

    def __init__(self, lab: KLab, host: str, start_at: float, bind_port: int | None) -> None:
        self.lab, self.host, self.start_at, self.bind_port = lab, host, start_at, bind_port
        self.sock: socket.socket | None = None
        self.state = "idle"  # idle, connecting, established, closed, gave_up
        self.received = b""
        self.private: tuple[str, int] | None = None

    def waiting(self) -> bool:
        return self.state in ("connecting", "established")

    def step(self, now: float, give_up: float, close_at: float) -> None:
        k = self.lab.k
        if self.state == "idle" and now >= self.start_at:
            s = self.sock = k.socket(self.host)
            s.setblocking(False)
            if self.bind_port is not None:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("0.0.0.0", self.bind_port))
            err = s.connect_ex((SERVER, PORT))
            if err not in (0, errno.EINPROGRESS):
                self.state = "gave_up"
                return
            self.private = s.getsockname()
            self.state = "connecting"
        elif self.state == "connecting" and self.sock is not None:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            _, w, _ = select.select([], [self.sock], [], 0)
            if w and err == 0:
                self.state = "established"
            elif now >= self.start_at + give_up:
                k.forget(self.sock)
                self.state = "gave_up"
        if self.state == "established" and self.sock is not None:
            if now >= self.start_at + 0.5 and not self.received.startswith(b"+") and not getattr(self, "sent", False):
                self.sock.send(b"PING\r\n")
                self.sent = True
            try:
                self.received += self.sock.recv(64)
            except (BlockingIOError, InterruptedError):
                pass
            if now >= close_at:
                k.forget(self.sock)
                self.state = "closed"


def _conntrack(lab: KLab) -> list[dict[str, Any]]:
    try:
        text = read_text(lab.k.ns("nat"), "/proc/thread-self/net/nf_conntrack")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        mt = _CT.match(line)
        if not mt:
            continue
        ttl, state, src, dst, sport, dport, _rsrc, rdst, _rsport, rdport = mt.groups()
        if int(dport) != PORT:
            continue
        out.append({"state": state, "ttl": int(ttl), "private": src, "private_port": int(sport),
                    "remote": f"{dst}:{dport}", "public": rdst, "public_port": int(rdport),
                    "line": line[line.index("tcp"):]})  # as `conntrack -L` prints it
    return out


def _rows(entries: list[dict[str, Any]], clients: list[_Client]) -> list[dict[str, Any]]:
    who = {c.private: c.host for c in clients if c.private}
    rows = [{"client": who.get((e["private"], e["private_port"]), "?"),
             "private": f"{e['private']}:{e['private_port']}", "public": f"{e['public']}:{e['public_port']}",
             "remote": e["remote"], "state": e["state"]} for e in entries]
    return sorted(rows, key=lambda r: int(r["client"][1:]) if r["client"][1:].isdigit() else 999)


def _report(lab: KLab, clients: list[_Client], snap: dict[str, list[dict[str, Any]]], got: dict[str, Any],
            lan: list[Pkt], wan: list[Pkt], gone: dict[tuple[str, int], float], port_range: tuple[int, int]) -> None:
    p, m = lab.p, lab.metrics
    lo, hi = port_range
    ports = hi - lo + 1
    rows_open = _rows(snap.get("open", []), clients)
    served = [c.host for c in clients if b"+PONG" in c.received]
    blocked = [c.host for c in clients if b"+PONG" not in c.received]
    blocked_priv = {c.private for c in clients if c.host in blocked and c.private}
    syn_lan = [x for x in lan if x.flags & SYN and not x.flags & 0x10 and (x.src, x.sport) in blocked_priv]
    record_table(lab, port_range, rows_open, "\n".join(e["line"] for e in snap.get("open", [])),
                 "\n".join(e["line"] for e in snap.get("closed", [])), served, blocked, len(syn_lan))
    judge_table(lab, rows_open, len(clients), ports, set(got.get("peers", {})))

    # Rewriting, seen on both sides of the NAT.
    flows = {(c.private[0], c.private[1]): c.host for c in clients if c.private and c.host in served}
    pub_of = {(e["private"], e["private_port"]): e["public_port"] for e in snap.get("open", [])}
    wrong = 0
    for (addr, port), _host in flows.items():
        pub = pub_of.get((addr, port))
        out_lan = [x for x in lan if (x.src, x.sport) == (addr, port)]
        out_wan = [x for x in wan if x.dst == SERVER and (x.src, x.sport) == (PUBLIC, pub)]
        in_wan = [x for x in wan if x.src == SERVER and (x.dst, x.dport) == (PUBLIC, pub)]
        in_lan = [x for x in lan if x.src == SERVER and (x.dst, x.dport) == (addr, port)]
        if not (out_lan and out_wan and in_wan and in_lan) or len(out_lan) != len(out_wan) \
                or len(in_wan) != len(in_lan):
            wrong += 1
    private_on_wan = [x for x in wan if x.src.startswith("192.168.") or x.dst.startswith("192.168.")]
    lab.check("out: private source replaced by the public one; in: public destination replaced by the private one",
              bool(flows) and not wrong and not private_on_wan,
              f"{len(flows)} flows captured on both sides of the NAT; {wrong} not translated one for one; "
              f"{len(private_on_wan)} packets with a private address on the public side")
    extra = len(clients) - ports
    if extra > 0:
        passive = got.get("accepted", 0)
        syn_wan = [x for x in wan if x.flags & SYN and not x.flags & 0x10 and x.src == PUBLIC
                   and x.sport not in {pub_of.get(k2) for k2 in flows}]
        lab.check(f"with {ports} public ports the flow number {ports + 1} fails: its SYNs die at the NAT",
                  len(blocked) == extra and bool(syn_lan) and not syn_wan and passive == len(served),
                  f"{len(syn_lan)} SYNs of {', '.join(blocked) or 'nobody'} entered the NAT and none left it "
                  f"(public ports {lo}-{hi} all in use toward {SERVER}:{PORT}); the server accepted {passive}")
    else:
        lab.check(f"with {ports} public ports every one of the {len(clients)} clients gets through",
                  not blocked, f"served: {', '.join(served)}")
    judge_same_port(lab, rows_open, len(clients), port_range)
    tw = float(p["ct_time_wait"])
    holds = []
    for key in flows:
        last = max((x.t for x in lan + wan if (x.src, x.sport) == key or (x.dst, x.dport) == key), default=None)
        if last is not None and key in gone:
            holds.append(round(gone[key] - lab.rel(last), 1))
    tw_rows = [e for e in snap.get("closed", []) if e["state"] == "TIME_WAIT"]
    lab.check(f"a closed flow keeps its mapping, and its port, {tw:g} s in conntrack TIME_WAIT",
              bool(flows) and len(tw_rows) == len(flows) and len(holds) == len(flows)
              and all(abs(h - tw) <= 1.1 for h in holds),
              f"after the close: {len(tw_rows)} TIME_WAIT entries; each gone {holds} s after its last packet "
              f"(nf_conntrack_tcp_timeout_time_wait={tw:g}; read every 20 ms)")
    m["mapping_hold_after_last_packet_s"] = holds
