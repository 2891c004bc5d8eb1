"""`timewait sweep`: spec validation, local processes, a real Dask cluster, the cache, failures.

The stub runner below stands in for ``run_scenario`` where a test needs a point
to raise or to count its calls; everything else runs the real ``nc-timewait``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pty_support import read_terminal
from timewait import sweep
from timewait.cli import main
from timewait.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "src" / "timewait" / "examples"
# Children (the CLI, dask workers) import this tree's code, not an installed timewait:
# a relative PYTHONPATH means nothing once they run in another folder.
TREE_PYTHONPATH = os.pathsep.join([str(REPO / "src"), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])


# ------------------------------------------------------------------ helpers


def stub_runner(scenario, *, params, sysctls, profile, seed, trace):
    """A scenario stand-in with run_scenario's signature: deterministic, counts its calls."""
    log = os.environ.get("SWEEP_STUB_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps([params, sysctls, profile, seed]) + "\n")
    if params.get("explode") == "true":
        raise RuntimeError(f"boom at duration {params.get('duration')}")
    duration = int(params.get("duration", "10"))
    low, high = 32768, 60999
    for s in sysctls:
        name, _, value = s.partition("=")
        if name == "c1:net.ipv4.ip_local_port_range":
            low, high = map(int, value.split())
    ports = high - low + 1
    opened = duration * 4000 + seed
    return {
        "metrics": {
            "succeeded": min(opened, ports),
            "first_failure_at": round(ports / 4000, 3) if opened > ports else None,
            "per_second": [4000] * min(duration, 3),
            "nested": {"ports": ports, "profile": profile},
        },
        "checks": [{"name": "ran", "passed": True, "detail": ""}],
        "sim_time": float(duration),
    }


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


STUB_SPEC = """
scenario = "stub"
profile = ["linux"]
seeds = [1, 2]
metrics = ["succeeded", "first_failure_at", "per_second", "nested.ports", "checks_passed"]
[grid]
"params.duration" = [5, 10]
"sysctl.c1:net.ipv4.ip_local_port_range" = ["32768 60999", "1025 65535"]
[output]
csv = "out/stub.csv"
parquet = "out/stub.parquet"
plot = { x = "params.duration", y = "succeeded", file = "out/stub.png" }
"""

NC_SPEC = """
scenario = "nc-timewait"
profile = ["linux", "rfc793"]
seeds = [1]
trace = true
metrics = ["time_wait_seconds", "time_wait_hosts", "checks_passed"]
[grid]
"params.msl" = [30, 45]
[output]
csv = "out/nc.csv"
parquet = "out/nc.parquet"
plot = { x = "params.msl", y = "time_wait_seconds", file = "out/nc.png" }
"""


def load_stub(tmp_path: Path, text: str = STUB_SPEC) -> sweep.SweepSpec:
    return sweep.load_spec(write_spec(tmp_path / "stub.toml", text), known_scenarios={"stub"})


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def calls(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def sweep_cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["sweep", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


# --------------------------------------------------------------- the spec


def test_examples_are_valid_specs():
    nc = sweep.load_spec(EXAMPLES / "nc-timewait-msl.toml")
    assert nc.point_count == 8 and nc.trace is True
    assert nc.csv == EXAMPLES / "out" / "nc-timewait-msl.csv"
    names = set(sweep._registry_names() or ()) | {"port-exhaustion"}
    pe = sweep.load_spec(EXAMPLES / "port-exhaustion.toml", known_scenarios=names)
    assert pe.point_count == 8  # 1 profile x 2 seeds x 2 durations x 2 port ranges
    assert pe.metrics == ("succeeded", "first_failure_at")
    assert pe.plot is not None and pe.plot.x == "params.duration"


def test_shipped_example_runs_from_any_directory_and_writes_there(tmp_path, capsys):
    """`sweep --example`: the spec comes from the package, outputs and cache go to the cwd."""
    import os

    from timewait.cli import main

    assert main(["sweep", "--examples"]) == 0
    listed = capsys.readouterr().out
    assert "port-exhaustion" in listed and "nc-timewait-msl" in listed
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        rc = main(["sweep", "--example", "nc-timewait-msl", "--workers", "1", "--json"])
    finally:
        os.chdir(cwd)
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert (tmp_path / "out" / "nc-timewait-msl.csv").exists() and (tmp_path / ".sweep-cache").is_dir()
    assert not (EXAMPLES / "out").exists() and not (EXAMPLES / ".sweep-cache").exists()
    assert main(["sweep", "--example", "nope"]) == 2
    assert "no such example" in capsys.readouterr().err


def test_expand_points_params_and_sysctls(tmp_path):
    spec = load_stub(tmp_path)
    points = sweep.expand(spec)
    assert len(points) == spec.point_count == 8
    p = points[1]
    assert (p.profile, p.seed) == ("linux", 1)
    assert p.params == {"duration": "5"}
    assert p.sysctls == ["c1:net.ipv4.ip_local_port_range=1025 65535"]
    assert p.label() == "params.duration=5 sysctl.c1:net.ipv4.ip_local_port_range='1025 65535' profile=linux seed=1"
    assert points[4].seed == 2
    keys = {q.cache_key("1.0", sweep.DEFAULT_RUNNER) for q in points}
    assert len(keys) == 8
    assert p.cache_key("1.0", sweep.DEFAULT_RUNNER) != p.cache_key("1.1", sweep.DEFAULT_RUNNER)


def test_out_dir_replaces_output_folders(tmp_path):
    spec = sweep.load_spec(write_spec(tmp_path / "s.toml", STUB_SPEC), known_scenarios={"stub"},
                           out_dir=tmp_path / "elsewhere")
    assert spec.csv == tmp_path / "elsewhere" / "stub.csv"
    assert spec.plot.file == tmp_path / "elsewhere" / "stub.png"


def test_output_defaults_next_to_the_spec(tmp_path):
    spec = load_stub(tmp_path, 'scenario = "stub"\nmetrics = ["succeeded"]\n')
    assert spec.csv == tmp_path / "out" / "stub.csv"
    assert spec.parquet == tmp_path / "out" / "stub.parquet"
    assert spec.profiles == ("linux",) and spec.seeds == (1,) and spec.point_count == 1


BAD_SPECS = [
    ('scenario = "stub"\nmetrics = ["a"]\nsed = [1]\n', "unknown key 'sed'; allowed: scenario, profile"),
    ('scenario = "nope"\nmetrics = ["a"]\n', "unknown scenario 'nope'"),
    ('scenario = 3\nmetrics = ["a"]\n', "'scenario' must be"),
    ('scenario = "stub"\n', "'metrics' is required"),
    ('scenario = "stub"\nmetrics = "a"\nseeds = ["x"]\n', "'seeds' must be a non-empty list of integers"),
    ('scenario = "stub"\nmetrics = []\n', "'metrics' must be a non-empty list"),
    ('scenario = "stub"\nmetrics = ["status"]\n', "clashes with a column"),
    ('scenario = "stub"\nmetrics = ["a"]\nprofile = ["linux", "bsd"]\n', "unknown profile 'bsd'"),
    ('scenario = "stub"\nmetrics = ["a"]\n[grid]\n"duration" = [1]\n', 'must start with "params." or "sysctl."'),
    ('scenario = "stub"\nmetrics = ["a"]\n[grid]\n"params.duration" = 5\n', "must be a non-empty list"),
    ('scenario = "stub"\nmetrics = ["a"]\n[grid]\n"params.duration" = [[1]]\n', "must be a non-empty list"),
    ('scenario = "stub"\nmetrics = ["a"]\n[grid]\n"params.d" = [1, 1]\n', "lists a value twice"),
    ('scenario = "stub"\nmetrics = ["a"]\n[grid]\n"sysctl.net.ipv4.tcp_tw_reuse" = [1]\n', 'expected "sysctl.HOST:NAME"'),
    ('scenario = "stub"\nmetrics = ["a"]\n[grid]\n"sysctl.c1:net.ipv4.tcp_nope" = [1]\n', "unknown sysctl 'net.ipv4.tcp_nope'"),
    ('scenario = "stub"\nmetrics = ["a"]\n[grid]\n"sysctl.c1:net.ipv4.tcp_tw_reuse" = [0, 3]\n', "allowed values are 0, 1, 2"),
    ('scenario = "stub"\nmetrics = ["a"]\n[grid]\n"sysctl.c1:net.ipv4.tcp_tw_recycle" = [1]\n', "removed in Linux 4.12"),
    ('scenario = "stub"\nmetrics = ["a"]\n[output]\njson = "x.json"\n', "unknown key 'json'; allowed: csv, parquet, plot"),
    ('scenario = "stub"\nmetrics = ["a"]\n[output]\ncsv = "x.txt"\n', "must end in .csv"),
    ('scenario = "stub"\nmetrics = ["a"]\n[output]\nplot = { x = "seed", y = "b", file = "p.png" }\n', "plot y 'b' is not among the metrics"),
    ('scenario = "stub"\nmetrics = ["a"]\n[output]\nplot = { x = "params.q", y = "a", file = "p.png" }\n', "plot x 'params.q' is not swept"),
    ('scenario = "stub"\nmetrics = ["a"]\n[output]\nplot = { x = "seed", y = "a" }\n', "plot needs 'file'"),
    ('scenario = "stub"\nmetrics = ["a"]\ntrace = "yes"\n', "'trace' must be true or false"),
    ('scenario = "stub"\nmetrics = ["a"\n', "not valid TOML"),
]


@pytest.mark.parametrize("text, words", BAD_SPECS)
def test_spec_errors_are_one_line(tmp_path, text, words):
    with pytest.raises(UsageError) as e:
        load_stub(tmp_path, text)
    msg = str(e.value)
    assert words in msg
    assert "\n" not in msg


def test_scenario_parameters_are_checked_by_the_scenario(tmp_path):
    base = 'scenario = "nc-timewait"\nmetrics = ["time_wait_seconds"]\n[grid]\n'
    with pytest.raises(UsageError, match="unknown parameter 'duration' for nc-timewait; allowed: close_at"):
        sweep.load_spec(write_spec(tmp_path / "a.toml", base + '"params.duration" = [1]\n'))
    with pytest.raises(UsageError, match=r"close_at='soon': expected float"):
        sweep.load_spec(write_spec(tmp_path / "b.toml", base + '"params.close_at" = [1, "soon"]\n'))


def test_too_many_points(tmp_path):
    text = 'scenario = "stub"\nmetrics = ["a"]\n[grid]\n' + "".join(
        f'"params.p{i}" = [{", ".join(map(str, range(10)))}]\n' for i in range(6))
    with pytest.raises(UsageError, match="1000000 points; a sweep may have at most 100000"):
        load_stub(tmp_path, text)


def test_cli_bad_spec_runs_nothing(tmp_path, capsys):
    spec = write_spec(tmp_path / "bad.toml", 'scenario = "nc-timewait"\nmetrics = ["x"]\nprofile = "bsd"\n')
    rc, out, err = sweep_cli(capsys, spec)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "unknown profile 'bsd'" in err
    assert not (tmp_path / ".sweep-cache").exists() and not (tmp_path / "out").exists()


def test_cli_missing_spec_and_bad_scheduler(tmp_path, capsys):
    rc, _, err = sweep_cli(capsys, tmp_path / "none.toml")
    assert rc == 2 and "does not exist" in err
    spec = write_spec(tmp_path / "nc.toml", NC_SPEC)
    rc, _, err = sweep_cli(capsys, spec, "--scheduler", "localhost:8786")
    assert rc == 2 and "expected tcp://HOST:PORT" in err
    rc, _, err = sweep_cli(capsys, spec, "--scheduler", "tcp://127.0.0.1:1", "--workers", "2")
    assert rc == 2 and "--workers is for local runs" in err
    rc, _, err = sweep_cli(capsys, spec, "--workers", "0")
    assert rc == 2 and "--workers must be at least 1" in err
    assert not (tmp_path / ".sweep-cache").exists()


# ----------------------------------------------------------- running points


def test_local_processes_write_csv_parquet_and_plot(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("SWEEP_STUB_LOG", str(log))
    spec = load_stub(tmp_path)
    report = sweep.run_sweep(spec, workers=2, runner=stub_runner, progress=False)
    assert (report.computed, report.cached, report.failed) == (8, 0, 0)
    assert calls(log) == 8
    rows = read_csv(spec.csv)
    assert list(rows[0]) == spec.columns
    assert [r["point"] for r in rows] == [str(i) for i in range(8)]
    r = rows[1]  # duration 5, 1025-65535, seed 1
    assert r["params.duration"] == "5" and r["sysctl.c1:net.ipv4.ip_local_port_range"] == "1025 65535"
    assert r["succeeded"] == "20001" and r["first_failure_at"] == ""
    assert r["nested.ports"] == "64511" and r["per_second"] == "[4000, 4000, 4000]"
    assert r["checks_passed"] == "True" and r["status"] == "ok" and r["cached"] == "False"
    assert rows[0]["succeeded"] == "20001" and rows[2]["succeeded"] == "28232"
    assert rows[2]["first_failure_at"] == "7.058"
    t = pq.read_table(spec.parquet)
    assert t.column_names == spec.columns
    assert t.column("succeeded").to_pylist() == [int(r["succeeded"]) for r in rows]
    assert str(t.schema.field("succeeded").type) == "int64"
    assert str(t.schema.field("first_failure_at").type) == "double"
    assert t.column("params.duration").to_pylist() == [5, 5, 10, 10, 5, 5, 10, 10]
    assert spec.plot.file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in spec.csv.parent.iterdir()) == ["stub.csv", "stub.parquet", "stub.png"]


def test_in_process_and_process_pool_agree(tmp_path):
    spec = load_stub(tmp_path)
    one = sweep.run_sweep(spec, workers=1, runner=stub_runner, use_cache=False, write=False)
    two = sweep.run_sweep(spec, workers=2, runner=stub_runner, use_cache=False, write=False)
    assert sweep.table(spec, one.outcomes) == sweep.table(spec, two.outcomes)


def test_rerun_takes_every_point_from_the_cache(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("SWEEP_STUB_LOG", str(log))
    spec = load_stub(tmp_path)
    first = sweep.run_sweep(spec, workers=2, runner=stub_runner)
    before = read_csv(spec.csv)
    second = sweep.run_sweep(spec, workers=2, runner=stub_runner)
    assert (second.computed, second.cached) == (0, 8)
    assert calls(log) == 8  # the runner was not called again
    after = read_csv(spec.csv)
    assert [r["cached"] for r in after] == ["True"] * 8
    strip = [{k: v for k, v in r.items() if k != "cached"} for r in before]
    assert strip == [{k: v for k, v in r.items() if k != "cached"} for r in after]
    assert len(list((tmp_path / ".sweep-cache").glob("*.json"))) == 8 == first.computed


def test_cache_key_follows_engine_version_and_no_cache(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("SWEEP_STUB_LOG", str(log))
    spec = load_stub(tmp_path)
    cache = tmp_path / "c"
    sweep.run_sweep(spec, workers=1, runner=stub_runner, cache_dir=cache)
    assert sweep.run_sweep(spec, workers=1, runner=stub_runner, cache_dir=cache).computed == 0
    assert sweep.run_sweep(spec, workers=1, runner=stub_runner, use_cache=False).computed == 8
    monkeypatch.setattr(sweep, "engine_version", lambda: "next")
    assert sweep.run_sweep(spec, workers=1, runner=stub_runner, cache_dir=cache).computed == 8
    assert calls(log) == 24


def test_a_failing_point_is_reported_and_the_sweep_goes_on(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("SWEEP_STUB_LOG", str(log))
    text = STUB_SPEC.replace('"params.duration" = [5, 10]', '"params.duration" = [5, 10]\n"params.explode" = [false, true]')
    spec = load_stub(tmp_path, text)
    report = sweep.run_sweep(spec, workers=2, runner=stub_runner)
    assert (report.computed, report.failed) == (16, 8)
    bad = report.failures[0]
    assert bad.point.params["explode"] == "true"
    assert report.error_of(bad).startswith("RuntimeError: boom at duration 5 at test_sweep.py:")
    rows = read_csv(spec.csv)
    # duration, explode, port range: the last grid key varies fastest
    assert [r["status"] for r in rows[:4]] == ["ok", "ok", "failed", "failed"]
    assert rows[2]["succeeded"] == "" and "boom" in rows[2]["error"]
    assert rows[0]["succeeded"] == "20001"
    doc = report.to_json()
    assert doc["failed"] == 8 and "params.explode=true" in doc["failures"][0]["label"]
    # Failures are not cached: a rerun retries exactly them.
    again = sweep.run_sweep(spec, workers=2, runner=stub_runner)
    assert (again.computed, again.cached, again.failed) == (8, 8, 8)
    assert calls(log) == 24


def test_a_missing_metric_fails_the_row_but_the_run_is_cached(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("SWEEP_STUB_LOG", str(log))
    spec = load_stub(tmp_path, STUB_SPEC.replace('"checks_passed"]', '"checks_passed", "nested.nope"]'))
    report = sweep.run_sweep(spec, workers=1, runner=stub_runner)
    assert report.failed == 8
    assert report.error_of(report.failures[0]) == (
        "metric 'nested.nope' not in the results; metrics: first_failure_at, nested, per_second, succeeded")
    fixed = load_stub(tmp_path)
    again = sweep.run_sweep(fixed, workers=1, runner=stub_runner)
    assert (again.computed, again.failed) == (0, 0)
    assert calls(log) == 8


def test_metric_paths():
    result = {"metrics": {"a": {"b": [1, {"c": 7}]}, "x.y": 3}, "checks": [{"passed": True}, {"passed": False}],
              "sim_time": 12.5}
    assert sweep.metric_value(result, "a.b.1.c") == 7
    assert sweep.metric_value(result, "a.b.-2") == 1
    assert sweep.metric_value(result, "x.y") == 3
    assert sweep.metric_value(result, "checks_passed") is False
    assert sweep.metric_value(result, "sim_time") == 12.5
    with pytest.raises(KeyError):
        sweep.metric_value(result, "a.b.5")


# ------------------------------------------------------- the real scenario


def test_real_scenario_on_local_processes(tmp_path, capsys):
    spec = write_spec(tmp_path / "nc.toml", NC_SPEC)
    rc, out, err = sweep_cli(capsys, spec, "--workers", "2", "--json")
    assert rc == 0 and err == ""
    doc = json.loads(out)
    assert (doc["points"], doc["computed"], doc["failed"]) == (4, 4, 0)
    rows = read_csv(tmp_path / "out" / "nc.csv")
    got = {(r["profile"], r["params.msl"]): r["time_wait_seconds"] for r in rows}
    # Linux fixes TIME_WAIT at 60 s (TW-3); the textbook profile takes 2 x MSL.
    assert got == {("linux", "30"): "60.0", ("linux", "45"): "60.0",
                   ("rfc793", "30"): "60.0", ("rfc793", "45"): "90.0"}
    assert {r["time_wait_hosts"] for r in rows} == {'["c1"]'}
    assert {r["checks_passed"] for r in rows} == {"True"}
    rc, out, _ = sweep_cli(capsys, spec, "--json")
    assert json.loads(out)["computed"] == 0


def test_port_exhaustion_sweep_uses_each_port_once(tmp_path, capsys):
    from timewait.scenarios import all_scenarios

    if "port-exhaustion" not in all_scenarios():
        pytest.skip("the port-exhaustion scenario is not registered yet")
    spec = write_spec(tmp_path / "pe.toml", """
scenario = "port-exhaustion"
seeds = [1]
metrics = ["succeeded", "first_failure_at", "failed.EADDRNOTAVAIL"]
[grid]
"params.duration" = [2]
"sysctl.c1:net.ipv4.ip_local_port_range" = ["40000 40099", "40000 40199"]
[output]
plot = { x = "sysctl.c1:net.ipv4.ip_local_port_range", y = "succeeded", file = "out/pe.png" }
""")
    rc, out, _ = sweep_cli(capsys, spec, "--workers", "2", "--json")
    assert rc == 0 and json.loads(out)["computed"] == 2
    rows = read_csv(tmp_path / "out" / "pe.csv")
    # 2 s is far inside one 60 s TIME_WAIT: every port serves once, then EADDRNOTAVAIL.
    assert [r["succeeded"] for r in rows] == ["100", "200"]
    assert all(float(r["first_failure_at"]) < 2 and int(r["failed.EADDRNOTAVAIL"]) > 0 for r in rows)
    assert (tmp_path / "out" / "pe.png").exists()


# A metric nc-timewait records but whose path these runs lack (one TIME_WAIT host, no sixth):
# a misspelled top-level name is refused before any point runs (test_sweep_hardening.py).
LACKING = "time_wait_hosts.5"


def test_cli_exit_status_says_a_point_failed(tmp_path, capsys):
    spec = write_spec(tmp_path / "nc.toml", NC_SPEC.replace('"checks_passed"]', f'"checks_passed", "{LACKING}"]'))
    rc, out, _ = sweep_cli(capsys, spec, "--workers", "1", "--out", tmp_path / "o")
    assert rc == 1
    assert "4 failed" in out
    assert "failed point 0: params.msl=30 profile=linux seed=1" in out
    assert f"metric '{LACKING}' not in the results" in out


# ------------------------------------------------------------ progress bar


def test_no_progress_bar_when_piped(tmp_path):
    spec = write_spec(tmp_path / "nc.toml", NC_SPEC)
    p = subprocess.run([sys.executable, "-m", "timewait", "sweep", str(spec), "--workers", "1"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": TREE_PYTHONPATH})
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert "4 computed" in p.stdout


def test_progress_bar_on_a_terminal(tmp_path):
    spec = write_spec(tmp_path / "nc.toml", NC_SPEC)
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100", "PYTHONPATH": TREE_PYTHONPATH}
    env.pop("NO_COLOR", None)
    rc, text = read_terminal([sys.executable, "-m", "timewait", "sweep", str(spec), "--workers", "1"],
                             env=env, cwd=tmp_path, stdout_on_tty=False, limit_s=120)
    assert rc == 0
    assert "sweep" in text and "4/4" in text


# ------------------------------------------------------- a real Dask cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A `dask scheduler` and one `dask worker` on loopback, stopped afterwards."""
    pytest.importorskip("distributed", reason="needs dask[distributed]")
    if shutil.which("dask") is None and not _has_dask_cli():
        pytest.skip("the dask command line is not installed")
    from distributed import Client

    work = tmp_path_factory.mktemp("dask")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_TEMPORARY_DIRECTORY": str(work), "PYTHONPATH": TREE_PYTHONPATH}
    dask = [sys.executable, "-m", "dask"]
    logs = [open(work / "scheduler.log", "wb"), open(work / "worker.log", "wb")]
    procs = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=logs[0], stderr=subprocess.STDOUT, cwd=work, env=env)]
    try:
        procs.append(subprocess.Popen([*dask, "worker", address, "--nworkers", "1", "--nthreads", "1",
                                       "--no-dashboard", "--local-directory", str(work)],
                                      stdout=logs[1], stderr=subprocess.STDOUT, cwd=work, env=env))
        with Client(address, timeout="60s") as c:
            c.wait_for_workers(1, timeout=90)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        for f in logs:
            f.close()


def _has_dask_cli() -> bool:
    with contextlib.suppress(Exception):
        import dask.cli  # noqa: F401

        return True
    return False


def test_dask_cluster_gives_the_local_results_and_caches(tmp_path, capsys, dask_cluster):
    spec = write_spec(tmp_path / "nc.toml", NC_SPEC)
    rc, out, _ = sweep_cli(capsys, spec, "--workers", "2", "--out", tmp_path / "local",
                           "--cache", tmp_path / "cache-local", "--json")
    assert rc == 0 and json.loads(out)["computed"] == 4
    rc, out, _ = sweep_cli(capsys, spec, "--scheduler", dask_cluster, "--out", tmp_path / "dask",
                           "--cache", tmp_path / "cache-dask", "--json")
    doc = json.loads(out)
    assert rc == 0 and (doc["computed"], doc["failed"], doc["where"]) == (4, 0, dask_cluster)
    local = (tmp_path / "local" / "nc.csv").read_text()
    assert (tmp_path / "dask" / "nc.csv").read_text() == local
    assert "rfc793,1,45,90.0" in local
    assert pq.read_table(tmp_path / "dask" / "nc.parquet").equals(pq.read_table(tmp_path / "local" / "nc.parquet"))
    rc, out, _ = sweep_cli(capsys, spec, "--scheduler", dask_cluster, "--out", tmp_path / "dask",
                           "--cache", tmp_path / "cache-dask", "--json")
    assert rc == 0 and (json.loads(out)["computed"], json.loads(out)["cached"]) == (0, 4)


def test_dask_reports_a_failing_point(tmp_path, capsys, dask_cluster):
    spec = write_spec(tmp_path / "nc.toml", NC_SPEC.replace('"checks_passed"]', f'"checks_passed", "{LACKING}"]'))
    rc, out, _ = sweep_cli(capsys, spec, "--scheduler", dask_cluster, "--no-cache", "--json")
    doc = json.loads(out)
    assert rc == 1 and doc["failed"] == 4 and doc["computed"] == 4
    assert f"metric '{LACKING}' not in the results" in doc["failures"][0]["error"]


def test_engine_version_is_package_version_plus_source_digest():
    import re

    import timewait

    v = sweep.engine_version()
    assert re.fullmatch(re.escape(timewait.__version__) + r"\+[0-9a-f]{12}", v)
    assert sweep.engine_version() == v
