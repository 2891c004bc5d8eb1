"""ttl on the kernel: real routers in namespaces decrement TTL and answer ICMP time-exceeded.

Each router R1..Rn is a namespace with ``net.ipv4.ip_forward=1`` (a per-namespace
setting), joined to the next by a veth; c1 (TTL 12, its namespace's
``net.ipv4.ip_default_ttl``) hangs off R1 on a veth, c3 (TTL 64) on the lab's
emulated path (kernel/path.py), which holds c3's 2nd and 3rd data segments as
the simulator's network does and, like it, discards a packet older than MSL
(30 s: TCP_TIMEWAIT_LEN / 2) -- the one thing here no real network does. What
every interface saw is read by taps (kernel/hops.py) and becomes the trace the
simulator's own checks (``scenarios.ttl.judge``) read: the TTL on every link is
what the real routers wrote, the drop at TTL 0 is the real router's ICMP.
"""

from __future__ import annotations

import socket
import subprocess
import threading

from timewait.errors import UsageError
from timewait.kernel.apps import ReadingServer, drain
from timewait.kernel.hops import Taps, assign
from timewait.kernel.scenarios import KLab, kscenario
from timewait.scenarios.ttl import C1, C2, C3, LINES, PORT, TTL_SYSCTL, judge
from timewait.tcp.segment import ip_aton
from timewait.trace import DROP, DUP, HOLD, NOTE, views

MSL_S = 30.0  # Linux's TIME_WAIT (TCP_TIMEWAIT_LEN, 60 s) is 2 MSL: the path's packet lifetime
MAX_HOPS = 32  # one namespace per router


def router_addr(i: int) -> str:
    """Router ``Ri``'s address (the simulator's: 192.0.2.i), on each of its interfaces."""
    return f"192.0.2.{i}"


def validate(p: dict[str, object]) -> None:
    """What this twin cannot build or would not show, refused before any namespace is made."""
    hops, hold, short_hold = p["hops"], p["hold"], p["short_hold"]
    assert isinstance(hops, int) and isinstance(hold, float) and isinstance(short_hold, float)
    if hops > MAX_HOPS:
        raise UsageError(f"--set hops={hops}: the kernel lab builds at most {MAX_HOPS} routers (a namespace each)")
    if short_hold > MSL_S or hold <= MSL_S:
        raise UsageError(f"--set hold={hold:g} short_hold={short_hold:g}: on the kernel hold must be more than MSL "
                         f"({MSL_S:g} s) and short_hold at most it, as the scenario's story has them")


@kscenario(
    "ttl",
    no_ipv6="its hops (kernel/hops.py) age IPv4 TTLs and read ICMP time-exceeded, not IPv6 hop limits and ICMPv6",
    validate=validate,
    kernel_defaults={"hold": 35.0},
    note="ttl on the kernel: each router is a namespace with ip_forward=1; c3's link to R1 is the lab's "
         "emulated path, which holds two of c3's segments and (as the simulator's network) discards a packet "
         "older than MSL = 30 s. About 40 s.",
)
def run(lab: KLab) -> None:
    p = lab.p
    hops = p["hops"]
    k = lab.k
    routers = [f"R{i}" for i in range(1, hops + 1)]
    for name, addr in (("c1", C1), ("c3", C3), ("c2", C2)):
        lab.host(name, addr)
    for i, r in enumerate(routers, 1):
        lab.host(r, router_addr(i), kind="router")
    # /32 addresses and on-link routes: every link is a point-to-point hop, as in the simulator.
    k.link("c1", f"{C1}/32", "R1", f"{router_addr(1)}/32", prefixlen=32)
    for i in range(1, hops):
        k.link(routers[i - 1], f"{router_addr(i)}/32", routers[i], f"{router_addr(i + 1)}/32", prefixlen=32)
    k.link(routers[-1], f"{router_addr(hops)}/32", "c2", f"{C2}/32", prefixlen=32)
    path = lab.path("c3", f"{C3}/32", "R1", f"{router_addr(1)}/32", delay_ms=1.0, a_routes=("default",),
                    b_routes=(f"{C3}/32",), max_age_s=MSL_S)
    _ip(lab, "c1", f"route add {router_addr(1)}/32 dev eth0", f"route add default via {router_addr(1)} dev eth0")
    _ip(lab, "c2", f"route add {router_addr(hops)}/32 dev eth0", f"route add default via {router_addr(hops)} dev eth0")
    for i, r in enumerate(routers, 1):
        back = "eth0"  # toward c1 (and c3) from R2 on; R1's eth0 is c1's own link
        fwd = "eth1"
        cmds = []
        if i == 1:
            cmds.append(f"route add {C1}/32 dev eth0")  # c3's route is on tun0 (the path)
        else:
            cmds += [f"route add {C1}/32 via {router_addr(i - 1)} dev {back} onlink",
                     f"route add {C3}/32 via {router_addr(i - 1)} dev {back} onlink"]
        if i == hops:
            cmds.append(f"route add {C2}/32 dev {fwd}")
        else:
            cmds.append(f"route add {C2}/32 via {router_addr(i + 1)} dev {fwd} onlink")
        _ip(lab, r, *cmds)
    k.sysctl("c1", TTL_SYSCTL, str(p["ttl"]))  # the scenario's TTL; a --sysctl c1:... wins (ready)
    lab.ready()
    taps = Taps(lab.rel)
    for name in ("c1", "c2"):
        taps.add(name, k.ns(name), "eth0", router=False, track=k.socks.append)
    taps.add("c3", k.ns("c3"), "tun0", router=False, track=k.socks.append)
    for r in routers:
        for ifname in ("eth0", "eth1", *(("tun0",) if r == "R1" else ())):
            taps.add(r, k.ns(r), ifname, router=True, track=k.socks.append)
    taps.start()
    server = _Sink(lab)
    ttl1, ttl3 = lab.sysctl_int("c1", TTL_SYSCTL), lab.sysctl_int("c3", TTL_SYSCTL)
    lab.start_clock()
    path.fault(f"hold {p['hold']} from=c3 flags=P. nth=2")
    path.fault(f"hold {p['short_hold']} from=c3 flags=P. nth=3")
    c1_result: list[tuple[float, str]] = []
    t1 = threading.Thread(target=_c1, args=(lab, p["give_up"], c1_result), daemon=True)
    t1.start()
    s3 = k.socket("c3")
    s3.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # the simulator has no Nagle: each line leaves
    s3.settimeout(5)
    s3.connect((C2, PORT))
    for i, line in enumerate(LINES):
        lab.sleep_until(1.0 + i * 0.1)
        s3.sendall(line)
    end = 1.2 + max(p["hold"], p["short_hold"]) + 2
    lab.sleep_until(end)
    s3.shutdown(socket.SHUT_WR)
    drain(s3)
    k.forget(s3)
    t1.join(timeout=p["give_up"] + 5)
    lab.sleep_until(end + 2)
    lab.t_end = lab.now()
    server.stop()
    received = server.received
    taps.stop()
    path.stop()
    lab.paths.remove(path)
    kept = [r for r in path.records if r[1] in (HOLD, DUP, NOTE, DROP)]  # its TX/RX: the taps saw them
    lab.trace_records = assign(kept, taps.records())
    if c1_result:
        lab.metrics["c1_connect"] = {"at": round(c1_result[0][0], 4), "result": c1_result[0][1]}
    lab.metrics["icmp_received_by_c1"] = sum(1 for _t, h, kind in taps.icmp_received if h == "c1" and kind == 11)
    judge(lab, views(lab.trace_records), ttl1=ttl1, ttl3=ttl3, hops=hops, msl_s=MSL_S,
          received={ip_aton(a): b for a, b in received.items()}, c1_addr=ip_aton(C1), c3_addr=ip_aton(C3))


def _c1(lab: KLab, give_up: float, result: list[tuple[float, str]]) -> None:
    """c1 connects like ``nc -w GIVE_UP``: what connect() says, and when."""
    import errno

    s = lab.k.socket("c1")
    s.settimeout(give_up)
    try:
        s.connect((C2, PORT))
        result.append((lab.now(), "connected"))
    except TimeoutError:
        result.append((lab.now(), "timed out (gave up)"))
    except OSError as e:
        result.append((lab.now(), errno.errorcode.get(e.errno or 0, str(e.errno))))
    finally:
        lab.k.forget(s)


def _ip(lab: KLab, host: str, *cmds: str) -> None:
    r = subprocess.run(["ip", "-n", lab.k.ns(host), "-batch", "-"], input="\n".join(cmds) + "\n",
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise RuntimeError(f"ip in {host} failed: {r.stderr.strip()}")


class _Sink(ReadingServer):
    """The simulator's _Sink on the kernel: keeps listening, keeps what arrives per peer address."""

    def __init__(self, lab: KLab) -> None:
        self.received: dict[str, bytes] = {}
        super().__init__(lab.k, "c2", C2, PORT, 16, close_delay=0.001)

    def got(self, peer: str, data: bytes) -> None:
        self.received[peer] = self.received.get(peer, b"") + data
