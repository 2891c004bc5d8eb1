"""S7 on the kernel: the Timestamps option, negotiated in the handshake per host setting.

Set each host with ``--sysctl c1:net.ipv4.tcp_timestamps=0|1|2`` (and c2). A
capture on c1 shows the option bytes, TSval and TSecr of every segment; the
kernel's TS clock is CLOCK_MONOTONIC in ms, which mode 2 shows without offset.
"""

from __future__ import annotations

import time

from timewait.kernel.apps import Worker, connect
from timewait.kernel.capture import ACK, SYN, Capture, Pkt
from timewait.kernel.scenarios import KLab, kscenario
from timewait.tcp.seq import before

C1, C2 = "10.211.55.5", "10.211.55.10"


@kscenario("timestamps", no_ipv6=None)
def run(lab: KLab) -> None:
    k = lab.k
    c1, c2 = lab.addr(C1), lab.addr(C2)
    lab.two_hosts("c1", c1, "c2", c2)
    lab.ready()
    mode1, mode2 = (lab.sysctl_int(h, "net.ipv4.tcp_timestamps") for h in ("c1", "c2"))
    n = max(1, lab.p["connections"])
    server = Worker(k, "c2", "nc", c2, [8888 + i for i in range(n)], close_delay=0.002)
    cap = Capture(k, "c1")
    lab.start_clock()
    for i in range(n):  # as the simulator: connect at i s, a line at 0.1 + i, close at 0.2 + i
        lab.sleep_until(float(i))
        s = connect(k, "c1", c2, 8888 + i)
        lab.sleep_until(0.1 + i)
        s.sendall(b"hello\n")
        lab.sleep_until(0.2 + i)
        k.forget(s)
    lab.sleep_until(n + 0.1)
    lab.t_end = lab.now()
    mono_minus_wall = time.monotonic() - time.time()
    pkts = cap.stop()
    server.stop()
    _report(lab, pkts, mode1, mode2, n, mono_minus_wall)



def _report(lab: KLab, pkts: list[Pkt], mode1: int, mode2: int, n: int, mono_minus_wall: float) -> None:
    c1, c2 = lab.addr(C1), lab.addr(C2)
    both = bool(mode1 and mode2)
    conn0 = [x for x in pkts if 8888 in (x.sport, x.dport)]
    syn = next((x for x in conn0 if x.flags & (SYN | ACK) == SYN), None)
    synack = next((x for x in conn0 if x.flags & (SYN | ACK) == SYN | ACK), None)
    rest = [x for x in conn0 if not x.flags & SYN]
    opt_at = syn.opts.find(bytes((8, 10))) if syn else -1
    m = lab.metrics
    m.update(client_mode=mode1, server_mode=mode2, syn_has_ts=syn is not None and syn.ts is not None,
             synack_has_ts=synack is not None and synack.ts is not None,
             segments=[{"t": round(lab.rel(x.t), 6), "from": "c1" if x.src == c1 else "c2", "flags": x.flags,
                        "tsval": x.ts[0] if x.ts else None, "tsecr": x.ts[1] if x.ts else None} for x in conn0],
             syn_option_bytes=syn.opts[opt_at:opt_at + 10].hex() if syn and opt_at >= 0 else None)
    if syn is None:
        lab.check("the SYN offers timestamps iff the client's tcp_timestamps != 0", False, "no SYN captured")
        return
    lab.check("the SYN offers timestamps iff the client's tcp_timestamps != 0", (syn.ts is not None) == bool(mode1),
              f"client mode {mode1}, SYN TS {syn.ts}")
    if syn.ts is not None:
        lab.check("on the wire: kind 8, length 10, TSval and TSecr 4 bytes each, TSecr 0 in the SYN",
                  opt_at >= 0 and syn.opts[opt_at + 6:opt_at + 10] == b"\0\0\0\0",
                  f"option bytes {m['syn_option_bytes']}")
    lab.check("the SYN-ACK carries timestamps only if both ends allow them",
              synack is not None and (synack.ts is not None) == both,
              f"server mode {mode2}, SYN-ACK TS {synack.ts if synack else None}")
    lab.check("after the handshake timestamps are on every segment, or on none",
              all((x.ts is not None) == both for x in rest),
              f"{sum(x.ts is not None for x in rest)}/{len(rest)} later segments carry the option")
    if not both:
        lab.say("One side left timestamps out of the handshake, so neither side uses them.")
        return
    last_from = {c1: 0, c2: 0}
    prev: dict[str, int | None] = {c1: None, c2: None}
    echo_ok = mono_ok = True
    for x in conn0:
        peer = c2 if x.src == c1 else c1
        tsval, tsecr = x.ts  # type: ignore[misc]
        if not x.flags & SYN or x.flags & ACK:
            echo_ok &= tsecr == last_from[peer]
        if prev[x.src] is not None:
            mono_ok &= not before(tsval, prev[x.src])  # type: ignore[operator]
        prev[x.src] = tsval
        last_from[x.src] = tsval
    lab.check("TSecr echoes the peer's latest TSval", echo_ok, "checked on every segment of the first connection")
    lab.check("each side's TSval is a monotonic 1 ms clock", mono_ok, "no TSval went backwards")
    if mode1 == 2:
        clock = int((syn.t + mono_minus_wall) * 1000) & 0xFFFFFFFF  # CLOCK_MONOTONIC in ms when the SYN left
        diff = ((syn.ts[0] - clock + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)  # type: ignore[index]
        lab.check("mode 2: TSval = the host's uptime in ms (no offset)", abs(diff) < 50,
                  f"SYN TSval {syn.ts[0]}, CLOCK_MONOTONIC {clock} ms: {diff} ms apart")  # type: ignore[index]
    elif n > 1:
        other = next((x for x in pkts if x.dport == 8889 and x.flags & (SYN | ACK) == SYN), None)
        if other is not None and other.ts is not None:
            dt_ms = round((other.t - syn.t) * 1000)
            gap = (other.ts[0] - syn.ts[0] - dt_ms) & 0xFFFFFFFF  # type: ignore[index]
            m["offset_gap"] = gap
            lab.check("mode 1: each 4-tuple has its own random offset, so two connections' TSvals are unrelated",
                      min(gap, (1 << 32) - gap) > 50, f"TSval difference beyond the elapsed {dt_ms} ms: {gap}")
