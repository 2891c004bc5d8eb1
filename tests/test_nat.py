"""The NAT box: translation both ways, checksums, conntrack states and timeouts, port exhaustion."""

from __future__ import annotations

import pytest

from timewait.apps.basic import NcClient, PingServer
from timewait.errors import UsageError
from timewait.sim.nat import ConntrackTimeouts, Nat, full_checksums_ok, rewrite_packet
from timewait.sim.simulation import Simulation
from timewait.tcp.config import SEC
from timewait.tcp.segment import ACK, FIN, RST, SYN, DecodeError, Segment, decode, encode, ip_aton
from timewait.trace import DROP, FWD, RX

PUB, SRV = "203.0.113.1", "198.51.100.10"
C1, C2, C3 = "192.168.1.10", "192.168.1.11", "192.168.1.12"


def world(nat_kw: dict | None = None, clients: tuple[str, ...] = (C1, C2), seed: int = 1):
    sim = Simulation(seed=seed)
    hosts = [sim.add_host(f"c{i + 1}", a) for i, a in enumerate(clients)]
    srv = sim.add_host("srv", SRV)
    nat = sim.add_node(Nat("nat", PUB, "192.168.1.0/24", **(nat_kw or {})))
    for h in hosts:
        sim.link(h, nat, delay_ms=1)
    sim.link(nat, srv, delay_ms=10)
    return sim, hosts, srv, nat


def fwds(sim: Simulation) -> list[tuple]:
    return [r for r in sim.trace.records if r[1] == FWD and r[2] == "nat"]


def drops(sim: Simulation, reason: str) -> list[tuple]:
    return [r for r in sim.trace.records if r[1] == DROP and r[4] == reason]


def test_translation_both_ways_with_exact_addresses_and_ports() -> None:
    sim, (c1, c2), srv, nat = world()
    PingServer(srv, 6379)
    a = NcClient(c1, SRV, 6379, lines=[(1.0, b"PING\r\n")], bind_port=40000)
    b = NcClient(c2, SRV, 6379, lines=[(1.0, b"PING\r\n")], bind_port=40000)
    sim.run(2)
    assert bytes(a.received) == bytes(b.received) == b"+PONG\r\n"
    m1, m2 = nat.mappings()
    assert (m1.private, m1.public, m1.remote) == (f"{C1}:40000", f"{PUB}:40000", f"{SRV}:6379")
    # The second device used the same source port: it keeps its address's port no more.
    assert m2.private == f"{C2}:40000" and m2.pub_port != 40000 and 1024 <= m2.pub_port <= 65535
    pub, c2a = ip_aton(PUB), ip_aton(C2)
    for _, _, _, sin, sout in fwds(sim):
        if sin.src == c2a:  # outgoing: source rewritten, destination kept
            assert (sout.src, sout.sport, sout.dst, sout.dport) == (pub, m2.pub_port, sin.dst, sin.dport)
        elif sin.dst == pub and sin.dport == m2.pub_port:  # incoming: back to c2:40000
            assert (sout.src, sout.sport, sout.dst, sout.dport) == (sin.src, sin.sport, c2a, 40000)
        assert sout.ttl == sin.ttl - 1 and sout.pid == sin.pid and sout.seq == sin.seq
    # The server only ever sees the public address.
    seen = {(r[3].src, r[3].sport) for r in sim.trace.records if r[1] == RX and r[2] == "srv"}
    assert seen == {(pub, 40000), (pub, m2.pub_port)}
    assert {k[2] for k in srv.ehash} == {pub}


def test_rewritten_packets_keep_valid_checksums() -> None:
    sim, (c1, _), srv, nat = world()
    PingServer(srv, 6379)
    NcClient(c1, SRV, 6379, lines=[(1.0, b"PING\r\n")], close_at_s=1.5)
    sim.run(3)
    records = fwds(sim)
    assert len(records) >= 8
    for _, _, _, sin, sout in records:
        wire = encode(sout)
        assert decode(wire, verify=True).src == sout.src
        # A NAT patches the bytes and adjusts the sums (RFC 1624); the result is the same packet.
        patched = rewrite_packet(encode(sin), src=sout.src, dst=sout.dst, sport=sout.sport,
                                 dport=sout.dport, ttl=sout.ttl)
        assert patched == wire and full_checksums_ok(patched)


def test_rewriting_without_fixing_the_sum_is_caught() -> None:
    seg = Segment(ip_aton(C1), ip_aton(SRV), 40000, 80, 1, 0, SYN, 64240, ts=(5, 0))
    wire = bytearray(encode(seg))
    wire[20:22] = (50000).to_bytes(2, "big")  # the source port, checksum left alone
    assert not full_checksums_ok(bytes(wire))
    with pytest.raises(DecodeError, match="TCP checksum"):
        decode(bytes(wire), verify=True)
    fixed = rewrite_packet(encode(seg), sport=50000)
    assert decode(fixed, verify=True).sport == 50000


def test_time_wait_mapping_expires_120_s_after_the_last_ack() -> None:
    sim, (c1, _), srv, nat = world()
    PingServer(srv, 6379)
    NcClient(c1, SRV, 6379, lines=[(1.0, b"PING\r\n")], close_at_s=2.0)
    sim.run(10)
    (m,) = nat.mappings()
    assert m.state_name == "TIME_WAIT" and m.assured
    last = max(r[0] for r in fwds(sim))
    assert m.expires == last + 120 * SEC
    (row,) = nat.table()
    assert (row.state, row.timeout_s) == ("TIME_WAIT", (last + 120 * SEC - sim.sched.now) // SEC)
    sim.run(last / SEC + 119.9)
    assert nat.mappings() == [m]
    sim.run(last / SEC + 120.0)
    assert nat.mappings() == [] and m.gone_at == last + 120 * SEC and nat.counters["expired"] == 1


def test_timeouts_are_configurable_and_refreshed_by_traffic() -> None:
    t = ConntrackTimeouts(established=30, time_wait=5)
    sim, (c1, _), srv, nat = world({"timeouts": t})
    PingServer(srv, 6379)
    client = NcClient(c1, SRV, 6379, lines=[(1.0, b"PING\r\n"), (20.0, b"PING\r\n")])
    sim.run(45)
    # Traffic at 20 s pushed the established entry's end to ~50 s.
    (m,) = nat.mappings()
    assert m.state_name == "ESTABLISHED"
    sim.run(52)
    assert nat.mappings() == [] and m.gone_at is not None and 50 * SEC < m.gone_at < 51 * SEC
    # The client does not know: its next segment finds no mapping and dies at the NAT.
    c1.call_at(55 * SEC, lambda: client.sock.send(b"PING\r\n"))
    sim.run(56)
    assert drops(sim, "nat-no-mapping")
    assert nat.counters["no_mapping"] >= 1


def test_unanswered_syn_keeps_a_syn_sent_entry_for_120_s() -> None:
    sim, (c1, _), srv, nat = world()
    c1.socket().connect(SRV, 9)  # nothing listens: the server answers with an RST
    sim.run(1)
    (m,) = nat.mappings()
    assert m.state_name == "CLOSE" and m.expires - m.created < 11 * SEC  # RST: close, 10 s
    sim2, (d1, _), _, nat2 = world()
    sim2.fault("drop from=nat flags=S count=all")  # the SYNs never reach anyone
    d1.socket().connect(SRV, 9)
    sim2.run(2)
    (m2,) = nat2.mappings()
    assert m2.state_name == "SYN_SENT" and not m2.seen_reply
    assert "[UNREPLIED]" in nat2.table_text()
    assert m2.expires == max(r[0] for r in fwds(sim2)) + 120 * SEC


def _raw(nat_node: Nat, sim: Simulation, src: str, sport: int, dst: str, dport: int, seq: int, flags: int):
    seg = Segment(ip_aton(src), ip_aton(dst), sport, dport, seq, 1 if flags & ACK else 0, flags, 1000)
    seg.born = sim.sched.now
    nat_node.receive(seg)


def test_conntrack_states_of_a_server_first_close() -> None:
    sim = Simulation(seed=1)
    nat = sim.add_node(Nat("nat", PUB, "192.168.1.0/24"))
    seen = []
    steps = [  # (direction, flags, state after)
        ("out", SYN, "SYN_SENT"), ("in", SYN | ACK, "SYN_RECV"), ("out", ACK, "ESTABLISHED"),
        ("in", FIN | ACK, "FIN_WAIT"), ("out", ACK, "CLOSE_WAIT"), ("out", FIN | ACK, "LAST_ACK"),
        ("in", ACK, "TIME_WAIT"), ("out", SYN, "SYN_SENT"),  # a SYN reopens a TIME_WAIT entry
    ]
    for d, flags, _ in steps:
        if d == "out":
            _raw(nat, sim, C1, 40000, SRV, 80, 100, flags)
        else:
            _raw(nat, sim, SRV, 80, PUB, 40000, 500, flags)
        (m,) = nat.mappings()
        seen.append(m.state_name)
    assert seen == [s for _, _, s in steps]
    assert m.assured and nat.counters["created"] == 1


def test_exhaustion_of_public_ports() -> None:
    sim, hosts, srv, nat = world({"port_range": (50000, 50001)}, clients=(C1, C2, C3))
    PingServer(srv, 6379)
    clients = [NcClient(h, SRV, 6379, lines=[(1.0, b"PING\r\n")]) for h in hosts]
    sim.run(5)
    assert [bytes(c.received) for c in clients[:2]] == [b"+PONG\r\n"] * 2
    assert clients[2].received == bytearray()
    assert sorted(m.pub_port for m in nat.mappings()) == [50000, 50001]
    dropped = drops(sim, "nat-exhausted")
    assert dropped and all(r[3].src == ip_aton(C3) and r[3].flags == SYN for r in dropped)
    assert nat.counters["exhausted"] == len(dropped) >= 2  # the SYN and its retransmissions
    # c3 gives up; the SYN never reached the server.
    assert not any(r[1] == RX and r[2] == "srv" and r[3].sport not in (50000, 50001) for r in sim.trace.records)


def test_closed_flows_hold_their_port_until_the_entry_expires() -> None:
    sim, (c1, c2), srv, nat = world({"port_range": (50000, 50000)})
    PingServer(srv, 6379)
    NcClient(c1, SRV, 6379, lines=[(1.0, b"PING\r\n")], close_at_s=2.0)
    sim.run(3)
    (m,) = nat.mappings()
    assert m.state_name == "TIME_WAIT"
    gone = m.expires
    late: list[NcClient] = []
    # c2 connects 7 s before the entry expires: its SYNs at 115..119 s find no port.
    sim.at(115, lambda: late.append(NcClient(c2, SRV, 6379, lines=[(130.0, b"PING\r\n")])))
    sim.run(gone / SEC - 0.001)
    assert nat.counters["exhausted"] >= 5 and late[0].received == bytearray()
    assert nat.mappings() == [m]
    sim.run(140)
    # The first SYN retransmission after the TIME_WAIT entry expired got the port.
    assert [x.private for x in nat.mappings()] == [f"{C2}:{late[0].sock.lport}"]
    assert nat.mappings()[0].pub_port == 50000 and bytes(late[0].received) == b"+PONG\r\n"
    assert nat.mappings()[0].created > gone


@pytest.mark.parametrize("evict,seq,expect", [(False, 5000, "nat-exhausted"), (True, 5000, None),
                                              (True, 500, "nat-exhausted")])
def test_recent_linux_evicts_a_closing_entry_for_a_syn_past_it(evict: bool, seq: int, expect: str | None) -> None:
    sim = Simulation(seed=1)
    nat = sim.add_node(Nat("nat", PUB, "192.168.1.0/24", port_range=(50000, 50000), evict_closing=evict))
    _raw(nat, sim, C1, 40000, SRV, 80, 1000, SYN)
    _raw(nat, sim, SRV, 80, PUB, 50000, 7, SYN | ACK)
    _raw(nat, sim, C1, 40000, SRV, 80, 1001, ACK)
    _raw(nat, sim, C1, 40000, SRV, 80, 1001, RST)  # CLOSE for 10 s
    _raw(nat, sim, C2, 40001, SRV, 80, seq, SYN)  # 5000 is past the old flow's sequence numbers
    reasons = [r[4] for r in sim.trace.records if r[1] == DROP and r[4].startswith("nat-")]
    assert reasons == ([expect] if expect else [])
    assert [m.private for m in nat.mappings()] == ([f"{C1}:40000"] if expect else [f"{C2}:40001"])
    assert nat.counters["evicted"] == (0 if expect else 1)


def test_one_public_port_serves_different_destinations() -> None:
    sim = Simulation(seed=1)
    nat = sim.add_node(Nat("nat", PUB, "192.168.1.0/24", port_range=(50000, 50000)))
    _raw(nat, sim, C1, 40000, SRV, 80, 1, SYN)
    _raw(nat, sim, C2, 40000, "198.51.100.20", 80, 1, SYN)
    _raw(nat, sim, C3, 40000, SRV, 80, 1, SYN)
    assert [m.public for m in nat.mappings()] == [f"{PUB}:50000"] * 2
    assert nat.counters["exhausted"] == 1


def test_unsolicited_packets_and_ttl() -> None:
    sim = Simulation(seed=1)
    nat = sim.add_node(Nat("nat", PUB, "192.168.1.0/24"))
    _raw(nat, sim, SRV, 80, PUB, 40000, 1, SYN)       # nobody inside asked
    _raw(nat, sim, SRV, 80, C1, 40000, 1, SYN)        # a private address from outside
    _raw(nat, sim, C1, 40000, SRV, 80, 1, ACK)        # an ACK of a flow the NAT never saw
    seg = Segment(ip_aton(C1), ip_aton(SRV), 40000, 80, 1, 0, SYN, 1000, ttl=1)
    nat.receive(seg)
    reasons = [r[4] for r in sim.trace.records if r[1] == DROP]
    assert reasons == ["nat-no-mapping"] * 3 + ["ttl"]
    assert nat.mappings() == []


def test_bad_configuration_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="IPv4 prefix"):
        Nat("nat", PUB, "192.168.1.0/33")
    with pytest.raises(UsageError, match="port range"):
        Nat("nat", PUB, port_range=(0, 10))


def test_table_text_looks_like_conntrack() -> None:
    sim, (c1, _), srv, nat = world()
    PingServer(srv, 6379)
    NcClient(c1, SRV, 6379, lines=[(1.0, b"PING\r\n")], bind_port=40000)
    sim.run(2)
    text = nat.table_text()
    first = text.splitlines()[0]
    assert first.startswith("tcp      6 43199") and " ESTABLISHED src=192.168.1.10 dst=198.51.100.10 " in first
    assert f"sport=40000 dport=6379 src={SRV} dst={PUB} sport=6379 dport=40000 [ASSURED]" in first
    assert text.splitlines()[-1].startswith("conntrack: 1 flow entries")
    assert nat.table()[0].to_json()["public"] == f"{PUB}:40000"
