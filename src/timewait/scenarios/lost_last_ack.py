"""S4: the active closer's last ACK is lost; TIME_WAIT is there to answer the FIN again."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from timewait.measure import first, flag_names, seconds, seg_of, state_at
from timewait.plain import bracketed, quoted
from timewait.scenarios import Lab, Param, family_addr, scenario
from timewait.scenarios.common import LineServer, Timeline
from timewait.sim.host import Host, Socket, SocketError
from timewait.tcp.config import SEC
from timewait.tcp.segment import ACK, FIN, RST, SYN, ip_ntoa
from timewait.trace import DROP, RX, STATE, TIMER, TX, views

C1, C2 = "10.211.55.5", "10.211.55.10"
SERVER_PORT = 8888
Key = tuple[int, int, int, int]
Rec = Any  # a typed trace view (timewait.trace)
TS_SYSCTL = "net.ipv4.tcp_timestamps"


@scenario(
    "lost-last-ack",
    "S4: the last ACK is lost; TIME_WAIT re-ACKs the resent FIN, without it the new SYN meets LAST_ACK",
    params={
        "port": Param(60494, "the client's port, bound explicitly for both connections", lo=1, hi=65535),
        "close_at": Param(2.0, "when the client closes (s)", float, lo=0),
        "reconnect_after": Param(0.05, "seconds after its last ACK the client connects again from the same port",
                                 float, lo=0),
        "retry": Param(5.0, "seconds between connect() attempts while the port is held (EADDRNOTAVAIL)", float, lo=0,
                       lo_open=True),
        "timestamps": Param(False, "TCP timestamps on both hosts (a --sysctl wins); with them Linux lets a "
                            "bound connect() take a TIME_WAIT over at once (PS-1)", bool),
        "syn_in_window": Param(True, "the new SYN's sequence number lies in c2's receive window, as the chapter "
                               "assumes (off: the ISN clock's own choice, far beyond it)", bool),
    },
    story="""
c1 (10.211.55.5:60494, bound explicitly) talks to a server on c2 (10.211.55.10:8888) and closes
first. c2 answers with its FIN; c1 sends the last ACK of the four-way close -- and the network
loses it. c2 stays in LAST_ACK and, when its retransmission timer fires, sends its FIN again.
With TIME_WAIT, c1 still knows the connection: it re-ACKs the FIN, restarts its 2 MSL timer,
and c2 closes cleanly. Meanwhile the 4-tuple cannot be used: c1's connect() from port 60494 fails
with EADDRNOTAVAIL until TIME_WAIT ends (timestamps are off here, as in the chapter's world;
with them Linux would let the bound socket take the TIME_WAIT over at once, PS-1).
Without TIME_WAIT (--set timewait=off) c1 is CLOSED at once and reuses port 60494 at once; its
SYN meets c2 still in LAST_ACK. The chapter says c2 answers with RST and the handshake fails:
that is RFC 793's rule for a SYN inside the receive window (--profile chapter or rfc793), and
the run places the SYN there as the chapter assumes (--set syn_in_window=off leaves the ISN to
the clock, far beyond the window: RFC 793 then answers with an ACK). Linux since 3.6 answers
any such SYN with a challenge ACK; c1, in SYN_SENT, resets the old connection with RST
seq=SEG.ACK and resends its SYN 8 ms later (TCP_TIMEOUT_MIN), and the new connection opens
(LA-1..LA-3).
""",
    contrast="Try --set timewait=off, then with --profile chapter or --profile rfc793; "
    "--set timestamps=on shows Linux's bound-port takeover of the TIME_WAIT.",
    mission="S4",
)
def run(lab: Lab) -> None:
    lab.need_trace()  # the checks read the trace; the run is small
    sim = lab.sim
    p = lab.p
    for h in ("c1", "c2"):
        lab.default_sysctl(h, TS_SYSCTL, "1" if p["timestamps"] else "0")
    c1, c2 = lab.two_hosts("c1", lab.addr(C1), "c2", lab.addr(C2), delay_ms=0.2)
    server = LineServer(c2, SERVER_PORT)
    client = ReconnectingClient(c1, lab.addr(C2), SERVER_PORT, p["port"], p["reconnect_after"], p["retry"],
                                max_attempts=int(c1.cfg.tw_len / SEC / max(p["retry"], 0.1)) + 4,
                                next_isn=NextIsn(c1) if p["syn_in_window"] else None)
    c1.call_at(SEC, lambda: client.send(b"hello\n"))

    def close() -> None:
        # The next pure ACK c1 sends is the last ACK of the four-way close: lose it.
        sim.fault(f"drop from=c1 to=c2 flags=. len=0 sport={p['port']} nth=1")
        client.close()

    c1.call_at(int(p["close_at"] * SEC), close)
    held = c1.cfg.tw_len / SEC if sim.timewait_enabled else 0.0
    lab.run(p["close_at"] + held + p["retry"] + 5)
    _report(lab, c1, c2, client, server)


@dataclass
class Attempt:
    """One connect() of the second connection and how it ended."""

    at: float
    result: str  # "ok", an errno from connect(), or later "connected" / an async errno
    done_at: float | None = None


@dataclass
class ReconnectingClient:
    """A client that binds one port, closes first, then connects again from the same port.

    It half-closes (``shutdown(SHUT_WR)``, like ``nc -N``) and closes its socket when the
    server's FIN arrives -- the moment it sends the last ACK. ``reconnect_after`` seconds
    later it binds the same port again with SO_REUSEADDR and connects, retrying every
    ``retry`` seconds while connect() says EADDRNOTAVAIL. ``next_isn``, when set, is the
    ISN the new connection's SYN carries (see :class:`NextIsn`).
    """

    host: Host
    daddr: str
    dport: int
    port: int
    reconnect_after: float
    retry: float
    max_attempts: int = 50
    payload: bytes = b"again\n"
    next_isn: NextIsn | None = None
    attempts: list[Attempt] = field(default_factory=list)
    sock: Socket | None = None
    new: Socket | None = None

    def __post_init__(self) -> None:
        s = self.sock = self.host.socket()
        s.setsockopt("SO_REUSEADDR", 1)
        s.bind(0, self.port)
        s.on_eof = self._eof
        s.connect(self.daddr, self.dport)

    def send(self, data: bytes) -> None:
        if self.sock is not None and self.sock.state == "ESTABLISHED":
            self.sock.send(data)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.shutdown()

    def _now(self) -> float:
        return self.host.net.sched.now / SEC

    def _eof(self, s: Socket) -> None:
        s.recv()
        if self.next_isn is not None and s.conn is not None:
            self.next_isn.pin(s.conn.key, s.conn.snd_nxt)
        s.close()
        self.host.call_later(self.reconnect_after, self._connect)

    def _connect(self) -> None:
        s = self.host.socket()
        s.setsockopt("SO_REUSEADDR", 1)
        a = Attempt(self._now(), "ok")
        self.attempts.append(a)
        try:
            s.bind(0, self.port)
            s.connect(self.daddr, self.dport)
        except SocketError as e:
            a.result = e.errno_name
            s.close()
            if len(self.attempts) < self.max_attempts:
                self.host.call_later(self.retry, self._connect)
            return
        self.new = s
        s.on_connected = lambda x: self._connected(x, a)
        s.on_error = lambda x, errno: self._failed(a, errno)
        s.on_eof = lambda x: (x.recv(), x.close())

    def _connected(self, s: Socket, a: Attempt) -> None:
        a.result, a.done_at = "connected", self._now()
        s.send(self.payload)
        s.shutdown()

    def _failed(self, a: Attempt, errno: str) -> None:
        a.result, a.done_at = errno, self._now()


class NextIsn:
    """Choose the ISN of the next connection of a 4-tuple: the chapter's premise, arranged.

    The chapter assumes the reused port's SYN lands inside the peer's receive window.
    Real ISNs (ISN-1, or RFC 793's 4 us clock) have usually moved far beyond the old
    connection's sequence space by then (ISN-2), so the textbook's answer to an
    in-window SYN is seldom seen. :meth:`pin` makes the next connect() of ``key`` start
    ``gap`` bytes past the old connection's last sequence number; the timestamp offset
    stays the host's own.
    """

    def __init__(self, host: Host, gap: int = 1000) -> None:
        self.gap = gap
        self.pinned: dict[Key, int] = {}
        host.isn_hook = self._isn

    def pin(self, key: Key, snd_nxt: int) -> None:
        self.pinned[key] = (snd_nxt + self.gap) & 0xFFFFFFFF

    def _isn(self, key: Key, isn: int) -> int:
        return self.pinned.pop(key, isn)


def _report(lab: Lab, c1: Host, c2: Host, client: ReconnectingClient, server: LineServer) -> None:
    recs = views(lab.sim.trace.records)
    port = client.port
    k2: Key = (c2.addr, SERVER_PORT, c1.addr, port)
    tl = Timeline()
    close_at = int(lab.p["close_at"] * SEC)
    fin2 = first(recs, lambda r: r.kind == TX and r.node == "c2" and r.seg.flags & FIN, after=close_at - 1)
    lost = first(recs, lambda r: r.kind == DROP and r.node == "c1" and r.reason == "fault" and r.seg.flags == ACK
                 and not r.seg.payload and fin2 is not None and r.seg.ack == fin2.seg.end_seq)
    tl.add(fin2, "c2 closes too: FIN (CLOSE_WAIT -> LAST_ACK)")
    tl.add(lost, "c1 sends the last ACK and the network loses it")
    lab.check("the active closer's last ACK is lost", lost is not None,
              f"c1's ACK of c2's FIN dropped at {seconds(lost)} s" if lost else "no lost last ACK in the trace")
    if fin2 is not None and lost is not None:
        # Which way did it go: did a new SYN from c1 meet c2 still in LAST_ACK?
        met = first(recs, lambda r: seg_of(RX, "c2", SYN)(r) and r.seg.sport == port
                    and state_at(recs, "c2", k2, r.t) == "LAST_ACK", after=lost.t)
        path = "collide" if met is not None else "wait"
        if not lab.sim.timewait_enabled:
            expected, why = "collide", "no TIME_WAIT: the port is free at once"
        elif c1.cfg.timestamps:
            expected, why = "collide", "timestamps on: connect() from the bound port takes the TIME_WAIT over (PS-1)"
        else:
            expected, why = "wait", "TIME_WAIT on, no timestamps: the bound 4-tuple stays held (PS-1)"
        lab.metrics["path"] = path
        lab.check("the reconnect goes the way this configuration predicts", path == expected,
                  f"expected {quoted(expected)} ({why}); observed {quoted(path)}")
        if met is None:
            _report_wait(lab, recs, c1, client, server, k2, fin2, tl)
        else:
            _report_collide(lab, recs, c1, c2, client, server, k2, met, tl)
    lab.metrics["timeline"] = tl.as_metric()
    lab.metrics["reconnect_attempts"] = len(client.attempts)
    lab.metrics["eaddrnotavail"] = sum(1 for a in client.attempts if a.result == "EADDRNOTAVAIL")
    done = next((a for a in client.attempts if a.done_at is not None), None)
    lab.metrics["reconnect_result"] = done.result if done else None
    lab.metrics["reconnected_at"] = done.done_at if done and done.result == "connected" else None


def _received(server: LineServer, key: Key, want: bytes) -> bytes | None:
    """What the server read on a later connection with this 4-tuple that carried ``want``."""
    return next((bytes(b) for _, k, b in server.conns if k == key and bytes(b) == want), None)


def _report_wait(lab: Lab, recs: list[Rec], c1: Host, client: ReconnectingClient, server: LineServer,
                 k2: Key, fin2: Rec, tl: Timeline) -> None:
    """TIME_WAIT did its job: the re-ACK, the restarted timer, a clean close, then the wait."""
    k1: Key = (k2[2], k2[3], k2[0], k2[1])
    tw_len = c1.cfg.tw_len
    resent = first(recs, lambda r: r.kind == TX and r.node == "c2" and r.seg.flags & FIN and r.seg.seq == fin2.seg.seq,
                   after=fin2.t)
    tl.add(resent, "c2's retransmission timer fires: the FIN again, from LAST_ACK")
    gap = round((resent.t - fin2.t) / SEC, 6) if resent else None
    lab.metrics["fin_resent_after_s"] = gap
    lab.check("c2, still in LAST_ACK, sends its FIN again when its RTO fires",
              resent is not None and state_at(recs, "c2", k2, resent.t + 1) == "LAST_ACK",
              f"FIN at {seconds(fin2)} s, again at {seconds(resent)} s ({gap} s later)")
    if resent is None:
        return
    rx = first(recs, lambda r: r.kind == RX and r.node == "c1" and r.seg.pid == resent.seg.pid)
    t_rx = rx.t if rx else -1
    reack = first(recs, lambda r: seg_of(TX, "c1", ACK)(r) and r.t == t_rx, after=t_rx - 1)
    timer = first(recs, lambda r: r.kind == TIMER and r.node == "c1" and r.key == k1 and r.name == "timewait",
                  after=t_rx - 1)
    tl.add(reack, "c1's TIME_WAIT answers it with an ACK and restarts its timer (TW-C)")
    lab.check("c1's TIME_WAIT answers the repeated FIN with an ACK",
              reack is not None and reack.seg.ack == resent.seg.end_seq,
              f"ACK {reack.seg.ack if reack else None} at {seconds(reack)} s for the FIN ending at {resent.seg.end_seq}")
    lab.metrics["timewait_deadline_after_reack"] = timer.deadline / SEC if timer else None
    lab.check(f"and restarts its timer: {tw_len / SEC:g} s from that moment",
              timer is not None and timer.t == t_rx and timer.deadline == t_rx + tw_len,
              f"TIMER timewait re-armed at {seconds(timer)} s to fire at {timer.deadline / SEC if timer else None} s")
    arrive = first(recs, lambda r: r.kind == RX and r.node == "c2" and r.seg.pid == reack.seg.pid) if reack else None
    closed = first(recs, lambda r: r.kind == STATE and r.node == "c2" and r.key == k2 and r.old == "LAST_ACK")
    reset = first(recs, lambda r: seg_of(RX, "c2")(r) and r.seg.flags & RST and r.seg.sport == client.port)
    tl.add(closed, "c2: LAST_ACK -> CLOSED")
    lab.check("c2 closes cleanly: LAST_ACK -> CLOSED on that ACK, no RST",
              closed is not None and arrive is not None and closed.t == arrive.t and closed.new == "CLOSED"
              and (reset is None or reset.t > closed.t),
              f"c2 left LAST_ACK at {seconds(closed)} s, as the ACK arrived ({seconds(arrive)} s)")
    tw_end = first(recs, lambda r: r.kind == STATE and r.node == "c1" and r.key == k1 and r.old == "TIME_WAIT")
    t_end = seconds(tw_end)
    tl.add(tw_end, "c1's TIME_WAIT ends")
    fails = [a for a in client.attempts if a.result == "EADDRNOTAVAIL"]
    if fails:
        tl.add(fails[0].at, f"c1's connect() from port {client.port} fails: EADDRNOTAVAIL "
                            f"({len(fails)} tries, every {client.retry:g} s)")
    lab.check(f"while TIME_WAIT holds {bracketed(family_addr(lab.p, C1))}:{client.port}, connect() from it fails with EADDRNOTAVAIL",
              bool(fails) and t_end is not None and all(a.at < t_end for a in fails),
              f"{len(fails)} attempts refused, {fails[0].at if fails else None} s to "
              f"{fails[-1].at if fails else None} s; TIME_WAIT ended at {t_end} s")
    ok = next((a for a in client.attempts if a.result == "connected"), None)
    got = _received(server, k2, client.payload)
    if ok is not None:
        tl.add(ok.at, "c1 connects again from the same port; nothing of the old connection is left")
    lab.check("after TIME_WAIT the same port connects at the first try",
              ok is not None and t_end is not None and t_end <= ok.at <= t_end + client.retry and got is not None,
              f"connect() at {ok.at if ok else None} s, ESTABLISHED at {ok.done_at if ok else None} s; "
              f"c2 read {quoted(got)}")
    lab.say(f"TIME_WAIT was on: c1 answered c2's repeated FIN at {seconds(rx)} s and restarted its "
            f"{tw_len / SEC:g} s timer, so c2 closed cleanly. The price: port {client.port} to "
            f"{bracketed(family_addr(lab.p, C2))}:{SERVER_PORT} stayed unusable until {t_end} s ({len(fails)} connect() calls got "
            "EADDRNOTAVAIL). Try --set timewait=off.")


def _report_collide(lab: Lab, recs: list[Rec], c1: Host, c2: Host, client: ReconnectingClient,
                    server: LineServer, k2: Key, met: Rec, tl: Timeline) -> None:
    """The new SYN met LAST_ACK: RFC 793's reset or ACK, or Linux's challenge-ACK exchange."""
    k1: Key = (k2[2], k2[3], k2[0], k2[1])
    cfg = c1.cfg
    syn = first(recs, lambda r: r.kind == TX and r.node == "c1" and r.seg.pid == met.seg.pid)
    t_syn = syn.t if syn else met.t
    took_over = c1.counters.get("TcpExtTWRecycled", 0) > 0
    how = ("connect() took the TIME_WAIT over (PS-1: a bound port, and the TIME_WAIT saw timestamps)"
           if took_over else "c1 had no TIME_WAIT: straight to CLOSED")
    tl.add(syn, f"c1 connects again from port {client.port} at once: SYN")
    a0 = client.attempts[0] if client.attempts else None
    lab.check(f"c1 reuses port {client.port} at once", a0 is not None and a0.result != "EADDRNOTAVAIL",
              f"{how}; SYN at {seconds(syn)} s")
    fin_c2 = first(recs, lambda r: r.kind == TX and r.node == "c2" and r.seg.flags & FIN and r.seg.dport == client.port)
    fin_c1 = first(recs, lambda r: r.kind == TX and r.node == "c1" and r.seg.flags & FIN and r.seg.sport == client.port)
    rcv_nxt = fin_c1.seg.end_seq if fin_c1 else 0  # c2's rcv_nxt in LAST_ACK
    offset = (met.seg.seq - rcv_nxt) & 0xFFFFFFFF
    in_window = offset < c2.cfg.rcv_buf >> 1
    lab.metrics["syn_offset_from_rcv_nxt"] = offset if offset < 1 << 31 else offset - (1 << 32)
    lab.metrics["syn_in_window"] = in_window
    # The claim is about c1's first SYN after the close (the reconnect "at once"), not any later
    # one: a lost first SYN whose retransmission meets LAST_ACK fails it.
    first_syn = first(recs, lambda r: seg_of(TX, "c1", SYN)(r) and r.seg.sport == client.port,
                      after=int(lab.p["close_at"] * SEC))
    lab.check("its SYN meets c2 still in LAST_ACK", first_syn is not None and first_syn.seg.pid == met.seg.pid,
              f"c2 received it at {seconds(met)} s with {bracketed(ip_ntoa(c1.addr))}:{client.port} in LAST_ACK; its seq is "
              f"{lab.metrics['syn_offset_from_rcv_nxt']} bytes past c2's rcv_nxt ("
              f"{'inside' if in_window else 'outside'} the {c2.cfg.rcv_buf >> 1}-byte window)")
    reply = first(recs, lambda r: seg_of(TX, "c2")(r) and r.seg.dport == client.port, after=met.t - 1)
    est = first(recs, lambda r: r.kind == STATE and r.node == "c1" and r.key == k1 and r.new == "ESTABLISHED",
                after=t_syn)
    syns = [r for r in recs if r.t > t_syn and seg_of(TX, "c1", SYN)(r)]
    closed = first(recs, lambda r: r.kind == STATE and r.node == "c2" and r.key == k2 and r.old == "LAST_ACK")
    got = _received(server, k2, client.payload)
    lab.metrics["handshake_s"] = round((est.t - t_syn) / SEC, 6) if est else None
    if c2.cfg.syn_in_lastack_rst and in_window:
        # RFC 793 p. 71: an in-window SYN is an error: reset, and the connection is gone.
        tl.add(reply, "c2 (LAST_ACK) answers the in-window SYN with RST and drops its connection")
        tl.add(closed, "c2: LAST_ACK -> CLOSED")
        lab.check("c2 answers the SYN with an RST (seq 0, ack = SYN + 1) and drops its LAST_ACK connection "
                  "(RFC 793, the chapter's account)",
                  reply is not None and reply.seg.flags == RST | ACK and reply.seg.seq == 0
                  and reply.seg.ack == met.seg.end_seq and closed is not None and closed.t == met.t,
                  f"c2 sent {flag_names(reply)} seq {reply.seg.seq if reply else None} ack "
                  f"{reply.seg.ack if reply else None} at {seconds(reply)} s; LAST_ACK gone at {seconds(closed)} s")
        refused = a0 is not None and a0.result not in ("ok", "connected")
        if refused:
            tl.add(a0.done_at, f"c1's connect() fails: {a0.result}")  # type: ignore[union-attr]
        lab.check("the handshake fails: connect() gets ECONNREFUSED", refused and a0.result == "ECONNREFUSED",  # type: ignore[union-attr]
                  f"connect() ended with {a0.result if a0 else None} at {a0.done_at if a0 else None} s")
        lab.say(f"Without TIME_WAIT c1 reused port {client.port} at once and its SYN, inside c2's window, found c2 "
                f"still in LAST_ACK. As the chapter says, c2 answered with RST and the handshake failed: "
                f"connect() got {a0.result if a0 else None}. (An out-of-window SYN would get an ACK instead: "
                "--set syn_in_window=off.)")
        return
    if c2.cfg.syn_in_lastack_rst:
        tl.add(reply, "c2 (LAST_ACK) answers the out-of-window SYN with an ACK")
        lab.check("c2 answers the out-of-window SYN with an ACK, not a reset (RFC 793 p. 69)",
                  reply is not None and reply.seg.flags == ACK,
                  f"c2 sent {flag_names(reply)} at {seconds(reply)} s")
    else:
        tl.add(reply, "c2 (LAST_ACK) answers with a challenge ACK, not an RST (LA-1)")
        lab.check("c2 answers with a challenge ACK: seq = its snd_nxt, ack = its rcv_nxt (LA-1, LA-2)",
                  reply is not None and reply.seg.flags == ACK and fin_c2 is not None and fin_c1 is not None
                  and reply.seg.seq == fin_c2.seg.end_seq and reply.seg.ack == fin_c1.seg.end_seq,
                  f"c2 sent {flag_names(reply)} seq {reply.seg.seq if reply else None} ack "
                  f"{reply.seg.ack if reply else None}; the old FINs end at {fin_c2.seg.end_seq if fin_c2 else None} "
                  f"and {fin_c1.seg.end_seq if fin_c1 else None}")
    rst = first(recs, lambda r: seg_of(TX, "c1", RST)(r), after=reply.t - 1) if reply else None
    rst_rx = first(recs, lambda r: r.kind == RX and r.node == "c2" and r.seg.pid == rst.seg.pid) if rst else None
    tl.add(rst, "c1 (SYN_SENT) answers with RST seq=SEG.ACK (LA-3)")
    tl.add(closed, "c2: LAST_ACK -> CLOSED, reset by it")
    lab.check("c1, in SYN_SENT, sends RST seq = SEG.ACK, which ends c2's LAST_ACK (LA-3)",
              rst is not None and reply is not None and rst.seg.seq == reply.seg.ack and closed is not None
              and rst_rx is not None and closed.t == rst_rx.t,
              f"RST seq {rst.seg.seq if rst else None} at {seconds(rst)} s; c2 CLOSED at {seconds(closed)} s")
    resyn = next((r for r in syns if rst is not None and r.t > rst.t), None)
    tl.add(resyn, "c1 resends its SYN")
    tl.add(est, "c1: SYN_SENT -> ESTABLISHED")
    if cfg.quick_syn_resend:
        wait, since, name = cfg.timeout_min, rst, f"TCP_TIMEOUT_MIN ({cfg.timeout_min / 1000:g} ms)"
    else:
        wait, since, name = cfg.rto_init, syn, f"its RTO ({cfg.rto_init / SEC:g} s)"
    lab.check(f"c1 resends the SYN after {name} and the handshake completes",
              resyn is not None and since is not None and resyn.t - since.t == wait and est is not None
              and got is not None,
              f"SYN again at {seconds(resyn)} s, ESTABLISHED at {seconds(est)} s; c2 read {quoted(got)}")
    if c2.cfg.syn_in_lastack_rst:
        lab.say(f"Without TIME_WAIT c1 reused port {client.port} at once; its SYN, outside c2's window, found c2 "
                f"still in LAST_ACK and got an ACK, which c1 answered with an RST that closed c2's old connection. "
                f"The SYN resent {cfg.rto_init / SEC:g} s later opened the new one. The chapter's RST needs a SYN "
                "inside the window (--set syn_in_window=on).")
    else:
        lab.say(f"Without TIME_WAIT c1 reused port {client.port} at once and its SYN found c2 still in LAST_ACK. "
                f"Linux does not reset it: c2 sent a challenge ACK, c1 answered with an RST that closed c2's old "
                f"connection, and resent its SYN; the new connection was up {lab.metrics['handshake_s']} s after "
                "the first SYN. --profile chapter shows the textbook's RST instead.")


