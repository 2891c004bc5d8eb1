"""S10 on the kernel: clients behind a masquerading router share its public address.

a (192.168.1.2) and b (192.168.2.2) reach the server (203.0.113.10) through
``nat`` (nftables ``masquerade``). The NAT's mapping table is its conntrack
table, read from /proc/net/nf_conntrack inside its namespace.
"""

from __future__ import annotations

import re
import socket
import time

from timewait.kernel.apps import Worker, connect
from timewait.kernel.nsenter import read_text
from timewait.kernel.scenarios import KLab, Param, kscenario

A, B, SERVER, PUBLIC = "192.168.1.2", "192.168.2.2", "203.0.113.10", "203.0.113.1"
PORT = 8888
_CT = re.compile(r"^ipv4\s+2\s+tcp\s+6\s+(\d+)\s+(\w+)\s+src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)"
                 r".*?src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)")


@kscenario(
    "nat",
    params={
        "connections": Param(5, "short connections per client (the client closes first)"),
        "port": Param(50000, "the source port both clients bind for their first connection"),
    },
)
def run(lab: KLab) -> None:
    k, p = lab.k, lab.p
    lab.host("a", A)
    lab.host("b", B)
    lab.host("nat", "192.168.1.1", "192.168.2.1", PUBLIC, kind="nat")
    lab.host("server", SERVER)
    k.link("a", f"{A}/24", "nat", "192.168.1.1/24")
    k.link("b", f"{B}/24", "nat", "192.168.2.1/24")
    wan, _ = k.link("nat", f"{PUBLIC}/24", "server", f"{SERVER}/24")
    k.route("a", "192.168.1.1")
    k.route("b", "192.168.2.1")
    k.nft("nat", f"""table ip nat {{
  chain post {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "{wan}" masquerade
  }}
}}
""")
    lab.ready()
    server = Worker(k, "server", "nc", SERVER, [PORT], close_delay=0.001)
    lab.start_clock()
    n = max(1, p["connections"])
    first: dict[str, int] = {}
    for i in range(n):
        for host in ("a", "b"):
            if i == 0:
                s = k.socket(host)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("0.0.0.0", p["port"]))
                s.settimeout(5)
                s.connect((SERVER, PORT))
            else:
                s = connect(k, host, SERVER, PORT)
            first.setdefault(host, s.getsockname()[1])
            s.sendall(b"hello\n")
            time.sleep(0.01)
            k.forget(s)  # the client closes first
    time.sleep(0.2)
    table = _conntrack(lab)
    tw = {h: len(lab.tw(h)) for h in ("a", "b", "server")}
    lab.t_end = lab.now()
    got = server.stop()

    peers = got.get("peers", {})
    mine = [e for e in table if e["dport"] == PORT]
    bound = [e for e in mine if e["private_port"] == p["port"]]
    public_ports = sorted({e["public_port"] for e in bound})
    rewritten = [e for e in mine if e["public_port"] != e["private_port"]]
    m = lab.metrics
    m.update(server_peers=peers, mappings=len(mine), rewritten_ports=len(rewritten),
             same_port_public=public_ports, conntrack_states=_count(e["state"] for e in mine),
             time_wait_clients={"a": tw["a"], "b": tw["b"]}, time_wait_server=tw["server"],
             mapping_table=[f"{e['private']}:{e['private_port']} -> {e['public']}:{e['public_port']}" for e in mine])
    lab.check("the server sees every client as the NAT's public address", list(peers) == [PUBLIC]
              and peers.get(PUBLIC) == 2 * n, f"server's peers: {peers}")
    lab.check("the NAT keeps one mapping per connection", len(mine) == 2 * n,
              f"{len(mine)} entries for :{PORT} in nat's conntrack table (states {m['conntrack_states']})")
    lab.check("two clients on the same private port get different public ports",
              len(bound) == 2 and len(public_ports) == 2,
              f"{A}:{p['port']} and {B}:{p['port']} went out as {PUBLIC} ports {public_ports}")
    lab.check("TIME_WAIT stays on the clients, which close first; the server has none",
              tw["a"] == n and tw["b"] == n and tw["server"] == 0, f"TIME_WAIT: {tw}")
    lab.say(f"The NAT's table keeps each closed connection too: conntrack's own TIME_WAIT lasts "
            f"{_sysctl(lab, 'net.netfilter.nf_conntrack_tcp_timeout_time_wait')} s.")


def _conntrack(lab: KLab) -> list[dict[str, object]]:
    try:
        text = read_text(lab.k.ns("nat"), "/proc/thread-self/net/nf_conntrack")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        mt = _CT.match(line)
        if not mt:
            continue
        _ttl, state, src, dst, sport, dport, rsrc, rdst, rsport, rdport = mt.groups()
        out.append({"state": state, "private": src, "private_port": int(sport), "dst": dst, "dport": int(dport),
                    "public": rdst, "public_port": int(rdport)})
    return out


def _count(items: object) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:  # type: ignore[attr-defined]
        out[x] = out.get(x, 0) + 1
    return out


def _sysctl(lab: KLab, name: str) -> str:
    try:
        return lab.k.read_sysctl("nat", name)
    except OSError:
        return "?"
