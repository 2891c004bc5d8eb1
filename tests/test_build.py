"""The build (issue 14): the compiled hot path is what loads by default, the pure one under
``TIMEWAIT_PURE_PYTHON=1``, and ``timewait --version`` says which.

Each check of what loads runs in a fresh interpreter, since the choice is made when
``timewait`` is first imported (and this suite itself may run under either build).
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import timewait
from timewait.buildinfo import (
    HOT_PATH,
    NATIVE_LIB,
    STAMP,
    PureFinder,
    build_info,
    describe,
    pure_requested,
    source_digest,
    stale_sources,
)

# In a fresh interpreter: which hot-path modules loaded from an extension, and whether
# mypyc's shared library was loaded at all.
PROBE = f"""
import importlib, json, sys
names = {list(HOT_PATH)!r}
mods = [importlib.import_module(n) for n in names]
import timewait.sim.simulation  # the whole engine, as a run imports it
print(json.dumps({{"files": {{n: m.__file__ for n, m in zip(names, mods)}},
                  "native_lib": {NATIVE_LIB!r} in sys.modules}}))
"""

EXT = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def run_python(args: list[str], pure: bool) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` with TIMEWAIT_PURE_PYTHON set to 1 or removed."""
    env = {k: v for k, v in os.environ.items() if k != "TIMEWAIT_PURE_PYTHON"}
    if pure:
        env["TIMEWAIT_PURE_PYTHON"] = "1"
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=120, check=True)


def probe(pure: bool) -> dict:
    """What a fresh interpreter loads, with or without TIMEWAIT_PURE_PYTHON=1."""
    return json.loads(run_python(["-c", PROBE], pure).stdout)


def installed_compiled() -> list[str]:
    return build_info()["installed_compiled"]


needs_compiled = pytest.mark.skipif(
    not installed_compiled(),
    reason="this install is pure Python (mypyc was unavailable or failed at build time, "
           "or it was built with TIMEWAIT_PURE_PYTHON=1); nothing compiled to load",
)


def test_hot_path_modules_exist_as_source() -> None:
    """Every module the build compiles has its pure source beside it (the fallback)."""
    root = Path(timewait.__file__).parent.parent
    for name in HOT_PATH:
        assert (root / (name.replace(".", "/") + ".py")).is_file(), name


def test_build_is_all_or_nothing() -> None:
    """Either every hot-path module is installed compiled or none is (never a partial build)."""
    assert installed_compiled() in ([], list(HOT_PATH))


def test_this_process_runs_the_requested_build() -> None:
    """The suite itself runs on the build it asked for: pure under the variable, else compiled
    when installed compiled."""
    info = build_info()
    if pure_requested():
        assert info["compiled"] == []
    else:
        assert info["compiled"] == info["installed_compiled"]


@needs_compiled
def test_compiled_modules_load_by_default() -> None:
    got = probe(pure=False)
    assert {n: f.endswith(EXT) for n, f in got["files"].items()} == dict.fromkeys(HOT_PATH, True)
    assert got["native_lib"]


def test_pure_modules_load_under_env_var() -> None:
    got = probe(pure=True)
    assert {n: f.endswith(".py") for n, f in got["files"].items()} == dict.fromkeys(HOT_PATH, True)
    assert not got["native_lib"]


def test_pure_finder_only_claims_hot_path_modules() -> None:
    finder = PureFinder()
    assert finder.find_spec("timewait.trace", list(timewait.__path__)) is None
    assert finder.find_spec("json", None) is None
    sim_dir = str(Path(timewait.__file__).parent / "sim")
    spec = finder.find_spec("timewait.sim.scheduler", [sim_dir])
    assert spec is not None and spec.origin is not None and spec.origin.endswith("scheduler.py")
    assert isinstance(spec.loader, importlib.machinery.SourceFileLoader)


def test_pure_requested_reading() -> None:
    assert pure_requested({"TIMEWAIT_PURE_PYTHON": "1"})
    assert pure_requested({"TIMEWAIT_PURE_PYTHON": "yes"})
    for off in ("", "0", "false", "no"):
        assert not pure_requested({"TIMEWAIT_PURE_PYTHON": off})
    assert not pure_requested({})


def test_version_output_default() -> None:
    out = run_python(["-m", "timewait", "--version"], pure=False).stdout.strip()
    if installed_compiled():
        assert out == f"{timewait.__version__} (compiled: {len(HOT_PATH)} modules)"
    else:
        assert out == f"{timewait.__version__} (pure Python)"


def test_version_output_pure() -> None:
    out = run_python(["-m", "timewait", "--version"], pure=True).stdout.strip()
    assert re.fullmatch(re.escape(timewait.__version__) + r" \(pure Python(, .*)?\)", out), out
    if installed_compiled():
        assert "TIMEWAIT_PURE_PYTHON set" in out


def test_describe_wording() -> None:
    base = {"version": "9.9", "hot_path": list(HOT_PATH), "pure_requested": False}
    every = list(HOT_PATH)
    assert describe({**base, "compiled": every, "installed_compiled": every}) == f"9.9 (compiled: {len(HOT_PATH)} modules)"
    assert describe({**base, "compiled": [], "installed_compiled": []}) == "9.9 (pure Python)"
    forced = describe({**base, "pure_requested": True, "compiled": [], "installed_compiled": every})
    assert forced == f"9.9 (pure Python, TIMEWAIT_PURE_PYTHON set; {len(HOT_PATH)} compiled modules installed)"


def test_stale_sources_names_modules_edited_since_the_build(tmp_path: Path) -> None:
    """An edited hot-path source no longer matches the build's stamp (then the pure modules
    load, so an editable install never runs old compiled code)."""
    src_root = Path(timewait.__file__).parent.parent
    pkg = tmp_path / "timewait"
    for name in HOT_PATH:
        dest = tmp_path / (name.replace(".", "/") + ".py")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes((src_root / (name.replace(".", "/") + ".py")).read_bytes())
    assert stale_sources(str(pkg)) == []  # no stamp: not a compiled build
    digests = {n: source_digest(str(tmp_path / (n.replace(".", "/") + ".py"))) for n in HOT_PATH}
    (pkg / STAMP).write_text(json.dumps({"sources": digests}))
    assert stale_sources(str(pkg)) == []
    edited = tmp_path / "timewait" / "sim" / "host.py"
    edited.write_text(edited.read_text() + "\n# edited\n")
    assert stale_sources(str(pkg)) == ["timewait.sim.host"]


def test_installed_build_is_not_stale() -> None:
    """The build under test matches its sources (else this suite would be running pure)."""
    assert build_info()["stale"] == []
