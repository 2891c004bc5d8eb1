"""S2: TTL counts router hops, not seconds; MSL bounds how long the network keeps a packet."""

from __future__ import annotations

from typing import Any

from timewait.apps.basic import listen
from timewait.measure import path_of
from timewait.plain import plain, quoted
from timewait.scenarios import Lab, Param, scenario
from timewait.sim.host import Host, Socket
from timewait.tcp.config import SEC
from timewait.tcp.segment import SYN, Segment, is_v6
from timewait.trace import DROP, FWD, ICMP, RX, TX, views

C1, C3, C2 = "10.211.55.5", "10.211.55.6", "10.211.55.10"
PORT = 8888
TTL_SYSCTL = "net.ipv4.ip_default_ttl"
LINES = (b"one\n", b"two\n", b"three\n")


@scenario(
    "ttl",
    "S2: routers decrement TTL and drop the packet at 0; the network keeps nothing older than MSL",
    params={
        "ttl": Param(12, "c1's initial TTL, net.ipv4.ip_default_ttl (a --sysctl for c1 wins)", lo=1, hi=255),
        "hops": Param(14, "routers between the clients and c2 (more than 255 outlive any TTL)", lo=1, hi=255),
        "hold": Param(45.0, "seconds the network holds c3's 2nd data segment (longer than MSL: it dies)", float, lo=0),
        "short_hold": Param(20.0, "seconds the network holds c3's 3rd data segment (within MSL: it arrives)", float, lo=0),
        "give_up": Param(5.0, "when c1 stops trying to connect, like `nc -w 5` (s)", float, lo=0),
    },
    story="""
IP's 8-bit TTL is a hop budget, not a clock. c1 (10.211.55.5) sends with TTL 12, as in the
chapter's figure: R1 forwards it with 11, R2 with 10, ... R11 with 1, and R12 drops it at 0 and
reports ICMP time-exceeded; c2 (10.211.55.10) sits 14 routers away, so c1 never reaches it. The
ICMP ends c1's connect() at once with EHOSTUNREACH: in SYN_SENT Linux takes it as a hard error.
c3 (10.211.55.6), beside c1, keeps Linux's default TTL 64 and arrives with 50 left.
TCP cannot rely on TTL to bound a packet's life, so it assumes a Maximum Segment Lifetime:
the network here discards any packet older than MSL (30 s under the linux profile). One of
c3's data segments is held 45 s: it dies on arrival at the next router, older than MSL.
Another is held 20 s: it arrives late -- with the same TTL as one that took milliseconds --
and c2 discards it as an old duplicate, since c3 had long retransmitted it.
""",
    contrast="Try --set hops=8 (c1 gets through with TTL 4), --sysctl c1:net.ipv4.ip_default_ttl=64, "
    "or --set msl=60 (the 45 s segment then survives and arrives).",
    mission="S2",
)
def run(lab: Lab) -> None:
    lab.need_trace()  # the checks read the trace; the run is small
    sim = lab.sim
    p = lab.p
    hops = p["hops"]  # 1..255 by its range
    lab.default_sysctl("c1", TTL_SYSCTL, str(p["ttl"]))
    c1 = sim.add_host("c1", lab.addr(C1))
    c3 = sim.add_host("c3", lab.addr(C3))
    c2 = sim.add_host("c2", lab.addr(C2))
    routers = [sim.add_router(f"R{i}", lab.addr(f"192.0.2.{i}")) for i in range(1, hops + 1)]
    sim.link(c1, routers[0], delay_ms=1)
    sim.link(c3, routers[0], delay_ms=1)
    for a, b in zip(routers, routers[1:], strict=False):
        sim.link(a, b, delay_ms=1)
    sim.link(routers[-1], c2, delay_ms=1)

    server = _Sink(c2, PORT)
    # c1: the chapter's TTL-12 packet; gives up like `nc -w` if nothing answers.
    s1 = c1.socket()
    c1_connect: list[tuple[float, str]] = []
    s1.on_error = lambda _s, err: c1_connect.append((sim.now, err))
    s1.on_connected = lambda _s: c1_connect.append((sim.now, "connected"))
    s1.connect(lab.addr(C2), PORT)
    sim.at(p["give_up"], lambda: s1.close() if s1.state != "ESTABLISHED" else None)
    # c3: TTL 64, three lines; the 2nd is held past MSL, the 3rd within it.
    s3 = c3.socket()
    s3.connect(lab.addr(C2), PORT)
    for i, line in enumerate(LINES):
        c3.call_at(SEC + i * 100_000, lambda d=line: s3.send(d) if s3.state == "ESTABLISHED" else None)
    sim.fault(f"hold {p['hold']} from=c3 flags=P. nth=2")
    sim.fault(f"hold {p['short_hold']} from=c3 flags=P. nth=3")
    end = 1.2 + max(p["hold"], p["short_hold"]) + 2
    c3.call_at(int(end * SEC), s3.close)
    lab.run(end + 2)
    received = {a: bytes(b) for a, b in server.received.items()}
    if c1_connect:
        lab.metrics["c1_connect"] = {"at": round(c1_connect[0][0], 4), "result": c1_connect[0][1]}
    judge(lab, views(sim.trace.records), ttl1=c1.cfg.ttl, ttl3=c3.cfg.ttl, hops=hops,
          msl_s=sim.net.max_age / SEC, received=received, c1_addr=c1.addr, c3_addr=c3.addr)


class _Sink:
    """A server that keeps listening and keeps what arrives, per peer address."""

    def __init__(self, host: Host, port: int) -> None:
        self.host = host
        self.received: dict[int, bytearray] = {}
        self.lsock = listen(host, port, 16, self._serve)

    def _serve(self, s: Socket) -> None:
        s.on_data = self._data
        s.on_eof = self._eof

    def _data(self, s: Socket) -> None:
        self.received.setdefault(s.conn.raddr, bytearray()).extend(s.recv())  # type: ignore[union-attr]

    def _eof(self, s: Socket) -> None:
        self._data(s)
        self.host.call_later(0.001, s.close)


def judge(lab: Any, recs: list[Any], *, ttl1: int, ttl3: int, hops: int, msl_s: float,
          received: dict[int, bytes], c1_addr: int, c3_addr: int) -> None:
    """The scenario's metrics and checks, read from trace records ``recs`` (views) on either side.

    The simulator's run and its kernel twin (kernel/scenarios/ttl.py, real routers in namespaces)
    both call this: ``received`` is what c2 read, per peer address.
    """
    msl = msl_s
    # IPv6 names the same 8-bit hop budget Hop Limit (RFC 8200), and its router says so in ICMPv6.
    v6 = is_v6(c1_addr)
    T = "hop limit" if v6 else "TTL"
    ICMP_TE = "ICMPv6 time exceeded" if v6 else "ICMP time-exceeded"

    # 1. Every router forwards with TTL - 1.
    fwds = [r for r in recs if r.kind == FWD]
    lab.check(f"each router decrements {T} by one", bool(fwds) and all(o.ttl == i.ttl - 1 for _, _, _, i, o in fwds),
              f"{len(fwds)} forwards, every one with {T} out = {T} in - 1")

    # 2. c1's first SYN, hop by hop.
    syn = next((r.seg for r in recs if r.kind == TX and r.node == "c1" and r.seg.flags & SYN), None)
    path = path_of(recs, syn.pid) if syn else []
    per_hop = [syn.ttl] if syn else []
    per_hop += [r.out.ttl for r in path if r.kind == FWD]
    drop = next((r for r in path if r.kind == DROP), None)
    icmp = next((r for r in path if r.kind == ICMP), None)
    arrived = next((r for r in path if r.kind == RX), None)
    lab.metrics["ttl_initial"] = ttl1
    lab.metrics["ttl_per_hop"] = per_hop
    lab.metrics["dropped_at"] = drop.node if drop else None
    lab.metrics["drop_reason"] = drop.reason if drop else None
    lab.metrics["ttl_at_c2"] = arrived.seg.ttl if arrived else None
    lab.metrics["icmp_time_exceeded"] = sum(1 for r in recs if r.kind == ICMP)
    if hops >= ttl1:
        want = list(range(ttl1, 0, -1))
        lab.check(
            f"{T} {ttl1} -> {ttl1 - 1} after R1 ... -> 1 after R{ttl1 - 1}", per_hop == want,
            f"{T} of c1's SYN on each link: {plain(per_hop)}",
        )
        lab.check(
            f"at {T} 0 R{ttl1} drops it and sends {ICMP_TE}",
            drop is not None and drop.node == f"R{ttl1}" and drop.reason == "ttl" and icmp is not None and icmp.node == drop.node,
            f"dropped at {drop.node if drop else None} ({drop.reason if drop else '-'}), "
            f"ICMP {icmp.what if icmp else 'none'}; {lab.metrics['icmp_time_exceeded']} SYN(s) died "
            "(the ICMP ends c1's connect(): IC-1)",
        )
        lab.check("c1 never reaches c2, however long it tries", not received.get(c1_addr)
                  and not any(r.kind == RX and r.node == "c2" and r.seg.src == c1_addr for r in recs),
                  f"{hops} routers is more than {T} {ttl1} allows")
    else:
        want = list(range(ttl1, ttl1 - hops - 1, -1))
        lab.check(f"{T} {ttl1} -> {ttl1 - 1} after R1 ... -> {ttl1 - hops} after R{hops}", per_hop == want,
                  f"{T} of c1's SYN on each link: {plain(per_hop)}")
        lab.check(f"with {hops} routers and {T} {ttl1} the SYN arrives", arrived is not None
                  and arrived.seg.ttl == ttl1 - hops, f"c2 received it with {T} {lab.metrics['ttl_at_c2']}")

    # 3. The same path with TTL 64.
    c3_rx = [r.seg for r in recs if r.kind == RX and r.node == "c2" and r.seg.src == c3_addr]
    ttls3 = sorted({s.ttl for s in c3_rx})
    lab.metrics["ttl_initial_c3"] = ttl3
    lab.metrics["ttl_at_c2_from_c3"] = ttls3[0] if len(ttls3) == 1 else ttls3
    if ttl3 > hops:
        lab.check(f"c3 with {T} {ttl3} crosses the same {hops} routers", ttls3 == [ttl3 - hops]
                  and received.get(c3_addr, b"") == b"".join(LINES),
                  f"c3's packets arrive with {T} {plain(ttls3)}; c2 read {quoted(received.get(c3_addr, b''))}")

    # 4. MSL: the held segments.
    held = _held_segments(recs, c3_addr)
    lab.metrics["msl_s"] = msl
    lab.metrics["held"] = held
    long_ = next((h for h in held if h["data"] == LINES[1].decode()), None)
    short = next((h for h in held if h["data"] == LINES[2].decode()), None)
    hold, short_hold = lab.p["hold"], lab.p["short_hold"]
    for h, secs in ((long_, hold), (short, short_hold)):
        if h is None:
            continue
        if secs > msl:
            lab.check(f"a segment held {secs:g} s (> MSL {msl:g} s) is discarded by the network",
                      h["fate"] == "msl", f"{quoted(h['data'])}: {h['fate']} at {h['where']} aged {h['age_s']} s")
        else:
            lab.check(f"a segment held {secs:g} s (<= MSL {msl:g} s) still arrives, as an old duplicate",
                      h["fate"] == "arrived" and h["where"] == "c2",
                      f"{quoted(h['data'])}: arrived at {h['where']} aged {h['age_s']} s with {T} {h['ttl']}")
    if short is not None and short["fate"] == "arrived" and ttl3 > hops:
        lab.check(f"{T} counts hops, not seconds: the late segment has as much {T} left as a fresh one",
                  short["ttl"] == ttl3 - hops,
                  f"held {short_hold:g} s, arrived with {T} {short['ttl']} like every other c3 packet")
    ages = [(r.t - r.seg.born) / SEC for r in recs if r.kind in (RX, FWD)]
    oldest = max(ages, default=0.0)
    lab.metrics["oldest_packet_delivered_s"] = round(oldest, 6)
    lab.check("no packet is forwarded or delivered older than MSL", oldest <= msl,
              f"oldest packet that got anywhere: {oldest:.6f} s; MSL {msl:g} s")


def _held_segments(recs: list[tuple[Any, ...]], c3_addr: int) -> list[dict[str, Any]]:
    """c3's data segments that the network held: where and how old they ended."""
    out = []
    sent = [r for r in recs if r.kind == TX and r.node == "c3" and r.seg.src == c3_addr and r.seg.payload]
    for tx in sent:
        seg: Segment = tx.seg
        path = path_of(recs, seg.pid)
        first_hop = next((r for r in path if r.kind != TX), None)
        if first_hop is None or first_hop.t - tx.t < SEC:
            continue  # not held
        end = path[-1]
        fate = end.reason if end.kind == DROP else ("arrived" if end.kind == RX else "in flight")
        out.append({
            "data": seg.payload.decode(errors="replace"), "sent_at": tx.t / SEC,
            "fate": fate, "where": end.node, "at": end.t / SEC,
            "age_s": round((end.t - seg.born) / SEC, 6), "ttl": end.seg.ttl,
        })
    return out
