"""S7: the TCP timestamps option (RFC 7323): encoding, negotiation, echo, offsets."""

from __future__ import annotations

from timewait.apps.basic import NcClient, NcServer
from timewait.scenarios import Lab, Param, scenario
from timewait.tcp.segment import ACK, SYN, encode
from timewait.trace import TX, select

C1, C2 = "10.211.55.5", "10.211.55.10"


@scenario(
    "timestamps",
    "S7: the timestamps option: kind 8 length 10, negotiated in the SYN, TSecr echoes TSval",
    params={"connections": Param(2, "connections from c1 to c2 (different source ports)", lo=1, hi=10000)},
    story="""
TCP timestamps (RFC 7323) are option kind 8, length 10: TSval and TSecr, 4 bytes each. The active
side offers it in its SYN when its net.ipv4.tcp_timestamps is not 0; the passive side answers with
one in the SYN-ACK only if its own setting allows it too; if either side leaves it out of the
handshake, neither uses it afterwards (the chapter's second capture). TSval is a 1 ms clock plus an
offset (mode 1: a per-4-tuple offset, so two connections' clocks look unrelated; mode 2: no
offset, TSval = uptime in ms); TSecr echoes the peer's latest TSval. No clock synchronisation is
needed: only each sender's own values must grow.
""",
    contrast="Try --sysctl c2:net.ipv4.tcp_timestamps=0 (SYN-ACK without TS: neither side uses it) or "
    "--sysctl c1:net.ipv4.tcp_timestamps=2 (no offset: TSval = uptime in ms).",
    mission="S7",
)
def run(lab: Lab) -> None:
    lab.need_trace()
    sim = lab.sim
    c1, c2 = lab.two_hosts("c1", lab.addr(C1), "c2", lab.addr(C2), delay_ms=0.5, uptime_s=(900.136, 4321.0))
    n = lab.p["connections"]  # >= 1 by its range
    for i in range(n):
        NcServer(c2, 8888 + i, close_delay_s=0.002)
        NcClient(c1, lab.addr(C2), 8888 + i, lines=[(0.1 + i, b"hello\n")], close_at_s=0.2 + i)
    lab.run(n + 1.0)

    mode1, mode2 = c1.cfg.timestamps, c2.cfg.timestamps
    both = bool(mode1 and mode2)
    txs = list(select(sim.trace.records, TX))
    conn0 = [r for r in txs if 8888 in (r.seg.sport, r.seg.dport) and r.seg.dport != 0]
    syn = next(r.seg for r in conn0 if r.seg.flags & (SYN | ACK) == SYN)
    synack = next((r.seg for r in conn0 if r.seg.flags & (SYN | ACK) == SYN | ACK), None)
    rest = [r for r in conn0 if not r.seg.flags & SYN]
    raw = encode(syn)
    opt_at = raw.find(bytes((8, 10)), 40)
    m = lab.metrics
    m.update(client_mode=mode1, server_mode=mode2, syn_has_ts=syn.ts is not None,
             synack_has_ts=synack is not None and synack.ts is not None,
             segments=[{"t": round(r.t / 1e6, 6), "from": r.node, "flags": r.seg.flags,
                        "tsval": r.seg.ts[0] if r.seg.ts else None, "tsecr": r.seg.ts[1] if r.seg.ts else None}
                       for r in conn0],
             syn_option_bytes=raw[opt_at:opt_at + 10].hex() if opt_at > 0 else None)
    lab.check("the SYN offers timestamps iff the client's tcp_timestamps != 0", (syn.ts is not None) == bool(mode1),
              f"client mode {mode1}, SYN TS {syn.ts}")
    if syn.ts is not None:
        lab.check("on the wire: kind 8, length 10, TSval and TSecr 4 bytes each, TSecr 0 in the SYN",
                  opt_at > 0 and raw[opt_at + 6:opt_at + 10] == b"\0\0\0\0", f"option bytes {m['syn_option_bytes']}")
    lab.check("the SYN-ACK carries timestamps only if both ends allow them",
              synack is not None and (synack.ts is not None) == both, f"server mode {mode2}, SYN-ACK TS "
              f"{synack.ts if synack else None}")
    lab.check("after the handshake timestamps are on every segment, or on none",
              all((r.seg.ts is not None) == both for r in rest),
              f"{sum(r.seg.ts is not None for r in rest)}/{len(rest)} later segments carry the option")
    if not both:
        lab.say("One side left timestamps out of the handshake, so neither side uses them: no PAWS, and "
                "no tcp_tw_reuse for these connections.")
        return
    # Each TSecr echoes the latest TSval received from the peer; TSvals never go backwards.
    last_from = {"c1": 0, "c2": 0}
    echo_ok = mono_ok = True
    prev = {"c1": None, "c2": None}
    for r in conn0:
        h, peer = r.node, "c2" if r.node == "c1" else "c1"
        tsval, tsecr = r.seg.ts
        if not r.seg.flags & SYN or r.seg.flags & ACK:
            echo_ok &= tsecr == last_from[peer]
        if prev[h] is not None:
            mono_ok &= ((tsval - prev[h]) & 0xFFFFFFFF) < 0x80000000
        prev[h] = tsval
        last_from[h] = tsval
    lab.check("TSecr echoes the peer's latest TSval", echo_ok, "checked on every segment of the first connection")
    lab.check("each side's TSval is a monotonic 1 ms clock", mono_ok, "no TSval went backwards")
    if mode1 == 2:
        lab.check("mode 2: TSval = the host's uptime in ms (no offset)", syn.ts[0] == c1.cfg.ts_clock(0),
                  f"SYN TSval {syn.ts[0]} at uptime {c1.cfg.ts_base_ms} ms")
    elif n > 1:
        other = next(r.seg for r in txs if r.seg.dport == 8889 and r.seg.flags & (SYN | ACK) == SYN)
        dt_ms = 1000  # the second connection starts 1 s later
        gap = (other.ts[0] - syn.ts[0] - dt_ms) & 0xFFFFFFFF
        m["offset_gap"] = gap
        lab.check("mode 1: each 4-tuple has its own random offset, so two connections' TSvals are unrelated",
                  gap not in (0,), f"TSval difference beyond the elapsed 1000 ms: {gap}")
