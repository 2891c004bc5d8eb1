"""Read a packetdrill-syntax script into events.

Supported: option lines (``--tolerance_usecs=N``), absolute (``0.1``), relative
(``+.1``) and any (``*``) times and windows (``0.1...0.2``, ``0.1~0.2``); system
calls (``socket(..., SOCK_STREAM, IPPROTO_TCP) = 3``); packets
(``< S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>``); backquoted
``sysctl -q net.ipv4.NAME=VALUE`` and ``defaults.sh`` commands; ``//`` and
``/* */`` comments.

Two kinds of trouble: :class:`ScriptError` for text that is not packetdrill
syntax (the CLI prints one line and exits 2), :class:`Unsupported` for valid
packetdrill this project cannot run (``%{ }%`` Python blocks, other shell
commands, options such as ``md5``); the verdict then is UNSUPPORTED.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timewait.errors import UsageError

FLAG_LETTERS = "FSRP.EWU"


class ScriptError(UsageError):
    """A line that is not packetdrill syntax: ``FILE:LINE: what is wrong; expected ...``."""


class Unsupported(Exception):  # noqa: N818 - a verdict, not an error
    """Valid packetdrill that this project cannot run; ``line`` is the script's line."""

    def __init__(self, line: int, what: str) -> None:
        super().__init__(f"line {line}: {what}")
        self.line = line
        self.what = what


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Ident:
    """A bare name in a system call: ``SOCK_STREAM``, ``ECONNREFUSED``."""

    name: str


@dataclass(frozen=True, slots=True)
class Call:
    """A function in an argument: ``htons(8080)``, ``inet_addr("192.0.2.1")``."""

    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Flags joined with ``|``: ``O_RDWR|O_NONBLOCK``."""

    terms: tuple[Any, ...]


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Time:
    """When an event happens: ``kind`` is ``abs``, ``rel`` (to the previous event) or ``any``."""

    kind: str
    start: float = 0.0
    end: float | None = None          # a window's end (same kind as start)
    end_rel: bool = False             # ``0.1...+0.2``: the end counts from the start


@dataclass(frozen=True, slots=True)
class TcpOption:
    """One TCP option of a packet line (``mss 1000``, ``nop``, ``TS val 1 ecr 0``)."""

    kind: str                         # mss, wscale, sackOK, nop, eol, TS, sack
    values: tuple[int, ...] = ()


@dataclass(slots=True)
class Packet:
    """A ``<`` (inject) or ``>`` (expect) line."""

    direction: str                    # "<" or ">"
    flags: str                        # letters as written, e.g. "S.", "F.", "R"
    seq: int
    end: int
    length: int
    ack: int | None = None
    win: int | None = None
    options: list[TcpOption] | None = None   # None: none written; see any_options
    any_options: bool = False                # ``<...>``: whatever the stack sends


@dataclass(slots=True)
class Syscall:
    """``name(args) = result [ERRNO (text)]``."""

    name: str
    args: list[Any]
    result: int | None                # None: ``= ...`` (any)
    errno: str | None = None


@dataclass(slots=True)
class Command:
    """A backquoted shell command: only sysctls (and ``defaults.sh``) are understood."""

    text: str
    sysctls: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # foreign commands left out (skip_foreign)


@dataclass(slots=True)
class Event:
    line: int
    time: Time
    what: Packet | Syscall | Command
    text: str                          # the line as written, for reports


@dataclass(slots=True)
class Script:
    path: str
    events: list[Event]
    tolerance_usecs: int | None = None   # from ``--tolerance_usecs=N`` in the script
    bind_port: int | None = None         # from ``--bind_port=N``: what ``bind(fd, ..., ...)`` binds


# packetdrill's gtests/net/common/defaults.sh, the settings the engine has a knob for.
DEFAULTS_SH = [
    ("net.ipv4.tcp_rmem", "4096 540000 15728640"),  # its window scale: 8 (WIN-2)
    ("net.ipv4.tcp_timestamps", "1"),
    ("net.ipv4.tcp_syn_retries", "5"),
    ("net.ipv4.tcp_synack_retries", "5"),
    ("net.ipv4.tcp_sack", "1"),
    ("net.ipv4.tcp_window_scaling", "1"),
]

# tcp_ts_tick_usecs fixes the peer's TS clock for packetdrill's TSval checks; TS val is not
# compared here (the kernel adds a random per-4-tuple offset), so the option changes nothing.
# tolerance_percent widens packetdrill's tolerance for long waits; the fixed tolerance (or
# --tolerance) is kept here. bind_port sets the port ``bind(fd, ..., ...)`` binds.
_OPTIONS_OK = {"tolerance_usecs", "ip_version", "tcp_ts_tick_usecs", "tolerance_percent", "bind_port"}


# --------------------------------------------------------------------------- reading


def parse_file(path: str | Path, skip_foreign: bool = False) -> Script:
    """Parse the script at ``path`` (ScriptError if it cannot be read or is malformed)."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ScriptError(f"{p}: cannot read the script ({getattr(e, 'strerror', None) or e})") from None
    return parse_text(text, str(p), skip_foreign)


def parse_text(text: str, path: str = "<script>", skip_foreign: bool = False) -> Script:
    """Parse script text; errors name ``path`` and the line.

    ``skip_foreign``: shell commands other than sysctl, and sysctls outside Linux's ``net.ipv4``
    and ``net.core`` (a FreeBSD suite's ``sysctl -w net.inet.*``, ``sockstat``, ``tcpdrop``), are
    left out instead of making the script UNSUPPORTED."""
    script = Script(path, [])
    for line, stmt in _statements(text, path):
        err = _Ctx(path, line)
        if stmt.startswith("--"):
            _option(script, stmt, err)
            continue
        m = _TIME_RE.match(stmt)
        if m is None:
            if stmt.startswith("`"):
                t, rest = Time("rel", 0.0), stmt
            else:
                raise err.bad(f"{stmt.split()[0]!r} does not start an event",
                              "a time (0.1, +0.1, *) then a system call, a packet (< or >) or a `command`")
        else:
            t, rest = _time(m, err), stmt[m.end():].strip()
        if not rest:
            raise err.bad("a time and nothing after it", "a system call, a packet (< or >) or a `command`")
        what: Packet | Syscall | Command
        if rest[0] in "<>":
            what = _packet(rest, err)
        elif rest[0] == "`":
            what = _command(rest, err, skip_foreign)
        elif re.match(r"[A-Za-z_]\w*\s*\(", rest):
            what = _syscall(rest, err)
        else:
            raise err.bad(f"{rest.split()[0]!r} after the time",
                          "a system call name(...), a packet (< or >) or a `command`")
        script.events.append(Event(line, t, what, stmt))
    return script


@dataclass(slots=True)
class _Ctx:
    path: str
    line: int

    def bad(self, what: str, expected: str) -> ScriptError:
        return ScriptError(f"{self.path}:{self.line}: {what}; expected {expected}")

    def unsupported(self, what: str) -> Unsupported:
        return Unsupported(self.line, what)


def _join_commands(lines: list[str]) -> list[str]:
    """A backquoted command may span lines (packetdrill allows it): join it onto its first line,
    leaving the lines it took empty so that line numbers stay the file's."""
    out = list(lines)
    i = 0
    while i < len(out):
        code = out[i].split("//", 1)[0] if "`" not in out[i].split("//", 1)[0] else out[i]
        if code.count("`") % 2 == 1:
            j = i + 1
            while j < len(out) and out[j].count("`") % 2 == 0:
                j += 1
            if j < len(out):
                # A newline ends a shell command, as ``;`` does.
                out[i] = " ; ".join([out[i], *out[i + 1:j + 1]])
                for k in range(i + 1, j + 1):
                    out[k] = ""
                i = j
        i += 1
    return out


def _statements(text: str, path: str) -> list[tuple[int, str]]:
    """Comments removed, ``%{ }%`` refused, lines joined while brackets are open."""
    out: list[tuple[int, str]] = []
    lines = _join_commands(text.splitlines())
    i = 0
    in_block = False
    pending = ""
    start = 0
    depth = 0
    while i < len(lines):
        raw = lines[i]
        i += 1
        s = ""
        j = 0
        while j < len(raw):
            if in_block:
                k = raw.find("*/", j)
                if k < 0:
                    j = len(raw)
                    break
                in_block = False
                j = k + 2
                continue
            ch = raw[j]
            if raw.startswith("/*", j):
                in_block = True
                j += 2
                continue
            if raw.startswith("//", j):
                break
            if raw.startswith("%{", j):
                raise Unsupported(i, "a %{ }% Python block (packetdrill's tcpi assertions)")
            if ch in "\"`":  # strings and commands may hold // or brackets
                k = raw.find(ch, j + 1)
                if k < 0:
                    raise ScriptError(f"{path}:{i}: unterminated {ch}; expected a closing {ch} on the same line")
                s += raw[j:k + 1]
                j = k + 1
                continue
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            s += ch
            j += 1
        s = s.strip()
        if not s:
            continue
        if not pending:
            start = i
        pending = f"{pending} {s}".strip()
        if depth <= 0:
            out.append((start, pending))
            pending = ""
            depth = 0
    if in_block:
        raise ScriptError(f"{path}:{len(lines)}: unterminated /* comment; expected */")
    if pending:
        raise ScriptError(f"{path}:{start}: unbalanced brackets; expected every ( [ {{ closed")
    return out


def _option(script: Script, stmt: str, err: _Ctx) -> None:
    m = re.fullmatch(r"--([a-z_]+)(?:=(\S+))?", stmt)
    if m is None:
        raise err.bad(f"option {stmt!r}", "--NAME=VALUE, e.g. --tolerance_usecs=10000")
    name, value = m.groups()
    if name not in _OPTIONS_OK:
        raise err.unsupported(f"option --{name}")
    if name == "tolerance_usecs":
        if value is None or not value.isdigit():
            raise err.bad(f"--tolerance_usecs={value}", "a whole number of microseconds")
        script.tolerance_usecs = int(value)
    elif name in ("tcp_ts_tick_usecs", "tolerance_percent", "bind_port"):
        if value is None or not value.isdigit():
            raise err.bad(f"--{name}={value}", "a whole number")
        if name == "bind_port":
            if not 0 < int(value) < 65536:
                raise err.bad(f"--bind_port={value}", "a port 1..65535")
            script.bind_port = int(value)
    elif value != "ipv4":
        raise err.unsupported(f"--ip_version={value} (only ipv4)")


_NUM = r"(?:\d+\.?\d*|\.\d+)"
_TIME_RE = re.compile(rf"(\*|\+?{_NUM})(?:\s*(\.\.\.|~)\s*(\+?{_NUM}))?(?=\s|$)")


def _time(m: re.Match[str], err: _Ctx) -> Time:
    a, _, b = m.groups()
    if a == "*":
        if b is not None:
            raise err.bad("a window after *", "* alone (any time)")
        return Time("any")
    kind = "rel" if a.startswith("+") else "abs"
    start = float(a.lstrip("+"))
    if b is None:
        return Time(kind, start)
    end = float(b.lstrip("+"))
    end_rel = b.startswith("+")
    if not end_rel and kind == "abs" and end < start:
        raise err.bad(f"window {a}...{b} ends before it starts", "START...END with END >= START")
    return Time(kind, start, end, end_rel)


# --------------------------------------------------------------------------- packets

_SEQ_RE = re.compile(r"(\d+):(\d+)\((\d+)\)$")


def _packet(text: str, err: _Ctx) -> Packet:
    direction = text[0]
    body = text[1:].strip()
    opts_text = None
    lt = body.find("<")
    if lt >= 0:
        if not body.endswith(">"):
            raise err.bad("TCP options not closed", "<opt,opt,...> at the end of the packet line")
        opts_text = body[lt + 1:-1].strip()
        body = body[:lt].strip()
    words = body.split()
    if not words:
        raise err.bad("a packet with no flags", "flags such as S, S., ., P., F., R, R. then SEQ:END(LEN)")
    if words[0].startswith("["):
        raise err.unsupported("IP header fields in a packet line")
    flags = words[0]
    if flags == "-":  # packetdrill's "no flags at all"
        flags = ""
    elif any(c not in FLAG_LETTERS for c in flags):
        if flags in ("udp", "icmp") or flags.endswith(":"):
            raise err.unsupported(f"a {flags.rstrip(':')} packet (only TCP)")
        raise err.bad(f"flags {flags!r}", f"letters of {FLAG_LETTERS} (S SYN, . ACK, F FIN, R RST, P PSH)")
    if len(words) < 2:
        raise err.bad(f"no sequence numbers after {flags!r}", "SEQ:END(LEN), e.g. 1:1001(1000)")
    m = _SEQ_RE.match(words[1])
    if m is None:
        raise err.bad(f"sequence {words[1]!r}", "SEQ:END(LEN), e.g. 0:0(0) or 1:1001(1000)")
    seq, end, length = (int(g) for g in m.groups())
    if (end - seq) & 0xFFFFFFFF != length:
        raise err.bad(f"{words[1]}: END - SEQ is not LEN", f"{seq}:{(seq + length) & 0xFFFFFFFF}({length})")
    pkt = Packet(direction, flags, seq, end, length)
    i = 2
    while i < len(words):
        key = words[i]
        if key in ("ack", "win", "urg"):
            if i + 1 >= len(words) or not words[i + 1].isdigit():
                raise err.bad(f"{key} without a number", f"{key} N")
            n = int(words[i + 1])
            if key == "urg":
                raise err.unsupported("urgent pointers")
            if key == "ack":
                pkt.ack = n
            else:
                if n > 0xFFFF:
                    raise err.bad(f"win {n}", "a window of 0..65535 (the header field)")
                pkt.win = n
            i += 2
            continue
        if key in ("ecn", "ect0", "ect1", "ce", "noecn", "[ect0]", "[ce]"):
            raise err.unsupported(f"ECN codepoint {key!r}")
        raise err.bad(f"{key!r} in a packet line", "ack N, win N, then <options>")
    if "." in flags and pkt.ack is None and direction == "<":
        raise err.bad(f"flags {flags!r} carry ACK but no 'ack N' is given", "ack N after the sequence numbers")
    if opts_text is not None:
        if opts_text == "...":
            pkt.any_options = True
        else:
            pkt.options = [_tcp_option(o.strip(), err) for o in opts_text.split(",")]
    return pkt


def _tcp_option(text: str, err: _Ctx) -> TcpOption:
    w = text.split()
    if not w:
        raise err.bad("an empty TCP option", "mss N, sackOK, nop, eol, wscale N, TS val N ecr N, sack A:B")
    k = w[0]
    try:
        if k in ("nop", "eol", "sackOK") and len(w) == 1:
            return TcpOption(k)
        if k in ("mss", "wscale") and len(w) == 2:
            return TcpOption(k, (int(w[1]),))
        if k == "TS" and len(w) == 5 and w[1] == "val" and w[3] == "ecr":
            return TcpOption("TS", (int(w[2]), int(w[4])))
        if k == "sack" and len(w) >= 2:
            vals: list[int] = []
            for blk in w[1:]:
                a, _, b = blk.partition(":")
                vals += [int(a), int(b)]
            return TcpOption("sack", tuple(vals))
    except ValueError:
        pass
    if k in ("FO", "md5", "exp", "mpcapable", "dss", "tfo", "mptcp", "sack_permitted"):
        raise err.unsupported(f"TCP option {k!r}")
    raise err.bad(f"TCP option {text!r}", "mss N, sackOK, nop, eol, wscale N, TS val N ecr N or sack A:B")


# --------------------------------------------------------------------------- commands

_SYSCTL_RE = re.compile(r"sysctl\s+(?:-[qw]\s+)*(.+)")
_SET_SYSCTLS_RE = re.compile(r"\S*set_sysctls\.py\s+(.+)")


def _command(text: str, err: _Ctx, skip_foreign: bool = False) -> Command:
    if not (text.endswith("`") and len(text) > 1):
        raise err.bad("a command not closed", "`command` on one line")
    body = text[1:-1].strip()
    cmd = Command(body)
    for part in (p.split("#", 1)[0].strip() for p in body.split(";")):
        if not part:
            continue
        if part.endswith("defaults.sh"):
            cmd.sysctls += DEFAULTS_SH
            continue
        m = _SET_SYSCTLS_RE.fullmatch(part)
        if m is not None:  # packetdrill's set_sysctls.py /proc/sys/net/ipv4/NAME=VALUE ...
            for a in _shell_words(m.group(1)):
                path_, eq, value = a.partition("=")
                if not eq or not path_.startswith("/proc/sys/"):
                    raise err.bad(f"set_sysctls.py argument {a!r}", "/proc/sys/NAME=VALUE")
                cmd.sysctls.append((path_[len("/proc/sys/"):].replace("/", "."), value))
            continue
        m = _SYSCTL_RE.fullmatch(part)
        if m is None and skip_foreign:
            cmd.skipped.append(part)
            continue
        if m is None:
            raise err.unsupported(f"shell command `{part}` (only sysctl and defaults.sh are run)")
        for a in _shell_words(m.group(1)):
            name, eq, value = a.partition("=")
            if not eq or not re.fullmatch(r"[a-z0-9_.]+", name):
                raise err.bad(f"sysctl argument {a!r}", "NAME=VALUE, e.g. net.ipv4.tcp_rfc1337=1")
            if skip_foreign and not name.startswith(("net.ipv4.", "net.core.")):
                cmd.skipped.append(f"sysctl {a}")
                continue
            cmd.sysctls.append((name, value))
    return cmd


def _shell_words(text: str) -> list[str]:
    import shlex

    return shlex.split(text)


# --------------------------------------------------------------------------- system calls

_TOKEN_RE = re.compile(r'\s*(?:(\.\.\.)|("(?:[^"\\]|\\.)*")|(-?0x[0-9a-fA-F]+|-?\d+)|([A-Za-z_]\w*)|([\[\]{}(),=|]))')


def _syscall(text: str, err: _Ctx) -> Syscall:
    name = text[:text.index("(")].strip()
    toks, pos = _tokens(text, text.index("(") + 1, err)
    p = _Parser(toks, err)
    args = p.args(")")
    rest = text[pos:].strip()
    m = re.fullmatch(r"=\s*(\.\.\.|-?\d+|0x[0-9a-fA-F]+)(?:\s+([A-Z][A-Z0-9_]*))?(?:\s*\(.*\))?", rest)
    if m is None:
        raise err.bad(f"{name}(...) {rest!r}" if rest else f"{name}(...) with no result",
                      "= RESULT, e.g. = 0, = 3 or = -1 EINPROGRESS (Operation now in progress)")
    res = None if m.group(1) == "..." else int(m.group(1), 0)
    errno = m.group(2)
    if res == -1 and errno is None:
        raise err.bad(f"{name}(...) = -1 without an errno", "= -1 ENAME (text), e.g. = -1 EPIPE (Broken pipe)")
    return Syscall(name, args, res, errno)


def _tokens(text: str, pos: int, err: _Ctx) -> tuple[list[tuple[str, Any]], int]:
    """Tokens of the argument list up to its closing parenthesis; returns them and the end."""
    toks: list[tuple[str, Any]] = []
    depth = 1
    while depth:
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise err.bad(f"{text[pos:].strip()[:20]!r} in the arguments",
                          "numbers, names, \"strings\", [..], {..}, ... separated by commas")
        pos = m.end()
        ell, st, num, ident, punct = m.groups()
        if ell:
            toks.append(("...", Ellipsis))
        elif st:
            toks.append(("str", st[1:-1]))
        elif num:
            toks.append(("num", int(num, 0)))
        elif ident:
            toks.append(("id", ident))
        else:
            if punct in "([{":
                depth += 1
            elif punct in ")]}":
                depth -= 1
            toks.append((punct, punct))
    return toks, pos


class _Parser:
    def __init__(self, toks: list[tuple[str, Any]], err: _Ctx) -> None:
        self.toks = toks
        self.i = 0
        self.err = err

    def peek(self) -> str:
        return self.toks[self.i][0] if self.i < len(self.toks) else ""

    def take(self, kind: str) -> Any:
        if self.peek() != kind:
            got = self.peek() or "the end"
            raise self.err.bad(f"{got!r} in the arguments", f"{kind!r}")
        v = self.toks[self.i][1]
        self.i += 1
        return v

    def args(self, close: str) -> list[Any]:
        out: list[Any] = []
        if self.peek() == close:
            self.take(close)
            return out
        while True:
            out.append(self.field())
            if self.peek() == ",":
                self.take(",")
                continue
            self.take(close)
            return out

    def field(self) -> Any:
        # {name=value, ...} fields keep their names: ("=", name, value)
        if self.peek() == "id" and self.i + 1 < len(self.toks) and self.toks[self.i + 1][0] == "=":
            name = self.take("id")
            self.take("=")
            return ("=", name, self.expr())
        return self.expr()

    def expr(self) -> Any:
        terms = [self.term()]
        while self.peek() == "|":
            self.take("|")
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else Or(tuple(terms))

    def term(self) -> Any:
        k = self.peek()
        if k in ("num", "str", "..."):
            return self.take(k)
        if k == "id":
            name = self.take("id")
            if self.peek() == "(":
                self.take("(")
                return Call(name, tuple(self.args(")")))
            return Ident(name)
        if k == "[":
            self.take("[")
            return self.args("]")
        if k == "{":
            self.take("{")
            return {f[1]: f[2] for f in self.args("}") if isinstance(f, tuple)}
        raise self.err.bad(f"{k or 'the end'!r} in the arguments", "a number, a name, a \"string\", [..], {..} or ...")
