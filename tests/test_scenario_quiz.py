"""S12 quiz: A, C and D are right, each decided by running the scenario that shows it."""

from __future__ import annotations

import pytest

from timewait.scenarios import run_scenario
from timewait.scenarios.quiz import ANSWER, STATEMENTS


@pytest.fixture(scope="module")
def quiz():
    return run_scenario("quiz")


def test_quiz_passes_and_answers_acd(quiz) -> None:
    assert quiz.passed, [c for c in quiz.checks if not c.passed]
    assert quiz.metrics["answer"] == ANSWER == "ACD"
    assert [c.name[:1] for c in quiz.checks[:4]] == ["A", "B", "C", "D"]
    assert quiz.checks[1].name.startswith("B is wrong")


def test_each_statement_carries_its_evidence(quiz) -> None:
    st = quiz.metrics["statements"]
    assert set(st) == set(STATEMENTS)
    assert {k for k, v in st.items() if v["right"]} == {"A", "C", "D"}
    assert any("re-ACKed" in e for e in st["A"]["evidence"])
    assert any("FIN_WAIT_2" in e for e in st["B"]["evidence"])
    assert any('"new-1\\nnew-2\\nold-3\\n"' in e for e in st["C"]["evidence"])
    assert any("older than MSL" in e for e in st["D"]["evidence"])


def test_every_sub_run_passed_its_own_checks(quiz) -> None:
    runs = quiz.metrics["runs"]
    assert {k.split()[0] for k in runs} == {"lost-last-ack", "nc-timewait", "delayed-duplicate", "ttl", "two-msl"}
    assert all(r["passed"] for r in runs.values())


@pytest.mark.parametrize("profile", ["chapter", "rfc793"])
def test_the_answer_does_not_depend_on_the_profile(profile) -> None:
    res = run_scenario("quiz", profile=profile)
    assert res.passed, [c for c in res.checks if not c.passed]
    assert res.metrics["answer"] == "ACD"


def test_a_shorter_msl_is_passed_down_and_still_gives_acd() -> None:
    res = run_scenario("quiz", params={"msl": 20})
    assert res.passed, [c for c in res.checks if not c.passed]
    assert all("msl=20" in k for k in res.metrics["runs"])


def test_checks_hold_when_the_caller_turns_the_trace_off() -> None:
    # The checks are measured from the trace, so the scenario records it anyway (Lab.need_trace).
    assert run_scenario("quiz", trace=False).passed
