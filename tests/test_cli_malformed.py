"""A battery of malformed invocations across every subcommand (issue 15).

Each case runs the CLI's ``main`` in this process from an empty directory and must end with
exit status 2, exactly one non-empty line on stderr, no traceback, and no file created: every
bad value is refused before anything runs. The kernel lab's entry check is replaced by one
that fails loudly, so a kernel case passes only if its argument error comes before root is
needed (and no namespace is ever made here).
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

from timewait.cli import main

NAN, INF = "nan", "inf"


class ReachedTheLab(AssertionError):
    """Raised if a case got as far as needing root: its argument error came too late."""


def _no_lab() -> None:
    raise ReachedTheLab("reached require_lab(): the argument error should have come first")


def case(id_: str, *argv: str, files: dict[str, bytes] | None = None) -> object:
    """One invocation; ``files`` are made first (``DIR/keep`` makes only the directory DIR)."""
    return pytest.param(list(argv), files or {}, id=id_)


def sets(scenario: str, *items: str, cmd: tuple[str, ...] = ("run",)) -> list[object]:
    """One case per ``--set KEY=VALUE``."""
    return [case(f"{' '.join(cmd)}-{scenario}-set-{i}", *cmd, scenario, "--set", i) for i in items]


def sysctls(*items: str, cmd: tuple[str, ...] = ("run", "nc-timewait")) -> list[object]:
    return [case(f"{' '.join(cmd)}-sysctl-{i}", *cmd, "--sysctl", i) for i in items]


def faults(*items: str) -> list[object]:
    return [case(f"run-fault-{i}", "run", "nc-timewait", "--fault", i) for i in items]


def spec(id_: str, text: str, *extra: str) -> object:
    return case(f"sweep-{id_}", "sweep", "s.toml", *extra, files={"s.toml": text.encode()})


GOOD = 'scenario = "nc-timewait"\nmetrics = ["time_wait_seconds"]\n'

CASES: list[object] = [
    # ---------------------------------------------------------------- top level
    case("top-unknown-command", "frobnicate"),
    case("top-unknown-option", "--bogus"),
    case("top-report-is-no-command", "report"),
    # ---------------------------------------------------------------- run: shape
    case("run-missing-scenario", "run"),
    case("run-unknown-scenario", "run", "nope"),
    case("run-empty-scenario", "run", ""),
    case("run-unknown-option", "run", "nc-timewait", "--bogus"),
    case("run-extra-argument", "run", "nc-timewait", "extra"),
    case("run-set-no-equals", "run", "nc-timewait", "--set", "novalue"),
    case("run-set-no-key", "run", "nc-timewait", "--set", "=1"),
    case("run-set-unknown-key", "run", "nc-timewait", "--set", "nope=1"),
    case("run-profile-empty", "run", "nc-timewait", "--profile", ""),
    case("run-profile-blank", "run", "nc-timewait", "--profile", " "),
    case("run-profile-unknown", "run", "nc-timewait", "--profile", "bsd"),
    case("run-seed-text", "run", "nc-timewait", "--seed", "x"),
    case("run-seed-float", "run", "nc-timewait", "--seed", "1.5"),
    case("run-seed-negative", "run", "nc-timewait", "--seed", "-1"),
    case("run-seed-huge", "run", "nc-timewait", "--seed", str(2**64)),
    case("run-ss-nan", "run", "nc-timewait", "--ss", NAN),
    case("run-ss-inf", "run", "nc-timewait", "--ss", INF),
    case("run-ss-minus-inf", "run", "nc-timewait", "--ss", "-inf"),
    case("run-ss-negative", "run", "nc-timewait", "--ss", "-1"),
    case("run-ss-text", "run", "nc-timewait", "--ss", "soon"),
    case("run-ss-summary-without-ss", "run", "nc-timewait", "--ss-summary"),
    case("run-window-nan-start", "run", "nc-timewait", "--diagram", "d.svg", "--window", "nan:1"),
    case("run-window-nan-end", "run", "nc-timewait", "--diagram", "d.svg", "--window", "1:nan"),
    case("run-window-inf-end", "run", "nc-timewait", "--diagram", "d.svg", "--window", "1:inf"),
    case("run-window-reversed", "run", "nc-timewait", "--diagram", "d.svg", "--window", "5:1"),
    case("run-window-empty-span", "run", "nc-timewait", "--diagram", "d.svg", "--window", "2:2"),
    case("run-window-negative-start", "run", "nc-timewait", "--diagram", "d.svg", "--window", "-1:2"),
    case("run-window-negative-end", "run", "nc-timewait", "--diagram", "d.svg", "--window", ":-1"),
    case("run-window-no-colon", "run", "nc-timewait", "--diagram", "d.svg", "--window", "1"),
    case("run-window-text", "run", "nc-timewait", "--diagram", "d.svg", "--window", "a:b"),
    case("run-conn-port-zero", "run", "nc-timewait", "--diagram", "d.svg", "--conn", "0"),
    case("run-conn-port-70000", "run", "nc-timewait", "--diagram", "d.svg", "--conn", "70000"),
    case("run-conn-text", "run", "nc-timewait", "--diagram", "d.svg", "--conn", "x"),
    case("run-conn-bad-addr", "run", "nc-timewait", "--diagram", "d.svg", "--conn", "1.2.3:80"),
    case("run-conn-nan", "run", "nc-timewait", "--diagram", "d.svg", "--conn", NAN),
    case("run-diagram-bad-suffix", "run", "nc-timewait", "--diagram", "d.txt"),
    case("run-pcap-bad-suffix", "run", "nc-timewait", "--pcap", "p.txt"),
    case("run-plot-bad-suffix", "run", "nc-timewait", "--plot", "p.svg"),
    case("run-html-bad-suffix", "run", "nc-timewait", "--html", "r.txt"),
    case("run-pcap-host-without-pcap", "run", "nc-timewait", "--pcap-host", "c1"),
    case("run-pcap-host-unknown", "run", "nc-timewait", "--pcap", "p.pcap", "--pcap-host", "nohost"),
    case("run-conn-without-diagram", "run", "nc-timewait", "--conn", "8888"),
    case("run-pcap-is-a-directory", "run", "nc-timewait", "--pcap", "d.pcap", files={"d.pcap/keep": b""}),
    # A missing folder is created (issue 16: `--diagram out/lla.svg` in a fresh directory), so the
    # bad one here is a folder under a file.
    case("run-good-pcap-then-bad-diagram", "run", "nc-timewait", "--pcap", "ok.pcap", "--diagram", "f/x.svg",
         files={"f": b"x"}),
    # ---------------------------------------------------------------- run: --set ranges and types
    *sets("nc-timewait", "close_at=nan", "close_at=inf", "close_at=-inf", "close_at=-1", "close_at=abc",
          "close_at=", "server_close=maybe", "msl=0", "msl=-5", "msl=nan", "msl=inf", "timewait=perhaps",
          "mem=nan", "mem=inf", "mem=1M", "mem=lots", "mem=", "mem=-2G"),
    *sets("lost-last-ack", "port=70000", "port=0", "port=-1", "port=65536", "port=1.5", "port=nan",
          "retry=0", "retry=nan", "reconnect_after=-0.1", "close_at=inf", "timestamps=2"),
    *sets("port-exhaustion", "destinations=0", "destinations=-1", "destinations=60000", "destinations=1.5",
          "duration=0", "duration=nan", "duration=inf", "duration=-5", "rtt_ms=0", "rtt_ms=0.001",
          "rtt_ms=nan", "rtt_ms=-1"),
    *sets("redis-short-connections", "sample=0", "sample=-1", "sample=nan", "sample=inf", "sample=0.0000001",
          "connections=0", "connections=-5", "connections=nan", "rate=0", "rate=-1", "rate=nan", "rate=inf",
          "rate=1e7", "pool=-1", "pool=70000", "ports=0", "ports=60000"),
    *sets("max-rate", "margin=1", "margin=2", "margin=0", "margin=-0.5", "margin=nan", "margin=inf",
          "msl=0", "msl=nan", "ports=1-5", "ports=5-1", "ports=0-65535", "ports=1025-70000", "ports=x",
          "ports=1025"),
    *sets("two-msl", "margin=0", "margin=-1", "margin=nan", "margin=60", "close_at=nan", "rfc1337=2"),
    *sets("ttl", "ttl=0", "ttl=256", "ttl=nan", "hops=0", "hops=256", "hops=-1", "hold=-5", "hold=nan",
          "short_hold=inf", "give_up=-1"),
    *sets("nat", "clients=0", "clients=201", "nat_ports=0", "nat_ports=65536", "give_up=0", "give_up=nan",
          "give_up=30", "ct_time_wait=0", "ct_time_wait=inf", "same_port=sometimes"),
    *sets("delayed-duplicate", "delay=-1", "delay=nan", "retry=0", "isn_shift=4294967296",
          "isn_shift=-4294967296", "isn_shift=1.5", "reconnect_at=inf"),
    *sets("tw-recycle-nat", "duration=0", "duration=nan", "a_uptime=-1", "b_uptime=inf", "a_every=-1",
          "client_ts=sometimes", "server_close=never"),
    *sets("timestamps", "connections=0", "connections=nan", "connections=100000"),
    *sets("simultaneous-close", "close_at=nan", "close_at=-2"),
    *sets("linger", "close_at=inf", "linger0=2"),
    *sets("tw-reuse", "reconnect_after=nan", "lost_ack=x"),
    *sets("quiz", "anything=1"),
    # ---------------------------------------------------------------- run: --sysctl
    *sysctls("garbage", "c1:", ":net.ipv4.tcp_tw_reuse=1", "c1:=1", "c1:net.ipv4.tcp_tw_reuse",
             "c1:net.ipv4.nope=1", "c9:net.ipv4.tcp_tw_reuse=1", "c1:net.ipv4.tcp_tw_recycle=1",
             "c1:net.ipv4.tcp_tw_reuse=3", "c1:net.ipv4.tcp_tw_reuse=-1", "c1:net.ipv4.tcp_tw_reuse=nan",
             "c1:net.ipv4.tcp_timestamps=3", "c1:net.ipv4.tcp_max_tw_buckets=-1",
             "c1:net.ipv4.tcp_max_tw_buckets=1.5", "c1:net.ipv4.tcp_max_tw_buckets=2147483648",
             "c1:net.ipv4.tcp_fin_timeout=-1", "c1:net.ipv4.tcp_fin_timeout=nan", "c1:net.ipv4.tcp_fin_timeout=inf",
             "c1:net.ipv4.ip_local_port_range=9 3", "c1:net.ipv4.ip_local_port_range=0 100",
             "c1:net.ipv4.ip_local_port_range=1 65536", "c1:net.ipv4.ip_local_port_range=2000",
             "c1:net.ipv4.ip_local_port_range=1 2 3", "c1:net.ipv4.ip_local_port_range=a b",
             "c1:net.ipv4.ip_local_port_range=nan nan", "c1:net.ipv4.ip_local_port_range=100 2000",
             "c1:net.ipv4.ip_local_reserved_ports=70000", "c1:net.ipv4.ip_local_reserved_ports=9-3",
             "c1:net.ipv4.tcp_tw_reuse_delay=0", "c1:net.ipv4.tcp_tw_reuse_delay=60001",
             "c1:net.ipv4.tcp_syn_retries=0", "c1:net.ipv4.tcp_syn_retries=128", "c1:net.ipv4.ip_default_ttl=0",
             "c1:net.ipv4.ip_default_ttl=256", "c1:net.ipv4.tcp_retries2=256", "c1:net.ipv4.tcp_rfc1337=2",
             "c1:net.core.somaxconn=-1", "*:net.ipv4.tcp_sack=2"),
    *sysctls("c1:net.ipv4.tcp_tw_recycle=2", "c1:net.ipv4.tcp_tw_recycle=nan",
             cmd=("run", "tw-recycle-nat")),
    # ---------------------------------------------------------------- run: --fault
    *faults("zap", "", "drop nth=0", "drop nth=-1", "drop nth=1.5", "drop nth=", "drop count=-1", "drop count=0",
            "drop count=x", "hold -5", "hold nan", "hold inf", "hold -inf", "hold", "hold x", "hold from=c1",
            "dup nan", "dup -1", "dup inf", "drop from='c1", 'drop from="c1', "drop from=nohost", "drop to=nohost",
            "drop from=", "drop flags=Z", "drop flags=", "drop len=-1", "drop len=x", "drop len=70000",
            "drop sport=70000", "drop sport=0", "drop dport=-1", "drop dport=nan", "drop foo=1", "drop from",
            "hold 1e400 from=c1"),
    # ---------------------------------------------------------------- scenarios and diagram
    case("scenarios-unknown-option", "scenarios", "--bogus"),
    case("scenarios-extra-argument", "scenarios", "x"),
    case("diagram-nothing-to-draw", "diagram"),
    case("diagram-bad-suffix", "diagram", "--states", "--out", "x.txt"),
    case("diagram-unknown-option", "diagram", "--bogus"),
    # ---------------------------------------------------------------- capacity
    case("capacity-ports-text", "capacity", "--ports", "x"),
    case("capacity-ports-reversed", "capacity", "--ports", "60999-32768"),
    case("capacity-ports-zero", "capacity", "--ports", "0-100"),
    case("capacity-ports-70000", "capacity", "--ports", "1-70000"),
    case("capacity-ports-empty", "capacity", "--ports", ""),
    case("capacity-ports-nan", "capacity", "--ports", "nan-nan"),
    case("capacity-time-wait-nan", "capacity", "--time-wait", NAN),
    case("capacity-time-wait-inf", "capacity", "--time-wait", INF),
    case("capacity-time-wait-zero", "capacity", "--time-wait", "0"),
    case("capacity-time-wait-negative", "capacity", "--time-wait", "-1"),
    case("capacity-time-wait-text", "capacity", "--time-wait", "x"),
    case("capacity-msl-nan", "capacity", "--msl", NAN),
    case("capacity-msl-inf", "capacity", "--msl", INF),
    case("capacity-msl-zero", "capacity", "--msl", "0"),
    case("capacity-msl-and-time-wait", "capacity", "--msl", "30", "--time-wait", "60"),
    case("capacity-destinations-zero", "capacity", "--destinations", "0"),
    case("capacity-destinations-float", "capacity", "--destinations", "1.5"),
    case("capacity-tw-reuse-3", "capacity", "--tw-reuse", "3"),
    case("capacity-tw-reuse-negative", "capacity", "--tw-reuse", "-1"),
    case("capacity-tw-reuse-delay-zero", "capacity", "--tw-reuse-delay", "0"),
    case("capacity-tw-reuse-delay-60001", "capacity", "--tw-reuse-delay", "60001"),
    case("capacity-pool-zero", "capacity", "--pool", "0"),
    case("capacity-request-ms-nan", "capacity", "--request-ms", NAN),
    case("capacity-request-ms-inf", "capacity", "--request-ms", INF),
    case("capacity-request-ms-zero", "capacity", "--request-ms", "0"),
    case("capacity-max-tw-buckets-negative", "capacity", "--max-tw-buckets", "-1"),
    case("capacity-max-tw-buckets-over-int", "capacity", "--max-tw-buckets", "2147483648"),
    case("capacity-nat-ports-zero", "capacity", "--nat-ports", "0"),
    case("capacity-nat-ports-65536", "capacity", "--nat-ports", "65536"),
    case("capacity-clients-zero", "capacity", "--clients", "0"),
    case("capacity-nat-timeout-without-nat", "capacity", "--nat-timeout", "30"),
    case("capacity-nat-timeout-nan", "capacity", "--clients", "2", "--nat-timeout", NAN),
    case("capacity-rate-nan", "capacity", "--rate", NAN),
    case("capacity-rate-inf", "capacity", "--rate", INF),
    case("capacity-rate-zero", "capacity", "--rate", "0"),
    case("capacity-linger0-and-server-closes", "capacity", "--linger0", "--server-closes"),
    case("capacity-unknown-option", "capacity", "--bogus"),
    # ---------------------------------------------------------------- explain
    case("explain-missing-argument", "explain"),
    case("explain-missing-file", "explain", "nofile.pcap"),
    case("explain-directory", "explain", "dir", files={"dir/keep": b""}),
    case("explain-garbage", "explain", "g.pcap", files={"g.pcap": b"this is not a capture at all"}),
    case("explain-empty-file", "explain", "e.pcap", files={"e.pcap": b""}),
    case("explain-time-wait-nan", "explain", "nofile.pcap", "--time-wait", NAN),
    case("explain-time-wait-inf", "explain", "nofile.pcap", "--time-wait", INF),
    case("explain-time-wait-zero", "explain", "nofile.pcap", "--time-wait", "0"),
    case("explain-port-range-reversed", "explain", "nofile.pcap", "--port-range", "5-1"),
    case("explain-port-range-70000", "explain", "nofile.pcap", "--port-range", "1-70000"),
    case("explain-port-range-text", "explain", "nofile.pcap", "--port-range", "x"),
    case("explain-conn-port-zero", "explain", "nofile.pcap", "--conn", "0"),
    case("explain-conn-port-70000", "explain", "nofile.pcap", "--conn", "1.2.3.4:70000"),
    case("explain-diagram-without-conn", "explain", "nofile.pcap", "--diagram", "d.svg"),
    case("explain-diagram-bad-suffix", "explain", "nofile.pcap", "--conn", "80", "--diagram", "d.txt"),
    case("explain-unknown-option", "explain", "nofile.pcap", "--bogus"),
    # ---------------------------------------------------------------- sweep
    case("sweep-missing-argument", "sweep"),
    case("sweep-missing-spec", "sweep", "nofile.toml"),
    case("sweep-spec-is-directory", "sweep", "dir.toml", files={"dir.toml/keep": b""}),
    spec("bad-toml", "scenario = ["),
    spec("no-scenario", 'metrics = ["a"]\n'),
    spec("unknown-scenario", 'scenario = "nope"\nmetrics = ["a"]\n'),
    spec("unknown-key", GOOD + 'colour = "blue"\n'),
    spec("no-metrics", 'scenario = "nc-timewait"\n'),
    spec("negative-seed", GOOD + "seeds = [-1]\n"),
    spec("unknown-profile", GOOD + 'profile = ["bsd"]\n'),
    spec("grid-nan", GOOD + '[grid]\n"params.close_at" = [nan]\n'),
    spec("grid-inf", GOOD + '[grid]\n"params.close_at" = [inf]\n'),
    spec("grid-negative", GOOD + '[grid]\n"params.close_at" = [-1]\n'),
    spec("grid-unknown-param", GOOD + '[grid]\n"params.nope" = [1]\n'),
    spec("grid-sample-zero", 'scenario = "redis-short-connections"\nmetrics = ["succeeded"]\n'
         '[grid]\n"params.sample" = [0]\n'),
    spec("grid-margin-one", 'scenario = "max-rate"\nmetrics = ["limit_per_second"]\n'
         '[grid]\n"params.margin" = [1]\n'),
    spec("grid-sysctl-out-of-range", GOOD + '[grid]\n"sysctl.c1:net.ipv4.tcp_tw_reuse" = [3]\n'),
    spec("grid-sysctl-port-range", GOOD + '[grid]\n"sysctl.c1:net.ipv4.ip_local_port_range" = ["9 3"]\n'),
    spec("grid-bad-key", GOOD + '[grid]\n"close_at" = [1]\n'),
    spec("workers-zero", GOOD, "--workers", "0"),
    spec("workers-negative", GOOD, "--workers", "-1"),
    spec("workers-and-scheduler", GOOD, "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"),
    spec("scheduler-not-an-address", GOOD, "--scheduler", "nowhere"),
    spec("cache-and-no-cache", GOOD, "--cache", "c", "--no-cache"),
    spec("output-bad-suffix", GOOD + '[output]\ncsv = "out/x.txt"\n'),
    # ---------------------------------------------------------------- inspect
    case("inspect-interval-zero", "inspect", "--interval", "0"),
    case("inspect-interval-negative", "inspect", "--interval", "-1"),
    case("inspect-interval-nan", "inspect", "--interval", NAN),
    case("inspect-interval-inf", "inspect", "--interval", INF),
    case("inspect-interval-text", "inspect", "--interval", "x"),
    case("inspect-count-negative", "inspect", "--count", "-1"),
    case("inspect-count-text", "inspect", "--count", "x"),
    case("inspect-top-zero", "inspect", "--top", "0"),
    case("inspect-top-float", "inspect", "--top", "1.5"),
    case("inspect-unknown-option", "inspect", "--bogus"),
    # ---------------------------------------------------------------- kernel
    case("kernel-unknown-command", "kernel", "frobnicate"),
    case("kernel-run-missing-scenario", "kernel", "run"),
    case("kernel-run-unknown-scenario", "kernel", "run", "nope"),
    case("kernel-run-unsupported-scenario", "kernel", "run", "tw-recycle-nat"),
    case("kernel-run-unknown-option", "kernel", "run", "nc-timewait", "--bogus"),
    case("kernel-run-seed-text", "kernel", "run", "nc-timewait", "--seed", "x"),
    case("kernel-run-seed-negative", "kernel", "run", "nc-timewait", "--seed", "-1"),
    *sets("nc-timewait", "close_at=nan", "close_at=-1", "wait=-1", "wait=nan", "msl=30", "timewait=off",
          "nope=1", cmd=("kernel", "run")),
    *sets("lost-last-ack", "port=70000", "port=0", cmd=("kernel", "run")),
    *sets("port-exhaustion", "destinations=0", "rtt_ms=nan", cmd=("kernel", "run")),
    *sysctls("garbage", "c1:net.ipv4.tcp_tw_recycle=1", "c1:net.ipv4.tcp_tw_reuse=7",
             "c1:net.ipv4.ip_local_port_range=9 3", "c1:net.ipv4.tcp_max_tw_buckets=-1",
             "c1:net.ipv4.tcp_fin_timeout=nan", cmd=("kernel", "run", "nc-timewait")),
    case("kernel-compare-missing-scenario", "kernel", "compare"),
    case("kernel-compare-unknown-scenario", "kernel", "compare", "nope"),
    case("kernel-compare-unsupported", "kernel", "compare", "quiz"),
    *sets("ttl", "hops=33", "hold=20", "short_hold=31", cmd=("kernel", "run")),
    *sets("ttl", "hops=40", cmd=("kernel", "compare")),
    case("kernel-compare-seed-negative", "kernel", "compare", "nc-timewait", "--seed", "-1"),
    *sets("nc-timewait", "close_at=nan", "wait=inf", cmd=("kernel", "compare")),
    *sysctls("c1:net.ipv4.tcp_tw_reuse=7", "c9:net.ipv4.tcp_tw_reuse=1", cmd=("kernel", "compare", "nc-timewait")),
    case("kernel-scenarios-unknown-option", "kernel", "scenarios", "--bogus"),
    case("kernel-scenarios-extra-argument", "kernel", "scenarios", "x"),
    case("kernel-cleanup-unknown-option", "kernel", "cleanup", "--bogus"),
    case("kernel-cleanup-extra-argument", "kernel", "cleanup", "x"),
]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(("argv", "files"), CASES)
def test_malformed_invocation_is_one_line_exit_2_and_writes_nothing(
        argv: list[str], files: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import timewait.kernel.scenarios as kscenarios
    import timewait.kernel.topology as topology

    monkeypatch.setattr(topology, "require_lab", _no_lab)
    monkeypatch.setattr(kscenarios, "require_lab", _no_lab)
    monkeypatch.chdir(tmp_path)
    for name, data in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not name.endswith("/keep"):
            path.write_bytes(data)
    before = _tree(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    lines = err.getvalue().splitlines()
    assert "Traceback" not in err.getvalue()
    assert rc == 2, f"exit {rc}; stderr: {err.getvalue()!r}; stdout: {out.getvalue()[:300]!r}"
    assert len(lines) == 1 and lines[0].strip(), f"stderr must be one line: {err.getvalue()!r}"
    assert _tree(tmp_path) == before, f"files created: {sorted(_tree(tmp_path) - before)}"
    assert os.getcwd() == str(tmp_path)


def test_the_battery_is_large_enough() -> None:
    assert len(CASES) >= 150
    ids = [c.id for c in CASES]  # type: ignore[attr-defined]
    assert len(ids) == len(set(ids)), "case ids must be unique"
