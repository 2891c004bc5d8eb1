"""The console report of every scenario reads as text (issue 11 item 8): metrics as tables,
timelines as aligned rows, the quiz one row per statement; no Python repr anywhere (no
``None``, no ``{...}``/``[...]`` of a dict or list, no ``b'...'`` or quoted list items)."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from timewait.report.console import print_run, render_value
from timewait.scenarios import all_scenarios, run_scenario

# What Python's repr of None, a dict, a list, a tuple, bytes or a str inside them looks like.
REPR = re.compile(r"\bNone\b|[{}\[\]]|b'|b\"|'[,:)]|[(]'|, '")
# Brackets and braces that are not Python's: conntrack -L's flags, the shell loop of the chapter
# and the C value of struct linger.
LITERALS = re.compile(r"\[ASSURED\]|\[UNREPLIED\]|\{1\.\.\d+\}|SO_LINGER \{1, 0\}")
# Big scenarios at a smaller size: the same metrics, checks and notes in seconds.
SMALL = {"max-rate": ({"ports": "40000-43999"}, []),
         "port-exhaustion": ({"duration": "3"}, ["c1:net.ipv4.ip_local_port_range=40000 40999"]),
         "redis-short-connections": ({"connections": "2000"}, [])}


def console_text(name: str) -> str:
    params, sysctls = SMALL.get(name, (None, []))
    r = run_scenario(name, params=params, sysctls=sysctls)
    buf = io.StringIO()
    print_run(r, console=Console(file=buf, width=120, color_system=None, highlight=False, soft_wrap=True))
    return buf.getvalue()


@pytest.mark.parametrize("name", sorted(all_scenarios()))
def test_no_python_repr_in_the_console_report(name: str) -> None:
    text = console_text(name)
    bad = [ln for ln in text.splitlines() if REPR.search(LITERALS.sub("", ln))]
    assert bad == [], "\n".join(bad[:10])


def _render(v: object) -> str:
    buf = io.StringIO()
    Console(file=buf, width=100, color_system=None).print(render_value(v))
    return buf.getvalue()


def test_a_timeline_prints_as_aligned_rows() -> None:
    out = _render([[1.2, "first"], [63.0004, "the new SYN"]]).splitlines()
    assert out[0].rstrip() == " 1.200000 s  first"
    assert out[1].rstrip() == "63.000400 s  the new SYN"


def test_records_print_one_row_each_and_none_is_a_word() -> None:
    out = _render({"A": {"statement": "x", "right": True}, "B": {"statement": "y", "right": False}}).splitlines()
    assert out[0].split() == ["statement", "right"]
    assert out[1].split() == ["A", "x", "yes"] and out[2].split() == ["B", "y", "no"]
    assert _render({"failed": {}, "first": None, "got": b"hi\n"}).split() == \
        ["failed", "none", "first", "none", "got", '"hi\\n"']


def test_the_quiz_prints_one_row_per_statement() -> None:
    lines = console_text("quiz").splitlines()
    rows = [ln for ln in lines if re.match(r"^  [ABCD]  (right|wrong)  \S", ln)]  # the answer's rows
    assert [ln.split()[:2] for ln in rows] == [["A", "right"], ["B", "wrong"], ["C", "right"], ["D", "right"]]
    table = [ln.split()[:1] + ln.split()[-1:] for ln in lines if re.match(r"^\s{4,}[ABCD]  \S", ln)]
    assert [t[0] for t in table] == ["A", "B", "C", "D"]  # the statements metric: a row each
