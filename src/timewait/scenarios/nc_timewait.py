"""S1: only the side that closes first enters TIME_WAIT, for 2 MSL (60 s on Linux)."""

from __future__ import annotations

from timewait.apps.basic import NcClient, NcServer
from timewait.measure import state_intervals
from timewait.plain import plain, quoted
from timewait.scenarios import Lab, Param, scenario

C1, C2 = "10.211.55.5", "10.211.55.10"


@scenario(
    "nc-timewait",
    "S1: nc client closes first; only it holds TIME_WAIT, for 60 s on Linux",
    params={
        "close_at": Param(2.0, "when the client presses Ctrl+C (s)", float, lo=0),
        "server_close": Param(False, "let the server (c2) close first instead", bool),
    },
    story="""
`nc -l 8888` runs on c2 (10.211.55.10) and `nc 10.211.55.10 8888` on c1 (10.211.55.5).
c1 sends a line, then Ctrl+C closes it first: c1 goes FIN_WAIT_1 -> FIN_WAIT_2 -> TIME_WAIT,
c2 goes CLOSE_WAIT -> LAST_ACK -> CLOSED. Only the active closer keeps the 4-tuple in TIME_WAIT,
for 2 MSL: Linux fixes it at 60 s (TCP_TIMEWAIT_LEN), the textbook at 2 x 120 s.
""",
    contrast="Try --set server_close=on (TIME_WAIT moves to c2), --profile rfc793 (240 s) or "
    "--profile rfc793 --set msl=30 (60 s).",
    mission="S1",
)
def run(lab: Lab) -> None:
    lab.need_trace()  # the facts are measured from the trace
    sim = lab.sim
    c1, c2 = lab.two_hosts("c1", lab.addr(C1), "c2", lab.addr(C2), delay_ms=0.2)
    close_at = lab.p["close_at"]
    server = NcServer(c2, 8888)
    if lab.p["server_close"]:
        server.close_delay_s = 0.001
        client = NcClient(c1, lab.addr(C2), 8888, lines=[(1.0, b"hello\n")])
        sim.at(close_at, lambda: server.conn.close() if server.conn else None)
        client.sock.on_eof = lambda s: c1.call_later(0.001, s.close)
        closer, other = "c2", "c1"
    else:
        NcClient(c1, lab.addr(C2), 8888, lines=[(1.0, b"hello\n")], close_at_s=close_at)
        closer, other = "c1", "c2"
    tw_len = sim.hosts[closer].cfg.tw_len / 1e6
    lab.run(close_at + tw_len + 5)

    tws = state_intervals(sim.trace, "TIME_WAIT")
    hosts = sorted({i.host for i in tws})
    lab.metrics["time_wait_hosts"] = hosts
    first = next((i for i in tws if i.host == closer), None)
    lab.metrics["time_wait_seconds"] = first.seconds if first else None
    lab.metrics["time_wait_entered_at"] = first.start if first else None
    lab.metrics["time_wait_left_at"] = first.end if first else None
    lab.metrics["client_port"] = first.key[1] if first and closer == "c1" else None
    lab.check("only the active closer enters TIME_WAIT", hosts == [closer],
              f"hosts with TIME_WAIT: {plain(hosts)}; {other} went through LAST_ACK to CLOSED")
    lab.check(
        "TIME_WAIT lasts the profile's 2 MSL",
        first is not None and first.seconds == tw_len,
        f"{closer} held TIME_WAIT {first.seconds if first else None} s; expected {tw_len} s",
    )
    lab.check("the entry is gone afterwards", first is not None and first.end is not None
              and not sim.hosts[closer].twhash, "no TIME_WAIT left at the end of the run")
    lab.check("the server received the line", bytes(server.received) == b"hello\n",
              f"c2 read {quoted(bytes(server.received))}")
