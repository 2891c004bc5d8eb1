"""S7 on the kernel: the Timestamps option, negotiated in the handshake per host setting.

Set each host with ``--sysctl c1:net.ipv4.tcp_timestamps=0|1|2`` (and c2). The
capture on c1 shows whether the SYN and the SYN-ACK carry the option, and
TCP_INFO whether the connection uses it.
"""

from __future__ import annotations

import time

from timewait.kernel.apps import Worker, connect, tcp_info_options
from timewait.kernel.capture import ACK, SYN, Capture
from timewait.kernel.diag import TCPI_OPT_TIMESTAMPS
from timewait.kernel.scenarios import KLab, Param, kscenario

C1, C2 = "10.211.55.5", "10.211.55.10"
PORT = 8888


@kscenario(
    "timestamps",
    params={
        "connections": Param(2, "connections from c1, one after another (TSval offsets differ per connection "
                             "with tcp_timestamps=1, not with 2)"),
    },
)
def run(lab: KLab) -> None:
    k = lab.k
    lab.host("c1", C1)
    lab.host("c2", C2)
    k.link("c1", f"{C1}/24", "c2", f"{C2}/24")
    lab.ready()
    mode = {h: lab.sysctl_int(h, "net.ipv4.tcp_timestamps") for h in ("c1", "c2")}
    server = Worker(k, "c2", "nc", C2, [PORT], close_delay=0.001)
    cap = Capture(k, "c1")
    lab.start_clock()
    used = []
    ports = []
    for i in range(max(1, lab.p["connections"])):
        s = connect(k, "c1", C2, PORT)
        ports.append(s.getsockname()[1])
        s.sendall(b"hello %d\n" % i)
        time.sleep(0.05)
        used.append(bool(tcp_info_options(s) & TCPI_OPT_TIMESTAMPS))
        k.forget(s)
        time.sleep(0.05)
    time.sleep(0.1)
    lab.t_end = lab.now()
    pkts = cap.stop()
    server.stop()

    m = lab.metrics
    per_conn = []
    for port in ports:
        mine = [x for x in pkts if port in (x.sport, x.dport)]
        syn = next((x for x in mine if x.flags & (SYN | ACK) == SYN and x.sport == port), None)
        synack = next((x for x in mine if x.flags & (SYN | ACK) == SYN | ACK), None)
        later = [x for x in mine if not x.flags & SYN]
        echo_ok = _echoes(mine, port)
        per_conn.append({"port": port, "syn_ts": syn.ts is not None if syn else None,
                         "synack_ts": synack.ts is not None if synack else None,
                         "later_ts": bool(later) and all(x.ts is not None for x in later if not x.flags & 0x04),
                         "syn_tsval": syn.ts[0] if syn and syn.ts else None, "syn_t": syn.t if syn else None,
                         "echo_ok": echo_ok})
    first = per_conn[0]
    syn_ts, synack_ts = first["syn_ts"], first["synack_ts"]
    negotiated = bool(used[0])
    m.update(c1_timestamps=mode["c1"], c2_timestamps=mode["c2"], syn_has_ts=syn_ts, synack_has_ts=synack_ts,
             negotiated=negotiated, data_segments_have_ts=first["later_ts"],
             tsval=[c["syn_tsval"] for c in per_conn])
    lab.check("the SYN carries a timestamp iff the client's tcp_timestamps is on",
              syn_ts == (mode["c1"] != 0), f"c1 tcp_timestamps={mode['c1']}; SYN option: {syn_ts}")
    lab.check("the SYN-ACK carries one iff the SYN did and the server's is on",
              synack_ts == (bool(syn_ts) and mode["c2"] != 0), f"c2 tcp_timestamps={mode['c2']}; SYN-ACK: {synack_ts}")
    lab.check("the connection uses timestamps iff both handshake segments carried them",
              negotiated == (bool(syn_ts) and bool(synack_ts)) and first["later_ts"] == negotiated,
              f"TCP_INFO timestamps: {negotiated}; later segments carry it: {first['later_ts']}")
    if negotiated:
        lab.check("each TSecr echoes the peer's latest TSval", all(c["echo_ok"] for c in per_conn),
                  "checked on every segment of the capture")
    if len(per_conn) >= 2 and mode["c1"] in (1, 2) and all(c["syn_tsval"] is not None for c in per_conn[:2]):
        a, b = per_conn[0], per_conn[1]
        clock_ms = (b["syn_t"] - a["syn_t"]) * 1000
        step = (b["syn_tsval"] - a["syn_tsval"]) % (1 << 32)
        follows = abs(step - clock_ms) < 50
        m["tsval_step_vs_clock_ms"] = [step, round(clock_ms, 1)]
        if mode["c1"] == 1:
            lab.check("with tcp_timestamps=1 each connection's TSval starts at its own random offset", not follows,
                      f"second SYN's TSval is {step} ticks after the first, {clock_ms:.0f} ms later")
        else:
            lab.check("with tcp_timestamps=2 the TSvals follow one clock, no per-connection offset", follows,
                      f"second SYN's TSval is {step} ticks after the first, {clock_ms:.0f} ms later")


def _echoes(pkts: list, port: int) -> bool:  # type: ignore[type-arg]
    """Every TSecr equals a TSval the peer sent earlier (the latest in-order one, usually)."""
    seen: dict[bool, set[int]] = {True: set(), False: set()}
    for x in pkts:
        if x.ts is None:
            continue
        mine = x.sport == port
        if x.flags & ACK and x.ts[1] and x.ts[1] not in seen[not mine]:
            return False
        seen[mine].add(x.ts[0])
    return True
