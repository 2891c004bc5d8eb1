"""Simulator and kernel side by side: every metric and check, each with its tolerance and a verdict.

All tolerances live in :data:`TOLERANCES`, each with the reason it is needed.
A metric without an entry must agree exactly; a list is compared element by
element and a dict key by key with the metric's tolerance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from timewait.result import RunResult


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far the kernel may be from the simulator: ``kind`` is one of

    ``exact``; ``range`` (kernel - sim within [lo, hi]); ``rel`` (|k - s| <= hi x |s| + lo);
    ``sum-rel`` (as ``rel`` on the sums of two lists); ``ignore`` (never comparable); ``per-key``
    (a dict metric whose keys have tolerances of their own, ``"metric.key"`` in :data:`TOLERANCES`);
    ``masked-port`` (strings equal once ephemeral ports are masked, numbers as ``range``).
    """

    kind: str
    lo: float = 0.0
    hi: float = 0.0
    why: str = ""

    def describe(self) -> str:
        if self.kind == "exact":
            return "exact"
        if self.kind == "range":
            return f"{self.lo:+g}..{self.hi:+g}"
        if self.kind == "rel":
            return " ".join(x for x in (f"±{self.hi:.0%}" if self.hi else "", f"±{self.lo:g}" if self.lo else "") if x)
        if self.kind == "sum-rel":
            return f"sum ±{self.hi:.0%}"
        if self.kind == "per-key":
            return "per key"
        if self.kind == "masked-port":
            return f"ports masked, {self.lo:+g}..{self.hi:+g}"
        return "ignored"


EXACT = Tolerance("exact", why="deterministic on both sides")
WHEEL = ("the TIME_WAIT timer sits on the kernel's timer wheel: a 60 s timer lands in a level whose "
         "buckets are 2.048 s wide at HZ=250 (4.096 s at HZ=1000) and fires up to one bucket late; "
         "we poll every 20 ms near the end")
JITTER = "the kernel run's clock is wall time: Python's sleep() and scheduling add up to tens of ms"

#: (scenario or "*", metric) -> tolerance. Everything not listed must agree exactly.
TOLERANCES: dict[tuple[str, str], Tolerance] = {
    # nc-timewait
    ("nc-timewait", "time_wait_seconds"): Tolerance("range", -0.1, 4.2, WHEEL),
    ("nc-timewait", "time_wait_entered_at"): Tolerance("range", -0.05, 0.05, JITTER),
    ("nc-timewait", "time_wait_left_at"): Tolerance("range", -0.15, 4.25, WHEEL + "; " + JITTER),
    ("nc-timewait", "client_port"): Tolerance("ignore", why="an ephemeral port: random on both sides"),
    ("nc-timewait", "netstat"): Tolerance(
        "masked-port", -0.15, 4.25, "netstat rows exact but for the client's ephemeral port (random on both "
        "sides, shown as *); the instants as time_wait_left_at: " + WHEEL),
    # redis-short-connections: counts are exact, the sampled curve is not
    ("redis-short-connections", "time_wait_over_time"): Tolerance(
        "ignore", why="samples are taken at wall-clock instants that drift by milliseconds"),
    ("redis-short-connections", "redis_version"): Tolerance("ignore", why="only the kernel run has a real Redis"),
    # port-exhaustion: what runs out is exact, how fast depends on the connection rate
    ("port-exhaustion", "first_failure_at"): Tolerance(
        "range", -0.05, 1.0, "the simulator's client spends two RTTs (0.4 ms) per connection; the kernel loop "
        "is paced to the same but cannot be faster than Python on a busy CPU (0.4-1 ms measured), so its "
        "ports can run out later"),
    ("port-exhaustion", "failed"): Tolerance(
        "rel", 20, 0.75, "failures are 1 ms retries during the part of each second with no free port; a "
        "slower client (see first_failure_at) leaves a shorter such part, down to a quarter under load"),
    ("port-exhaustion", "failed_per_second"): Tolerance("sum-rel", 20, 0.75, "as failed"),
    ("port-exhaustion", "succeeded_per_second"): Tolerance(
        "sum-rel", 5, 0.02, "the kernel loop is paced by Python: on a loaded machine part of a second's "
        "connections spill into the next (seen: 951 + 49 for 1000 + 0); the sum is what the ports allow"),
    ("port-exhaustion", "tw_recycled"): Tolerance("rel", 20, 0.02, "as succeeded_per_second"),
    # lost-last-ack: the FIN is retransmitted after the RTO, which the kernel computes from a measured RTT
    ("lost-last-ack", "fin_resent_after_s"): Tolerance(
        "range", -0.01, 0.02, "the passive closer's RTO is 200 ms (tcp_rto_min) plus RTT terms on both sides; "
        "the kernel counts it in jiffies (4 ms at HZ=250) and fires on the next tick"),
    ("lost-last-ack", "timewait_deadline_after_reack"): Tolerance("range", -0.05, 0.05, JITTER),
    ("lost-last-ack", "reconnected_at"): Tolerance("range", -0.05, 0.05, JITTER),
    ("lost-last-ack", "handshake_s"): Tolerance(
        "range", -0.002, 0.006, "TCP_TIMEOUT_MIN is 2 jiffies (8 ms at HZ=250) and fires on a tick: up to a "
        "jiffy late; plus Python's wake-up"),
    ("lost-last-ack", "timeline"): Tolerance(
        "ignore", why="the same events, but each time carries the jitter above; the rows above compare them"),
    # nat
    ("nat", "mappings"): Tolerance(
        "ignore", why="which public port each flow gets is nf_nat's pick; the checks compare what matters "
        "(one port each, all on the public address, a free source port kept)"),
    ("nat", "nat_table"): Tolerance("ignore", why="conntrack -L text with countdowns"),
    ("nat", "nat_table_after_close"): Tolerance("ignore", why="conntrack -L text with countdowns"),
    ("nat", "nat_counters"): Tolerance("ignore", why="the simulator's NAT internals"),
    ("nat", "nat_exhausted_drops"): Tolerance(
        "rel", 1, 0.0, "SYNs sent before the client gives up: a retransmission due right at give_up may "
        "fall either side of it"),
    ("nat", "mapping_hold_after_last_packet_s"): Tolerance(
        "rel", 0.3, 0.0, "conntrack counts its timeout in jiffies; the table is read every 20 ms"),
    # timestamps: the values are clocks with random offsets; the checks compare what they must satisfy
    ("timestamps", "segments"): Tolerance("ignore", why="times and TSvals of two different clocks"),
    ("timestamps", "syn_option_bytes"): Tolerance("ignore", why="holds a TSval (a clock with a random offset)"),
    ("timestamps", "offset_gap"): Tolerance("ignore", why="random per 4-tuple offsets on both sides"),
    # tw-reuse: the times of the takeover's exchange carry the emulated path's wake-ups and the
    # kernel's jiffies (TCP_TIMEOUT_MIN, 2 jiffies, re-arms the SYN after the RST: 8-12 ms)
    ("tw-reuse", "syn_times"): Tolerance("range", -0.005, 0.02, JITTER + "; jiffies"),
    ("tw-reuse", "challenge_ack_at"): Tolerance("range", -0.005, 0.02, JITTER),
    ("tw-reuse", "rst_at"): Tolerance("range", -0.005, 0.02, JITTER),
    ("tw-reuse", "syn_resent_at"): Tolerance("range", -0.005, 0.02, JITTER + "; TCP_TIMEOUT_MIN in jiffies"),
    ("tw-reuse", "established_at"): Tolerance("range", -0.005, 0.02, JITTER + "; TCP_TIMEOUT_MIN in jiffies"),
    ("tw-reuse", "connect_error_at"): Tolerance("range", -0.005, 0.02, JITTER),
    ("tw-reuse", "old_fin_seq"): Tolerance("ignore", why="an ISN: random per connection on both sides; the "
                                           "checks compare new SYN seq = old snd_nxt + 65537"),
    ("tw-reuse", "new_syn_seq"): Tolerance("ignore", why="as old_fin_seq"),
    ("tw-reuse", "new_syn_tsecr"): Tolerance("ignore", why="a TSval of the server's clock (random offset); the "
                                             "checks compare it with the server's FIN"),
    # delayed-duplicate (TIME_WAIT on): the new connection waits for the TIME_WAIT timer, which the
    # wheel may fire a bucket late; connect() is retried every 5 s, so one more refusal is possible
    ("delayed-duplicate", "eaddrnotavail"): Tolerance("range", 0, 1, WHEEL + "; retries every 5 s"),
    ("delayed-duplicate", "new_connection_at"): Tolerance("range", -0.05, 5.1, WHEEL + "; retries every 5 s"),
    ("delayed-duplicate", "stale_arrived_at"): Tolerance("range", -0.05, 0.05, JITTER),
    ("delayed-duplicate", "timeline"): Tolerance(
        "ignore", why="the same events, each time with the jitter above; the rows above compare them"),
    # ttl: real routers (namespaces, ip_forward) on veths with microsecond delays, and one emulated
    # link (c3-R1, 1 ms each way); the simulator has 1 ms on each of its 15 links
    ("ttl", "held"): Tolerance(
        "range", -0.02, 0.05, "times of the held segments: the simulator's 14 more links add 14 ms to an "
        "arrival at c2 that veths do not; " + JITTER),
    ("ttl", "oldest_packet_delivered_s"): Tolerance("range", -0.02, 0.05, "as held"),
    ("ttl", "c1_connect.at"): Tolerance(
        "range", -0.03, 0.02, "the ICMP's way to R12 and back is 24 links of 1 ms in the simulator, of "
        "microseconds on veths; " + JITTER),
    # max-rate: the two loops are paced on the same grid; what the kernel adds is the TIME_WAIT
    # timer's lateness, which frees the over-limit loop's ports in bursts up to a bucket late
    ("max-rate", "time_wait_seconds"): Tolerance("range", -0.1, 4.2, WHEEL),
    ("max-rate", "under.succeeded"): Tolerance(
        "range", -1, 1, "the simulator's interval is whole microseconds: by the end its grid may hold a slot "
        "more or less"),
    ("max-rate", "over.succeeded"): Tolerance(
        "range", -75, 1, "after 60 s the ports come back as the TIME_WAIT timers fire, up to a wheel bucket "
        "(4.096 s at HZ=1000) late: at most 4.096 s x 18/s (the default over-limit rate) = 74 fewer; " + WHEEL),
    ("max-rate", "over.failed"): Tolerance("range", -1, 75, "the attempts that over.succeeded lacks fail"),
    ("max-rate", "over.first_failure_at"): Tolerance("range", -0.01, 0.05, JITTER),
    ("max-rate", "under.first_failure_at"): Tolerance("range", -0.01, 0.05, JITTER),
    ("max-rate", "over.time_wait_peak"): Tolerance(
        "ignore", why="the simulator writes ports - 1, not a count; the kernel counts inet_diag's TIME_WAIT "
        "sockets at the first failure"),
    ("*", "client_port"): Tolerance("ignore", why="an ephemeral port: random on both sides"),
    ("*", "tsval"): Tolerance("ignore", why="timestamp clocks start at a random offset per 4-tuple"),
}


#: Metrics that only echo an input (a parameter or a sysctl both sides were given): equal by
#: construction, so listed as "input" and never counted as agreement.
INPUTS: dict[tuple[str, str], str] = {
    ("*", "port_range"): "net.ipv4.ip_local_port_range, set on both sides",
    ("*", "usable_ports"): "computed from the port range on both sides",
    ("*", "destinations"): "a parameter",
    ("*", "rtt_ms"): "a parameter",
    ("max-rate", "limit_per_second"): "ports / TIME_WAIT, computed from the inputs on both sides",
    ("max-rate", "formula"): "ports / TIME_WAIT, computed from the inputs on both sides",
    ("ttl", "ttl_initial"): "c1's net.ipv4.ip_default_ttl, set on both sides",
    ("ttl", "ttl_initial_c3"): "c3's net.ipv4.ip_default_ttl (Linux's default 64) on both sides",
    ("ttl", "msl_s"): "the network's MSL: the simulator's, and the emulated path's set to it",
}


def is_input(scenario: str, metric: str) -> bool:
    """Whether ``metric`` of ``scenario`` echoes an input (a parameter or a listed derived value)."""
    from timewait.scenarios import get_scenario

    return ((scenario, metric) in INPUTS or ("*", metric) in INPUTS
            or metric in get_scenario(scenario).params)


def tolerance_for(scenario: str, metric: str) -> Tolerance:
    return TOLERANCES.get((scenario, metric)) or TOLERANCES.get(("*", metric)) or EXACT


def per_key(scenario: str, metric: str) -> dict[str, Tolerance]:
    """Tolerances of a dict metric's keys (``("max-rate", "over.failed")``), where it has any."""
    head = metric + "."
    return {m[len(head):]: t for (sc, m), t in TOLERANCES.items() if sc == scenario and m.startswith(head)}


def within_metric(scenario: str, metric: str, sim: Any, kern: Any) -> bool:
    """Whether ``kern`` is within the metric's tolerance of ``sim``, key by key for a dict metric
    with per-key tolerances (a key without one must agree exactly)."""
    keys = per_key(scenario, metric)
    if keys and isinstance(sim, dict) and isinstance(kern, dict):
        return set(sim) == set(kern) and all(within(keys.get(k, EXACT), sim[k], kern[k]) for k in sim)
    return within(tolerance_for(scenario, metric), sim, kern)


def within(tol: Tolerance, sim: Any, kern: Any) -> bool:
    """Whether ``kern`` is within ``tol`` of ``sim``."""
    if tol.kind == "ignore":
        return True
    if isinstance(sim, dict) and isinstance(kern, dict):
        return set(sim) == set(kern) and all(within(tol, sim[k], kern[k]) for k in sim)
    if tol.kind == "sum-rel" and isinstance(sim, list) and isinstance(kern, list):
        return within(Tolerance("rel", tol.lo, tol.hi), sum(sim), sum(kern))
    if isinstance(sim, list) and isinstance(kern, list):
        return len(sim) == len(kern) and all(within(tol, a, b) for a, b in zip(sim, kern, strict=True))
    if tol.kind == "masked-port" and isinstance(sim, str) and isinstance(kern, str):
        return mask_ephemeral(sim) == mask_ephemeral(kern)
    if tol.kind == "exact" or isinstance(sim, bool) or not _num(sim) or not _num(kern):
        return sim == kern
    if tol.kind in ("range", "masked-port"):
        return tol.lo - 1e-9 <= kern - sim <= tol.hi + 1e-9
    if tol.kind in ("rel", "sum-rel"):
        return abs(kern - sim) <= tol.hi * abs(sim) + tol.lo + 1e-9
    return sim == kern


_EPHEMERAL = re.compile(r":(\d{5})\b")


def mask_ephemeral(text: str) -> str:
    """``text`` with every port of Linux's ephemeral range (32768 and up) written ``*``."""
    return _EPHEMERAL.sub(lambda m: ":*" if int(m.group(1)) >= 32768 else m.group(0), text)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


@dataclass(slots=True)
class Row:
    kind: str      # "metric" or "check"
    name: str
    sim: Any
    kernel: Any
    tolerance: str
    why: str
    verdict: str   # agree, differs, ignored, sim only, kernel only

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "sim": self.sim, "kernel": self.kernel,
                "tolerance": self.tolerance, "why": self.why, "verdict": self.verdict}


_MISSING = object()


def compare_results(sim: RunResult, kern: RunResult) -> list[Row]:
    """Rows for every metric (union of both sides) and every check, in the simulator's order."""
    rows: list[Row] = []
    names = list(sim.metrics) + [k for k in kern.metrics if k not in sim.metrics]
    for name in names:
        s, k = sim.metrics.get(name, _MISSING), kern.metrics.get(name, _MISSING)
        tol = tolerance_for(sim.scenario, name)
        keys = per_key(sim.scenario, name)
        if keys and tol is EXACT:
            tol = Tolerance("per-key", why="; ".join(f"{key} {t.describe()}: {t.why}" for key, t in keys.items()))
        if s is _MISSING or k is _MISSING:
            verdict = "kernel only" if s is _MISSING else "sim only"
        elif is_input(sim.scenario, name):
            verdict = "input" if s == k else "differs"
        elif tol.kind == "ignore":
            verdict = "ignored"
        else:
            verdict = "agree" if within_metric(sim.scenario, name, s, k) else "differs"
        one_sided = s is _MISSING or k is _MISSING
        rows.append(Row("metric", name, None if s is _MISSING else s, None if k is _MISSING else k,
                        "—" if one_sided else tol.describe(), "" if one_sided else tol.why, verdict))
    # A check is a claim the scenario makes: it agrees only when it holds on both sides. One that
    # fails anywhere is a disagreement, within any tolerance of the metrics, and so is a failing
    # check that the other side does not even make.
    kchecks = {c.name: c for c in kern.checks}
    schecks = {c.name: c for c in sim.checks}
    for c in sim.checks:
        kc = kchecks.get(c.name)
        if kc is None:
            rows.append(Row("check", c.name, c.passed, None, "—", "",
                            "sim only" if c.passed else "differs"))
        else:
            verdict = ("agree" if c.passed else "fails on both") if kc.passed == c.passed else "differs"
            rows.append(Row("check", c.name, c.passed, kc.passed, "holds on both", "", verdict))
    for c in kern.checks:
        if c.name not in schecks:
            rows.append(Row("check", c.name, None, c.passed, "—", "", "kernel only" if c.passed else "differs"))
    return rows


def agrees(rows: list[Row]) -> bool:
    """No metric differs and every check holds on both sides (inputs count for nothing)."""
    return not any(r.verdict in ("differs", "fails on both") for r in rows)


def compare(name: str, *, params: dict[str, Any] | None = None, sysctls: list[str] | None = None,
            seed: int = 1, messages: list[str] | None = None) -> tuple[RunResult, RunResult, list[Row]]:
    """Run scenario ``name`` in the simulator and on the kernel with the same parameters; compare.

    The kernel's lowered defaults (e.g. fewer connections) and default sysctls
    are passed to the simulator too, so both answer the same question.
    """
    from timewait.kernel.scenarios import (
        check_sysctl_flags,
        check_sysctl_hosts,
        get_kernel_scenario,
        parse_kernel_params,
        parse_sysctl_flags,
        run_kernel,
    )
    from timewait.kernel.topology import require_lab
    from timewait.scenarios import get_scenario, run_scenario

    ksc = get_kernel_scenario(name)
    get_scenario(name)  # a UsageError naming the simulator's scenarios if it has none of that name
    kp = parse_kernel_params(ksc, params)
    user = list(sysctls or [])
    parse_sysctl_flags(user)
    check_sysctl_hosts(name, params, user)
    require_lab()
    check_sysctl_flags(user)  # refused before the simulator's run, not after it
    shared_sysctls = [s for s in ksc.default_sysctls if not any(_same_sysctl(s, u) for u in user)] + user
    sim_params = {k: v for k, v in kp.items() if k not in ksc.kernel_only}
    sim = run_scenario(name, params=sim_params, sysctls=shared_sysctls, seed=seed, trace=True)
    kern = run_kernel(name, params=params, sysctls=user, seed=seed, messages=messages)
    if ksc.sim_view is not None and ksc.sim_view[0] in kern.metrics:
        metric, derive = ksc.sim_view
        sim.metrics[metric] = derive(sim, kern.metrics[metric])
    return sim, kern, compare_results(sim, kern)


def _same_sysctl(a: str, b: str) -> bool:
    ha, _, ra = a.partition(":")
    hb, _, rb = b.partition(":")
    return ra.partition("=")[0] == rb.partition("=")[0] and (ha == hb or "*" in (ha, hb))


def short(v: Any, width: int = 38) -> str:
    """A value for a table cell."""
    if v is None:
        return "—"
    if isinstance(v, float):
        text = f"{v:.4g}" if abs(v) < 1e5 else f"{v:.6g}"
    elif isinstance(v, list) and len(v) > 8:
        text = "[" + ", ".join(map(str, v[:6])) + f", … {len(v)} items]"
    else:
        text = str(v)
    return text if len(text) <= width else text[: width - 1] + "…"
