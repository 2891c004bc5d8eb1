"""S3: a delayed segment of an old connection must die before the 4-tuple is used again."""

from __future__ import annotations

from typing import Any

from timewait.measure import fate, first, seconds, state_at
from timewait.plain import bracketed, quoted
from timewait.scenarios import Lab, Param, family_addr, scenario
from timewait.scenarios.common import LineServer, Timeline
from timewait.sim.host import Host, Socket, SocketError
from timewait.tcp.config import SEC
from timewait.tcp.segment import RST, SYN
from timewait.tcp.seq import M32
from timewait.trace import COUNTER, DROP, RX, TX, views

C1, C2 = "10.211.55.2", "10.211.55.10"
CPORT, SPORT = 61594, 8080
OLD = (b"old-1\n", b"old-2\n", b"old-3\n")
NEW = (b"new-1\n", b"new-2\n", b"new-3\n")
NEW_AT = (1.0, 2.0, 5.0)  # seconds after the new connection is up
Rec = Any  # a typed trace view (timewait.trace)


@scenario(
    "delayed-duplicate",
    "S3: an old connection's delayed segment corrupts a new one on the same 4-tuple, unless TIME_WAIT",
    params={
        "delay": Param(5.0, "seconds the network holds the old connection's 3rd data segment", float, lo=0),
        "close_at": Param(2.0, "when the client closes the old connection (s)", float, lo=0),
        "reconnect_at": Param(3.0, "when the client opens the new connection from the same port (s)", float, lo=0),
        "retry": Param(5.0, "seconds between connect() attempts while the 4-tuple is held", float, lo=0,
                       lo_open=True),
        "isn_shift": Param(0, "the new connection's ISN minus the old one's, in bytes (0 = the same: the "
                           "coincidence an ISN wrap can produce; sequence numbers are mod 2^32)",
                           lo=-(2**31), hi=2**31 - 1),
        "timestamps": Param(False, "TCP timestamps on both hosts (a --sysctl wins); PAWS then rejects the "
                            "stale segment by its old timestamp", bool),
    },
    story="""
The chapter's example: client 10.211.55.2:61594, server 10.211.55.10:8080. The client sends
three lines; the network delays the third segment (the chapter's SEQ=3) by 5 s. The client
retransmits it, so the old connection completes intact, and the client closes first. Then it
opens a new connection with the same 4-tuple (bind(61594) with SO_REUSEADDR) and sends three
new lines. The stale copy of "old-3" is still travelling.

With TIME_WAIT the 4-tuple stays held: connect() fails with EADDRNOTAVAIL for 60 s (2 MSL,
and more than the 30 s MSL the network allows a segment), so the stale segment has arrived
and been refused -- or died -- long before the new connection exists. With --set timewait=off
the port is reused at once and the stale segment arrives inside the new connection. For it to
land in the new receive window its sequence number must fit, which needs a coincidence: real
ISNs come from a clock (+1 every 64 ns, wrapping every 274.9 s) plus a hash of the 4-tuple, so
a new incarnation usually starts millions of bytes beyond the old one. The scenario arranges
the coincidence -- both new ISNs equal the old ones, as after a wrap (--set isn_shift=N moves
the client's) -- and timestamps are off, since PAWS would reject the stale segment by its old
timestamp (--set timestamps=on). The server then reads "old-3" where "new-3" should be.
""",
    contrast="Try --set timewait=off (the data is corrupted), then add --set timestamps=on (PAWS saves it) "
    "or --set isn_shift=100000 (the stale segment falls outside the window).",
    mission="S3",
)
def run(lab: Lab) -> None:
    lab.need_trace()  # the checks read the trace; the run is small
    sim = lab.sim
    p = lab.p
    for h in ("c1", "c2"):
        lab.default_sysctl(h, "net.ipv4.tcp_timestamps", "1" if p["timestamps"] else "0")
    c1, c2 = lab.two_hosts("c1", lab.addr(C1), "c2", lab.addr(C2), delay_ms=0.2)
    # Both ends start the next incarnation of the 4-tuple at the old ISN (the client's + isn_shift).
    PinnedIsn(c1, p["isn_shift"])
    PinnedIsn(c2, 0)
    server = LineServer(c2, SPORT)
    client = TwoConnections(c1, lab.addr(C2), SPORT, CPORT, p["retry"], max_attempts=int(c1.cfg.tw_len / SEC / max(
        p["retry"], 0.1)) + 4)
    for i, line in enumerate(OLD):
        c1.call_at(SEC + i * 100_000, lambda d=line: client.send_old(d))
    sim.fault(f"hold {p['delay']} from=c1 flags=P. sport={CPORT} nth=3")
    c1.call_at(int(p["close_at"] * SEC), client.close_old)
    c1.call_at(int(p["reconnect_at"] * SEC), client.connect_new)
    held = c1.cfg.tw_len / SEC if sim.timewait_enabled else 0.0
    lab.run(max(p["reconnect_at"], p["close_at"] + held, 1.2 + p["delay"]) + p["retry"] + NEW_AT[-1] + 3)
    _report(lab, c1, c2, client, server)


class PinnedIsn:
    """Start every later incarnation of a 4-tuple at its first ISN plus ``shift``.

    Real ISNs (ISN-1) are a keyed hash of the 4-tuple plus a 64 ns clock, so two
    incarnations of one 4-tuple start at equal sequence numbers only after the clock
    wraps (every 274.9 s) or steps back. This arranges that coincidence on demand; the
    timestamp offset is left as the host computes it.
    """

    def __init__(self, host: Host, shift: int) -> None:
        self.shift = shift
        self.first: dict[tuple[int, int, int, int], int] = {}
        host.isn_hook = self._isn

    def _isn(self, key: tuple[int, int, int, int], isn: int) -> int:
        if key in self.first:
            return (self.first[key] + self.shift) & M32
        self.first[key] = isn
        return isn


class TwoConnections:
    """The chapter's client: one connection from a bound port, then another from the same port.

    Each connection half-closes (``shutdown(SHUT_WR)``, like ``nc -N``) and closes its
    socket when the server's FIN arrives; the new one retries connect() every ``retry`` seconds while it fails
    with EADDRNOTAVAIL, then sends :data:`NEW` at :data:`NEW_AT` and half-closes.
    """

    def __init__(self, host: Host, daddr: str, dport: int, port: int, retry: float, max_attempts: int) -> None:
        self.host = host
        self.daddr, self.dport, self.port = daddr, dport, port
        self.retry = retry
        self.max_attempts = max_attempts
        self.attempts: list[tuple[float, str]] = []  # (time, "ok" or errno)
        self.connected_at: float | None = None
        self.old = self._bound_socket()
        self.old.connect(daddr, dport)
        self.new: Socket | None = None

    def _bound_socket(self) -> Socket:
        s = self.host.socket()
        s.setsockopt("SO_REUSEADDR", 1)
        s.bind(0, self.port)
        s.on_data = lambda x: x.recv()
        s.on_eof = lambda x: (x.recv(), x.close())
        return s

    def _now(self) -> float:
        return self.host.net.sched.now / SEC

    def send_old(self, data: bytes) -> None:
        if self.old.state == "ESTABLISHED":
            self.old.send(data)

    def close_old(self) -> None:
        self.old.shutdown()

    def connect_new(self) -> None:
        try:
            s = self._bound_socket()
            s.connect(self.daddr, self.dport)
        except SocketError as e:
            self.attempts.append((self._now(), e.errno_name))
            s.close()
            if len(self.attempts) < self.max_attempts:
                self.host.call_later(self.retry, self.connect_new)
            return
        self.attempts.append((self._now(), "ok"))
        self.new = s
        s.on_connected = self._connected

    def _connected(self, s: Socket) -> None:
        self.connected_at = self._now()
        for t, line in zip(NEW_AT, NEW, strict=True):
            self.host.call_later(t, lambda d=line: s.send(d) if s.state == "ESTABLISHED" else None)
        self.host.call_later(NEW_AT[-1] + 1, s.shutdown)


def _report(lab: Lab, c1: Host, c2: Host, client: TwoConnections, server: LineServer) -> None:
    recs = views(lab.sim.trace.records)
    k2 = (c2.addr, SPORT, c1.addr, CPORT)
    olds = [bytes(b) for _, k, b in server.conns if k == k2]
    old_got = olds[0] if olds else b""
    new_got = olds[1] if len(olds) > 1 else None
    want_new = b"".join(NEW)
    took_over = c1.counters.get("TcpExtTWRecycled", 0) > 0
    tl, stale_tx, stale_end, new_syn = judge_common(lab, recs, old_got=old_got, new_got=new_got,
                                                   attempts=client.attempts, connected_at=client.connected_at,
                                                   retry=client.retry)
    t_stale = stale_end.t if stale_end else None
    t_syn = new_syn.t if new_syn else None
    corrupted = lab.metrics["corrupted"]
    if lab.sim.timewait_enabled and not took_over:
        judge_held(lab, recs, tl, stale_end, new_syn, attempts=client.attempts, connected_at=client.connected_at,
                   new_got=new_got, tw_len_s=c1.cfg.tw_len / SEC, msl_s=lab.sim.net.max_age / SEC)
        return
    first_ok = bool(client.attempts) and client.attempts[0][1] == "ok"
    how = ("connect() took the TIME_WAIT over at once (PS-1: a bound port, and it saw timestamps)" if took_over
           else "no TIME_WAIT: the 4-tuple was free at once")
    lab.check("the same 4-tuple is used again at once", first_ok and client.connected_at is not None,
              f"{how}; new connection up at {client.connected_at} s")
    lab.check("the delayed segment is still in the network when the new connection opens",
              t_stale is not None and t_syn is not None and t_stale > t_syn,
              f"new SYN at {seconds(new_syn)} s, the delayed segment arrives at {seconds(stale_end)} s")
    rcv_nxt, wnd = _rcv_nxt_at(recs, k2, stale_end, t_syn), c2.cfg.rcv_buf >> 1
    seq, end = stale_tx.seg.seq, stale_tx.seg.end_seq  # type: ignore[index]
    inside = rcv_nxt is not None and 0 < ((end - rcv_nxt) & M32) < 1 << 31 and 0 < ((rcv_nxt + wnd - seq) & M32) < 1 << 31
    lab.metrics["stale_seq_minus_rcv_nxt"] = _signed(seq - rcv_nxt) if rcv_nxt is not None else None
    where = (f"seq {seq}, the new connection's rcv_nxt {rcv_nxt}, window {wnd} (offset "
             f"{lab.metrics['stale_seq_minus_rcv_nxt']}; the new ISN is the old + {lab.p['isn_shift']})")
    saved = _what_saved_it(recs, c2, k2, stale_end, inside)
    if saved is not None:
        lab.check("the stale segment never enters the new connection's data", new_got == want_new,
                  f"{saved if saved != 'window' else 'it falls outside the window: ' + where}; c2 read {quoted(new_got)}")
        lab.say(f"Without TIME_WAIT the delayed segment was still travelling when the 4-tuple was reused, "
                f"but {saved if saved != 'window' else 'its sequence numbers did not fit the new window'}, "
                "so the data arrived intact this time. TIME_WAIT is the guard that does not depend on such luck.")
        lab.metrics["timeline"] = tl.as_metric()
        return
    lab.check("its sequence numbers fall inside the new connection's receive window", inside, where)
    tl.add(stale_end, "c2 takes the stale bytes into the new connection")
    lab.check("the stale segment corrupts the new connection's data", corrupted and OLD[2] in (new_got or b""),
              f"c2 read {quoted(new_got)}; c1 sent {quoted(want_new)}")
    lab.say(f"Without TIME_WAIT the 4-tuple was reused at {client.connected_at} s while the old connection's "
            f"{quoted(OLD[2])} was still in the network; it arrived at {seconds(stale_end)} s, fitted the new window, "
            f"and the application read {quoted(new_got)} instead of {quoted(want_new)}.")
    lab.metrics["timeline"] = tl.as_metric()


def judge_common(lab: Any, recs: list[Rec], *, old_got: bytes, new_got: bytes | None,
                 attempts: list[tuple[float, str]], connected_at: float | None,
                 retry: float) -> tuple[Timeline, Rec | None, Rec | None, Rec | None]:
    """The first check and the metrics of delayed-duplicate, for the simulator and the kernel twin.

    ``recs`` are typed trace views (the twin's come from its emulated path); returns the timeline
    so far, the stale segment's send and end records and the new connection's SYN.
    """
    p = lab.p
    tl = Timeline()
    old_sent = [r for r in recs if r.kind == TX and r.node == "c1" and r.seg.payload and r.t < p["close_at"] * SEC]
    stale_tx = old_sent[2] if len(old_sent) > 2 else None
    stale_end = fate(recs, stale_tx.seg.pid) if stale_tx else None
    t_stale = stale_end.t if stale_end else None
    want_old, want_new = b"".join(OLD), b"".join(NEW)
    tl.add(stale_tx, f"c1 sends {quoted(OLD[2])}; the network holds it {p['delay']:g} s")
    retx = first(recs, lambda r: r.kind == TX and r.node == "c1" and r.seg.payload and stale_tx is not None
                 and r.seg.seq == stale_tx.seg.seq, after=stale_tx.t) if stale_tx else None
    tl.add(retx, "c1's RTO fires: it sends the bytes again, and they arrive")
    lab.check("the old connection's 3rd segment is delayed in the network; its retransmission delivers it",
              stale_tx is not None and stale_end is not None and t_stale - stale_tx.t >= p["delay"] * SEC
              and old_got == want_old,
              f"{quoted(OLD[2])} sent at {seconds(stale_tx)} s, the held copy reached {stale_end.node if stale_end else '-'} "
              f"at {seconds(stale_end)} s; c2 read {quoted(old_got)} on the old connection")
    new_syn = first(recs, lambda r: r.kind == TX and r.node == "c1" and r.seg.flags & SYN and r.seg.sport == CPORT,
                    after=int(p["reconnect_at"] * SEC) - 1)
    fails = [t for t, res in attempts if res == "EADDRNOTAVAIL"]
    m = lab.metrics
    m["eaddrnotavail"] = len(fails)
    m["new_connection_at"] = connected_at
    m["stale_arrived_at"] = seconds(stale_end)
    m["stale_fate"] = _fate_text(recs, stale_end)
    m["sent_new"] = want_new.decode()
    m["received_new"] = new_got.decode(errors="replace") if new_got is not None else None
    m["corrupted"] = new_got is not None and new_got != want_new
    if fails:
        tl.add(fails[0], f"connect() from port {CPORT}: EADDRNOTAVAIL ({len(fails)} tries, every {retry:g} s)")
    tl.add(stale_end, f"the delayed {quoted(OLD[2])} arrives at c2: {m['stale_fate']}")
    tl.add(new_syn, f"the new connection's SYN, from port {CPORT} again")
    tl.add(connected_at, "the new connection is ESTABLISHED")
    return tl, stale_tx, stale_end, new_syn


def judge_held(lab: Any, recs: list[Rec], tl: Timeline, stale_end: Rec | None, new_syn: Rec | None, *,
               attempts: list[tuple[float, str]], connected_at: float | None, new_got: bytes | None,
               tw_len_s: float, msl_s: float | None) -> None:
    """The checks with TIME_WAIT on, for the simulator and the kernel twin (``msl_s`` None: a real
    network, whose segments have no enforced lifetime)."""
    t_stale = stale_end.t if stale_end else None
    t_syn = new_syn.t if new_syn else None
    fails = [t for t, res in attempts if res == "EADDRNOTAVAIL"]
    want_new = b"".join(NEW)
    m = lab.metrics
    gone = _all_gone_before(recs, t_syn) if t_syn is not None else None
    c1a, c2a = bracketed(family_addr(lab.p, C1)), bracketed(family_addr(lab.p, C2))
    lab.check(f"TIME_WAIT holds {c1a}:{CPORT} <-> {c2a}:{SPORT}: connect() fails with EADDRNOTAVAIL until it ends",
              bool(fails) and connected_at is not None,
              f"{len(fails)} attempts refused, {fails[0] if fails else None} s to {fails[-1] if fails else None} s;"
              f" the new connection opened at {connected_at} s")
    lab.check("every segment of the old connection is gone before the new connection's SYN",
              gone is not None and not gone and t_stale is not None and t_syn is not None and t_stale < t_syn,
              f"the delayed segment ended at {seconds(stale_end)} s ({m['stale_fate']}); the new SYN "
              f"left at {seconds(new_syn)} s; still in flight then: {len(gone) if gone is not None else '?'}")
    lab.check("the new connection's bytes arrive intact", new_got == want_new,
              f"c2 read {quoted(new_got)}; c1 sent {quoted(want_new)}")
    if msl_s is not None:
        lab.say(f"TIME_WAIT held the 4-tuple for {tw_len_s:g} s, longer than any segment may live "
                f"(MSL {msl_s:g} s): the delayed {quoted(OLD[2])} ended at {seconds(stale_end)} s "
                f"({m['stale_fate']}),"
                f" long before the new connection opened at {connected_at} s, whose data arrived intact.")
    else:  # a real path: no enforced lifetime, only the hold the path applied
        lab.say(f"TIME_WAIT held the 4-tuple for {tw_len_s:g} s, longer than the path held the segment: "
                f"the delayed {quoted(OLD[2])} ended at {seconds(stale_end)} s ({m['stale_fate']}), long before "
                f"the new connection opened at {connected_at} s, whose data arrived intact.")
    m["timeline"] = tl.as_metric()


def _what_saved_it(recs: list[Rec], c2: Host, k2: tuple[int, int, int, int], stale_end: Rec | None,
                   inside: bool) -> str | None:
    """Why a stale segment that outlived the old connection did no harm, or None if nothing did."""
    if stale_end is None:
        return "it never arrived"
    if stale_end.kind == DROP:
        return ("the network discarded it, older than MSL" if stale_end.reason == "msl"
                else f"it was dropped ({stale_end.reason})")
    t = stale_end.t
    if state_at(recs, "c2", k2, t) not in ("ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2"):
        return "no connection of that 4-tuple was receiving data when it arrived"
    if any(r.kind == COUNTER and r.node == "c2" and r.name == "TcpExtPAWSEstab" and r.t == t for r in recs):
        return "PAWS rejected it: its timestamp is older than the new connection's"
    return None if inside else "window"


def _fate_text(recs: list[Rec], end: Rec | None) -> str:
    if end is None:
        return "still in flight"
    if end.kind == DROP:
        return f"dropped ({end.reason})"
    back = (end.seg.dst, end.seg.dport, end.seg.src, end.seg.sport)
    reply = first(recs, lambda r: r.kind == TX and r.node == end.node and r.t <= end.t + 1000
                  and (r.seg.src, r.seg.sport, r.seg.dst, r.seg.dport) == back, after=end.t - 1)
    if reply is not None and reply.seg.flags & RST:
        return "no connection for it: answered with RST"
    if reply is not None:
        return f"it reached a connection, which answered ACK {reply.seg.ack}"
    return "discarded"


def _all_gone_before(recs: list[Rec], t: int) -> list[int]:
    """Packets sent before ``t`` that had not arrived or died by ``t``: their pids."""
    sent = {r.seg.pid for r in recs if r.kind == TX and r.t < t}
    ended = {r.seg.pid for r in recs if r.kind in (RX, DROP) and r.t <= t}
    return sorted(sent - ended)


def _rcv_nxt_at(recs: list[Rec], k2: tuple[int, int, int, int], stale_end: Rec | None,
                t_syn: int | None) -> int | None:
    """c2's rcv_nxt on the new connection just before the stale segment arrived: its latest ACK."""
    if stale_end is None or t_syn is None:
        return None
    acks = [r.seg.ack for r in recs if r.kind == TX and r.node == "c2" and t_syn <= r.t < stale_end.t
            and (r.seg.src, r.seg.sport, r.seg.dst, r.seg.dport) == k2]
    return acks[-1] if acks else None


def _signed(d: int) -> int:
    d &= M32
    return d - (1 << 32) if d >= 1 << 31 else d

