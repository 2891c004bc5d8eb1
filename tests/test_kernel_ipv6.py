"""The kernel lab on IPv6 (issue 16): ULA addresses in namespaces, the twins under
``--set family=ipv6``, their IPv6 pcaps, and ``inspect`` filters on IPv6 and mixed sockets.

Needs root and network namespaces (skipped with the reason otherwise); every namespace
is named tw-<pid>-* and removed. Each test takes a few seconds.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time

import pytest

from kernel_support import kernel_lab, lab_missing
from timewait.tcp.segment import ula_of

pytestmark = pytest.mark.kernel

C1, C2 = ula_of("10.211.55.5"), ula_of("10.211.55.10")  # fd00::10:211:55:5, fd00::10:211:55:10


@pytest.fixture
def lab():
    with kernel_lab() as k:
        yield k


def _root_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def _host_sysctl(name: str) -> str:
    with open("/proc/sys/" + name.replace(".", "/")) as f:
        return f.read().strip()


def test_ipv6_addresses_are_usable_at_once_and_everything_goes_with_the_lab():
    """nodad: a ULA address is not tentative, so connect() works the moment the link is up; a
    router's IPv6 forwarding is its namespace's, not the host's; close() leaves nothing."""
    reason = lab_missing()
    if reason:
        pytest.skip(reason)
    from pyroute2 import netns

    from timewait.kernel.topology import KernelLab

    host_fwd = _host_sysctl("net.ipv6.conf.all.forwarding")
    with KernelLab() as k:
        k.add_host("c1")
        k.add_host("r", forward=True, v6=True)
        k.link("c1", ["10.211.55.5/24", f"{C1}/112"], "r", ["10.211.55.10/24", f"{C2}/112"])
        names = set(k.hosts.values())
        veths = list(k.veths)
        addrs = subprocess.run(["ip", "-n", k.ns("c1"), "-6", "addr", "show", "dev", "eth0"],
                               capture_output=True, text=True, check=True).stdout
        [ula] = [ln for ln in addrs.splitlines() if f"inet6 {C1}/112" in ln]
        assert "tentative" not in ula and "nodad" in ula  # (the link-local one may still be)
        assert k.read_sysctl("r", "net.ipv6.conf.all.forwarding") == "1"
        assert _host_sysctl("net.ipv6.conf.all.forwarding") == host_fwd
        srv = k.socket("r", socket.AF_INET6)
        srv.bind((C2, 8888))
        srv.listen()
        cli = k.socket("c1", socket.AF_INET6)
        cli.settimeout(2)
        t = time.monotonic()
        cli.connect((C2, 8888))  # DAD would hold the source address tentative for ~1-2 s
        assert time.monotonic() - t < 0.5
        conn, peer = srv.accept()
        assert peer[0] == C1
        k.route("c1", C2)  # an IPv6 default route via the peer
        routes = subprocess.run(["ip", "-n", k.ns("c1"), "-6", "route"], capture_output=True, text=True).stdout
        assert f"default via {C2} dev eth0" in routes
        conn.close()
    assert not names & set(netns.listnetns())
    assert not set(veths) & set(_root_links())
    assert _host_sysctl("net.ipv6.conf.all.forwarding") == host_fwd


def test_net_ipv6_sysctls_are_allowed_per_namespace_and_written_there_only(lab):
    from timewait.errors import UsageError
    from timewait.kernel.sysctls import confine

    ok = confine([("c1", "net.ipv6.conf.eth0.accept_dad", "0"), ("c1", "net.ipv6.neigh.eth0.retrans_time_ms", "500"),
                  ("c1", "net.ipv6.conf.all.forwarding", "1")])
    assert [n for _h, n, _v in ok] == ["net.ipv6.conf.eth0.accept_dad", "net.ipv6.neigh.eth0.retrans_time_ms",
                                       "net.ipv6.conf.all.forwarding"]
    with pytest.raises(UsageError, match="not a per-network-namespace setting"):
        confine([("c1", "net.ipv6.neigh.default.gc_thresh1", "64")])  # the neighbour table's defaults are global
    host = _host_sysctl("net.ipv6.conf.all.forwarding")
    lab.add_host("c1")
    lab.add_host("c2")
    lab.link("c1", f"{C1}/112", "c2", f"{C2}/112")
    for _h, name, value in ok:
        lab.sysctl("c1", name, value)
    assert lab.read_sysctl("c1", "net.ipv6.neigh.eth0.retrans_time_ms") == "500"
    assert lab.read_sysctl("c2", "net.ipv6.neigh.eth0.retrans_time_ms") != "500"
    assert _host_sysctl("net.ipv6.conf.all.forwarding") == host


# ---------------------------------------------------------------- the twins on IPv6

def _kernel_run(name: str, *argv: str, timeout: float = 60) -> dict:
    reason = lab_missing()
    if reason:
        pytest.skip(reason)
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    out = subprocess.run([sys.executable, "-m", "timewait", "kernel", "run", name, "--json", *argv],
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    return json.loads(out.stdout)


def _failed(doc: dict) -> list[str]:
    return [f"{c['name']}: {c['detail']}" for c in doc["checks"] if not c["passed"]]


def _tshark(path, *fields: str) -> list[list[str]]:
    """tshark's fields of every frame (checksums not verified: on a veth the sender's are left
    for an offload that never runs, as with any capture taken at the sending host)."""
    r = subprocess.run(["tshark", "-r", str(path), "-n", "-T", "fields", *(a for f in fields for a in ("-e", f))],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not [ln for ln in r.stderr.splitlines() if "root" not in ln], r.stderr  # no "cut short", no "damaged"
    return [ln.split("\t") for ln in r.stdout.splitlines()]


def _assert_ipv6_pcap(path, hosts: set[str], n_min: int) -> list[list[str]]:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    rows = _tshark(path, "eth.type", "ipv6.src", "ipv6.dst", "ipv6.nxt", "tcp.srcport", "_ws.malformed",
                   "_ws.expert.severity")
    assert len(rows) >= n_min
    for etype, src, dst, nxt, sport, malformed, severity in rows:
        assert etype == "0x86dd" and nxt == "6" and sport, (etype, nxt)  # IPv6 carrying TCP, decoded
        assert {src, dst} == hosts
        assert not malformed
        # 2097152 chat, 4194304 note (connection set up, closed, retransmission...): no warning or error
        assert all(int(s) <= 4194304 for s in severity.split(",") if s), severity
    return rows


def test_lost_last_ack_on_ipv6_passes_every_check_and_writes_an_ipv6_pcap(tmp_path):
    """S4 on IPv6: the ip6 nftables rule drops the last ACK, the FIN comes again from LAST_ACK,
    TIME_WAIT re-ACKs it and restarts its timer; ~7 s."""
    pcap = tmp_path / "lla6.pcap"
    doc = _kernel_run("lost-last-ack", "--set", "family=ipv6", "--set", "wait=3", "--pcap", str(pcap))
    assert not _failed(doc)
    assert doc["params"]["family"] == "ipv6"
    m = doc["metrics"]
    assert m["last_ack_drops"] == 1 and m["path"] == "wait"
    assert 0.19 < m["fin_resent_after_s"] < 0.5  # TCP_RTO_MIN 200 ms, then the timer wheel
    names = [c["name"] for c in doc["checks"]]
    assert f"while TIME_WAIT holds [{C1}]:60494, connect() from it fails with EADDRNOTAVAIL" in names
    assert doc["hosts"]["c1"]["states"] == {"TIME_WAIT": 1}
    rows = _assert_ipv6_pcap(pcap, {C1, C2}, 9)
    assert sum(1 for r in rows if r[4] == "8888") >= 3  # the server's SYN-ACK, FIN and its repeat


def test_port_exhaustion_on_ipv6_runs_out_of_the_same_ports(tmp_path):
    pcap = tmp_path / "pe6.pcap"
    doc = _kernel_run("port-exhaustion", "--set", "family=ipv6", "--set", "duration=2", "--pcap", str(pcap))
    assert not _failed(doc)
    m = doc["metrics"]
    assert m["succeeded"] == 1000 and set(m["failed"]) == {"EADDRNOTAVAIL"} and m["time_wait_peak"] == 1000
    assert doc["hosts"]["c1"]["states"] == {"TIME_WAIT": 1000}
    rows = _assert_ipv6_pcap(pcap, {ula_of("10.0.0.1"), ula_of("10.0.0.2")}, 9000)
    syns = {r[4] for r in rows if r[1] == ula_of("10.0.0.1")}
    assert len(syns) == 1000 and min(map(int, syns)) == 40000 and max(map(int, syns)) == 40999


def test_simultaneous_close_on_ipv6_puts_both_ends_in_time_wait():
    doc = _kernel_run("simultaneous-close", "--set", "family=ipv6", "--set", "wait=1", "--set", "close_at=1.2")
    assert not _failed(doc)
    assert doc["metrics"]["time_wait_hosts"] == ["c1", "c2"]
    assert doc["metrics"]["fins_dropped"] == {"c1": 1, "c2": 1}


@pytest.mark.parametrize("argv", [
    ["kernel", "run", "ttl", "--set", "family=ipv6"],     # its hops age IPv4 TTLs
    ["kernel", "run", "nat", "--set", "family=ipv6"],
    ["kernel", "compare", "delayed-duplicate", "--set", "family=ipv6"],
])
def test_a_twin_that_cannot_run_on_ipv6_says_so_in_one_line(argv):
    out = subprocess.run([sys.executable, "-m", "timewait", *argv], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "family=ipv6" in out.stderr and "runs on IPv4 only: " in out.stderr


def test_a_bad_family_is_refused_in_one_line():
    out = subprocess.run([sys.executable, "-m", "timewait", "kernel", "run", "lost-last-ack", "--set", "family=ipv5"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "allowed ipv4, ipv6" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- inspect on IPv6 and mixed sockets

def _ss_count(ns: str, *filt: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-tanH", *filt], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return len([ln for ln in out.splitlines() if ln.strip()])


def _inspect(ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "timewait", "inspect", *argv, "--netns", ns],
                          capture_output=True, text=True, timeout=60)


def test_inspect_ipv6_and_mixed_filters_count_what_ss_counts(lab):
    """Real connections from c1, which closes first: TIME_WAIT on IPv4, IPv6 and IPv6 sockets with
    v4-mapped addresses (an AF_INET6 socket to ::ffff:10.211.55.10); every filter's count is
    `ss -tan FILTER`'s on the same namespace, ss's address syntax included."""
    v4a, v4b = "10.211.55.5", "10.211.55.10"
    lab.add_host("c1")
    lab.add_host("c2")
    lab.link("c1", [f"{v4a}/24", f"{C1}/112"], "c2", [f"{v4b}/24", f"{C2}/112"])
    ns = lab.ns("c1")
    listeners = {}
    for fam, addr in ((socket.AF_INET, (v4b, 8888)), (socket.AF_INET6, (C2, 8888)), (socket.AF_INET6, (C2, 9999)),
                      (socket.AF_INET6, ("::", 7777))):
        ls = lab.socket("c2", fam)
        ls.bind(addr)
        ls.listen(128)
        listeners[addr[1] if addr[0] == "::" else addr] = ls
    plan = [(socket.AF_INET, (v4b, 8888), 5), (socket.AF_INET6, (C2, 8888), 7), (socket.AF_INET6, (C2, 9999), 3),
            (socket.AF_INET6, ("::ffff:" + v4b, 7777), 4)]
    held = []
    for fam, addr, n in plan:
        for i in range(n):
            c = lab.socket("c1", fam)
            c.settimeout(5)
            c.connect(addr)
            a, _ = listeners.get(addr, listeners.get(addr[1])).accept()
            if i == 0:
                held.append((c, a))  # one ESTABLISHED per kind
            else:
                lab.forget(c)  # the client closes first: TIME_WAIT in c1
                a.close()
    time.sleep(0.1)
    tw = ["state", "time-wait"]
    cases = [
        tw,
        [*tw, "dst", f"[{C2}]"],
        [*tw, "dst", f"[{C2}]:8888"],
        [*tw, "src", f"[{C1}]"],
        [*tw, "dst", f"[{C2}/112]"],
        [*tw, "dst", f"{C2}/112"],                     # bare with a prefix: the address is all before the /
        [*tw, "dst", f"{ula_of('10.211.55.0')}/112:9999"],
        [*tw, "dst", f"{C2}:8888"],                    # bare: ss reads the last :8888 as the port
        [*tw, "dst", C2],                              # ... and so the last :10 here: fd00::10:211:55 port 10
        [*tw, "dst", "::/0"],                          # IPv6 sockets, the v4-mapped ones too
        [*tw, "dst", "0.0.0.0/0"],                     # IPv4 sockets and the v4-mapped ones
        [*tw, "dst", v4b],                             # 10.211.55.10 and ::ffff:10.211.55.10
        [*tw, "dst", f"[::ffff:{v4b}]:7777"],
        [*tw, "dst", "*:8888"],                        # both families
        [*tw, "dst", "fd00::/112"],                    # fd00::0-ffff: none of ours
        [*tw, "dport", "=", ":9999"],
        ["state", "established", "dst", f"[{C2}]"],
        ["src", "[fd00::/64]"],
        ["exclude", "time-wait", "src", "::/0"],
    ]
    counts = {}
    for filt in cases:
        out = _inspect(ns, *filt, "--json")
        assert out.returncode == 0, (filt, out.stderr)
        doc = json.loads(out.stdout)
        counts[" ".join(filt[2:]) if filt[:2] == tw else " ".join(filt)] = doc["total"]
        assert doc["total"] == _ss_count(ns, *filt), (filt, doc["states"])
    # The cases are not empty: 4 + 6 + 2 + 3 TIME_WAITs (v4, v6 to 8888, v6 to 9999, mapped).
    assert counts[""] == 15 and counts[f"dst [{C2}]"] == 8 and counts[f"dst {v4b}"] == 7
    assert counts["dst ::/0"] == 11 and counts["dst 0.0.0.0/0"] == 7 and counts[f"dst {C2}"] == 0
    # ss-style output: [addr]:port for IPv6 destinations, whole addresses when piped.
    text = _inspect(ns, *tw).stdout
    assert f"[{C2}]:8888" in text and f"[{C2}]:9999" in text and f"{v4b}:8888" in text and "…" not in text
    doc = json.loads(_inspect(ns, *tw, "--json").stdout)
    by_remote = {r["remote"]: r["count"] for r in doc["time_wait"]["by_remote"]}
    # (a v4-mapped peer is counted as the IPv4 address it is)
    assert by_remote == {f"[{C2}]:8888": 6, f"[{C2}]:9999": 2, f"{v4b}:8888": 4, f"{v4b}:7777": 3}
    assert {r["local"]: r["count"] for r in doc["time_wait"]["by_local"]} == {C1: 8, v4a: 7}
    bad = _inspect(ns, *tw, "dst", "fd00::1")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "[fd00::1]" in bad.stderr
    bad = _inspect(ns, *tw, "dst", "[fd00::1")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("name", "argv"), [
    ("linger", ["--set", "close_at=1.2"]),
    ("timestamps", ["--set", "connections=2"]),
    ("redis-short-connections", ["--set", "connections=300"]),
])
def test_more_socket_level_twins_pass_their_checks_on_ipv6(name, argv):
    if name == "redis-short-connections" and shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    doc = _kernel_run(name, "--set", "family=ipv6", *argv)
    assert doc["checks"] and not _failed(doc)
    if name == "redis-short-connections":
        assert doc["hosts"]["c1"]["states"] == {"TIME_WAIT": 300}


def _path_reads_ipv6() -> None:
    from timewait.kernel.scenarios import _codec_reads_ipv6

    if not _codec_reads_ipv6():
        pytest.skip("the packet codec (timewait.tcp.segment) of this build reads IPv4 only")


def test_nc_timewait_on_ipv6_over_the_emulated_path():
    """The chapter's experiment on IPv6: the TUN path carries IPv6 (no ND, no RS of its own), only
    c1 holds TIME_WAIT, and the run's trace is the path's IPv6 packets."""
    _path_reads_ipv6()
    doc = _kernel_run("nc-timewait", "--set", "family=ipv6", "--set", "wait=1", "--set", "close_at=1.2")
    assert not _failed(doc)
    m = doc["metrics"]
    assert m["time_wait_hosts"] == ["c1"] and 59 < m["time_wait_timer_at_entry"] <= 60
    [row] = m["netstat"]["after_close"]["c1"]
    assert C1 in row and C2 in row and row.endswith("TIME_WAIT")


def test_tw_reuse_on_ipv6_takes_the_time_wait_over_and_paws_drops_the_duplicate():
    _path_reads_ipv6()
    doc = _kernel_run("tw-reuse", "--set", "family=ipv6")
    assert not _failed(doc)
    assert len(doc["checks"]) >= 5


# ---------------------------------------------------------------- kernel compare on IPv6

@pytest.mark.parametrize(("name", "argv"), [
    ("lost-last-ack", ["--set", "wait=3"]),
    ("port-exhaustion", ["--set", "duration=2"]),
    ("simultaneous-close", ["--set", "wait=1", "--set", "close_at=1.2"]),
])
def test_kernel_compare_on_ipv6_agrees_with_the_simulators_ipv6_run(name, argv):
    """Both sides on IPv6 (the simulator's ``family`` and the twin's): every check holds on both,
    no metric differs; skipped where the simulator has no ``family`` parameter yet."""
    from timewait.scenarios import COMMON_PARAMS

    if "family" not in COMMON_PARAMS:
        pytest.skip("the simulator of this build has no --set family")
    reason = lab_missing()
    if reason:
        pytest.skip(reason)
    out = subprocess.run([sys.executable, "-m", "timewait", "kernel", "compare", name, "--set", "family=ipv6",
                          "--json", *argv], capture_output=True, text=True, timeout=120)
    assert out.returncode in (0, 1), out.stderr[-3000:]
    doc = json.loads(out.stdout)
    differs = [f"{r['kind']} {r['name']}: sim {r['sim']!r} kernel {r['kernel']!r}"
               for r in doc["rows"] if r["verdict"] == "differs"]
    assert not differs, differs
    assert doc["agree"] and out.returncode == 0
    if name == "lost-last-ack":  # a check named with an IPv6 endpoint is made, and holds, on both sides
        [row] = [r for r in doc["rows"] if r["name"].startswith("while TIME_WAIT holds")]
        assert row["name"].startswith(f"while TIME_WAIT holds [{C1}]:60494") and row["verdict"] == "agree"
