"""S11: the highest rate of new actively-closed connections to one destination."""

from __future__ import annotations

from typing import Any

from timewait.apps.basic import PingServer, ShortConnectionLoop
from timewait.capacity import port_count
from timewait.plain import plain
from timewait.result import Findings
from timewait.scenarios import Lab, Param, scenario
from timewait.sim.budget import Scale
from timewait.sim.sysctl import parse_local_port_range

CLIENT, SERVER = "10.0.0.1", "10.0.0.2"


def _scale(p: dict[str, Any]) -> Scale:
    """Two loops, each at its rate for ``max(TIME_WAIT, ports / rate) x 1.08`` s, as :func:`run`
    runs them; a rate <= 0 opens nothing (whatever it does instead is past the budget)."""
    lo, hi = parse_local_port_range("--set ports", p["ports"])
    ports, tw = hi - lo + 1, 2 * p["msl"]
    connections = sim_s = 0.0
    for factor in (1 - p["margin"], 1 + p["margin"]):
        rate = ports / tw * factor
        until = max(tw, ports / rate) * 1.08 if rate > 0 else tw
        connections += max(rate, 0.0) * until
        sim_s += until + 1
    return Scale(connections=connections, sim_s=sim_s, held=2 * ports)


@scenario(
    "max-rate",
    "S11: ports / TIME_WAIT = 64511 / 120 s = 537.6 connections/s; simulated just under and just over",
    params={
        "msl": Param(60.0, "MSL in seconds (the exercise: 60 s, so TIME_WAIT = 120 s)", float, lo=0, lo_open=True),
        "ports": Param("1025-65535", "client port range LOW-HIGH (the exercise ignores 1-1024)", str,
                       check=parse_local_port_range),
        # The run under the limit goes at (1 - margin) x limit: margin 1 is a rate of 0 (an interval
        # of 1/0) and more a negative rate, whose loop never advances the clock.
        "margin": Param(0.05, "simulate at (1 - margin) and (1 + margin) times the limit", float, lo=0,
                        lo_open=True, hi=1, hi_open=True),
    },
    story="""
The chapter's exercise: with MSL = 60 s and ports 1025-65535, how fast can one host open and
actively close connections? Each connection keeps its local port in TIME_WAIT for 2 x MSL = 120 s
toward the destination, so at most 64511 ports / 120 s = 537.6 new connections per second. The
simulation runs the loop just under and just over that rate (textbook profile: TIME_WAIT = 2 x MSL)
and shows the first one sustain while the second fails with EADDRNOTAVAIL once every port is waiting.
Linux walks the ports in two parity passes; an odd range still has every port used (its top port is
reached from any start above the bottom: the kernel lab measured 11 connections from 11 ports).
""",
    contrast="Try --set msl=30 (twice the rate) or --set 'ports=32768-60999'.",
    mission="S11",
    profile="rfc793",
    scale=_scale,
)
def run(lab: Lab) -> None:
    p = lab.p
    lo, hi = parse_local_port_range("--set ports", p["ports"])
    ports = hi - lo + 1
    tw = 2 * p["msl"]
    limit = ports / tw
    m = lab.metrics
    m.update(ports=ports, time_wait_seconds=tw, limit_per_second=round(limit, 1),
             formula=f"{ports} ports / {tw:g} s = {limit:.1f} connections/s")
    results = {}
    lab.sim.trace.on = False  # ~130,000 connections per run: counters only
    server = lab.addr(SERVER)
    for label, factor in (("under", 1 - p["margin"]), ("over", 1 + p["margin"])):
        rate = limit * factor
        # Long enough for the over-limit run to exhaust (ports / rate) plus a margin,
        # and for the under-limit run to pass the point where the first TIME_WAIT expire.
        until = max(tw, ports / rate) * 1.08
        # Both runs' telemetry goes into the result, labelled (the plots draw them side by side).
        sim = lab.add_run(label, lab.sim) if label == "under" else lab.add_run(
            label, profile=lab.sim.profile, seed=lab.seed + 1, trace=False, msl_s=p["msl"])
        sim.timewait_enabled = lab.sim.timewait_enabled
        c1 = sim.add_host("c1", lab.addr(CLIENT))
        srv = sim.add_host("server", server)
        c1.set_sysctl("net.ipv4.ip_local_port_range", f"{lo} {hi}")
        sim.link(c1, srv, delay_ms=0.1)
        PingServer(srv, 80)
        loop = ShortConnectionLoop(c1, lambda i: (server, 80), count=None, interval_s=1 / rate, until_s=until)
        loop.start()
        lab.run(until + 1, sim, label)
        st = loop.stats
        results[label] = dict(rate=round(rate, 2), simulated_seconds=round(until, 1), succeeded=st.succeeded,
                              failed=dict(st.failed), first_failure_at=st.first_failure_at,
                              time_wait_peak=ports - 1 if st.failed else None)
    m["under"], m["over"] = results["under"], results["over"]
    judge(lab, results["under"], results["over"], ports=ports, lo=lo, hi=hi, tw=tw, formula=m["formula"],
          exercise=(lo, hi, tw) == (1025, 65535, 120.0))


def judge(lab: Findings, u: dict[str, Any], o: dict[str, Any], *, ports: int, lo: int, hi: int, tw: float,
          formula: str, exercise: bool = False) -> None:
    """The checks of max-rate, for the simulator and its kernel twin alike: ``u`` and ``o`` are the
    just-under and just-over loops' results (rate, succeeded, failed by errno, first_failure_at,
    simulated_seconds); ``tw`` is how long TIME_WAIT lasts there."""
    limit = ports / tw
    lab.check("the closed form gives 537.6/s for the exercise" if exercise else "the closed form is ports / (2 x MSL)",
              abs(limit - ports / tw) < 1e-9 and formula.endswith(f"= {limit:.1f} connections/s"), formula)
    lab.check(f"{u['rate']}/s (just under) is sustained", not u["failed"],
              f"{u['succeeded']} connections in {u['simulated_seconds']} s, failures {plain(u['failed'])}")
    expect = port_count(lo, hi) / o["rate"]  # every port of the range is used (PS-2)
    lab.check(f"{o['rate']}/s (just over) runs out of ports with EADDRNOTAVAIL",
              "EADDRNOTAVAIL" in o["failed"] and o["first_failure_at"] is not None
              and abs(o["first_failure_at"] - expect) < 2.0,
              f"first failure at {plain(o['first_failure_at'])} s, expected about {expect:.1f} s "
              f"(usable ports / rate), before any TIME_WAIT expires at {tw:g} s")
    lab.say(f"At {u['rate']}/s the ports freed by expiring TIME_WAIT keep up; at {o['rate']}/s all "
            f"ports are waiting after {expect:.0f} s, before the first one frees at {tw:g} s.")
