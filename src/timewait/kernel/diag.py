"""Socket census through netlink ``inet_diag`` (what ``ss`` reads), fast enough for 100k sockets.

The request is the one pyroute2's ``DiagSocket.get_sock_stats`` sends
(``SOCK_DIAG_BY_FAMILY`` dump with a state mask), but the replies are decoded
here with one ``struct`` call per socket: pyroute2's generic decoder takes about
10 s for 100,000 sockets, this takes a fraction of a second. Only the fixed
``inet_diag_msg`` header is decoded, plus ``tcp_info.tcpi_options`` when asked.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

from pyroute2.netlink.diag import SOCK_DIAG_BY_FAMILY, SS_ALL

from timewait.kernel.nsenter import inside

NETLINK_SOCK_DIAG = 4
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
INET_DIAG_INFO = 2
TCPI_OPT_TIMESTAMPS = 1

#: Linux TCP states as ``include/net/tcp_states.h`` numbers them.
STATE_NAMES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
    7: "CLOSED", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "SYN_RECV",
}
#: The simulator spells two states differently (RFC names with an underscore).
SIM_STATE_NAMES = {**STATE_NAMES, 4: "FIN_WAIT_1", 5: "FIN_WAIT_2"}
TIME_WAIT = 6
TIMER_NAMES = {0: "off", 1: "on", 2: "keepalive", 3: "timewait", 4: "persist"}

_HDR = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBBI48s")
# inet_diag_msg: family, state, timer, retrans, id{sport, dport (big endian), src[16], dst[16],
# if, cookie[2]}, expires, rqueue, wqueue, uid, inode.
_MSG = struct.Struct("=BBBB2s2s16s16sI8sIIIII")
_RTA = struct.Struct("=HH")


class DiagSock(NamedTuple):
    """One socket as inet_diag reports it (``expires_ms``: time left on its timer)."""

    state: int
    laddr: str
    lport: int
    raddr: str
    rport: int
    timer: int
    expires_ms: int
    retrans: int
    uid: int
    inode: int
    tcpi_options: int | None = None
    #: AF_INET or AF_INET6; an IPv6 socket's v4-mapped addresses are written as IPv4 ones, so
    #: only this tells ``::ffff:10.0.0.2`` from ``10.0.0.2`` (ss's filters do: :attr:`wire_addrs`).
    family: int = socket.AF_INET

    @property
    def wire_addrs(self) -> tuple[str, str]:
        """(local, remote) as the socket's family has them: ``::ffff:a.b.c.d`` on an IPv6 socket."""
        if self.family == socket.AF_INET6:
            return tuple("::ffff:" + a if ":" not in a else a for a in (self.laddr, self.raddr))  # type: ignore[return-value]
        return self.laddr, self.raddr

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, str(self.state))


def _addr(family: int, raw: bytes) -> str:
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    a = socket.inet_ntop(socket.AF_INET6, raw)
    return a[7:] if a.startswith("::ffff:") and "." in a else a


def dump(netns: str | None = None, states: int = SS_ALL, families: tuple[int, ...] = (socket.AF_INET,
         socket.AF_INET6), tcp_info: bool = False) -> list[DiagSock]:
    """All TCP sockets of namespace ``netns`` (None: this one) whose state is in the mask ``states``.

    ``states`` is a bit mask ``1 << state``; ``tcp_info`` also asks for
    ``INET_DIAG_INFO`` and fills ``tcpi_options`` (bit 0: timestamps in use).
    """
    with inside(netns):
        sk = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    try:
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sk.bind((0, 0))
        out: list[DiagSock] = []
        for seq, fam in enumerate(families, 1):
            ext = 1 << (INET_DIAG_INFO - 1) if tcp_info else 0
            body = _REQ.pack(fam, socket.IPPROTO_TCP, ext, 0, states, b"\0" * 48)
            sk.send(_HDR.pack(_HDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
            _receive(sk, fam, seq, tcp_info, out)
        return out
    finally:
        sk.close()


def _receive(sk: socket.socket, fam: int, seq: int, tcp_info: bool, out: list[DiagSock]) -> None:
    unpack_hdr, unpack_msg = _HDR.unpack_from, _MSG.unpack_from
    append = out.append
    v4 = fam == socket.AF_INET
    ntoa = socket.inet_ntoa
    while True:
        buf = sk.recv(1 << 20)
        off, end = 0, len(buf)
        while off + 16 <= end:
            length, kind, _flags, mseq, _pid = unpack_hdr(buf, off)
            if length < 16:
                return
            if mseq != seq:
                off += (length + 3) & ~3
                continue
            if kind == NLMSG_DONE:
                return
            if kind == NLMSG_ERROR:
                (err,) = struct.unpack_from("=i", buf, off + 16)
                if err:
                    raise OSError(-err, f"inet_diag: {socket.errno.errorcode.get(-err, err)}")  # type: ignore[attr-defined]
                return
            (family, state, timer, retrans, sport, dport, src, dst, _if, _cookie,
             expires, _rq, _wq, uid, inode) = unpack_msg(buf, off + 16)
            if v4:
                laddr, raddr = ntoa(src[:4]), ntoa(dst[:4])
            else:
                laddr, raddr = _addr(family, src), _addr(family, dst)
            opts = _tcpi_options(buf, off + 16 + _MSG.size, off + length) if tcp_info else None
            append(DiagSock(state, laddr, int.from_bytes(sport, "big"), raddr, int.from_bytes(dport, "big"),
                            timer, expires, retrans, uid, inode, opts, family))
            off += (length + 3) & ~3


def _tcpi_options(buf: bytes, off: int, end: int) -> int | None:
    while off + 4 <= end:
        rlen, rtype = _RTA.unpack_from(buf, off)
        if rlen < 4:
            return None
        if rtype == INET_DIAG_INFO and rlen >= 4 + 6:
            return buf[off + 4 + 5]  # struct tcp_info: state, ca_state, retransmits, probes, backoff, options
        off += (rlen + 3) & ~3
    return None


def state_counts(socks: list[DiagSock], sim_names: bool = True) -> dict[str, int]:
    """Socket counts by state name (the simulator's spelling by default)."""
    names = SIM_STATE_NAMES if sim_names else STATE_NAMES
    out: dict[str, int] = {}
    for s in socks:
        n = names.get(s.state, str(s.state))
        out[n] = out.get(n, 0) + 1
    return dict(sorted(out.items()))


def mask(*states: int) -> int:
    """The ``idiag_states`` bit mask of the given state numbers."""
    m = 0
    for s in states:
        m |= 1 << s
    return m
