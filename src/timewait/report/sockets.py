"""Socket tables rebuilt from the trace, as a host would list them at a time T.

The state of a connection key at time T is its last STATE record at or before
T; ``CLOSED`` means the socket is gone. Timers come from TIMER records (the
last arm or cancel of each named timer at or before T), the send queue from
the payload a host sent and the acknowledgements it received.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from timewait import trace as T
from timewait.plain import endpoint
from timewait.result import RunResult
from timewait.tcp.segment import V6, ip_aton, ip_ntoa, is_v6
from timewait.tcp.seq import M32, before, diff

Key = tuple[int, int, int, int]

# Which timer ss shows for a state (Linux: TIME_WAIT and orphaned FIN_WAIT_2
# sockets are timewait socks whose timer ss prints as "timewait").
_STATE_TIMERS = {
    "TIME_WAIT": ("timewait",),
    "FIN_WAIT_2": ("fin_wait2", "timewait", "rto", "keepalive"),
}
_DEFAULT_TIMERS = ("rto", "persist", "keepalive")
_XMIT_TIMERS = ("rto", "persist")  # one transmit timer per socket (icsk_pending says which)

#: netstat's spellings (net-tools' tcp_state[]); the engine's names are the JSON's.
NETSTAT_NAMES = {
    "ESTABLISHED": "ESTABLISHED", "SYN_SENT": "SYN_SENT", "SYN_RECEIVED": "SYN_RECV",
    "FIN_WAIT_1": "FIN_WAIT1", "FIN_WAIT_2": "FIN_WAIT2", "TIME_WAIT": "TIME_WAIT", "CLOSED": "CLOSE",
    "CLOSE_WAIT": "CLOSE_WAIT", "LAST_ACK": "LAST_ACK", "LISTEN": "LISTEN", "CLOSING": "CLOSING",
}


@dataclass(slots=True)
class Socket:
    """One socket of a host at a moment: what ``ss``/``netstat`` would list."""

    host: str
    key: Key
    state: str
    since_us: int | None            # None where a census does not know it (see result.CensusRow)
    send_q: int = 0
    recv_q: int = 0
    timer: str | None = None       # trace timer name, e.g. "timewait", "rto"
    deadline_us: int | None = None
    retrans: int = 0

    @property
    def v6(self) -> bool:
        """Whether the socket is an IPv6 one (its local address is)."""
        return is_v6(self.key[0])

    @property
    def listener(self) -> bool:
        """No peer: a listening socket (its key's remote half is zero)."""
        return self.key[3] == 0 and self.key[2] & ~V6 == 0

    @property
    def local(self) -> str:
        """The local endpoint as ``ss`` prints it: ``10.211.55.5:60494``, ``[fd00::10:211:55:5]:60494``."""
        return endpoint(ip_ntoa(self.key[0]), self.key[1])

    @property
    def peer(self) -> str:
        """The peer endpoint as ``ss`` prints it; a listener's is ``0.0.0.0:*`` or ``[::]:*``."""
        if self.listener:
            return "[::]:*" if self.v6 else "0.0.0.0:*"
        return endpoint(ip_ntoa(self.key[2]), self.key[3])

    @property
    def netstat_local(self) -> str:
        """The local endpoint as ``netstat`` prints it: IPv6 without brackets (``fd00::1:80``)."""
        return f"{ip_ntoa(self.key[0])}:{self.key[1]}"

    @property
    def netstat_peer(self) -> str:
        """The peer as ``netstat`` prints it; a listener's is ``0.0.0.0:*`` or ``:::*``."""
        if self.listener:
            return ":::*" if self.v6 else "0.0.0.0:*"
        return f"{ip_ntoa(self.key[2])}:{self.key[3]}"


@dataclass(slots=True)
class _KeyTrack:
    state: str = "CLOSED"
    since: int = 0
    timers: dict[str, int | None] = field(default_factory=dict)
    rto_fires: int = 0
    sent_end: int | None = None   # end of the highest payload sent
    snd_nxt: int | None = None    # end of the highest sequence space sent (SYN and FIN count)
    acked: int | None = None


def to_us(seconds: float) -> int:
    """Seconds of simulated time to the trace's integer microseconds."""
    return int(round(seconds * 1_000_000))


Listeners = dict[tuple[str, int], tuple[int, int, int, int]]


def _track(records: Iterable[tuple[Any, ...]], until_us: int,
           listeners: Listeners | None = None) -> dict[tuple[str, Key], _KeyTrack]:
    """Each connection key's state, timers and queues at ``until_us``; ``listeners``, when
    given, is filled with the listening sockets then open: ``(node, fd) -> (addr, port, since,
    backlog)`` (from the bind, listen and close calls: a listener has no connection key)."""
    tracks: dict[tuple[str, Key], _KeyTrack] = {}
    bound: dict[tuple[str, int], tuple[int, int]] = {}
    for rec in records:
        t, kind, node = rec[0], rec[1], rec[2]
        if t > until_us:
            break
        if kind == T.CALL and listeners is not None and rec[6] is None:
            fd, call = (node, rec[3]), rec[4]
            if call == "bind" and rec[5][1]:
                bound[fd] = (ip_aton(rec[5][0]), rec[5][1])
            elif call == "listen" and fd in bound:
                # ss's Send-Q of a listener: sk_max_ack_backlog = min(backlog, somaxconn 4096)
                listeners[fd] = (*bound[fd], t, min(rec[5][0], 4096))
            elif call == "close":
                bound.pop(fd, None)
                listeners.pop(fd, None)
        elif kind == T.STATE:
            tr = tracks.setdefault((node, rec[3]), _KeyTrack())
            tr.state, tr.since = rec[5], t
            if rec[5] in ("CLOSED", "SYN_SENT", "SYN_RECEIVED", "LISTEN"):
                tr.sent_end = tr.snd_nxt = tr.acked = None
                tr.rto_fires = 0
                if rec[5] == "CLOSED":
                    tr.timers.clear()
        elif kind == T.TIMER:
            tr = tracks.setdefault((node, rec[3]), _KeyTrack())
            if rec[4] in _XMIT_TIMERS:
                for name in _XMIT_TIMERS:  # arming or cancelling one replaces the other
                    tr.timers[name] = None
            tr.timers[rec[4]] = rec[5]
            if rec[4] == "rto" and rec[5] is None:
                tr.rto_fires = 0
        elif kind == T.FIRE:
            tr = tracks.get((node, rec[3]))
            if tr is not None:
                if rec[4] == "rto":
                    tr.rto_fires += 1
                # A fired timer is no longer pending unless it is re-armed.
                tr.timers[rec[4]] = None
        elif kind == T.TX:
            seg = rec[3]
            tr = tracks.get((node, (seg.src, seg.sport, seg.dst, seg.dport)))
            if tr is not None and seg.seg_len:
                tr.snd_nxt = _later(tr.snd_nxt, seg.end_seq)
                if seg.payload:
                    tr.sent_end = _later(tr.sent_end, (seg.seq + len(seg.payload)) & M32)
        elif kind == T.RX:
            seg = rec[3]
            tr = tracks.get((node, (seg.dst, seg.dport, seg.src, seg.sport)))
            if tr is not None and seg.flags & 0x10:
                tr.acked = _later(tr.acked, seg.ack)
    return tracks


def _later(a: int | None, b: int) -> int:
    """The later of two sequence numbers (mod 2**32); ``b`` when ``a`` is unset."""
    if a is None or not before(b, a):
        return b
    return a


def _outstanding(tr: _KeyTrack) -> bool:
    """Sequence space sent and not yet acknowledged (an RTO timer only matters then)."""
    if tr.snd_nxt is None:
        return False
    return tr.acked is None or tr.acked != tr.snd_nxt and _later(tr.acked, tr.snd_nxt) == tr.snd_nxt


def sockets_at(result: RunResult, at_us: int, host: str | None = None) -> dict[str, list[Socket]]:
    """Each host's open sockets at ``at_us`` (every host with sockets, or just ``host``).

    Hosts are listed in topology order and always present (an empty list when
    the host has no socket); sockets are sorted by local then peer endpoint.
    """
    listening: Listeners = {}
    tracks = _track(result.trace.records, at_us, listening)
    names = [n for n, info in result.nodes.items() if info.kind == "host"]
    names += sorted({h for h, _ in tracks} - set(names))
    if host is not None:
        names = [host]
    out: dict[str, list[Socket]] = {n: [] for n in names}
    for (node, key), tr in tracks.items():
        if node not in out or tr.state == "CLOSED":
            continue
        sock = Socket(node, key, tr.state, tr.since)
        if tr.sent_end is not None and tr.acked is not None and tr.state != "TIME_WAIT":
            q = diff(tr.sent_end, tr.acked)
            sock.send_q = q if q >= 0 else 0
        for name in _STATE_TIMERS.get(tr.state, _DEFAULT_TIMERS):
            deadline = tr.timers.get(name)
            if deadline is not None and deadline >= at_us and (name != "rto" or _outstanding(tr)):
                sock.timer, sock.deadline_us = name, deadline
                sock.retrans = tr.rto_fires if name == "rto" else 0
                break
        out[node].append(sock)
    for (node, _fd), (addr, port, since, backlog) in listening.items():
        if node in out:
            out[node].append(Socket(node, (addr, port, 0, 0), "LISTEN", since, send_q=backlog))
    for socks in out.values():
        socks.sort(key=lambda s: (s.key[0], s.key[1], s.key[2], s.key[3]))
    return out


def census_at(result: RunResult, at_us: int, host: str | None = None) -> dict[str, list[Socket]] | None:
    """Each host's sockets at ``at_us`` from the census the engine took there, or None when it took none.

    Exact for any run size and whatever the trace kept (``run_scenario(census_at=…)``,
    ``--ss T``). Hosts in topology order; ``host`` picks one.
    """
    rows = result.census.get(at_us)
    if rows is None:
        return None
    names = [host] if host is not None else list(rows)
    return {n: [Socket(*r) for r in rows.get(n, [])] for n in names}


def netstat_lines(sockets: list[Socket]) -> list[str]:
    """Rows as ``netstat -atn`` prints them: ``tcp 0 0 LOCAL FOREIGN STATE``, ``tcp6`` for an
    IPv6 socket. The address columns are netstat's 23 characters, wider where an address needs
    it (``netstat -W``: nothing is cut)."""
    ends = [(s.netstat_local, s.netstat_peer) for s in sockets]
    w = max([23, *(len(x) for pair in ends for x in pair)])
    rows = [f"Proto Recv-Q Send-Q {'Local Address':<{w}} {'Foreign Address':<{w}} State"]
    for s, (local, peer) in zip(sockets, ends, strict=True):
        rows.append(f"{'tcp6' if s.v6 else 'tcp':<5} {s.recv_q:>6} {s.send_q:>6} {local:<{w}} {peer:<{w}} "
                    f"{NETSTAT_NAMES.get(s.state, s.state)}")
    return rows


def netstat_at(result: RunResult, at_s: float) -> dict[str, list[str]]:
    """Each host's ``netstat -atn`` rows (no header) at ``at_s``, rebuilt from the trace.

    ``timewait kernel compare`` sets them beside the rows a kernel run read from inet_diag
    at the same instant (kernel/scenarios/nc_timewait.py), both written by :func:`netstat_lines`.
    """
    return {h: netstat_lines(socks)[1:] for h, socks in sockets_at(result, int(round(at_s * 1e6))).items()}


def state_changes(records: Iterable[tuple[Any, ...]]) -> Iterator[tuple[int, str, str | None, str | None]]:
    """``(time_us, host, left_state, entered_state)`` for every STATE record.

    ``None`` stands for "no socket" (CLOSED), so counting sockets per state
    over time is a running sum of these.
    """
    for rec in records:
        if rec[1] == T.STATE:
            old = None if rec[4] == "CLOSED" else rec[4]
            new = None if rec[5] == "CLOSED" else rec[5]
            if old != new:
                yield rec[0], rec[2], old, new


@dataclass(slots=True)
class Moment:
    """A time worth showing a socket table at, and what just happened."""

    at_us: int
    caption: str


def key_moments(result: RunResult, *, gap_us: int = 1_000_000, limit: int = 6) -> list[Moment]:
    """The ends of bursts of state changes (separated by more than ``gap_us``).

    For nc-timewait: just after the close (c1 in TIME_WAIT), then the moment the
    TIME_WAIT entry disappears. At most ``limit`` moments: the first and last ones.
    """
    bursts: list[list[tuple[int, str, str | None, str | None]]] = []
    for ch in state_changes(result.trace.records):
        if bursts and ch[0] - bursts[-1][-1][0] <= gap_us:
            bursts[-1].append(ch)
        else:
            bursts.append([ch])
    if len(bursts) > limit:
        bursts = bursts[: (limit + 1) // 2] + bursts[-(limit // 2) :]
    moments = []
    for burst in bursts:
        entered: Counter[tuple[str, str]] = Counter()
        gone: Counter[tuple[str, str]] = Counter()
        for _, host, old, new in burst:
            if new is not None:
                entered[(host, new)] += 1
            elif old is not None:
                gone[(host, old)] += 1
        net: dict[str, list[str]] = defaultdict(list)
        # What changed, net of transient states: keep what a table would now show.
        final = sockets_at(result, burst[-1][0])
        now_states = Counter((h, s.state) for h, socks in final.items() for s in socks)
        for (host, state), n in sorted(entered.items()):
            if now_states.get((host, state)):
                net[host].append(f"{min(n, now_states[(host, state)])} entered {state}")
        for (host, state), n in sorted(gone.items()):
            if state in ("TIME_WAIT", "FIN_WAIT_2", "LAST_ACK", "CLOSING") or not net[host]:
                net[host].append(f"{n} {state} gone")
        what = "; ".join(f"{h}: {', '.join(v)}" for h, v in net.items() if v) or "state changes"
        start, end = burst[0][0], burst[-1][0]
        span = f"{start / 1e6:.6f}-{end / 1e6:.6f} s" if end != start else f"{end / 1e6:.6f} s"
        moments.append(Moment(end, f"after the changes at {span} ({what})"))
    return moments
