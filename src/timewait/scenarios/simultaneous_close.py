"""TW-2: both ends close at once; each goes FIN_WAIT_1 -> CLOSING -> TIME_WAIT."""

from __future__ import annotations

from timewait.apps.basic import NcClient, NcServer
from timewait.measure import state_intervals
from timewait.plain import plain
from timewait.scenarios import Lab, Param, scenario
from timewait.trace import STATE, select

C1, C2 = "10.211.55.5", "10.211.55.10"


@scenario(
    "simultaneous-close",
    "TW-2: both ends close at the same instant; both pass CLOSING and both hold TIME_WAIT",
    params={"close_at": Param(2.0, "when both ends close (s)", float, lo=0)},
    story="""
When both applications close before either FIN has arrived, each end is in FIN_WAIT_1 when the
other's FIN comes in: it ACKs it and moves to CLOSING; when its own FIN is ACKed it enters
TIME_WAIT (tcp_fin, tcp_rcv_state_process). So a simultaneous close leaves TIME_WAIT on both ends,
each for the full 60 s.
""",
    contrast="Compare nc-timewait, where c2 closes only after c1's FIN arrived, and only c1 waits.",
)
def run(lab: Lab) -> None:
    lab.need_trace()
    sim = lab.sim
    c1, c2 = lab.two_hosts("c1", lab.addr(C1), "c2", lab.addr(C2), delay_ms=1.0)
    t = lab.p["close_at"]
    server = NcServer(c2, 8888, close_delay_s=3600)  # c2 closes on its own schedule, not on EOF
    NcClient(c1, lab.addr(C2), 8888, lines=[(1.0, b"hello\n")], close_at_s=t)
    sim.at(t, lambda: server.conn.close() if server.conn else None)
    lab.run(t + 65)
    tws = state_intervals(sim.trace, "TIME_WAIT")
    hosts = sorted({i.host for i in tws})
    closing = sorted({r.node for r in select(sim.trace.records, STATE) if r.new == "CLOSING"})
    m = lab.metrics
    m.update(time_wait_hosts=hosts, closing_hosts=closing,
             time_wait_seconds={i.host: i.seconds for i in tws})
    lab.check("both ends pass CLOSING", closing == ["c1", "c2"], f"CLOSING on {plain(closing)}")
    lab.check("both ends enter TIME_WAIT (TW-2)", hosts == ["c1", "c2"], f"TIME_WAIT on {plain(hosts)}")
    lab.check("each for the full 60 s", all(i.seconds == c1.cfg.tw_len / 1e6 for i in tws),
              f"{plain(m['time_wait_seconds'])}")
