"""SO_LINGER {1, 0} on the kernel: close() sends RST, and neither side enters TIME_WAIT."""

from __future__ import annotations

import time

from timewait.kernel.apps import Worker, connect
from timewait.kernel.capture import FIN, RST, Capture
from timewait.kernel.scenarios import KLab, kscenario

C1, C2 = "10.211.55.5", "10.211.55.10"
PORT = 8888


@kscenario("linger", no_ipv6=None)
def run(lab: KLab) -> None:
    k = lab.k
    c1, c2 = lab.addr(C1), lab.addr(C2)
    lab.two_hosts("c1", c1, "c2", c2)
    lab.ready()
    server = Worker(k, "c2", "nc", c2, [PORT], close_delay=0.001)
    cap = Capture(k, "c1")
    lab.start_clock()
    linger0 = lab.p["linger0"]
    s = connect(k, "c1", c2, PORT, linger0=linger0)
    port = s.getsockname()[1]
    lab.sleep_until(1.0)
    s.sendall(b"hello\n")
    lab.sleep_until(lab.p["close_at"])
    before = lab.counters("c1")
    k.forget(s)
    time.sleep(0.3)
    tw = {h: len([x for x in lab.tw(h) if port in (x.lport, x.rport)]) for h in ("c1", "c2")}
    after = lab.counters("c1")
    lab.t_end = lab.now()
    pkts = cap.stop()
    got = server.stop()
    mine = [x for x in pkts if x.src == c1 and x.sport == port]
    rst = any(x.flags & RST for x in mine)
    fin = any(x.flags & FIN for x in mine)
    hosts = sorted(h for h, n in tw.items() if n)
    abort = after.get("TcpExtTCPAbortOnData", 0) - before.get("TcpExtTCPAbortOnData", 0)
    m = lab.metrics
    m.update(time_wait_hosts=hosts, rst_sent=rst, fin_sent=fin, server_resets=got.get("resets", 0),
             server_received=got.get("received"), abort_on_data=abort, client_port=port)
    if linger0:
        lab.check("close() with SO_LINGER {1, 0} sends RST, not FIN", rst and not fin,
                  f"c1 sent RST: {rst}, FIN: {fin} (TcpExtTCPAbortOnData +{abort})")
        lab.check("neither side enters TIME_WAIT", not hosts, f"TIME_WAIT on: {hosts or 'none'}")
        lab.check("the server read the data, then the reset", got.get("received") == "hello\n"
                  and got.get("resets", 0) == 1, f"c2 read {got.get('received')!r}, resets {got.get('resets')}")
    else:
        lab.check("an ordinary close sends FIN", fin and not rst, f"c1 sent FIN: {fin}, RST: {rst}")
        lab.check("the client, closing first, enters TIME_WAIT", hosts == ["c1"], f"TIME_WAIT on: {hosts or 'none'}")
