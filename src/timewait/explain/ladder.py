"""A capture's chosen connections as a run result, so the simulator's views draw them.

Each captured segment becomes a TX record at its sender and an RX record at
its receiver, both at the capture time (a capture is one vantage point, so the
arrows are level), and each inferred state change a STATE record: the ladder,
Mermaid and HTML views then draw a real capture exactly as they draw a run.
"""

from __future__ import annotations

from timewait.explain.analysis import C, Explainer
from timewait.result import NodeInfo, RunResult
from timewait.tcp.segment import Segment, ip_aton
from timewait.trace import RX, STATE, TX, Trace


def capture_result(ex: Explainer, name: str) -> RunResult:
    """The kept connections of ``ex`` as a :class:`RunResult`, of either family: an address is
    :func:`~timewait.tcp.segment.ip_aton`'s one integer for IPv4 and IPv6 alike."""
    t0 = ex.first_us or 0
    trace = Trace()
    nodes: dict[str, NodeInfo] = {}
    recs: list[tuple[int, int, tuple]] = []  # (time, order, record)
    seen_conns = {}
    for order, (c, p) in enumerate(ex.kept):
        for addr in (p.src, p.dst):
            nodes.setdefault(addr, NodeInfo(addr, "host", [ip_aton(addr)]))
        seg = Segment(ip_aton(p.src), ip_aton(p.dst), p.sport, p.dport, p.seq, p.ack, p.flags, p.win,
                      b"\0" * p.length, ts=None if p.tsval is None else (p.tsval, p.tsecr or 0), pid=p.index)
        t = p.t_us - t0
        recs.append((t, 2 * order, (t, TX, p.src, seg)))
        recs.append((t, 2 * order + 1, (t, RX, p.dst, seg)))
        seen_conns[id(c)] = c
    for c in seen_conns.values():
        for t_abs, side, old, new in c.transitions:
            me, peer = (c.client, c.server) if side == C else (c.server, c.client)
            key = (ip_aton(me[0]), me[1], ip_aton(peer[0]), peer[1])
            t = t_abs - t0
            recs.append((t, -1, (t, STATE, me[0], key, old, new)))
    recs.sort(key=lambda r: (r[0], r[1]))
    trace.records = [r[2] for r in recs]
    span = (ex.last_us - t0) / 1e6 if ex.first_us is not None else 0.0
    return RunResult(scenario=f"capture {name}", profile="captured", seed=0, params={}, sim_time=span,
                     checks=[], metrics={}, hosts={n: {"states": {}, "counters": {}, "sysctls": {}} for n in nodes},
                     trace=trace, nodes=nodes, story="Drawn from a capture: times are the capture's.")
