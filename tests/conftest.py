"""Shared test helpers: a TCP connection or TIME_WAIT record built directly in a state, and a
two-host simulation with a compact view of what went on the wire.

In the style of smoltcp's socket tests (``socket_established()``, ``send!``/``recv!``): a
:class:`Tcb` wraps a sans-I/O :class:`Connection` with a tiny fake environment; ``tcb.send(seg,
at=µs)`` feeds one segment and returns exactly what the connection answered, and
``tcb.out(...)``/``tcb.seg(...)`` build the segments to compare with. Every time is an explicit
integer in microseconds; the local timestamp clock is the simulated time in ms (no offset), so
a TSval in an expectation reads as "sent at that ms".

Fixtures: ``tcb`` (a factory ``tcb(state, **options)``), ``record`` (a TIME_WAIT record factory)
and ``lan`` (a two-host simulation factory). The constants and the ``tx``/``flags_text``
helpers are importable as ``from conftest import ...``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from timewait.sim.host import Host
from timewait.sim.simulation import Simulation
from timewait.tcp.config import MS, SEC, TcpConfig
from timewait.tcp.connection import Connection
from timewait.tcp.segment import ACK, FIN, PSH, RST, SYN, URG, Segment, ip_aton
from timewait.tcp.states import (
    BY_NAME,
    CLOSE_WAIT,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LAST_ACK,
    SYN_RECEIVED,
    SYN_SENT,
    TIME_WAIT,
)
from timewait.tcp.timewait import TimeWait
from timewait.trace import TX

M32 = 0xFFFFFFFF

LOCAL_ADDR = ip_aton("10.0.0.1")
REMOTE_ADDR = ip_aton("10.0.0.2")
LOCAL_PORT = 49152
REMOTE_PORT = 80
LOCAL_SEQ = 10_000             # our ISS
REMOTE_SEQ = (1 << 32) - 300   # the peer's ISS: close to the wrap, so arithmetic must be modular
REMOTE_TS = 700_000            # the peer's TSval in its SYN (and its clock at t = 0, in ms)
REMOTE_WIN = 502               # the peer's window field (scaled by 2**7: 64256 bytes)
LOCAL_WIN = 502                # our window field: the initial 64240 rounded up to 2**7 (WIN-3)
WSCALE = 7
MSS = 1460
RTO = 200 * MS                 # the RTO of a fixture connection (RTT well under TCP_RTO_MIN)


def ls(n: int) -> int:
    """Our sequence number ``LOCAL_SEQ + n`` (mod 2**32)."""
    return (LOCAL_SEQ + n) & M32


def rs(n: int) -> int:
    """The peer's sequence number ``REMOTE_SEQ + n`` (mod 2**32)."""
    return (REMOTE_SEQ + n) & M32


class FakeEnv:
    """What a :class:`Connection` needs from its owner: a config and a counter bump."""

    def __init__(self, **cfg: Any) -> None:
        cfg.setdefault("ts_base_ms", 0)
        self.cfg = TcpConfig(**cfg)
        self.counters: Counter[str] = Counter()
        self.pure_acks = self.delivered = self.orig_data_sent = 0

    def bump(self, name: str, n: int = 1) -> None:
        self.counters[name] += n


@dataclass
class Tcb:
    """A connection under test, seen from the wire: what we feed it and what it sends."""

    conn: Connection
    env: FakeEnv

    @property
    def cfg(self) -> TcpConfig:
        return self.env.cfg

    @property
    def counters(self) -> Counter[str]:
        return self.env.counters

    @property
    def state(self) -> str:
        return self.conn.state_name

    # ------------------------------------------------------------------ building segments

    def seg(self, flags: int, seq: int, ack: int = 0, payload: bytes = b"", *, win: int = REMOTE_WIN,
            ts: tuple[int, int] | None | bool = True, **kw: Any) -> Segment:
        """A segment from the peer. ``ts=True`` means the peer's usual timestamp
        (TSval ``REMOTE_TS``, TSecr our last TSval) when the connection uses timestamps."""
        if ts is True:
            ts = (REMOTE_TS, self.conn.cfg.ts_clock(0)) if self.conn.ts_ok else None
        elif ts is False:
            ts = None
        return Segment(REMOTE_ADDR, LOCAL_ADDR, REMOTE_PORT, LOCAL_PORT, seq & M32, ack & M32, flags, win,
                       payload, ts=ts, **kw)

    def out(self, flags: int, seq: int, ack: int = 0, payload: bytes = b"", *, win: int = LOCAL_WIN,
            ts: tuple[int, int] | None = None, **kw: Any) -> Segment:
        """A segment we expect the connection to send (all fields explicit)."""
        return Segment(LOCAL_ADDR, REMOTE_ADDR, LOCAL_PORT, REMOTE_PORT, seq & M32, ack & M32, flags, win,
                       payload, ts=ts, **kw)

    # ------------------------------------------------------------------ driving

    def drain(self) -> list[Segment]:
        out = self.conn.outbox
        self.conn.outbox = []
        return out

    def send(self, seg: Segment, at: int) -> list[Segment]:
        """Deliver ``seg`` at time ``at`` (µs); return every segment sent in answer.

        Like the host, the ACK still owed after the instant is flushed
        (:meth:`Connection.flush`) before the outbox is drained.
        """
        self.conn.process(seg, at)
        self.conn.flush(at)
        return self.drain()

    def tick(self, at: int) -> list[Segment]:
        """Fire the timers due at ``at`` (µs) and return what was sent."""
        pa = self.conn.poll_at()
        if pa and pa <= at:
            self.conn.on_timer(at)
            self.conn.flush(at)
        return self.drain()

    def run_timers(self, until: int, limit: int = 1000) -> list[tuple[int, Segment]]:
        """Fire every timer up to ``until`` (µs); ``[(time, segment sent)]`` in order."""
        sent: list[tuple[int, Segment]] = []
        for _ in range(limit):
            pa = self.conn.poll_at()
            if not pa or pa > until:
                return sent
            sent += [(pa, s) for s in self.tick(pa)]
        raise AssertionError(f"more than {limit} timer firings before {until} µs")


def make_tcb(state: str | int = "ESTABLISHED", *, ts: bool = True, orphan: bool = False, **cfg: Any) -> Tcb:
    """A :class:`Tcb` whose connection is directly in ``state`` at time 0.

    The handshake happened with ISSs ``LOCAL_SEQ``/``REMOTE_SEQ``, options MSS 1460, SACK,
    window scale 7 both ways and (``ts=True``) timestamps: our clock is 0 ms, the peer's
    ``REMOTE_TS``. In FIN states our FIN is at ``ls(1)`` and the peer's at ``rs(1)``; a FIN
    not yet acknowledged has its retransmission timer armed for ``RTO``. SYN_SENT and
    SYN_RECEIVED come from ``open_active``/``open_passive`` at time 0 (their SYN/SYN-ACK is
    drained).
    """
    st = BY_NAME[state] if isinstance(state, str) else state
    env = FakeEnv(**cfg)
    if not ts:
        env.cfg.timestamps = 0
    c = Connection(env, LOCAL_ADDR, LOCAL_PORT, REMOTE_ADDR, REMOTE_PORT)
    t = Tcb(c, env)
    if st == SYN_SENT:
        c.open_active(0, LOCAL_SEQ, 0)
        t.drain()
        return t
    if st == SYN_RECEIVED:
        syn = Segment(REMOTE_ADDR, LOCAL_ADDR, REMOTE_PORT, LOCAL_PORT, REMOTE_SEQ, 0, SYN, 64240,
                      mss=MSS, wscale=WSCALE, sack_ok=True, ts=(REMOTE_TS, 0) if ts else None)
        c.open_passive(syn, 0, LOCAL_SEQ, 0)
        t.drain()
        return t
    c.state = st
    c.iss = LOCAL_SEQ
    c.irs = REMOTE_SEQ
    c.snd_una = c.snd_nxt = ls(1)
    c.rcv_nxt = c.rcv_wup = rs(1)
    c.rcv_wnd = c.rcv_ssthresh = min(env.cfg.syn_win, env.cfg.rcv_buf >> 1)  # our SYN's window (WIN-3)
    c.snd_wnd = REMOTE_WIN << WSCALE
    c.snd_wscale = c.rcv_wscale = WSCALE
    c.wscale_ok = c.sack_ok = True
    c.snd_mss = MSS
    c.ts_ok = ts
    c.ts_off = 0
    c.ts_recent = REMOTE_TS if ts else 0
    c.ts_recent_stamp = 0
    c.rto = RTO
    c.srtt = 1000
    c.rttvar = 500
    if st in (FIN_WAIT_1, FIN_WAIT_2, CLOSING, LAST_ACK, TIME_WAIT):
        c.fin_queued = c.fin_sent = True
        c.snd_nxt = ls(2)
        c.orphan = c.rcv_shut = orphan or st != FIN_WAIT_2
        if st in (FIN_WAIT_2, TIME_WAIT):
            c.snd_una = ls(2)
        else:
            c.rto_at = RTO
            c.retrans_stamp = 0
    if st in (CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT):
        c.rcv_nxt = c.rcv_wup = rs(2)
    if orphan:
        c.orphan = c.rcv_shut = True
    assert st in (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT), state
    return t


@pytest.fixture
def tcb() -> Callable[..., Tcb]:
    """``tcb(state, ts=True, orphan=False, **TcpConfig fields)`` -> :class:`Tcb`."""
    return make_tcb


# --------------------------------------------------------------------------- TIME_WAIT records

TW_RCV_NXT = rs(2)   # one past the peer's FIN
TW_SND_NXT = ls(2)   # one past our FIN


class Record:
    """A TIME_WAIT record under test with its config and counters."""

    def __init__(self, tw: TimeWait, env: FakeEnv) -> None:
        self.tw = tw
        self.env = env

    @property
    def cfg(self) -> TcpConfig:
        return self.env.cfg

    @property
    def counters(self) -> Counter[str]:
        return self.env.counters

    def seg(self, flags: int, seq: int, ack: int = TW_SND_NXT, payload: bytes = b"", *,
            ts: tuple[int, int] | None = None, win: int = REMOTE_WIN) -> Segment:
        return Segment(REMOTE_ADDR, LOCAL_ADDR, REMOTE_PORT, LOCAL_PORT, seq & M32, ack & M32, flags, win,
                       payload, ts=ts)

    def ack(self, tsval: int | None = None, tsecr: int | None = None, win: int = LOCAL_WIN) -> Segment:
        """The TW ACK we expect (TW-R1): seq = tw_snd_nxt, ack = tw_rcv_nxt."""
        ts = None if tsval is None else (tsval, tsecr if tsecr is not None else self.tw.ts_recent)
        return Segment(LOCAL_ADDR, REMOTE_ADDR, LOCAL_PORT, REMOTE_PORT, self.tw.snd_nxt, self.tw.rcv_nxt, ACK,
                       win, ts=ts)

    def send(self, seg: Segment, at: int) -> tuple[int, Segment | None]:
        return self.tw.process(seg, at, self.env.cfg, self.env.bump)


def make_record(substate: str = "TIME_WAIT", *, ts: bool = True, entered: int = 0,
                timeout: int = 60 * SEC, **cfg: Any) -> Record:
    """A TIME_WAIT (or FIN_WAIT_2-substate) record entered at ``entered`` µs.

    TIME_WAIT: both FINs exchanged (rcv_nxt ``rs(2)``, snd_nxt ``ls(2)``); FIN_WAIT_2: the
    peer's FIN not yet received (rcv_nxt ``rs(1)``). With ``ts`` the peer's last TSval
    ``REMOTE_TS`` was stamped at ``entered``; our TS clock is the simulated ms (offset 0).
    """
    env = FakeEnv(**cfg)
    sub = TIME_WAIT if substate == "TIME_WAIT" else FIN_WAIT_2
    key = (LOCAL_ADDR, LOCAL_PORT, REMOTE_ADDR, REMOTE_PORT)
    rcv_nxt = TW_RCV_NXT if sub == TIME_WAIT else rs(1)
    tw = TimeWait(key, sub, rcv_nxt, TW_SND_NXT, LOCAL_WIN << WSCALE, WSCALE, REMOTE_TS if ts else 0,
                  (entered or 1) if ts else 0, 0, entered, entered + timeout)
    return Record(tw, env)


@pytest.fixture
def record() -> Callable[..., Record]:
    """``record(substate="TIME_WAIT", ts=True, entered=0, timeout=60 s, **TcpConfig fields)``."""
    return make_record


# --------------------------------------------------------------------------- two hosts

C1, C2 = "10.0.0.1", "10.0.0.2"


def make_lan(*, sysctls: list[str] | None = None, profile: str = "linux", seed: int = 1,
             delay_ms: float = 0.5, addrs: tuple[str, str] = (C1, C2)) -> tuple[Simulation, Host, Host]:
    """Two hosts ``c1``/``c2`` on one link (one-way delay ``delay_ms``), uptime 1000 s each."""
    sim = Simulation(profile=profile, seed=seed, sysctls=sysctls)
    c1 = sim.add_host("c1", addrs[0], uptime_s=1000)
    c2 = sim.add_host("c2", addrs[1], uptime_s=1000)
    sim.link(c1, c2, delay_ms=delay_ms)
    return sim, c1, c2


@pytest.fixture
def lan() -> Callable[..., tuple[Simulation, Host, Host]]:
    """``lan(sysctls=[...], profile=, seed=, delay_ms=, addrs=)`` -> ``(sim, c1, c2)``."""
    return make_lan


_LETTERS = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (URG, "U"), (ACK, "."))


def flags_text(flags: int) -> str:
    """tcpdump's flag letters: ``S``, ``S.``, ``.``, ``F.``, ``P.``, ``R``, ``R.``."""
    return "".join(ch for bit, ch in _LETTERS if flags & bit) or "none"


def tx(sim: Simulation, host: str | None = None, since: int = 0) -> list[tuple[int, str, str, int, int, int]]:
    """Transmitted packets as ``(time_us, host, flags, seq, ack, payload_len)``."""
    return [
        (r[0], r[2], flags_text(r[3].flags), r[3].seq, r[3].ack, len(r[3].payload))
        for r in sim.trace.records
        if r[1] == TX and (host is None or r[2] == host) and r[0] >= since
    ]


def tx_segments(sim: Simulation, host: str | None = None) -> list[tuple[int, Segment]]:
    return [(r[0], r[3]) for r in sim.trace.records if r[1] == TX and (host is None or r[2] == host)]


def states(sim: Simulation, host: str | None = None) -> list[tuple[int, str, str, str]]:
    """State changes as ``(time_us, host, old, new)``."""
    return [(r[0], r[2], r[4], r[5]) for r in sim.trace.records
            if r[1] == "state" and (host is None or r[2] == host)]
