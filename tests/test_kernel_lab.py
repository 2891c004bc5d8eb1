"""The kernel lab on the running kernel: namespaces, redis-server, inspect, cleanup on SIGINT.

Needs root and network namespaces (skipped with the reason otherwise); every
namespace it makes is named tw-<pid>-* and removed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from kernel_support import kernel_lab, lab_missing  # noqa: E402

pytestmark = pytest.mark.kernel




@pytest.fixture
def lab():
    with kernel_lab() as k:
        yield k


def _netns() -> list[str]:
    from pyroute2 import netns

    return netns.listnetns()


def _root_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def test_namespaces_and_veths_are_made_and_removed(lab):
    lab.add_host("c1")
    lab.add_host("c2")
    lab.link("c1", "10.211.55.5/24", "c2", "10.211.55.10/24")
    assert {lab.ns("c1"), lab.ns("c2")} <= set(_netns())
    srv = lab.socket("c2")
    srv.bind(("10.211.55.10", 8888))
    srv.listen()
    cli = lab.socket("c1")
    cli.settimeout(5)
    cli.connect(("10.211.55.10", 8888))
    conn, peer = srv.accept()
    assert peer[0] == "10.211.55.5"
    conn.close()
    names = list(lab.hosts.values())
    lab.close()
    assert not set(names) & set(_netns())
    assert not [x for x in _root_links() if x.startswith(lab.tag)]


def test_sysctls_are_per_namespace(lab):
    lab.add_host("c1")
    lab.sysctl("c1", "net.ipv4.ip_local_port_range", "40000 40099")
    lab.sysctl("c1", "net.ipv4.tcp_tw_reuse", "1")
    assert lab.read_sysctl("c1", "net.ipv4.ip_local_port_range").split() == ["40000", "40099"]
    assert lab.read_sysctl("c1", "net.ipv4.tcp_tw_reuse") == "1"
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        assert f.read().split() != ["40000", "40099"]
    from timewait.errors import UsageError

    with pytest.raises(UsageError, match="no such sysctl"):
        lab.sysctl("c1", "net.ipv4.tcp_no_such_thing", "1")


def test_a_real_redis_server_starts_answers_and_stops(lab):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    from timewait.kernel.apps import Redis, connect, ping

    lab.add_host("c1")
    lab.add_host("redis")
    lab.link("c1", "10.211.55.5/24", "redis", "10.211.55.10/24")
    r = Redis(lab, "redis", "10.211.55.10")
    before = int(r.info()["total_connections_received"])
    s = connect(lab, "c1", "10.211.55.10", 6379)
    assert ping(s)
    lab.forget(s)
    # Our TCP connection, then the unix-socket connection that asks INFO.
    assert int(r.info()["total_connections_received"]) == before + 2
    assert r.version().split(".")[0].isdigit()
    pid = r.proc.pid
    lab.close()
    assert r.proc.poll() is not None
    assert not os.path.exists(f"/proc/{pid}")


def test_inspect_counts_time_wait_per_destination_exactly(lab):
    ns = lab.add_host("c1")
    lab.sysctl("c1", "net.ipv4.ip_local_port_range", "40000 40099")
    lab.sysctl("c1", "net.ipv4.tcp_tw_reuse", "0")
    wanted = {("127.0.0.2", 7001): 37, ("127.0.0.3", 7002): 64}
    listeners = {}
    for addr in wanted:
        ls = lab.socket("c1")
        ls.bind(addr)
        ls.listen(128)
        listeners[addr] = ls
    for addr, n in wanted.items():
        for _ in range(n):
            c = lab.socket("c1")
            c.connect(addr)
            a, _ = listeners[addr].accept()
            lab.forget(c)  # the client closes first: its end goes to TIME_WAIT
            a.close()
    out = subprocess.run([sys.executable, "-m", "timewait", "inspect", "--netns", ns, "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    tw = doc["time_wait"]
    assert tw["count"] == 101
    assert {r["remote"]: r["count"] for r in tw["by_remote"]} == {"127.0.0.2:7001": 37, "127.0.0.3:7002": 64}
    assert sum(tw["remaining_histogram"].values()) == 101
    assert tw["remaining_histogram"]["50-60s"] == 101
    ports = {r["destination"]: r["in_use"] for r in doc["ephemeral_ports"]["by_destination"]}
    assert ports == {"127.0.0.3:7002": 64, "127.0.0.2:7001": 37}
    assert doc["ephemeral_ports"]["size"] == 100
    assert doc["states"] == {"LISTEN": 2, "TIME_WAIT": 101}
    # 64 of 100 ports toward one destination: the advice names the remedies, and only right ones.
    advice = " ".join(doc["advice"])
    assert "127.0.0.3:7002" in advice and "pool" in advice and "ip_local_port_range" in advice
    assert "fin_timeout does not shorten" in advice
    # The text view says the same numbers.
    text = subprocess.run([sys.executable, "-m", "timewait", "inspect", "--netns", ns],
                          capture_output=True, text=True, timeout=60).stdout
    assert "127.0.0.3:7002" in text and "TIME_WAIT 101" in text


def _ss_count(ns: str, *filt: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-tanH", *filt], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return len([ln for ln in out.splitlines() if ln.strip()])


def test_inspect_filters_count_what_ss_counts(lab):
    """ss-style filters (issue 16): each count equals `ss -tan FILTER` on the same namespace."""
    ns = lab.add_host("c1")
    lab.sysctl("c1", "net.ipv4.tcp_tw_reuse", "0")
    listeners = {}
    for addr in (("127.0.0.2", 7001), ("127.0.0.3", 7002)):
        ls = lab.socket("c1")
        ls.bind(addr)
        ls.listen(128)
        listeners[addr] = ls
    held = []
    for addr, n in ((("127.0.0.2", 7001), 12), (("127.0.0.3", 7002), 20)):
        for k in range(n):
            c = lab.socket("c1")
            c.connect(addr)
            a, _ = listeners[addr].accept()
            if k % 4 == 0:
                held.append((c, a))  # stays ESTABLISHED, owned by this process
            else:
                lab.forget(c)  # the client closes first: TIME_WAIT
                a.close()
    cases = [
        (["state", "time-wait"], ["state", "time-wait"]),
        (["state", "time-wait", "dst", "127.0.0.3"], ["state", "time-wait", "dst", "127.0.0.3"]),
        (["state", "established", "dport", "=", "7001"], ["state", "established", "dport", "=", ":7001"]),
        (["sport", "gt", "7001"], ["sport", "gt", ":7001"]),
        (["dst", "127.0.0.0/8", "dport", "7002"], ["dst", "127.0.0.0/8", "dport", "=", ":7002"]),
        (["state", "listening"], ["state", "listening"]),
        (["exclude", "time-wait"], ["exclude", "time-wait"]),
    ]
    for ours, theirs in cases:
        out = subprocess.run([sys.executable, "-m", "timewait", "inspect", *ours, "--netns", ns, "--json"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["total"] == _ss_count(ns, *theirs), (ours, doc["states"])
        assert doc["filter"] == " ".join(ours)
    assert _ss_count(ns, "state", "time-wait") == 24  # the case is not empty
    # -p: the ESTABLISHED ones belong to this process; TIME_WAIT to none.
    out = subprocess.run([sys.executable, "-m", "timewait", "inspect", "-p", "--netns", ns, "--json"],
                         capture_output=True, text=True, timeout=60)
    procs = {r["process"]: r for r in json.loads(out.stdout)["processes"]}
    mine = next(r for k, r in procs.items() if f"(pid {os.getpid()})" in k)
    assert mine["states"] == {"ESTABLISHED": 16, "LISTEN": 2}
    assert procs["no process"]["states"] == {"TIME_WAIT": 24}
    # Piped, the text view keeps whole addresses.
    text = subprocess.run([sys.executable, "-m", "timewait", "inspect", "--netns", ns], capture_output=True,
                          text=True, timeout=60).stdout
    assert "127.0.0.3:7002" in text and "…" not in text
    bad = subprocess.run([sys.executable, "-m", "timewait", "inspect", "state", "nosuch", "--netns", ns],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "unknown state" in bad.stderr


def test_inspect_watch_stops_after_count_and_gives_rates(lab):
    ns = lab.add_host("c1")
    out = subprocess.run([sys.executable, "-m", "timewait", "inspect", "--netns", ns, "--watch", "--json",
                          "--count", "2", "--interval", "0.2"], capture_output=True, text=True, timeout=60)
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(lines) == 2 and lines[0]["rates"] == {} and "TcpExtTW" in lines[1]["rates"]


def test_inspect_rejects_an_unknown_namespace():
    out = subprocess.run([sys.executable, "-m", "timewait", "inspect", "--netns", "tw-no-such-ns"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no such network namespace" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_sigint_halfway_leaves_no_namespace_veth_or_process():
    reason = lab_missing()
    if reason:
        pytest.skip(reason)
    from timewait.kernel.topology import pids_in, running

    p = subprocess.Popen([sys.executable, "-m", "timewait", "kernel", "run", "nc-timewait", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    prefix = f"tw-{p.pid}-"
    deadline = time.monotonic() + 30
    pids: list[int] = []
    ours: list[str] = []
    while time.monotonic() < deadline:
        ours = [n for n in _netns() if n.startswith(prefix)]
        pids = [x for n in ours for x in pids_in(n)]
        if len(ours) == 2 and pids:  # both namespaces made and the server running in c2
            break
        time.sleep(0.05)
    assert len(ours) == 2 and pids, "the run never got going"
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=30)
    assert p.returncode == 130
    assert not [n for n in _netns() if n.startswith(prefix)]
    assert not [x for x in _root_links() if x.startswith(f"tw{p.pid}v")]
    assert not [x for x in pids if running(x)]  # gone, or a zombie awaiting init's reaping


def test_cleanup_removes_leftovers_of_dead_runs_only(lab):
    from pyroute2 import IPRoute
    from pyroute2 import netns as pr_netns

    dead = 4194000
    while os.path.exists(f"/proc/{dead}"):
        dead -= 1
    stale_ns, stale_veth = f"tw-{dead}-c1", f"tw{dead}v0a"
    pr_netns.create(stale_ns)
    with IPRoute() as ipr:
        ipr.link("add", ifname=stale_veth, kind="veth", peer=f"tw{dead}v0b")
    live = lab.add_host("c1")
    try:
        out = subprocess.run([sys.executable, "-m", "timewait", "kernel", "cleanup"], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert stale_ns in out.stdout and stale_veth in out.stdout
        assert stale_ns not in _netns() and stale_veth not in _root_links()
        assert live in _netns()
    finally:
        if stale_ns in _netns():
            pr_netns.remove(stale_ns)


def test_refuses_without_root_in_one_line():
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a command as nobody")
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                            "-c", "import timewait.cli"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the package and its CLI dependencies are not importable as nobody here")
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                          "timewait", "kernel", "run", "nc-timewait"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "root" in out.stderr


def test_kernel_cannot_show_what_it_does_not_have():
    for argv, needle in ((["kernel", "run", "tw-recycle-nat"], "4.12"),
                         (["kernel", "run", "nc-timewait", "--set", "timewait=off"], "lesson knob"),
                         (["kernel", "run", "nc-timewait", "--sysctl", "c1:net.ipv4.tcp_tw_recycle=1"], "4.12")):
        out = subprocess.run([sys.executable, "-m", "timewait", *argv], capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and needle in out.stderr, argv
        assert len(out.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- scenarios without a simulator twin

def _run(name: str, *argv: str) -> dict:
    reason = lab_missing()
    if reason:
        pytest.skip(reason)
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    out = subprocess.run([sys.executable, "-m", "timewait", "kernel", "run", name, "--json", *argv],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _failed(doc: dict) -> list[str]:
    return [f"{c['name']}: {c['detail']}" for c in doc["checks"] if not c["passed"]]


def test_so_linger_zero_resets_and_leaves_no_time_wait():
    doc = _run("linger", "--set", "close_at=1.2")
    assert not _failed(doc)
    assert doc["metrics"]["rst_sent"] and not doc["metrics"]["fin_sent"]
    assert doc["metrics"]["time_wait_hosts"] == []


def test_simultaneous_close_puts_both_ends_in_time_wait():
    doc = _run("simultaneous-close", "--set", "wait=1", "--set", "close_at=1.2")
    assert not _failed(doc)
    assert doc["metrics"]["time_wait_hosts"] == ["c1", "c2"]


@pytest.mark.parametrize(("c1", "c2", "syn", "synack"), [(1, 1, True, True), (0, 1, False, False),
                                                         (1, 0, True, False), (2, 2, True, True)])
def test_timestamps_are_negotiated_per_host_setting(c1, c2, syn, synack):
    doc = _run("timestamps", "--sysctl", f"c1:net.ipv4.tcp_timestamps={c1}",
               "--sysctl", f"c2:net.ipv4.tcp_timestamps={c2}")
    assert not _failed(doc)
    m = doc["metrics"]
    assert (m["syn_has_ts"], m["synack_has_ts"]) == (syn, synack)
    later = [s for s in m["segments"] if not s["flags"] & 0x02]
    assert later and all((s["tsval"] is not None) == (syn and synack) for s in later)


def test_a_kernel_run_prints_the_simulators_json_shape():
    doc = _run("nc-timewait", "--set", "wait=1", "--set", "close_at=1.2")
    assert list(doc) == ["scenario", "profile", "seed", "params", "sim_time", "checks", "metrics", "hosts"]
    assert doc["profile"] == f"kernel-{os.uname().release}"
    assert set(doc["hosts"]) == {"c1", "c2"}
    c1 = doc["hosts"]["c1"]
    assert c1["states"] == {"TIME_WAIT": 1}
    assert c1["counters"]["TcpActiveOpens"] == 1 and c1["counters"]["TcpExtTW"] == 1
    assert c1["sysctls"]["net.ipv4.tcp_max_tw_buckets"] > 0
    assert 58.5 < doc["metrics"]["time_wait_seconds"] < 60.5
    assert doc["metrics"]["time_wait_hosts"] == ["c1"]
