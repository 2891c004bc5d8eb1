"""What several scenarios share: a listening line server and a timeline of named events.

Trace queries live in :mod:`timewait.measure`; apps of general use in :mod:`timewait.apps`.
"""

from __future__ import annotations

from typing import Any

from timewait.apps.basic import listen
from timewait.sim.host import Host, Socket
from timewait.tcp.config import SEC
from timewait.tcp.timewait import tw_reuse_verdict

Key = tuple[int, int, int, int]


class LineServer:
    """A server that keeps listening (``nc -lk``): keeps each connection's bytes, closes on EOF."""

    def __init__(self, host: Host, port: int, close_delay_s: float = 0.001) -> None:
        self.host = host
        self.close_delay_s = close_delay_s
        self.conns: list[tuple[float, tuple[int, int, int, int], bytearray]] = []
        self.lsock = listen(host, port, 16, self._serve, reuseaddr=True)

    def _serve(self, s: Socket) -> None:
        buf = bytearray()
        self.conns.append((self.host.net.sched.now / SEC, s.conn.key, buf))  # type: ignore[union-attr]
        s.app = buf
        s.on_data = self._data
        s.on_eof = self._eof

    def _data(self, s: Socket) -> None:
        s.app.extend(s.recv())

    def _eof(self, s: Socket) -> None:
        self._data(s)
        self.host.call_later(self.close_delay_s, s.close)


class Timeline:
    """Events with times in seconds, for the ``timeline`` metric."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str]] = []

    def add(self, when: Any, text: str) -> None:
        if when is None:
            return
        self.events.append((when if isinstance(when, float | int) else when.t / SEC, text))

    def as_metric(self) -> list[list[Any]]:
        return [[round(t, 6), text] for t, text in sorted(self.events, key=lambda e: e[0])]


def may_reuse(host: Host, loopback: bool = False, peer: Host | None = None) -> tuple[bool, str]:
    """Whether connect() may take over TIME_WAIT 4-tuples on ``host`` (PS-5), and why not;
    with ``peer``, its timestamps setting counts too."""
    return tw_reuse_verdict(host.sysctls["net.ipv4.tcp_tw_reuse"], host.cfg.timestamps != 0, loopback,
                            peer_timestamps=peer.cfg.timestamps != 0 if peer is not None else True)
