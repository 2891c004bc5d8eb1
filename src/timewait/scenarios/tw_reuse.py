"""S8: tcp_tw_reuse lets connect() take over a 4-tuple still in TIME_WAIT."""

from __future__ import annotations

from typing import Any

from timewait.apps.basic import PingServer
from timewait.plain import quoted
from timewait.scenarios import Lab, Param, scenario
from timewait.scenarios.common import may_reuse
from timewait.sim.host import Socket, SocketError
from timewait.tcp.segment import ACK, FIN, RST, SYN
from timewait.trace import STATE, TX, views

C1, C2 = "10.211.55.5", "10.211.55.10"
PORT = 40000


def _tx(records: list, host: str, pred) -> list:
    return [r for r in records if r.kind == TX and r.node == host and pred(r.seg)]


@scenario(
    "tw-reuse",
    "S8: tcp_tw_reuse=1 takes over a TIME_WAIT 4-tuple; PAWS drops the old duplicates; LAST_ACK peer resolved",
    params={
        "reconnect_after": Param(1.5, "seconds between the close and the new connect()", float, lo=0),
        "lost_ack": Param(True, "lose the client's last ACKs so the server is still in LAST_ACK", bool),
    },
    story="""
c1 may use only local port 40000 (ip_local_port_range = 40000 40000). It asks c2:8888 one
question and closes first, so 10.211.55.5:40000 -> 10.211.55.10:8888 sits in TIME_WAIT on c1.
With tcp_tw_reuse=1 and timestamps on both ends, a connect() after tcp_tw_reuse_delay (1 s) takes
that 4-tuple over (tcp_twsk_unique): the new SYN's sequence number is the old snd_nxt + 65537 and it
echoes the server's last TSval. A duplicate of the old connection's last data segment, delayed in
the network, arrives in the new connection: its timestamp is older, so PAWS drops it. With the
client's last ACKs lost, the server is still in LAST_ACK when the new SYN arrives: it answers with
a challenge ACK, c1 (SYN_SENT) resets that with RST seq = SEG.ACK, and resends its SYN at once.
""",
    contrast="Try --sysctl c1:net.ipv4.tcp_tw_reuse=0 (EADDRNOTAVAIL), --sysctl '*:net.ipv4.tcp_timestamps=0' "
    "(no reuse without timestamps), --set reconnect_after=0.5 (younger than tcp_tw_reuse_delay), "
    "or --set lost_ack=off.",
    mission="S8",
)
def run(lab: Lab) -> None:
    lab.need_trace()
    sim = lab.sim
    p = lab.p
    lab.default_sysctl("c1", "net.ipv4.tcp_tw_reuse", "1")
    lab.default_sysctl("c1", "net.ipv4.ip_local_port_range", f"{PORT} {PORT}")
    c1, c2 = lab.two_hosts("c1", lab.addr(C1), "c2", lab.addr(C2), delay_ms=0.5)
    PingServer(c2, 8888)
    answers: list[bytes] = []
    errors: list[str] = []
    close_at = 0.05
    reconnect_at = close_at + p["reconnect_after"]

    def ask(t: float) -> None:
        s = c1.socket()
        s.on_connected = lambda sk: sk.send(b"PING\r\n")
        s.on_data = lambda sk: answers.append(sk.recv())
        s.on_error = lambda sk, e: errors.append(e)
        try:
            s.connect(lab.addr(C2), 8888)
        except SocketError as e:
            errors.append(e.errno_name)
            lab.metrics["connect_error_at"] = t
            return
        socks.append(s)

    socks: list[Socket] = []
    # The old connection's answer (+PONG) is duplicated and the copy held in the network.
    sim.fault(f"dup {reconnect_at - 0.0025 + 0.02:.4f} from=c2 flags=P. nth=1")
    sim.at(0.0, lambda: ask(0.0))

    def close_old() -> None:
        if p["lost_ack"]:
            lost = sim.fault("drop from=c1 flags=. len=0 count=all")
            sim.at(reconnect_at - 0.001, lambda: sim.net.faults.remove(lost))
        socks[0].close()

    sim.at(close_at, close_old)
    sim.at(reconnect_at, lambda: ask(reconnect_at))
    lab.run(reconnect_at + 1.0)

    ok, why = may_reuse(c1, peer=c2)
    delay = c1.sysctls["net.ipv4.tcp_tw_reuse_delay"] / 1000
    judge(lab, sim.trace.records, c1.counters, answers=answers, errors=errors, reconnect_at=reconnect_at,
          reconnect_after=p["reconnect_after"], lost_ack=p["lost_ack"], reuse=(ok, why), delay_s=delay)


def judge(lab: Any, records: list, counters: dict[str, int], *, answers: list[bytes], errors: list[str],
          reconnect_at: float, reconnect_after: float, lost_ack: bool, reuse: tuple[bool, str],
          delay_s: float) -> None:
    """The checks of tw-reuse, one function for the simulator and the kernel lab's twin.

    ``records`` are trace tuples (the kernel twin's come from its emulated path, with a STATE
    record where connect() returned); ``counters`` are c1's nstat counters (deltas on the kernel).
    """
    ok, why = reuse
    if ok and reconnect_after < delay_s:
        ok, why = False, f"the TIME_WAIT is younger than tcp_tw_reuse_delay ({delay_s:g} s)"
    recs = views(records)
    recycled = counters.get("TcpExtTWRecycled", 0)
    syns = _tx(recs, "c1", lambda s: s.flags & (SYN | ACK) == SYN)
    fin = next(iter(_tx(recs, "c1", lambda s: s.flags & FIN)), None)
    server_fin = next(iter(_tx(recs, "c2", lambda s: s.flags & FIN)), None)
    m = lab.metrics
    m.update(tw_recycled=recycled, errors=errors, answers=len(answers),
             paws_dropped=counters.get("TcpExtPAWSEstab", 0),
             syn_times=[round(r.t / 1e6, 6) for r in syns])
    if not ok:
        lab.check("connect() cannot take the TIME_WAIT 4-tuple: EADDRNOTAVAIL", errors == ["EADDRNOTAVAIL"]
                  and recycled == 0, f"{why}; the only port's 4-tuple is in TIME_WAIT: errors {errors}")
        lab.say(f"No reuse because {why}: with the only local port in TIME_WAIT the 4-tuple stays taken for 60 s.")
        return
    new_syn = next((r for r in syns if r.t >= reconnect_at * 1e6), None)
    lab.check("connect() took over the TIME_WAIT 4-tuple (TcpExtTWRecycled)", recycled == 1 and new_syn is not None,
              f"{why}; TcpExtTWRecycled = {recycled}")
    if new_syn is None or fin is None or server_fin is None:
        return
    want = (fin.seg.seq + 1 + 65537) & 0xFFFFFFFF
    seg = new_syn.seg
    m.update(old_fin_seq=fin.seg.seq, new_syn_seq=seg.seq, new_syn_tsecr=seg.ts[1] if seg.ts else None)
    lab.check("the new SYN's seq is the old snd_nxt + 65537 (PS-6)", seg.seq == want,
              f"old FIN seq {fin.seg.seq}, new SYN seq {seg.seq} (expected {want})")
    lab.check("the new SYN echoes the server's last timestamp (TSecr != 0)",
              seg.ts is not None and seg.ts[1] == server_fin.seg.ts[0],
              f"SYN TSecr {seg.ts[1] if seg.ts else None}, server FIN TSval {server_fin.seg.ts[0] if server_fin.seg.ts else None}")
    if lost_ack:
        t0 = new_syn.t
        after = [r for r in recs if r.t >= t0 and r.kind == TX]
        chal = next((r for r in after if r.node == "c2" and r.seg.flags == ACK), None)
        rst = next((r for r in after if r.node == "c1" and r.seg.flags & RST), None)
        resyn = next((r for r in after if r.node == "c1" and r.seg.flags == SYN and r.t > t0), None)
        est = next((r for r in recs if r.t >= t0 and r.kind == STATE and r.node == "c1" and r.new == "ESTABLISHED"), None)
        seq_ok = chal is not None and rst is not None and rst.seg.seq == chal.seg.ack
        m.update(challenge_ack_at=chal and chal.t / 1e6, rst_at=rst and rst.t / 1e6,
                 syn_resent_at=resyn and resyn.t / 1e6, established_at=est and est.t / 1e6)
        lab.check("the SYN meets LAST_ACK: challenge ACK, RST seq = SEG.ACK, SYN resent, ESTABLISHED (LA-1..3)",
                  seq_ok and resyn is not None and est is not None and resyn.t - rst.t <= 20_000,
                  f"challenge ACK {m['challenge_ack_at']}, RST {m['rst_at']}, SYN again {m['syn_resent_at']}, "
                  f"established {m['established_at']}")
    lab.check("the delayed duplicate of the old answer is dropped by PAWS", m["paws_dropped"] >= 1,
              f"TcpExtPAWSEstab = {m['paws_dropped']}")
    lab.check("the new connection gets exactly its own answer", len(answers) == 2 and all(a == b"+PONG\r\n" for a in answers),
              f"answers {', '.join(quoted(a) for a in answers) or 'none'}")
    lab.say(why)
