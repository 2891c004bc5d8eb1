"""The NAT box with IPv6 (NAT66 masquerade): translation both ways with 16-byte addresses, the
incremental TCP checksum over the IPv6 pseudo-header, and families kept apart."""

from __future__ import annotations

from timewait.apps.basic import NcClient, PingServer
from timewait.sim.nat import Nat, full_checksums_ok, parse_prefix, rewrite_packet
from timewait.sim.simulation import Simulation
from timewait.tcp.segment import SYN, Segment, decode, encode, ip_aton
from timewait.trace import FWD, RX

PUB, SRV = "fd00:2::1", "fd00:3::10"
C1, C2 = "fd00:1::10", "fd00:1::11"


def world():
    sim = Simulation(seed=1)
    hosts = [sim.add_host(f"c{i + 1}", a) for i, a in enumerate((C1, C2))]
    srv = sim.add_host("srv", SRV)
    nat = sim.add_node(Nat("nat", PUB, "fd00:1::/64"))
    for h in hosts:
        sim.link(h, nat, delay_ms=1)
    sim.link(nat, srv, delay_ms=10)
    return sim, hosts, srv, nat


def test_ipv6_translation_both_ways_with_valid_checksums():
    sim, (c1, c2), srv, nat = world()
    PingServer(srv, 6379)
    NcClient(c1, SRV, 6379, lines=[(1.0, b"PING\r\n")], close_at_s=1.5)
    NcClient(c2, SRV, 6379, lines=[(1.0, b"PING\r\n")], close_at_s=1.5)
    sim.run(3)
    pub = ip_aton(PUB)
    seen = {r[3].src for r in sim.trace.records if r[1] == RX and r[2] == "srv"}
    assert seen == {pub}
    fwds = [r for r in sim.trace.records if r[1] == FWD and r[2] == "nat"]
    assert len(fwds) >= 16
    for _, _, _, sin, sout in fwds:
        assert sout.ttl == sin.ttl - 1
        wire = encode(sout)
        patched = rewrite_packet(encode(sin), src=sout.src, dst=sout.dst, sport=sout.sport,
                                 dport=sout.dport, ttl=sout.ttl)
        assert patched == wire and full_checksums_ok(patched)
        assert decode(patched).src == sout.src
    rows = nat.table()
    assert {r.public.rsplit(":", 1)[0] for r in rows} == {f"[{PUB}]"}
    line = rows[0].conntrack_line()
    assert f"dst={PUB} " in line and "[" not in line.replace("[ASSURED]", "").replace("[UNREPLIED]", "")


def test_a_broken_ipv6_sum_is_caught():
    seg = Segment(ip_aton(C1), ip_aton(SRV), 40000, 80, 1, 0, SYN, 64800)
    wire = bytearray(encode(seg))
    assert full_checksums_ok(bytes(wire))
    wire[9] ^= 1  # the source address: covered by the pseudo-header only
    assert not full_checksums_ok(bytes(wire))


def test_prefixes_of_one_family_never_match_the_other():
    net4, mask4 = parse_prefix("192.168.1.0/24")
    net6, mask6 = parse_prefix("fd00:1::/64")
    v4, v6 = ip_aton("192.168.1.7"), ip_aton("fd00:1::7")
    assert v4 & mask4 == net4 and v6 & mask6 == net6
    assert v6 & mask4 != net4 and v4 & mask6 != net6
    assert ip_aton("::c0a8:107") & mask4 != net4  # ::192.168.1.7 is not inside 192.168.1.0/24
