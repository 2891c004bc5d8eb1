"""`timewait sweep` hardening (issue 15): the spec checked against the scenario before any
point runs, a cache that tells tampered entries from good ones, Dask clusters that cannot take
the points said within 5 s, output paths checked first.

Everything runs for real: the real ``nc-timewait``/``nat`` scenarios for spec checks, the
stand-in runner of ``test_sweep.py`` (deterministic, counts its calls) for the cache, an
in-process ``distributed`` cluster for Dask.
"""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_sweep import (
    STUB_SPEC,
    TREE_PYTHONPATH,
    calls,
    load_stub,
    read_csv,
    stub_runner,
    sweep_cli,
    write_spec,
)
from timewait import sweep
from timewait.errors import UsageError

NC = 'scenario = "nc-timewait"\nmetrics = ["time_wait_seconds"]\n'


def one_line_error(rc: int, out: str, err: str, words: str) -> None:
    """Exit 2, nothing on stdout, exactly one line on stderr containing ``words``, no traceback."""
    assert rc == 2, (out, err)
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("timewait: error: "), err
    assert words in err, err
    assert "Traceback" not in err


def nothing_ran(tmp_path: Path) -> None:
    """No point ran: no cache entry, no output folder."""
    assert not (tmp_path / ".sweep-cache").exists()
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------- spec vs scenario


@pytest.mark.parametrize("values, words", [
    ("[30, nan]", "grid 'params.msl': nan is not a finite number; values must be finite"),
    ("[inf]", "grid 'params.msl': inf is not a finite number"),
    ("[-inf, 30]", "grid 'params.msl': -inf is not a finite number"),
    ('["nan"]', "grid 'params.msl': --set msl='nan': not a finite number"),   # the Param's own bound
    ('["1e999"]', "grid 'params.msl': --set msl='1e999': not a finite number"),
])
def test_non_finite_grid_values_are_refused_before_any_point(tmp_path, capsys, values, words):
    spec = write_spec(tmp_path / "s.toml", NC + f'[grid]\n"params.msl" = {values}\n')
    one_line_error(*sweep_cli(capsys, spec), words)
    nothing_ran(tmp_path)


def test_nan_in_a_sysctl_grid_is_refused(tmp_path):
    with pytest.raises(UsageError, match="grid 'sysctl.c1:net.ipv4.tcp_fin_timeout': nan is not a finite"):
        load_stub(tmp_path, 'scenario = "stub"\nmetrics = ["a"]\n[grid]\n"sysctl.c1:net.ipv4.tcp_fin_timeout" = [nan]\n')


def test_unknown_sysctl_host_is_refused_naming_the_hosts(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.toml", NC + '[grid]\n"sysctl.c9:net.ipv4.tcp_tw_reuse" = [0, 1]\n')
    one_line_error(*sweep_cli(capsys, spec),
                   "grid 'sysctl.c9:net.ipv4.tcp_tw_reuse': nc-timewait has no host 'c9' (profile=linux); "
                   "its hosts: c1, c2, or '*' for all")
    nothing_ran(tmp_path)


def test_sysctl_hosts_are_asked_of_the_scenario_for_each_params_combination(tmp_path):
    # nat makes c1..cN from its `clients`: c3 exists with 3 or 4 clients, not with 1.
    base = 'scenario = "nat"\nmetrics = ["served"]\n[grid]\n"sysctl.c3:net.ipv4.tcp_tw_reuse" = [1]\n'
    spec = sweep.load_spec(write_spec(tmp_path / "ok.toml", base + '"params.clients" = [3, 4]\n'))
    assert spec.point_count == 2
    with pytest.raises(UsageError, match=r"nat has no host 'c3' \(params.clients=1 profile=linux\); "
                                         r"its hosts: c1, server"):
        sweep.load_spec(write_spec(tmp_path / "bad.toml", base + '"params.clients" = [4, 1]\n'))
    # '*' is every host of every point.
    sweep.load_spec(write_spec(tmp_path / "star.toml", NC + '[grid]\n"sysctl.*:net.ipv4.tcp_tw_reuse" = [1]\n'))


def test_the_host_probe_runs_no_simulated_time():
    from timewait.scenarios import get_scenario

    sc = get_scenario("nc-timewait")
    t0 = time.perf_counter()
    assert sweep.scenario_hosts(sc, {}, "linux", 1) == ["c1", "c2"]
    assert sweep.scenario_hosts(sc, {"msl": "-1"}, "linux", 1) is None  # a bad value: left to the point
    assert time.perf_counter() - t0 < 2


def test_misspelled_metric_fails_before_any_point_runs(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.toml", 'scenario = "nc-timewait"\ntrace = true\n'
                      'metrics = ["time_wait_secs", "checks_passed"]\n[grid]\n"params.msl" = [30, 45]\n')
    one_line_error(*sweep_cli(capsys, spec, "--workers", "1"),
                   "metric 'time_wait_secs' is not one nc-timewait records (did you mean 'time_wait_seconds'?); "
                   "its metrics: client_port, time_wait_entered_at, time_wait_hosts, time_wait_left_at, "
                   "time_wait_seconds, and checks_passed, sim_time")
    nothing_ran(tmp_path)


def test_metric_paths_and_special_metrics_are_accepted(tmp_path):
    spec = write_spec(tmp_path / "pe.toml", 'scenario = "port-exhaustion"\n'
                      'metrics = ["failed.EADDRNOTAVAIL", "succeeded_per_second.0", "checks_passed", "sim_time"]\n')
    assert sweep.load_spec(spec).metrics[0] == "failed.EADDRNOTAVAIL"
    with pytest.raises(UsageError, match="metric 'faild.EADDRNOTAVAIL' is not one port-exhaustion records"):
        sweep.load_spec(write_spec(tmp_path / "bad.toml", 'scenario = "port-exhaustion"\n'
                                   'metrics = ["faild.EADDRNOTAVAIL"]\n'))


@pytest.mark.parametrize("name, params, sysctls", [
    ("nc-timewait", {}, []), ("tw-reuse", {}, []), ("tw-reuse", {"lost_ack": "off"}, []),
    ("tw-reuse", {}, ["c1:net.ipv4.tcp_tw_reuse=0"]), ("timestamps", {}, []),
])
def test_metrics_read_from_source_cover_what_runs_record(name, params, sysctls):
    """The names read from the source are a superset of what runs write, on every code path tried."""
    from timewait.scenarios import get_scenario, run_scenario

    names = sweep.scenario_metrics(get_scenario(name))
    r = run_scenario(name, params=params, sysctls=sysctls, trace=False)
    assert names is not None and set(r.metrics) <= names


@pytest.mark.parametrize("src", [
    "def run(lab):\n    lab.metrics[name] = 1\n",
    "def run(lab):\n    m = lab.metrics\n    m.update(**d)\n",
    "def run(lab):\n    helper(lab.metrics)\n",
    "def run(lab):\n    lab.metrics = {'a': 1}\n",
    "def run(lab):\n    m = lab.metrics\n    def later():\n        keep.append(m)\n",
])
def test_metric_writes_that_cannot_be_read_turn_the_check_off(src):
    assert sweep._MetricWrites.of(ast.parse(src)) is None


def test_metric_writes_read_from_source():
    src = ("def run(lab):\n    m = lab.metrics\n    m.update(a=1, b=2)\n    m['c'], m['d'] = 3, 4\n"
           "    lab.metrics['e'] = m.get('a')\n    def inner():\n        m['f'] += 1\n"
           "def other(x):\n    m = 3\n    print(m)\n")
    assert sweep._MetricWrites.of(ast.parse(src)) == {"a", "b", "c", "d", "e", "f"}


# ------------------------------------------------------------------ the cache


def cached(tmp_path: Path, monkeypatch, capsys) -> tuple[sweep.SweepSpec, Path, list[dict[str, str]]]:
    """A finished stub sweep: its spec, its cache folder, its table."""
    monkeypatch.setenv("SWEEP_STUB_LOG", str(tmp_path / "calls.log"))
    spec = load_stub(tmp_path)
    first = sweep.run_sweep(spec, workers=1, runner=stub_runner, progress=False)
    assert first.computed == 8 and capsys.readouterr().err == ""
    return spec, tmp_path / ".sweep-cache", read_csv(spec.csv)


def entry_of(spec: sweep.SweepSpec, cache: Path, i: int) -> Path:
    p = sweep.expand(spec)[i]
    return cache / f"{p.cache_key(sweep.engine_version(), sweep.runner_name(stub_runner))}.json"


def rerun(spec: sweep.SweepSpec, capsys) -> tuple[sweep.SweepReport, list[str]]:
    report = sweep.run_sweep(spec, workers=1, runner=stub_runner, progress=False)
    err = capsys.readouterr().err
    return report, err.splitlines()


def strip_cached(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "cached"} for r in rows]


def test_entries_carry_their_key_and_digest_and_leave_no_temporary_file(tmp_path, monkeypatch, capsys):
    spec, cache, _ = cached(tmp_path, monkeypatch, capsys)
    files = sorted(cache.iterdir())
    assert len(files) == 8 and all(f.suffix == ".json" and not f.name.startswith(".") for f in files)
    doc = json.loads(entry_of(spec, cache, 3).read_text())
    assert doc["key"] == entry_of(spec, cache, 3).stem
    assert doc["digest"] == sweep.entry_digest(doc) and len(doc["digest"]) == 64
    again, warnings = rerun(spec, capsys)
    assert (again.computed, again.cached, warnings) == (0, 8, [])


def test_swapped_entries_are_recomputed_with_a_warning_each(tmp_path, monkeypatch, capsys):
    spec, cache, before = cached(tmp_path, monkeypatch, capsys)
    a, b = entry_of(spec, cache, 1), entry_of(spec, cache, 6)
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    report, warnings = rerun(spec, capsys)
    assert (report.computed, report.cached, report.failed) == (2, 6, 0)
    assert calls(tmp_path / "calls.log") == 10
    assert len(warnings) == 2
    assert warnings[0].startswith(f"timewait: warning: cache entry {a} (point 1: params.duration=5 ")
    assert "holds the entry of another point" in warnings[0] and warnings[0].endswith("; recomputing it")
    assert f"cache entry {b} (point 6:" in warnings[1]
    assert report.warnings == [w.removeprefix("timewait: warning: ") for w in warnings]
    assert strip_cached(read_csv(spec.csv)) == strip_cached(before)  # not the other point's numbers
    third, warnings = rerun(spec, capsys)
    assert (third.computed, warnings) == (0, [])  # the recomputed entries replaced the bad ones


def test_an_edited_entry_is_recomputed_with_a_warning(tmp_path, monkeypatch, capsys):
    spec, cache, before = cached(tmp_path, monkeypatch, capsys)
    f = entry_of(spec, cache, 2)
    doc = json.loads(f.read_text())
    doc["result"]["metrics"]["succeeded"] = 1  # a hand edit that leaves valid JSON
    f.write_text(json.dumps(doc, indent=1))
    report, warnings = rerun(spec, capsys)
    assert (report.computed, report.cached) == (1, 7)
    assert warnings == [f"timewait: warning: cache entry {f} (point 2: params.duration=10 "
                        "sysctl.c1:net.ipv4.ip_local_port_range='32768 60999' profile=linux seed=1) was edited: "
                        "its digest does not match its content; recomputing it"]
    assert read_csv(spec.csv)[2]["succeeded"] == before[2]["succeeded"] == "28232"


@pytest.mark.parametrize("damage, words", [
    (lambda doc, raw: json.dumps({**doc, "result": [1, 2], "digest": sweep.entry_digest({**doc, "result": [1, 2]})}),
     "is malformed: 'result' is list, not a table"),
    (lambda doc, raw: json.dumps({**doc, "result": "x", "digest": sweep.entry_digest({**doc, "result": "x"})}),
     "is malformed: 'result' is str, not a table"),
    (lambda doc, raw: json.dumps({**doc, "result": {"metrics": 3},
                                  "digest": sweep.entry_digest({**doc, "result": {"metrics": 3}})}),
     "'result' needs a 'metrics' table"),
    (lambda doc, raw: raw[: len(raw) // 2], "is not valid JSON (truncated or damaged)"),
    (lambda doc, raw: "", "is not valid JSON"),
    (lambda doc, raw: "[1, 2]", "is malformed: not a JSON object"),
    (lambda doc, raw: json.dumps({k: v for k, v in doc.items() if k not in ("key", "digest")}),
     "has no key and digest"),
    (lambda doc, raw: "\udcff", "is not valid JSON"),
])
def test_a_malformed_entry_is_recomputed_and_later_sweeps_work(tmp_path, monkeypatch, capsys, damage, words):
    spec, cache, before = cached(tmp_path, monkeypatch, capsys)
    f = entry_of(spec, cache, 5)
    raw = f.read_text()
    f.write_bytes(damage(json.loads(raw), raw).encode("utf-8", "surrogateescape"))
    report, warnings = rerun(spec, capsys)
    assert (report.computed, report.failed) == (1, 0)
    assert len(warnings) == 1 and f"cache entry {f} (point 5:" in warnings[0] and words in warnings[0]
    assert strip_cached(read_csv(spec.csv)) == strip_cached(before)
    third, warnings = rerun(spec, capsys)
    assert (third.computed, third.cached, warnings) == (0, 8, [])


def test_an_unreadable_entry_is_recomputed(tmp_path, monkeypatch, capsys):
    spec, cache, _ = cached(tmp_path, monkeypatch, capsys)
    f = entry_of(spec, cache, 0)
    f.unlink()
    f.mkdir()  # a folder where the entry should be: cannot be read, cannot be replaced
    report, warnings = rerun(spec, capsys)
    assert (report.computed, report.failed) == (1, 0)
    assert "cannot be read" in warnings[0] and "point 0 not cached" in warnings[1] and len(warnings) == 2


def test_cache_warnings_in_the_cli_json(tmp_path, capsys):
    spec = write_spec(tmp_path / "nc.toml", NC + '[grid]\n"params.msl" = [30]\n')
    rc, out, err = sweep_cli(capsys, spec, "--workers", "1", "--json")
    assert rc == 0 and err == "" and json.loads(out)["warnings"] == []
    (entry,) = (tmp_path / ".sweep-cache").iterdir()
    entry.write_text(entry.read_text().replace('"time_wait_seconds": 60.0', '"time_wait_seconds": 1.0'))
    rc, out, err = sweep_cli(capsys, spec, "--workers", "1", "--json")
    doc = json.loads(out)
    assert rc == 0 and (doc["computed"], doc["cached"]) == (1, 0)
    assert err.count("\n") == 1 and "was edited" in err and doc["warnings"][0] in err
    assert read_csv(tmp_path / "out" / "nc.csv")[0]["time_wait_seconds"] == "60.0"


# ----------------------------------------------------------------------- Dask


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_closed_scheduler_port_is_one_line_within_5_s(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.toml", NC)
    address = f"tcp://127.0.0.1:{closed_port()}"
    t0 = time.monotonic()
    res = sweep_cli(capsys, spec, "--scheduler", address)
    assert time.monotonic() - t0 < 5
    one_line_error(*res, f"cannot reach the Dask scheduler at {address}: connection refused")
    nothing_ran(tmp_path)


def test_closed_scheduler_port_from_the_command_line_within_5_s(tmp_path):
    """The whole command, interpreter start and imports included."""
    spec = write_spec(tmp_path / "s.toml", NC)
    address = f"tcp://127.0.0.1:{closed_port()}"
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "timewait", "sweep", str(spec), "--scheduler", address],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path, env={**os.environ, "PYTHONPATH": TREE_PYTHONPATH})
    assert time.monotonic() - t0 < 5
    one_line_error(p.returncode, p.stdout, p.stderr, f"cannot reach the Dask scheduler at {address}")


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 400 Bad Request\r\n\r\n" * 4,  # a huge frame length: the Client fails at once
    (64).to_bytes(8, "little") + (1).to_bytes(8, "little"),  # a frame promised, never sent: the Client stalls
    b"",  # silence
], ids=["garbage", "stalled-frame", "silence"])
def test_something_that_is_not_a_scheduler_is_one_line_within_5_s(tmp_path, capsys, answer):
    """A port that accepts but does not speak Dask: garbage, a stalled handshake, silence."""
    import threading

    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conns = []
        while not stop.is_set():
            srv.settimeout(0.2)
            try:
                c, _ = srv.accept()
            except TimeoutError:
                continue
            c.sendall(answer)
            conns.append(c)  # held open: the client must give up by itself
        for c in conns:
            c.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    address = f"tcp://127.0.0.1:{srv.getsockname()[1]}"
    try:
        spec = write_spec(tmp_path / "s.toml", NC)
        t0 = time.monotonic()
        res = sweep_cli(capsys, spec, "--scheduler", address)
        assert time.monotonic() - t0 < 5
    finally:
        stop.set()
        th.join()
        srv.close()
    one_line_error(*res, f"cannot reach the Dask scheduler at {address}: ")
    nothing_ran(tmp_path)


def test_scheduler_port_out_of_range(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.toml", NC)
    one_line_error(*sweep_cli(capsys, spec, "--scheduler", "tcp://127.0.0.1:70000"), "PORT 1..65535")


@pytest.fixture
def empty_cluster():
    """A real scheduler in this process with zero workers."""
    distributed = pytest.importorskip("distributed", reason="needs dask[distributed]")
    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        yield cluster


def test_a_cluster_without_workers_is_one_line_within_5_s(tmp_path, capsys, empty_cluster):
    spec = write_spec(tmp_path / "s.toml", NC + '[grid]\n"params.msl" = [30, 45]\n')
    address = empty_cluster.scheduler_address
    t0 = time.monotonic()
    res = sweep_cli(capsys, spec, "--scheduler", address)
    assert time.monotonic() - t0 < 5
    one_line_error(*res, f"the Dask scheduler at {address} has no workers; start one with: dask worker {address}")
    nothing_ran(tmp_path)


def test_a_cluster_that_loses_its_workers_fails_the_points_left(tmp_path, monkeypatch, empty_cluster):
    """Workers gone mid-sweep: after DASK_IDLE_S the points still waiting fail; the sweep ends."""
    from distributed import Worker

    from timewait.sweep import DASK_IDLE_S

    assert DASK_IDLE_S == 30
    monkeypatch.setattr(sweep, "DASK_IDLE_S", 1.0)
    loop = empty_cluster.loop

    async def start() -> Worker:
        return await Worker(empty_cluster.scheduler_address, nthreads=1, dashboard_address=None)

    from distributed.utils import sync

    worker = sync(loop, start)
    client = sweep.connect_dask(empty_cluster.scheduler_address)
    try:
        sync(loop, worker.close)  # the only worker leaves before the points are sent
        spec = load_stub(tmp_path)
        t0 = time.monotonic()
        results = list(sweep._run_dask(client, sweep.expand(spec), stub_runner, empty_cluster.scheduler_address))
        assert time.monotonic() - t0 < 10
    finally:
        client.close()
    assert len(results) == 8 and not any(r["ok"] for _, r in results)
    assert results[0][1]["error"] == f"the Dask scheduler at {empty_cluster.scheduler_address} has had no workers for 1 s"


# ---------------------------------------------------------------- output paths


def test_out_that_is_a_file(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.toml", NC)
    (tmp_path / "f").write_text("x")
    one_line_error(*sweep_cli(capsys, spec, "--out", tmp_path / "f"),
                   f"--out {tmp_path / 'f'}: is a file; expected a folder (created if missing)")
    one_line_error(*sweep_cli(capsys, spec, "--out", tmp_path / "f" / "sub"), "is a file, not a directory")
    nothing_ran(tmp_path)


def test_output_file_that_is_a_folder(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.toml", NC + '[output]\ncsv = "res.csv"\n')
    (tmp_path / "res.csv").mkdir()
    one_line_error(*sweep_cli(capsys, spec), f"[output] csv '{tmp_path / 'res.csv'}' is a directory; give a file name")
    assert not (tmp_path / ".sweep-cache").exists()


def test_cache_that_is_a_file_or_under_one(tmp_path, capsys, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("SWEEP_STUB_LOG", str(log))
    spec = write_spec(tmp_path / "s.toml", NC)
    (tmp_path / "c").write_text("x")
    one_line_error(*sweep_cli(capsys, spec, "--cache", tmp_path / "c"), f"--cache '{tmp_path / 'c'}' is not a directory")
    one_line_error(*sweep_cli(capsys, spec, "--cache", tmp_path / "c" / "d"), "is a file, not a directory")
    nothing_ran(tmp_path)
    # The API checks the same before calling the runner.
    with pytest.raises(UsageError, match="--cache"):
        sweep.run_sweep(load_stub(tmp_path, STUB_SPEC), cache_dir=tmp_path / "c", runner=stub_runner)
    assert calls(log) == 0


def test_missing_folders_are_created(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.toml", NC)
    rc, _, err = sweep_cli(capsys, spec, "--workers", "1", "--out", tmp_path / "a" / "b",
                           "--cache", tmp_path / "x" / "y")
    assert rc == 0 and err == ""
    assert (tmp_path / "a" / "b" / "s.csv").exists() and len(list((tmp_path / "x" / "y").iterdir())) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_output_folder_not_writable(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.toml", NC)
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    try:
        one_line_error(*sweep_cli(capsys, spec, "--out", ro / "o"), "is not writable")
    finally:
        ro.chmod(0o755)
