"""S12: the chapter's quiz -- which statements about TIME_WAIT are right -- answered by running scenarios."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timewait.plain import bracketed, quoted
from timewait.result import RunResult
from timewait.scenarios import Lab, run_scenario, scenario
from timewait.tcp.config import SEC
from timewait.tcp.segment import ip_ntoa
from timewait.tcp.states import NAMES, TIME_WAIT, TRANSITIONS
from timewait.trace import RX, STATE, views

STATEMENTS = {
    "A": "TIME_WAIT makes the close of a full-duplex connection reliable",
    "B": "TIME_WAIT is a state of the three-way handshake",
    "C": "TIME_WAIT keeps new connections safe from delayed segments of old ones",
    "D": "TIME_WAIT lets the old connection's segments vanish from the network",
}
ANSWER = "ACD"
HANDSHAKE = ("LISTEN", "SYN_SENT", "SYN_RECEIVED")


@scenario(
    "quiz",
    "S12: which statements about TIME_WAIT are right? A, C and D -- each shown by running its scenario",
    story="""
The chapter ends with a quiz. Which statements about TIME_WAIT are right?
  A. it makes the close of a full-duplex connection reliable;
  B. it is a state of the three-way handshake;
  C. it keeps new connections safe from delayed segments of old ones;
  D. it lets the old connection's segments vanish from the network.
Each statement is decided by evidence from small runs of the scenarios that show it:
A by lost-last-ack (TIME_WAIT re-ACKs the repeated FIN; without it the peer's LAST_ACK meets a
new SYN), B by nc-timewait and the engine's state table (TIME_WAIT only follows a FIN exchange),
C by delayed-duplicate (intact data with TIME_WAIT, corrupted without), D by ttl (the network
discards a segment older than MSL) with delayed-duplicate and two-msl (every old segment is
gone before the 4-tuple can be used again). The answer: A, C, D.
""",
    contrast="Each piece of evidence is a scenario of its own: timewait run lost-last-ack, nc-timewait, "
    "delayed-duplicate, ttl, two-msl.",
    mission="S12",
)
def run(lab: Lab) -> None:
    runs: dict[str, RunResult] = {}

    msl = lab.sim.net.max_age / SEC

    def sub(name: str, **params: Any) -> RunResult:
        """A small traced run of one scenario, under the quiz's profile, seed and MSL."""
        if lab.p.get("msl") is not None:
            params["msl"] = lab.p["msl"]
        if lab.ipv6:  # the evidence in the run's family
            params["family"] = "ipv6"
        key = name + "".join(f" {k}={v}" for k, v in sorted(params.items()))
        if key not in runs:
            runs[key] = run_scenario(name, params=params or None, profile=lab.profile, seed=lab.seed, trace=True)
        return runs[key]

    deciders: dict[str, Callable[..., tuple[bool, list[str]]]] = {
        "A": _statement_a, "B": _statement_b, "C": _statement_c, "D": _statement_d,
    }
    verdicts: dict[str, Any] = {}
    for letter, decide in deciders.items():
        right, evidence = decide(sub, msl)
        verdicts[letter] = {"statement": STATEMENTS[letter], "right": right, "evidence": evidence}
        lab.sim.note("quiz", f"{letter} ({'right' if right else 'wrong'}): {STATEMENTS[letter]} -- {evidence[0]}")
        lab.check(f"{letter} is {'right' if right else 'wrong'}: {STATEMENTS[letter]}",
                  right == (letter in ANSWER), "; ".join(evidence))
    answer = "".join(k for k, v in verdicts.items() if v["right"])
    lab.metrics["answer"] = answer
    lab.metrics["statements"] = verdicts
    lab.metrics["runs"] = {k: {"passed": r.passed, "sim_time": r.sim_time} for k, r in runs.items()}
    lab.check("the answer is A, C, D", answer == ANSWER,
              f"statements shown right: {', '.join(answer) or 'none'}; {len(runs)} scenario runs")
    lab.say(f"Answer: {', '.join(answer)}.")
    for k, v in verdicts.items():  # one row per statement: letter, verdict, the evidence that decided it
        lab.say(f"  {k}  {'right' if v['right'] else 'wrong'}  {v['evidence'][0]}")


def _failed(r: RunResult) -> list[str]:
    return [c.name for c in r.checks if not c.passed]


def _statement_a(sub: Callable[..., RunResult], msl: float) -> tuple[bool, list[str]]:
    """Reliable close: the re-ACK from TIME_WAIT closes the peer; without it a new SYN meets LAST_ACK."""
    on, off = sub("lost-last-ack", retry=20.0), sub("lost-last-ack", timewait=False)
    ev = []
    reack = next((t for t, what in on.metrics.get("timeline", []) if "answers it with an ACK" in what), None)
    clean = on.passed and on.metrics.get("path") == "wait" and reack is not None
    ev.append(f"lost-last-ack: the last ACK was lost, c1's TIME_WAIT re-ACKed c2's repeated FIN at {reack} s "
              "and c2 closed cleanly" if clean else f"lost-last-ack (TIME_WAIT on) failed: {_failed(on)}")
    met = off.passed and off.metrics.get("path") == "collide"
    ev.append("without TIME_WAIT the reused port's SYN met c2 still in LAST_ACK, which had to be cleared by a "
              "reset" if met else f"lost-last-ack (TIME_WAIT off) failed: {_failed(off)}")
    return clean and met, ev


def _statement_b(sub: Callable[..., RunResult], msl: float) -> tuple[bool, list[str]]:
    """A handshake state? Only if TIME_WAIT could follow a handshake state, in the table or a trace."""
    into_tw = sorted({NAMES[s] for (s, _), (nxt, _) in TRANSITIONS.items() if nxt == TIME_WAIT})
    nc = sub("nc-timewait")
    recs = views(nc.trace.records)
    entries = [r for r in recs if r.kind == STATE and r.new == "TIME_WAIT"]
    after_fin = []
    for e in entries:
        t, host, key = e.t, e.node, e.key
        fin_seen = any(r.kind == RX and r.node == host and r.t <= t and r.seg.flags & 1
                       and (r.seg.dst, r.seg.dport, r.seg.src, r.seg.sport) == key for r in recs)
        after_fin.append((e.old, fin_seen))
    handshake_in_table = any(s in HANDSHAKE for s in into_tw)
    handshake_in_trace = any(old in HANDSHAKE or not fin for old, fin in after_fin)
    ev = [f"the state table enters TIME_WAIT only from {', '.join(into_tw)}, all after our FIN was sent",
          f"nc-timewait: {len(entries)} entry into TIME_WAIT, from {', '.join(o for o, _ in after_fin) or 'none'}, "
          f"each after the peer's FIN arrived; the handshake (SYN_SENT -> ESTABLISHED) never touches it"]
    return bool(entries) and (handshake_in_table or handshake_in_trace), ev


def _statement_c(sub: Callable[..., RunResult], msl: float) -> tuple[bool, list[str]]:
    """Safe new connections: intact data with TIME_WAIT, corrupted without it."""
    on, off = sub("delayed-duplicate"), sub("delayed-duplicate", timewait=False)
    intact = on.passed and on.metrics.get("corrupted") is False
    corrupted = off.passed and off.metrics.get("corrupted") is True
    c1 = ip_ntoa(on.nodes["c1"].addrs[0]) if "c1" in on.nodes else "c1"
    ev = [f"delayed-duplicate with TIME_WAIT: the new connection on {bracketed(c1)}:61594 read "
          f"{quoted(on.metrics.get('received_new'))} (intact)" if intact else f"delayed-duplicate (on) failed: {_failed(on)}",
          f"without TIME_WAIT it read {quoted(off.metrics.get('received_new'))}: the old connection's delayed segment "
          "got in" if corrupted else f"delayed-duplicate (off) failed: {_failed(off)}"]
    return intact and corrupted, ev


def _statement_d(sub: Callable[..., RunResult], msl: float) -> tuple[bool, list[str]]:
    """Old segments vanish: the network kills them at MSL, and TIME_WAIT outlasts that before reuse."""
    ttl = sub("ttl", hold=msl + 15, short_hold=msl / 2)
    dd, two = sub("delayed-duplicate"), sub("two-msl")
    held = [h for h in ttl.metrics.get("held", []) if h.get("fate") == "msl"]
    dies = ttl.passed and bool(held)
    gone = dd.passed and any(c.name.startswith("every segment of the old connection is gone") and c.passed
                             for c in dd.checks)
    fits = two.passed and two.metrics.get("fits") is True
    ev = [f"ttl: a segment held {held[0]['age_s']} s died at {held[0]['where']}, older than MSL "
          f"({ttl.metrics.get('msl_s')} s)" if dies else f"ttl failed: {_failed(ttl)}",
          "delayed-duplicate: every packet of the old connection had arrived or died before the new SYN"
          if gone else f"delayed-duplicate: old segments outlived TIME_WAIT: {_failed(dd)}",
          f"two-msl: the latest repeated FIN arrived {two.metrics.get('latest_fin_arrival_s')} s after the last ACK,"
          f" within 2 MSL = {two.metrics.get('worst_case_s')} s <= TIME_WAIT {two.metrics.get('timewait_s')} s"
          if fits else f"two-msl: 2 MSL does not fit: {_failed(two)}"]
    return dies and gone and fits, ev
