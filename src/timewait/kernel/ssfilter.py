"""ss-style socket filters for ``timewait inspect``: ``state time-wait dst 10.0.0.2 dport = 6379``.

The grammar is the part of iproute2's ``ss`` filter that a TIME_WAIT census
needs: ``state NAME`` (repeatable; ss's names and its groups ``all``,
``connected``, ``synchronized``, ``bucket``, ``big``), ``exclude NAME``,
``src``/``dst`` with an address, ``ADDR/PREFIX`` or ``ADDR:PORT``
(IPv6 in brackets, as ss wants it: ``[fd00::1]``, ``[fd00::/64]``, ``[fd00::1]:8888``), and ``sport``/``dport`` with an optional operator (``=``
``==`` ``eq`` ``!=`` ``ne`` ``<`` ``lt`` ``>`` ``gt`` ``<=`` ``le`` ``>=`` ``ge``,
port written bare or as ``:PORT``). All given terms must hold (ss's implicit
``and``); ``or``, ``not`` and parentheses are refused in one line.
"""

from __future__ import annotations

import ipaddress
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

from timewait.errors import UsageError

#: ss's state names (iproute2 misc/ss.c sstate_namel) to Linux's numbers (tcp_states.h).
STATES = {
    "established": 1, "syn-sent": 2, "syn-recv": 3, "fin-wait-1": 4, "fin-wait-2": 5, "time-wait": 6,
    "closed": 7, "close-wait": 8, "last-ack": 9, "listening": 10, "listen": 10, "closing": 11,
}
_GROUPS = {
    "all": set(range(1, 12)),
    "connected": set(range(1, 12)) - {7, 10},                # all but closed and listening
    "synchronized": set(range(1, 12)) - {2, 7, 10},          # connected minus syn-sent
    "bucket": {3, 6},                                        # minisockets: syn-recv, time-wait
    "big": set(range(1, 12)) - {3, 6},
}
_OPS: dict[str, Callable[[int, int], bool]] = {
    "=": operator.eq, "==": operator.eq, "eq": operator.eq, "!=": operator.ne, "ne": operator.ne,
    "<": operator.lt, "lt": operator.lt, ">": operator.gt, "gt": operator.gt,
    "<=": operator.le, "le": operator.le, ">=": operator.ge, "ge": operator.ge,
}
USAGE = ("filter: state NAME, exclude NAME, src|dst ADDR[/PREFIX][:PORT], sport|dport [OP] PORT "
         "(OP one of = != < > <= >=); terms are and-ed")


@dataclass
class SockFilter:
    """A parsed filter; ``text`` is what the user wrote, for the report."""

    text: str = ""
    states: set[int] | None = None
    terms: list[Callable[[str, int, str, int], bool]] = field(default_factory=list)

    def match(self, state: int, laddr: str, lport: int, raddr: str, rport: int) -> bool:
        if self.states is not None and state not in self.states:
            return False
        return all(t(laddr, lport, raddr, rport) for t in self.terms)

    @property
    def state_mask(self) -> int | None:
        """The inet_diag state bit mask for the kernel to filter by (None: all states)."""
        return None if self.states is None else sum(1 << s for s in self.states)


def _port(text: str) -> int:
    t = text.lstrip(":")
    if not t.isdigit() or not 0 <= int(t) <= 65535:
        raise UsageError(f"filter: {text!r} is not a port (0..65535); {USAGE}")
    return int(t)


def _host(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network | None, int | None]:
    """``ADDR``, ``ADDR/PREFIX``, ``ADDR:PORT``, ``[V6]``, ``[V6/PREFIX]:PORT``, ``*:PORT`` to
    (network, port); network None for ``*`` (any address of either family).

    As ss (iproute2 parse_hostcond) splits them: in brackets the address is all of it; bare,
    what follows the last ``:`` (after the ``/`` if there is one) is a port, so a bare IPv6
    address loses its last group to the port (``fd00::10:211:55:10`` is fd00::10:211:55 port
    10, as ss reads it) and ``fd00::1`` is no address at all: IPv6 goes in brackets.
    """
    port = None
    addr = text
    if text.startswith("["):
        addr, close, rest = text[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise UsageError(f"filter: {text!r}: write [V6], [V6/PREFIX] or [V6]:PORT; {USAGE}")
        if rest:
            port = _port(rest)
    else:
        slash = text.find("/")
        cut = text.rfind(":", slash if slash >= 0 else 0)
        if cut >= 0:
            addr, p = text[:cut], text[cut + 1:]
            if p:
                port = _port(p)
    if addr in ("*", ""):
        return None, port
    try:
        net = ipaddress.ip_network(addr, strict=False)
    except ValueError:
        hint = (" (ss reads what follows a bare IPv6 address's last ':' as a port: write it in brackets, "
                "[fd00::1])") if ":" in text and not text.startswith("[") else ""
        raise UsageError(f"filter: {text!r} is not ADDR[/PREFIX][:PORT]{hint}; {USAGE}") from None
    return net, port


def _addr_in(addr: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network | None) -> bool:
    """Whether ``addr`` is in ``net`` as the kernel's inet_diag filter decides it: an IPv4 net
    also holds ``::ffff:a.b.c.d`` (an IPv6 socket's mapped address), an IPv6 net no IPv4
    socket's address, not even ``::/0``; None (``*``) holds every address."""
    if net is None:
        return True
    a = ipaddress.ip_address(addr)
    if a.version != net.version:
        if a.version == 6 and a.ipv4_mapped is not None:  # ::ffff:a.b.c.d matches an IPv4 filter
            a = a.ipv4_mapped
        else:
            return False
    return a in net


def parse(tokens: list[str]) -> SockFilter:
    """The ss filter ``tokens`` as a :class:`SockFilter` (UsageError naming the bad token)."""
    f = SockFilter(text=" ".join(tokens))
    i = 0
    include: set[int] = set()
    exclude: set[int] = set()
    while i < len(tokens):
        tok = tokens[i].lower()
        arg = tokens[i + 1] if i + 1 < len(tokens) else None
        if tok in ("state", "exclude", "excl"):
            if arg is None:
                raise UsageError(f"filter: {tok} needs a state name ({', '.join(STATES)} or a group)")
            name = arg.lower()
            states = _GROUPS.get(name) or ({STATES[name]} if name in STATES else None)
            if states is None:
                raise UsageError(f"filter: unknown state {arg!r}; allowed: {', '.join([*STATES, *_GROUPS])}")
            (include if tok == "state" else exclude).update(states)
            i += 2
        elif tok in ("src", "dst"):
            if arg is None:
                raise UsageError(f"filter: {tok} needs ADDR[/PREFIX][:PORT]")
            net, port = _host(arg)
            remote = tok == "dst"

            def term(la: str, lp: int, ra: str, rp: int, net=net, port=port, remote=remote) -> bool:
                a, p = (ra, rp) if remote else (la, lp)
                return _addr_in(a, net) and (port is None or p == port)

            f.terms.append(term)
            i += 2
        elif tok in ("sport", "dport"):
            op_name = "="
            if arg is not None and arg.lower() in _OPS:
                op_name, arg = arg.lower(), tokens[i + 2] if i + 2 < len(tokens) else None
                i += 1
            if arg is None:
                raise UsageError(f"filter: {tok} needs a port; {USAGE}")
            port = _port(arg)
            op = _OPS[op_name]
            remote = tok == "dport"

            def pterm(la: str, lp: int, ra: str, rp: int, op=op, port=port, remote=remote) -> bool:
                return op(rp if remote else lp, port)

            f.terms.append(pterm)
            i += 2
        elif tok in ("and", "&&", "&"):
            i += 1
        else:
            raise UsageError(f"filter: {tokens[i]!r} not understood; {USAGE}")
    if include or exclude:
        f.states = (include or set(_GROUPS["all"])) - exclude
        if 3 in f.states:
            f.states.add(12)  # TCP_NEW_SYN_RECV: a request sock, which ss also shows as SYN-RECV
    return f
