"""Output paths checked before anything runs, missing folders created, files written atomically.

Every command that writes a file (run, diagram, explain, sweep, kernel run) checks all of
its output paths first: a bad one is one line on stderr, exit 2, nothing run and nothing
written. The files themselves go to temporary names beside their targets and are renamed
into place together, so a failure while writing leaves neither a partial file nor half of
the set.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from timewait.cli import main
from timewait.errors import UsageError
from timewait.report import outputs
from timewait.report.outputs import OutputSet, check_output, prepare_outputs

REPO = Path(__file__).resolve().parents[1]


def cli(capsys, *args: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error(rc: int, err: str, *words: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("timewait: error"), err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err


def files_in(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


@pytest.fixture
def no_run(monkeypatch):
    """Fail the test if the scenario runs at all."""
    import timewait.scenarios as sc

    def boom(*a, **k):
        raise AssertionError("the scenario ran although an output path was bad")

    monkeypatch.setattr(sc, "run_scenario", boom)


# ------------------------------------------------------------------ timewait run


def test_bad_diagram_with_good_pcap_writes_nothing_and_runs_nothing(tmp_path, capsys, no_run):
    (tmp_path / "afile").write_text("x")
    rc, out, err = cli(capsys, "run", "nc-timewait", "--pcap", tmp_path / "good.pcap",
                       "--diagram", tmp_path / "afile" / "x.svg")
    one_error(rc, err, "--diagram", "is a file, not a directory")
    assert files_in(tmp_path) == ["afile"]


@pytest.mark.parametrize("flag,name", [("--pcap", "d"), ("--diagram", "d"), ("--plot", "d"), ("--html", "d"),
                                       ("--pcap", "."), ("--diagram", "d/")])
def test_a_directory_as_output_path(tmp_path, capsys, no_run, flag, name):
    (tmp_path / "d").mkdir()
    path = f"{tmp_path / name}" + ("/" if name.endswith("/") else "")
    rc, _, err = cli(capsys, "run", "nc-timewait", flag, path)
    one_error(rc, err, flag, "is a directory")
    assert files_in(tmp_path) == ["d"]


def test_wrong_suffix_is_refused(tmp_path, capsys, no_run):
    rc, _, err = cli(capsys, "run", "nc-timewait", "--diagram", tmp_path / "x.png")
    one_error(rc, err, "must end in .svg or .mmd")


def test_an_existing_non_regular_file_is_refused():
    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null")
    with pytest.raises(UsageError, match="not a regular file"):
        check_output("--pcap", "/dev/null", None)


def test_unwritable_parent_under_a_regular_file(tmp_path, capsys, no_run):
    (tmp_path / "somefile").write_text("x")
    rc, _, err = cli(capsys, "run", "nc-timewait", "--html", tmp_path / "somefile" / "deeper" / "r.html")
    one_error(rc, err, "--html", "'" + str(tmp_path / "somefile") + "' is a file, not a directory")
    assert files_in(tmp_path) == ["somefile"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into a 0555 directory")
def test_unwritable_parent_by_mode(tmp_path, capsys, no_run):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, _, err = cli(capsys, "run", "nc-timewait", "--pcap", ro / "sub" / "x.pcap")
        one_error(rc, err, "--pcap", "is not writable")
    finally:
        ro.chmod(0o755)
    assert files_in(tmp_path) == ["ro"]


def test_missing_parent_is_created(tmp_path, capsys, monkeypatch):
    """The README's `--diagram out/lla.svg` in a fresh directory."""
    monkeypatch.chdir(tmp_path)
    rc, out, err = cli(capsys, "run", "lost-last-ack", "--diagram", "out/lla.svg", "--pcap", "out/deep/lla.pcap")
    assert rc == 0, err
    assert "wrote out/lla.svg" in out and "wrote out/deep/lla.pcap" in out
    assert files_in(tmp_path) == ["out", "out/deep", "out/deep/lla.pcap", "out/lla.svg"]
    assert (tmp_path / "out" / "lla.svg").read_text().startswith("<svg")


def test_a_run_that_fails_creates_no_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(capsys, "run", "nc-timewait", "--set", "nope=1", "--diagram", "out/x.svg")
    one_error(rc, err, "unknown parameter")
    rc, _, err = cli(capsys, "run", "redis-short-connections", "--budget", "events=1000", "--diagram", "out/x.svg")
    assert rc == 1 and "budget exceeded" in err
    assert files_in(tmp_path) == []


def test_failure_while_writing_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    """The pcap is written first; then the diagram's writer fails: neither file appears, no
    temporary file stays, and a file already at the pcap's path is left as it was."""
    (tmp_path / "a.pcap").write_bytes(b"old")

    def broken(ladder):
        raise RuntimeError("killed while rendering")

    monkeypatch.setattr(outputs, "render_svg", broken)
    with pytest.raises(RuntimeError, match="killed while rendering"):
        main(["run", "nc-timewait", "--pcap", str(tmp_path / "a.pcap"), "--diagram", str(tmp_path / "b.svg")])
    assert files_in(tmp_path) == ["a.pcap"]
    assert (tmp_path / "a.pcap").read_bytes() == b"old"


def test_interrupt_in_the_middle_of_a_file(tmp_path):
    target = tmp_path / "x.svg"

    def half(f):
        f.write(b"<svg>half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), OutputSet() as out:
        out.write(tmp_path / "first.pcap", lambda f: f.write(b"complete"))
        out.write(target, half)
    assert files_in(tmp_path) == []


def test_output_set_renames_only_when_all_are_written(tmp_path):
    with OutputSet() as out:
        out.write(tmp_path / "a.txt", lambda f: f.write(b"a"))
        assert files_in(tmp_path) != ["a.txt"]  # only a temporary name so far
        out.write(tmp_path / "b.txt", lambda f: f.write(b"b"))
    assert files_in(tmp_path) == ["a.txt", "b.txt"]
    assert oct((tmp_path / "a.txt").stat().st_mode & 0o777) == "0o644"


def test_prepare_checks_everything_before_creating_anything(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match="--b"):
        prepare_outputs([("--a", tmp_path / "new" / "a.svg", None), ("--b", tmp_path / "f" / "b.svg", None)])
    assert files_in(tmp_path) == ["f"]
    prepare_outputs([("--a", tmp_path / "new" / "a.svg", None)], create=False)
    assert files_in(tmp_path) == ["f"]
    prepare_outputs([("--a", tmp_path / "new" / "a.svg", None)])
    assert files_in(tmp_path) == ["f", "new"]


# ------------------------------------------------------------------ other commands


def test_diagram_command(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    (tmp_path / "d").mkdir()
    rc, _, err = cli(capsys, "diagram", "--states", "--out", tmp_path / "d")
    one_error(rc, err, "--out", "is a directory")
    rc, _, err = cli(capsys, "diagram", "--states", "--out", tmp_path / "afile" / "x.svg")
    one_error(rc, err, "is a file, not a directory")
    rc, out, err = cli(capsys, "diagram", "--states", "--out", tmp_path / "new" / "s.mmd")
    assert rc == 0 and (tmp_path / "new" / "s.mmd").is_file()


def test_explain_outputs_checked_before_reading(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    rc, _, err = cli(capsys, "explain", tmp_path / "missing.pcap", "--conn", "80", "--diagram", tmp_path / "d")
    one_error(rc, err, "--diagram", "is a directory")
    rc, _, err = cli(capsys, "explain", tmp_path / "missing.pcap", "--conn", "80",
                     "--html", tmp_path / "new" / "r.html")
    one_error(rc, err, "missing.pcap")
    assert files_in(tmp_path) == ["d"]  # the capture was bad: no folder was created for the report


SPEC = """
scenario = "nc-timewait"
seeds = [1]
metrics = ["time_wait_seconds"]
[grid]
"params.msl" = [30]
[output]
csv = "{csv}"
parquet = "out/s.parquet"
"""


@pytest.mark.parametrize("case", ["out-is-file", "cache-is-file", "cache-under-file", "csv-is-dir",
                                  "csv-under-file"])
def test_sweep_paths_checked_before_any_point(tmp_path, capsys, case):
    (tmp_path / "afile").write_text("")
    (tmp_path / "adir").mkdir()
    csv = "adir" if case == "csv-is-dir" else "afile/s.csv" if case == "csv-under-file" else "out/s.csv"
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.format(csv=csv))
    extra = {"out-is-file": ["--out", tmp_path / "afile"], "cache-is-file": ["--cache", tmp_path / "afile"],
             "cache-under-file": ["--cache", tmp_path / "afile" / "c"]}.get(case, [])
    rc, out, err = cli(capsys, "sweep", spec, "--workers", "1", *extra)
    if case == "csv-is-dir":  # the spec's own check of the suffix comes first
        assert rc == 2 and len(err.strip().splitlines()) == 1
    else:
        one_error(rc, err, "--out" if case == "out-is-file" else "--cache" if "cache" in case else "[output] csv")
    assert files_in(tmp_path) == ["adir", "afile", "s.toml"]  # no cache, no table


def test_kernel_run_pcap_checked_before_the_lab(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    rc, _, err = cli(capsys, "kernel", "run", "nc-timewait", "--pcap", tmp_path / "afile" / "x.pcap")
    one_error(rc, err, "--pcap", "is a file, not a directory")
    assert files_in(tmp_path) == ["afile"]
