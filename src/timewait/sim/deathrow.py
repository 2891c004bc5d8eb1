"""The TIME_WAIT death row of one host.

Linux replaces a closing socket by a small ``inet_timewait_sock`` in
``tcp_time_wait`` (``net/ipv4/tcp_minisocks.c``), counts and caps the records
in ``tcp_death_row`` (``tcp_max_tw_buckets``), fires them from a timer
(``inet_twsk_schedule`` / ``tw_timer_handler``) and unhashes them in
``inet_twsk_kill`` (``net/ipv4/inet_timewait_sock.c``). A segment for a record
goes through ``tcp_timewait_state_process``: its pure part is
:meth:`timewait.tcp.timewait.TimeWait.process`; this module does the host's
side (tables, timers, transmissions, the listener hand-over of RO-1). The
legacy ``tcp_tw_recycle`` peer cache (4.9's ``inet_peer``) lives here too.
Rules TW-*, RC-1..RC-3 in ``docs/linux-rules.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from timewait.sim.scheduler import Lane
from timewait.tcp.config import SEC
from timewait.tcp.connection import Connection
from timewait.tcp.segment import Segment
from timewait.tcp.seq import before, diff, newer
from timewait.tcp.states import (
    CLOSED,
    FIN_WAIT_2,
    RCV_RST,
    RCV_SYN,
    RCV_SYN_OR_DATA,
    TIME_WAIT,
    TIMEOUT_2MSL,
    TIMEOUT_FW2,
    TW_HANDOFF,
    TW_OFF,
    TW_OVERFLOW,
)
from timewait.tcp.timewait import TW_ACK, TW_KILL, TW_RST, TW_SUCCESS, TW_SYN, TimeWait
from timewait.trace import DROP, FIRE, STATE, TIMER

if TYPE_CHECKING:
    from timewait.sim.host import Host

TW_NAMES: Final = {TIME_WAIT: "TIME_WAIT", FIN_WAIT_2: "FIN_WAIT_2"}
_TW_EXPIRY: Final = {TIME_WAIT: TIMEOUT_2MSL, FIN_WAIT_2: TIMEOUT_FW2}  # the event of a record's timer


class DeathRow:
    """One host's TIME_WAIT records: entry, timers, input and removal.

    The records themselves sit in the host's ``twhash`` (4-tuple -> record), beside
    its connections, as Linux hashes both in ``ehash``. Every 60 s record expires in
    creation order, so those wait in a :class:`~timewait.sim.scheduler.Lane` (a FIFO
    with only its head on the scheduler: Linux's timer wheel); records whose
    deadline would break the order are ordinary events.
    """

    __slots__ = ("host", "lane", "timer_cb", "peer_ts")

    def __init__(self, host: Host) -> None:
        self.host = host
        self.lane: Lane | None = None  # made on first use
        # Bound once: every record on the heap holds it (a fresh bound method each cost
        # 64 bytes per record in W2).
        self.timer_cb = self._timer
        self.peer_ts: dict[int, tuple[int, int]] = {}  # legacy recycle cache: addr -> (tsval, stamp)

    # ------------------------------------------------------------------ entering TIME_WAIT

    def _skip(self, conn: Connection, substate: int, event: str, now: int) -> None:
        """No record for ``conn``: it goes from ``substate`` straight to CLOSED, retired by
        ``event`` (TW_OFF, the timewait=off knob; TW_OVERFLOW, TW-8)."""
        host = self.host
        tr = host.tr
        if tr.on and conn.traced:
            tr.records.append((now, STATE, host.name, conn.key, TW_NAMES[substate], "CLOSED"))
            host.trace_conn(conn, "after", "CLOSED")
        host.tel.tw_skipped(substate, event == TW_OVERFLOW)
        conn.retire(event)
        conn.seen_state = CLOSED
        host.conn_gone(conn)

    def enter(self, conn: Connection, substate: int, timeout: int) -> None:
        """``tcp_time_wait``: replace the socket by a record, or skip TIME_WAIT (TW-8)."""
        host = self.host
        now = host.sched.now
        key = conn.key
        reuse = conn.reuse
        tr = host.tr
        if substate == TIME_WAIT and not host.timewait_enabled:
            # The lesson knob: a stack without TIME_WAIT goes straight to CLOSED.
            self._skip(conn, TIME_WAIT, TW_OFF, now)
            return
        if len(host.twhash) >= host.sysctls["net.ipv4.tcp_max_tw_buckets"]:
            # TW-8: no record; the connection is simply destroyed.
            host.bump("TcpExtTCPTimeWaitOverflow")
            self._skip(conn, substate, TW_OVERFLOW, now)
            return
        short = 0
        if host.cfg.tw_recycle and conn.ts_ok and self.remember_stamp(conn.raddr, conn.ts_recent,
                                                                      conn.ts_recent_stamp, now):
            # RC-1/RC-2 (4.9 tcp_time_wait, both substates): a proven peer's record lasts
            # 3.5 x RTO in TIME_WAIT; a FIN_WAIT2 record keeps that for when its FIN comes.
            short = (conn.rto << 2) - (conn.rto >> 1)
            timeout = short if substate == TIME_WAIT else max(timeout, short)
        host.cancel_timer(conn)
        tw = TimeWait.from_connection(conn, now, substate, timeout, reuse)
        tw.tw_timeout = short
        tw.bound = not conn.port_auto
        tw.traced = conn.traced
        del host.ehash[key]
        if conn.orphan:
            host.orphans -= 1
        host.twhash[key] = tw
        host.ports.to_time_wait(conn.lport, reuse)
        conn.retire(TW_HANDOFF)  # the record carries the state on (TW-4)
        conn.seen_state = CLOSED
        host.tel.tw_made(substate)
        host.bump("TcpExtTW" if timeout > 4 * SEC else "TcpExtTWKilled")
        self.schedule(tw)
        if tr.on and tw.traced:
            tr.records.append((now, TIMER, host.name, key, "timewait", tw.deadline))
            host.trace_tw(tw, "after")

    def orphan_fin_wait2(self, conn: Connection) -> None:
        """TW-6 (``tcp_close``): an orphan in FIN_WAIT2 becomes a FIN_WAIT2-substate record,
        or first waits ``tmo - 60 s`` on the keepalive timer when tmo is longer than 60 s."""
        tmo = self._fin_wait2_timeout(conn)
        if tmo <= 60 * SEC:
            self.enter(conn, FIN_WAIT_2, tmo)
        else:
            conn.fw2_at = self.host.sched.now + tmo - 60 * SEC

    def fw2_expired(self, conn: Connection) -> None:
        """TW-6, tmo > 60 s: after ``tmo - 60`` on the keepalive timer, a record for ``tmo - 60``."""
        self.enter(conn, FIN_WAIT_2, self._fin_wait2_timeout(conn) - 60 * SEC)

    def _fin_wait2_timeout(self, conn: Connection) -> int:
        """``tcp_fin_time``: max(tcp_fin_timeout, 3.5 x RTO)."""
        rto = conn.rto
        return max(self.host.cfg.fin_timeout, (rto << 2) - (rto >> 1))

    # ------------------------------------------------------------------ timers

    def schedule(self, tw: TimeWait) -> None:
        """``inet_twsk_schedule``: wake up at ``tw.deadline``, on the lane when not earlier
        than its last (all 60 s records are), else as an ordinary event (TW-6, RC-2)."""
        lane = self.lane
        if lane is None:
            lane = self.lane = Lane(self.host.sched, self._timer)
        if not lane.push(tw, tw.deadline):
            self.host.sched.at(tw.deadline, self.timer_cb, tw)

    def _timer(self, tw: TimeWait) -> None:
        """``tw_timer_handler``: the record's time is up, unless it was re-armed (TW-5)."""
        host = self.host
        now = host.sched.now
        if host.twhash.get(tw.key) is not tw:
            return
        if tw.deadline > now:
            self.schedule(tw)  # TW-5: re-armed meanwhile
            return
        tr = host.tr
        if tr.on and tw.traced:
            tr.records.append((now, FIRE, host.name, tw.key, "timewait"))
        self.kill(tw, _TW_EXPIRY[tw.substate])

    def kill(self, tw: TimeWait, event: str) -> None:
        """``inet_twsk_kill``: unhash from the 4-tuple table and the port's bucket; ``event``
        is the state table's (the record leaves through it)."""
        host = self.host
        old = tw.substate
        tw.go(event)
        del host.twhash[tw.key]
        host.ports.release(tw.key[1], tw.reuse, tw=True)
        if not tw.bound:
            host.ports.dest_release(tw.key)
        tr = host.tr
        if tr.on and tw.traced:
            tr.records.append((host.sched.now, STATE, host.name, tw.key, TW_NAMES[old], "CLOSED"))
            host.trace_tw(tw, "after", "CLOSED")
        host.tel.tw_gone(old, event)

    # ------------------------------------------------------------------ a segment for a record

    def input(self, tw: TimeWait, seg: Segment) -> None:
        """``tcp_v4_rcv``'s ``do_time_wait``: run ``tcp_timewait_state_process`` and act on
        its verdict (ACK, RST, kill, or hand a SYN to the listener: RO-1)."""
        host = self.host
        now = host.sched.now
        old_deadline = tw.deadline
        old_sub = tw.substate
        outcome, out = tw.process(seg, now, host.cfg, host.bump)
        tr = host.tr
        if tw.substate != old_sub:
            if tr.on and tw.traced:
                tr.records.append((now, STATE, host.name, tw.key, TW_NAMES[old_sub], TW_NAMES[tw.substate]))
            host.tel.tw_substate(old_sub, tw.substate)
            if tw.tw_timeout and tw.substate == TIME_WAIT and tw.ts_recent_stamp and self.remember_stamp(
                tw.key[2], tw.ts_recent, tw.ts_recent_stamp, now
            ):
                tw.deadline = now + tw.tw_timeout  # RC-2 via tcp_tw_remember_stamp (4.9)
            if not host.timewait_enabled:
                # The lesson knob also for an orphan whose FIN_WAIT2 record just got the FIN (TW-F6):
                # ACK it and forget the 4-tuple at once.
                if out is not None:
                    if not tw.traced:
                        out.pid = -1
                    host.transmit(out)
                self.kill(tw, TW_OFF)
                return
        if outcome == TW_SYN:
            lsock = host.listener_for(seg)
            if lsock is not None:
                # RO-1: the record dies and the listener takes the SYN with the fixed ISN.
                isn = tw.syn_isn
                self.kill(tw, RCV_SYN)
                host.listen_input(seg, isn)
                return
            outcome, out = TW_ACK, tw.ack(now, host.cfg)
        if tw.deadline != old_deadline:
            if tw.deadline < old_deadline:
                # Moved earlier (FIN_WAIT2 substate -> TIME_WAIT shorter than fin_timeout): a new
                # wake-up; later moves are caught when the old one fires (TW-5).
                host.sched.at(tw.deadline, self.timer_cb, tw)
            if tr.on and tw.traced:
                tr.records.append((now, TIMER, host.name, tw.key, "timewait", tw.deadline))
        if outcome == TW_SUCCESS:
            if tr.on:
                if seg.pid > 0 or tr.select is None:
                    tr.records.append((now, DROP, host.name, seg, "paws" if _paws_hit(tw, seg) else "discarded"))
                host.trace_tw(tw, "after")
            return
        if out is not None:
            if not tw.traced:
                out.pid = -1
            host.transmit(out)
        if outcome == TW_KILL:
            self.kill(tw, RCV_RST)  # TW-A assassination, TW-F2
        elif outcome == TW_RST:
            self.kill(tw, RCV_SYN_OR_DATA)  # TW-F3, TW-F5
        elif tr.on:
            host.trace_tw(tw, "after")

    # ------------------------------------------------------------------ legacy tcp_tw_recycle

    def remember_stamp(self, raddr: int, ts_recent: int, stamp: int, now: int) -> bool:
        """RC-1 (``tcp_remember_stamp``): cache the peer's newest TSval for legacy recycle.

        The entry is replaced when it is not newer than ours, or when it is older than
        TCP_PAWS_MSL and its stamp not newer than ours.
        """
        cached = self.peer_ts.get(raddr)
        # (s32)(cached - ts_recent) <= 0: not newer than ours
        if cached is None or before(cached[0], ts_recent) or cached[0] == ts_recent or (
            now - cached[1] >= 60 * SEC and cached[1] <= stamp
        ):
            self.peer_ts[raddr] = (ts_recent, stamp)
        return True

    def recycle_reject(self, seg: Segment, now: int) -> bool:
        """RC-3 (``tcp_peer_is_proven``): drop a SYN whose TSval is older than the peer's cache."""
        cached = self.peer_ts.get(seg.src)
        if cached is None or now - cached[1] >= 60 * SEC:
            return False
        if seg.ts is None:
            return True
        return diff(cached[0], seg.ts[0]) > 1  # (s32)(cached - tsval) > TCP_PAWS_WINDOW


def _paws_hit(tw: TimeWait, seg: Segment) -> bool:
    """The discarded segment failed PAWS against the record (for the trace's reason)."""
    return seg.ts is not None and tw.ts_recent_stamp != 0 and newer(tw.ts_recent, seg.ts[0])  # tcp_paws_reject
