"""Which build of the engine is running: mypyc-compiled hot path or pure Python (issue 14).

The package build (``setup.py``) compiles the modules in :data:`HOT_PATH` with mypyc
when it can; each becomes an extension module (``scheduler.cpython-311-….so``) installed
beside its ``scheduler.py``, and Python's import system prefers the extension. The
compiled modules share one native library, ``timewait__mypyc``, and call each other
natively, so they are loaded all compiled or all pure, never mixed.

``TIMEWAIT_PURE_PYTHON=1`` at run time makes the pure modules load even when compiled
ones are installed. The mechanism is :class:`PureFinder`, a meta-path finder that
``timewait/__init__.py`` puts first on ``sys.meta_path`` (before any engine module is
imported) when the variable is set: for exactly the :data:`HOT_PATH` modules it returns
a spec for the ``.py`` file beside the extension, loaded by the ordinary source loader;
for every other name it returns ``None`` and the normal finders carry on. This was
chosen over compiling into separately named modules because nothing else changes: the
module names, pickling, tracebacks, ``__file__`` of the pure modules and every
``import`` in the code stay the same, and one list decides both what is compiled and
what is forced pure. The variable must be set before ``timewait`` is first imported.

An editable install builds the extensions in the source tree, so a hot-path module
edited after the build would still run its old compiled code. The build therefore
writes :data:`STAMP` (``_compiled.json``, the digest of each compiled source) beside
the package; at import, when a source no longer matches its digest, the pure modules
are loaded, as under the variable, with one warning line saying to rebuild
(:func:`stale_sources`).

``TIMEWAIT_PURE_PYTHON=1`` at *build* time makes ``setup.py`` skip mypyc and build a
pure-Python install.

:func:`build_info` says which of the modules are compiled on disk and which are the
ones an import loads; ``timewait --version`` prints :func:`describe`.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

# The path every segment and connection takes (bench/PROFILE.md). setup.py reads this
# tuple with ast.literal_eval, so it must stay a literal of module names.
HOT_PATH = (
    "timewait.sim.scheduler",
    "timewait.sim.host",
    "timewait.sim.socket",
    "timewait.sim.ports",
    "timewait.sim.deathrow",
    "timewait.tcp.connection",
    "timewait.tcp.segment",
    "timewait.tcp.timewait",
    "timewait.tcp.isn",
    "timewait.tcp.seq",
    # Not the protocol, but on every event's path: read by the modules above through
    # attribute access that is generic (slow) when they are interpreted classes.
    "timewait.tcp.config",
    "timewait.sim.telemetry",
    "timewait.apps.basic",
)

ENV_VAR = "TIMEWAIT_PURE_PYTHON"
NATIVE_LIB = "timewait__mypyc"  # mypyc's shared library for the group (setup.py: group_name)
STAMP = "_compiled.json"  # written by setup.py beside this file when the build compiled
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def source_digest(path: str) -> str:
    """sha256 of a source file, as setup.py records it in :data:`STAMP`."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def stale_sources(package_dir: str = PACKAGE_DIR) -> list[str]:
    """Hot-path modules whose source changed since they were compiled ([] when none, or no
    compiled build: no :data:`STAMP` in ``package_dir``, the ``timewait`` directory)."""
    try:
        with open(os.path.join(package_dir, STAMP)) as f:
            recorded = json.load(f)["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    root = os.path.dirname(package_dir)
    stale = []
    for name in HOT_PATH:
        path = os.path.join(root, *name.split(".")) + ".py"
        try:
            if source_digest(path) != recorded.get(name):
                stale.append(name)
        except OSError:
            stale.append(name)
    return stale


def pure_requested(environ: Any = None) -> bool:
    """True when ``TIMEWAIT_PURE_PYTHON`` asks for the pure modules (anything but '', '0', 'false', 'no')."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    return value.strip().lower() not in ("", "0", "false", "no")


class PureFinder(importlib.abc.MetaPathFinder):
    """Finds the ``.py`` source of the :data:`HOT_PATH` modules, ignoring compiled extensions."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        """A source-file spec for a hot-path module; None (let the next finder look) otherwise."""
        if fullname not in HOT_PATH:
            return None
        leaf = fullname.rpartition(".")[2]
        for directory in path or ():
            source = os.path.join(directory, leaf + ".py")
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def choose_build() -> None:
    """At ``import timewait``: load the pure modules when asked to, or when a compiled one is stale."""
    if pure_requested():
        install_pure_finder()
        return
    stale = stale_sources()
    if stale:
        print(f"timewait: {', '.join(stale)} changed since compiled; running pure Python "
              f"(rebuild with `pip install -e .`, or set {ENV_VAR}=1 to silence this)", file=sys.stderr)
        install_pure_finder()


def install_pure_finder() -> None:
    """Put :class:`PureFinder` first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, PureFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, PureFinder())


def _is_extension(origin: str | None) -> bool:
    return origin is not None and origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def _compiled_on_disk(name: str) -> bool:
    """Whether an extension module for ``name`` is installed (whatever an import would load)."""
    spec = importlib.machinery.PathFinder.find_spec(name, _parent_path(name))
    return spec is not None and _is_extension(spec.origin)


def _parent_path(name: str) -> list[str] | None:
    parent = importlib.import_module(name.rpartition(".")[0])
    return list(getattr(parent, "__path__", []))


def _loaded_compiled(name: str) -> bool:
    """Whether ``name`` is (or, if not imported yet, would be) loaded from an extension module."""
    module = sys.modules.get(name)
    if module is not None:
        return _is_extension(getattr(module, "__file__", None))
    spec = importlib.util.find_spec(name)
    return spec is not None and _is_extension(spec.origin)


def build_info() -> dict[str, Any]:
    """The build: ``version``, ``compiled`` (hot-path modules an import loads compiled),
    ``installed_compiled`` (those with an extension on disk), ``pure_requested`` and
    ``stale`` (compiled modules whose source changed since, loaded pure) and ``hot_path``
    (every module the build compiles when it can)."""
    from timewait import __version__

    return {
        "version": __version__,
        "compiled": [n for n in HOT_PATH if _loaded_compiled(n)],
        "installed_compiled": [n for n in HOT_PATH if _compiled_on_disk(n)],
        "pure_requested": pure_requested(),
        "stale": stale_sources(),
        "hot_path": list(HOT_PATH),
    }


def describe(info: dict[str, Any] | None = None) -> str:
    """One line: ``0.1.0 (compiled: 13 modules)`` or ``0.1.0 (pure Python)``, with why when forced."""
    info = build_info() if info is None else info
    compiled, installed = info["compiled"], info["installed_compiled"]
    if compiled:
        build = f"compiled: {len(compiled)} module{'s' if len(compiled) != 1 else ''}"
        if len(compiled) != len(info["hot_path"]):
            build += f" of {len(info['hot_path'])}"
    elif installed and info["pure_requested"]:
        build = f"pure Python, {ENV_VAR} set; {len(installed)} compiled modules installed"
    elif installed and info.get("stale"):
        build = f"pure Python: {len(info['stale'])} compiled modules stale, rebuild"
    else:
        build = "pure Python"
    return f"{info['version']} ({build})"
