"""The command line: the JSON contract, and bad input as one line with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def tw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "timewait", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "nope"], "unknown scenario 'nope'; allowed: "),
        (["run", "nc-timewait", "--bogus"], "no such option --bogus; allowed: "),
        (["run", "nc-timewait", "--sysctl", "c1:net.ipv4.nope=1"], "unknown sysctl 'net.ipv4.nope'; known: "),
        (["run", "nc-timewait", "--sysctl", "c1:net.ipv4.tcp_tw_reuse=7"], "allowed values are 0, 1, 2"),
        (["run", "nc-timewait", "--sysctl", "c1:net.ipv4.ip_local_port_range=9 3"], "1 <= LOW <= HIGH <= 65535"),
        (["run", "nc-timewait", "--sysctl", "c9:net.ipv4.tcp_tw_reuse=1"], "unknown host"),
        (["run", "nc-timewait", "--sysctl", "garbage"], "expected HOST:NAME=VALUE"),
        (["run", "nc-timewait", "--sysctl", "c1:net.ipv4.tcp_tw_recycle=1"], "removed in Linux 4.12"),
        (["run", "nc-timewait", "--set", "close_at=abc"], "expected float"),
        (["run", "nc-timewait", "--set", "nope=1"], "unknown parameter 'nope' for nc-timewait; allowed: "),
        (["run", "nc-timewait", "--set", "novalue"], "expected KEY=VALUE"),
        (["run", "nc-timewait", "--profile", "bsd"], "unknown profile 'bsd'; allowed: linux"),
        (["run", "nc-timewait", "--seed", "x"], "Invalid value for '--seed'"),
        (["run", "nc-timewait", "--fault", "zap"], "bad fault"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], needle: str) -> None:
    r = tw(*args)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert r.stdout == ""


def test_json_is_the_only_thing_on_stdout_and_follows_the_contract() -> None:
    r = tw("run", "nc-timewait", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"scenario", "profile", "seed", "params", "sim_time", "checks", "metrics", "hosts", "series"}
    (run,) = doc["series"]["runs"]  # the telemetry: one grid, every host's series, exact maxima
    assert run["label"] == "main" and len(run["times"]) == len(run["hosts"]["c1"]["TIME_WAIT"])
    assert run["maxima"]["c1"]["TIME_WAIT"]["value"] == 1
    assert doc["scenario"] == "nc-timewait" and doc["profile"] == "linux" and doc["seed"] == 1
    assert all(c["passed"] for c in doc["checks"])
    assert doc["metrics"]["time_wait_hosts"] == ["c1"] and doc["metrics"]["time_wait_seconds"] == 60.0
    assert set(doc["hosts"]) == {"c1", "c2"}
    assert doc["hosts"]["c1"]["counters"]["TcpExtTW"] == 1
    assert doc["hosts"]["c1"]["sysctls"]["net.ipv4.tcp_fin_timeout"] == 60


@pytest.mark.parametrize(("extra", "seconds"), [([], 60.0), (["--profile", "rfc793"], 240.0),
                                                (["--profile", "rfc793", "--set", "msl=30"], 60.0)])
def test_nc_timewait_time_wait_length_per_profile(extra: list[str], seconds: float) -> None:
    doc = json.loads(tw("run", "nc-timewait", "--json", *extra).stdout)
    assert doc["metrics"]["time_wait_seconds"] == seconds
    assert doc["metrics"]["time_wait_hosts"] == ["c1"]
    assert all(c["passed"] for c in doc["checks"])


def test_scenarios_lists_the_chapter_and_more() -> None:
    r = tw("scenarios", "--json")
    names = set(json.loads(r.stdout))
    assert {"nc-timewait", "ttl", "delayed-duplicate", "lost-last-ack", "two-msl", "redis-short-connections",
            "timestamps", "tw-reuse", "tw-recycle-nat", "nat", "port-exhaustion", "max-rate", "quiz"} <= names


def test_human_output_shows_the_netstat_view_of_nc_timewait() -> None:
    r = tw("run", "nc-timewait")
    assert r.returncode == 0
    assert "10.211.55.10:8888" in r.stdout and "TIME_WAIT" in r.stdout
