"""``timewait script``: packetdrill scripts on the simulator and on the kernel, judged alike."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from timewait.script.engine import Verdict, play
from timewait.script.parse import ScriptError, Unsupported, parse_text
from timewait.script.sim_runner import SimStack

SCRIPTS = Path(__file__).parent / "scripts"
CORPUS = sorted(SCRIPTS.glob("*.pkt"))


def tw(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    return subprocess.run([sys.executable, "-m", "timewait", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def kernel_missing() -> str | None:
    from kernel_support import lab_missing

    why = lab_missing()
    if why is None and not os.path.exists("/dev/net/tun"):
        why = "no /dev/net/tun (the kernel runner drives a TUN device)"
    return why


def on_kernel(text: str) -> Verdict:
    from timewait.script.kernel_runner import KernelStack

    why = kernel_missing()
    if why:
        pytest.skip(why)
    return play(parse_text(text, "inline.pkt"), KernelStack())


def on_sim(text: str) -> Verdict:
    return play(parse_text(text, "inline.pkt"), SimStack())


PASSIVE = """`sysctl -q net.ipv4.tcp_timestamps=0`
0    socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0   setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0   bind(3, ..., ...) = 0
+0   listen(3, 1) = 0
+0   < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
+0   > S. 0:0(0) ack 1 <...>
+.1  < . 1:1(0) ack 1 win 257
+0   accept(3, ..., ...) = 4
"""
# The ACK of our FIN carries ack 3 here, one too many: line 13 must fail.
WRONG = PASSIVE + """+.1  close(4) = 0
+0   > F. 1:1(0) ack 1
+.1  < F. 1:1(0) ack 2 win 257
+0   > . 2:2(0) ack 3
"""


# --------------------------------------------------------------------------- the corpus


def test_the_corpus_has_the_scripts_of_the_issue() -> None:
    names = {p.stem for p in CORPUS}
    assert {"close-passive-last-ack", "timewait-refin-reack", "timewait-rst-kills", "timewait-rfc1337-ignores-rst",
            "active-open-nonblocking-close", "connect-refused-rst", "linger-zero-rst", "syn-retransmit-linear",
            "timewait-syn-accepted", "timewait-old-syn-acked"} <= names


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_corpus_script_passes_on_the_simulator(path: Path) -> None:
    v = play(parse_text(path.read_text(), str(path)), SimStack())
    assert v.passed, v.summary()


@pytest.mark.kernel
@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_corpus_script_passes_on_the_kernel(path: Path) -> None:
    """It passes there, and every counter moves as on the simulator (item 7; CT-1..CT-9), but
    those the engine does not model (``NOT_MODELLED``)."""
    from timewait.script.cli import counter_diff

    v = on_kernel(path.read_text())
    assert v.passed, v.summary()
    sim = play(parse_text(path.read_text(), str(path)), SimStack())
    assert counter_diff(sim, v) == {}, "counters (simulator, kernel)"


# --------------------------------------------------------------------------- verdicts


def test_wrong_expectation_fails_naming_the_line_on_the_simulator() -> None:
    v = on_sim(WRONG)
    assert v.verdict == "FAIL" and v.line == 13 and "ack number" in v.message
    assert v.expected == "> . 2:2(0) ack 3" and v.actual is not None and v.actual.startswith("> . 2:2(0) ack 2")


@pytest.mark.kernel
def test_wrong_expectation_fails_naming_the_line_on_the_kernel() -> None:
    v = on_kernel(WRONG)
    assert v.verdict == "FAIL" and v.line == 13 and "ack number" in v.message, v.summary()
    assert v.actual is not None and v.actual.startswith("> . 2:2(0) ack 2")


def test_a_packet_the_script_does_not_expect_fails() -> None:
    # Our FIN goes out at close() but the script goes straight to an inbound packet.
    v = on_sim(PASSIVE + "+.1  close(4) = 0\n+.1  < . 1:1(0) ack 2 win 257\n")
    assert v.verdict == "FAIL" and v.line == 11 and "does not expect" in v.message
    assert v.actual is not None and v.actual.startswith("> F. 1:1(0) ack 1")


def test_an_expected_packet_that_never_comes_fails() -> None:
    v = on_sim(PASSIVE + "+.1  > F. 1:1(0) ack 1\n")
    assert v.verdict == "FAIL" and v.line == 10 and "not sent" in v.message


def test_timing_outside_the_tolerance_fails() -> None:
    # The SYN-ACK leaves at once, not 50 ms later.
    text = PASSIVE.replace("+0   > S. 0:0(0) ack 1 <...>", "+.05 > S. 0:0(0) ack 1 <...>")
    v = on_sim(text)
    assert v.verdict == "FAIL" and v.line == 7 and "wrong time" in v.message


def test_a_blocking_accept_returns_when_the_handshake_completes() -> None:
    text = """`sysctl -q net.ipv4.tcp_timestamps=0`
0    socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0   bind(3, ..., ...) = 0
+0   listen(3, 1) = 0
0...0.2 accept(3, ..., ...) = 4
0.1  < S 0:0(0) win 32792 <mss 1000,nop,wscale 7>
+0   > S. 0:0(0) ack 1 <...>
0.2  < . 1:1(0) ack 1 win 257
+.1  read(4, ..., 100) = -1 EAGAIN (Resource temporarily unavailable)
"""
    # read() on a blocking socket would block: make it non-blocking first.
    text = text.replace("+.1  read", "+.1  fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n+0   read")
    v = on_sim(text)
    assert v.passed, v.summary()
    accept = next(o for o in v.seen if o.text.startswith("accept"))
    assert accept.t == pytest.approx(0.2)


def test_syscall_results_are_checked() -> None:
    v = on_sim(PASSIVE + "+0   write(4, ..., 10) = -1 EPIPE (Broken pipe)\n")
    assert v.verdict == "FAIL" and v.line == 10 and v.actual and v.actual.endswith("= 10")


# --------------------------------------------------------------------------- bad and unsupported input


def test_python_block_is_unsupported_with_its_line() -> None:
    with pytest.raises(Unsupported) as e:
        parse_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n%{ assert tcpi_state == 1 }%\n")
    assert e.value.line == 2


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 bind(3, ..., ...) == 0\n", 2, "expected = RESULT"),
    ("0 < S 0:5(0) win 100\n", 1, "END - SEQ is not LEN"),
    ("0 < Q 0:0(0) win 100\n", 1, "flags 'Q'"),
    ("0 < . 1:1(0) win 100\n", 1, "no 'ack N'"),
    ("hello\n", 1, "does not start an event"),
    ("0 > S. 0:0(0) ack 1 <mss>\n", 1, "TCP option 'mss'"),
])
def test_malformed_lines_name_the_line(text: str, line: int, needle: str) -> None:
    with pytest.raises(ScriptError) as e:
        parse_text(text, "x.pkt")
    assert str(e.value).startswith(f"x.pkt:{line}: ") and needle in str(e.value)


def test_cli_malformed_script_is_one_line_and_exit_2(tmp_path: Path) -> None:
    p = tmp_path / "bad.pkt"
    p.write_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 listen(3 1) = 0\n")
    r = tw("script", str(p))
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.pkt:2:" in lines[0] and "expected" in lines[0], r.stderr


def test_cli_unsupported_and_fail_and_json(tmp_path: Path) -> None:
    (tmp_path / "py.pkt").write_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n%{\nprint(1)\n}%\n")
    (tmp_path / "cmd.pkt").write_text("0 `ip link set lo down`\n")
    (tmp_path / "wrong.pkt").write_text(WRONG)
    r = tw("script", str(tmp_path))
    assert r.returncode == 1, r.stderr
    assert f"UNSUPPORTED {tmp_path / 'cmd.pkt'}" in r.stdout and "shell command `ip link set lo down`" in r.stdout
    assert "line 2: a %{ }% Python block" in r.stdout
    assert "FAIL line 13: ack number differs" in r.stdout
    assert "expected: > . 2:2(0) ack 3" in r.stdout
    import json

    r = tw("script", "--json", str(SCRIPTS / "linger-zero-rst.pkt"))
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["passed"] and doc["scripts"][0]["sim"]["verdict"] == "PASS"


def test_unknown_syscall_and_sysctl_are_unsupported() -> None:
    v = on_sim("0 `sysctl -q net.ipv4.tcp_no_such_thing=1`\n")
    assert v.verdict == "UNSUPPORTED" and v.line == 1
    with pytest.raises(Unsupported):
        from timewait.script.engine import check

        check(parse_text("0 epoll_create(1) = 3\n"))


# --------------------------------------------------------------------------- both stacks


@pytest.mark.kernel
def test_diff_names_where_the_stacks_part_ways() -> None:
    if kernel_missing():
        pytest.skip(kernel_missing() or "")
    r = tw("script", "--diff", str(SCRIPTS / "linger-zero-rst.pkt"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "simulator PASS, kernel PASS" in r.stdout
    # Both pass with the same segments (WIN-1/WIN-2 made the SYN-ACKs equal), and since CT-4 the
    # counters agree too: a linger-0 close moves TcpEstabResets on both stacks.
    assert r.stdout.startswith("agree") and "first divergence" not in r.stdout
    assert "counters (simulator, kernel)" not in r.stdout


def test_counter_diff_names_counters_that_moved_differently_but_not_those_not_modelled() -> None:
    from timewait.script.cli import NOT_MODELLED, counter_diff

    sim = Verdict("x.pkt", "sim", "PASS", counters={"TcpEstabResets": 1, "TcpInSegs": 3})
    kernel = Verdict("x.pkt", "kernel", "PASS",
                     counters={"TcpInSegs": 3, "TcpExtTCPPureAcks": 2, **{n: 5 for n in NOT_MODELLED}})
    assert counter_diff(sim, kernel) == {"TcpEstabResets": (1, 0), "TcpExtTCPPureAcks": (0, 2)}


# --------------------------------------------------------------------------- rules and public suites


def test_LS_5_listener_drops_syn_fin_on_the_simulator() -> None:
    """The SYN+FIN at 0 gets nothing; the plain SYN at 0.1 s gets the first SYN-ACK; the SYN+FIN
    that TIME_WAIT hands over kills the record, so the FIN after it is reset."""
    v = on_sim((SCRIPTS / "ls-5-listener-drops-syn-fin.pkt").read_text())
    assert v.passed, v.summary()
    sent = [(round(o.t, 3), o.text.split(" win")[0]) for o in v.seen if o.text.startswith(">")]
    assert sent == [(0.1, "> S. 0:0(0) ack 1"), (0.3, "> F. 1:1(0) ack 1"), (0.4, "> . 2:2(0) ack 2"),
                    (0.6, "> R 2:2(0)")]


def _rule_ids(text: str) -> list[str]:
    import re

    return re.findall(r"^\| ([A-Z]+-[A-Z0-9]+) \|", text, re.M)


def test_every_rule_of_the_book_has_a_script_or_a_reason() -> None:
    """Each rule id of docs/linux-rules.md has a row in docs/scripts.md's rule table naming a
    corpus script that exists, or saying why a one-host script cannot show it."""
    docs = Path(__file__).parents[1] / "docs"
    rules = _rule_ids((docs / "linux-rules.md").read_text())
    assert len(rules) > 60
    rows = {}
    for line in (docs / "scripts.md").read_text().splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 3 and cells[0] in rules:
            rows[cells[0]] = cells
    missing = [r for r in rules if r not in rows]
    assert not missing, missing
    for rule, (_, scripts, why) in rows.items():
        names = [n.strip("` ") for n in scripts.split(",") if n.strip("` -")]
        if not names:
            assert len(why) > 20, f"{rule}: no script and no reason"
        for n in names:
            assert (SCRIPTS / f"{n}.pkt").exists(), f"{rule}: no tests/scripts/{n}.pkt"


def test_keep_going_plays_the_rest_after_a_fail() -> None:
    text = WRONG + "+.1  < F. 1:1(0) ack 2 win 257\n+0   > . 2:2(0) ack 2\n"
    v = play(parse_text(text, "inline.pkt"), SimStack(), keep_going=True)
    assert v.verdict == "FAIL" and v.line == 13 and "ack number" in v.message
    acks = [o for o in v.seen if o.text.startswith("> . 2:2(0) ack 2")]
    assert [o.line for o in acks] == [13, 15]
    assert play(parse_text(text, "inline.pkt"), SimStack()).seen[-1].line == 13  # stops at the FAIL


def test_foreign_commands_are_unsupported_unless_skipped() -> None:
    text = "0 `sysctl -w net.inet.tcp.insecure_rst=0`\n+0 `sockstat -4 | grep -c TIME_WAIT`\n" \
           "+0 `sysctl -w net.ipv4.tcp_rfc1337=1`\n"
    with pytest.raises(Unsupported) as e:
        parse_text(text, "x.pkt")
    assert e.value.line == 2  # the sysctl of line 1 is refused when it runs, the command when read
    s = parse_text(text, "x.pkt", skip_foreign=True)
    cmds = [e.what for e in s.events]
    assert [c.skipped for c in cmds] == [["sysctl net.inet.tcp.insecure_rst=0"], ["sockstat -4 | grep -c TIME_WAIT"], []]
    assert cmds[2].sysctls == [("net.ipv4.tcp_rfc1337", "1")]


def test_a_multi_line_command_with_set_sysctls_py() -> None:
    """packetdrill's tw_reuse scripts: one backquoted block over several lines, # comments."""
    s = parse_text("--tcp_ts_tick_usecs=1000\n--tolerance_percent=1\n--bind_port=57005\n`\n../../common/defaults.sh\n"
                   "../../../tcp/common/set_sysctls.py  /proc/sys/net/ipv4/tcp_tw_reuse=1 # global enable\n`\n"
                   "0 socket(..., SOCK_STREAM | SOCK_NONBLOCK, IPPROTO_TCP) = 3\n+0 bind(3, ..., ...) = 0\n", "x.pkt")
    cmd = s.events[0].what
    assert ("net.ipv4.tcp_tw_reuse", "1") in cmd.sysctls and ("net.ipv4.tcp_sack", "1") in cmd.sysctls
    from timewait.script.engine import check

    sock, bind = (r for r in check(s) if r is not None)
    assert sock.arg is True and bind.arg == 57005 and s.bind_port == 57005
