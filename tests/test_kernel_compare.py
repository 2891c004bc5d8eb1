"""`timewait kernel compare`: the simulator and the running kernel agree within the tolerances.

Each test runs one scenario both ways with small parameters; it is skipped when
the kernel lab cannot run here or the simulator has no scenario of that name yet.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from kernel_support import lab_missing  # noqa: E402

pytestmark = pytest.mark.kernel


def compare_missing() -> str | None:
    """Why compare cannot run here: the lab's reason, or no tcpdump."""
    reason = lab_missing()
    if reason:
        return reason
    if shutil.which("tcpdump") is None:
        return "tcpdump is not installed (apt-get install tcpdump)"
    return None


def compare(name: str, *argv: str) -> dict:
    reason = compare_missing()
    if reason:
        pytest.skip(reason)
    from timewait.scenarios import all_scenarios

    if name not in all_scenarios():
        pytest.skip(f"the simulator has no scenario {name!r} yet")
    out = subprocess.run([sys.executable, "-m", "timewait", "kernel", "compare", name, "--json", *argv],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode in (0, 1), out.stderr
    doc = json.loads(out.stdout)
    differs = [f"{r['kind']} {r['name']}: sim {r['sim']!r} kernel {r['kernel']!r} ({r['tolerance']})"
               for r in doc["rows"] if r["verdict"] == "differs"]
    assert not differs, differs
    assert doc["agree"] and out.returncode == 0
    return doc


def rows(doc: dict) -> dict[str, dict]:
    return {r["name"]: r for r in doc["rows"]}


def test_nc_timewait_first_seconds_of_the_countdown():
    doc = compare("nc-timewait", "--set", "wait=3")
    r = rows(doc)
    assert r["time_wait_hosts"]["kernel"] == ["c1"] and r["time_wait_hosts"]["verdict"] == "agree"
    assert r["time_wait_seconds"]["verdict"] == "agree"
    assert 55.0 < r["time_wait_timer_left"]["kernel"] < 58.0


def test_redis_short_connections_counts_agree_exactly():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    doc = compare("redis-short-connections", "--set", "connections=500", "--set", "rate=2000")
    r = rows(doc)
    assert r["time_wait_client"]["sim"] == r["time_wait_client"]["kernel"] == 500
    assert r["time_wait_server"]["kernel"] == 0


def test_redis_short_connections_with_the_bucket_cap():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    doc = compare("redis-short-connections", "--set", "connections=300", "--set", "rate=3000",
                  "--sysctl", "c1:net.ipv4.tcp_max_tw_buckets=200")
    r = rows(doc)
    assert r["time_wait_client"]["kernel"] == 200 and r["tw_overflow"]["kernel"] == 100


def test_port_exhaustion_runs_out_at_the_same_count():
    doc = compare("port-exhaustion", "--set", "duration=2")
    r = rows(doc)
    assert r["succeeded"]["sim"] == r["succeeded"]["kernel"] == 1000
    assert set(r["failed"]["kernel"]) == {"EADDRNOTAVAIL"}


def test_port_exhaustion_with_tw_reuse():
    """Once said "agree" while the kernel run failed its own check: now one check, made on both."""
    doc = compare("port-exhaustion", "--set", "duration=3", "--sysctl", "c1:net.ipv4.tcp_tw_reuse=1")
    r = rows(doc)
    assert r["tw_recycled"]["kernel"] > 0
    claim = r["tw_reuse keeps connect() going at min(its pace, ports / tcp_tw_reuse_delay)"]
    assert claim["sim"] is True and claim["kernel"] is True and claim["verdict"] == "agree"
    assert r["port_range"]["verdict"] == "input"


def test_lost_last_ack_time_wait_answers_the_resent_fin():
    doc = compare("lost-last-ack", "--set", "wait=3")
    r = rows(doc)
    assert r["path"]["kernel"] == "wait"
    assert r["c2 closes cleanly: LAST_ACK -> CLOSED on that ACK, no RST"]["kernel"] is True


def test_lost_last_ack_with_timestamps_meets_last_ack():
    doc = compare("lost-last-ack", "--set", "timestamps=on")
    assert rows(doc)["path"]["kernel"] == "collide"


def test_nat_shares_one_address_and_runs_out_of_ports():
    doc = compare("nat", "--set", "close_at=9.5", "--set", "ct_time_wait=2")
    r = rows(doc)
    assert r["blocked"]["kernel"] == ["c3"] and r["served"]["kernel"] == ["c1", "c2"]


@pytest.mark.parametrize("mode", ["c1:net.ipv4.tcp_timestamps=2", "c2:net.ipv4.tcp_timestamps=0"])
def test_timestamps_negotiation_agrees(mode):
    doc = compare("timestamps", "--sysctl", mode)
    assert all(r["kernel"] for r in doc["rows"] if r["kind"] == "check")
