"""Build timewait with its hot path compiled by mypyc, or pure Python when that cannot be done.

Everything else about the package is in ``pyproject.toml``; this file only adds the
extension modules. ``mypy`` (which ships mypyc) is a build requirement, so an
ordinary ``pip install .`` or ``pip install -e .`` type-checks and compiles the
modules listed in ``src/timewait/buildinfo.py`` (``HOT_PATH``) into C extensions
placed beside their ``.py`` files (in the source tree for an editable install).

The install never fails because of mypyc. It is pure Python, with one line on stderr
saying why, when:

* ``TIMEWAIT_PURE_PYTHON=1`` is set at build time;
* mypyc cannot be imported, or its type check or code generation fails;
* the C compiler is missing or the compile or link fails (any extension built so far
  is then removed, so a partial build is never installed).

Building pure also removes compiled modules an earlier editable build left in the
source tree, which would otherwise still be imported. A compiled build writes
``timewait/_compiled.json``, the digest of each compiled source; at import a source
that no longer matches (edited after an editable build) makes the package load the
pure modules with a warning (see ``timewait.buildinfo``).
"""

from __future__ import annotations

import ast
import glob
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
SRC = ROOT / "src"
GROUP = "timewait"  # mypyc's shared library is then the top-level module timewait__mypyc
STAMP = "_compiled.json"  # timewait.buildinfo.STAMP: digests of the compiled sources


def hot_path() -> list[str]:
    """The module names in ``HOT_PATH``, read from buildinfo.py without importing the package."""
    tree = ast.parse((SRC / "timewait" / "buildinfo.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "HOT_PATH" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise RuntimeError("HOT_PATH not found in src/timewait/buildinfo.py")


def say(message: str) -> None:
    """One line on stderr (pip shows it with -v, and always when the build fails)."""
    print(f"timewait build: {message}", file=sys.stderr, flush=True)


def reason(e: BaseException) -> str:
    """An exception as a short one-line reason."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:160]}{'...' if len(text) > 160 else ''}"


def pure_requested() -> bool:
    """The same reading of TIMEWAIT_PURE_PYTHON as timewait.buildinfo.pure_requested."""
    return os.environ.get("TIMEWAIT_PURE_PYTHON", "").strip().lower() not in ("", "0", "false", "no")


def remove_stale_extensions() -> None:
    """Delete compiled modules (and their stamp) that an earlier build left in the source
    tree (editable) or in ``build/lib*`` (which setuptools reuses, so they would ship)."""
    for base in [SRC, *map(Path, glob.glob(str(ROOT / "build" / "lib*")))]:
        stems = [base / name.replace(".", "/") for name in hot_path()] + [base / f"{GROUP}__mypyc"]
        for stem in stems:
            for path in glob.glob(f"{stem}.*.so") + glob.glob(f"{stem}.*.pyd"):
                os.remove(path)
        (base / "timewait" / STAMP).unlink(missing_ok=True)


# setup.py runs once per build step; the steps that only write metadata need no extensions,
# so mypyc (a full type check) runs only for the step that builds.
METADATA_ONLY = {"egg_info", "dist_info", "sdist"}
BUILDING = {"build", "build_ext", "bdist_wheel", "editable_wheel", "install", "develop", "bdist"}


def metadata_only(argv: list[str]) -> bool:
    """True when setup.py was asked only for metadata (egg_info, dist_info, sdist)."""
    words = set(argv[1:])
    return bool(words & METADATA_ONLY) and not words & BUILDING


def compiled_extensions() -> list[Any]:
    """mypyc's extensions for the hot path, or [] (pure Python) with the reason said."""
    if metadata_only(sys.argv):
        return []
    if pure_requested():
        say("TIMEWAIT_PURE_PYTHON is set: building pure Python")
        remove_stale_extensions()
        return []
    paths = [str(Path("src", *name.split("."))) + ".py" for name in hot_path()]
    try:
        from mypyc.build import mypycify

        cwd = os.getcwd()
        os.chdir(ROOT)  # mypy resolves the package from src/ relative to here
        try:
            exts = mypycify(paths, opt_level="3", group_name=GROUP)
        finally:
            os.chdir(cwd)
    except (Exception, SystemExit) as e:  # noqa: BLE001 -- any failure means: build pure
        say(f"mypyc unavailable or failed ({reason(e)}); building pure Python")
        remove_stale_extensions()
        return []
    say(f"compiling {len(paths)} modules with mypyc")
    return list(exts)


def write_stamp(package_dir: Path) -> None:
    """Record the digest of each compiled source (timewait.buildinfo.STAMP), so that an
    import can tell when a source was edited after the build."""
    sources = {name: hashlib.sha256((SRC / (name.replace(".", "/") + ".py")).read_bytes()).hexdigest()
               for name in hot_path()}
    package_dir.mkdir(parents=True, exist_ok=True)
    (package_dir / STAMP).write_text(json.dumps({"sources": sources}, indent=1) + "\n")


class OptionalBuildExt(build_ext):
    """build_ext that falls back to pure Python when compiling or linking fails."""

    def run(self) -> None:
        """Build the extensions; on any failure remove what was built and carry on pure."""
        inplace = self.inplace
        try:
            super().run()
        except Exception as e:  # noqa: BLE001 -- CompileError, LinkError, no compiler, ...
            self.inplace = inplace
            say(f"compiling the mypyc extensions failed ({reason(e)}); installing pure Python")
            self.remove_built()
            remove_stale_extensions()
            return
        if self.extensions:
            write_stamp(Path(self.build_lib) / "timewait")
            if inplace:
                write_stamp(SRC / "timewait")

    def remove_built(self) -> None:
        """Delete every extension file this command may have written, in build/ and in place."""
        for ext in self.extensions:
            for inplace in (False, True):
                self.inplace = inplace
                path = self.get_ext_fullpath(ext.name)
                if os.path.exists(path):
                    os.remove(path)
        self.extensions = []

    def get_outputs(self) -> list[str]:
        """Only the extensions that exist (none after a fallback)."""
        return [p for p in super().get_outputs() if os.path.exists(p)]


setup(ext_modules=compiled_extensions(), cmdclass={"build_ext": OptionalBuildExt})
