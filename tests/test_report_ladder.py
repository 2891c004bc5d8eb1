"""Ladder diagrams: SVG for every scenario, Mermaid text, layout that reads, rendering in headless Chromium."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest

from test_report_support import light_run, load_pages, png_pixels, registered, screenshot
from timewait.report.ladder import build_ladder, render_mermaid
from timewait.report.ladder_svg import layout, render_svg, text_width

SVG = "{http://www.w3.org/2000/svg}"
CHAPTER = ["nc-timewait", "lost-last-ack", "tw-reuse"]


def svg_of(name: str, **kw: str) -> tuple[str, ET.Element]:
    text = render_svg(build_ladder(light_run(name), **kw))
    return text, ET.fromstring(text)


def with_class(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(SVG + tag) if cls in (e.get("class") or "").split()]


@pytest.mark.parametrize("name", registered())
def test_every_scenario_ladder_is_svg_that_parses(name: str) -> None:
    lad = build_ladder(light_run(name))
    text, root = svg_of(name)
    assert root.tag == SVG + "svg"
    assert int(root.get("width")) > 0 and int(root.get("height")) > 0
    assert name in root.find(SVG + "title").text
    # One arrow per hop, one box per state change; or a figure that says why there is nothing to draw.
    assert len(with_class(root, "line", "hop")) == len(lad.hops)
    assert len(with_class(root, "rect", "state")) == len(lad.states)
    if lad.empty:
        assert "No packets in the trace" in text


def test_ladder_shows_what_the_chapter_draws() -> None:
    text, root = svg_of("nc-timewait")
    labels = [e.text for e in with_class(root, "text", "label")]
    assert labels[0].startswith("SYN seq=") and "TSval=" in text
    assert any(t.startswith("FIN,ACK seq=") for t in labels)
    assert "TIME_WAIT 60 s" in text and "fired" in text   # the 2MSL bracket
    assert "≈ 59.9998 s" in text                          # the cut 60 s gap, not 60 screens
    assert int(root.get("height")) < 1500


def test_lost_ack_and_resent_fin() -> None:
    lad = build_ladder(light_run("lost-last-ack"))
    text, root = svg_of("lost-last-ack")
    dropped = with_class(root, "line", "dropped")
    assert len(dropped) == sum(1 for h in lad.hops if h.drop) >= 1
    assert "✕ dropped (fault rule)" in text
    assert "restarted" in text  # the repeated FIN re-arms TIME_WAIT


def test_delayed_duplicate_is_held_not_a_line_across_the_figure() -> None:
    lad = build_ladder(light_run("tw-reuse"))
    lay = layout(lad)
    assert len(lay.held) == 1
    text, _ = svg_of("tw-reuse")
    assert re.search(r"held 1\.5\d+ s", text)
    assert "PAWS: old timestamp" in text  # the connection's PAWS discard, known only from its counter


def test_states_sit_level_with_their_cause() -> None:
    """ESTABLISHED at the SYN-ACK's arrival, FIN_WAIT_1 level with the FIN: even when the application
    sent data and closed in the same microsecond (lost-last-ack's second connection)."""
    lad = build_ladder(light_run("lost-last-ack"))
    lay = layout(lad)
    for s in lad.states:
        y = lay.ys[(s.t, s.idx)]
        if s.new == "ESTABLISHED" and s.old == "SYN_SENT":
            synack = next(h for h in lad.hops if h.dst == s.node and h.t_arrive == s.t and h.seg.flags & 0x12 == 0x12)
            assert y == lay.ys[(synack.t_arrive, synack.idx_arrive)]
        if s.new == "FIN_WAIT_1":
            fin = next(h for h in lad.hops if h.src == s.node and h.t_send == s.t and h.seg.flags & 0x01)
            assert y == lay.ys[(fin.t_send, fin.idx_send)]


def test_burst_arrows_do_not_converge() -> None:
    """Three segments sent in the same microsecond arrive at distinct heights on (near) parallel arrows."""
    lad = build_ladder(light_run("lost-last-ack"))
    lay = layout(lad)
    by_instant: dict[tuple[str, int], list] = {}
    for h in lad.hops:
        by_instant.setdefault((h.src, h.t_send), []).append(h)
    bursts = [hs for hs in by_instant.values() if len(hs) >= 3]
    assert bursts
    for hs in bursts:
        sends = [lay.ys[(h.t_send, h.idx_send)] for h in hs]
        arrivals = [lay.ys[(h.t_arrive, h.idx_arrive)] for h in hs]
        assert all(b - a >= 20 for a, b in zip(arrivals, arrivals[1:], strict=False))
        drops = [a - s for s, a in zip(sends, arrivals, strict=True)]
        assert max(drops) - min(drops) <= 20, drops  # (near) parallel


def _text_boxes(root: ET.Element) -> list[tuple[str, list[tuple[float, float]]]]:
    """Each piece of text in the figure (not the title, notes or time axis) and the corners of the
    (possibly rotated) rectangle it covers."""
    out = []
    for e in root.iter(SVG + "text"):
        x, y, size = float(e.get("x")), float(e.get("y")), float(e.get("font-size"))
        if not e.text or x <= 8 or y < 60 or (x == 16 and size == 11):  # x 16, size 11: the notes
            continue
        m = re.fullmatch(r"rotate\(([-\d.]+) ([-\d.]+) ([-\d.]+)\)", e.get("transform") or "")
        ang, cx, cy = (float(v) for v in m.groups()) if m else (0.0, x, y)
        w = text_width(e.text, size, bold=e.get("font-weight") == "bold")
        x0 = {"start": x, "middle": x - w / 2, "end": x - w}[e.get("text-anchor")]
        c, s = math.cos(math.radians(ang)), math.sin(math.radians(ang))
        corners = []
        for lx in (x0, x0 + w):
            for ly in (y - 0.72 * size, y + 0.2 * size):
                dx, dy = lx - cx, ly - cy
                corners.append((cx + dx * c - dy * s, cy + dx * s + dy * c))
        out.append((e.text, corners))
    return out


def _separated(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> bool:
    """Separating-axis test for two convex quadrilaterals given by their four corners."""
    for poly in (a, b):
        (x0, y0), (x1, y1), (x2, y2) = poly[0], poly[1], poly[2]
        for ex, ey in ((x1 - x0, y1 - y0), (x2 - x0, y2 - y0)):
            nx, ny = -ey, ex
            pa = [nx * x + ny * y for x, y in a]
            pb = [nx * x + ny * y for x, y in b]
            if max(pa) <= min(pb) or max(pb) <= min(pa):
                return True
    return False


@pytest.mark.parametrize("name", registered())
def test_no_two_texts_overlap(name: str) -> None:
    """Arrow labels, timestamps, drop reasons, state names, timer labels: no two cover each other
    (bursts of segments in one microsecond, crossing FINs, delayed duplicates, retransmission ladders)."""
    _, root = svg_of(name)
    boxes = sorted(((t, c, min(y for _, y in c), max(y for _, y in c)) for t, c in _text_boxes(root)),
                   key=lambda b: b[2])
    clashes = []
    for i, (ta, ca, _, bottom) in enumerate(boxes):
        for tb, cb, top, _ in boxes[i + 1:]:
            if top >= bottom:
                break
            if not _separated(ca, cb):
                clashes.append((ta, tb))
    assert clashes == []


def test_conn_and_window_select() -> None:
    r = light_run("lost-last-ack")
    everything = build_ladder(r)
    second = build_ladder(r, window="60:")
    assert 0 < len(second.hops) < len(everything.hops)
    assert all(h.t_send >= 60_000_000 or (h.t_arrive or 0) >= 60_000_000 for h in second.hops)
    _, root = svg_of("lost-last-ack", window="60:")
    assert "window 60: s" in root.find(SVG + "title").text or "window 60: s" in ET.tostring(root, "unicode")


def test_truncated_ladder_says_how_many_were_left_out() -> None:
    lad = build_ladder(light_run("port-exhaustion"))
    assert lad.truncated > 0
    text, root = svg_of("port-exhaustion")
    assert f"({lad.truncated} more: use --conn or --window)" in text
    assert len(with_class(root, "line", "hop")) == len(lad.hops)


@pytest.mark.parametrize("name", ["nc-timewait", "lost-last-ack", "tw-recycle-nat", "max-rate"])
def test_mermaid_text(name: str) -> None:
    lad = build_ladder(light_run(name))
    text = render_mermaid(lad)
    lines = text.splitlines()
    assert lines[0] == "sequenceDiagram" and lines[1].startswith("    title ")
    messages = [ln for ln in lines if re.match(r"    n\d+(->>|-x)n\d+: ", ln)]
    assert len(messages) == len(lad.hops)
    assert sum(1 for ln in messages if "-x" in ln.split(":")[0]) == sum(1 for h in lad.hops if h.drop)
    for ln in lines[1:]:
        body = ln.split(": ", 1)[-1]
        # ';' and '#' end a Mermaid statement or start an entity: they must be entity-coded.
        assert ";" not in re.sub(r"#\d+;", "", body) and "#" not in re.sub(r"#\d+;", "", body), ln
    if lad.empty:
        assert "No packets in the trace" in text


# --------------------------------------------------------------------------- headless Chromium


def test_ladders_render_in_chromium(tmp_path) -> None:
    """Two ladders rendered to PNG by ``chromium --headless --screenshot``, then both opened over the
    DevTools protocol: the documents are SVG (no XML parse error page), nothing is logged as an error,
    and the pictures are not blank."""
    pages = []
    for name in ("nc-timewait", "lost-last-ack"):
        svg, root = svg_of(name)
        page = tmp_path / f"{name}.svg"
        page.write_text(svg, encoding="utf-8")
        png = tmp_path / f"{name}.png"
        stderr = screenshot(page, png, tmp_path / f"profile-{name}",
                            width=int(root.get("width")), height=int(root.get("height")))
        assert "Uncaught" not in stderr and "error on line" not in stderr
        assert png.stat().st_size > 20_000
        px = png_pixels(png.read_bytes())
        assert px.shape[:2] == (int(root.get("height")), int(root.get("width")))
        dark = (px[..., :3].mean(axis=2) < 0.5).mean()
        assert 0.005 < dark < 0.2, f"{name}: {dark:.3%} of the picture is ink"
        pages.append(page)
    reports = load_pages(pages, evaluate=(
        "document.documentElement.namespaceURI + ' ' + document.documentElement.localName",
        "document.getElementsByTagNameNS('*', 'parsererror').length",
        "document.querySelectorAll('line.hop').length",
    ))
    for page, rep in zip(pages, reports, strict=True):
        assert rep.errors == [], rep.errors
        assert rep.values["document.documentElement.namespaceURI + ' ' + document.documentElement.localName"] \
            == "http://www.w3.org/2000/svg svg"
        assert rep.values["document.getElementsByTagNameNS('*', 'parsererror').length"] == 0
        assert rep.values["document.querySelectorAll('line.hop').length"] == len(build_ladder(
            light_run(page.stem)).hops)
        assert all(u.startswith("file:") for u in rep.requests), rep.requests
        assert png_pixels(rep.png).std() > 0.05
