"""Every registered scenario passes all its checks with its defaults (what `timewait run NAME --json` does)."""

from __future__ import annotations

import pytest

from timewait.scenarios import all_scenarios, run_scenario

NAMES = sorted(all_scenarios())


@pytest.mark.parametrize("name", NAMES)
def test_scenario_passes_its_checks(name: str) -> None:
    r = run_scenario(name, trace=False)
    failed = [f"{c.name}: {c.detail}" for c in r.checks if not c.passed]
    assert r.checks and not failed, failed
    doc = r.to_json()
    assert doc["scenario"] == name and isinstance(doc["hosts"], dict)


def test_the_chapter_is_all_there() -> None:
    assert {"nc-timewait", "ttl", "delayed-duplicate", "lost-last-ack", "two-msl", "redis-short-connections",
            "timestamps", "tw-reuse", "tw-recycle-nat", "nat", "port-exhaustion", "max-rate", "quiz"} <= set(NAMES)
