"""S10: a NAT maps private address:port to public address:port, hides the hosts behind
one address, rewrites every packet, and can run out of public ports itself."""

from __future__ import annotations

from typing import Any

from timewait.apps.basic import NcClient, PingServer
from timewait.errors import UsageError
from timewait.plain import bracketed, plain
from timewait.scenarios import Lab, Param, family_addr, scenario
from timewait.sim.nat import ConntrackTimeouts, Mapping, Nat, full_checksums_ok, rewrite_packet
from timewait.tcp.config import SEC
from timewait.tcp.segment import DecodeError, decode, encode, ip_ntoa
from timewait.trace import FWD, RX, select

PUBLIC, INSIDE, SERVER, PORT = "203.0.113.1", "192.168.1.0/24", "198.51.100.10", 6379
SAME_PORT = 40000
SHOW_AT = 5.0


def client_addr(i: int) -> str:
    return f"192.168.1.{10 + i}"


@scenario(
    "nat",
    "S10: a NAT shares one public address, keeps a port-mapping table, rewrites packets, runs out of ports",
    params={
        "clients": Param(3, "private clients behind the NAT, each opening one connection to the server", lo=1,
                         hi=200),
        "nat_ports": Param(2, "public ports the NAT may use (iptables --to-ports 65536-N..65535; "
                           "65535 = all)", lo=1, hi=65535),
        "same_port": Param(True, "c1 and c2 use the same source port 40000, like two identical devices", bool),
        "close_at": Param(20.0, "when the clients that got through close (s)", float, lo=0),
        "give_up": Param(8.0, "seconds a client waits for its connection before giving up, like nc -w", float,
                         lo=0, lo_open=True),
        "ct_time_wait": Param(120.0, "net.netfilter.nf_conntrack_tcp_timeout_time_wait (s)", float, lo=0,
                              lo_open=True),
    },
    story=f"""
Three hosts of a private network (192.168.1.10-12) reach a Redis-like server {SERVER}:{PORT}
through a NAT whose only public address is {PUBLIC}. Each connection gets a conntrack entry:
private address:port <-> public address:port, toward the server. Outgoing packets get the
public source address and port, replies get the private ones back; the IPv4 and TCP checksums
are adjusted for every rewrite. The server sees only {PUBLIC}. The NAT's public ports are its
own finite resource: with --to-ports of 2 ports, the third simultaneous connection toward the
same server has no port left and its SYNs die at the NAT. A closed connection keeps its entry,
and so its port, in conntrack's TIME_WAIT for 120 s.
""",
    contrast="Try --set nat_ports=65535 (every client gets through; c1 keeps its port 40000, c2 is "
    "remapped), --set clients=2, or --set ct_time_wait=30.",
    mission="S10",
)
def run(lab: Lab) -> None:
    p = lab.p
    n, ports = p["clients"], p["nat_ports"]
    if not p["give_up"] < p["close_at"]:  # the single-value ranges are in the table above
        raise UsageError(f"--set give_up={p['give_up']}: must be before close_at={p['close_at']}")
    sim = lab.sim
    lab.need_trace()  # the rewrites are checked packet by packet
    # IPv6: NAT66 masquerade (Linux 3.7+), the same conntrack and port allocator as NAT44.
    server = lab.addr(SERVER)
    hosts = [sim.add_host(f"c{i + 1}", lab.addr(client_addr(i))) for i in range(n)]
    srv = sim.add_host("server", server)
    port_range = (65536 - ports, 65535)
    nat = Nat("nat", lab.addr(PUBLIC), lab.prefix(INSIDE), port_range=port_range,
              timeouts=ConntrackTimeouts(time_wait=p["ct_time_wait"]))
    sim.add_node(nat)
    for h in hosts:
        sim.link(h, nat, delay_ms=1)
    sim.link(nat, srv, delay_ms=10)
    PingServer(srv, PORT)

    clients: list[NcClient | None] = [None] * n

    def start(i: int) -> None:
        bind = SAME_PORT if p["same_port"] and i < 2 else None
        c = clients[i] = NcClient(hosts[i], server, PORT, lines=[(sim.now + 0.5, b"PING\r\n")], bind_port=bind)
        hosts[i].call_later(p["give_up"], lambda: c.sock.close() if c.sock.state == "SYN_SENT" else None)

    for i in range(n):
        sim.at(1.0 + 0.1 * i, lambda i=i: start(i))
    snap: dict[str, Any] = {}

    def show(tag: str) -> None:
        snap[tag] = ([_row(m, hosts) for m in nat.mappings()], nat.table_text(), {k[2] for k in srv.ehash})

    sim.at(SHOW_AT, lambda: show("open"))
    sim.at(p["close_at"], lambda: [c.sock.close() for c in clients if c and c.sock.state == "ESTABLISHED"])
    sim.at(p["close_at"] + min(5.0, p["ct_time_wait"] / 2), lambda: show("closed"))
    end = p["close_at"] + p["ct_time_wait"] + 10
    lab.run(end)
    _report(lab, nat, hosts, clients, snap, port_range)


def _row(m: Mapping, hosts: list) -> dict[str, Any]:
    who = next((h.name for h in hosts if h.addr == m.priv_addr), "?")
    return {"client": who, "private": m.private, "public": m.public, "remote": m.remote, "state": m.state_name}


def _report(lab: Lab, nat: Nat, hosts: list, clients: list, snap: dict, port_range: tuple[int, int]) -> None:
    p = lab.p
    sim = lab.sim
    srv = sim.hosts["server"]
    server, public = bracketed(lab.addr(SERVER)), bracketed(lab.addr(PUBLIC))  # before a :port
    lo, hi = port_range
    ports = hi - lo + 1
    rows_open, table_open, peers = snap.get("open", ([], "", set()))
    rows_closed, table_closed, _ = snap.get("closed", ([], "", set()))
    served = [h.name for h, c in zip(hosts, clients, strict=True) if c and b"+PONG" in bytes(c.received)]
    blocked = [h.name for h, c in zip(hosts, clients, strict=True) if not c or b"+PONG" not in bytes(c.received)]
    m = lab.metrics
    record_table(lab, port_range, rows_open, table_open, table_closed, served, blocked, nat.counters["exhausted"])
    m["nat_counters"] = dict(nat.counters)

    # 1 and 2. The table, and the server's view of it.
    peers = peers | {r.seg.src for r in select(sim.trace.records, RX, node="server")}
    judge_table(lab, rows_open, len(hosts), ports, {ip_ntoa(a) for a in peers})

    # 3. Rewriting both ways, with checksums that still verify.
    _check_rewrites(lab, nat, served, rows_open)

    # 4. The NAT's own port exhaustion.
    extra = len(hosts) - ports
    refused = nat.counters["exhausted"]
    if extra > 0:
        victims = sorted(h.name for h in hosts if nat.refused.get(h.addr))
        lab.check(f"with {ports} public ports the flow number {ports + 1} fails: its SYNs die at the NAT",
                  len(blocked) == extra and victims == blocked and refused > 0
                  and srv.counters.get("TcpPassiveOpens", 0) == len(served),
                  f"{refused} SYNs of {', '.join(victims) or 'nobody'} dropped with nat-exhausted (public ports "
                  f"{lo}-{hi} all in use toward {server}:{PORT}); the server accepted "
                  f"{srv.counters.get('TcpPassiveOpens', 0)} connections")
        lab.say(f"The NAT had {ports} public port{'s' if ports > 1 else ''} ({lo}-{hi}) and {len(hosts)} clients "
                f"wanted one each toward {server}:{PORT} at the same time: {', '.join(blocked)} found none. "
                f"Linux drops such a SYN (its conntrack entry cannot be inserted), so the client retransmits "
                f"into the void ({refused} SYNs dropped) until it gives up after {p['give_up']:g} s. "
                f"Try --set nat_ports=65535.")
    else:
        lab.check(f"with {ports} public ports every one of the {len(hosts)} clients gets through",
                  not refused and not blocked, f"served: {', '.join(served)}; nat-exhausted drops: {refused}")
        lab.say(f"The NAT had {ports} public ports for {len(hosts)} clients: no flow was refused.")

    # 5. Port choice: keep the source port when free, else pick another from the range.
    moved_to = judge_same_port(lab, rows_open, len(hosts), port_range)
    if moved_to is not None:
        lab.say(f"c1 and c2 both used source port {SAME_PORT}: c1 kept it on {lab.addr(PUBLIC)}, c2 was moved to "
                f"{moved_to[0]} because the reply tuple {server}:{PORT} -> {public}:{SAME_PORT} was taken.")

    # 6. Closed flows keep their entry (and port) for conntrack's TIME_WAIT timeout.
    tw = float(p["ct_time_wait"])
    closed = [x for x in nat.history if x.seen_reply]
    holds = [None if x.gone_at is None else (x.gone_at - x.last_seen) / SEC for x in closed]
    tw_rows = [r for r in rows_closed if r["state"] == "TIME_WAIT"]
    lab.check(f"a closed flow keeps its mapping, and its port, {tw:g} s in conntrack TIME_WAIT",
              bool(closed) and len(tw_rows) == len(closed) and all(h == tw for h in holds) and not nat.by_orig,
              f"after the close: {len(tw_rows)} TIME_WAIT entries; each expired {plain(sorted(set(holds), key=str))} s "
              f"after its last packet (nf_conntrack_tcp_timeout_time_wait={tw:g})")
    m["mapping_hold_after_last_packet_s"] = holds


def record_table(lab: Any, port_range: tuple[int, int], rows_open: list[dict[str, Any]], table_open: str,
                 table_closed: str, served: list[str], blocked: list[str], exhausted_drops: int) -> None:
    """The NAT's metrics, as both sides report them (the kernel twin, kernel/scenarios/nat.py, too)."""
    lo, hi = port_range
    lab.metrics.update(public_address=family_addr(lab.p, PUBLIC), nat_port_range=f"{lo}-{hi}", mappings=rows_open,
                       nat_table=table_open, nat_table_after_close=table_closed, served=served,
                       blocked=blocked, nat_exhausted_drops=exhausted_drops)


def judge_table(lab: Any, rows_open: list[dict[str, Any]], clients: int, ports: int, peers: set[str]) -> None:
    """Checks of either side: every flow has its own port of the one public address (``rows_open``,
    the table's open entries), and the server saw only that address (``peers``, dotted quads)."""
    pubs = [r["public"] for r in rows_open]
    public = family_addr(lab.p, PUBLIC)
    lab.check("each private address:port is mapped to its own port of the one public address",
              len(rows_open) == min(clients, ports) and len(set(pubs)) == len(pubs)
              and all(x.startswith(bracketed(public) + ":") for x in pubs),
              "; ".join(f"{r['client']} {r['private']} -> {r['public']}" for r in rows_open) or "no mappings")
    lab.check("the server sees only the NAT's public address", peers == {public},
              f"peers seen at the server: {', '.join(sorted(peers)) or 'none'}")


def judge_same_port(lab: Any, rows_open: list[dict[str, Any]], clients: int,
                    port_range: tuple[int, int]) -> tuple[str | None] | None:
    """The check of either side that c1 keeps source port :data:`SAME_PORT` and c2, using it too,
    is remapped; ``(c2's public address:port or None,)``, or None where the run does not show it."""
    lo, hi = port_range
    if not (lab.p["same_port"] and clients >= 2 and lo <= SAME_PORT <= hi):
        return None
    r1 = next((r for r in rows_open if r["client"] == "c1"), None)
    r2 = next((r for r in rows_open if r["client"] == "c2"), None)
    same = f"{bracketed(family_addr(lab.p, PUBLIC))}:{SAME_PORT}"
    kept = r1 is not None and r1["public"] == same
    moved = r2 is not None and r2["public"] != same
    lab.check("a free source port is kept; a port already used toward the server is remapped",
              kept and moved, f"c1 {r1 and r1['public']}, c2 (also port {SAME_PORT}) {r2 and r2['public']}")
    return (r2["public"] if r2 is not None else None,)


def _check_rewrites(lab: Lab, nat: Nat, served: list[str], rows_open: list[dict[str, Any]]) -> None:
    """Every packet the NAT rewrote: valid checksums, and translated the right way."""
    pub = nat.public
    fwd = list(select(lab.sim.trace.records, FWD, node=nat.name))
    by_reply = {x.reply: x for x in nat.history}
    bad = wrong_way = 0
    for _, _, _, sin, sout in fwd:
        wire = encode(sout)
        patched = rewrite_packet(encode(sin), src=sout.src, dst=sout.dst, sport=sout.sport, dport=sout.dport,
                                 ttl=sout.ttl)
        try:
            decode(wire, verify=True)
        except DecodeError:
            bad += 1
            continue
        if patched != wire or not full_checksums_ok(patched):
            bad += 1
        if sin.dst == pub:
            mp = by_reply.get((sin.src, sin.sport, sin.dst, sin.dport))
            if mp is None or (sout.dst, sout.dport) != (mp.priv_addr, mp.priv_port):
                wrong_way += 1
        elif sout.src != pub or (sout.dst, sout.dport) != (sin.dst, sin.dport):
            wrong_way += 1
    detail = (f"{len(fwd)} rewritten packets encoded, decoded with checksum verification, and equal to the "
              f"original bytes patched with RFC 1624 incremental updates; {bad} bad")
    if lab.ipv6:  # IPv6 has no header checksum: the TCP one covers the rewritten addresses
        lab.check("rewritten packets keep valid TCP checksums (over the IPv6 pseudo-header)",
                  bool(fwd) and bad == 0, detail)
    else:
        lab.check("rewritten packets keep valid IPv4 and TCP checksums", bool(fwd) and bad == 0, detail)
    lab.check("out: private source replaced by the public one; in: public destination replaced by the private one",
              bool(fwd) and wrong_way == 0 and set(served) == {r["client"] for r in rows_open},
              f"{wrong_way} packets translated the wrong way; served: {', '.join(served) or 'none'}")
