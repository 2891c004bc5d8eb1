"""The structured event trace: the one record of a run that every view reads.

A trace is a list of plain tuples, appended on the hot path and never
formatted there. Each record starts with ``(time_us, kind, node)``; the rest
depends on the kind:

========  =====================================================================
kind      fields after ``(time_us, kind, node)``
========  =====================================================================
TX        ``seg`` -- a host put this packet on the wire (``seg.pid`` identifies
          the packet across hops)
RX        ``seg`` -- the packet reached this host's TCP stack
FWD       ``seg_in, seg_out`` -- a router or NAT forwarded it (``seg_out`` may
          be a rewritten copy: TTL, NAT addresses)
DROP      ``seg, reason`` -- the packet died here; reasons in :data:`DROP_REASONS`
ICMP      ``seg, what`` -- an ICMP error was generated (``"time-exceeded"``)
STATE     ``key, old, new`` -- a connection changed state; ``key`` is
          ``(laddr, lport, raddr, rport)``, states are names such as
          ``"ESTABLISHED"``; ``"CLOSED"`` is the end of a connection
TIMER     ``key, name, deadline_us`` -- a named timer armed (``deadline_us``
          None = cancelled); names: ``rto``, ``timewait``, ``fin_wait2``,
          ``keepalive``, ``delack``
FIRE      ``key, name`` -- a named timer fired
CALL      ``sock, call, args, result`` -- a socket call and its result
          (``result`` is None for success or an errno name)
COUNTER   ``name, delta`` -- an nstat counter was bumped
DELIVER   ``key, data`` -- bytes handed to the application
NOTE      ``text`` -- a scenario's or application's remark
========  =====================================================================

``key`` tuples use integer addresses; :func:`timewait.tcp.segment.ip_ntoa`
formats them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

TX = "tx"
RX = "rx"
FWD = "fwd"
DROP = "drop"
ICMP = "icmp"
STATE = "state"
TIMER = "timer"
FIRE = "fire"
CALL = "call"
COUNTER = "counter"
DELIVER = "deliver"
NOTE = "note"

KINDS = (TX, RX, FWD, DROP, ICMP, STATE, TIMER, FIRE, CALL, COUNTER, DELIVER, NOTE)

DROP_REASONS = {
    "loss": "lost on the link",
    "fault": "dropped by a fault rule",
    "ttl": "TTL reached 0 at a router",
    "msl": "older than the network's maximum segment lifetime",
    "paws": "rejected by PAWS (timestamp older than ts_recent)",
    "no-socket": "no socket for it",
    "checksum": "bad checksum",
    "malformed": "malformed packet",
    "stale": "outside the receive window (old duplicate)",
    "recycle": "tcp_tw_recycle: peer timestamp went backwards",
    "nat-no-mapping": "NAT has no mapping for it",
    "nat-exhausted": "NAT ran out of public ports",
    "no-route": "no route to the destination",
    "backlog": "listen queue full",
    "not-for-us": "destination address is not this host's",
    "discarded": "discarded by the TCP state machine",
}

Record = tuple[Any, ...]


class Trace:
    """An append-only list of records, or a disabled trace that records nothing.

    Hot paths test ``trace.on`` (a plain bool) before building a record.
    """

    __slots__ = ("records", "on")

    def __init__(self, enabled: bool = True) -> None:
        self.records: list[Record] = []
        self.on = enabled

    def add(self, *record: Any) -> None:
        if self.on:
            self.records.append(record)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def of_kind(self, *kinds: str) -> Iterator[Record]:
        return (r for r in self.records if r[1] in kinds)
