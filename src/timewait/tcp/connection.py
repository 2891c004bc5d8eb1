"""The TCP connection: a transmission control block and the RFC 9293 state machine.

Sans-I/O: a :class:`Connection` owns no clock, socket or thread. Every entry
point takes ``now`` (integer microseconds); segments to transmit are appended
to :attr:`Connection.outbox`, which the caller drains; timers are deadlines
(:meth:`Connection.poll_at`) that the caller honours by calling
:meth:`Connection.on_timer`. What the application should learn (connected,
data, end of stream, error) is left in :attr:`Connection.ev` as bits.

The behaviour is Linux's where Linux differs from the RFC, and each such rule
names the kernel function it mirrors and the rule id of
``reference/linux-timewait-spec.md``. The TIME_WAIT state itself lives in
:mod:`timewait.tcp.timewait`: on entering it the owner replaces the
connection by a small record, as Linux does (TW-4).
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from timewait.tcp.config import PAWS_WRAP, SEC, TcpConfig
from timewait.tcp.segment import ACK, FIN, PSH, RST, SYN, Segment
from timewait.tcp.seq import M32, before, between, diff, newer
from timewait.tcp.states import (
    APP_ABORT,
    APP_CLOSE,
    APP_CONNECT,
    CLOSE_WAIT,
    CLOSED,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LAST_ACK,
    LISTENER_GONE,
    LISTENER_SYN,
    NAMES,
    NEXT,
    RCV_ACK,
    RCV_ACK_OF_FIN,
    RCV_FIN,
    RCV_ICMP,
    RCV_RST,
    RCV_SYN,
    RCV_SYN_ACK,
    RCV_SYN_RFC793,
    SYN_RECEIVED,
    SYN_SENT,
    TIME_WAIT,
    TIMEOUT,
    InvalidTransition,
)
from timewait.tcp.timewait import reset_for

_new: Final = Segment.__new__  # object.__new__ for the dataclass; a compiled (mypyc) Segment has its own

_NEXT: Final = NEXT  # the transition table by event (tcp/states.py)

# Application event bits left in Connection.ev.
EV_CONNECTED: Final = 1
EV_DATA: Final = 2
EV_EOF: Final = 4
EV_ERROR: Final = 8
EV_CLOSED: Final = 16
EV_FW2_TIMER: Final = 32  # an orphan's long FIN_WAIT2 keepalive period ended (TW-6, tmo > 60 s)

# Data-receiving states, and states where new data after close() is an error.
_RECV_STATES: Final = (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2)
_ACK_RST_SYN: Final = ACK | RST | SYN
_RST_SYN: Final = RST | SYN
_SEQ_FLAGS: Final = (0, 1, 1, 2)  # sequence space taken by flags & (SYN | FIN): FIN = 1, SYN = 2


class Env(Protocol):
    """What the core needs from its owner: settings, a counter to bump, and the counters that
    move per segment as plain ints (no dictionary or trace record on the hot path; the owner
    merges them into its nstat counters: TcpExtTCPPureAcks, TcpExtTCPDelivered,
    TcpExtTCPOrigDataSent; CT-5..CT-8)."""

    cfg: TcpConfig
    pure_acks: int
    delivered: int
    orig_data_sent: int

    def bump(self, name: str, n: int = 1) -> None: ...


def _model_timeout(boundary: int, rto_base: int) -> int:
    """``retransmits_timed_out`` time budget for ``boundary`` retries (LA-4), µs."""
    if boundary <= 9:
        return ((1 << (boundary + 1)) - 1) * rto_base
    return 1023 * rto_base + (boundary - 9) * 120 * SEC


class Connection:
    """One TCP connection's control block and state machine."""

    __slots__ = (
        "env", "cfg", "laddr", "lport", "raddr", "rport", "key", "state",
        "iss", "snd_una", "snd_nxt", "snd_wnd", "snd_wscale", "snd_mss", "sndq", "fin_queued", "fin_sent",
        "irs", "rcv_nxt", "rcv_wscale", "rcvq", "ooo", "rcv_shut",
        "ts_ok", "ts_off", "ts_base", "ts_recent", "ts_recent_stamp", "sack_ok", "wscale_ok",
        "rto", "srtt", "rttvar", "rtt_seq", "rtt_time", "retrans", "retrans_stamp",
        "rto_at", "fw2_at", "last_oow_ack", "ack_pending", "orphan", "linger0",
        "outbox", "ev", "err", "syn_ts", "passive", "listener", "sock", "timer_at", "seen_state", "port_auto", "reuse", "hist", "busy", "traced_at",
        "traced",
        "ooo_fin", "probing", "probes", "backoff", "port_held",
        "dack_at", "dack_to", "ack_sched", "ack_now", "quick", "pingpong", "ato", "lrcvtime", "rcv_mss",
        "pushed", "rcv_wup", "rcv_wnd", "rcv_ssthresh", "sent_ends", "hp_win",
    )

    def __init__(self, env: Env, laddr: int, lport: int, raddr: int, rport: int) -> None:
        self.env = env
        self.cfg = env.cfg
        self.laddr, self.lport, self.raddr, self.rport = laddr, lport, raddr, rport
        self.key = (laddr, lport, raddr, rport)
        self.state = CLOSED
        self.iss = self.snd_una = self.snd_nxt = 0
        self.snd_wnd = 65535      # the peer's window in bytes (already scaled)
        self.snd_wscale = 0
        self.snd_mss = 536
        self.sndq = bytearray()   # bytes from snd_una on: unacknowledged, then unsent
        self.fin_queued = False   # the application closed its sending side
        self.fin_sent = False     # our FIN has been transmitted (it sits at snd_nxt - 1)
        self.irs = self.rcv_nxt = 0
        self.rcv_wscale = 0
        self.rcvq = bytearray()   # in-order bytes the application has not read
        self.ooo: dict[int, bytes] = {}
        self.ooo_fin = -1         # end_seq of a FIN that arrived out of order, -1 = none
        self.rcv_shut = False     # close() was called: new data is an error (tcp_rcv_state_process)
        self.ts_ok = False
        self.ts_off = 0
        self.ts_base = env.cfg.ts_base_ms  # ts_base_ms + ts_off: TSval = (ts_base + now_ms) mod 2**32
        self.ts_recent = 0
        self.ts_recent_stamp = 0  # µs of the last ts_recent update; 0 = never
        self.sack_ok = False
        self.wscale_ok = False
        self.rto = env.cfg.rto_init
        self.srtt = 0
        self.rttvar = 0
        self.rtt_seq = -1
        self.rtt_time = 0
        self.retrans = 0          # retransmissions of the head segment so far
        self.retrans_stamp = 0    # time the head segment was first sent (retransmits_timed_out)
        self.rto_at = 0           # deadlines, 0 = not armed
        self.probing = False      # rto_at is the persist timer (ICSK_TIME_PROBE0), not the RTO
        self.probes = 0           # icsk_probes_out: zero-window probes not answered
        self.backoff = 0          # icsk_backoff of the persist timer
        self.fw2_at = 0
        self.last_oow_ack = -(1 << 62)
        self.ack_pending = False  # an ACK the owner must send at the end of this instant (flush)
        # Delayed ACK (DA-1..DA-6), Linux's icsk_ack: an ACK owed (ICSK_ACK_SCHED) goes now or at
        # the delack timer; dack_at is that timer's wake-up, dack_to its deadline (icsk_ack.timeout).
        self.ack_sched = False
        self.ack_now = False      # ICSK_ACK_NOW: this ACK may not wait (a gap filled, a duplicate)
        self.dack_at = 0
        self.dack_to = 0
        self.quick = 0            # icsk_ack.quick: quick ACKs left (tcp_incr_quickack)
        self.pingpong = False     # interactive mode (inet_csk_in_pingpong_mode, threshold 1)
        self.ato = 0              # icsk_ack.ato, µs; 0 until the first data segment
        self.lrcvtime = 0         # icsk_ack.lrcvtime: the tick (µs) data last arrived
        self.rcv_mss = 536        # icsk_ack.rcv_mss (tcp_initialize_rcv_mss: at most TCP_MSS_DEFAULT)
        self.pushed = 0           # ICSK_ACK_PUSHED (1) / PUSHED2 (2): small segments since the last ACK
        self.rcv_wup = 0          # rcv_nxt when the last window was sent (tcp_select_window)
        self.rcv_wnd = 0          # that window, bytes: its right edge never moves left (WIN-3)
        self.rcv_ssthresh = 65535 # the window's clamp: the initial window, never grown here (WIN-3)
        # CT-7: end_seq of each data or FIN segment in flight (the kernel's skbs in the
        # retransmission queue), so an ACK counts the segments it delivers (tcp_clean_rtx_queue).
        self.sent_ends: list[int] = []
        # CT-6: header prediction (tp->pred_flags): the window field a fast-path segment must
        # carry (snd_wnd >> snd_wscale), or -1 while the fast path is off.
        self.hp_win = -1
        self.orphan = False
        self.linger0 = False
        self.outbox: list[Segment] = []
        self.ev = 0
        self.err: str | None = None
        self.syn_ts = 0
        self.passive = False      # opened by a listener's SYN (open_passive), not by connect()
        # Owner's bookkeeping (the core never reads these).
        self.listener: Any = None          # the listening Socket a passive connection came from
        self.sock: Any = None              # the application's Socket, None once orphaned
        self.timer_at = 0                  # deadline the owner has scheduled a wake-up for
        self.seen_state = CLOSED           # last state the owner has acted on
        self.port_auto = False             # local port chosen by the connect() port search
        self.reuse = False                 # SO_REUSEADDR of the socket (or listener) owning the port
        self.hist: list[int] | None = None # when a list, every state entered is appended (for traces)
        self.busy = False                  # the owner is delivering this connection's events
        self.traced_at = 0                 # the deadline the trace last recorded
        self.traced = True                 # False: the owner's trace selection left it out
        self.port_held = False             # counted in its port's bucket (a request is not, LS-4)

    # ------------------------------------------------------------------ helpers

    def __repr__(self) -> str:
        return f"<Connection {self.lport}->{self.rport} {NAMES[self.state]}>"

    @property
    def state_name(self) -> str:
        return NAMES[self.state]

    def _go(self, event: str) -> None:
        """Move through the transition table (and nowhere else)."""
        try:
            st = _NEXT[event][self.state]
        except KeyError:
            raise InvalidTransition(self.state, event) from None
        if st == CLOSED and self.state in (ESTABLISHED, CLOSE_WAIT):
            # CT-4 (tcp_set_state, TCP_CLOSE): any end of an established connection, reset
            # received or sent (CL-1, CL-2, CL-4, LS-1), or an RTO give-up, counts EstabResets.
            self.env.bump("TcpEstabResets")
        self.state = st
        if self.hist is not None:
            self.hist.append(st)

    def retire(self, event: str) -> None:
        """The owner ends this TCB through the table: replaced by its TIME_WAIT record
        (``tcp_time_wait`` -> ``tcp_done``, TW-4), or destroyed (TW-8, the timewait=off knob).

        Not kept in :attr:`hist`: the owner writes that move's trace record itself.
        """
        self.hist = None
        self._go(event)

    def poll_at(self) -> int:
        """The earliest armed deadline (µs), or 0 when no timer is armed."""
        a, b = self.rto_at, self.fw2_at
        if a and b:
            a = a if a < b else b
        else:
            a = a or b
        d = self.dack_at
        if d and (not a or d < a):
            return d
        return a

    def timer_name(self) -> str:
        """Name of the earliest armed timer, for the trace."""
        d = self.dack_at
        if d and (not self.rto_at or d < self.rto_at) and (not self.fw2_at or d < self.fw2_at):
            return "delack"
        if self.rto_at and (not self.fw2_at or self.rto_at <= self.fw2_at):
            return "persist" if self.probing else "rto"
        return "fin_wait2" if self.state == FIN_WAIT_2 else "keepalive"

    def ss_timer(self) -> tuple[str, int] | None:
        """The timer ``ss -o`` shows, (name, deadline), or None: the earliest armed one but the
        delayed ACK, which inet_diag never reports (retransmit, probe and keepalive only)."""
        a, b = self.rto_at, self.fw2_at
        if not a and not b:
            return None
        if a and (not b or a <= b):
            return ("persist" if self.probing else "rto"), a
        return ("fin_wait2" if self.state == FIN_WAIT_2 else "keepalive"), b

    def _select_window(self, used: int = -1) -> int:
        """``__tcp_select_window`` (WIN-3), bytes: the free space, at most rcv_ssthresh, rounded
        UP to the scale unit ("so that it won't get scaled away"): 64240 at scale 10 is 63 x
        1024, not 64. Under half the buffer free it is rounded down (no growth by rounding).
        ``used``: the bytes charged against the buffer (default: the unread bytes)."""
        half = self.cfg.rcv_buf >> 1
        free = half - (len(self.rcvq) if used < 0 else used)
        ws = self.rcv_wscale
        if free < (half >> 1):
            return (free >> ws) << ws if free > 0 else 0
        th = self.rcv_ssthresh
        return (((free if free < th else th) + (1 << ws) - 1) >> ws) << ws

    def rcv_window(self) -> int:
        """``tcp_receive_window``: what is left of the window last offered (bytes); the
        TIME_WAIT record keeps it for its ACKs (``tcp_time_wait``: tw_rcv_wnd)."""
        w = diff(self.rcv_wup + self.rcv_wnd, self.rcv_nxt)
        return w if w > 0 else 0

    def _emit(self, flags: int, seq: int, now: int, payload: bytes = b"") -> Segment:
        """Build one segment from the TCB and queue it for transmission (hot path).

        The segment is made field by field rather than by ``Segment(...)``: calling a class
        whose ``__init__`` is Python code costs CPython 3.11 a trip through ``type.__call__``
        and a nested interpreter loop, 2 % of a short connection's instructions for its eight
        segments. ``test_emit_sets_every_segment_field`` fails if a field is added to
        :class:`Segment` and not here.
        """
        cfg = self.cfg
        seg = _new(Segment)
        seg.src = self.laddr
        seg.dst = self.raddr
        seg.sport = self.lport
        seg.dport = self.rport
        seg.seq = seq
        seg.ack = self.rcv_nxt if flags & ACK else 0
        seg.flags = flags
        seg.payload = payload
        seg.ts = ((self.ts_base + now // 1000) & M32, self.ts_recent) if self.ts_ok else None
        seg.ttl = cfg.ttl
        seg.ip_id = seg.born = seg.pid = 0
        seg.raw_options = None
        if flags & SYN:
            # WIN-1 (tcp_select_initial_window via tcp_openreq_init_rwin): 65535 rounded down to
            # the MSS the peer will send, less the timestamps option once they are agreed. CT-9
            # (tcp_connect_init): a SYN whose socket has a ts_recent_stamp (copied from the
            # TIME_WAIT record it took over, tcp_twsk_unique) also takes the option off: 65160.
            win = cfg.synack_win if self.ts_ok and (flags & ACK or self.ts_recent_stamp) else cfg.syn_win
            half = cfg.rcv_buf >> 1  # never offer more than the buffer holds (tcp_select_initial_window)
            seg.win = win if win <= half else half
            self.rcv_ssthresh = self.rcv_wnd = seg.win  # tcp_select_initial_window
            self.rcv_wup = self.rcv_nxt
            seg.mss = cfg.mss
            seg.wscale = cfg.rcv_wscale if self.wscale_ok else None
            seg.sack_ok = self.sack_ok
        else:
            # WIN-3: _select_window(), inlined on this hot path
            half = cfg.rcv_buf >> 1
            free = half - len(self.rcvq)
            ws = self.rcv_wscale
            if free < (half >> 1):
                win = free >> ws if free > 0 else 0
            else:
                th = self.rcv_ssthresh
                win = ((free if free < th else th) + (1 << ws) - 1) >> ws
                # tcp_select_window: never shrink the offered window (its right edge stays put).
                # Not while closing toward a zero window (PR-*): the engine's buffer is its
                # window, so the kernel's TCPWantZeroWindowAdv case is left out.
                cur = diff(self.rcv_wup + self.rcv_wnd, self.rcv_nxt)
                if cur >= 0 and win << ws < cur:
                    win = (cur + (1 << ws) - 1) >> ws
            seg.win = win if win <= 0xFFFF else 0xFFFF
            seg.mss = seg.wscale = None
            seg.sack_ok = False
            self.rcv_wup = self.rcv_nxt
            self.rcv_wnd = win << ws
        if flags & ACK:
            self.ack_pending = False
            if self.ack_sched:
                self._ack_sent()
            if payload and now - now % cfg.jiffy - self.lrcvtime < self.ato:
                # DA-4 (tcp_event_data_sent): data sent within ato of the last data received.
                self.pingpong = True
        self.outbox.append(seg)
        return seg

    # ------------------------------------------------------------------ delayed ACK

    def _ack_sent(self) -> None:
        """``tcp_event_ack_sent`` (DA-5): any segment with ACK takes the owed ACK along:
        ``tcp_dec_quickack_mode`` spends a quick ACK and ``inet_csk_clear_xmit_timer(DACK)``
        drops the delack timer."""
        self.ack_sched = self.ack_now = False
        self.pushed = 0
        self.dack_at = 0
        q = self.quick
        if q:
            if q <= 1:
                self.quick = 0
                self.ato = self.cfg.ato_min  # leaving quickack mode deflates ATO
            else:
                self.quick = q - 1

    def _incr_quickack(self) -> None:
        """``tcp_incr_quickack``: rcv_wnd / (2 x rcv_mss) quick ACKs, 2 to TCP_MAX_QUICKACKS (16)."""
        half = self.cfg.rcv_buf >> 1
        wnd = self.rcv_ssthresh if self.rcv_ssthresh < half else half
        q = wnd // (2 * self.rcv_mss) or 2
        if q > 16:
            q = 16
        if q > self.quick:
            self.quick = q

    def _enter_quickack(self) -> None:
        """``tcp_enter_quickack_mode`` (DA-6): after a duplicate or out-of-window segment."""
        self._incr_quickack()
        self.pingpong = False
        self.ato = self.cfg.ato_min

    def _ack_out_of_window(self) -> None:
        """``tcp_data_queue`` out_of_window: quickack mode and an ACK that may not wait."""
        self._enter_quickack()
        self.ack_sched = self.ack_now = True

    def _data_recv(self, n: int, now: int) -> None:
        """``tcp_event_data_recv`` (DA-1): in-order data schedules an ACK; the first data
        starts quickack mode, later arrivals adapt ``ato`` to the gap between them."""
        cfg = self.cfg
        self.ack_sched = True
        # tcp_measure_rcv_mss: a segment at least rcv_mss long sets it; a shorter one is PUSHED
        if n >= self.rcv_mss:
            self.rcv_mss = n if n < cfg.mss else cfg.mss
        else:
            self.pushed = 2 if self.pushed else 1
        tick = now - now % cfg.jiffy
        ato = self.ato
        lo = cfg.ato_min
        if not ato:
            self._incr_quickack()
            self.ato = lo
        else:
            m = tick - self.lrcvtime
            j = cfg.jiffy
            if m <= lo >> 1:
                self.ato = ((ato // j) >> 1) * j + (lo >> 1)
            elif m < ato:
                ato = ((ato // j) >> 1) * j + m
                self.ato = ato if ato < self.rto else self.rto
            elif m > self.rto:
                self._incr_quickack()  # a long gap: the sender restarts, ACK it quickly
        self.lrcvtime = tick

    def _ack_snd_check(self, now: int) -> None:
        """``__tcp_ack_snd_check`` (DA-2): the owed ACK goes now if more than one full segment
        arrived since the last ACK and the window would not shrink, in quickack mode (and not
        interactive), when it may not wait (ICSK_ACK_NOW), or with out-of-order data queued;
        else ``tcp_send_delayed_ack``. Out-of-order data is ACKed at once (the kernel's first
        TCP_FASTRETRANS_THRESH duplicate ACKs go uncompressed).

        "Would not shrink" is ``__tcp_select_window() >= rcv_wnd``, where the kernel's free
        space (``tcp_space``) is charged each queued skb's truesize; the engine charges twice
        the unread bytes, which is what 6.18 showed (1000 unread bytes took the window from
        63 to 62 units; 2000 unread kept two full segments waiting, delack-two-full-segments).
        """
        if not self.cfg.delack:
            self.ack_pending = True  # the profile ACKs at the end of the instant (rfc793)
            return
        if (
            (((self.rcv_nxt - self.rcv_wup) & M32) > self.rcv_mss
             and self._select_window(2 * len(self.rcvq)) >= self.rcv_wnd)
            or (self.quick and not self.pingpong)
            or self.ack_now
            or self.ooo
        ):
            self._send_ack(now)
            return
        self._send_delayed_ack(now)

    def _send_delayed_ack(self, now: int) -> None:
        """``tcp_send_delayed_ack`` (DA-3): arm the delack timer ``ato`` ahead.

        Above TCP_DELACK_MIN the ato is bounded by 200 ms (interactive or PUSHED), else
        HZ/2, and by the smoothed RTT; always by ``icsk_delack_max`` (TCP_DELACK_MAX). An
        earlier deadline already set is kept; one due within ato/4 sends the ACK now. The
        timer wheel fires one tick after the deadline's tick (``calc_index`` rounds up).
        """
        cfg = self.cfg
        ato = self.ato
        lo = cfg.ato_min
        if ato > lo:
            hi = cfg.delack_max if self.pingpong or self.pushed else 500 * 1000
            if self.srtt:
                r = self.srtt if self.srtt > lo else lo
                if r < hi:
                    hi = r
            if ato > hi:
                ato = hi
        if ato > cfg.delack_max:
            ato = cfg.delack_max
        j = cfg.jiffy
        ato -= ato % j
        tick = now - now % j
        timeout = tick + ato
        if self.dack_at:
            if self.dack_to <= tick + ((ato // j) >> 2) * j:
                self._send_ack(now)
                return
            if timeout >= self.dack_to:
                timeout = self.dack_to
        self.ack_sched = True
        self.dack_to = timeout
        self.dack_at = timeout + j

    def _delack_timer(self, now: int) -> None:
        """``tcp_delack_timer_handler`` (DA-3): the owed ACK goes (TcpExtDelayedACKs). A
        missed delayed ACK inflates ato (to at most the RTO); in interactive mode it ends
        that mode and deflates ato to TCP_ATO_MIN."""
        self.dack_at = 0
        if not self.ack_sched or self.state == CLOSED:
            return
        if not self.pingpong:
            ato = self.ato << 1
            self.ato = ato if ato < self.rto else self.rto
        else:
            self.pingpong = False
            self.ato = self.cfg.ato_min
        self.env.bump("TcpExtDelayedACKs")
        self._send_ack(now)

    def _send_ack(self, now: int) -> None:
        self._emit(ACK, self.snd_nxt, now)

    def _send_rst_ack(self, now: int) -> None:
        """RST+ACK from the TCB, timestamp included (``tcp_send_active_reset``, CL-1/CL-2)."""
        self._emit(RST | ACK, self.snd_nxt, now)

    def _challenge_ack(self, now: int, syn: bool) -> None:
        """RFC 5961 challenge ACK (``tcp_send_challenge_ack``, LA-1/LA-2).

        seq = snd_nxt, ack = rcv_nxt, TSecr = ts_recent; at most one per
        ``tcp_invalid_ratelimit`` per socket (``tcp_oow_rate_limited``).
        """
        env = self.env
        if syn:
            env.bump("TcpExtTCPSYNChallenge")
            if self.state == ESTABLISHED:
                # CT-2 (tcp_validate_incoming's syn_inerr): only tcp_rcv_established passes 1,
                # so a SYN in ESTABLISHED also counts TcpInErrs; other states do not.
                env.bump("TcpInErrs")
        if now - self.last_oow_ack < self.cfg.invalid_ratelimit:
            env.bump("TcpExtTCPACKSkippedChallenge")
            return
        self.last_oow_ack = now
        env.bump("TcpExtTCPChallengeACK")
        self._send_ack(now)

    def _dupack(self, now: int, ratelimit: bool, skipped: str = "TcpExtTCPACKSkippedSeq",
                seg: Segment | None = None) -> None:
        """ACK for an unacceptable segment (``tcp_send_dupack``), rate limited if zero-length;
        ``skipped`` names the counter of ACKs the limit suppressed. A ``seg`` with data or FIN
        starting before rcv_nxt is a retransmission: TcpExtDelayedACKLost and quickack mode (DA-6)."""
        if seg is not None and seg.end_seq != seg.seq and before(seg.seq, self.rcv_nxt):
            self.env.bump("TcpExtDelayedACKLost")
            self._enter_quickack()
        if ratelimit:
            if now - self.last_oow_ack < self.cfg.invalid_ratelimit:
                self.env.bump(skipped)
                return
            self.last_oow_ack = now
        self._send_ack(now)

    def _reset_answer(self, seg: Segment) -> None:
        """Reset a segment as ``tcp_v4_send_reset`` does (TW-R3): seq = SEG.ACK, no options, window 0.

        Used where Linux answers with the stateless reset rather than ``tcp_send_active_reset``.
        """
        rst = reset_for(seg, self.cfg.ttl)
        if rst is not None:
            self.outbox.append(rst)

    def _fail(self, errno: str) -> None:
        self.err = errno
        self.ev |= EV_ERROR

    def icmp_error(self, seq: int, errno: str) -> bool:
        """IC-1 (``tcp_v4_err``): an ICMP error quoting our segment with sequence number ``seq``.

        In SYN_SENT it is a hard error: the connection ends at once with ``errno``
        (``tcp_done_with_error``; TcpAttemptFails), no more SYNs. Elsewhere it is a soft
        error (``sk_err_soft``) that changes nothing the engine models. A quoted ``seq``
        outside [snd_una, snd_nxt] is ignored (TcpExtOutOfWindowIcmps). Returns whether it ended.
        """
        if self.state != SYN_SENT:
            return False
        if not between(self.snd_una, seq, self.snd_nxt):
            self.env.bump("TcpExtOutOfWindowIcmps")
            return False
        self.env.bump("TcpAttemptFails")
        self._reset_timers()
        self._go(RCV_ICMP)
        self._fail(errno)
        self.ev |= EV_CLOSED
        return True

    def _reset_timers(self) -> None:
        self.rto_at = 0
        self.fw2_at = 0
        self.dack_at = 0
        self.probing = False

    # ------------------------------------------------------------------ opening

    def open_active(self, now: int, iss: int, ts_off: int, ts_recent: int = 0, ts_recent_stamp: int = 0) -> None:
        """connect(): send a SYN (``tcp_connect``).

        ``ts_recent`` is inherited when the 4-tuple was taken over from a
        TIME_WAIT (PS-6), so the SYN then carries a non-zero TSecr.
        """
        cfg = self.cfg
        self.iss = self.snd_una = iss
        self.snd_nxt = (iss + 1) & M32
        self.ts_ok = cfg.timestamps != 0
        self.ts_off = ts_off
        self.ts_base = cfg.ts_base_ms + ts_off
        self.ts_recent, self.ts_recent_stamp = ts_recent, ts_recent_stamp
        self.sack_ok = cfg.sack
        self.wscale_ok = cfg.window_scaling
        self._go(APP_CONNECT)
        seg = self._emit(SYN, iss, now)
        self.syn_ts = seg.ts[0] if seg.ts else 0
        self.retrans_stamp = now
        self.rtt_seq, self.rtt_time = self.snd_nxt, now
        self.rto = cfg.rto_init
        self.rto_at = now + self.rto
        self.env.bump("TcpActiveOpens")

    def open_passive(self, syn: Segment, now: int, iss: int, ts_off: int) -> None:
        """A listener's child for ``syn``: answer SYN-ACK (``tcp_conn_request``, TS-1)."""
        cfg = self.cfg
        self.irs = syn.seq
        self.rcv_nxt = (syn.seq + 1) & M32
        self.iss = self.snd_una = iss
        self.snd_nxt = (iss + 1) & M32
        self._take_syn_options(syn, now)
        self.ts_off = ts_off
        self.ts_base = cfg.ts_base_ms + ts_off
        self.passive = True
        self._go(LISTENER_SYN)
        self.lrcvtime = now - now % cfg.jiffy  # tcp_create_openreq_child
        self._emit(SYN | ACK, iss, now)
        self.retrans_stamp = now
        self.rtt_seq, self.rtt_time = self.snd_nxt, now
        self.rto = cfg.rto_init
        self.rto_at = now + self.rto

    def _take_syn_options(self, syn: Segment, now: int) -> None:
        """Negotiate options from the peer's SYN or SYN-ACK (TS-1)."""
        cfg = self.cfg
        mss = syn.mss if syn.mss is not None else 536
        self.snd_mss = min(mss, cfg.mss)
        self.ts_ok = cfg.timestamps != 0 and syn.ts is not None
        if self.ts_ok:
            self.ts_recent = syn.ts[0]  # type: ignore[index]
            self.ts_recent_stamp = now
        self.sack_ok = cfg.sack and syn.sack_ok
        self.wscale_ok = cfg.window_scaling and syn.wscale is not None
        if self.wscale_ok:
            self.snd_wscale = min(syn.wscale or 0, 14)  # not None: wscale_ok
            self.rcv_wscale = cfg.rcv_wscale
        else:
            self.snd_wscale = self.rcv_wscale = 0
        self.snd_wnd = syn.win  # RFC 7323 §2.2: a SYN's window is never scaled

    # ------------------------------------------------------------------ application calls

    def send(self, data: bytes, now: int) -> int:
        """Queue bytes for sending; returns how many were accepted."""
        if self.state not in (ESTABLISHED, CLOSE_WAIT, SYN_SENT, SYN_RECEIVED) or self.fin_queued:
            return 0
        self.sndq += data
        if self.state in (ESTABLISHED, CLOSE_WAIT):
            self._push(now)
        return len(data)

    def recv(self, n: int = -1) -> bytes:
        """Read the in-order bytes received so far: all of them, or at most ``n``.

        PR-6 (``tcp_cleanup_rbuf``): when the read at least doubles a window that had
        shrunk to half the clamp or less (a zero window included), an ACK announcing the
        new window is owed (``ack_pending``; the owner flushes it), else a sender facing
        a closed window would only learn of the space from its next probe. After the
        peer's FIN (RCV_SHUTDOWN) nothing more can come, so no update is sent.
        """
        q = self.rcvq
        data = bytes(q) if n < 0 or n >= len(q) else bytes(q[:n])
        left = len(q) - len(data)
        if data and self.state in _RECV_STATES:
            half = self.cfg.rcv_buf >> 1  # the window clamp (rcv_window())
            ws = self.rcv_wscale
            before = ((half - len(q)) >> ws) << ws if half > len(q) else 0  # what is left of the last offer
            if 2 * before <= half and (((half - left) >> ws) << ws) >= 2 * before:
                self.ack_pending = True
        if data and self.ack_sched and (
            ((self.rcv_nxt - self.rcv_wup) & M32) > self.rcv_mss
            or (not left and (self.pushed == 2 or (self.pushed and not self.pingpong)))
        ):
            # DA-7 (__tcp_cleanup_rbuf, time_to_ack): a read that drains the queue after a
            # small segment (two in interactive mode), or with a full segment unACKed, ACKs now.
            self.ack_pending = True
        del q[:len(data)]
        return data

    def set_quickack(self, val: int) -> None:
        """setsockopt(TCP_QUICKACK) (``__tcp_sock_set_quickack``, DA-8): 0 makes the socket
        interactive (delayed ACKs); non-zero leaves interactive mode and, with an ACK owed in
        ESTABLISHED or CLOSE_WAIT, sends it if the queue is read (``tcp_cleanup_rbuf(sk, 1)``
        with ICSK_ACK_PUSHED set); an even value then re-enters interactive mode. Not sticky:
        the kernel's quick-ack mode ends by the rules DA-1..DA-4 as before."""
        if not val:
            self.pingpong = True
            return
        self.pingpong = False
        if self.state in (ESTABLISHED, CLOSE_WAIT) and self.ack_sched:
            if not self.pushed:
                self.pushed = 1
            if ((self.rcv_nxt - self.rcv_wup) & M32) > self.rcv_mss or not self.rcvq:
                self.ack_pending = True  # the owner flushes it
            if not val & 1:
                self.pingpong = True

    def shutdown_write(self, now: int) -> None:
        """shutdown(SHUT_WR): send a FIN but keep the socket (no orphan timers)."""
        self._queue_fin(now)

    def close(self, now: int) -> None:
        """close() (``__tcp_close``, CL-1..CL-3)."""
        st = self.state
        self.orphan = True
        self.rcv_shut = True
        if st == CLOSED:
            return
        if st == SYN_SENT:
            self._go(APP_CLOSE)
            self._reset_timers()
            self.ev |= EV_CLOSED
            return
        if self.rcvq:  # __tcp_close counts sk_receive_queue only; out-of-order data is just purged
            # CL-1: unread data -> RST, no FIN, no TIME_WAIT (RFC 2525 §2.17).
            self.env.bump("TcpExtTCPAbortOnClose")
            self._abort(now, send_rst=True)
            return
        if self.linger0:
            # CL-2: SO_LINGER {1, 0} -> tcp_disconnect.
            self.env.bump("TcpExtTCPAbortOnData")
            self.disconnect(now)
            return
        self._queue_fin(now)

    def disconnect(self, now: int) -> None:
        """``tcp_disconnect``: RST+ACK where ``tcp_need_reset`` says so, then CLOSED (CL-2, LS-1).

        Counts nothing itself: ``__tcp_close`` counts TCPAbortOnData for CL-2, and a
        listener's close (LS-1) counts no TCPAbortOn* counter at all [obs].
        """
        st = self.state
        send = st in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, FIN_WAIT_2, SYN_RECEIVED) or (
            st in (CLOSING, LAST_ACK) and self._unsent() > 0
        )
        self._abort(now, send_rst=send)

    def drop_request(self) -> None:
        """The listener of this SYN_RECEIVED child is gone: forget it silently (LS-2, LS-3).

        ``reqsk_timer_handler`` drops such a request at its next SYN-ACK timer without
        resending; ``tcp_v4_rcv`` drops it when a segment for it arrives, then looks the
        segment up again.
        """
        self._reset_timers()
        self._go(LISTENER_GONE)

    def abort(self, now: int) -> None:
        """Abortive close as SO_LINGER {1, 0} does it."""
        self.linger0 = True
        self.close(now)

    def abort_now(self, now: int) -> None:
        """Reset and destroy at once (``tcp_send_active_reset`` + CLOSE), e.g. for CL-4."""
        self._abort(now, send_rst=True)

    def _abort(self, now: int, send_rst: bool) -> None:
        if send_rst:
            self._send_rst_ack(now)
        if self.state != CLOSED:
            self._go(APP_ABORT)
        self._reset_timers()
        self.ev |= EV_CLOSED

    def _queue_fin(self, now: int) -> None:
        st = self.state
        if self.fin_queued:
            return
        if st in (ESTABLISHED, SYN_RECEIVED, CLOSE_WAIT):
            self.fin_queued = True
            self._go(APP_CLOSE)
            self._push(now)

    def _unsent(self) -> int:
        inflight = (self.snd_nxt - self.snd_una) & M32
        if self.state in (SYN_SENT, SYN_RECEIVED):
            inflight -= 1
        return len(self.sndq) - inflight

    # ------------------------------------------------------------------ sending

    def _push(self, now: int) -> None:
        """Send what the peer's window allows; append the FIN after the last byte.

        The FIN takes a sequence number inside the window too (``tcp_snd_wnd_test``,
        PR-5): it is held while the window is full. What the window holds back with
        nothing in flight arms the persist timer (PR-1).
        """
        una = self.snd_una
        if una == self.iss:
            return  # our SYN is not acknowledged yet
        if self.fin_sent:
            return
        sent = (self.snd_nxt - una) & M32  # bytes already in flight
        q = self.sndq
        limit = self.snd_wnd
        mss = self.snd_mss
        avail = len(q) - sent
        room = limit - sent
        if avail <= mss and avail <= room:
            # The common case: what is left (maybe nothing but the FIN) fits in one segment.
            fin = self.fin_queued and avail < room
            if avail <= 0 and not fin:
                if self.fin_queued and not sent:
                    self._probe_arm(now)  # a lone FIN facing a zero window
                return
            nxt = self.snd_nxt
            self._emit((ACK | FIN | (PSH if avail > 0 else 0)) if fin else (ACK | PSH), nxt, now,
                       bytes(q[sent:]) if avail > 0 else b"")
            if nxt == una:
                self.retrans_stamp = now
                self.retrans = 0
            if self.rtt_seq < 0:
                self.rtt_seq, self.rtt_time = (nxt + avail) & M32, now
            self.snd_nxt = nxt = (nxt + (avail if avail > 0 else 0) + (1 if fin else 0)) & M32
            # CT-8 (tcp_event_new_data_sent): every new data or FIN segment, never a SYN or a
            # retransmission, counts TCPOrigDataSent; CT-7 keeps its end for TCPDelivered.
            self.env.orig_data_sent += 1
            self.sent_ends.append(nxt)
            if not self.rto_at:
                self.rto_at = now + self.rto
            elif self.probing:
                self._probe_stop(now)
            if fin:
                self.fin_sent = True
            return
        while True:
            off = sent
            avail = len(q) - off
            room = limit - off
            n = avail if avail < mss else mss
            if n > room:
                n = room if room > 0 else 0
            fin = self.fin_queued and n == avail and n < room
            if n <= 0 and not fin:
                if not sent:
                    self._probe_arm(now)  # the window holds back everything: nothing in flight
                return
            flags = ACK
            if fin:
                flags |= FIN
            if n:
                flags |= PSH if n == avail else 0
            payload = bytes(q[off : off + n]) if n else b""
            self._emit(flags, self.snd_nxt, now, payload)
            if self.snd_nxt == una:
                self.retrans_stamp = now
                self.retrans = 0
            if self.rtt_seq < 0:
                self.rtt_seq, self.rtt_time = (self.snd_nxt + n) & M32, now
            self.snd_nxt = (self.snd_nxt + n + (1 if fin else 0)) & M32
            self.env.orig_data_sent += 1  # CT-8, as above
            self.sent_ends.append(self.snd_nxt)
            sent += n
            if not self.rto_at:
                self.rto_at = now + self.rto
            elif self.probing:
                self._probe_stop(now)
            if fin:
                self.fin_sent = True
                return

    def flush(self, now: int) -> None:
        """Send the ACK owed for the end of this instant (``ack_pending``): a window update
        or time_to_ack after a read (PR-6, DA-7), or every ACK when the profile has no
        delayed ACK (``TcpConfig.delack`` off: an answer written at once carries the ACK).
        """
        if self.ack_pending and self.state != CLOSED:
            self._emit(ACK, self.snd_nxt, now)

    # ------------------------------------------------------------------ persist timer

    def _probe_arm(self, now: int) -> None:
        """``tcp_check_probe_timer`` (PR-1): nothing in flight, something the window holds
        back, no timer pending -> the persist timer, first after ``tcp_probe0_base``.

        Linux keeps one transmit timer per socket (``icsk_pending`` says which); so does the
        engine: the persist timer is ``rto_at`` with ``probing`` set.
        """
        if not self.rto_at and self.state != CLOSED:
            rto, lo = self.rto, self.cfg.rto_min
            self.rto_at = now + (rto if rto > lo else lo)
            self.probing = True

    def _probe_stop(self, now: int) -> None:
        """Data went out while the persist timer was pending: the RTO takes its place
        (``tcp_event_new_data_sent`` re-arms it), probes and backoff start over."""
        self.probing = False
        self.probes = self.backoff = 0
        self.rto_at = now + self.rto

    def _probe0_when(self) -> int:
        """``tcp_probe0_when``: ``max(rto, RTO_MIN) << backoff``, the shift capped at
        ``ilog2(RTO_MAX / RTO_MIN) + 1`` and the result at TCP_RTO_MAX (PR-2)."""
        cfg = self.cfg
        rto, lo = self.rto, cfg.rto_min
        cap = (cfg.rto_max // lo).bit_length()
        when = (rto if rto > lo else lo) << (self.backoff if self.backoff < cap else cap)
        return when if when < cfg.rto_max else cfg.rto_max

    def _unsent_left(self) -> bool:
        """Something waits in the write queue (``tcp_send_head``): data or our FIN."""
        return not self.fin_sent and (self.fin_queued or len(self.sndq) > ((self.snd_nxt - self.snd_una) & M32))

    def _probe_timer(self, now: int) -> None:
        """``tcp_probe_timer`` (PR-4, PR-7): give up, or send the next probe.

        A peer that answers keeps a socket open indefinitely (every acceptable ACK clears
        ``probes``, PR-3); the give-up counts unanswered probes against tcp_retries2. An
        orphan is also killed once ``rto << backoff`` reaches TCP_RTO_MAX ("not alive"),
        with tcp_orphan_retries 0 meaning 8 while alive (``tcp_orphan_retries``). The end
        is ``tcp_write_err``: ETIMEDOUT, no RST, TCPAbortOnTimeout.
        ``tcp_out_of_resources`` (orphan count, memory) is not modelled here.
        """
        if self.snd_nxt != self.snd_una or not self._unsent_left():
            self.probes = 0  # packets in flight (the RTO owns them) or nothing queued
            return
        cfg = self.cfg
        limit = cfg.retries2
        if self.orphan:
            backed = self.rto << self.backoff
            alive = backed < cfg.rto_max
            limit = cfg.orphan_retries or (8 if alive else 0)
            if not alive and self.backoff >= limit:
                self._timeout(now)
                return
        if self.probes >= limit:
            self._timeout(now)
            return
        self._send_probe0(now)

    def _send_probe0(self, now: int) -> None:
        """``tcp_send_probe0`` / ``tcp_write_wakeup`` (PR-2).

        With the window still zero the probe is ``tcp_xmit_probe_skb``: an ACK with
        seq = snd_una - 1 and no data, which the peer must answer with an ACK carrying
        its window (TCPWinProbe). If the window has opened, data goes instead.
        """
        if self.snd_wnd > 0:
            self._push(now)
        else:
            self._emit(ACK, (self.snd_una - 1) & M32, now)
            self.env.bump("TcpExtTCPWinProbe")
        if self.snd_nxt != self.snd_una or not self._unsent_left():
            self.probes = self.backoff = 0
            return
        self.probes += 1
        if self.backoff < self.cfg.retries2:
            self.backoff += 1
        self.rto_at = now + self._probe0_when()
        self.probing = True

    # ------------------------------------------------------------------ timers

    def on_timer(self, now: int) -> None:
        """Fire every deadline that is due."""
        if self.dack_at and self.dack_at <= now:
            self._delack_timer(now)
        if self.rto_at and self.rto_at <= now:
            self.rto_at = 0
            if self.probing:
                self.probing = False
                self._probe_timer(now)
            else:
                self._retransmit_timer(now)
        if self.fw2_at and self.fw2_at <= now:
            self.fw2_at = 0
            if self.state == FIN_WAIT_2:
                # tcp_keepalive_timer on an orphan: the owner turns it into a TW record.
                self.ev |= EV_FW2_TIMER

    def _retransmit_timer(self, now: int) -> None:
        """``tcp_retransmit_timer`` / ``tcp_write_timeout`` (SYN-1, LA-4)."""
        cfg = self.cfg
        st = self.state
        env = self.env
        if st == SYN_SENT or (st == SYN_RECEIVED and not self.passive):
            # CT-3 (tcp_retransmit_timer): every RTO of a full socket counts TCPTimeouts before
            # tcp_write_timeout decides, so the expiry that gives up counts too; a request's
            # SYN-ACK timer (reqsk_timer_handler) does not.
            env.bump("TcpExtTCPTimeouts")
        if st == SYN_SENT:
            # SYN-1: the first tcp_syn_linear_timeouts RTOs stay at 1 s, then double.
            limit = cfg.syn_retries + cfg.syn_linear_timeouts
            if self.retrans >= limit or now - self.retrans_stamp >= ((2 << cfg.syn_retries) - 1) * SEC:
                self._timeout(now)
                return
            self.retrans += 1
            self._emit(SYN, self.iss, now)
            self._count_retransmit(True)
            # Measured on 6.18 (tests/scripts/syn-retransmit-linear.pkt): every SYN RTO that
            # does not give up counts TcpTimeoutRehash (tcp_write_timeout's sk_rethink_txhash),
            # and from the second on the SYN sent before is marked lost (tcp_mark_skb_lost).
            env.bump("TcpExtTcpTimeoutRehash")
            if self.retrans > 1:
                env.bump("TcpExtTCPLostRetransmit")
            k = self.retrans
            lin = cfg.syn_linear_timeouts
            step = cfg.rto_init if k <= lin else cfg.rto_init << (k - lin)
            self.rto_at = now + min(step, cfg.rto_max)
            self.rtt_seq = -1
            return
        if st == SYN_RECEIVED:
            if self.retrans >= cfg.synack_retries:
                self._timeout(now)
                return
            if not self.passive:
                env.bump("TcpExtTcpTimeoutRehash")  # CT-3: a full socket (simultaneous open)
            self.retrans += 1
            self._emit(SYN | ACK, self.iss, now)
            self._count_retransmit(True)
            self.rto_at = now + min(cfg.rto_init << self.retrans, cfg.rto_max)
            self.rtt_seq = -1
            return
        if self.snd_una == self.snd_nxt:
            return  # tcp_retransmit_timer: nothing in flight (!packets_out), nothing counted
        env.bump("TcpExtTCPTimeouts")  # CT-3, before tcp_write_timeout decides
        # LA-4: give-up is time based and checked only when the timer fires.
        if self.orphan:
            boundary = cfg.orphan_retries or (8 if self.rto < cfg.rto_max else 0)
        else:
            boundary = cfg.retries2
        if now - self.retrans_stamp >= _model_timeout(boundary, cfg.rto_min):
            self._timeout(now)
            return
        # CT-3: not given up: tcp_write_timeout rehashes (TcpTimeoutRehash); tcp_enter_loss
        # marks the head lost, and a head already retransmitted counts TCPLostRetransmit.
        env.bump("TcpExtTcpTimeoutRehash")
        if self.retrans:
            env.bump("TcpExtTCPLostRetransmit")
        self._retransmit_head(now)
        self.retrans += 1
        # The first resend does not back off (tail-loss-probe timing), later ones double.
        back = self.rto << (self.retrans - 1)
        self.rto_at = now + (back if back < cfg.rto_max else cfg.rto_max)
        self.rtt_seq = -1
        self._count_retransmit(False)

    def _count_retransmit(self, syn: bool) -> None:
        """``tcp_retransmit_skb``'s counters: TcpRetransSegs, and TCPSynRetrans for a SYN or SYN-ACK.

        The host leaves retransmissions out of TcpOutSegs (RFC 1213: "excluding those containing
        only retransmitted octets"; Linux counts OUTSEGS only past snd_nxt or for bare ACKs).
        """
        env = self.env
        env.bump("TcpRetransSegs")
        if syn:
            env.bump("TcpExtTCPSynRetrans")

    def _retransmit_head(self, now: int) -> None:
        """Resend the first unacknowledged segment."""
        q = self.sndq
        una = self.snd_una
        inflight = (self.snd_nxt - una) & M32
        data_inflight = min(inflight, len(q))
        n = min(data_inflight, self.snd_mss)
        fin = self.fin_sent and n == len(q)
        flags = ACK | (FIN if fin else 0) | (PSH if n else 0)
        self._emit(flags, una, now, bytes(q[:n]))
        ends = self.sent_ends
        if len(ends) > 1:
            # tcp_retrans_try_collapse: the segments this one covers (data and its FIN) are one
            # skb from now on, delivered once (CT-7).
            end = (una + n + (1 if fin else 0)) & M32
            k = 0
            while k < len(ends) and not before(end, ends[k]):
                k += 1
            if k > 1:
                ends[:k] = [end]

    def _timeout(self, now: int) -> None:
        self.env.bump("TcpExtTCPAbortOnTimeout")
        self._reset_timers()
        self._go(TIMEOUT)
        self._fail("ETIMEDOUT")
        self.ev |= EV_CLOSED

    # ------------------------------------------------------------------ segment arrival

    def process(self, seg: Segment, now: int) -> None:
        """Handle one arriving segment (RFC 9293 §3.10.7, Linux ``tcp_rcv_state_process``)."""
        st = self.state
        if st == SYN_SENT:
            self._synsent(seg, now)
            return
        if st == CLOSED:
            return
        flags = seg.flags
        if not flags & _ACK_RST_SYN:
            return  # tcp_rcv_state_process drops these before tcp_validate_incoming
        # --- tcp_validate_incoming -------------------------------------------
        ts = seg.ts
        ts_ok = self.ts_ok and ts is not None
        if ts_ok and ts[0] != self.ts_recent and self.ts_recent and not flags & RST:  # type: ignore[index]
            # TS-5: PAWS with TCP_PAWS_WINDOW = 1.
            if diff(self.ts_recent, ts[0]) > 1 and now - self.ts_recent_stamp < PAWS_WRAP:  # type: ignore[index]
                if not self._disordered_ack(seg):
                    if flags & SYN:
                        self._challenge_ack(now, True)
                        return
                    if not seg.payload and not flags & FIN and before(seg.seq, self.rcv_nxt):
                        self.env.bump("TcpExtPAWSOldAck")
                        return  # old pure ACK: dropped silently (6.15+)
                    self.env.bump("TcpExtPAWSEstab")
                    self._dupack(now, ratelimit=not seg.payload and not flags & FIN,
                                 skipped="TcpExtTCPACKSkippedPAWS", seg=seg)
                    return
        seq = seg.seq
        payload = seg.payload
        end = (seq + len(payload) + _SEQ_FLAGS[flags & 3]) & M32
        rcv_nxt = self.rcv_nxt
        # tcp_sequence(): end_seq not before rcv_wup and seq not after the window's right edge
        # (a segment starting at rcv_nxt always passes).
        if seq != rcv_nxt and (
            before(end, rcv_nxt)
            or before(rcv_nxt + max((self.cfg.rcv_buf >> 1) - len(self.rcvq), 0), seq)
        ):
            if flags & RST:
                if self._reset_check(seg):
                    self._rst(seg, now)  # tcp_reset_check: rcv_nxt - 1 after the peer's FIN
                return
            if flags & SYN:
                self._syn_in_synchronized(now)
                return
            self._dupack(now, ratelimit=not payload and not flags & FIN, seg=seg)
            return
        if flags & _RST_SYN:
            if flags & RST:
                self._rst(seg, now)
                return
            # The SYN check (tcp_validate_incoming step 4) comes before ts_recent is updated
            # (tcp_ack), so a challenge ACK echoes the old ts_recent (LA-2).
            if st == SYN_RECEIVED and seq == self.irs:
                if flags & (SYN | ACK | RST) == SYN:
                    # A retransmitted SYN: answer with the SYN-ACK again (tcp_check_req).
                    self._emit(SYN | ACK, self.iss, now)
                    return
                if not self.passive and seg.ack == self.snd_nxt:
                    pass  # simultaneous open: the peer's SYN-ACK completes it (validate_incoming "pass")
                else:
                    self._syn_in_synchronized(now, seg)
                    return
            else:
                self._syn_in_synchronized(now, seg)
                return
        if not flags & ACK:
            return
        fast = False  # CT-6: a pure ACK on the fast path (only pure ACKs need to know)
        if st == ESTABLISHED and seg.win == self.hp_win and seq == rcv_nxt and flags & ~PSH == ACK \
                and not payload:
            fast = self._predicted(seg)
        # Timestamps: remember the peer's TSval (TS-4, Last.ACK.sent rule), as tcp_ack does once
        # the ACK is acceptable: neither older than snd_una nor beyond snd_nxt.
        if ts_ok and (seq == rcv_nxt or not before(rcv_nxt, seq)):
            una = self.snd_una
            if between(una, seg.ack, self.snd_nxt):
                rec = self.ts_recent
                if not before(ts[0], rec) or not rec:  # type: ignore[index]
                    self.ts_recent = ts[0]  # type: ignore[index]
                    self.ts_recent_stamp = now
        if not self._ack(seg, now, fast):
            return
        st = self.state
        if st == CLOSED or st == TIME_WAIT:
            return
        # --- data -------------------------------------------------------------
        if payload:
            if st in _RECV_STATES:
                if self.rcv_shut and before(self.rcv_nxt, (end - (flags & FIN)) & M32):
                    # New data after close(): reset (tcp_rcv_state_process, TCPAbortOnData).
                    self.env.bump("TcpExtTCPAbortOnData")
                    self._reset_answer(seg)
                    self._reset_timers()
                    self._go(APP_ABORT)
                    self.ev |= EV_CLOSED
                    return
                self._data(seg, now)
            # CLOSE_WAIT, CLOSING, LAST_ACK: the peer already sent FIN; ignore data.
        if flags & FIN:
            self._fin(seg, end, now)
        elif self.ooo_fin >= 0 and ((self.ooo_fin - 1) & M32) == self.rcv_nxt:
            self._fin(seg, self.ooo_fin, now)  # tcp_ofo_queue: the queued FIN is now in order
        if self.ack_sched and self.state != CLOSED:
            self._ack_snd_check(now)  # tcp_ack_snd_check, after tcp_data_snd_check had its turn

    def _predicted(self, seg: Segment) -> bool:
        """CT-6, header prediction (``tcp_rcv_established``) of a pure ACK: the caller checked the
        state, the window (``pred_flags``), seq == rcv_nxt and the flags (ACK, PSH allowed). The
        options must be what ``tcp_header_len`` predicts (only an aligned timestamp when agreed,
        with a TSval not older than ts_recent), and the ACK not beyond snd_nxt.

        Data segments are left out: the kernel takes them fast only when the skb's truesize
        fits ``sk_forward_alloc`` (socket memory accounting the engine does not model), which
        is why TCPHPHits and TCPHPAcks are not modelled (docs/scripts.md)."""
        if before(self.snd_nxt, seg.ack):
            return False
        if seg.mss is not None or seg.wscale is not None or seg.sack_ok or seg.raw_options is not None:
            return False
        ts = seg.ts
        if self.ts_ok:
            return ts is not None and not before(ts[0], self.ts_recent)
        return ts is None

    def _disordered_ack(self, seg: Segment) -> bool:
        """``tcp_disordered_ack_check``: a harmless reordered duplicate ACK passes PAWS.

        Its TSval must lie within the replay window (``tcp_tsval_replay``: RTO x 1200 / HZ
        ticks, i.e. 1.2 x RTO in ms). The "does not update the window" test is not modelled
        (the core keeps no snd_wl1).
        """
        return (
            seg.flags & (ACK | SYN | FIN | RST) == ACK
            and not seg.payload
            and seg.seq == self.rcv_nxt
            and seg.ack == self.snd_una
            and ((self.ts_recent - seg.ts[0]) & M32) <= self.rto * 1200 // SEC  # type: ignore[index]
        )

    def _syn_in_synchronized(self, now: int, seg: Segment | None = None) -> None:
        """LA-1: a SYN in a synchronized state gets a challenge ACK, never an RST.

        The ``syn_in_lastack_rst`` profile knob models RFC 793 and pre-3.6
        kernels (the chapter's S4): a SYN *in the window* is an error, answered
        with the reset a segment without ACK gets (seq 0, ack = SEG.SEQ + 1),
        and the connection is closed; ``seg`` is None for an out-of-window SYN,
        which gets a plain ACK.
        """
        if self.cfg.syn_in_lastack_rst:
            if seg is None:
                self._dupack(now, ratelimit=False)
                return
            rst = Segment(self.laddr, self.raddr, self.lport, self.rport, 0, seg.end_seq, RST | ACK, 0,
                          ttl=self.cfg.ttl)
            self.outbox.append(rst)
            self._reset_timers()
            self._go(RCV_SYN_RFC793)
            self._fail("ECONNRESET")
            self.ev |= EV_CLOSED
            return
        self._challenge_ack(now, True)

    def _reset_check(self, seg: Segment) -> bool:
        """``tcp_reset_check``: after the peer's FIN an RST at rcv_nxt - 1 is exact too."""
        return self.state in (CLOSE_WAIT, LAST_ACK, CLOSING) and seg.seq == ((self.rcv_nxt - 1) & M32)

    def _rst(self, seg: Segment, now: int) -> None:
        """RFC 5961 §3.2 (``tcp_validate_incoming`` step 2, LA-3)."""
        st = self.state
        ok = seg.seq == self.rcv_nxt or self._reset_check(seg)
        if not ok:
            if self.cfg.challenge_ack:
                self._challenge_ack(now, False)
                return
        self._reset_timers()  # TcpEstabResets from ESTABLISHED/CLOSE_WAIT: _go (CT-4, tcp_set_state)
        if st == SYN_RECEIVED and self.passive:
            self._go(RCV_RST)
            self.ev |= EV_CLOSED
            return
        self._go(RCV_RST)
        self._fail("EPIPE" if st == CLOSE_WAIT else "ECONNRESET")
        self.ev |= EV_CLOSED

    def _ack(self, seg: Segment, now: int, fast: bool = False) -> bool:
        """ACK processing (``tcp_ack``). Returns False when the segment must be dropped.

        ``fast``: a pure ACK that took the header-prediction fast path (CT-6)."""
        ack = seg.ack
        una = self.snd_una
        nxt = self.snd_nxt
        st = self.state
        if st == SYN_RECEIVED:
            if not (newer(ack, una) and not before(nxt, ack)):
                # Unacceptable ACK in SYN-RECEIVED: reset (RFC 9293, tcp_check_req).
                self._reset_answer(seg)
                return False
            self._go(RCV_ACK)
            env = self.env
            if self.passive:
                # CT-1: the child is made when the handshake completes (tcp_check_req ->
                # tcp_create_openreq_child), which counts TcpPassiveOpens; a SYN alone does not.
                env.bump("TcpPassiveOpens")
            else:
                env.delivered += 1  # CT-7: simultaneous open, our SYN's skb is acked here
            if not seg.payload and not seg.flags & FIN:
                env.pure_acks += 1  # CT-5: tcp_ack with FLAG_SLOWPATH (tcp_rcv_state_process)
            self.hp_win = seg.win   # CT-6: tcp_fast_path_on (tcp_rcv_state_process, TCP_SYN_RECV)
            self.snd_una = ack
            self.snd_wnd = seg.win << self.snd_wscale
            if self.rtt_seq >= 0:
                self._rtt_sample(ack, now)
            self.retrans = 0
            self.rto_at = 0
            self.ev |= EV_CONNECTED
            if self.fin_queued or self.sndq:
                self._push(now)
            return True
        if before(nxt, ack):
            # ACK of data never sent: discarded with a challenge ACK (tcp_ack,
            # SKB_DROP_REASON_TCP_ACK_UNSENT_DATA; RFC 5961 5.2). ACK-1: 6.18 sends it, measured
            # with google/packetdrill's ts_recent/invalid_ack.pkt, whose expectation predates it.
            self._challenge_ack(now, False)
            return False
        acked = (ack - una) & M32
        if not before(ack, una) and not seg.payload and not seg.flags & FIN and not (fast and acked):
            # CT-5 (tcp_ack): a segment without data or FIN, not older than snd_una, counts
            # TCPPureAcks, unless it took the fast path and advanced snd_una (that one is
            # TCPHPAcks, not modelled, CT-6).
            self.env.pure_acks += 1
        if newer(ack, una):
            ends = self.sent_ends
            if ends:
                # CT-7 (tcp_clean_rtx_queue -> tcp_count_delivered, tcp_newly_delivered): each
                # data or FIN segment now wholly acknowledged counts TCPDelivered once.
                if ack == nxt:
                    self.env.delivered += len(ends)
                    ends.clear()
                else:
                    n = 0
                    while n < len(ends) and not before(ack, ends[n]):
                        n += 1
                    if n:
                        self.env.delivered += n
                        del ends[:n]
            fin_acked = self.fin_sent and ack == nxt
            data_acked = acked - (1 if fin_acked else 0)
            if data_acked > 0:
                del self.sndq[:data_acked]
            self.snd_una = ack
            if self.rtt_seq >= 0:
                self._rtt_sample(ack, now)
            self.retrans = 0
            if ack == nxt:
                self.rto_at = 0
            else:
                self.retrans_stamp = now
                self.rto_at = now + self.rto
            if fin_acked:
                if st == FIN_WAIT_1:
                    self._go(RCV_ACK_OF_FIN)
                elif st == CLOSING:
                    self._go(RCV_ACK_OF_FIN)
                    return True
                elif st == LAST_ACK:
                    self._go(RCV_ACK_OF_FIN)
                    self._reset_timers()
                    self.ev |= EV_CLOSED
                    return False
        nwin = seg.win << self.snd_wscale  # tcp_ack_update_window
        if nwin != self.snd_wnd:
            self.snd_wnd = nwin
            # CT-6: "the only place where fast path is recovered for sending TCP": pred_flags
            # off, then tcp_fast_path_check (no out-of-order data, a window offered).
            self.hp_win = seg.win if not self.ooo and self.rcv_wnd else -1
        if self.probing:
            # PR-3 (tcp_ack, tcp_ack_probe): the peer answered; an opened window clears the
            # persist timer and its backoff, a closed one re-arms it from now.
            self.probes = 0
            if self.snd_wnd > 0:
                self.probing = False
                self.rto_at = self.backoff = 0
            else:
                self.rto_at = now + self._probe0_when()
        if (self.sndq or self.fin_queued) and not self.fin_sent:
            self._push(now)
        return True

    def _rtt_sample(self, ack: int, now: int) -> None:
        """RFC 6298 estimator with Linux's floor (``tcp_rtt_estimator``, ``__tcp_set_rto``)."""
        rtt_seq = self.rtt_seq
        if rtt_seq < 0 or before(ack, rtt_seq):
            return
        r = now - self.rtt_time
        self.rtt_seq = -1
        srtt = self.srtt
        if srtt == 0:
            srtt = r if r > 0 else 1
            var = r >> 1
        else:
            d = r - srtt
            var = self.rttvar
            var += ((d if d > 0 else -d) - var) >> 2
            srtt += d >> 3
        self.srtt = srtt
        self.rttvar = var
        cfg = self.cfg
        lo = cfg.rto_min
        var <<= 2
        rto = srtt + (var if var > lo else lo)
        hi = cfg.rto_max
        self.rto = rto if rto < hi else hi

    def _data(self, seg: Segment, now: int) -> None:
        """In-order delivery and out-of-order reassembly within the receive window."""
        payload = seg.payload
        seq = seg.seq
        rcv_nxt = self.rcv_nxt
        d = (rcv_nxt - seq) & M32
        if newer(rcv_nxt, seq):
            # Starts before rcv_nxt: trim what we already have.
            if d >= len(payload):
                # A retransmission (tcp_data_queue): TcpExtDelayedACKLost, quickack, ACK now
                # (D-SACK-less).
                self.env.bump("TcpExtDelayedACKLost")
                self._ack_out_of_window()
                return
            payload = payload[d:]
            seq = rcv_nxt
        w = (self.cfg.rcv_buf >> 1) - len(self.rcvq)  # rcv_window(), inlined on this hot path
        room = (w if w > 0 else 0) - ((seq - rcv_nxt) & M32)
        if room <= 0:
            self._ack_out_of_window()
            return
        if len(payload) > room:
            payload = payload[:room]
        if seq != rcv_nxt:
            self.ooo[seq] = payload  # tcp_data_queue_ofo: the ACK goes at once (ooo non-empty)
            self.ack_sched = True
            self.hp_win = -1         # tcp_data_queue_ofo: pred_flags = 0 (CT-6)
            return
        self.rcvq += payload
        rcv_nxt = (rcv_nxt + len(payload)) & M32
        ooo = self.ooo
        if ooo:
            self.ack_now = True  # RFC 5681 4.2: a gap (being) filled is ACKed at once
        while ooo:
            nxt = None
            for s in ooo:
                if not before(rcv_nxt, s):  # s at or before rcv_nxt
                    nxt = s
                    break
            if nxt is None:
                break
            chunk = ooo.pop(nxt)
            skip = (rcv_nxt - nxt) & M32
            if skip < len(chunk):
                self.rcvq += chunk[skip:]
                rcv_nxt = (rcv_nxt + len(chunk) - skip) & M32
        self.rcv_nxt = rcv_nxt
        if not ooo and self.rcv_wnd:
            self.hp_win = self.snd_wnd >> self.snd_wscale  # tcp_data_queue: tcp_fast_path_check
        self.ev |= EV_DATA
        self._data_recv(len(payload), now)

    def _fin(self, seg: Segment, end: int, now: int) -> None:
        """The peer's FIN (``tcp_fin``), taken only once everything before it arrived."""
        if ((end - 1) & M32) != self.rcv_nxt:
            if end == self.rcv_nxt:
                # A retransmitted FIN (tcp_data_queue, DA-6): TcpExtDelayedACKLost (once: _data
                # counted a retransmission with data), quickack, ACK now.
                if not self.ack_now:
                    self.env.bump("TcpExtDelayedACKLost")
                self._ack_out_of_window()
            elif 0 < ((end - 1 - self.rcv_nxt) & M32) < self.rcv_window():
                self.ooo_fin = end  # tcp_data_queue_ofo keeps the FIN with its segment
            return
        self.ooo_fin = -1
        self.rcv_nxt = end
        self.ack_sched = True
        self.ev |= EV_EOF
        st = self.state
        if st in (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2):
            self._go(RCV_FIN)
            if self.state != CLOSE_WAIT:
                # CLOSING or TIME_WAIT: ACK now (tcp_fin: tcp_send_ack; the owner replaces a
                # TIME_WAIT socket by a record at once).
                self.fw2_at = 0
                self._send_ack(now)
            else:
                # DA-4: tcp_fin enters pingpong mode, so the ACK of the FIN is delayed and an
                # application that closes within the delay sends one FIN+ACK (3-segment close).
                self.pingpong = True

    # ------------------------------------------------------------------ SYN_SENT

    def _synsent(self, seg: Segment, now: int) -> None:
        """``tcp_rcv_synsent_state_process`` (LA-3, TS-6, simultaneous open)."""
        flags = seg.flags
        if flags & ACK:
            ack = seg.ack
            if not (newer(ack, self.iss) and not before(self.snd_nxt, ack)):
                # LA-3: unacceptable ACK -> RST with seq = SEG.ACK; stay in SYN_SENT and,
                # if the SYN was not retransmitted yet, resend it after TCP_TIMEOUT_MIN.
                # tcp_rcv_synsent_state_process moves the timer before looking at RST
                # (reset_and_undo); tcp_v4_send_reset then never answers an RST.
                if self.cfg.quick_syn_resend and self.retrans == 0:
                    self.rto_at = now + self.cfg.timeout_min
                self._reset_answer(seg)
                return
            if flags & RST:
                self.env.bump("TcpAttemptFails")
                self._reset_timers()
                self._go(RCV_RST)
                self._fail("ECONNREFUSED")
                self.ev |= EV_CLOSED
                return
            if not flags & SYN:
                return
            if self.ts_ok and seg.ts is not None and seg.ts[1]:
                # TS-6: the echoed TSval must lie between our first SYN and now.
                ecr = seg.ts[1]
                hi = (self.cfg.ts_clock(now) + self.ts_off) & M32
                if before(ecr, self.syn_ts) or before(hi, ecr):
                    self.env.bump("TcpExtPAWSActive")
                    self._reset_answer(seg)
                    return
            sent_ts = self.ts_ok
            self._take_syn_options(seg, now)
            self.ts_ok = self.ts_ok and sent_ts
            self.irs = seg.seq
            self.rcv_nxt = self.rcv_wup = (seg.seq + 1) & M32
            self.snd_una = ack
            self.snd_wnd = seg.win
            if self.rtt_seq >= 0:
                self._rtt_sample(ack, now)
            self.retrans = 0
            self.rto_at = 0
            self._go(RCV_SYN_ACK)
            self.env.delivered += 1  # CT-7: tcp_ack(FLAG_SLOWPATH) delivers our SYN's skb
            # CT-6 (tcp_finish_connect): the fast path starts at once only without window scaling.
            self.hp_win = -1 if self.snd_wscale else seg.win
            self.lrcvtime = now - now % self.cfg.jiffy  # tcp_rcv_synsent_state_process
            self.ev |= EV_CONNECTED
            self._send_ack(now)  # the handshake's third segment (tcp_send_ack)
            if self.sndq or self.fin_queued:
                self._push(now)
            return
        if flags & RST:
            return
        if flags & SYN:
            # Simultaneous open: SYN_SENT -> SYN_RECEIVED, answer SYN-ACK with our ISS.
            sent_ts = self.ts_ok
            self._take_syn_options(seg, now)
            self.ts_ok = self.ts_ok and sent_ts
            self.irs = seg.seq
            self.rcv_nxt = (seg.seq + 1) & M32
            self._go(RCV_SYN)
            self._emit(SYN | ACK, self.iss, now)
            self.retrans = 0
            self.rto_at = now + self.cfg.rto_init
