"""S5: why 2 MSL -- one MSL for the last ACK to get there, one for a repeated FIN to come back."""

from __future__ import annotations

from typing import Any

from timewait.errors import UsageError
from timewait.measure import fate, first, flag_names, seconds, state_at, time_wait_keys_at
from timewait.plain import plain
from timewait.scenarios import Lab, Param, scenario
from timewait.scenarios.common import LineServer
from timewait.sim.host import Host
from timewait.tcp.config import SEC
from timewait.tcp.segment import ACK, FIN, RST
from timewait.trace import RX, STATE, TX, views

C1, C2 = "10.211.55.5", "10.211.55.10"
CPORT, SPORT = 60494, 8888
RST_ACK = ((RST, "RST"), (ACK, "ACK"))  # the only bits TIME_WAIT answers with


@scenario(
    "two-msl",
    "S5: the worst case of the close -- ACK and repeated FINs each delayed nearly MSL -- fits in 2 MSL",
    params={
        "margin": Param(0.1, "how much less than MSL the network delays the last ACK and the repeated FINs (s)",
                        float, lo=0, lo_open=True),
        "close_at": Param(2.0, "when c1 closes (s)", float, lo=0),
        "rfc1337": Param(True, "c1 ignores RSTs in TIME_WAIT (net.ipv4.tcp_rfc1337=1; a --sysctl wins), so the "
                         "RSTs c2 sends once it has closed cannot end the TIME_WAIT early", bool),
    },
    story="""
Why does TIME_WAIT last 2 MSL and not 1? The chapter: one MSL for the active closer's last ACK
to reach the peer, one MSL for the peer's repeated FIN to come back. Until the ACK arrives the
peer, in LAST_ACK, keeps resending its FIN; the ACK may take up to MSL, and each resent FIN
may take up to MSL again. So the last FIN the peer can send arrives at most 2 MSL after the
last ACK left -- if TIME_WAIT still exists then, it is answered (and it can never be mistaken
for a segment of a new connection on the same 4-tuple).

The run computes that timeline for the network's MSL and the profile's TIME_WAIT, then plays
the worst case: c1 (10.211.55.5:60494) closes first; the network delays its last ACK and every
FIN c2 (10.211.55.10:8888) repeats meanwhile by MSL - 0.1 s. Every repeated FIN reaches c1
inside its TIME_WAIT, the last one within 2 MSL of the ACK, and is re-ACKed. c1 runs with
tcp_rfc1337=1: c2, closed once the slow ACK arrives, answers the later re-ACKs with RSTs,
which would otherwise end the TIME_WAIT early (TIME-WAIT assassination, RFC 1337).
""",
    contrast="Try --set msl=45 (Linux keeps TIME_WAIT at 60 s: 2 MSL = 90 s no longer fits), "
    "--profile rfc793 --set msl=45 (TIME_WAIT = 2 MSL = 90 s fits again), or --set rfc1337=off.",
    mission="S5",
)
def run(lab: Lab) -> None:
    lab.need_trace()  # the checks read the trace; the run is small
    sim = lab.sim
    p = lab.p
    msl = sim.net.max_age / SEC
    delay = msl - p["margin"]
    if delay <= 0:
        raise UsageError(f"--set margin={p['margin']}: must be less than MSL ({msl:g} s)")
    lab.default_sysctl("c1", "net.ipv4.tcp_rfc1337", "1" if p["rfc1337"] else "0")
    c1, c2 = lab.two_hosts("c1", lab.addr(C1), "c2", lab.addr(C2), delay_ms=0.2)
    LineServer(c2, SPORT)
    s = c1.socket()
    s.bind(0, CPORT)
    s.on_data = lambda x: x.recv()
    s.connect(lab.addr(C2), SPORT)
    c1.call_at(SEC, lambda: s.send(b"hello\n"))

    def close() -> None:
        # The next pure ACK from c1 is the last ACK of the close; every FIN c2 repeats after its
        # first one is delayed as much: the worst case MSL allows.
        sim.fault(f"hold {delay} from=c1 to=c2 flags=. len=0 nth=1")
        sim.fault(f"hold {delay} from=c2 to=c1 flags=F. nth=2 count=all")
        s.shutdown()  # half-close; TIME_WAIT then comes through the full socket

    c1.call_at(int(p["close_at"] * SEC), close)
    tw = c1.cfg.tw_len / SEC
    lab.run(p["close_at"] + max(2 * msl, tw) + tw + 5)
    _report(lab, c1, c2, msl, delay)


def computed_timeline(msl: float, tw: float) -> list[dict[str, Any]]:
    """The worst case of the four-way close, in seconds after the last ACK leaves."""
    return [
        {"t": 0.0, "event": f"c1 sends the last ACK and enters TIME_WAIT (for {tw:g} s)"},
        {"t": msl, "event": "latest the ACK can reach c2 (or be gone for good): 1 MSL"},
        {"t": msl, "event": "until then c2, in LAST_ACK, may send its FIN again"},
        {"t": 2 * msl, "event": "latest such a FIN can reach c1: 2 MSL"},
        {"t": tw, "event": "c1's TIME_WAIT ends"},
    ]


def _report(lab: Lab, c1: Host, c2: Host, msl: float, delay: float) -> None:
    recs = views(lab.sim.trace.records)
    tw = c1.cfg.tw_len / SEC
    k1 = (c1.addr, CPORT, c2.addr, SPORT)
    k2 = (c2.addr, SPORT, c1.addr, CPORT)
    fits = 2 * msl <= tw
    lab.metrics["msl_s"] = msl
    lab.metrics["timewait_s"] = tw
    lab.metrics["worst_case_s"] = 2 * msl
    lab.metrics["fits"] = fits
    lab.metrics["timeline"] = computed_timeline(msl, tw)
    # Whether 2 MSL fits is arithmetic on the parameters (metrics "fits"); the checks below test
    # the run: the latest repeated FIN against 2 MSL and against c1's TIME_WAIT.

    close_at = int(lab.p["close_at"] * SEC)
    fin2 = first(recs, lambda r: r.kind == TX and r.node == "c2" and r.seg.flags & FIN, after=close_at - 1)
    last_ack = first(recs, lambda r: r.kind == TX and r.node == "c1" and r.seg.flags == ACK and not r.seg.payload
                     and fin2 is not None and r.seg.ack == fin2.seg.end_seq, after=close_at - 1)
    if fin2 is None or last_ack is None:
        lab.check("the close happens", False, "no FIN from c2 or no last ACK from c1 in the trace")
        return
    t0 = last_ack.t
    ack_end = fate(recs, last_ack.seg.pid)
    rel = lambda t: round((t - t0) / SEC, 6)  # noqa: E731 - seconds after the last ACK
    sim_tl: list[dict[str, Any]] = [{"t": 0.0, "event": "c1 sends the last ACK and enters TIME_WAIT"}]
    if ack_end is not None:
        if ack_end.kind != RX:
            what = f"the last ACK dies ({ack_end.reason})"
        elif state_at(recs, "c2", k2, ack_end.t) == "LAST_ACK":
            what = "the last ACK reaches c2: LAST_ACK -> CLOSED"
        else:
            what = "the last ACK reaches c2, which has given up and closed already"
        sim_tl.append({"t": rel(ack_end.t), "event": what})
    lab.check("the last ACK takes nearly MSL to reach c2", ack_end is not None and ack_end.kind == RX
              and ack_end.t - t0 >= delay * SEC,
              f"sent at {seconds(last_ack)} s, arrived {rel(ack_end.t) if ack_end else None} s later (MSL {msl:g} s)")

    # c2's repeated FINs, and what each met at c1.
    dups = [r for r in recs if r.kind == TX and r.node == "c2" and r.seg.flags & FIN and r.seg.seq == fin2.seg.seq
            and r.t > fin2.t]
    rows = []
    for d in dups:
        end = fate(recs, d.seg.pid)
        met = None
        if end is not None and end.kind == RX:
            st = "TIME_WAIT" if k1 in time_wait_keys_at(recs, "c1", end.t) else state_at(recs, "c1", k1, end.t)
            t_in = end.t
            reply = first(recs, lambda r, t=t_in: r.kind == TX and r.node == "c1" and r.t == t, after=t_in - 1)
            met = f"{st}: answered {flag_names(reply, RST_ACK)}"
        rows.append({"sent": rel(d.t), "arrived": rel(end.t) if end is not None else None,
                     "met": met if end is None or end.kind == RX else f"dropped ({end.reason})"})
        if end is not None:
            sim_tl.append({"t": rel(d.t), "event": "c2 (LAST_ACK) sends its FIN again"})
            sim_tl.append({"t": rel(end.t), "event": f"that FIN reaches c1 -> {rows[-1]['met']}"})
    tw_end = first(recs, lambda r: r.kind == STATE and r.node == "c1" and r.key == k1 and r.old == "TIME_WAIT")
    if tw_end is not None:
        sim_tl.append({"t": rel(tw_end.t), "event": "c1's TIME_WAIT ends"})
    sim_tl.sort(key=lambda e: e["t"])
    lab.metrics["repeated_fins"] = rows
    lab.metrics["timeline_simulated"] = sim_tl
    arrived = [r for r in rows if r["arrived"] is not None]
    latest = max((r["arrived"] for r in arrived), default=None)
    lab.metrics["latest_fin_arrival_s"] = latest
    lab.check("while the ACK travels, c2 repeats its FIN from LAST_ACK, each delayed nearly MSL",
              len(arrived) >= 1 and all(r["arrived"] - r["sent"] >= delay for r in arrived)
              and all(r["sent"] < (rel(ack_end.t) if ack_end else 0) for r in rows),
              f"{len(rows)} repeated FINs sent at {plain([r['sent'] for r in rows])} s after the last ACK")
    lab.check("the latest repeated FIN arrives within 2 MSL of the last ACK", latest is not None and latest <= 2 * msl,
              f"latest arrival {latest} s after the last ACK; 2 MSL = {2 * msl:g} s")
    inside = latest is not None and latest <= tw
    lab.check("the simulation agrees with the computed timeline",
              inside == fits,
              f"latest repeated FIN at {latest} s {'inside' if inside else 'after'} the {tw:g} s TIME_WAIT; "
              f"computed: {'fits' if fits else 'does not fit'}")
    if fits and c1.cfg.rfc1337:
        answered = all(r["met"] and r["met"].startswith("TIME_WAIT: answered ACK") for r in arrived)
        closed = first(recs, lambda r: r.kind == STATE and r.node == "c2" and r.key == k2 and r.old == "LAST_ACK")
        reset = first(recs, lambda r: r.kind == RX and r.node == "c2" and r.seg.flags & RST and r.seg.dport == SPORT)
        how = ("when the ACK arrived" if closed is not None and ack_end is not None and closed.t == ack_end.t
               else "giving up its FIN retransmissions (LA-4) before the slow ACK arrived")
        lab.check("every repeated FIN finds c1's TIME_WAIT and is ACKed; c2 is never reset",
                  answered and closed is not None and closed.new == "CLOSED"
                  and (reset is None or reset.t > closed.t),
                  f"{sum(1 for r in arrived if r['met'] and r['met'].startswith('TIME_WAIT'))}/{len(arrived)} "
                  f"met TIME_WAIT; c2 CLOSED {rel(closed.t) if closed else None} s after the last ACK, {how}")
        lab.say(f"The last ACK took {rel(ack_end.t) if ack_end else None} s and the latest repeated FIN "
                f"arrived {latest} s after it: inside 2 MSL = {2 * msl:g} s, and inside TIME_WAIT ({tw:g} s).")
    elif fits:
        # tcp_rfc1337=0: c2, closed by the slow ACK, answers a re-ACK with RST, and TW-A kills the TIME_WAIT.
        killer = first(recs, lambda r: r.kind == RX and r.node == "c1" and r.seg.flags & RST and r.seg.dport == CPORT,
                       after=t0)
        early = tw_end is not None and killer is not None and tw_end.t == killer.t and rel(tw_end.t) < tw
        lost = [r for r in arrived if not (r["met"] or "").startswith("TIME_WAIT")]
        lab.check("without rfc1337 an RST from c2 ends c1's TIME_WAIT early; later FINs find no socket",
                  early and bool(lost),
                  f"RST arrived {rel(killer.t) if killer else None} s after the last ACK and TIME_WAIT ended then; "
                  f"{len(lost)} repeated FINs met no TIME_WAIT")
        lab.say("With tcp_rfc1337=0 the worst case still fits in 2 MSL, but c2 -- closed once the slow ACK arrived "
                "-- answered a re-ACK with RST, which killed c1's TIME_WAIT early (TIME-WAIT assassination, "
                "RFC 1337): the later repeated FINs met no socket and were reset.")
    else:
        late = [r for r in arrived if r["arrived"] > tw]
        lab.say(f"With MSL {msl:g} s the worst case needs {2 * msl:g} s but TIME_WAIT lasts {tw:g} s: "
                f"{len(late)} repeated FIN(s) arrived after it would have ended "
                f"(what they met: {sorted({str(r['met']) for r in late})}). "
                "A TIME_WAIT restarted by an earlier FIN can still catch them; one that is not, cannot.")



