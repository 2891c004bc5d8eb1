"""Closed-form capacity answers: how many new connections per second a host can open.

Every answer is Little's law applied to one resource: a pool of *slots* (local
ports toward one destination, public ports of a NAT, connections of a pool),
each held for a *hold time* (the TIME_WAIT length, a reuse delay, a NAT mapping
timeout, the connection's own life), gives at most ``slots / hold`` new
connections per second. The options of ``timewait capacity`` change the slots
or the hold time; each change is one :class:`Answer` with its formula, its
numbers and a sentence of why, citing the rule ids of
``reference/linux-timewait-spec.md`` (PS-2, PS-4, PS-5, TW-1, TW-8, ...).

Everything here is pure: :func:`answer` takes a :class:`CapacityQuestion` and
returns a :class:`CapacityReport`; the CLI only parses and prints.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from timewait.bounds import INT_MAX
from timewait.errors import UsageError
from timewait.tcp.timewait import tw_reuse_allowed

# Linux 6.x defaults (spec section 0).
LINUX_PORT_RANGE = (32768, 60999)  # net.ipv4.ip_local_port_range
LINUX_TIME_WAIT_S = 60.0  # TCP_TIMEWAIT_LEN, a compile-time constant (TW-3)
LINUX_TW_REUSE = 2  # net.ipv4.tcp_tw_reuse: loopback only
LINUX_TW_REUSE_DELAY_MS = 1000  # net.ipv4.tcp_tw_reuse_delay (6.14+), range 1..60000
LINUX_MAX_TW_BUCKETS = 131072  # ehash/2 on a 24-32 GiB host (TW-9)
# Linux conntrack (nf_conntrack_proto_tcp.c) timeouts of a NAT in front.
CONNTRACK_TIME_WAIT_S = 120.0  # net.netfilter.nf_conntrack_tcp_timeout_time_wait
CONNTRACK_CLOSE_S = 10.0  # net.netfilter.nf_conntrack_tcp_timeout_close (after an RST)
NAT_PORT_RANGE = (1024, 65535)  # ports masquerade picks for a source port >= 1024

PORTS_USAGE = "ports must be LOW-HIGH with 1 <= LOW <= HIGH <= 65535"


@dataclass(frozen=True, slots=True)
class CapacityQuestion:
    """The inputs of one capacity question; defaults are a Linux 6.x client.

    ``None`` means "option not given": ``tw_reuse=None`` is Linux's default
    mode 2 without a step of its own, ``request_ms=None`` ignores the time a
    connection is open (the chapter's assumption: short next to TIME_WAIT).
    """

    ports: tuple[int, int] = LINUX_PORT_RANGE
    time_wait: float = LINUX_TIME_WAIT_S
    destinations: int = 1
    tw_reuse: int | None = None
    tw_reuse_delay_ms: int = LINUX_TW_REUSE_DELAY_MS
    timestamps: bool = True
    loopback: bool = False
    linger0: bool = False
    pool: int | None = None
    request_ms: float | None = None
    max_tw_buckets: int | None = None
    server_closes: bool = False
    nat_ports: int | None = None
    clients: int | None = None
    nat_timeout: float | None = None
    rate: float | None = None
    reserved: frozenset[int] = frozenset()  # net.ipv4.ip_local_reserved_ports
    ports_in_use: int | None = None  # local ports held toward the destination now (--dest)
    sources: tuple[tuple[str, str], ...] = ()  # (input, where its value came from), for the report

    @property
    def port_count(self) -> int:
        return port_count(*self.ports, self.reserved)

    @property
    def slots(self) -> int:
        """Local ports times destinations: how many 4-tuples a client can hold at once."""
        return self.port_count * self.destinations

    @property
    def life_s(self) -> float:
        return (self.request_ms or 0.0) / 1000.0

    @property
    def reuse_mode(self) -> int:
        return LINUX_TW_REUSE if self.tw_reuse is None else self.tw_reuse

    @property
    def uses_nat(self) -> bool:
        return self.nat_ports is not None or self.clients is not None


@dataclass(frozen=True, slots=True)
class Answer:
    """One closed-form answer: its formula, the numbers put in, the value and why.

    ``value`` is None when the resource this answer looks at sets no limit
    (e.g. no TIME_WAIT at all and no connection time given).
    """

    key: str
    title: str
    formula: str
    computation: str
    value: float | None
    unit: str
    explanation: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "formula": self.formula,
            "computation": self.computation,
            "value": _rounded(self.value),
            "exact": self.value,
            "unit": self.unit,
            "explanation": self.explanation,
            "details": {k: _rounded(v) for k, v in self.details.items()},
        }


@dataclass(frozen=True, slots=True)
class RateCheck:
    """Whether ``rate`` connections/s can be sustained, and what it costs."""

    rate: float
    sustainable: bool
    headroom: Answer
    time_wait_count: Answer

    def to_json(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "sustainable": self.sustainable,
            "headroom": self.headroom.to_json(),
            "time_wait_count": self.time_wait_count.to_json(),
        }


@dataclass(frozen=True, slots=True)
class CapacityReport:
    """The chain of answers for one question; the last step is the answer."""

    question: CapacityQuestion
    steps: list[Answer]
    rate_check: RateCheck | None
    assumptions: list[str]
    now: Answer | None = None  # with --dest: the ports free toward it right now

    @property
    def answer(self) -> Answer:
        return self.steps[-1]

    def to_json(self) -> dict[str, Any]:
        q = self.question
        head = self.answer
        return {
            "question": {
                "ports": f"{q.ports[0]}-{q.ports[1]}",
                "port_count": q.port_count,
                "time_wait_s": q.time_wait,
                "destinations": q.destinations,
                "tw_reuse": q.reuse_mode,
                "tw_reuse_delay_ms": q.tw_reuse_delay_ms,
                "timestamps": q.timestamps,
                "loopback": q.loopback,
                "linger0": q.linger0,
                "pool": q.pool,
                "request_ms": q.request_ms,
                "max_tw_buckets": q.max_tw_buckets,
                "server_closes": q.server_closes,
                "nat_ports": q.nat_ports,
                "clients": q.clients,
                "nat_timeout_s": q.nat_timeout,
                "rate": q.rate,
                "reserved_ports": len([p for p in q.reserved if q.ports[0] <= p <= q.ports[1]]),
                "ports_in_use": q.ports_in_use,
            },
            "connections_per_second": _rounded(head.value),
            "formula": head.formula,
            "answer": head.to_json(),
            "steps": [s.to_json() for s in self.steps],
            "rate_check": self.rate_check.to_json() if self.rate_check else None,
            "now": self.now.to_json() if self.now else None,
            "sources": dict(q.sources),
            "assumptions": self.assumptions,
        }


# --------------------------------------------------------------------- parsing


def parse_ports(text: str) -> tuple[int, int]:
    """``"LOW-HIGH"`` (or ``"LOW HIGH"``, as the sysctl prints it) to a checked pair."""
    m = re.fullmatch(r"\s*(\d{1,6})\s*(?:-|\s)\s*(\d{1,6})\s*", text)
    if m is None:
        raise UsageError(f"{PORTS_USAGE} (got {text!r})")
    low, high = int(m[1]), int(m[2])
    if not 1 <= low <= high <= 65535:
        raise UsageError(f"{PORTS_USAGE} (got {text!r})")
    return low, high


def port_count(low: int, high: int, reserved: frozenset[int] = frozenset()) -> int:
    """Ports connect() can pick from ``[low, high]`` over many calls, as Linux walks them.

    ``__inet_hash_connect`` walks ``remaining = high - low + 1`` rounded down to
    even, in steps of 2, first the ports with the parity of ``low``, then the
    others (PS-2), from a start that moves with every success (PS-3), and a
    port past ``high`` wraps by ``remaining``. With an odd count the top port
    is still reached whenever the start is above ``low``, so over many calls
    every port is used; only a 3-port range never reaches its top (the start
    is always ``low``). Measured on the kernel: 40000-40010 and 1025-1035 give
    11 connections, 40000-40002 gives 2. Reserved ports are skipped.
    """
    n = high - low + 1
    if n == 3:
        n = 2
    return n - sum(1 for p in reserved if low <= p < low + n)


def validate(q: CapacityQuestion) -> CapacityQuestion:
    """Check every input; raise :class:`UsageError` with one line naming the bad one."""
    low, high = q.ports
    if not 1 <= low <= high <= 65535:
        raise UsageError(PORTS_USAGE)
    _positive(q.time_wait, "--time-wait", "a number of seconds > 0")
    _at_least(q.destinations, 1, "--destinations", "an integer >= 1")
    if q.tw_reuse is not None and q.tw_reuse not in (0, 1, 2):
        raise UsageError(f"--tw-reuse must be 0, 1 or 2 (got {q.tw_reuse})")
    if not 1 <= q.tw_reuse_delay_ms <= 60000:
        raise UsageError(
            f"--tw-reuse-delay must be 1..60000 ms, as the sysctl allows (got {q.tw_reuse_delay_ms})"
        )
    if q.pool is not None:
        _at_least(q.pool, 1, "--pool", "an integer >= 1")
    if q.request_ms is not None:
        _positive(q.request_ms, "--request-ms", "a number of milliseconds > 0")
    if q.max_tw_buckets is not None:
        # the sysctl's own bounds (an int; a negative one means no TIME_WAIT at all)
        _at_least(q.max_tw_buckets, 0, "--max-tw-buckets", f"an integer 0..{INT_MAX}", INT_MAX)
    if q.nat_ports is not None:
        _at_least(q.nat_ports, 1, "--nat-ports", "an integer 1..65535 (ports of one public address)", 65535)
    if q.clients is not None:
        _at_least(q.clients, 1, "--clients", "an integer >= 1")
    if q.nat_timeout is not None:
        _positive(q.nat_timeout, "--nat-timeout", "a number of seconds > 0")
        if not q.uses_nat:
            raise UsageError("--nat-timeout needs --nat-ports or --clients (a NAT in front)")
    if q.rate is not None:
        _positive(q.rate, "--rate", "connections per second > 0")
    if q.linger0 and q.server_closes:
        raise UsageError(
            "--linger0 and --server-closes exclude each other: one says the client aborts, "
            "the other that the server closes first"
        )
    return q


def _positive(v: float, flag: str, what: str) -> None:
    if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
        raise UsageError(f"{flag} must be {what} (got {v})")


def _at_least(v: int, low: int, flag: str, what: str, high: int | None = None) -> None:
    if not isinstance(v, int) or v < low or (high is not None and v > high):
        raise UsageError(f"{flag} must be {what} (got {v})")


# ------------------------------------------------------------------ the steps


def base_limit(q: CapacityQuestion) -> Answer:
    """Ports over TIME_WAIT: the chapter's answer for one destination."""
    p, tw, life = q.port_count, q.time_wait, q.life_s
    hold = tw + life
    value = p / hold
    low, high = q.ports
    parity = "even" if low % 2 == 0 else "odd"
    if life:
        formula = "ports / (TIME_WAIT + connection time)"
        comp = f"{p} / ({_s(tw)} + {_s(life)}) = {_rate(value)}"
    else:
        formula = "ports / TIME_WAIT"
        comp = f"{p} / {_s(tw)} = {_rate(value)}"
    why = (
        f"Toward one destination (local addr, remote addr, remote port) every new connection "
        f"needs a local port no other socket uses for that 4-tuple, and the side that closes "
        f"first keeps its port in TIME_WAIT for {_s(tw)} (TW-1, TW-3). connect() walks "
        f"{p} ports of {low}-{high}{_walk_note(q)}, {parity} ones first, then the others (PS-2), "
        f"so at most {p} connections fit in one TIME_WAIT length (Little's law)."
    )
    return Answer("base", "One destination: ports over TIME_WAIT", formula, comp, value, "conn/s",
                  why, {"ports": p, "time_wait_s": tw})


def _walk_note(q: CapacityQuestion) -> str:
    """What the walk leaves out of the range: the top port of an odd count, reserved ports."""
    low, high = q.ports
    notes = []
    if high - low + 1 == 3:
        notes.append(f"not {high}: a 3-port walk never reaches its top")
    res = sorted(p for p in q.reserved if low <= p <= high)
    if res:
        notes.append(f"{len(res)} reserved (ip_local_reserved_ports) skipped")
    return f" ({'; '.join(notes)})" if notes else ""


def destinations_step(q: CapacityQuestion, prev: Answer) -> Answer:
    """K distinct (remote addr, remote port) pairs multiply the port pool."""
    k = q.destinations
    hold = q.time_wait + q.life_s
    value = q.slots / hold
    comp = f"{q.port_count} x {k} / {_s(hold)} = {_rate(value)}"
    why = (
        f"The port search takes a port when the whole 4-tuple is unique (PS-4), so one local "
        f"port serves each of the {k} destinations once: {k} destinations hold {q.slots} "
        f"4-tuples in TIME_WAIT at most, and the limit is {k} times the one-destination "
        f"{_rate(prev.value)} (still {_rate(prev.value)} toward any single destination)."
    )
    return Answer("destinations", f"{k} destinations", "ports x destinations / TIME_WAIT", comp,
                  value, "conn/s", why, {"destinations": k, "per_destination": prev.value})


def tw_reuse_step(q: CapacityQuestion, prev: Answer) -> Answer:
    """``tcp_tw_reuse``: connect() may take over its own TIME_WAIT after the delay (PS-5)."""
    mode, delay_s, tw = q.reuse_mode, q.tw_reuse_delay_ms / 1000.0, q.time_wait
    title = f"tcp_tw_reuse={mode}, tcp_tw_reuse_delay={q.tw_reuse_delay_ms} ms"
    if not tw_reuse_allowed(mode, q.timestamps, q.loopback, False):
        # Why not, in the order a reader asks: the mode, the flow, then timestamps.
        if mode == 0:
            why = "Mode 0: connect() never takes over a TIME_WAIT, so each port waits the full TIME_WAIT."
        elif mode == 2 and not q.loopback:
            loop = answer(replace(q, loopback=True, rate=None)).steps
            loop_value = next(s.value for s in loop if s.key == "tw_reuse")
            why = (
                "Mode 2 (the Linux default) reuses a TIME_WAIT only for a loopback flow: one bound to "
                "lo or with an address in 127.0.0.0/8 or ::1; another address on lo does not count "
                f"(PS-5). This destination is not loopback, so nothing changes; on loopback "
                f"(--loopback) the limit would be {_rate(loop_value)}."
            )
        else:
            why = (
                "Reuse needs the old connection to have used TCP timestamps (tw_ts_recent_stamp != 0, "
                "PS-5) so that PAWS can reject its delayed segments; with tcp_timestamps=0 on either "
                "side none are negotiated (TS-1) and no TIME_WAIT is ever taken over."
            )
        return _unchanged("tw_reuse", title, prev, why)
    hold = min(delay_s, tw) + q.life_s
    value = q.slots / hold
    where = "on this loopback flow" if mode == 2 else "toward any destination"
    held = f"min({_s(delay_s)}, {_s(tw)})"
    held = f"({held} + {_s(q.life_s)})" if q.life_s else held
    comp = f"{q.slots} / {held} = {_rate(value)}"
    why = (
        f"A new connect() {where} may take over a TIME_WAIT of the same 4-tuple once it is older "
        f"than tcp_tw_reuse_delay (PS-5; kernels before 6.14: older than 1 s on a seconds clock, "
        f"in effect 1-2 s), but only because the old connection used timestamps on both sides, "
        f"so PAWS drops its delayed segments; mode 2 works on loopback only. Each port is then "
        f"busy for {_s(min(delay_s, tw))} instead of {_s(tw)}, and at most {q.slots} TIME_WAITs "
        f"exist at once."
    )
    if delay_s >= tw:
        why += " The delay is not shorter than TIME_WAIT, so reuse gains nothing here."
    return Answer("tw_reuse", title, "ports x destinations / min(tcp_tw_reuse_delay, TIME_WAIT)",
                  comp, value, "conn/s", why, {"hold_s": hold})


def linger0_step(q: CapacityQuestion, prev: Answer) -> Answer:
    """SO_LINGER {1, 0}: close() sends RST, no TIME_WAIT at all."""
    value, comp = _ports_over_life(q)
    why = (
        "SO_LINGER {on, 0} makes close() send an RST and free the socket at once: no FIN "
        "exchange, no TIME_WAIT, the port is free immediately, so TIME_WAIT sets no limit; what "
        "remains is how long each connection holds its port (--request-ms), CPU and the "
        "server's accept queue. The danger: the peer gets a reset (ECONNRESET, data not yet "
        "read is lost), and nothing protects the next connection on the same 4-tuple from "
        "delayed duplicates of the old one (S3)."
    )
    return Answer("linger0", "SO_LINGER {1, 0}: abort instead of close",
                  "ports x destinations / connection time (no TIME_WAIT)", comp, value, "conn/s",
                  why, {"client_time_wait_count": 0})


def server_closes_step(q: CapacityQuestion, prev: Answer) -> Answer:
    """The server closes first: its TIME_WAIT, on its fixed port, not the client's."""
    value, comp = _ports_over_life(q)
    cap = q.max_tw_buckets if q.max_tw_buckets is not None else LINUX_MAX_TW_BUCKETS
    tw = q.time_wait
    why = (
        "When the server closes first it is the one that enters TIME_WAIT, on (server addr, "
        "server port, client addr, client port); the client goes CLOSE_WAIT -> LAST_ACK -> "
        "CLOSED with no TIME_WAIT (TW-1), so its port is free at once and TIME_WAIT no longer "
        f"limits the client. The server holds rate x {_s(tw)} TIME_WAITs (Little's law), up to "
        f"its tcp_max_tw_buckets ({cap}; above {_rate(cap / tw)} the server skips TIME_WAIT, "
        f"TW-8). Once the client cycles through its {q.slots} ports faster than that "
        f"({_rate(q.slots / tw)}), its SYNs meet the server's TIME_WAITs; Linux accepts such a "
        f"SYN when its sequence number is past the old one or its timestamp is newer (TW-B, "
        f"RO-1), which clients' clock-driven ISNs and timestamps normally give."
    )
    details = {"server_max_tw_buckets": cap, "server_cap_reached_at_rate": cap / tw,
               "four_tuple_reuse_above_rate": q.slots / tw}
    return Answer("server_closes", "The server closes first",
                  "ports x destinations / connection time (TIME_WAIT on the server)", comp, value,
                  "conn/s", why, details)


def max_tw_buckets_step(q: CapacityQuestion, prev: Answer) -> Answer:
    """``tcp_max_tw_buckets``: past the cap, closes skip TIME_WAIT (TW-8)."""
    cap, tw = q.max_tw_buckets, q.time_wait
    assert cap is not None
    title = f"tcp_max_tw_buckets={cap}"
    if q.linger0:
        return _unchanged("max_tw_buckets", title, prev, "With SO_LINGER 0 no TIME_WAIT is created, so the cap never comes into play.")
    if q.server_closes:
        why = (f"The cap applies to the server, which holds the TIME_WAITs: at most {cap}, "
               f"reached at {_rate(cap / tw)}; the client's limit does not change.")
        return _unchanged("max_tw_buckets", title, prev, why, {"protected_rate": cap / tw})
    slots = q.slots
    if cap >= slots:
        why = (f"The cap ({cap}) is at least the number of TIME_WAITs the ports can hold "
               f"({slots}), so it never binds and the limit stays {_rate(prev.value)}.")
        return _unchanged("max_tw_buckets", title, prev, why, {"protected_rate": cap / tw})
    value, comp = _ports_over_life(q, held=cap)
    why = (
        f"Once {cap} TIME_WAITs exist, a closing connection skips TIME_WAIT (TW-8: the last ACK "
        f"still goes out, the socket is destroyed, TcpExtTCPTimeWaitOverflow counts it), so at "
        f"most {cap} of the {slots} ports are ever held and the other {slots - cap} are free at "
        f"close: ports stop being the limit. The ports / TIME_WAIT answer holds only while the "
        f"TIME_WAIT count is under the cap, that is up to {cap} / {_s(tw)} = {_rate(cap / tw)}; "
        f"above that rate the extra connections get no TIME_WAIT and lose what it protects (a "
        f"lost last ACK is answered with RST, old duplicates can reach a new incarnation)."
    )
    return Answer("max_tw_buckets", title,
                  "(ports x destinations - cap) / connection time",
                  comp, value, "conn/s", why, {"protected_rate": cap / tw})


def pool_step(q: CapacityQuestion, prev: Answer) -> Answer:
    """A pool of N long-lived connections: N ports, throughput N / request time."""
    n = q.pool
    assert n is not None
    fits = n <= q.slots
    if not fits:
        why = (f"A pool of {n} connections needs {n} distinct 4-tuples but only {q.slots} exist "
               f"({q.port_count} ports x {q.destinations} destinations): it cannot be opened.")
        return Answer("pool", f"A pool of {n} connections", "ports needed = N <= ports x destinations",
                      f"{n} > {q.slots}", None, "req/s", why, {"ports_needed": n, "fits": False})
    if q.request_ms:
        value = n * 1000.0 / q.request_ms
        comp = f"{n} / {_s(q.request_ms / 1000.0)} = {_rate(value, 'req/s')}"
    else:
        value, comp = None, f"ports needed = {n}; give --request-ms for a throughput"
    why = (
        f"A pool keeps {n} connections open and sends requests over them, so it needs {n} local "
        f"ports (of {q.slots}) and opens a new connection only when one breaks: almost no "
        f"TIME_WAIT, and the rate is bounded by request throughput (N / request time), not by "
        f"ports / TIME_WAIT."
    )
    return Answer("pool", f"A pool of {n} connections", "N / request time", comp, value, "req/s",
                  why, {"ports_needed": n, "fits": True})


def nat_step(q: CapacityQuestion, prev: Answer) -> Answer:
    """A NAT in front: all clients share its public ports toward one destination."""
    m = q.clients or 1
    n = q.nat_ports if q.nat_ports is not None else port_count(*NAT_PORT_RANGE)
    k = q.destinations
    if q.nat_timeout is not None:
        t_nat, which = q.nat_timeout, "--nat-timeout"
    elif q.linger0:
        t_nat, which = CONNTRACK_CLOSE_S, "nf_conntrack_tcp_timeout_close (after an RST)"
    else:
        t_nat, which = CONNTRACK_TIME_WAIT_S, "nf_conntrack_tcp_timeout_time_wait"
    if q.pool is not None:
        needed = m * q.pool
        fits = needed <= n * k
        value = m * prev.value if (fits and prev.value is not None) else None
        why = (f"{m} clients with a pool of {q.pool} each keep {needed} flows open through the "
               f"NAT, which needs {needed} of its {n * k} public ports toward the destinations"
               + ("; it fits and throughput scales with the clients." if fits else "; it does not fit."))
        return Answer("nat", f"{m} clients behind a NAT with {n} public ports",
                      "clients x pool throughput, if clients x N <= NAT ports", f"{needed} <= {n * k}: {fits}",
                      value, "req/s", why, {"nat_ports_needed": needed, "fits": fits})
    hold = t_nat + q.life_s
    nat_limit = n * k / hold
    clients_limit = None if prev.value is None else m * prev.value
    value = nat_limit if clients_limit is None else min(nat_limit, clients_limit)
    binds = "the NAT" if clients_limit is None or nat_limit <= clients_limit else "the clients"
    clients_txt = "no limit" if clients_limit is None else f"{m} x {_rate(prev.value)} = {_rate(clients_limit)}"
    comp = (f"min(clients: {clients_txt}; NAT: {n} x {k} / {_s(hold)} = {_rate(nat_limit)}) "
            f"= {_rate(value)}")
    why = (
        f"All {m} clients leave through the NAT's public address, so toward one destination "
        f"every connection needs its own public port, and the NAT keeps a closed flow's mapping, "
        f"and so its port, for {_s(t_nat)} ({which}; Linux conntrack's default is 120 s after a "
        f"FIN exchange). The office-wide limit is the smaller of the clients' own limit and the "
        f"NAT's ports over that timeout: here {binds} binds. Assumed: the NAT does not hand out "
        f"a public port whose mapping toward the same destination is still alive."
    )
    return Answer("nat", f"{m} clients behind a NAT with {n} public ports",
                  "min(clients x per-client limit, NAT ports x destinations / NAT mapping timeout)",
                  comp, value, "conn/s", why,
                  {"nat_limit": nat_limit, "clients_limit": clients_limit, "nat_timeout_s": t_nat,
                   "binds": binds})


def rate_check(q: CapacityQuestion, limit: Answer) -> RateCheck:
    """Is ``q.rate`` sustainable under ``limit``; the headroom; the TIME_WAIT count it keeps."""
    r = q.rate
    assert r is not None
    unit = limit.unit
    if limit.value is None:
        ok = limit.details.get("fits", True)
        head = Answer("headroom", "Headroom", "limit - rate", "no limit from ports or TIME_WAIT",
                      None, unit, "Nothing computed here limits this rate; CPU, the network and "
                      "the server's accept queue do." if ok else limit.explanation)
    else:
        ok = r <= limit.value * (1 + 1e-12)
        room = limit.value - r
        pct = 100.0 * room / limit.value if limit.value else 0.0
        head = Answer("headroom", "Headroom", "limit - rate",
                      f"{_rate(limit.value, unit)} - {_num(r)} = {_num(room, 1)} {unit} ({pct:.1f} %)",
                      room, unit, _verdict(q, r, limit.value, unit), {"percent": pct})
    return RateCheck(r, bool(ok), head, _tw_count(q, r))


def _verdict(q: CapacityQuestion, r: float, limit: float, unit: str) -> str:
    if r <= limit * (1 + 1e-12):
        return f"Yes: {_num(r)} {unit} is within the limit of {_rate(limit, unit)}."
    why = f"No: {_num(r)} {unit} is over the limit of {_rate(limit, unit)}."
    holding_tw = not (q.linger0 or q.server_closes or q.pool is not None or q.uses_nat)
    if holding_tw and q.slots / r < q.time_wait:
        why += (f" The {q.slots} ports fill after {q.slots} / {_num(r)} = {_s(q.slots / r)}, "
                f"before the first TIME_WAIT ends; then connect() fails with EADDRNOTAVAIL.")
    return why


def _tw_count(q: CapacityQuestion, r: float) -> Answer:
    """Little's law: TIME_WAIT count = rate x TIME_WAIT length, capped by what holds it."""
    tw = q.time_wait
    title = "TIME_WAIT count in steady state"
    if q.linger0:
        return Answer("time_wait_count", title, "0 (no TIME_WAIT)", "0", 0, "sockets",
                      "SO_LINGER 0 leaves no TIME_WAIT anywhere.")
    if q.pool is not None:
        return Answer("time_wait_count", title, "~0 (connections are reused)", "0", 0, "sockets",
                      "A pool closes connections only when they break, so it leaves about no TIME_WAIT.")
    want = r * tw
    caps = []
    if q.max_tw_buckets is not None or q.server_closes:
        cap = q.max_tw_buckets if q.max_tw_buckets is not None else LINUX_MAX_TW_BUCKETS
        caps.append((cap, "tcp_max_tw_buckets"))
    where = "the server" if q.server_closes else "the client"
    if q.uses_nat and not q.server_closes:
        m = q.clients or 1
        want = r / m * tw
        where = "each client"
        caps.append((q.slots, "ports x destinations"))
    elif not q.server_closes:
        caps.append((q.slots, "ports x destinations"))
    count, capped_by = want, ""
    for cap, name in caps:
        if cap < count:
            count, capped_by = cap, name
    formula = "rate x TIME_WAIT" + (f", capped by {capped_by}" if capped_by else "")
    rate_txt = f"{_num(r)} / {q.clients or 1}" if where == "each client" else _num(r)
    comp = f"{rate_txt} x {_s(tw)} = {_num(want, 1)}"
    if capped_by:
        comp += f" -> {int(count)} ({capped_by})"
    why = f"Little's law: {where} holds rate x TIME_WAIT length sockets in TIME_WAIT"
    why += f", but never more than its {capped_by} ({int(count)})." if capped_by else "."
    if capped_by == "tcp_max_tw_buckets":
        skip = r - count / tw
        why += (f" The other {_num(skip, 1)} conn/s of closes skip TIME_WAIT (TW-8) and go "
                f"without its protection.")
    details: dict[str, Any] = {"holder": where}
    if q.uses_nat and not q.server_closes:
        t_nat = q.nat_timeout or (CONNTRACK_CLOSE_S if q.linger0 else CONNTRACK_TIME_WAIT_S)
        n = q.nat_ports if q.nat_ports is not None else port_count(*NAT_PORT_RANGE)
        details["nat_mappings_closing"] = r * t_nat
        why += f" The NAT would hold rate x {_s(t_nat)} = {_num(r * t_nat, 1)} closed mappings"
        if r * t_nat > n * q.destinations:
            why += f", more than its {n * q.destinations} public ports toward the destinations: it runs out."
        else:
            why += f", within its {n * q.destinations} public ports toward the destinations."
    return Answer("time_wait_count", title, formula, comp, count, "sockets", why, details)


# ------------------------------------------------------------------- the chain


def answer(q: CapacityQuestion) -> CapacityReport:
    """Validate ``q`` and compute its chain of answers; the last step is the answer."""
    validate(q)
    steps = [base_limit(q)]
    if q.destinations > 1:
        steps.append(destinations_step(q, steps[0]))
    if q.tw_reuse is not None or q.loopback or q.tw_reuse_delay_ms != LINUX_TW_REUSE_DELAY_MS:
        steps.append(tw_reuse_step(q, steps[-1]))
    if q.linger0:
        steps.append(linger0_step(q, steps[-1]))
    if q.server_closes:
        steps.append(server_closes_step(q, steps[-1]))
    if q.max_tw_buckets is not None:
        steps.append(max_tw_buckets_step(q, steps[-1]))
    if q.pool is not None:
        steps.append(pool_step(q, steps[-1]))
    if q.uses_nat:
        steps.append(nat_step(q, steps[-1]))
    check = rate_check(q, steps[-1]) if q.rate is not None else None
    return CapacityReport(q, steps, check, _assumptions(q), now_step(q))


def now_step(q: CapacityQuestion) -> Answer | None:
    """With the sockets a host holds toward the destination now: how many ports are left."""
    if q.ports_in_use is None:
        return None
    p, used = q.port_count, q.ports_in_use
    free = max(p - used, 0)
    why = (f"This host holds {used} local ports toward the destination now (every state but "
           f"LISTEN, TIME_WAIT included); of the {p} the walk visits, {free} are free for new "
           f"connections until some of those close and their TIME_WAIT ends.")
    return Answer("now", "Ports free toward the destination now", "ports - ports in use", f"{p} - {used} = {free}",
                  float(free), "ports", why, {"ports": p, "in_use": used})


def _assumptions(q: CapacityQuestion) -> list[str]:
    out = [
        "Steady state: rates are long-run averages (Little's law); a burst can exceed them "
        "until the ports are used up.",
        "A port counts as busy from connect() to the end of TIME_WAIT"
        + ("; nothing else on the host holds ports of the range." if q.ports_in_use is None
           else "."),
    ]
    if not q.reserved:
        out.append("No ports are reserved (net.ipv4.ip_local_reserved_ports is empty).")
    if q.request_ms is None:
        out.append("Connections are short next to TIME_WAIT (the chapter's assumption); give "
                   "--request-ms to count the time each one is open.")
    if q.time_wait != LINUX_TIME_WAIT_S:
        out.append(f"TIME_WAIT lasts {_s(q.time_wait)}; Linux's is fixed at 60 s (TW-3), so this "
                   "models another system or the textbook 2 x MSL.")
    if q.uses_nat:
        out.append("NAT: Linux conntrack-like; a closed flow keeps its public port for the "
                   "mapping timeout, and clients' source ports never collide inside the NAT.")
    return out


def _unchanged(key: str, title: str, prev: Answer, why: str,
               details: dict[str, Any] | None = None) -> Answer:
    comp = f"unchanged: {_rate(prev.value, prev.unit)}" if prev.value is not None else "unchanged: no limit"
    formula = prev.formula if prev.formula.endswith("(unchanged)") else f"{prev.formula} (unchanged)"
    return Answer(key, title, formula, comp, prev.value, prev.unit, why,
                  details or {})


def _ports_over_life(q: CapacityQuestion, held: int = 0) -> tuple[float | None, str]:
    """Ports free of TIME_WAIT over the connection's own life, when that life is known."""
    free = q.slots - held
    prefix = f"({q.slots} - {held})" if held else f"{q.slots}"
    if not q.life_s:
        return None, f"{prefix} / connection time: no limit from TIME_WAIT (give --request-ms)"
    value = free / q.life_s
    return value, f"{prefix} / {_s(q.life_s)} = {_rate(value)}"


# ------------------------------------------------------------------ formatting


def _num(x: float, digits: int = 3) -> str:
    """A number as people write it: 120, 0.5, 537.6."""
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.{digits}f}".rstrip("0").rstrip(".")


def _s(seconds: float) -> str:
    return f"{_num(seconds)} s"


def _rate(value: float | None, unit: str = "conn/s") -> str:
    return "no limit" if value is None else f"{value:.1f} {unit}"


def _rounded(v: Any) -> Any:
    if isinstance(v, float) and not v.is_integer():
        return round(v, 1)
    if isinstance(v, float):
        return int(v)
    return v
