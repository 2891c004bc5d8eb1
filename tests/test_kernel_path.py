"""The emulated path between real kernels (kernel/path.py) and the twins built on it.

Two lab namespaces are joined through TUN devices the lab drives; the simulator's fault grammar
acts on the packets between them, and what crossed is the run's trace. Needs root and network
namespaces (skipped with the reason otherwise).
"""

from __future__ import annotations

import json
import subprocess
import sys
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
