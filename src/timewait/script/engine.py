"""Play a parsed script against a stack and give the verdict.

The engine owns packetdrill's semantics, so both stacks are judged alike:

* times: absolute, relative to the previous event (after a ``>`` line, to when
  the packet really left, as packetdrill adjusts), ``*``, windows; a ``>``
  packet must leave within the tolerance (default 4 ms) of its time;
* sequence numbers: the remote's are the script's own (the script is the
  remote); the local host's are relative to its ISN, learned from each SYN or
  SYN-ACK it sends; ACK numbers of ``<`` lines are shifted onto that ISN;
* a packet the host sends that no ``>`` line expects fails the script at the
  next line that is not a ``>`` line (or at the end);
* blocking calls (accept, connect, read) wait while the script goes on; their
  result is checked when they return, their time against a window if given.

A :class:`Stack` is the simulated host or the real kernel; see
:mod:`~timewait.script.sim_runner` and :mod:`~timewait.script.kernel_runner`.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from timewait.script.parse import (
    Call,
    Command,
    Event,
    Ident,
    Or,
    Packet,
    Script,
    ScriptError,
    Syscall,
    Unsupported,
)
from timewait.script.wire import (
    LOCAL_PORT,
    REMOTE_PORT,
    Wire,
    build,
    flag_letters,
    format_expected,
    format_packet,
    read,
)
from timewait.tcp.segment import ACK, SYN
from timewait.tcp.seq import M32

TOLERANCE_US = 4000      # packetdrill's default --tolerance_usecs
ANY_WAIT_S = 10.0        # how long a ``*`` packet line waits


# --------------------------------------------------------------------------- system call requests


@dataclass(slots=True)
class Req:
    """A system call as a stack makes it: name, script fd and the arguments that matter."""

    name: str
    fd: int
    arg: Any = None
    newfd: int | None = None           # socket(), accept(): the fd the script calls it


@dataclass(slots=True)
class Result:
    ret: int
    errno: str | None = None
    value: Any = None                  # getsockopt's value, fcntl F_GETFL's flags


@dataclass(slots=True)
class Pending:
    """A blocking call still waiting; the stack fills ``result`` and ``t`` when it returns."""

    req: Req
    result: Result | None = None
    t: float = 0.0


SOCKOPTS = ("SO_REUSEADDR", "SO_LINGER", "TCP_NODELAY", "IP_BIND_ADDRESS_NO_PORT", "IP_LOCAL_PORT_RANGE",
            "TCP_QUICKACK")
SHUT = {"SHUT_RD": 0, "SHUT_WR": 1, "SHUT_RDWR": 2}
O_NONBLOCK = 0o4000
O_RDWR = 2


def _int(v: Any, what: str, ev: Event, path: str) -> int:
    if isinstance(v, int):
        return v
    raise ScriptError(f"{path}:{ev.line}: {what} {_show(v)}; expected a number")


def _show(v: Any) -> str:
    if v is Ellipsis:
        return "..."
    if isinstance(v, Ident):
        return v.name
    return repr(v)


def _flags(v: Any) -> set[str]:
    terms = v.terms if isinstance(v, Or) else (v,)
    return {t.name for t in terms if isinstance(t, Ident)} | {str(t) for t in terms if isinstance(t, int)}


def request(ev: Event, path: str, bind_port: int = LOCAL_PORT) -> Req:
    """The request for a syscall line (ScriptError when malformed, Unsupported when not modelled);
    ``bind(fd, ..., ...)`` binds ``bind_port`` (packetdrill's ``--bind_port``)."""
    sc = ev.what
    assert isinstance(sc, Syscall)
    a = sc.args
    name = sc.name
    need = {"socket": 3, "bind": 3, "listen": 2, "accept": 3, "connect": 3, "write": 3, "send": 4,
            "read": 3, "recv": 4, "shutdown": 2, "close": 1, "setsockopt": 5, "getsockopt": 5, "fcntl": 2}
    if name not in need:
        raise Unsupported(ev.line, f"system call {name}()")
    if len(a) < need[name]:
        raise ScriptError(f"{path}:{ev.line}: {name}() with {len(a)} arguments; expected {need[name]}")
    if name == "socket":
        if any(isinstance(x, Ident) and x.name in ("SOCK_DGRAM", "IPPROTO_UDP", "AF_INET6") for x in a):
            raise Unsupported(ev.line, "a socket that is not IPv4 TCP")
        if sc.result is None or sc.result < 0:
            raise Unsupported(ev.line, "socket() expected to fail")
        # SOCK_NONBLOCK in the type: the descriptor starts non-blocking (fcntl's flag).
        return Req("socket", sc.result, "SOCK_NONBLOCK" in _flags(a[1]), newfd=sc.result)
    fd = _int(a[0], f"{name}() fd", ev, path)
    if name == "bind":
        return Req("bind", fd, bind_port if a[1] is Ellipsis else _port(a[1], ev, path))
    if name == "listen":
        return Req("listen", fd, _int(a[1], "listen() backlog", ev, path))
    if name == "accept":
        return Req("accept", fd, newfd=sc.result if sc.result is not None and sc.result >= 0 else None)
    if name == "connect":
        return Req("connect", fd, _port(a[1], ev, path))
    if name in ("write", "send", "read", "recv"):
        return Req("write" if name in ("write", "send") else "read", fd, _int(a[2], f"{name}() length", ev, path))
    if name == "shutdown":
        how = a[1].name if isinstance(a[1], Ident) else a[1]
        if how not in SHUT:
            raise ScriptError(f"{path}:{ev.line}: shutdown how {_show(a[1])}; expected SHUT_RD, SHUT_WR or SHUT_RDWR")
        return Req("shutdown", fd, how)
    if name == "close":
        return Req("close", fd)
    if name in ("setsockopt", "getsockopt"):
        opt = a[2].name if isinstance(a[2], Ident) else _show(a[2])
        if name == "getsockopt":
            if opt not in ("SO_ERROR", "SO_RCVBUF"):
                raise Unsupported(ev.line, f"getsockopt {opt}")
            v = a[3][0] if isinstance(a[3], list) and a[3] else a[3]
            want = v.name if isinstance(v, Ident) else v
            return Req("getsockopt", fd, (opt, want))
        if opt not in SOCKOPTS:
            raise Unsupported(ev.line, f"setsockopt {opt}")
        v = a[3]
        if opt == "SO_LINGER":
            if not isinstance(v, dict) or not {"onoff", "linger"} <= set(v):
                raise ScriptError(f"{path}:{ev.line}: SO_LINGER value {_show(v)}; expected {{onoff=1, linger=0}}")
            return Req("setsockopt", fd, (opt, (int(v["onoff"]), int(v["linger"]))))
        val = v[0] if isinstance(v, list) and v else v
        return Req("setsockopt", fd, (opt, _int(val, f"{opt} value", ev, path)))
    # fcntl
    cmd = a[1].name if isinstance(a[1], Ident) else _show(a[1])
    if cmd == "F_GETFL":
        return Req("fcntl", fd, ("F_GETFL", None))
    if cmd == "F_SETFL" and len(a) >= 3:
        return Req("fcntl", fd, ("F_SETFL", "O_NONBLOCK" in _flags(a[2])))
    raise Unsupported(ev.line, f"fcntl {cmd}")


def _port(v: Any, ev: Event, path: str) -> int:
    """``...`` is packetdrill's default address; a sockaddr names its port with htons(N)."""
    if v is Ellipsis:
        return LOCAL_PORT
    if isinstance(v, dict) and isinstance(v.get("sin_port"), Call) and v["sin_port"].args:
        return _int(v["sin_port"].args[0], "sin_port", ev, path)
    raise Unsupported(ev.line, f"socket address {_show(v)} (use ...)")


# --------------------------------------------------------------------------- stacks


def fcntl(fd: Any, arg: tuple[str, int]) -> Result:
    """``fcntl(F_GETFL)`` / ``fcntl(F_SETFL, O_NONBLOCK)`` on a runner's descriptor (its ``nonblock``
    flag): the same on both stacks, since the kernel runner keeps its own blocking model too."""
    cmd, v = arg
    if cmd == "F_GETFL":
        return Result(O_RDWR | (O_NONBLOCK if fd.nonblock else 0))
    fd.nonblock = bool(v)
    return Result(0)


class Stack:
    """What a runner provides: a clock, a wire and sockets. Times are seconds from the script's start.

    Packets the host sends go to :attr:`out` as ``(time, bytes)`` (TCP/IPv4 only).
    """

    name = "stack"

    def __init__(self) -> None:
        self.out: deque[tuple[float, bytes]] = deque()
        self.pending: list[Pending] = []

    def now(self) -> float:
        raise NotImplementedError

    def advance_to(self, t: float) -> None:
        """Let time pass until ``t`` (nothing if it has passed), capturing and finishing calls."""
        raise NotImplementedError

    def wait_packet(self, deadline: float) -> tuple[float, bytes] | None:
        """The next packet sent, waiting until ``deadline`` at most."""
        raise NotImplementedError

    def drain(self) -> None:
        """Capture what has been sent already (without letting time pass)."""

    def inject(self, data: bytes) -> None:
        raise NotImplementedError

    def call(self, req: Req) -> Result | Pending:
        raise NotImplementedError

    def set_sysctl(self, name: str, value: str, line: int) -> None:
        raise NotImplementedError

    def counters(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        """Release what the stack holds."""


# --------------------------------------------------------------------------- the verdict


@dataclass(slots=True)
class Observation:
    """One thing a stack did, in a form both stacks can be compared on."""

    t: float
    line: int
    text: str          # the packet (relative numbers) or ``call = result``
    key: str           # ``text`` without what differs between clocks (TS val)

    def to_json(self) -> dict[str, Any]:
        return {"t": round(self.t, 6), "line": self.line, "what": self.text}


@dataclass(slots=True)
class Verdict:
    """PASS, FAIL or UNSUPPORTED for one script on one stack."""

    script: str
    stack: str
    verdict: str
    line: int | None = None
    message: str = ""
    expected: str | None = None
    actual: str | None = None
    seen: list[Observation] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"

    def summary(self) -> str:
        if self.verdict == "PASS":
            return "PASS"
        s = f"{self.verdict} line {self.line}: {self.message}" if self.line else f"{self.verdict}: {self.message}"
        if self.expected is not None:
            s += f"\n    expected: {self.expected}\n    actual:   {self.actual}"
        return s

    def to_json(self) -> dict[str, Any]:
        return {"script": self.script, "stack": self.stack, "verdict": self.verdict, "line": self.line,
                "message": self.message, "expected": self.expected, "actual": self.actual,
                "counters": self.counters, "seen": [o.to_json() for o in self.seen]}


class Fail(Exception):  # noqa: N818 - a verdict
    def __init__(self, line: int, message: str, expected: str | None = None, actual: str | None = None) -> None:
        super().__init__(message)
        self.line, self.message, self.expected, self.actual = line, message, expected, actual


# --------------------------------------------------------------------------- playing


def check(script: Script) -> list[Req | None]:
    """Validate every line before anything runs: a request per syscall line (None for others)."""
    port = script.bind_port or LOCAL_PORT
    return [request(ev, script.path, port) if isinstance(ev.what, Syscall) else None for ev in script.events]


class Player:
    """One run of one script on one stack."""

    def __init__(self, script: Script, stack: Stack, tolerance_us: int | None = None,
                 keep_going: bool = False) -> None:
        self.script = script
        self.keep_going = keep_going           # on a FAIL, note it and play the rest
        self.failed: Fail | None = None
        self.stack = stack
        tol = tolerance_us if tolerance_us is not None else script.tolerance_usecs
        self.tol = (tol if tol is not None else TOLERANCE_US) / 1e6
        self.isn: dict[int, int] = {}          # local port -> the host's ISN there
        self.cur = (script.bind_port or LOCAL_PORT, REMOTE_PORT)   # (local, remote) port of injected packets
        self.ts_shift: int | None = None       # host TSval - script TSval, from the first > TS
        self.seen: list[Observation] = []
        self.waiting: list[tuple[Event, Pending, float | None, float | None]] = []
        self.late = 0.0                        # lateness of the last action (kernel: CPU load)

    def run(self) -> Verdict:
        reqs = check(self.script)
        v = Verdict(self.script.path, self.stack.name, "PASS")
        before = self.stack.counters()
        try:
            self._play(reqs)
            if self.failed is not None:
                raise self.failed
        except Fail as f:
            v.verdict, v.line, v.message, v.expected, v.actual = "FAIL", f.line, f.message, f.expected, f.actual
        except Unsupported as u:
            v.verdict, v.line, v.message = "UNSUPPORTED", u.line, u.what
        after = self.stack.counters()
        v.counters = {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)}
        v.seen = self.seen
        return v

    # ------------------------------------------------------------------ the loop

    def _play(self, reqs: list[Req | None]) -> None:
        st = self.stack
        base = 0.0
        last = 0
        for ev, req in zip(self.script.events, reqs, strict=True):
            last = ev.line
            t, t_end = self._when(ev, base)
            try:
                base = self._event(ev, req, t, t_end, base)
            except Fail as f:
                self._failed(f)
                base = t if t is not None else st.now()
        st.drain()
        self._finished()
        self._unexpected(last, "after the last line")
        for ev, _p, _s, _e in self.waiting:
            self._failed(Fail(ev.line, "the call did not return by the end of the script",
                              ev.text.split(None, 1)[-1], "still blocked"))

    def _failed(self, f: Fail) -> None:
        """A FAIL ends the run, or with keep_going is noted (the first one is the verdict)."""
        if not self.keep_going:
            raise f
        if self.failed is None:
            self.failed = f

    def _event(self, ev: Event, req: Req | None, t: float | None, t_end: float | None, base: float) -> float:
        """Play one line; the time the next relative line counts from."""
        st = self.stack
        what = ev.what
        if isinstance(what, Packet) and what.direction == ">":
            base = self._expect(ev, what, t, t_end)
        else:
            if t is not None:
                st.advance_to(t)
            self._finished()
            self._unexpected(ev.line, "before this line")
            if isinstance(what, Packet):
                self._inject(ev, what)
            elif isinstance(what, Command):
                for name, value in what.sysctls:
                    st.set_sysctl(name, value, ev.line)
            else:
                assert req is not None
                self._syscall(ev, req, t, t_end)
            if t is not None:
                # How late a real clock got here, measured once the action is done (a loaded
                # machine may deschedule us between waking and injecting): the host's answer
                # may be that late too.
                self.late = max(0.0, st.now() - t)
            base = t if t is not None else st.now()
        self._finished()
        return base

    def _when(self, ev: Event, base: float) -> tuple[float | None, float | None]:
        tm = ev.time
        if tm.kind == "any":
            return None, None
        t = tm.start if tm.kind == "abs" else base + tm.start
        end = None
        if tm.end is not None:
            end = t + tm.end if tm.end_rel else (tm.end if tm.kind == "abs" else base + tm.end)
        return t, end

    # ------------------------------------------------------------------ packets

    def _expect(self, ev: Event, pkt: Packet, t: float | None, t_end: float | None) -> float:
        st = self.stack
        deadline = (t_end if t_end is not None else t) + self.tol if t is not None else st.now() + ANY_WAIT_S
        got = st.wait_packet(deadline)
        self._finished()
        want = format_expected(pkt)
        if got is None:
            raise Fail(ev.line, "expected packet was not sent", f"{want} at {t:.3f} s" if t is not None else want,
                       f"nothing by {deadline:.3f} s")
        t_live, data = got
        w = read(data)
        assert w is not None
        text = self._observe(t_live, ev.line, w, pkt)
        bad = self._compare(w, pkt)
        if bad:
            raise Fail(ev.line, f"{bad} differs", want, f"{text} at {t_live:.3f} s")
        if t is not None:
            hi = (t_end if t_end is not None else t) + self.tol + self.late
            if not t - self.tol <= t_live <= hi:
                span = f"{t:.6f}" + (f"...{t_end:.6f}" if t_end is not None else "")
                raise Fail(ev.line, f"sent at the wrong time (tolerance {self.tol * 1e3:g} ms)",
                           f"{want} at {span} s", f"{text} at {t_live:.6f} s")
        return t_live

    def _observe(self, t: float, line: int, w: Wire, pkt: Packet | None) -> str:
        """Learn the ISN and TS shift from ``w``; record and return it in relative numbers."""
        seg = w.seg
        if seg.flags & SYN:
            self.isn[seg.sport] = (seg.seq - (pkt.seq if pkt is not None else 0)) & M32
            self.cur = (seg.sport, seg.dport)
        # The TS shift is learned from the first > TS, and again from each SYN: packetdrill keeps
        # it per socket, and a new incarnation's clock has moved on by the time it starts.
        if pkt is not None and (self.ts_shift is None or seg.flags & SYN) and pkt.options:
            live = next((o for o in w.options if o.kind == "TS"), None)
            mine = next((o for o in pkt.options if o.kind == "TS"), None)
            if live is not None and mine is not None:
                self.ts_shift = (live.values[0] - mine.values[0]) & M32
        isn = self.isn.get(seg.sport, 0)
        rel = (seg.seq - isn) & M32
        ack = seg.ack if seg.flags & ACK else None
        opts = w.options
        shown = [o if o.kind != "TS" or self.ts_shift is None
                 else type(o)("TS", ((o.values[0] - self.ts_shift) & M32, o.values[1])) for o in opts]
        text = format_packet(">", flag_letters(seg.flags), rel, len(seg.payload), ack, seg.win, shown)
        key_opts = [o if o.kind != "TS" else type(o)("TS", (0, o.values[1])) for o in opts]
        # Windows of SYNs are compared; later ones scale with wscale, which differs already.
        win = seg.win if seg.flags & SYN else None
        key = format_packet(">", flag_letters(seg.flags), rel, len(seg.payload), ack, win, key_opts)
        self.seen.append(Observation(t, line, text, key.replace("TS val 0 ", "TS ")))
        return text

    def _compare(self, w: Wire, pkt: Packet) -> str:
        seg = w.seg
        if set(flag_letters(seg.flags)) != set(pkt.flags):
            return "flags"
        isn = self.isn.get(seg.sport, 0)
        if (seg.seq - isn) & M32 != pkt.seq & M32:
            return "sequence number"
        if len(seg.payload) != pkt.length:
            return "length"
        if pkt.ack is not None and seg.ack != pkt.ack & M32:
            return "ack number"
        if pkt.win is not None and seg.win != pkt.win:
            return "window"
        if pkt.any_options:
            return ""
        want = pkt.options or []
        if len(want) != len(w.options):
            return "TCP options"
        for a, b in zip(want, w.options, strict=True):
            if a.kind != b.kind:
                return "TCP options"
            if a.kind == "TS":
                if a.values[1] != b.values[1]:
                    return "TS ecr"
            elif a.values != b.values:
                return f"{a.kind} option"
        return ""

    def _inject(self, ev: Event, pkt: Packet) -> None:
        lport, rport = self.cur
        self.stack.inject(build(pkt, lport, rport, self.isn.get(lport, 0), self.ts_shift or 0))

    def _unexpected(self, line: int, where: str) -> None:
        st = self.stack
        st.drain()
        while st.out:
            t, data = st.out.popleft()
            w = read(data)
            assert w is not None
            text = self._observe(t, line, w, None)
            self._failed(Fail(line, f"the host sent a packet the script does not expect ({where})",
                              "no packet", f"{text} at {t:.6f} s"))

    # ------------------------------------------------------------------ system calls

    def _syscall(self, ev: Event, req: Req, t: float | None, t_end: float | None) -> None:
        if req.name == "bind":
            self.cur = (req.arg, REMOTE_PORT)
        r = self.stack.call(req)
        if isinstance(r, Pending):
            self.waiting.append((ev, r, t, t_end))
            return
        self._returned(ev, r, self.stack.now())

    def _finished(self) -> None:
        for item in list(self.waiting):
            ev, p, t, t_end = item
            if p.result is not None:
                self.waiting.remove(item)
                self._returned(ev, p.result, p.t)
                if t_end is not None and t is not None and not t - self.tol <= p.t <= t_end + self.tol:
                    raise Fail(ev.line, f"returned at the wrong time (tolerance {self.tol * 1e3:g} ms)",
                               f"return within {t:.6f}...{t_end:.6f} s", f"returned at {p.t:.6f} s")

    def _returned(self, ev: Event, r: Result, t: float) -> None:
        sc = ev.what
        assert isinstance(sc, Syscall)
        got = f"{r.ret}" + (f" {r.errno}" if r.errno else "")
        want = "..." if sc.result is None else f"{sc.result}" + (f" {sc.errno}" if sc.errno else "")
        m = re.match(r"\S+\s+(.*\))\s*=", ev.text)  # the call as written, without time and result
        call = m.group(1) if m else sc.name
        if r.value is not None:
            got += f" value {r.value}"
        self.seen.append(Observation(t, ev.line, f"{call} = {got}", f"{sc.name} = {got}"))
        ok = sc.result is None or (r.ret == sc.result and (sc.errno is None or r.errno == sc.errno))
        if ok and sc.name == "getsockopt" and r.value is not None:
            want_v = ev_value(ev)
            ok = want_v is None or want_v == r.value
            want += f" value {want_v}"
        if not ok:
            raise Fail(ev.line, f"{sc.name}() returned something else", f"{call} = {want}", f"{call} = {got}")


def ev_value(ev: Event) -> Any:
    sc = ev.what
    assert isinstance(sc, Syscall)
    v = sc.args[3]
    v = v[0] if isinstance(v, list) and v else v
    return v.name if isinstance(v, Ident) else v


def play(script: Script, stack: Stack, tolerance_us: int | None = None, keep_going: bool = False) -> Verdict:
    """Run ``script`` on ``stack`` (closed afterwards) and return the verdict. ``keep_going``: a FAIL
    is noted and the rest is played, so that everything the stack does is seen (the verdict is the
    first FAIL)."""
    try:
        return Player(script, stack, tolerance_us, keep_going).run()
    finally:
        stack.close()
