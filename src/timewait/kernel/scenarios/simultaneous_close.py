"""Simultaneous close on the kernel: both ends send FIN before hearing the other's; both hold TIME_WAIT.

Over a veth the two FINs would never cross, so each host drops its own first
FIN at its output (nftables): both ends are then in FIN_WAIT_1 with their FIN
unheard, which is exactly a crossing. The retransmitted FINs usually cross too
(both RTO timers fire in one timer-wheel tick) and both ends go through CLOSING;
when one retransmission arrives first, its receiver goes through CLOSING and the
other through FIN_WAIT_2. Either way both end in TIME_WAIT (TW-2).
"""

from __future__ import annotations

import time

from timewait.kernel import faults
from timewait.kernel.apps import Worker, connect
from timewait.kernel.capture import ACK, FIN, Capture
from timewait.kernel.faults import ANY_FIN, drop_once
from timewait.kernel.scenarios import KLab, Param, kscenario

C1, C2 = "10.211.55.5", "10.211.55.10"
PORT = 8888


@kscenario(
    "simultaneous-close",
    kernel_params={
        "wait": Param(3.0, "kernel only: seconds to watch the two TIME_WAIT timers (0 = to the end, ~60 s)", float),
    },
    no_ipv6=None,
)
def run(lab: KLab) -> None:
    k = lab.k
    c1, c2 = lab.addr(C1), lab.addr(C2)
    lab.two_hosts("c1", c1, "c2", c2)
    lab.ready()
    close_at = lab.p["close_at"]
    t_start = time.time()
    server = Worker(k, "c2", "nc", c2, [PORT], close_at=t_start + close_at)
    lab.start_clock(t_start)
    cap = Capture(k, "c1")
    s = connect(k, "c1", c2, PORT)
    port = s.getsockname()[1]
    # Armed at once: loading a ruleset takes tens of ms, more on a busy machine.
    drop_once(k, "c1", "twlab", "output", f"tcp sport {port} {ANY_FIN}", v6=lab.v6)
    drop_once(k, "c2", "twlab", "output", f"tcp dport {port} {ANY_FIN}", v6=lab.v6)
    lab.sleep_until(1.0)
    s.sendall(b"hello\n")
    lab.sleep_until(close_at)
    k.forget(s)
    # Both FINs are lost once; the retransmissions (~200 ms later) cross.
    seen: dict[str, list[str]] = {"c1": [], "c2": []}
    entered: dict[str, float] = {}
    timers: dict[str, float] = {}
    end = close_at + 1.5 + (lab.p["wait"] or 63.0)
    while lab.now() < end:
        for h in ("c1", "c2"):
            from timewait.kernel.diag import dump

            for d in dump(k.ns(h), families=lab.families):
                if port in (d.lport, d.rport) and PORT in (d.lport, d.rport):
                    if not seen[h] or seen[h][-1] != d.state_name:
                        seen[h].append(d.state_name)
                    if d.state == 6:
                        entered.setdefault(h, lab.now())
                        timers[h] = d.expires_ms / 1000
        if lab.now() > close_at + 1.5 and len(entered) == 2 and not lab.p["wait"]:
            if not any(timers.values()):
                break
        time.sleep(0.005 if lab.now() < close_at + 1.0 else 0.1)
    lab.t_end = lab.now()
    drops = {h: faults.dropped(k, h, "twlab", v6=lab.v6) for h in ("c1", "c2")}
    pkts = cap.stop()
    server.stop()
    fins = {h: [x for x in pkts if x.flags & FIN and (x.src == (c1 if h == "c1" else c2))] for h in ("c1", "c2")}
    crossed = False
    f1 = fins["c1"][0] if fins["c1"] else None
    f2 = fins["c2"][0] if fins["c2"] else None
    if f1 and f2:
        # A crossing: each side's (retransmitted) FIN left before it had acknowledged the other's FIN.
        crossed = f1.ack != f2.end_seq and f2.ack != f1.end_seq
    hosts = sorted(entered)
    m = lab.metrics
    m.update(time_wait_hosts=hosts, fins_dropped=drops, fins_crossed=crossed,
             states_seen={h: v for h, v in seen.items()},
             time_wait_timer_left={h: round(v, 3) for h, v in timers.items()}, client_port=port)
    # The first FINs cross by construction: each was dropped at its own sender, so both ends sat
    # in FIN_WAIT_1 with their FIN unheard. Whether the retransmissions cross too depends on the
    # two RTO timers firing in the same timer-wheel tick (usually, not always): reported only.
    lab.check("both FINs were sent before either side heard the other's",
              all(v == 1 for v in drops.values()) and f1 is not None and f2 is not None,
              f"first FINs dropped at each sender: {drops}; the retransmitted FINs "
              f"{'crossed too' if crossed else 'did not cross (one ACKs the other FIN)'} "
              f"(c1 ack {f1.ack if f1 else None}, c2 ack {f2.ack if f2 else None})")
    closing = [h for h, v in seen.items() if "CLOSING" in v]
    lab.check("both ends enter TIME_WAIT (through CLOSING)", hosts == ["c1", "c2"],
              f"TIME_WAIT on {hosts or 'none'}; CLOSING caught on {closing or 'none'} "
              f"(it lasts one RTT, microseconds on a veth); states seen: {seen}")
    acks = [x for x in pkts if x.flags & ACK and not x.flags & FIN and x.length == 0]
    m["pure_acks_after_close"] = len([x for x in acks if x.t > lab.t0_wall + close_at])
