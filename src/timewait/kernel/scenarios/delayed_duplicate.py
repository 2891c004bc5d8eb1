"""delayed-duplicate on the kernel, TIME_WAIT on: the stale segment dies while the 4-tuple is held.

The emulated path (kernel/path.py) holds the old connection's third data segment,
as the simulator's network does. The real kernel keeps the 4-tuple in TIME_WAIT,
so connect() from the bound port fails with EADDRNOTAVAIL until it ends, and the
held segment, released long before, meets no connection at the server and is
answered with RST. The checks are the simulator's (``judge_common``,
``judge_held``). The ``timewait=off`` contrast (the corruption) stays in the
simulator: no kernel can switch TIME_WAIT off; nor can it pin the next ISN to
the old one, which the simulator arranges for that contrast.
"""

from __future__ import annotations

import errno
import socket
import time

from timewait.kernel.apps import ReadingServer, drain
from timewait.kernel.scenarios import KLab, kscenario
from timewait.kernel.topology import KernelUnavailable
from timewait.scenarios.delayed_duplicate import (
    C1,
    C2,
    CPORT,
    NEW,
    NEW_AT,
    OLD,
    SPORT,
    judge_common,
    judge_held,
)
from timewait.tcp.segment import ip_aton
from timewait.trace import STATE, views

TW_LEN_S = 60.0  # TCP_TIMEWAIT_LEN


@kscenario(
    "delayed-duplicate",
    no_ipv6="not ported yet (a 75 s run whose judges are the simulator's IPv4 ones)",
    note="delayed-duplicate on the kernel: TIME_WAIT on (a real kernel has no off switch); the path emulated "
         "between the namespaces holds the old connection's 3rd segment. About 75 s.",
)
def run(lab: KLab) -> None:
    p = lab.p
    if p["timestamps"]:
        raise KernelUnavailable("delayed-duplicate --set timestamps=on: with timestamps the bound port takes "
                                "the TIME_WAIT over at once (PS-1), a branch only the simulator runs for now")
    path = lab.two_hosts("c1", C1, "c2", C2, delay_ms=0.2)
    for h in ("c1", "c2"):
        lab.k.sysctl(h, "net.ipv4.tcp_timestamps", "0")  # the scenario's default; --sysctl wins (ready)
    lab.ready()
    server = _LineServer(lab)
    lab.start_clock()
    path.fault(f"hold {p['delay']} from=c1 flags=P. sport={CPORT} nth=3")
    attempts: list[tuple[float, str]] = []
    connected_at = None

    def bound() -> socket.socket:
        s = lab.k.socket("c1")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((C1, CPORT))
        return s

    old = bound()
    old.connect((C2, SPORT))
    for i, line in enumerate(OLD):
        lab.sleep_until(1.0 + i * 0.1)
        old.sendall(line)
    lab.sleep_until(p["close_at"])
    old.shutdown(socket.SHUT_WR)  # like nc -N: half-close, then close on the server's FIN
    drain(old)
    lab.k.forget(old)
    lab.sleep_until(p["reconnect_at"])
    new = None
    limit = p["close_at"] + TW_LEN_S + 4 * p["retry"] + 10
    while new is None and lab.now() < limit:
        s = bound()
        try:
            s.connect((C2, SPORT))
        except OSError as e:
            attempts.append((round(lab.now(), 6), errno.errorcode.get(e.errno or 0, str(e.errno))))
            lab.k.forget(s)
            if e.errno != errno.EADDRNOTAVAIL:
                break
            time.sleep(p["retry"])
            continue
        attempts.append((round(lab.now(), 6), "ok"))
        new = s
    if new is not None:
        connected_at = round(lab.now(), 6)
        lab.trace_records.append((int(connected_at * 1e6), STATE, "c1", (ip_aton(C1), CPORT, ip_aton(C2), SPORT),
                                  "SYN_SENT", "ESTABLISHED"))
        for t, line in zip(NEW_AT, NEW, strict=True):
            lab.sleep_until(connected_at + t)
            new.sendall(line)
        lab.sleep_until(connected_at + NEW_AT[-1] + 1)
        new.shutdown(socket.SHUT_WR)
        drain(new)
        lab.k.forget(new)
    time.sleep(0.2)
    lab.t_end = lab.now()
    server.stop()
    conns = server.conns
    lab.stop_paths()
    recs = views(lab.trace_records)
    old_got = conns[0] if conns else b""
    new_got = conns[1] if len(conns) > 1 else None
    tl, _stale_tx, stale_end, new_syn = judge_common(lab, recs, old_got=old_got, new_got=new_got,
                                                     attempts=attempts, connected_at=connected_at, retry=p["retry"])
    judge_held(lab, recs, tl, stale_end, new_syn, attempts=attempts, connected_at=connected_at, new_got=new_got,
               tw_len_s=TW_LEN_S, msl_s=None)


class _LineServer(ReadingServer):
    """The simulator's LineServer on the kernel: each connection's bytes until EOF, then close."""

    def __init__(self, lab: KLab) -> None:
        self.conns: list[bytes] = []
        super().__init__(lab.k, "c2", C2, SPORT, 8)

    def got(self, peer: str, data: bytes) -> None:
        self.conns.append(data)
