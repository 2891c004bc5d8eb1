"""The walkthroughs are checked, not pasted: every marked command is run again and compared.

Regenerate with ``python -m timewait.docs`` from the repository's root after a change that
changes what a reader sees. The edit test works on a copy holding one block of the real
document, so the whole check runs once per document (about half a minute each).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from timewait.docs import BLOCK, PICTURES, Step, check, copy_pictures, regenerate, trim
from timewait.docs.__main__ import main as docs_main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "walkthrough.md", ROOT / "docs" / "walkthrough.zh.md"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_walkthrough_matches_fresh_runs(doc: Path) -> None:
    problems = check(doc, ROOT)
    assert not problems, "regenerate with `python -m timewait.docs`:\n" + "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_step_has_a_command_a_picture_and_a_contrast(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    runs = [m for m in BLOCK.finditer(text) if m.group(1) == "run"]
    assert len(runs) >= 20
    for pic in (ROOT / PICTURES).iterdir():
        assert f"walkthrough/{pic.name}" in text, pic.name
    sections = text.split("\n## ")[1:]
    assert len(sections) == 11
    for s in sections:
        assert "<!-- run:" in s, s.splitlines()[0]


def _one_block_copy(tmp_path: Path, doc: Path) -> Path:
    """``doc`` cut to its text up to the end of its second ``run:`` block (nc-timewait's)."""
    text = doc.read_text(encoding="utf-8")
    blocks = [m for m in BLOCK.finditer(text) if m.group(1) == "run" and "nc-timewait" in m.group(2)]
    m = blocks[1]  # `--set server_close=on`: no picture, so the copy needs none
    (tmp_path / "docs").mkdir()
    copy = tmp_path / "docs" / doc.name
    copy.write_text(text[: m.start()].split("\n## ")[0] + "\n\n" + m.group(0) + "\n", encoding="utf-8")
    copy_pictures(ROOT, tmp_path)
    return copy


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_an_output_edited_by_hand_fails_until_regenerated(tmp_path: Path, doc: Path) -> None:
    copy = _one_block_copy(tmp_path, doc)
    assert check(copy, tmp_path) == []
    text = copy.read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("PASS "))
    copy.write_text(text.replace(line, line.replace("TIME_WAIT", "TIME-WAIT", 1), 1), encoding="utf-8")
    problems = check(copy, tmp_path)
    assert len(problems) == 1 and "differs" in problems[0]
    assert docs_main(["--check", "--root", str(tmp_path), str(copy)]) == 1
    assert regenerate(copy, tmp_path) == 1
    assert check(copy, tmp_path) == [] and copy.read_text(encoding="utf-8") == text


def test_a_changed_picture_fails(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    copy = tmp_path / "docs" / "walkthrough.md"
    copy.write_text("<!-- run: timewait run linger --diagram docs/walkthrough/linger.svg | from ─ checks ─ -->\n"
                    "<!-- end -->\n", encoding="utf-8")
    assert regenerate(copy, tmp_path) == 1
    assert check(copy, tmp_path) == []
    svg = tmp_path / PICTURES / "linger.svg"
    svg.write_text(svg.read_text(encoding="utf-8").replace("c1", "cX", 1), encoding="utf-8")
    assert check(copy, tmp_path) == [f"{PICTURES}/linger.svg: differs from a fresh run (regenerate)"]


def test_trimming_rules_say_what_they_left_out() -> None:
    text = "a\nb\n── checks ──\nc\nd\ne"
    assert trim(text, (("from", "checks"), ("head", "2")), "en") == \
        "── checks ──\nc\n[… 4 lines left out by `from checks | head 2`]"
    assert trim(text, (), "en") == text
    with pytest.raises(ValueError, match="no such line"):
        trim(text, (("from", "nothing"),), "en")
    with pytest.raises(ValueError, match="unknown trimming rule"):
        Step.parse("run", "timewait run x | tail 3")
