"""The emulated path between real kernels (kernel/path.py) and the twins built on it.

Two lab namespaces are joined through TUN devices the lab drives; the simulator's fault grammar
acts on the packets between them, and what crossed is the run's trace. Needs root and network
namespaces (skipped with the reason otherwise).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from kernel_support import lab_missing
from timewait.tcp.segment import ACK, PSH, SYN
from timewait.trace import DROP, HOLD, RX, TX

pytestmark = pytest.mark.kernel


@pytest.fixture
def pair():
    reason = lab_missing()
    if reason:
        pytest.skip(reason)
    from timewait.kernel.path import Path
    from timewait.kernel.topology import KernelLab
    from timewait.kernel.tun import Tun

    with KernelLab() as k:
        k.add_host("c1")
        k.add_host("c2")
        t0 = time.monotonic()
        path = Path(("c1", Tun(k.ns("c1"), "10.0.0.1/24")), ("c2", Tun(k.ns("c2"), "10.0.0.2/24")),
                    clock=lambda: time.monotonic() - t0, delay_ms=5).start()
        try:
            yield k, path
        finally:
            path.stop()


def test_delay_and_hold_act_on_real_packets(pair):
    k, path = pair
    srv = k.socket("c2")
    srv.bind(("10.0.0.2", 8888))
    srv.listen(8)
    c = k.socket("c1")
    t = time.monotonic()
    c.connect(("10.0.0.2", 8888))
    assert time.monotonic() - t >= 0.010  # one round trip through the path: 2 x 5 ms
    s, _ = srv.accept()
    path.fault("hold 0.5 from=c2 flags=P.")
    s.send(b"hello")
    t = time.monotonic()
    assert c.recv(10) == b"hello"
    waited = time.monotonic() - t
    time.sleep(0.6)  # the held original arrives after the kernel's retransmission
    recs = list(path.records)
    data = [r for r in recs if r[1] == TX and r[2] == "c2" and r[3].flags == PSH | ACK]
    holds = [r for r in recs if r[1] == HOLD]
    assert len(holds) == 1 and holds[0][4] == 0.5
    # The kernel did not wait for the held copy: it retransmitted after its RTO (>= 200 ms).
    assert len(data) == 2 and 0.2 <= (data[1][0] - data[0][0]) / 1e6 < 0.5 and 0.2 <= waited < 0.5
    late = [r for r in recs if r[1] == RX and r[2] == "c1" and r[3].flags == PSH | ACK]
    assert len(late) == 2 and (late[-1][0] - data[0][0]) / 1e6 >= 0.5


def test_drop_the_first_syn_and_the_kernel_resends_it_after_1s(pair):
    k, path = pair
    path.fault("drop from=c1 flags=S nth=1")
    srv = k.socket("c2")
    srv.bind(("10.0.0.2", 8889))
    srv.listen(8)
    c = k.socket("c1")
    c.settimeout(5)
    c.connect(("10.0.0.2", 8889))
    syns = [r for r in path.records if r[1] == TX and r[2] == "c1" and r[3].flags == SYN]
    drops = [r for r in path.records if r[1] == DROP]
    assert len(syns) == 2 and len(drops) == 1 and drops[0][4] == "fault"
    assert 0.99 <= (syns[1][0] - syns[0][0]) / 1e6 <= 1.1  # TCP_TIMEOUT_INIT, on a jiffy


def test_a_segment_older_than_the_paths_msl_is_discarded_and_the_kernel_resends_it(pair):
    k, path = pair
    path.max_age_s = 0.3  # the ttl twin's network rule, shortened: held 0.5 s, it is too old when due
    srv = k.socket("c2")
    srv.bind(("10.0.0.2", 8890))
    srv.listen(8)
    c = k.socket("c1")
    c.settimeout(5)
    c.connect(("10.0.0.2", 8890))
    s, _ = srv.accept()
    path.fault("hold 0.5 from=c1 flags=P. nth=1")
    c.sendall(b"old")
    s.settimeout(5)
    assert s.recv(10) == b"old"  # the kernel's retransmission
    time.sleep(0.7)
    recs = list(path.records)
    data = [r for r in recs if r[1] == TX and r[2] == "c1" and r[3].payload == b"old"]
    died = [r for r in recs if r[1] == DROP and r[4] == "msl"]
    arrived = [r for r in recs if r[1] == RX and r[2] == "c2" and r[3].payload == b"old"]
    assert len(data) == 2 and len(died) == 1 and len(arrived) == 1
    assert died[0][2] == "c2" and died[0][3].pid == data[0][3].pid  # the held original, where it was due
    assert 0.5 <= (died[0][0] - data[0][0]) / 1e6 < 0.6
    assert arrived[0][3].pid == data[1][3].pid


def compare(*argv: str) -> dict:
    reason = lab_missing()
    if reason:
        pytest.skip(reason)
    out = subprocess.run([sys.executable, "-m", "timewait", "kernel", "compare", *argv, "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("argv", [
    [],
    ["--set", "lost_ack=off"],
    ["--set", "reconnect_after=0.5"],
    ["--sysctl", "c1:net.ipv4.tcp_tw_reuse=0"],
], ids=["takeover", "no-lost-ack", "too-young", "reuse-off"])
def test_tw_reuse_twin_agrees_with_the_simulator(argv):
    doc = compare("tw-reuse", *argv)
    bad = [(r["name"], r["sim"], r["kernel"]) for r in doc["rows"] if r["verdict"] in ("differs", "fails on both")]
    assert not bad and doc["agree"], bad
    checks = [r for r in doc["rows"] if r["kind"] == "check"]
    assert checks and all(r["sim"] is True and r["kernel"] is True for r in checks)
    if not argv:
        names = {r["name"] for r in checks}
        assert "the delayed duplicate of the old answer is dropped by PAWS" in names
        assert any(n.startswith("the SYN meets LAST_ACK") for n in names)


def test_kernel_scenarios_lists_the_twin():
    out = subprocess.run([sys.executable, "-m", "timewait", "kernel", "scenarios", "--json"],
                         capture_output=True, text=True, timeout=60)
    doc = json.loads(out.stdout)
    assert "tw-reuse" in json.dumps(doc.get("supported", doc))
    assert "tw-reuse" not in doc.get("unsupported", {})


@pytest.mark.slow
def test_delayed_duplicate_twin_time_wait_on_agrees():
    """TIME_WAIT on a real kernel: connect() from the bound port fails until it ends (about 60 s),
    and the held segment of the old connection meets no connection at the server: RST."""
    doc = compare("delayed-duplicate")
    bad = [(r["name"], r["sim"], r["kernel"]) for r in doc["rows"] if r["verdict"] in ("differs", "fails on both")]
    assert not bad and doc["agree"], bad
    r = {x["name"]: x for x in doc["rows"]}
    assert r["stale_fate"]["kernel"] == "no connection for it: answered with RST"
    assert r["received_new"]["kernel"] == "new-1\nnew-2\nnew-3\n"
    assert 60 <= r["new_connection_at"]["kernel"] <= 70


def _ok(doc: dict) -> dict[str, dict]:
    bad = [(r["name"], r["sim"], r["kernel"]) for r in doc["rows"] if r["verdict"] in ("differs", "fails on both")]
    assert not bad and doc["agree"], bad
    checks = [r for r in doc["rows"] if r["kind"] == "check"]
    # Every check made on both sides holds on both; one a side cannot make (--set wait) holds where made.
    assert checks and all(r["sim"] is True and r["kernel"] in (True, None) for r in checks)
    assert sum(r["kernel"] is True for r in checks) >= len(checks) - 1
    return {r["name"]: r for r in doc["rows"]}


def test_ttl_twin_on_real_routers_agrees_with_the_simulator():
    """14 router namespaces with ip_forward=1: the TTL on every link is what each kernel forwarded,
    R12's ICMP time-exceeded is the drop, and c1's connect() dies of it (IC-1). About 40 s."""
    r = _ok(compare("ttl"))
    assert r["ttl_per_hop"]["kernel"] == [12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    assert r["dropped_at"]["kernel"] == "R12" and r["drop_reason"]["kernel"] == "ttl"
    assert r["icmp_time_exceeded"]["kernel"] == 1 and r["icmp_received_by_c1"]["kernel"] == 1
    assert r["c1_connect"]["kernel"]["result"] == r["c1_connect"]["sim"]["result"] == "EHOSTUNREACH"
    assert r["ttl_at_c2_from_c3"]["kernel"] == 50
    long_, short = r["held"]["kernel"]
    assert (long_["data"], long_["fate"], long_["where"]) == ("two\n", "msl", "R1")
    assert (short["data"], short["fate"], short["where"], short["ttl"]) == ("three\n", "arrived", "c2", 50)
    assert 20.0 <= short["age_s"] < 20.05


@pytest.mark.slow
def test_max_rate_twin_runs_out_just_over_the_limit_and_keeps_up_just_under():
    """1000 ports / 60 s: 15.33/s sustained past the first TIME_WAIT's end, 18/s out of ports at
    1000 / 18 = 55.6 s. About 75 s: the under-limit loop must outlive a 60 s TIME_WAIT."""
    r = _ok(compare("max-rate"))
    assert r["limit_per_second"]["verdict"] == "input" and r["limit_per_second"]["kernel"] == 16.7
    under, over = r["under"]["kernel"], r["over"]["kernel"]
    assert under["failed"] == {} and under["succeeded"] >= 1000  # more connections than ports
    assert "EADDRNOTAVAIL" in over["failed"] and 55.5 <= over["first_failure_at"] <= 55.7
    assert 60.0 <= r["time_wait_seconds"]["kernel"] <= 64.2


def _netns() -> list[str]:
    from pyroute2 import netns

    return netns.listnetns()


def test_sigterm_halfway_through_the_ttl_twin_leaves_nothing():
    """17 namespaces, 16 veths, 2 TUN devices, the taps and the path thread: SIGTERM while c3's
    segment is held, then nothing of the run is left (namespaces, veths, processes, temp dir)."""
    reason = lab_missing()
    if reason:
        pytest.skip(reason)
    from timewait.kernel.ledger import TMP_PREFIX
    from timewait.kernel.topology import pids_in, running

    p = subprocess.Popen([sys.executable, "-m", "timewait", "kernel", "run", "ttl", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    prefix = f"tw-{p.pid}-"
    deadline = time.monotonic() + 60
    ours: list[str] = []
    tuns: list[str] = []
    while time.monotonic() < deadline:
        ours = [n for n in _netns() if n.startswith(prefix)]
        if len(ours) == 17:
            tuns = [n for n in ours if "tun0" in subprocess.run(["ip", "-n", n, "-o", "link"], capture_output=True,
                                                                text=True).stdout]
            if len(tuns) == 2:
                break
        time.sleep(0.1)
    assert len(ours) == 17 and len(tuns) == 2, "the run never got going"
    time.sleep(2)  # into the run: c3's segments are held on the path
    pids = [x for n in ours for x in pids_in(n)]
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=30)
    assert p.returncode == 128 + signal.SIGTERM
    assert not [n for n in _netns() if n.startswith(prefix)]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"tw{p.pid}v" not in links
    assert not [x for x in pids if running(x)]
    assert not [d for d in os.listdir(tempfile.gettempdir()) if d.startswith(f"{TMP_PREFIX}{p.pid}-")]


def test_kernel_scenarios_has_a_twin_for_12_of_15_and_says_why_not_for_the_rest():
    from timewait.scenarios import all_scenarios

    out = subprocess.run([sys.executable, "-m", "timewait", "kernel", "scenarios", "--json"],
                         capture_output=True, text=True, timeout=60)
    doc = json.loads(out.stdout)
    assert len(all_scenarios()) == 15
    assert len(doc["supported"]) >= 12 and {"ttl", "max-rate", "tw-reuse", "delayed-duplicate"} <= set(doc["supported"])
    why = doc["unsupported"]
    assert set(why) == {"tw-recycle-nat", "two-msl", "quiz"}
    assert "4.12" in why["tw-recycle-nat"] and "computed" in why["two-msl"] and "quiz" in why["quiz"]
    text = subprocess.run([sys.executable, "-m", "timewait", "kernel", "scenarios"], capture_output=True,
                          text=True, timeout=60).stdout
    assert sum("not on a kernel" in line for line in text.splitlines()) == 3


def test_nc_timewait_netstat_view_through_the_path_agrees_with_the_simulators():
    """The chapter's nc + netstat: c1 and c2 on the emulated path; netstat rows read from inet_diag
    connected and just after Ctrl+C equal the simulator's netstat view (rebuilt from its trace) at the
    same instants, but for the ephemeral port. `nc -l` is gone once its client is in: no LISTEN row."""
    r = _ok(compare("nc-timewait", "--set", "wait=3"))
    row = r["netstat"]
    assert row["verdict"] == "agree" and row["tolerance"].startswith("ports masked")
    k, s = row["kernel"], row["sim"]
    local = f"10.211.55.5:{r['client_port']['kernel']}"
    assert k["connected"]["c1"] == [f"tcp        0      0 {local:<23} 10.211.55.10:8888       ESTABLISHED"]
    assert k["after_close"]["c1"] == [f"tcp        0      0 {local:<23} 10.211.55.10:8888       TIME_WAIT"]
    assert k["after_close"]["c2"] == [] == s["after_close"]["c2"]
    assert set(k) == {"connected", "after_close"}  # wait=3: the end of the TIME_WAIT is not watched
    assert 2.0 < k["after_close"]["at"] < 2.2


@pytest.mark.slow
def test_ttl_twin_pcap_at_c2_shows_the_held_segment_arrive_late_and_c2s_answer(tmp_path):
    """tshark reads c2's capture: c3's "three" arrives twice, the kernel's retransmission soon and
    the copy the path held about 20 s later, aged 20 s with TTL 50 like the rest; c2 answers it at once
    with a duplicate ACK (rcv_nxt already past it). About 40 s."""
    import shutil

    reason = lab_missing()
    if reason:
        pytest.skip(reason)
    if shutil.which("tshark") is None or shutil.which("tcpdump") is None:
        pytest.skip("needs tcpdump and tshark")
    pcap = tmp_path / "c2.pcap"
    out = subprocess.run([sys.executable, "-m", "timewait", "kernel", "run", "ttl", "--pcap", str(pcap),
                          "--pcap-host", "c2", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    fields = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "frame.time_epoch", "-e", "ip.src",
                             "-e", "ip.ttl", "-e", "tcp.seq_raw", "-e", "tcp.ack_raw", "-e", "tcp.len"],
                            capture_output=True, text=True, timeout=60).stdout
    rows = [line.split("\t") for line in fields.splitlines() if line.strip()]
    pkts = [(float(t), src, int(ttl), int(seq), int(ack or 0), int(n)) for t, src, ttl, seq, ack, n in rows]
    three = [p for p in pkts if p[1] == "10.211.55.6" and p[5] == len(b"three\n")]
    assert len(three) == 2 and three[0][3] == three[1][3]  # the same bytes, twice
    # The first is the kernel's resend (a tail loss probe or the RTO, within ms of 1.2 s), the second
    # the original the path held 20 s.
    assert 19.5 <= three[1][0] - three[0][0] <= 20.1 and {p[2] for p in three} == {50}
    answer = [p for p in pkts if p[1] == "10.211.55.10" and three[1][0] <= p[0] <= three[1][0] + 0.05]
    assert answer and answer[0][5] == 0 and answer[0][4] > three[1][3]  # an ACK past the duplicate
