"""The reader's language: English (the default) or Chinese for stories, checks and captions.

Translations live in one module per language (:mod:`timewait.i18n.zh`), not beside each
scenario: scenario files are edited for their mechanics (parameters, checks) by people who do
not write Chinese, a translator keeps the terms consistent only when they read all the texts in
one place, and a new language is one new file.

Every translated text is keyed by its English *template*: the English text as a
:meth:`str.format` template, a ``{}`` where the scenario formats a value in (``"TTL {} -> {}
after R1 ..."``) and literal braces doubled. The English texts are found in the scenarios'
source (:func:`source_templates`, the ``lab.check(NAME, ...)`` and ``lab.say(TEXT)`` calls), so
a test can require a translation for each, including the branches a default run never takes.
At run time a formatted English text is matched against the templates, and the values it
carries (numbers, addresses, states) are put into the Chinese template unchanged.
"""

from __future__ import annotations

import ast
import os
import re
import string
from collections.abc import Iterable
from dataclasses import replace
from functools import cache
from pathlib import Path
from types import ModuleType

from timewait.errors import UsageError
from timewait.result import Check, RunResult

LANGS = ("en", "zh")


def resolve_lang(explicit: str | None = None, env: dict[str, str] | None = None) -> str:
    """``explicit`` if given (``en`` or ``zh``), else what the locale asks for.

    The locale is read as gettext does: the first non-empty of ``LANGUAGE``, ``LC_ALL``,
    ``LC_MESSAGES``, ``LANG``; Chinese when it starts with ``zh`` (``zh_CN.UTF-8``, ``zh_TW``),
    English otherwise (``C``, ``POSIX``, unset).
    """
    if explicit is not None:
        lang = explicit.lower().split("_")[0].split("-")[0]
        if lang not in LANGS:
            raise UsageError(f"--lang {explicit!r}: allowed {', '.join(LANGS)}")
        return lang
    env = os.environ if env is None else env
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var, "")
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def catalogue(lang: str) -> ModuleType | None:
    """The translation module of ``lang``; None for English, which needs none."""
    if lang == "en":
        return None
    from timewait.i18n import zh

    return zh


# -- templates ---------------------------------------------------------------------------


def _literal(template: str) -> str:
    """The text a template without fields stands for (doubled braces undone)."""
    return template.replace("{{", "{").replace("}}", "}")


@cache
def _compiled(lang: str) -> tuple[dict[str, str], list[tuple[re.Pattern[str], int, str]]]:
    """Exact texts and (regex, literal length, target) for the templates with fields."""
    cat = catalogue(lang)
    exact: dict[str, str] = {}
    patterns: list[tuple[re.Pattern[str], int, str]] = []
    for key, target in (cat.TEXTS if cat else {}).items():
        parts = list(string.Formatter().parse(key))
        if all(field is None for _, field, _, _ in parts):
            exact[_literal(key)] = _literal(target)
            continue
        rx = "".join(re.escape(lit) + ("(.*?)" if field is not None else "") for lit, field, _, _ in parts)
        patterns.append((re.compile(rx, re.DOTALL), sum(len(lit) for lit, _, _, _ in parts), target))
    # The most specific template first: the one whose fixed text is longest.
    patterns.sort(key=lambda p: -p[1])
    return exact, patterns


def translate(text: str, lang: str, missing: list[str] | None = None, _depth: int = 0) -> str:
    """``text`` in ``lang``: an exact translation, or a matching template's with the values kept.

    Values a template carries are translated too when they are themselves known texts (the
    quiz's statements, ``right``/``wrong``, a reason from ``may_reuse``). An unknown text stays
    English and is appended to ``missing`` if given (the tests' way of finding holes).
    """
    if lang == "en" or not text:
        return text
    exact, patterns = _compiled(lang)
    if text in exact:
        return exact[text]
    for rx, _, target in patterns:
        m = rx.fullmatch(text)
        if m:
            values = [translate(v, lang, None, _depth + 1) if _depth < 1 else exact.get(v, v) for v in m.groups()]
            return target.format(*values)
    if missing is not None and _depth == 0:
        missing.append(text)
    return text


def caption(lang: str, template: str, *args: object) -> str:
    """A console caption (``"checks"``, ``"ss at {} s"``) in ``lang``, formatted with ``args``."""
    cat = catalogue(lang)
    target = cat.CAPTIONS.get(template, template) if cat else template
    return target.format(*args)


def localize(result: RunResult, lang: str, missing: list[str] | None = None) -> RunResult:
    """``result`` with its story, contrast and check names in ``lang`` (a copy; English as is).

    Check *details* (the measured evidence) stay English: they are data, quoted in issues.
    The contrast is the scenario's static line, or the sentences the run said (one a line).
    """
    cat = catalogue(lang)
    if cat is None:
        return result
    from timewait.scenarios import get_scenario

    sc = get_scenario(result.scenario)
    story = cat.STORIES.get(result.scenario, result.story) if result.story == sc.story else result.story
    if result.contrast == sc.contrast:
        contrast = cat.CONTRASTS.get(result.scenario, result.contrast)
    else:
        contrast = "\n".join(translate(line, lang, missing) for line in result.contrast.split("\n"))
    checks = [Check(translate(c.name, lang, missing), c.passed, c.detail) for c in result.checks]
    return replace(result, story=story, contrast=contrast, checks=checks)


# -- the English texts, from the scenarios' source ---------------------------------------


def _template(node: ast.expr) -> list[str] | None:
    """The format templates an expression can evaluate to; None when it is not a literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value.replace("{", "{{").replace("}", "}}")]
    if isinstance(node, ast.JoinedStr):
        out = ""
        for v in node.values:
            if isinstance(v, ast.Constant):
                out += str(v.value).replace("{", "{{").replace("}", "}}")
            else:
                out += "{}"
        return [out]
    if isinstance(node, ast.IfExp):
        a, b = _template(node.body), _template(node.orelse)
        return None if a is None or b is None else a + b
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        a, b = _template(node.left), _template(node.right)
        return None if a is None or b is None else [x + y for x in a for y in b]
    return None


def _calls(tree: ast.AST, names: Iterable[str]) -> Iterable[ast.Call]:
    wanted = set(names)
    for n in ast.walk(tree):
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in wanted and n.args
                and isinstance(n.func.value, ast.Name) and n.func.value.id == "lab"):
            yield n  # lab.check / lab.say only: a Param's bounds.check(...) is a validator


def source_templates(root: Path | None = None) -> tuple[dict[str, list[str]], list[str]]:
    """English templates of every check name and said sentence in the scenarios' source.

    Returns ``({template: [file:line, …]}, [file:line of texts that are not literals])``.
    A non-literal is a variable (``lab.say(why)``) whose texts come from elsewhere: the
    reasons of ``common.may_reuse`` are added here, the quiz's summary line is a template
    of :mod:`timewait.i18n.zh` checked by running the quiz.
    """
    root = root or Path(__file__).resolve().parent.parent / "scenarios"
    found: dict[str, list[str]] = {}
    dynamic: list[str] = []
    for path in sorted(root.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in _calls(tree, ("check", "say")):
            where = f"{path.name}:{call.lineno}"
            templates = _template(call.args[0])
            if templates is None:
                dynamic.append(where)
                continue
            for t in templates:
                found.setdefault(t, []).append(where)
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef) and fn.name == "may_reuse":
                for ret in ast.walk(fn):
                    if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Tuple):
                        for t in _template(ret.value.elts[1]) or []:
                            found.setdefault(t, []).append(f"{path.name}:{ret.lineno}")
    return found, dynamic



_MOMENT = re.compile(r"after the changes at (\S+) s \((.*)\)", re.DOTALL)
_SPAN = re.compile(r"([\d.]+)-([\d.]+)")
_ENTERED = re.compile(r"(\d+) entered (\S+)")
_GONE = re.compile(r"(\d+) (\S+) gone")


def moment_caption(text: str, lang: str) -> str:
    """A socket table's caption (:func:`timewait.report.sockets.key_moments`) in ``lang``.

    The caption is built in English from a fixed grammar ("after the changes at T s (c1: 1
    entered TIME_WAIT, 1 FIN_WAIT_2 gone)"), so it is taken apart by that grammar here rather
    than by widening the report's interface for one language.
    """
    m = _MOMENT.fullmatch(text)
    if lang == "en" or m is None:
        return text
    span, what = m.groups()
    s = _SPAN.fullmatch(span)
    span_t = caption(lang, "{}-{} s", *s.groups()) if s else caption(lang, "{} s", span)
    if what == "state changes":
        what_t = caption(lang, "state changes")
    else:
        hosts = []
        for part in what.split("; "):
            host, _, items = part.partition(": ")
            words = []
            for item in items.split(", "):
                e, g = _ENTERED.fullmatch(item), _GONE.fullmatch(item)
                words.append(caption(lang, "{} entered {}", *e.groups()) if e
                             else caption(lang, "{} {} gone", *g.groups()) if g else item)
            hosts.append(caption(lang, "{}: {}", host, caption(lang, ", ").join(words)))
        what_t = caption(lang, "; ").join(hosts)
    return caption(lang, "after the changes at {} ({})", span_t, what_t)
