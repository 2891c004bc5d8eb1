"""A host: an operating system in miniature around the TCP core (one network namespace).

The host is split along the kernel's seams:

* this module: the 4-tuple tables (``ehash`` for connections, ``twhash`` for
  TIME_WAIT records, ``listeners``: Linux's ``inet_hashinfo``), receive demux
  (``tcp_v4_rcv``, ``tcp_v4_conn_request``), the wire (``ip_queue_xmit``), the
  owner's side of a connection (wake-ups, timers: ``sk_reset_timer``,
  ``tcp_write_timer``) and the nstat counters and sysctls of the namespace;
* :mod:`timewait.sim.socket`: the BSD calls (``inet_bind``, ``tcp_v4_connect``,
  ``tcp_close`` ...);
* :mod:`timewait.sim.ports`: the bind hash and the ephemeral port search
  (``inet_bind_bucket``, ``__inet_hash_connect``);
* :mod:`timewait.sim.deathrow`: the TIME_WAIT records (``tcp_time_wait``,
  ``inet_timewait_sock.c``, ``tcp_max_tw_buckets``) and the legacy recycle cache.

Lookups are dictionaries, never a scan over sockets. The protocol itself is
:mod:`timewait.tcp`, which knows nothing of the host.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Final

from timewait.sim.deathrow import TW_NAMES, DeathRow
from timewait.sim.network import Fault, Link, Network, Node
from timewait.sim.ports import PortTable
from timewait.sim.profiles import Profile
from timewait.sim.scheduler import Scheduler
from timewait.sim.socket import AF_INET6, AF_UNSPEC, Socket
from timewait.sim.socket_error import SocketError
from timewait.sim.sysctl import format_value, initial_window, lookup, rcv_wscale
from timewait.sim.telemetry import HostTelemetry
from timewait.tcp.config import SEC, TcpConfig
from timewait.tcp.connection import (
    EV_CLOSED,
    EV_CONNECTED,
    EV_DATA,
    EV_EOF,
    EV_ERROR,
    EV_FW2_TIMER,
    Connection,
)
from timewait.tcp.isn import SecureSeq
from timewait.tcp.segment import ACK, FIN, RST, SYN, V4_MAX, V6_ANY, Segment, ip_aton
from timewait.tcp.states import CLOSED, FIN_WAIT_2, NAMES, SYN_RECEIVED, TIME_WAIT
from timewait.tcp.timewait import TimeWait, reset_for
from timewait.trace import COUNTER, DROP, FIRE, RX, STATE, TIMER, TX, Trace

_EV_RARE: Final = EV_ERROR | EV_CLOSED


class Host(Node):
    """A simulated host (one network namespace)."""

    kind = "host"
    # Node's attributes that every segment reads, declared again so that a compiled Host keeps
    # them in its own (native) slots: inherited from the interpreted Node, each read would be a
    # generic attribute lookup. The network's clock, trace, MSL and fault rules are cached by
    # attach() (Network.add) for the same reason.
    name: str
    hops: dict[int, tuple[Link, Node] | None]
    sched: Scheduler
    tr: Trace
    max_age: int
    faults: list[Fault]

    def __init__(self, name: str, addrs: list[str | int], profile: Profile, secret: bytes,
                 rng: random.Random, uptime_ms: int = 0, mem: int | None = None) -> None:
        super().__init__(name, [a if isinstance(a, int) else ip_aton(a) for a in addrs])
        self.addr = self.addrs[0]
        self.addr_set = frozenset(self.addrs)
        self.profile = profile
        self.rng = rng
        self.secure = SecureSeq(secret, profile.isn_tick_ns)
        self.cfg = TcpConfig(
            ts_offsets=profile.ts_offsets, challenge_ack=profile.challenge_ack,
            quick_syn_resend=profile.quick_syn_resend, syn_in_lastack_rst=profile.syn_in_lastack_rst,
            tw_len=profile.tw_len, ts_base_ms=uptime_ms, **profile.cfg,
        )
        self.sysctls: dict[str, Any] = {}
        for name_, value in profile.sysctls.items():
            self._apply_sysctl(name_, value)
        if mem is not None:
            from timewait.sim.sysctl import ehash_entries

            # TW-9 (tcp_set_hashinfo, tcp_init): both caps are half the established hash.
            self._apply_sysctl("net.ipv4.tcp_max_tw_buckets", ehash_entries(mem) // 2)
            self._apply_sysctl("net.ipv4.tcp_max_orphans", ehash_entries(mem) // 2)
        self.counters: dict[str, int] = {}
        self.in_segs = 0   # TcpInSegs / TcpOutSegs: plain ints on the hot path, merged in snapshots
        self.out_segs = 0
        # Counters that move per segment (CT-5..CT-8), bumped by the core as plain ints (Env).
        self.pure_acks = 0      # TcpExtTCPPureAcks
        self.delivered = 0      # TcpExtTCPDelivered
        self.orig_data_sent = 0 # TcpExtTCPOrigDataSent
        self.ehash: dict[tuple[int, int, int, int], Connection] = {}
        self.twhash: dict[tuple[int, int, int, int], TimeWait] = {}
        self.listeners: dict[tuple[int, int], Socket] = {}
        self.ports = PortTable(self)                        # bind buckets, port search (sim/ports.py)
        self.deathrow = DeathRow(self)                      # TIME_WAIT timers, input, removal (sim/deathrow.py)
        self.timewait_enabled = True                        # lesson knob: --set timewait=off
        # Lesson hook: isn_hook(key, isn) -> isn lets a scenario arrange sequence-number
        # coincidences (an ISN that wrapped onto an old one) that real clocks make rare.
        self.isn_hook: Callable[[tuple[int, int, int, int], int], int] | None = None
        self.next_fd = 3
        # Bound once: every connection wake-up on the heap holds it.
        self._conn_timer_cb = self._conn_timer
        self.orphans = 0                                    # closed by the application, still alive
        self.tel = HostTelemetry(self)                      # exact counts beside the trace (sim/telemetry.py)
        self.cfg6: TcpConfig | None = None                  # IPv6 connections' settings (cfg_v6, V6-7)

    def attach(self, net: Network) -> None:
        """The host joins ``net``: its clock and trace are cached for the hot path."""
        super().attach(net)
        self.sched = net.sched
        self.tr = net.trace
        self.max_age = net.max_age  # set once, when the network is made
        self.faults = net.faults    # the network's list itself: rules added later are seen

    # ------------------------------------------------------------------ sysctls and counters

    def set_sysctl(self, name: str, text: str) -> None:
        """Set a sysctl from text; unknown names and bad values raise UsageError."""
        s = lookup(name, self.profile.legacy)
        self._apply_sysctl(s.name, s.parse(s.name, text))

    def _apply_sysctl(self, name: str, value: Any) -> None:
        s = lookup(name, self.profile.legacy)
        self.sysctls[s.name] = value
        if s.cfg_field is not None:
            v = value * s.scale if isinstance(value, int) and not isinstance(value, bool) else value
            if s.cfg_field in ("sack", "window_scaling"):
                v = bool(value)
            setattr(self.cfg, s.cfg_field, v)
        elif s.name in ("net.ipv4.tcp_rmem", "net.core.rmem_max"):
            rmem = self.sysctls.get("net.ipv4.tcp_rmem")
            core = self.sysctls.get("net.core.rmem_max")
            if rmem is not None and core is not None:  # WIN-2, once the profile has set both
                self.cfg.rcv_wscale = rcv_wscale(rmem[2], core)
            if rmem is not None:  # WIN-1: the initial windows come from tcp_rmem[1] (sk_rcvbuf)
                cfg = self.cfg
                cfg.rcv_buf = rmem[1]
                cfg.syn_win = initial_window(rmem[1], cfg.mss)
                cfg.synack_win = initial_window(rmem[1], cfg.mss - 12)  # less the timestamps option


    def sysctl(self, name: str) -> Any:
        return self.sysctls[name]

    def sysctls_json(self) -> dict[str, Any]:
        return {k: format_value(v) for k, v in sorted(self.sysctls.items())}

    def bump(self, name: str, n: int = 1) -> None:
        """Increment an nstat counter and trace it."""
        c = self.counters
        c[name] = c.get(name, 0) + n
        tr = self.tr
        if tr.on and tr.select is None:  # trace-select: a counter names no connection, so none then
            tr.records.append((self.sched.now, COUNTER, self.name, name, n))

    # ------------------------------------------------------------------ views of the host

    def states(self) -> dict[str, int]:
        """Socket counts by state, TIME_WAIT records included, as ``ss -s`` would see them."""
        out: dict[str, int] = {}
        for c in self.ehash.values():
            n = NAMES[c.state]
            out[n] = out.get(n, 0) + 1
        for tw in self.twhash.values():
            n = TW_NAMES[tw.substate]
            out[n] = out.get(n, 0) + 1
        if self.listeners:
            out["LISTEN"] = len(self.listeners)
        return out

    def nstat(self) -> dict[str, int]:
        """The bumped counters and those the core keeps as plain ints (CT-5..CT-8), unsorted;
        TcpInSegs/TcpOutSegs are left to :meth:`all_counters` (telemetry has them apart)."""
        c = dict(self.counters)
        for name, v in (("TcpExtTCPPureAcks", self.pure_acks), ("TcpExtTCPDelivered", self.delivered),
                        ("TcpExtTCPOrigDataSent", self.orig_data_sent)):
            if v:
                c[name] = v
        return c

    def all_counters(self) -> dict[str, int]:
        """Every nstat counter that moved, sorted by name."""
        c = self.nstat()
        if self.in_segs:
            c["TcpInSegs"] = self.in_segs
        if self.out_segs:
            # Retransmissions are sent but not counted (Connection._count_retransmit).
            c["TcpOutSegs"] = self.out_segs - c.get("TcpRetransSegs", 0)
        return dict(sorted(c.items()))

    def snapshot(self) -> dict[str, Any]:
        return {"states": self.states(), "counters": self.all_counters(), "sysctls": self.sysctls_json()}

    def tw_count(self) -> int:
        return len(self.twhash)

    # ------------------------------------------------------------------ sockets

    def socket(self, family: int = AF_UNSPEC) -> Socket:
        """socket(family, SOCK_STREAM): a new descriptor (the calls are :class:`Socket`'s).
        ``family`` AF_INET or AF_INET6 (timewait.sim.socket); AF_UNSPEC: the first bind() or
        connect() address decides (V6-1)."""
        sock = Socket(self, self.next_fd, family)
        self.next_fd += 1
        return sock

    def source_for(self, daddr: int) -> int:
        """The source address toward ``daddr``: the host's first address of its family, 0 if none."""
        v6 = daddr > V4_MAX
        for a in self.addrs:
            if (a > V4_MAX) == v6:
                return a
        return 0

    def cfg_v6(self) -> TcpConfig:
        """The settings of this host's IPv6 connections (V6-7): the IPv4 ones, refreshed from
        :attr:`cfg` at each call, with the IPv6 MSS and the initial windows rounded to it.

        Linux's advertised MSS is the route's MTU less the IP and TCP headers
        (``tcp_v6_syn_recv_sock``/``tcp_connect_init`` via ``ip6_default_advmss``): 1500 - 40
        - 20 = 1440 where IPv4 has 1460, so the SYN's window (WIN-1) is 64800 and a SYN-ACK's
        with timestamps 64260."""
        from dataclasses import fields

        from timewait.sim.sysctl import initial_window

        c6 = self.cfg6
        if c6 is None:
            c6 = self.cfg6 = TcpConfig()
        cfg = self.cfg
        for f in fields(TcpConfig):
            setattr(c6, f.name, getattr(cfg, f.name))
        c6.mss = cfg.mss - 20
        rmem = self.sysctls.get("net.ipv4.tcp_rmem")
        if rmem is not None:
            c6.syn_win = initial_window(rmem[1], c6.mss)
            c6.synack_win = initial_window(rmem[1], c6.mss - 12)
        return c6

    def isn(self, saddr: int, daddr: int, sport: int, dport: int, now: int) -> tuple[int, int]:
        """ISN and timestamp offset under this host's profile (ISN-1, TS-3)."""
        isn, off = self.secure.seq_and_ts_off(saddr, daddr, sport, dport, now)
        cfg = self.cfg
        if cfg.timestamps != 1 or cfg.ts_offsets == "none":
            off = 0
        elif cfg.ts_offsets == "host":
            off = self.secure.ts_off_per_host(saddr, daddr)
        elif cfg.ts_offsets == "random":
            off = self.rng.getrandbits(32)
        if self.isn_hook is not None:
            isn = self.isn_hook((saddr, sport, daddr, dport), isn)
        return isn, off

    def req_drop(self, conn: Connection) -> None:
        """A request whose listener closed is forgotten (LS-2, LS-3): no RST, no SYN-ACK."""
        conn.drop_request()
        self.after(conn)

    # ------------------------------------------------------------------ after every core call

    def after(self, conn: Connection) -> None:
        """Deliver what the core left: app events, the owed ACK, segments, state, timers.

        Application callbacks run here and may call into the same connection again
        (answer in on_data, close in on_eof); those nested calls leave their work to
        this outer call (``conn.busy``), which loops until no event is left.
        """
        if conn.busy:
            return
        ev = conn.ev
        if ev:
            conn.busy = True
            while ev:
                conn.ev = 0
                sock: Socket | None = conn.sock  # typed: the core keeps it as Any
                if ev & EV_FW2_TIMER:
                    conn.busy = False
                    self.deathrow.fw2_expired(conn)
                    return
                if sock is None and ev & EV_CONNECTED and conn.passive and conn.state != CLOSED:
                    sock = self._accepted(conn)  # data that came with the handshake's ACK follows
                    ev &= ~EV_CONNECTED
                if sock is not None and not sock.closed:
                    if ev & EV_CONNECTED and sock.on_connected is not None:
                        sock.on_connected(sock)
                    if ev & EV_DATA and sock.on_data is not None:
                        sock.on_data(sock)
                    if ev & EV_EOF and sock.on_eof is not None:
                        sock.on_eof(sock)
                    if ev & _EV_RARE:
                        if ev & EV_ERROR and sock.on_error is not None:
                            sock.on_error(sock, conn.err or "EIO")
                        if ev & EV_CLOSED and sock.on_closed is not None:
                            sock.on_closed(sock)
                ev = conn.ev
            conn.busy = False
        if conn.ack_pending:
            conn.flush(self.sched.now)
        out = conn.outbox
        if out:
            transmit = self.transmit
            if not conn.traced:  # trace-select left it out: pid -1, so no node records its packets
                for seg in out:
                    seg.pid = -1
            for seg in out:
                transmit(seg)
            out.clear()
        st = conn.state
        if st != conn.seen_state:
            old = conn.seen_state
            conn.seen_state = st
            self.tel.state(old, st, conn)
            tr = self.tr
            if tr.on and conn.traced:
                now = self.sched.now
                hist = conn.hist or (st,)
                for new in hist:
                    tr.records.append((now, STATE, self.name, conn.key, NAMES[old], NAMES[new]))
                    old = new
                if conn.hist:
                    conn.hist.clear()
                if st == CLOSED:
                    self.trace_conn(conn, "after")  # the TCB's last values
            if st == TIME_WAIT:
                self.deathrow.enter(conn, TIME_WAIT, self.cfg.tw_len)
                return
            if st == CLOSED:
                self.conn_gone(conn)
                return
        if st == FIN_WAIT_2 and conn.orphan and not conn.fw2_at:
            # TW-6: an orphan in FIN_WAIT2, reached now or closed while there (__tcp_close).
            self.deathrow.orphan_fin_wait2(conn)
            if conn.state != FIN_WAIT_2 or self.ehash.get(conn.key) is not conn:
                return
        pa = conn.rto_at  # conn.poll_at(), inlined
        b = conn.fw2_at
        if b and (not pa or b < pa):
            pa = b
        b = conn.dack_at  # the delayed-ACK timer (DA-3)
        if b and (not pa or b < pa):
            pa = b
        if pa and (not conn.timer_at or pa < conn.timer_at):
            # One wake-up per connection at its earliest deadline (sk_reset_timer): an earlier
            # deadline moves it; a later one waits for it to fire and re-arm from here.
            sched = self.sched
            if conn.timer_at:
                sched.cancel(conn.timer_at, self._conn_timer_cb, conn)
            conn.timer_at = pa
            sched.at(pa, self._conn_timer_cb, conn)
        tr = self.tr
        if tr.on and conn.traced:
            if pa != conn.traced_at:
                # The earliest deadline moved: armed, re-armed, or cancelled (None).
                conn.traced_at = pa
                tr.records.append((self.sched.now, TIMER, self.name, conn.key,
                                   conn.timer_name() if pa else "rto", pa or None))
            self.trace_conn(conn, "after")

    def _accepted(self, conn: Connection) -> Socket | None:
        """A passive connection became ESTABLISHED: queue it for accept()."""
        lsock = conn.listener
        # The child takes its share of the port only now (__inet_inherit_port, LS-4).
        self.ports.acquire(conn.lport, reuse=conn.reuse, bind_created=True)
        conn.port_held = True
        if lsock is None or not lsock.listening:
            # The listener closed while this handshake completed: LS-1 for this child too
            # (the loop in _after then delivers the close).
            conn.disconnect(self.sched.now)
            return None
        child = self.socket(lsock.family)
        child.conn = conn
        child.laddr, child.lport = conn.laddr, conn.lport
        if lsock.family == AF_INET6:  # V6-5: an IPv4 child of a dual-stack listener is v4-mapped
            child.v6only = lsock.v6only
            child.mapped = conn.laddr <= V4_MAX
        child.reuseaddr = lsock.reuseaddr
        conn.sock = child
        lsock.accept_queue.append(child)
        if lsock.on_accept is not None:
            lsock.on_accept(lsock)
        return child

    def _conn_timer(self, conn: Connection) -> None:
        now = self.sched.now
        if conn.timer_at != now:
            return  # superseded by an earlier wake-up
        conn.timer_at = 0
        if conn.state == CLOSED or self.ehash.get(conn.key) is not conn:
            return
        pa = conn.poll_at()
        if pa and pa <= now:
            tr = self.tr
            if tr.on and conn.traced:
                tr.records.append((now, FIRE, self.name, conn.key, conn.timer_name()))
                self.trace_conn(conn, "fire")
            if conn.state == SYN_RECEIVED and conn.passive and not conn.listener.listening:
                conn.drop_request()  # LS-2 (reqsk_timer_handler): no SYN-ACK for a closed listener
            else:
                conn.on_timer(now)
        self.after(conn)

    def cancel_timer(self, conn: Connection) -> None:
        """The connection is leaving: withdraw its wake-up (inet_csk_clear_xmit_timers)."""
        if conn.timer_at:
            self.sched.cancel(conn.timer_at, self._conn_timer_cb, conn)
            conn.timer_at = 0

    def conn_gone(self, conn: Connection) -> None:
        """The connection reached CLOSED: free its 4-tuple and port."""
        self.cancel_timer(conn)
        key = conn.key
        if self.ehash.get(key) is conn:
            del self.ehash[key]
            if conn.orphan:
                self.orphans -= 1
            if conn.port_held:
                self.ports.release(conn.lport, conn.reuse, tw=False)
            if conn.port_auto:
                self.ports.dest_release(key)

    # ------------------------------------------------------------------ TCB snapshots (only while tracing)

    def trace_tcb(self, key: tuple[int, int, int, int], why: str) -> None:
        """Snapshot whatever holds ``key`` now: a connection, a TIME_WAIT record, or nothing."""
        conn = self.ehash.get(key)
        if conn is not None:
            self.trace_conn(conn, why)
            return
        tw = self.twhash.get(key)
        if tw is not None:
            self.trace_tw(tw, why)

    def trace_conn(self, conn: Connection, why: str, state: str = "") -> None:
        """A :class:`timewait.trace.Tcb` of ``conn`` (``state`` overrides its name: a TCB destroyed
        on the way to TIME_WAIT still says TIME_WAIT)."""
        if not conn.traced:  # trace-select left it out
            return
        tr = self.tr
        timers: list[tuple[str, int]] = []
        if conn.rto_at:
            timers.append(("persist" if conn.probing else "rto", conn.rto_at))
        if conn.fw2_at:
            timers.append(("fin_wait2" if conn.state == FIN_WAIT_2 else "keepalive", conn.fw2_at))
        tr.tcbs.append((len(tr.records), self.sched.now, self.name, conn.key, why, state or NAMES[conn.state],
                        conn.snd_una, conn.snd_nxt, conn.rcv_nxt, conn.snd_wnd, conn.rcv_window(), conn.ts_recent,
                        tuple(timers)))

    def trace_tw(self, tw: TimeWait, why: str, state: str = "") -> None:
        """A :class:`timewait.trace.Tcb` of a TIME_WAIT or FIN_WAIT_2 record (no send window kept;
        ``state`` "CLOSED": the record is gone)."""
        if not tw.traced:  # trace-select left it out
            return
        tr = self.tr
        timers = () if state else (("timewait", tw.deadline),)
        tr.tcbs.append((len(tr.records), self.sched.now, self.name, tw.key, why,
                        state or TW_NAMES[tw.substate], tw.snd_nxt, tw.snd_nxt, tw.rcv_nxt, None, tw.rcv_wnd,
                        tw.ts_recent, timers))

    # ------------------------------------------------------------------ the wire

    def transmit(self, seg: Segment) -> None:
        """Hand a segment to the network (stamped with its birth time, and a packet id when traced).

        A segment with pid -1 comes from a connection the trace selection left out: it keeps
        that pid, and no node records it on its way (each tests ``seg.pid > 0``)."""
        net = self.net
        sched = self.sched
        now = sched.now
        seg.born = now
        self.out_segs += 1
        if seg.flags & RST:
            c = self.counters
            c["TcpOutRsts"] = c.get("TcpOutRsts", 0) + 1
        tr = self.tr
        if tr.on and seg.pid >= 0:
            seg.pid = pid = net.pid + 1  # the packet's identity, for views: only a trace reads it
            net.pid = pid
            tr.records.append((now, TX, self.name, seg))
        hop = self.hops.get(seg.dst)
        if hop is not None and not self.faults:
            link, nxt = hop
            if link.plain:
                # Network.transmit's plain path: a direct link, nothing to impair (the commonest
                # thing the simulator does).
                sched.at(now + link.delay, nxt.rx, seg)
                return
        net.transmit(self, seg)

    def receive(self, seg: Segment) -> None:
        """``tcp_v4_rcv``: demultiplex by 4-tuple, then TIME_WAIT, then listener."""
        net = self.net
        now = self.sched.now
        if now - seg.born > self.max_age:
            net.too_old(self, seg)
            return
        tr = self.tr
        if seg.dst not in self.addr_set:
            if tr.on and (seg.pid > 0 or tr.select is None):
                tr.records.append((now, DROP, self.name, seg, "not-for-us"))
            return
        # Any: compiled, a tuple[int, int, int, int] is kept unboxed and would be boxed again
        # (a tuple and four ints allocated) for each of the two lookups below.
        key: Any = (seg.dst, seg.dport, seg.src, seg.sport)
        if tr.on and (seg.pid > 0 or tr.select is None):  # pid -1: a packet the trace selection left out
            tr.records.append((now, RX, self.name, seg))
            self.trace_tcb(key, "rx")
        self.in_segs += 1
        conn = self.ehash.get(key)
        if conn is not None:
            if conn.state != SYN_RECEIVED or not conn.passive:
                conn.process(seg, now)
                self.after(conn)
                return
            lsock: Socket = conn.listener
            if lsock.listening:
                if seg.flags & ACK and len(lsock.accept_queue) >= max(lsock.backlog, 1):
                    # Accept queue full: the ACK is dropped; the SYN-ACK will be resent.
                    self.bump("TcpExtListenOverflows")
                    if tr.on and (seg.pid > 0 or tr.select is None):
                        tr.records.append((now, DROP, self.name, seg, "backlog"))
                    return
                conn.process(seg, now)
                self.after(conn)
                return
            # LS-3 (tcp_v4_rcv, TCP_NEW_SYN_RECV): the listener is gone, so the request is
            # dropped and the segment looked up again (a new listener, or an RST).
            self.req_drop(conn)
        tw = self.twhash.get(key)
        if tw is not None:
            self.deathrow.input(tw, seg)
            return
        self.listen_input(seg, 0)

    def icmp_error(self, seg: Segment, what: str) -> None:
        """IC-1 (``icmp_unreach`` -> ``tcp_v4_err``): an ICMP error about ``seg``, which this host sent.

        Only time-exceeded is generated (by routers); its errno is EHOSTUNREACH.
        """
        conn = self.ehash.get((seg.src, seg.sport, seg.dst, seg.dport))
        if conn is not None and conn.icmp_error(seg.seq, "EHOSTUNREACH"):
            self.after(conn)

    def listener_for(self, seg: Segment) -> Socket | None:
        """``__inet_lookup_listener``: the listener on the segment's address, else on 0.0.0.0;
        for IPv6, else on ``::``. An IPv4 segment that finds neither goes to a ``::`` listener
        without IPV6_V6ONLY (V6-5: ``compute_score`` skips only ``ipv6_only_sock``)."""
        ls = self.listeners
        s = ls.get((seg.dst, seg.dport))
        if s is not None:
            return s
        if seg.dst > V4_MAX:
            return ls.get((V6_ANY, seg.dport))
        s = ls.get((0, seg.dport))
        if s is None:
            s = ls.get((V6_ANY, seg.dport))
            if s is not None and s.v6only:
                return None
        return s

    def listen_input(self, seg: Segment, tw_isn: int) -> None:
        """A segment for no connection (``tcp_v4_conn_request``): a listener's SYN, or an RST
        (TW-R3). ``tw_isn`` is the ISN a TIME_WAIT record handed over with the SYN (RO-1)."""
        now = self.sched.now
        tr = self.tr
        lsock = self.listener_for(seg)
        flags = seg.flags
        if lsock is None or flags & (SYN | ACK | RST) != SYN:
            if lsock is None and tr.on and (seg.pid > 0 or tr.select is None):
                tr.records.append((now, DROP, self.name, seg, "no-socket"))
            if flags & RST:
                return
            rst = reset_for(seg, self.cfg.ttl)
            if rst is not None:
                if seg.pid < 0:  # the answer to a left-out packet is left out too
                    rst.pid = -1
                self.transmit(rst)
            return
        if flags & FIN:
            # LS-5 (tcp_rcv_state_process, TCP_LISTEN): a SYN with FIN is dropped, no SYN-ACK and
            # no RST (SKB_DROP_REASON_TCP_FLAGS); a TIME_WAIT record that passed it on is gone.
            if tr.on:
                tr.records.append((now, DROP, self.name, seg, "discarded"))
            return
        if self.cfg.tw_recycle and not tw_isn and self.deathrow.recycle_reject(seg, now):
            self.bump("TcpExtPAWSPassive")
            if tr.on and (seg.pid > 0 or tr.select is None):
                tr.records.append((now, DROP, self.name, seg, "recycle"))
            return
        if len(lsock.accept_queue) >= max(lsock.backlog, 1):
            self.bump("TcpExtListenDrops")
            if tr.on and (seg.pid > 0 or tr.select is None):
                tr.records.append((now, DROP, self.name, seg, "backlog"))
            return
        key = (seg.dst, seg.dport, seg.src, seg.sport)
        conn = Connection(self, seg.dst, seg.dport, seg.src, seg.sport)
        if seg.dst > V4_MAX:
            conn.cfg = self.cfg_v6()  # V6-7: the IPv6 MSS (and the windows it rounds)
        if tr.on:
            # trace-select: the passive end follows its SYN (seg.pid > 0: the SYN was recorded).
            if tr.select is None or seg.pid > 0 or tr.select.passive(self.name, key):
                conn.hist = []
            else:
                conn.traced = False
        conn.listener = lsock
        isn, ts_off = self.isn(seg.dst, seg.src, seg.dport, seg.sport, now)
        if tw_isn:
            isn = tw_isn
        self.ehash[key] = conn
        conn.reuse = lsock.reuseaddr  # the port share is taken at ESTABLISHED (_accepted, LS-4)
        conn.seen_state = CLOSED
        conn.open_passive(seg, now, isn, ts_off)
        self.after(conn)

    # ------------------------------------------------------------------ conveniences

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Run ``fn()`` after ``delay_s`` seconds of simulated time (applications' timers)."""
        self.sched.after(int(delay_s * SEC), _call0, fn)

    def call_at(self, t_us: int, fn: Callable[[], None]) -> None:
        self.sched.at(t_us, _call0, fn)


def _call0(fn: Callable[[], None]) -> None:
    fn()


__all__ = ["Host", "Socket", "SocketError"]
