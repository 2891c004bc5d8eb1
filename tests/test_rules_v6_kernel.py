"""Linux as the judge of V6-2..V6-6 (docs/linux-rules.md): the same socket calls on a simulated
dual-stack host and on real sockets in a namespace the test makes, errno for errno.

Each case is a sequence of calls on one host with 10.0.0.1 and fd00::1; every call's outcome
("ok" or Linux's errno name) must be the same on both stacks, and the expected one. Needs root
and network namespaces (skipped with the reason otherwise).
"""

from __future__ import annotations

import errno
import socket
from typing import Any

import pytest

from kernel_support import kernel_lab
from timewait.sim.simulation import Simulation
from timewait.sim.socket import AF_INET, AF_INET6, IPV6_V6ONLY
from timewait.sim.socket_error import SocketError

pytestmark = pytest.mark.kernel

A4, A6, B4, B6 = "10.0.0.1", "fd00::1", "10.0.0.2", "fd00::2"
P = 8888

# (name, calls, expected outcomes). A call: ("socket", family) makes socket #n (n counts from 0);
# ("v6only", n, 0|1), ("reuse", n), ("bind", n, addr, port), ("listen", n).
V4, V6 = AF_INET, AF_INET6
CASES: list[tuple[str, list[tuple[Any, ...]], list[str]]] = [
    ("V6-2 :: without V6ONLY holds the port for IPv4 too",
     [("socket", V6), ("bind", 0, "::", P), ("socket", V4), ("bind", 1, "0.0.0.0", P)],
     ["ok", "ok", "ok", "EADDRINUSE"]),
    ("V6-2 :: with V6ONLY leaves IPv4 alone",
     [("socket", V6), ("v6only", 0, 1), ("bind", 0, "::", P), ("socket", V4), ("bind", 1, "0.0.0.0", P)],
     ["ok", "ok", "ok", "ok", "ok"]),
    ("V6-2 0.0.0.0 first: a dual-stack :: bind conflicts",
     [("socket", V4), ("bind", 0, "0.0.0.0", P), ("socket", V6), ("bind", 1, "::", P)],
     ["ok", "ok", "ok", "EADDRINUSE"]),
    ("V6-2 an IPv4 address first: a dual-stack :: bind conflicts",
     [("socket", V4), ("bind", 0, A4, P), ("socket", V6), ("bind", 1, "::", P)],
     ["ok", "ok", "ok", "EADDRINUSE"]),
    ("V6-2 SO_REUSEADDR on both, nobody listening: the binds share the port (PS-8)",
     [("socket", V6), ("reuse", 0), ("bind", 0, "::", P), ("socket", V4), ("reuse", 1),
      ("bind", 1, "0.0.0.0", P)],
     ["ok", "ok", "ok", "ok", "ok", "ok"]),
    ("V6-2 SO_REUSEADDR on both, :: listening: EADDRINUSE",
     [("socket", V6), ("reuse", 0), ("bind", 0, "::", P), ("listen", 0), ("socket", V4), ("reuse", 1),
      ("bind", 1, "0.0.0.0", P)],
     ["ok", "ok", "ok", "ok", "ok", "ok", "EADDRINUSE"]),
    ("V6-2 V6ONLY on an IPv4 socket is ENOPROTOOPT",
     [("socket", V4), ("v6only", 0, 1)],
     ["ok", "ENOPROTOOPT"]),
    ("V6-2 V6ONLY after bind is EINVAL",
     [("socket", V6), ("bind", 0, "::", P), ("v6only", 0, 1)],
     ["ok", "ok", "EINVAL"]),
    ("V6-3 a unicast IPv6 bind conflicts with no IPv4 bind",
     [("socket", V6), ("bind", 0, A6, P), ("socket", V4), ("bind", 1, "0.0.0.0", P)],
     ["ok", "ok", "ok", "ok"]),
    ("V6-3 a unicast IPv6 bind conflicts with ::",
     [("socket", V6), ("bind", 0, A6, P), ("socket", V6), ("bind", 1, "::", P)],
     ["ok", "ok", "ok", "EADDRINUSE"]),
    ("V6-4 a v4-mapped bind is an IPv4 bind",
     [("socket", V6), ("bind", 0, "::ffff:" + A4, P), ("socket", V4), ("bind", 1, A4, P)],
     ["ok", "ok", "ok", "EADDRINUSE"]),
    ("V6-4 a v4-mapped bind on a V6ONLY socket is EINVAL",
     [("socket", V6), ("v6only", 0, 1), ("bind", 0, "::ffff:" + A4, P)],
     ["ok", "ok", "EINVAL"]),
]


def on_sim(calls: list[tuple[Any, ...]]) -> list[str]:
    sim = Simulation(seed=1)
    a = sim.add_host("a", A4, A6)
    socks: list[Any] = []
    out = []
    for c in calls:
        try:
            if c[0] == "socket":
                socks.append(a.socket(c[1]))
            elif c[0] == "v6only":
                socks[c[1]].setsockopt(IPV6_V6ONLY, c[2])
            elif c[0] == "reuse":
                socks[c[1]].setsockopt("SO_REUSEADDR", 1)
            elif c[0] == "bind":
                socks[c[1]].bind(c[2], c[3])
            elif c[0] == "listen":
                socks[c[1]].listen()
            out.append("ok")
        except SocketError as e:
            out.append(e.errno_name)
    return out


def on_kernel(k: Any, calls: list[tuple[Any, ...]]) -> list[str]:
    socks: list[socket.socket] = []
    out = []
    for c in calls:
        try:
            if c[0] == "socket":
                socks.append(k.socket("a", c[1]))
            elif c[0] == "v6only":
                level = socket.IPPROTO_IPV6
                socks[c[1]].setsockopt(level, socket.IPV6_V6ONLY, c[2])
            elif c[0] == "reuse":
                socks[c[1]].setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            elif c[0] == "bind":
                socks[c[1]].bind((c[2], c[3]))
            elif c[0] == "listen":
                socks[c[1]].listen()
            out.append("ok")
        except OSError as e:
            out.append(errno.errorcode.get(e.errno or 0, str(e)))
    for s in socks:
        k.forget(s)
    return out


@pytest.fixture(scope="module")
def lab():
    with kernel_lab() as k:
        k.add_host("a")
        k.add_host("b")
        k.link("a", [f"{A4}/24", f"{A6}/112"], "b", [f"{B4}/24", f"{B6}/112"])
        yield k


@pytest.mark.parametrize("name,calls,want", CASES, ids=[c[0].split(" ", 1)[0] + ":" + c[0].split(" ", 1)[1][:40]
                                                         for c in CASES])
def test_bind_rules_across_families_match_the_kernel(lab: Any, name: str, calls: list, want: list[str]) -> None:
    assert on_kernel(lab, calls) == want, f"{name}: the kernel did otherwise"
    assert on_sim(calls) == want, f"{name}: the simulator differs from the kernel"


def test_V6_5_V6_6_dual_stack_listener_and_mapped_connect_match_the_kernel(lab: Any) -> None:
    """V6-5: an IPv4 client reaches a `::` listener without V6ONLY and is accepted with the
    v4-mapped name; a V6ONLY listener refuses it. V6-6: an AF_INET6 socket connects to
    ::ffff:a.b.c.d over IPv4; on a V6ONLY socket that connect is ENETUNREACH."""
    # The kernel.
    srv = lab.socket("a", socket.AF_INET6)
    srv.bind(("::", P + 1))
    srv.listen()
    cli = lab.socket("b", socket.AF_INET)
    cli.settimeout(2)
    cli.connect((A4, P + 1))
    conn, peer = srv.accept()
    k_peer = peer[0]
    only = lab.socket("a", socket.AF_INET6)
    only.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    only.bind(("::", P + 2))
    only.listen()
    refused = lab.socket("b", socket.AF_INET)
    refused.settimeout(2)
    k_refused = refused.connect_ex((A4, P + 2))
    mapped = lab.socket("b", socket.AF_INET6)
    mapped.settimeout(2)
    k_mapped = mapped.connect_ex(("::ffff:" + A4, P + 1))
    strict = lab.socket("b", socket.AF_INET6)
    strict.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    k_strict = strict.connect_ex(("::ffff:" + A4, P + 1))
    for s in (srv, cli, conn, only, refused, mapped, strict):
        s.close()
    assert (k_peer, errno.errorcode[k_refused], k_mapped, errno.errorcode[k_strict]) == (
        "::ffff:" + B4, "ECONNREFUSED", 0, "ENETUNREACH")

    # The simulator, the same calls.
    sim = Simulation(seed=1)
    a = sim.add_host("a", A4, A6)
    b = sim.add_host("b", B4, B6)
    sim.link(a, b, delay_ms=0.1)
    errors: dict[str, str] = {}
    lsock = a.socket(AF_INET6)
    lsock.bind("::", P + 1)
    lsock.listen()
    o = a.socket(AF_INET6)
    o.setsockopt(IPV6_V6ONLY, 1)
    o.bind("::", P + 2)
    o.listen()
    c1 = b.socket(AF_INET)
    c1.connect(A4, P + 1)
    c2 = b.socket(AF_INET)
    c2.on_error = lambda s, e: errors.__setitem__("refused", e)
    c2.connect(A4, P + 2)
    c3 = b.socket(AF_INET6)
    c3.connect("::ffff:" + A4, P + 1)
    c4 = b.socket(AF_INET6)
    c4.setsockopt(IPV6_V6ONLY, 1)
    try:
        c4.connect("::ffff:" + A4, P + 1)
        s_strict = "ok"
    except SocketError as e:
        s_strict = e.errno_name
    sim.run(2)
    assert len(lsock.accept_queue) == 2, "the dual-stack listener did not accept both IPv4 clients"
    child = lsock.accept_queue[0]
    assert child.name_of(child.conn.raddr) == k_peer
    assert (errors.get("refused"), c3.state, c3.conn.raddr, s_strict) == (
        "ECONNREFUSED", "ESTABLISHED", c1.conn.raddr, "ENETUNREACH")
