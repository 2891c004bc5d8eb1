"""IPv6 in the engine, Linux's way (rules V6-1..V6-9 in docs/linux-rules.md): the family of a
socket, IPV6_V6ONLY and the port space IPv4 and IPv6 share, dual-stack listeners, v4-mapped
connects, the IPv6 MSS, the IPv6 hashes, and hop limit / ICMPv6 time exceeded. Hosts are
dual-stack where the rule needs both families: c1 10.0.0.1 + fd00::1, c2 10.0.0.2 + fd00::2."""

from __future__ import annotations

import hashlib

import pytest

from conftest import states, tx, tx_segments
from test_rules_host import dial, serve
from timewait.sim.host import SocketError
from timewait.sim.simulation import Simulation
from timewait.sim.socket import AF_INET, AF_INET6, AF_UNSPEC, IPV6_V6ONLY
from timewait.tcp.config import SEC
from timewait.tcp.isn import SecureSeq
from timewait.tcp.segment import SYN, V6, ip_aton, ip_packed
from timewait.tcp.timewait import is_loopback
from timewait.trace import DROP, ICMP


def dual_lan(sysctls: list[str] | None = None):
    sim = Simulation(seed=1, sysctls=sysctls)
    c1 = sim.add_host("c1", "10.0.0.1", "fd00::1", uptime_s=1000)
    c2 = sim.add_host("c2", "10.0.0.2", "fd00::2", uptime_s=1000)
    sim.link(c1, c2, delay_ms=0.5)
    return sim, c1, c2


def serve6(host, port: int = 8888):
    """A dual-stack listener on [::]:port whose accepted sockets close on EOF."""
    ls = host.socket(AF_INET6)
    ls.bind("::", port)
    ls.listen()

    def on_accept(ls) -> None:
        while (s := ls.accept()) is not None:
            s.on_eof = lambda s: s.close()

    ls.on_accept = on_accept
    return ls


def errno_of(fn, *args) -> str | None:
    try:
        fn(*args)
    except SocketError as e:
        return e.errno_name
    return None


# ---------------------------------------------------------------- V6-1: the family of a socket


def test_V6_1_family_follows_the_first_address_and_a_mismatch_is_eafnosupport():
    _, c1, _ = dual_lan()
    s = c1.socket()
    assert s.family == AF_UNSPEC
    s.bind("fd00::1", 0)
    assert (s.family, s.v6only) == (AF_INET6, True)
    s4 = c1.socket()
    s4.bind(0, 0)
    assert s4.family == AF_INET and s4.laddr == 0  # wildcard: the host's first address is IPv4
    s6 = c1.socket(AF_INET6)
    s6.bind(0, 0)
    assert s6.laddr == ip_aton("::") == V6  # 0 on an AF_INET6 socket is ::
    assert errno_of(c1.socket(AF_INET).bind, "fd00::1", 0) == "EAFNOSUPPORT"
    assert errno_of(c1.socket(AF_INET6).bind, "10.0.0.1", 0) == "EAFNOSUPPORT"
    assert errno_of(c1.socket(AF_INET).connect, "fd00::2", 80) == "EAFNOSUPPORT"
    assert errno_of(c1.socket(AF_INET6).connect, "10.0.0.2", 80) == "EAFNOSUPPORT"
    assert errno_of(c1.socket().bind, "fd00::9", 0) == "EADDRNOTAVAIL"


def test_V6_1_a_v6_only_host_listens_on_the_ipv6_wildcard():
    sim = Simulation(seed=1)
    c2 = sim.add_host("c2", "fd00::2")
    ls = serve(c2)[0]
    assert (ls.family, ls.laddr, ls.v6only) == (AF_INET6, V6, False)
    assert list(c2.listeners) == [(V6, 8888)]


def test_V6_1_connect_without_an_address_of_the_family_is_enetunreach():
    sim = Simulation(seed=1)
    c1 = sim.add_host("c1", "10.0.0.1")
    assert errno_of(c1.socket().connect, "fd00::2", 80) == "ENETUNREACH"


# ---------------------------------------------------------------- V6-2, V6-3, V6-4: one port space


@pytest.mark.parametrize(("first", "second", "v6only", "expected"), [
    ("::", "0.0.0.0", False, "EADDRINUSE"),      # the dual-stack wildcard covers IPv4
    ("0.0.0.0", "::", False, "EADDRINUSE"),
    ("::", "10.0.0.2", False, "EADDRINUSE"),
    ("::", "0.0.0.0", True, None),                # IPV6_V6ONLY: IPv6 only, no overlap
    ("0.0.0.0", "::", True, None),
    ("10.0.0.2", "::", True, None),
    ("::", "::", True, "EADDRINUSE"),
    ("fd00::2", "0.0.0.0", False, None),          # V6-3: a unicast IPv6 bind is IPv6-only
    ("0.0.0.0", "fd00::2", False, None),
    ("fd00::2", "::", False, "EADDRINUSE"),
    ("::", "fd00::2", False, "EADDRINUSE"),
    ("fd00::2", "fd00::2", False, "EADDRINUSE"),
    ("::ffff:10.0.0.2", "10.0.0.2", False, "EADDRINUSE"),  # V6-4: a v4-mapped bind is an IPv4 one
    ("::ffff:10.0.0.2", "0.0.0.0", False, "EADDRINUSE"),
    ("::ffff:10.0.0.2", "fd00::2", False, None),
])
def test_V6_2_V6_3_V6_4_bind_conflicts_across_families(first, second, v6only, expected):
    """``inet_csk_bind_conflict`` with ``inet_rcv_saddr_equal``: IPv6 sockets get ``v6only``."""
    _, _, c2 = dual_lan()

    def sock(addr: str):
        fam = AF_INET6 if ":" in addr else AF_INET
        s = c2.socket(fam)
        if fam == AF_INET6 and v6only and not addr.startswith("::ffff:"):
            s.setsockopt(IPV6_V6ONLY, 1)
        return s

    a = sock(first)
    a.bind(first, 8888)
    a.listen()
    assert errno_of(sock(second).bind, second, 8888) == expected


def test_V6_2_reuseaddr_on_both_and_no_listener_shares_the_port_across_families():
    _, _, c2 = dual_lan()
    a = c2.socket(AF_INET6)
    a.setsockopt("SO_REUSEADDR", 1)
    a.bind("::", 8888)
    b = c2.socket(AF_INET)
    b.setsockopt("SO_REUSEADDR", 1)
    b.bind("0.0.0.0", 8888)  # neither listens: sk_reuse on both lets them share
    a.listen()
    c = c2.socket(AF_INET)
    c.setsockopt("SO_REUSEADDR", 1)
    assert errno_of(c.bind, "0.0.0.0", 8888) == "EADDRINUSE"  # a listener never shares


def test_V6_2_v6only_is_an_ipv6_option_and_fixed_once_bound():
    _, c1, _ = dual_lan()
    assert errno_of(c1.socket(AF_INET).setsockopt, IPV6_V6ONLY, 1) == "ENOPROTOOPT"
    s = c1.socket(AF_INET6)
    s.bind("::", 5000)
    assert errno_of(s.setsockopt, IPV6_V6ONLY, 1) == "EINVAL"
    u = c1.socket()
    u.setsockopt(IPV6_V6ONLY, 1)
    assert (u.family, u.v6only) == (AF_INET6, True)


def test_V6_3_a_failed_bind_leaves_the_socket_as_it_was():
    _, _, c2 = dual_lan()
    c2.socket(AF_INET6).bind("fd00::2", 8888)
    s = c2.socket(AF_INET6)
    assert errno_of(s.bind, "fd00::2", 8888) == "EADDRINUSE"
    assert (s.v6only, s.laddr, s.bound) == (False, 0, False)
    s.bind("::", 9999)
    assert not s.v6only


def test_V6_4_a_v4_mapped_bind_on_a_v6_only_socket_is_einval():
    _, _, c2 = dual_lan()
    s = c2.socket(AF_INET6)
    s.setsockopt(IPV6_V6ONLY, 1)
    assert errno_of(s.bind, "::ffff:10.0.0.2", 8888) == "EINVAL"


# ---------------------------------------------------------------- V6-5: dual-stack listeners


def test_V6_5_a_dual_stack_listener_accepts_ipv4_with_an_ipv4_wire():
    sim, c1, c2 = dual_lan()
    ls = c2.socket(AF_INET6)
    ls.bind("::", 8888)
    ls.listen()
    accepted = []
    ls.on_accept = lambda s: accepted.append(s.accept())
    dial(c1, "10.0.0.2")
    sim.run(until_s=1)
    assert [(t, h, f) for t, h, f, *_ in tx(sim)] == [(0, "c1", "S"), (500, "c2", "S."), (1000, "c1", ".")]
    assert all(seg.src <= 0xFFFFFFFF and seg.dst <= 0xFFFFFFFF for _, seg in tx_segments(sim))
    (child,) = accepted
    assert (child.family, child.mapped, child.laddr) == (AF_INET6, True, ip_aton("10.0.0.2"))
    assert child.name_of(child.laddr) == "::ffff:10.0.0.2"
    assert child.name_of(child.conn.raddr) == "::ffff:10.0.0.1"
    assert tx_segments(sim, "c2")[0][1].mss == 1460  # an IPv4 connection: the IPv4 MSS


def test_V6_5_a_v6_only_listener_does_not_see_ipv4_so_the_syn_gets_a_reset():
    sim, c1, c2 = dual_lan()
    ls = c2.socket(AF_INET6)
    ls.setsockopt(IPV6_V6ONLY, 1)
    ls.bind("::", 8888)
    ls.listen()
    dial(c1, "10.0.0.2")
    sim.run(until_s=1)
    assert [(t, h, f) for t, h, f, *_ in tx(sim)] == [(0, "c1", "S"), (500, "c2", "R.")]


def test_V6_5_an_ipv4_listener_does_not_see_ipv6():
    sim, c1, c2 = dual_lan()
    ls = c2.socket(AF_INET)
    ls.bind(0, 8888)
    ls.listen()
    dial(c1, "fd00::2")
    sim.run(until_s=1)
    assert [(t, h, f) for t, h, f, *_ in tx(sim)] == [(0, "c1", "S"), (500, "c2", "R.")]


# ---------------------------------------------------------------- V6-6: v4-mapped connect


def test_V6_6_connect_to_a_v4_mapped_address_is_an_ipv4_connection():
    sim, c1, c2 = dual_lan()
    serve(c2)
    s = c1.socket(AF_INET6)
    s.connect("::ffff:10.0.0.2", 8888)
    sim.run(until_s=1)
    syn = tx_segments(sim, "c1")[0][1]
    assert (syn.src, syn.dst, syn.mss) == (ip_aton("10.0.0.1"), ip_aton("10.0.0.2"), 1460)
    assert s.mapped and s.name_of(s.laddr) == "::ffff:10.0.0.1" and s.state == "ESTABLISHED"
    v6only = c1.socket(AF_INET6)
    v6only.setsockopt(IPV6_V6ONLY, 1)
    assert errno_of(v6only.connect, "::ffff:10.0.0.2", 8888) == "ENETUNREACH"


# ---------------------------------------------------------------- V6-7: the IPv6 MSS


def test_V6_7_ipv6_handshake_advertises_mss_1440_and_windows_rounded_to_it():
    sim, c1, c2 = dual_lan()
    serve6(c2)
    dial(c1, "fd00::2", close_at=SEC)
    sim.run(until_s=3)
    segs = [s for _, s in tx_segments(sim)]
    syn, synack = segs[0], segs[1]
    assert (syn.flags, syn.mss, syn.win) == (SYN, 1440, 64800)       # 65536 rounded to 1440
    assert (synack.mss, synack.win) == (1440, 64260)                  # to 1428 (less timestamps)
    assert [s.mss for s in segs[2:]] == [None] * (len(segs) - 2)
    assert c1.ehash == {} and c1.tw_count() == 1
    assert states(sim, "c2")[-1][3] == "CLOSED"
    assert c1.cfg.mss == 1460 and c1.cfg_v6().mss == 1440            # IPv4 is untouched


# ---------------------------------------------------------------- V6-8: hashes and the shared port search


def test_V6_8_isn_hashes_the_16_byte_addresses():
    sec = SecureSeq(b"k" * 16)
    a, b = ip_aton("fd00::1"), ip_aton("fd00::2")
    isn, off = sec.seq_and_ts_off(a, b, 40000, 80, 0)
    key = hashlib.blake2b(b"k" * 16 + b"seq", digest_size=16).digest()
    data = ip_packed(a) + ip_packed(b) + (40000 << 16 | 80).to_bytes(4, "big")
    h = int.from_bytes(hashlib.blake2b(data, digest_size=8, key=key).digest(), "big")
    assert (isn, off) == (h & 0xFFFFFFFF, h >> 32)
    # ::a.b.c.d is not a.b.c.d: the IPv6 tuple hashes apart from the IPv4 one
    assert sec.seq_and_ts_off(a & ~V6 & 0xFFFFFFFF, b & 0xFFFFFFFF, 40000, 80, 0) != (isn, off)
    assert sec.port_offset(a, b, 80, 0) != sec.port_offset(1, 2, 80, 0)
    assert isinstance(sec.ts_off_per_host(a, b), int)


def test_V6_8_ipv4_and_ipv6_connections_share_one_port_range():
    sim, c1, c2 = dual_lan(sysctls=["c1:net.ipv4.ip_local_port_range=40000 40000"])
    serve(c2)
    s4 = dial(c1, "10.0.0.2")
    s6 = dial(c1, "fd00::2")  # a different 4-tuple: the same local port
    assert s4.lport == s6.lport == 40000
    assert errno_of(dial, c1, "10.0.0.2") == "EADDRNOTAVAIL"
    assert errno_of(dial, c1, "fd00::2") == "EADDRNOTAVAIL"
    assert errno_of(c1.socket(AF_INET6).bind, "::", 40000) == "EADDRINUSE"  # one bucket for both


def test_V6_8_tw_reuse_2_knows_the_ipv6_loopback():
    assert is_loopback(ip_aton("::1")) and is_loopback(ip_aton("::ffff:127.0.0.1"))
    assert not is_loopback(ip_aton("::2")) and not is_loopback(ip_aton("fd00::7f00:1"))
    assert is_loopback(ip_aton("127.0.0.1")) and not is_loopback(ip_aton("10.0.0.1"))


# ---------------------------------------------------------------- V6-9: hop limit, ICMPv6 time exceeded


def test_V6_9_hop_limit_1_ends_the_connect_with_ehostunreach():
    sim = Simulation(seed=1, sysctls=["c1:net.ipv4.ip_default_ttl=1"])  # the hop limit too (V6-9)
    c1 = sim.add_host("c1", "fd00::1", uptime_s=1000)
    r1 = sim.add_router("R1", "fd00:1::1")
    c2 = sim.add_host("c2", "fd00::2", uptime_s=1000)
    sim.link(c1, r1, delay_ms=0.5)
    sim.link(r1, c2, delay_ms=0.5)
    serve(c2)
    errors = []
    s = dial(c1, "fd00::2")
    s.on_error = lambda sock, errno: errors.append((sim.sched.now, errno))
    sim.run(until_s=5)
    assert [(t, h, f) for t, h, f, *_ in tx(sim)] == [(0, "c1", "S")]
    syn = tx_segments(sim, "c1")[0][1]
    assert syn.ttl == 1 and syn.src == ip_aton("fd00::1")
    assert [(r[0], r[1], r[2], r[4]) for r in sim.trace.records if r[1] in (DROP, ICMP)] == [
        (500, DROP, "R1", "ttl"), (500, ICMP, "R1", "time-exceeded")]
    assert errors == [(1000, "EHOSTUNREACH")]
    assert c1.counters.get("TcpAttemptFails") == 1
