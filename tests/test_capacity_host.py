"""`timewait capacity --from-host`: this host's sysctls in, the answer for them out, judged by
the kernel itself (the count of connect()s a namespace with that port range really makes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from kernel_support import lab_missing
from timewait.capacity import port_count
from timewait.capacity.host import parse_reserved
from timewait.cli import main


def test_PS_2_port_count_every_port_but_of_a_3_port_range():
    # __inet_hash_connect wraps past high by an even `remaining`: the top port of an odd range
    # is reached from any start above low (kernel-measured, see the namespace test below).
    assert port_count(32768, 60999) == 28232
    assert port_count(1025, 65535) == 64511
    assert port_count(40000, 40002) == 2
    assert port_count(40000, 40001) == 2
    assert port_count(5, 5) == 1
    assert port_count(40000, 40009, frozenset({40003, 40009, 39999})) == 8


def test_reserved_ports_text():
    assert parse_reserved("") == frozenset()
    assert parse_reserved("8080,9000-9002\n") == frozenset({8080, 9000, 9001, 9002})


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def netns() -> Iterator[str]:
    why = lab_missing()
    if why:
        pytest.skip(f"kernel lab unavailable: {why}")
    name = f"tw-{os.getpid()}-cap"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _sysctl(ns: str, name: str, value: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{name}={value}"], check=True)


CONNECT_ALL = """
import socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 5000)); srv.listen(512)
held = []
while True:
    c = socket.socket()
    try:
        c.connect(("127.0.0.1", 5000))
    except OSError as e:
        ports = ",".join(str(s.getsockname()[1]) for s in held)
        print(len(held), e.errno, ports); sys.stdout.flush(); break
    held.append(c)
sys.stdin.readline()  # keep the sockets until told
"""


@pytest.mark.kernel
def test_from_host_in_a_namespace_matches_the_kernel_count(netns: str, capsys):
    _sysctl(netns, "net.ipv4.ip_local_port_range", "40000 40010")   # 11 ports, an odd count
    _sysctl(netns, "net.ipv4.ip_local_reserved_ports", "40004")
    rc, out, err = run_cli(["capacity", "--from-host", "--netns", netns, "--json"], capsys)
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["question"]["ports"] == "40000-40010"
    assert doc["question"]["port_count"] == 10
    assert doc["answer"]["exact"] == pytest.approx(10 / 60)
    assert "netns " + netns in doc["sources"]["--ports"]
    # The judge: the kernel in that namespace connects exactly that many times, then EADDRNOTAVAIL.
    p = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", CONNECT_ALL],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdin is not None
        n_text, errno, ports_text = p.stdout.readline().split()
        n, held = int(n_text), {int(x) for x in ports_text.split(",")}
        assert int(errno) == 99 and len(held) == n  # EADDRNOTAVAIL, each port once
        # PS-2: every usable port, or all but the top one. The walk covers `remaining` = 10 of
        # the 11 and wraps past 40010 by 10, so a search that starts at 40000 never reaches the
        # top; which start the last searches get depends on table_perturb, which the kernel
        # shares between namespaces (other tests move it). Seen in CI: 9 ports, 40010 unused.
        assert held == set(range(40000, 40011)) - {40004} or held == set(range(40000, 40010)) - {40004}, held
        # --dest counts what the namespace holds toward the listener now.
        rc, out, err = run_cli(["capacity", "--from-host", "--netns", netns, "--dest", "127.0.0.1:5000",
                                "--json"], capsys)
        assert rc == 0, err
        now = json.loads(out)["now"]
        assert now["details"] == {"ports": 10, "in_use": n} and now["value"] == 10 - n
        p.stdin.write("\n")
        p.stdin.flush()
    finally:
        # On success the child has been told to exit; on a failed assertion it still waits for
        # stdin, and a plain wait would hide that assertion behind a timeout.
        if p.poll() is None:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


@pytest.mark.parametrize("argv", [
    ["capacity", "--netns", "x"],
    ["capacity", "--from-host", "--netns", "tw-no-such-namespace"],
    ["capacity", "--dest", "1.2.3.4"],
    ["capacity", "--dest", "nohost:80"],
    ["capacity", "--dest", "1.2.3.4:0"],
], ids=["netns-alone", "netns-unknown", "dest-no-port", "dest-not-addr", "dest-port-0"])
def test_from_host_bad_input_is_one_line(argv, capsys):
    if "tw-no-such-namespace" in argv and lab_missing():
        pytest.skip("needs ip netns")
    rc, out, err = run_cli(argv, capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err


def test_from_host_reads_this_host(capsys):
    if not os.path.exists("/proc/sys/net/ipv4/ip_local_port_range"):
        pytest.skip("not Linux")
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo, hi = (int(x) for x in f.read().split())
    rc, out, err = run_cli(["capacity", "--from-host", "--ports", "1025-65535", "--json"], capsys)
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["question"]["port_count"] == 64511  # the option given wins over the host
    assert "given; the host has" in doc["sources"]["--ports"] and f"{lo} {hi}" in doc["sources"]["--ports"]

