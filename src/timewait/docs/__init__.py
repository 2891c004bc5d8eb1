"""Executable documents: the walkthroughs' commands are run, and their outputs written in.

A document marks each command it shows::

    <!-- run: timewait run nc-timewait --ss 3 | from checks -->
    ```text
    $ timewait run nc-timewait --ss 3
    ...what the command printed...
    ```
    <!-- end -->

:func:`regenerate` runs every ``run:`` command (in this process, through the real command
line, :func:`timewait.cli.main`) and rewrites what lies between the marker and ``<!-- end -->``;
:func:`check` runs them again and reports every block whose text differs, so an engine change
that changes what a reader sees fails until the document is regenerated. The rules that make an
output the same on every machine, applied by both:

- the console is 80 columns, without colour, in the English locale (``LANG=C.UTF-8``; a Chinese
  block says ``--lang zh`` in its command), and trailing blanks of each line are dropped;
- a picture path under ``docs/walkthrough/`` in a command is redirected to a temporary
  directory when checking, and that directory is written back as ``docs/walkthrough`` in the
  output; the SVG ladders written there must equal the committed ones byte for byte (PNG plots
  are only required to be written: their bytes depend on the installed matplotlib and FreeType);
- trimming is a rule after the command, never an edit: ``| from TEXT`` starts at the first line
  containing TEXT, ``| head N`` keeps N lines; the block then says how many lines were left out.

``kernel:`` blocks (``<!-- kernel: timewait kernel run nc-timewait -->``) hold what the real kernel
showed, reduced to its stable part: the verdict of each check, without the measured details
(ports, and times to the kernel's timer-wheel rounding, differ per run). They are recorded only
with ``--kernel`` (root and network namespaces needed) and are not compared by :func:`check`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# A marker is a line of its own (a marker quoted inside a sentence is not one).
BLOCK = re.compile(r"^<!-- (run|kernel): ([^\n]*?) -->\n(.*?)^<!-- end -->$", re.DOTALL | re.MULTILINE)
PICTURES = "docs/walkthrough"
WIDTH = 80
DEFAULT_DOCS = ("docs/walkthrough.md", "docs/walkthrough.zh.md")
_LOCALE_VARS = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG", "FORCE_COLOR", "TTY_COMPATIBLE")


@dataclass(frozen=True, slots=True)
class Step:
    """One marked command of a document: its kind, the command line and its trimming rules."""

    kind: str  # "run" or "kernel"
    command: str
    rules: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, kind: str, spec: str) -> Step:
        command, *rules = (part.strip() for part in spec.split(" | "))
        parsed = []
        for rule in rules:
            name, _, arg = rule.partition(" ")
            if name not in ("from", "head") or not arg or (name == "head" and not arg.isdigit()):
                raise ValueError(f"unknown trimming rule {rule!r} (allowed: from TEXT, head N)")
            parsed.append((name, arg))
        if not command.startswith("timewait "):
            raise ValueError(f"not a timewait command: {command!r}")
        return cls(kind, command, tuple(parsed))


@contextlib.contextmanager
def _console_env() -> Iterator[None]:
    """The fixed terminal every command is run in (80 columns, no colour, English locale)."""
    saved = {k: os.environ.get(k) for k in (*_LOCALE_VARS, "COLUMNS", "NO_COLOR", "TERM")}
    for k in _LOCALE_VARS:
        os.environ.pop(k, None)
    os.environ.update(COLUMNS=str(WIDTH), NO_COLOR="1", TERM="dumb", LANG="C.UTF-8")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_command(command: str, root: Path, pictures: Path | None = None) -> str:
    """What ``command`` prints, run in this process from ``root`` (the repository).

    ``pictures`` redirects paths under ``docs/walkthrough/`` there (checking must not
    overwrite the committed pictures); the output says ``docs/walkthrough`` either way.
    """
    from timewait.cli import main

    argv = shlex.split(command)[1:]
    if pictures is not None:
        argv = [str(pictures / a[len(PICTURES) + 1:]) if a.startswith(PICTURES + "/") else a for a in argv]
    out, err = io.StringIO(), io.StringIO()
    cwd = Path.cwd()
    try:
        os.chdir(root)
        with _console_env(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
    finally:
        os.chdir(cwd)
    text = out.getvalue() + err.getvalue()
    if pictures is not None:
        text = text.replace(str(pictures), PICTURES)
    lines = [line.rstrip() for line in text.splitlines()]
    if rc:
        lines.append(f"(exit status {rc})")
    return "\n".join(lines)


def trim(text: str, rules: tuple[tuple[str, str], ...], lang: str) -> str:
    """Apply the block's trimming rules and say what they left out."""
    lines = text.split("\n")
    total = len(lines)
    for name, arg in rules:
        if name == "from":
            at = next((i for i, line in enumerate(lines) if arg in line), None)
            if at is None:
                raise ValueError(f"trimming rule 'from {arg}': no such line")
            lines = lines[at:]
        else:
            lines = lines[: int(arg)]
    left = total - len(lines)
    if left:
        how = " | ".join(f"{n} {a}" for n, a in rules)
        lines.append(f"[… 按 `{how}` 省略了 {left} 行]" if lang == "zh" else f"[… {left} lines left out by `{how}`]")
    return "\n".join(lines)


def render(step: Step, root: Path, lang: str, pictures: Path | None = None) -> str:
    """The text between a ``run:`` marker and ``<!-- end -->``."""
    body = trim(run_command(step.command, root, pictures), step.rules, lang)
    return f"```text\n$ {step.command}\n{body}\n```\n"


def render_kernel(step: Step, root: Path, lang: str) -> str:
    """A kernel block: the command and each check's verdict on the real kernel (names only)."""
    from timewait.i18n import translate

    out = run_command(step.command + " --json", root)
    doc = json.loads(out[out.index("{"):out.rindex("}") + 1])
    lines = [f"{'PASS' if c['passed'] else 'FAIL'} {translate(c['name'], lang)}" for c in doc["checks"]]
    return f"```text\n$ sudo {step.command}\n" + "\n".join(lines) + "\n```\n"


def doc_lang(path: Path) -> str:
    return "zh" if path.name.endswith(".zh.md") else "en"


def steps(text: str) -> list[Step]:
    return [Step.parse(m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


def regenerate(path: Path, root: Path, *, kernel: bool = False) -> int:
    """Rewrite every ``run:`` block of ``path`` (and ``kernel:`` blocks with ``kernel``); return
    how many blocks changed."""
    lang = doc_lang(path)
    text = path.read_text(encoding="utf-8")
    changed = 0
    (root / PICTURES).mkdir(parents=True, exist_ok=True)

    def sub(m: re.Match[str]) -> str:
        nonlocal changed
        step = Step.parse(m.group(1), m.group(2))
        if step.kind == "kernel" and not kernel:
            return m.group(0)
        body = render(step, root, lang) if step.kind == "run" else render_kernel(step, root, lang)
        changed += body != m.group(3)
        return f"<!-- {m.group(1)}: {m.group(2)} -->\n{body}<!-- end -->"

    new = BLOCK.sub(sub, text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return changed


def check(path: Path, root: Path) -> list[str]:
    """Every difference between ``path``'s ``run:`` blocks (and pictures) and a fresh run."""
    lang = doc_lang(path)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="timewait-docs-") as tmp:
        pictures = Path(tmp)
        text = path.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            step = Step.parse(m.group(1), m.group(2))
            if step.kind != "run":
                continue
            line = text.count("\n", 0, m.start()) + 1
            want = render(step, root, lang, pictures)
            if want != m.group(3):
                problems.append(f"{path.name}:{line}: output of `{step.command}` differs:\n"
                                + _first_difference(m.group(3), want))
        for made in sorted(pictures.iterdir()):
            committed = root / PICTURES / made.name
            if not committed.exists():
                problems.append(f"{PICTURES}/{made.name}: not committed (regenerate)")
            elif made.suffix == ".svg" and made.read_bytes() != committed.read_bytes():
                problems.append(f"{PICTURES}/{made.name}: differs from a fresh run (regenerate)")
    return problems


def _first_difference(old: str, new: str) -> str:
    a, b = old.split("\n"), new.split("\n")
    for x, y in zip(a, b, strict=False):
        if x != y:
            return f"  document: {x}\n  now:      {y}"
    return f"  document has {len(a)} lines, now {len(b)}"


def copy_pictures(src: Path, dst: Path) -> None:
    """Copy a document's pictures beside a copy of it (the tests check copies)."""
    shutil.copytree(src / PICTURES, dst / PICTURES, dirs_exist_ok=True)
