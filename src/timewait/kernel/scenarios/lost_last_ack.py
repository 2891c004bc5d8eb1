"""S4 on the kernel: the last ACK is lost (nftables drops it); TIME_WAIT re-ACKs the resent FIN.

The drop rule sits in c2's prerouting hook, so c1 really sends the ACK and c2
never sees it, as if the network lost it; a dynamic nftables set makes it drop
one packet only. Packet times come from a
tcpdump capture on c1, TIME_WAIT timers from inet_diag. With ``--set family=ipv6``
the hosts are fd00::10:211:55:5 and fd00::10:211:55:10 and the rule an ``ip6`` one.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from timewait.kernel import faults
from timewait.kernel.apps import Worker, errno_name
from timewait.kernel.capture import ACK, FIN, RST, SYN, Capture, Pkt
from timewait.kernel.diag import mask
from timewait.kernel.faults import PURE_ACK, drop_once
from timewait.kernel.scenarios import KLab, Param, kscenario, progress_line
from timewait.kernel.topology import KernelUnavailable

C1, C2 = "10.211.55.5", "10.211.55.10"
SERVER_PORT = 8888
TW_LEN = 60.0


@kscenario(
    "lost-last-ack",
    kernel_params={
        "wait": Param(0.0, "kernel only: stop after N s instead of waiting out TIME_WAIT (~70 s)", float),
    },
    no_ipv6=None,
)
def run(lab: KLab) -> None:
    k, p = lab.k, lab.p
    c1, c2 = lab.addr(C1), lab.addr(C2)
    if not p["syn_in_window"]:
        raise KernelUnavailable("--set syn_in_window=off: the kernel chooses the new SYN's sequence number "
                                "itself (PS-6); only the simulator can move it")
    port = p["port"]
    lab.two_hosts("c1", c1, "c2", c2)
    for h in ("c1", "c2"):
        k.sysctl(h, "net.ipv4.tcp_timestamps", "1" if p["timestamps"] else "0")
    lab.ready()  # --sysctl flags win over the timestamps parameter
    server = Worker(k, "c2", "nc", c2, [SERVER_PORT], close_delay=0.001)
    cap = Capture(k, "c1")
    lab.start_clock()
    s = _bound(lab, port)
    s.connect((c2, SERVER_PORT))
    lab.sleep_until(1.0)
    s.sendall(b"hello\n")
    lab.sleep_until(max(1.1, p["close_at"] - 0.3))
    # Armed early (loading a ruleset takes ~20 ms); c1 sends no pure ACK until the FINs.
    drop_once(k, "c2", "twlab", "prerouting",
              f"{'ip6' if lab.v6 else 'ip'} saddr {c1} tcp sport {port} tcp dport {SERVER_PORT} {PURE_ACK}", v6=lab.v6)
    lab.sleep_until(p["close_at"])
    s.shutdown(socket.SHUT_WR)  # nc -N: half-close; the descriptor stays open, as in the simulator
    s.settimeout(5)
    while s.recv(4096):
        pass
    t_eof = lab.now()

    # Watch c1's TIME_WAIT timer and c2's LAST_ACK around the resent FIN; attempt reconnects on schedule.
    deadlines: list[tuple[float, float]] = []
    c2_states: list[tuple[float, str]] = []
    attempts: list[dict[str, Any]] = []
    next_try = t_eof + p["reconnect_after"]
    max_attempts = int(TW_LEN / max(p["retry"], 0.1)) + 4
    connected = None
    limit = p["close_at"] + TW_LEN + p["retry"] + 10 if not p["wait"] else p["close_at"] + p["wait"]
    while lab.now() < limit:
        now = lab.now()
        if now < t_eof + 1.0:
            for d in _diag(lab, "c1", port):
                if d.state == 6:
                    deadlines.append((now, now + d.expires_ms / 1000))
            for d in _diag(lab, "c2", port):
                c2_states.append((now, d.state_name))
        if now >= next_try and connected is None and len(attempts) < max_attempts:
            a = _attempt(lab, port)
            a["at"] = round(now, 4)
            attempts.append(a)
            if a["result"] == "connected":
                connected = a
                a["sock"].sendall(b"again\n")
                a["sock"].shutdown(socket.SHUT_WR)
            next_try = now + p["retry"]
            progress_line(f"lost-last-ack: {now:5.1f} s, connect() from port {port}: {a['result']}")
        if connected is not None and now > connected["at"] + 0.5:
            break
        time.sleep(0.01 if now < t_eof + 1.0 else min(0.25, max(0.0, next_try - lab.now())))
    progress_line("")
    lab.t_end = lab.now()
    dropped = faults.dropped(k, "c2", "twlab", v6=lab.v6)
    time.sleep(0.05)
    pkts = cap.stop()
    got = server.stop()
    _report(lab, port, pkts, deadlines, c2_states, attempts, dropped, got, cut=bool(p["wait"]) and connected is None)


def _bound(lab: KLab, port: int) -> socket.socket:
    s = lab.k.socket("c1")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((lab.addr(C1), port))
    return s


def _attempt(lab: KLab, port: int) -> dict[str, Any]:
    s = _bound(lab, port)
    s.settimeout(3)
    t = lab.now()
    try:
        s.connect((lab.addr(C2), SERVER_PORT))
    except OSError as e:
        lab.k.forget(s)
        return {"result": errno_name(e), "done_at": round(lab.now(), 4)}
    return {"result": "connected", "done_at": round(lab.now(), 4), "sock": s, "started": t}


def _diag(lab: KLab, host: str, port: int) -> list[Any]:
    from timewait.kernel.diag import dump

    return [d for d in dump(lab.k.ns(host), states=mask(*range(1, 12)), families=lab.families)
            if port in (d.lport, d.rport) and SERVER_PORT in (d.lport, d.rport)]



def _first(pkts: list[Pkt], pred: Any, after: float = -1.0) -> Pkt | None:
    return next((x for x in pkts if x.t > after and pred(x)), None)


def _report(lab: KLab, port: int, pkts: list[Pkt], deadlines: list[tuple[float, float]],
            c2_states: list[tuple[float, str]], attempts: list[dict[str, Any]], dropped: int,
            got: dict[str, Any], cut: bool) -> None:
    m = lab.metrics
    rel = lab.rel
    close_wall = lab.t0_wall + lab.p["close_at"]
    from_c1 = [x for x in pkts if x.src == lab.addr(C1) and x.sport == port]
    from_c2 = [x for x in pkts if x.src == lab.addr(C2) and x.dport == port]
    fin2 = _first(from_c2, lambda x: x.flags & FIN, after=close_wall)
    lost = _first(from_c1, lambda x: x.pure_ack and fin2 is not None and x.ack == fin2.end_seq, after=close_wall)
    timeline: list[list[Any]] = []

    def tl(when: float | None, text: str) -> None:
        if when is not None:
            timeline.append([round(when, 4), text])

    tl(rel(fin2.t) if fin2 else None, "c2 closes too: FIN (CLOSE_WAIT -> LAST_ACK)")
    tl(rel(lost.t) if lost else None, "c1 sends the last ACK and the network loses it")
    lab.check("the active closer's last ACK is lost", lost is not None and dropped == 1,
              f"c1's ACK of c2's FIN sent at {rel(lost.t):.4f} s and dropped by nftables in c2 ({dropped} packet)"
              if lost else "no lost last ACK in the capture")
    m["last_ack_drops"] = dropped
    ts_on = lab.sysctl_int("c1", "net.ipv4.tcp_timestamps") != 0 and lab.sysctl_int("c2", "net.ipv4.tcp_timestamps") != 0
    first_syn = next((x for x in from_c1 if x.flags & (SYN | ACK) == SYN and fin2 and x.t > fin2.t), None)
    met = first_syn is not None and any(st == "LAST_ACK" and t >= rel(first_syn.t) - 0.02 for t, st in c2_states)
    resent = _first(from_c2, lambda x: x.flags & FIN and fin2 is not None and x.seq == fin2.seq, after=fin2.t) if fin2 else None
    path = "collide" if first_syn is not None and (resent is None or first_syn.t < resent.t) else "wait"
    if fin2 is not None and lost is not None:
        expected, why = (("collide", "timestamps on: connect() from the bound port takes the TIME_WAIT over (PS-1)")
                         if ts_on else ("wait", "TIME_WAIT on, no timestamps: the bound 4-tuple stays held (PS-1)"))
        m["path"] = path
        lab.check("the reconnect goes the way this configuration predicts", path == expected,
                  f"expected {expected!r} ({why}); observed {path!r}")
        if path == "wait":
            _report_wait(lab, port, from_c1, from_c2, fin2, resent, deadlines, c2_states, attempts, got, cut, tl)
        else:
            _report_collide(lab, port, from_c1, from_c2, first_syn, met, attempts, got, tl)
    m["timeline"] = sorted(timeline, key=lambda e: e[0])
    if not cut:
        m["reconnect_attempts"] = len(attempts)
        m["eaddrnotavail"] = sum(1 for a in attempts if a["result"] == "EADDRNOTAVAIL")
        done = next((a for a in attempts if a["result"] != "EADDRNOTAVAIL"), None)
        m["reconnect_result"] = done["result"] if done else None
        m["reconnected_at"] = done["done_at"] if done and done["result"] == "connected" else None
    else:
        lab.say(f"Stopped after {lab.p['wait']} s (--set wait): the reconnect after TIME_WAIT was not waited for.")


def _report_wait(lab: KLab, port: int, from_c1: list[Pkt], from_c2: list[Pkt], fin2: Pkt, resent: Pkt | None,
                 deadlines: list[tuple[float, float]], c2_states: list[tuple[float, str]],
                 attempts: list[dict[str, Any]], got: dict[str, Any], cut: bool, tl: Any) -> None:
    m, rel = lab.metrics, lab.rel
    tl(rel(resent.t) if resent else None, "c2's retransmission timer fires: the FIN again, from LAST_ACK")
    gap = round(resent.t - fin2.t, 4) if resent else None
    m["fin_resent_after_s"] = gap
    in_last_ack = any(st == "LAST_ACK" for _, st in c2_states)
    lab.check("c2, still in LAST_ACK, sends its FIN again when its RTO fires", resent is not None and in_last_ack,
              f"FIN at {rel(fin2.t):.4f} s, again at {_fmt(rel(resent.t) if resent else None)} s ({gap} s later); "
              f"c2 seen in LAST_ACK: {in_last_ack}")
    if resent is None:
        return
    reack = _first(from_c1, lambda x: x.flags & ACK and not x.flags & (SYN | FIN | RST) and x.ack == resent.end_seq,
                   after=resent.t - 1e-6)
    tl(rel(reack.t) if reack else None, "c1's TIME_WAIT answers it with an ACK and restarts its timer (TW-C)")
    lab.check("c1's TIME_WAIT answers the repeated FIN with an ACK", reack is not None,
              f"ACK {reack.ack if reack else None} at {_fmt(rel(reack.t) if reack else None)} s for the FIN ending at "
              f"{resent.end_seq}")
    after = [d for t, d in deadlines if reack is not None and t > rel(reack.t) + 0.005]
    before = [d for t, d in deadlines if reack is not None and t < rel(reack.t)]
    deadline = round(after[0], 3) if after else None
    m["timewait_deadline_after_reack"] = deadline
    expect = rel(reack.t) + TW_LEN if reack else None
    lab.check(f"and restarts its timer: {TW_LEN:g} s from that moment",
              deadline is not None and expect is not None and abs(deadline - expect) < 0.05
              and (not before or deadline > before[0] + 0.05),
              f"inet_diag: timer due at {before[0] if before else None:.3f} s before the repeated FIN, at "
              f"{deadline} s after the re-ACK ({expect and round(expect, 3)} s expected)"
              if before and deadline is not None else f"timer due at {deadline} s after the re-ACK")
    gone = [t for t, st in c2_states if st == "LAST_ACK"]
    rst = any(x.flags & RST for x in from_c2 if x.t > resent.t)
    lab.check("c2 closes cleanly: LAST_ACK -> CLOSED on that ACK, no RST",
              reack is not None and bool(gone) and max(gone) < rel(reack.t) + 0.05 and not rst,
              f"c2 last seen in LAST_ACK at {max(gone) if gone else None:.3f} s, the ACK left c1 at "
              f"{rel(reack.t) if reack else None:.4f} s" if gone and reack else "c2 never seen in LAST_ACK")
    tl(rel(reack.t) if reack and gone else None, "c2: LAST_ACK -> CLOSED")
    fails = [a for a in attempts if a["result"] == "EADDRNOTAVAIL"]
    ok = next((a for a in attempts if a["result"] == "connected"), None)
    tw_end = ok["at"] if ok else None
    if fails:
        tl(fails[0]["at"], f"c1's connect() from port {port} fails: EADDRNOTAVAIL "
                           f"({len(fails)} tries, every {lab.p['retry']:g} s)")
    held = f"[{lab.addr(C1)}]:{port}" if lab.v6 else f"{C1}:{port}"
    lab.check(f"while TIME_WAIT holds {held}, connect() from it fails with EADDRNOTAVAIL",
              bool(fails) and all(a["at"] < (tw_end or 1e9) for a in fails),
              f"{len(fails)} attempts refused, {fails[0]['at'] if fails else None} s to "
              f"{fails[-1]['at'] if fails else None} s")
    if cut:
        return
    tl(ok["at"] if ok else None, "c1 connects again from the same port; nothing of the old connection is left")
    lab.check("after TIME_WAIT the same port connects at the first try",
              ok is not None and "again\n" in got.get("received", "") and fails is not None
              and (deadline is None or ok["at"] >= deadline - 0.01),
              f"connect() at {ok['at'] if ok else None} s, ESTABLISHED at {ok['done_at'] if ok else None} s; "
              f"c2 read {got.get('received', '')!r}")
    lab.say(f"TIME_WAIT answered c2's repeated FIN and restarted its 60 s timer, so c2 closed cleanly; "
            f"port {port} stayed unusable for {len(fails)} connect() calls.")


def _report_collide(lab: KLab, port: int, from_c1: list[Pkt], from_c2: list[Pkt], syn: Pkt | None, met: bool,
                    attempts: list[dict[str, Any]], got: dict[str, Any], tl: Any) -> None:
    m, rel = lab.metrics, lab.rel
    a0 = attempts[0] if attempts else None
    took_over = lab.counters("c1").get("TcpExtTWRecycled", 0) > 0
    how = ("connect() took the TIME_WAIT over (PS-1: a bound port, and the TIME_WAIT saw timestamps)"
           if took_over else "c1 had no TIME_WAIT")
    tl(rel(syn.t) if syn else None, f"c1 connects again from port {port} at once: SYN")
    lab.check(f"c1 reuses port {port} at once", a0 is not None and a0["result"] != "EADDRNOTAVAIL",
              f"{how}; SYN at {_fmt(rel(syn.t) if syn else None)} s")
    lab.check("its SYN meets c2 still in LAST_ACK", met,
              "inet_diag showed c2 in LAST_ACK when the SYN arrived" if met else "c2 was no longer in LAST_ACK")
    if syn is None:
        return
    reply = _first(from_c2, lambda x: True, after=syn.t)
    rst = _first(from_c1, lambda x: x.flags & RST, after=syn.t)
    resyn = _first(from_c1, lambda x: x.flags & (SYN | ACK) == SYN, after=rst.t) if rst else None
    synack = _first(from_c2, lambda x: x.flags & (SYN | ACK) == SYN | ACK, after=syn.t)
    est = _first(from_c1, lambda x: x.flags & ACK and not x.flags & (SYN | RST), after=synack.t) if synack else None
    m["handshake_s"] = round(est.t - syn.t, 6) if est else None
    tl(rel(reply.t) if reply else None, "c2 (LAST_ACK) answers with a challenge ACK, not an RST (LA-1)")
    lab.check("c2 answers with a challenge ACK: seq = its snd_nxt, ack = its rcv_nxt (LA-1, LA-2)",
              reply is not None and reply.flags & (SYN | ACK | FIN | RST) == ACK,
              f"c2 sent {reply.flag_text() if reply else 'nothing'} seq {reply.seq if reply else None} "
              f"ack {reply.ack if reply else None}")
    tl(rel(rst.t) if rst else None, "c1 (SYN_SENT) answers with RST seq=SEG.ACK (LA-3)")
    lab.check("c1, in SYN_SENT, sends RST seq = SEG.ACK, which ends c2's LAST_ACK (LA-3)",
              rst is not None and reply is not None and rst.seq == reply.ack,
              f"RST seq {rst.seq if rst else None} at {_fmt(rel(rst.t) if rst else None)} s")
    gap_ms = round((resyn.t - rst.t) * 1000, 1) if resyn and rst else None
    tmin = timeout_min_ms()
    tl(rel(resyn.t) if resyn else None, "c1 resends its SYN")
    tl(rel(est.t) if est else None, "c1: SYN_SENT -> ESTABLISHED")
    lab.check(f"c1 resends the SYN after TCP_TIMEOUT_MIN ({tmin:g} ms) and the handshake completes",
              gap_ms is not None and gap_ms < tmin + 6 and est is not None and "again\n" in got.get("received", ""),
              f"SYN again {gap_ms} ms after the RST; ESTABLISHED at {_fmt(rel(est.t) if est else None)} s; "
              f"c2 read {got.get('received', '')!r}")


def _fmt(t: float | None) -> str:
    return "none" if t is None else f"{t:.4f}"


def timeout_min_ms() -> float:
    """TCP_TIMEOUT_MIN is 2 jiffies: 8 ms at HZ=250, 2 ms at HZ=1000 (CONFIG_HZ from the kernel config)."""
    import gzip
    import os

    hz = 250
    for path in (f"/boot/config-{os.uname().release}", "/proc/config.gz"):
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:  # type: ignore[operator]
                for line in f:
                    if line.startswith("CONFIG_HZ="):
                        hz = int(line.split("=")[1])
                        break
            break
        except OSError:
            continue
    return 2000 / hz
