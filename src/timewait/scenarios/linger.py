"""CL-1/CL-2: abortive close. SO_LINGER {1, 0} (or unread data) sends RST; nobody waits."""

from __future__ import annotations

from timewait.apps.basic import NcClient, NcServer
from timewait.measure import state_intervals
from timewait.plain import plain, quoted
from timewait.scenarios import Lab, Param, scenario
from timewait.tcp.segment import FIN, RST
from timewait.trace import TX, select

C1, C2 = "10.211.55.5", "10.211.55.10"


@scenario(
    "linger",
    "CL-2: close() with SO_LINGER {1, 0} sends RST instead of FIN; no TIME_WAIT on either side",
    params={"close_at": Param(2.0, "when the client closes (s)", float, lo=0),
            "linger0": Param(True, "SO_LINGER {1, 0} on the client (off: an ordinary close)", bool)},
    story="""
SO_LINGER with l_onoff = 1 and l_linger = 0 turns close() into an abort (tcp_disconnect): the
client sends RST+ACK instead of FIN, the connection goes straight to CLOSED, and the peer's next
read fails with ECONNRESET. No TIME_WAIT anywhere, so the port is free at once, and nothing
protects a new connection on that 4-tuple from the old one's delayed segments. Linux counts it
as TcpExtTCPAbortOnData.
""",
    contrast="Try --set linger0=off: FIN, and TIME_WAIT on the client.",
)
def run(lab: Lab) -> None:
    lab.need_trace()
    sim = lab.sim
    c1, c2 = lab.two_hosts("c1", lab.addr(C1), "c2", lab.addr(C2), delay_ms=0.2)
    server = NcServer(c2, 8888)
    errors: list[str] = []
    client = NcClient(c1, lab.addr(C2), 8888, lines=[(1.0, b"hello\n")], close_at_s=lab.p["close_at"],
                      linger0=lab.p["linger0"])
    sim.at(0.5, lambda: setattr(server.conn, "on_error", lambda s, e: errors.append(e)) if server.conn else None)
    lab.run(lab.p["close_at"] + 62)
    mine = [r.seg for r in select(sim.trace.records, TX, node="c1") if r.seg.sport == client.sock.lport]
    rst = any(s.flags & RST for s in mine)
    fin = any(s.flags & FIN for s in mine)
    hosts = sorted({i.host for i in state_intervals(sim.trace, "TIME_WAIT")})
    m = lab.metrics
    m.update(time_wait_hosts=hosts, rst_sent=rst, fin_sent=fin, server_errors=errors,
             abort_on_data=c1.counters.get("TcpExtTCPAbortOnData", 0), received=bytes(server.received).decode())
    if lab.p["linger0"]:
        lab.check("close() with SO_LINGER {1, 0} sends RST, not FIN", rst and not fin, f"RST {rst}, FIN {fin}")
        lab.check("neither side enters TIME_WAIT", not hosts, f"TIME_WAIT on {plain(hosts)}")
        lab.check("the peer sees ECONNRESET after reading the data", errors == ["ECONNRESET"]
                  and m["received"] == "hello\n", f"server read {quoted(m['received'])}, errors {plain(errors)}")
        lab.check("Linux counts it as TcpExtTCPAbortOnData", m["abort_on_data"] == 1, f"{m['abort_on_data']}")
    else:
        lab.check("an ordinary close sends FIN", fin and not rst, f"RST {rst}, FIN {fin}")
        lab.check("the client, closing first, enters TIME_WAIT", hosts == ["c1"], f"TIME_WAIT on {plain(hosts)}")
