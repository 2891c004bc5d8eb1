"""tw-reuse on the kernel: the takeover, the PAWS discard of a held duplicate, the LAST_ACK peer.

The two namespaces are joined by an emulated path (kernel/path.py) instead of a
veth: it holds back a copy of the server's answer and loses the client's last
ACKs, the two things the simulator's network does in this scenario and no veth
can. The checks are the simulator's own (``scenarios.tw_reuse.judge``), read
from what crossed the path.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from timewait.kernel.apps import Worker
from timewait.kernel.scenarios import KLab, kscenario
from timewait.scenarios.tw_reuse import PORT, judge
from timewait.tcp.segment import ip_aton
from timewait.trace import STATE

C1, C2 = "10.211.55.5", "10.211.55.10"
CLOSE_AT = 0.05


@kscenario(
    "tw-reuse",
    no_ipv6=None,
    default_sysctls=["c1:net.ipv4.tcp_tw_reuse=1", f"c1:net.ipv4.ip_local_port_range={PORT} {PORT}"],
    note="tw-reuse on the kernel: c1 and c2 are joined by the lab's emulated path (TUN devices, 0.5 ms "
         "each way), which holds back the duplicate and loses the last ACKs as the simulator's network does.",
)
def run(lab: KLab) -> None:
    p = lab.p
    c1, c2 = lab.addr(C1), lab.addr(C2)
    path = lab.two_hosts("c1", c1, "c2", c2, delay_ms=0.5)
    lab.ready()
    server = Worker(lab.k, "c2", "ping", c2, [8888])
    lab.start_clock()  # time 0 once the server listens, as in the simulator
    reconnect_at = CLOSE_AT + p["reconnect_after"]
    answers: list[bytes] = []
    errors: list[str] = []
    socks: list[socket.socket] = []

    def ask(then: Callable[[], object] | None = None) -> None:
        s = lab.k.socket("c1")
        s.settimeout(5.0)
        try:
            s.connect((c2, 8888))
        except OSError as e:
            errors.append(_errno_name(e))
            lab.metrics["connect_error_at"] = round(lab.now(), 6)
            lab.k.forget(s)
            return
        lport = s.getsockname()[1]
        key = (ip_aton(c1), lport, ip_aton(c2), 8888)
        # connect() returning is the kernel's word that the socket is ESTABLISHED.
        lab.trace_records.append((int(round(lab.now() * 1e6)), STATE, "c1", key, "SYN_SENT", "ESTABLISHED"))
        if then is not None:
            then()
        s.sendall(b"PING\r\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(64)
            if not chunk:
                break
            data += chunk
        answers.append(data)
        socks.append(s)

    # The old connection's answer is copied and the copy held back, to arrive in the new one: the
    # simulator times it 17.5 ms after the reconnect; here it is let go once the new connection is
    # ESTABLISHED, which under load may come later than that.
    path.fault("dup 60 from=c2 flags=P. nth=1")
    before = lab.counters("c1")
    ask()
    lab.sleep_until(CLOSE_AT)
    lost = path.fault("drop from=c1 flags=. len=0 count=all") if p["lost_ack"] else None
    if socks:
        lab.k.forget(socks[0])
    lab.sleep_until(reconnect_at - 0.001)
    if lost is not None:
        path.remove(lost)
    lab.sleep_until(reconnect_at)
    ask(then=path.release)
    lab.sleep_until(reconnect_at + 1.0)
    for s in socks[1:]:
        lab.k.forget(s)
    time.sleep(0.05)
    lab.t_end = lab.now()
    server.stop()
    lab.stop_paths()
    after = lab.counters("c1")
    counters = {k: after.get(k, 0) - before.get(k, 0) for k in ("TcpExtTWRecycled", "TcpExtPAWSEstab")}
    reuse = lab.may_reuse("c1", peer="c2")
    delay = lab.sysctl_int("c1", "net.ipv4.tcp_tw_reuse_delay") / 1000
    judge(lab, lab.trace_records, counters, answers=answers, errors=errors, reconnect_at=reconnect_at,
          reconnect_after=p["reconnect_after"], lost_ack=p["lost_ack"], reuse=reuse, delay_s=delay)




def _errno_name(e: OSError) -> str:
    import errno

    return errno.errorcode.get(e.errno or 0, str(e.errno))
