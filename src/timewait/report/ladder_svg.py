"""The ladder diagram drawn as SVG: layout of the time axis, label placement, drawing.

Layout (:func:`layout`) gives every event a y. Time runs downward to scale
within a burst of activity; an idle gap longer than :func:`gap_cut_us` is cut
to a fixed height and marked. Events at one node never share a y, so several
segments sent in the same microsecond are spread out, and each arrow keeps the
slant of its delay, so the arrows of a burst stay parallel.

Labels are placed (:class:`_Placer`) along their arrow where they overlap no
other label, state box or drop reason: crossing arrows get their labels moved
apart instead of printed on top of each other.

A packet held in the network across a cut gap (a delayed duplicate) is drawn
as a stub where it left, a faint dotted wait and an ordinary arrow where it
arrived, rather than one near-vertical line across everything in between.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from timewait.report.ladder import (
    MAX_HOPS,
    SHORT_REASONS,
    Hop,
    Ladder,
    duration_text,
    gap_cut_us,
    hop_label,
    multi_conn_nodes,
)
from timewait.report.tcpdump import fmt_time

FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
COL_GAP = 440         # px between lifelines
STATE_W = 118         # least room for state labels beside a line
BRACKET_W = 26        # one timer lane
HOP_H = 64            # px for a typical one-way delay
BREAK_H = 44          # px a cut gap takes
TOP = 118             # y of the first event
AXIS_W = 84           # the time axis on the left
SEP_SAME_NODE = 18    # px between two events at one node
SEP_TWO_SENDS = 40    # px between two departures from one node (two label lines each)
HELD_STUB = 0.15      # share of the width a held packet's departure stub covers (it drops steeply)
HELD_DROP = 36        # px that stub goes down, so it parts from a copy of the packet that went on at once
HELD_FACTOR = 4       # a hop this many times slower than its link's median was held in the network
LABEL_AT = (0.5, 0.42, 0.58, 0.35, 0.65, 0.28, 0.72)  # where along its arrow a label may go, best first

BLUE, RED, GREY = "#1f3b73", "#b3261e", "#5b6475"


# --------------------------------------------------------------------------- layout


@dataclass(slots=True)
class _Event:
    t: int
    idx: int
    node: str | None
    what: str     # "send", "arrive", "lost", "state", "state-sent", "mark"
    order: float  # sort key among events of the same instant (the record index, or a state's anchor)


@dataclass(slots=True)
class Layout:
    """Where things go on the vertical axis."""

    ys: dict[tuple[int, int], float]        # (t, record index) -> y
    anchors: list[tuple[int, float]]        # (t, y) for interpolating other times
    breaks: list[tuple[float, float, int]]  # (y_top, y_bottom, elided µs)
    height: float
    cut_us: int
    time_marks: list[tuple[float, int]]     # (y, t) written on the time axis
    held: set[int]                          # arrival record indices of hops held across a cut gap

    def y_at(self, t: int) -> float:
        """y of an arbitrary time: interpolated between the events around it."""
        a = self.anchors
        if not a:
            return TOP
        if t <= a[0][0]:
            return a[0][1]
        for (t0, y0), (t1, y1) in zip(a, a[1:], strict=False):
            if t0 <= t <= t1:
                return y0 + (y1 - y0) * (t - t0) / (t1 - t0) if t1 > t0 else y0
        return a[-1][1]


def _held_hops(lad: Ladder, cut_us: int) -> set[int]:
    """Arrival indices of hops that took far longer than their link usually does (and longer than a cut)."""
    per_link: dict[tuple[str, str | None], list[int]] = {}
    for h in lad.hops:
        if h.t_arrive is not None:
            per_link.setdefault((h.src, h.dst), []).append(h.t_arrive - h.t_send)
    median = {k: statistics.median(v) for k, v in per_link.items()}
    return {h.idx_arrive for h in lad.hops if h.t_arrive is not None
            and h.t_arrive - h.t_send > max(cut_us, HELD_FACTOR * median[(h.src, h.dst)])}


def layout(lad: Ladder) -> Layout:
    """Give every event a y: to scale within a burst, long idle gaps cut, no two events of a node at one y."""
    found: dict[tuple[int, int], _Event] = {}
    arrival_of: dict[int, list[int]] = {}
    delay_of: dict[int, int] = {}  # arrival record index -> the hop's delay
    for h in lad.hops:
        found.setdefault((h.t_send, h.idx_send), _Event(h.t_send, h.idx_send, h.src, "send", h.idx_send))
        if h.t_arrive is not None:
            found.setdefault((h.t_arrive, h.idx_arrive),
                             _Event(h.t_arrive, h.idx_arrive, h.dst, "arrive", h.idx_arrive))
            delay_of[h.idx_arrive] = h.t_arrive - h.t_send
        else:  # lost on the way: the arrow stops half-way down, which takes room too
            found.setdefault((h.t_send, h.idx_arrive), _Event(h.t_send, h.idx_arrive, None, "lost", h.idx_arrive))
        arrival_of.setdefault(h.idx_send, []).append(h.idx_arrive)
    for s in lad.states:
        # A state entered by sending (FIN_WAIT_1 with its FIN) sorts just before that send and goes level with it.
        what = "state-sent" if s.by_send else "state"
        found.setdefault((s.t, s.idx), _Event(s.t, s.idx, s.node, what, s.order))
    for tm in lad.timers:
        found.setdefault((tm.start, tm.idx), _Event(tm.start, tm.idx, None, "mark", tm.idx))
        found.setdefault((tm.end, 1 << 40), _Event(tm.end, 1 << 40, None, "mark", 1 << 40))
    events = sorted(found.values(), key=lambda e: (e.t, e.order))
    cut_us = gap_cut_us(lad.hops)
    delays = [h.t_arrive - h.t_send for h in lad.hops if h.t_arrive is not None and h.t_arrive > h.t_send]
    scale = HOP_H / max(statistics.median(delays), 1) if delays else HOP_H / 1000
    held = _held_hops(lad, cut_us)

    ys: dict[tuple[int, int], float] = {}
    anchors: list[tuple[int, float]] = []
    breaks: list[tuple[float, float, int]] = []
    time_marks: list[tuple[float, int]] = []
    last_pkt: dict[str, tuple[float, str]] = {}   # last send/arrive y at each node
    last_state: dict[str, float] = {}              # last state label y at each node
    send_y: dict[int, float] = {}
    y = float(TOP)
    instant_y = y  # y of the first event of the latest instant: time is measured from there
    prev_t: int | None = None
    for e in events:
        if prev_t is not None and e.t > prev_t:
            gap = e.t - prev_t
            if gap > cut_us:
                breaks.append((y + 6, y + BREAK_H - 6, gap))
                y += BREAK_H
            else:
                # A burst spread over many px at one instant does not push the next instant further.
                y = max(y, instant_y + gap * scale)
            instant_y = y
        node = e.node
        if node is not None:
            if e.what == "state":
                # Written beside the line, level with the packet that caused it.
                if node in last_state:
                    y = max(y, last_state[node] + SEP_SAME_NODE)
            else:
                if node in last_pkt:
                    ly, lwhat = last_pkt[node]
                    sending = e.what in ("send", "state-sent")
                    sep = SEP_TWO_SENDS if (lwhat == "send" and sending) else SEP_SAME_NODE
                    y = max(y, ly + sep)
                if node in last_state:
                    y = max(y, last_state[node] + (SEP_SAME_NODE if e.what == "state-sent" else 0))
        if e.what == "arrive":
            sent_y = send_y.get(e.idx, y)
            # Keep the slant of the delay, unless a cut gap already lies between send and arrival.
            slant = min(delay_of.get(e.idx, 0) * scale, 2 * HOP_H) if not breaks or sent_y > breaks[-1][0] else 0
            y = max(y, sent_y + max(18.0, slant))
            if e.idx in held and breaks:
                # Room above the arrival for the last stretch of a held packet's arrow.
                y = max(y, breaks[-1][1] + HOP_H * (1 - HELD_STUB))
        elif e.what == "lost":
            y = max(y, send_y.get(e.idx, y) + HOP_H * 0.6)
        ys[(e.t, e.idx)] = y
        if e.what == "send":
            for ia in arrival_of.get(e.idx, ()):
                send_y[ia] = y
        if not anchors or anchors[-1][0] != e.t:
            anchors.append((e.t, y))
        if node is not None:
            if e.what in ("state", "state-sent"):
                last_state[node] = y
            else:
                last_pkt[node] = (y, e.what)
            if e.what != "arrive" and (not time_marks or (y - time_marks[-1][0] >= 13 and time_marks[-1][1] != e.t)):
                time_marks.append((y, e.t))
        prev_t = e.t
    return Layout(ys, anchors, breaks, y + 40, cut_us, time_marks, held)


# --------------------------------------------------------------------------- label placement


def text_width(s: str, size: float, bold: bool = False) -> float:
    """Approximate advance width of ``s`` in DejaVu Sans (what headless Chromium on Debian uses)."""
    w = 0.0
    for ch in s:
        if ch.isdigit():
            w += 0.636
        elif ch in " ,.:;|!'":
            w += 0.318
        elif ch in "=+<>~":
            w += 0.838
        elif ch.isupper() or ch == "_":
            w += 0.66
        else:
            w += 0.60
    return w * size * (1.05 if bold else 1.0)


@dataclass(slots=True)
class _Band:
    """A rotated rectangle a piece of text covers: centre, direction, half length, extent across."""

    cx: float
    cy: float
    cos: float
    sin: float
    half: float
    top: float  # across the direction, local y (negative = above)
    bot: float

    def count_inside(self, pts: list[tuple[float, float]]) -> int:
        """How many of ``pts`` lie in the band (each taken into the band's own frame). One loop
        with the band's numbers in locals: the placer asks about ~500,000 points for a big ladder."""
        cx, cy, c, s, half, top, bot = self.cx, self.cy, self.cos, self.sin, self.half, self.top, self.bot
        n = 0
        for x, y in pts:
            dx, dy = x - cx, y - cy
            lx = dx * c + dy * s
            if -half <= lx <= half and top <= -dx * s + dy * c <= bot:
                n += 1
        return n

    def points(self) -> list[tuple[float, float]]:
        """Sample points over the band (every ~8 px along, three rows across)."""
        n = max(2, int(2 * self.half / 8) + 1)
        out = []
        for i in range(n):
            lx = -self.half + 2 * self.half * i / (n - 1)
            for ly in (self.top + 1, (self.top + self.bot) / 2, self.bot - 1):
                out.append((self.cx + lx * self.cos - ly * self.sin, self.cy + lx * self.sin + ly * self.cos))
        return out

    def intersects(self, other: _Band) -> bool:
        """Separating-axis test: do the two rotated rectangles share any area?"""
        mine, theirs = self.corners(), other.corners()
        for c, s in ((self.cos, self.sin), (other.cos, other.sin)):
            for ax, ay in ((c, s), (-s, c)):
                pa = [ax * x + ay * y for x, y in mine]
                pb = [ax * x + ay * y for x, y in theirs]
                if max(pa) <= min(pb) or max(pb) <= min(pa):
                    return False
        return True

    def box(self) -> tuple[float, float, float, float]:
        xs, ys = zip(*self.corners(), strict=True)
        return min(xs), min(ys), max(xs), max(ys)

    def corners(self) -> list[tuple[float, float]]:
        return [(self.cx + lx * self.cos - ly * self.sin, self.cy + lx * self.sin + ly * self.cos)
                for lx in (-self.half, self.half) for ly in (self.top, self.bot)]


def _rect_band(x0: float, y0: float, x1: float, y1: float) -> _Band:
    return _Band((x0 + x1) / 2, (y0 + y1) / 2, 1.0, 0.0, (x1 - x0) / 2, -(y1 - y0) / 2, (y1 - y0) / 2)


class _Placer:
    """Remembers what is on the page and finds label positions that overlap nothing."""

    BUCKET = 120

    def __init__(self) -> None:
        # y bucket -> (band, its bounding box, its sample points)
        self._buckets: dict[int, list[tuple[_Band, tuple[float, float, float, float], list[tuple[float, float]]]]] = {}

    def add(self, band: _Band) -> None:
        box = band.box()
        entry = (band, box, band.points())
        for b in range(int(box[1] // self.BUCKET), int(box[3] // self.BUCKET) + 1):
            self._buckets.setdefault(b, []).append(entry)

    def remove(self, band: _Band) -> None:
        box = band.box()
        for b in range(int(box[1] // self.BUCKET), int(box[3] // self.BUCKET) + 1):
            self._buckets[b] = [e for e in self._buckets.get(b, ()) if e[0] is not band]

    def _near(self, band: _Band) -> Iterator[tuple[_Band, list[tuple[float, float]]]]:
        """Each placed band (but ``band`` itself) whose bounding box meets ``band``'s, once."""
        x0, y0, x1, y1 = band.box()
        seen: set[int] = set()
        for b in range(int(y0 // self.BUCKET), int(y1 // self.BUCKET) + 1):
            for other, (ox0, oy0, ox1, oy1), theirs in self._buckets.get(b, ()):
                if other is band or id(other) in seen or ox1 < x0 or ox0 > x1 or oy1 < y0 or oy0 > y1:
                    continue
                seen.add(id(other))
                yield other, theirs

    def overlap(self, band: _Band) -> int:
        """0 if ``band`` touches nothing placed (but itself); else more the more it covers."""
        hits = 0
        mine: list[tuple[float, float]] | None = None
        for other, theirs in self._near(band):
            if band.intersects(other):  # exact; the sampled points then say how much
                mine = mine if mine is not None else band.points()
                hits += 1 + other.count_inside(mine) + band.count_inside(theirs)
        return hits

    def touches(self, band: _Band) -> bool:
        """Whether ``band`` overlaps anything placed (but itself): :meth:`overlap` > 0, without
        measuring how much."""
        return any(band.intersects(other) for other, _ in self._near(band))


# --------------------------------------------------------------------------- arrows


@dataclass(slots=True)
class _Arrow:
    hop: Hop
    x1: float
    y1: float
    x2: float
    y2: float
    lost_on_way: bool
    stub: tuple[float, float, float, float] | None = None  # held packets: departure stub (x1, y1, xa, ya)
    label_at: float = 0.5   # where along the arrow the label's centre is
    compact: bool = False   # the label in four short lines rather than two long ones

    @property
    def color(self) -> str:
        return RED if self.hop.drop is not None else BLUE

    def angle(self) -> tuple[float, float, float]:
        """Text angle in degrees (never upside down), and its cos/sin."""
        ang = math.degrees(math.atan2(self.y2 - self.y1, self.x2 - self.x1))
        if ang > 90 or ang < -90:
            ang += 180
        r = math.radians(ang)
        return ang, math.cos(r), math.sin(r)

    def label_lines(self, compact: bool) -> tuple[list[str], list[str]]:
        """Lines above the arrow (flags, seq, ack, len) and below it (timestamps, TTL)."""
        first, second = hop_label(self.hop.seg)
        if not compact:
            return [first], [second] if second else []
        above = [w for w in first.replace(" ack=", "\nack=", 1).split("\n")]
        below = [w for w in second.replace(" TSecr=", "\nTSecr=", 1).split("\n")] if second else []
        return above, below

    def label_band(self, f: float, compact: bool = False) -> _Band:
        above, below = self.label_lines(compact)
        half = max([text_width(t, 10.5) for t in above] + [text_width(t, 9) for t in below]) / 2 + 3
        _, c, s = self.angle()
        if self.lost_on_way:  # a short arrow: the label starts near the sender
            cx, cy = self._start_anchor()
            sgn = 1 if self.x2 > self.x1 else -1
            cx, cy = cx + sgn * half * c, cy + sgn * half * s
        else:
            cx, cy = self.x1 + (self.x2 - self.x1) * f, self.y1 + (self.y2 - self.y1) * f
        return _Band(cx, cy, c, s, half, -2.0 - 12 * len(above), 4.5 + 10 * len(below) if below else 0.0)

    def _start_anchor(self) -> tuple[float, float]:
        step = 16 / max(1.0, math.hypot(self.x2 - self.x1, self.y2 - self.y1))
        return self.x1 + (self.x2 - self.x1) * step, self.y1 + (self.y2 - self.y1) * step

    def candidates(self) -> list[tuple[float, bool]]:
        """Label places to try, best first: ``(share of the way along, compact)``.

        The one-line label along the middle of the arrow or a little off it;
        then, for arrows that cross close to another (two FINs sent at once),
        a compact label near the sender, near the receiver or in the middle.
        """
        if self.lost_on_way:
            return [(0.5, False)]
        length = math.hypot(self.x2 - self.x1, self.y2 - self.y1)
        half = self.label_band(0.5).half
        out = [(f, False) for f in LABEL_AT if min(f, 1 - f) * length >= half - 8] or [(0.5, False)]
        near = (self.label_band(0.5, True).half + 16) / max(length, 1.0)
        if near < 0.5:
            out += [(f, True) for f in (near, 1 - near, 0.5, (near + 0.5) / 2, (1.5 - near) / 2)]
        return out

    def held_note(self) -> tuple[str, tuple[float, float, str]]:
        """``held 1.568 s``, written level with the end of the departure stub, towards the receiver."""
        assert self.stub is not None
        _, _, xa, ya = self.stub
        right = self.x2 > xa
        text = f"held {duration_text(self.hop.t_arrive - self.hop.t_send)}"  # type: ignore[operator]
        return text, (xa + (6 if right else -6), ya + 4, "start" if right else "end")

    def fixed_bands(self) -> list[_Band]:
        """What this arrow writes at a fixed place: a drop reason, a held note."""
        out = []
        for text, (x, y, anchor), size in ([(*self.reason(), 10.5)] if self.hop.drop is not None else []) + \
                ([(*self.held_note(), 9.5)] if self.stub is not None else []):
            w = text_width(text, size, bold=size > 10)
            x0 = x if anchor == "start" else x - w if anchor == "end" else x - w / 2
            out.append(_rect_band(x0 - 2, y - 11, x0 + w + 2, y + 3))
        return out

    def reason(self) -> tuple[str, tuple[float, float, str]]:
        text = f"✕ {SHORT_REASONS.get(self.hop.drop or '', self.hop.drop)}"
        if self.lost_on_way:
            return text, (self.x2, self.y2 + 17, "middle")
        left = self.x2 < self.x1
        return text, (self.x2 + (12 if left else -12), self.y2 + 17, "start" if left else "end")


def _arrow(h: Hop, lay: Layout, xs: dict[str, float]) -> _Arrow | None:
    if h.src not in xs:
        return None
    x1 = xs[h.src]
    y1 = lay.ys[(h.t_send, h.idx_send)]
    lost_on_way = h.t_arrive is None
    if h.dst in xs:
        x2 = xs[h.dst]  # type: ignore[index]
    else:
        x2 = x1 + (COL_GAP if x1 == min(xs.values()) else -COL_GAP)
    if lost_on_way:
        return _Arrow(h, x1, y1, x1 + (x2 - x1) * 0.55, lay.ys[(h.t_send, h.idx_arrive)], True)
    y2 = lay.ys[(h.t_arrive, h.idx_arrive)]  # type: ignore[index]
    if h.idx_arrive in lay.held and any(y1 + HELD_DROP < b0 and b1 < y2 for b0, b1, _ in lay.breaks):
        xa, ya, yb = x1 + (x2 - x1) * HELD_STUB, y1 + HELD_DROP, y2 - HOP_H * (1 - HELD_STUB)
        return _Arrow(h, xa, yb, x2, y2, False, stub=(x1, y1, xa, ya))
    return _Arrow(h, x1, y1, x2, y2, False)


def _svg_arrow(a: _Arrow, interactive: bool = False) -> list[str]:
    h, color = a.hop, a.color
    parts = []
    if a.stub is not None:
        sx, sy, xa, ya = a.stub
        parts.append(f'<line x1="{sx:.1f}" y1="{sy:.1f}" x2="{xa:.1f}" y2="{ya:.1f}" stroke="{color}" '
                     'stroke-width="1.4"/>')
        parts.append(f'<line x1="{xa:.1f}" y1="{ya:.1f}" x2="{a.x1:.1f}" y2="{a.y1:.1f}" stroke="#8893a8" '
                     'stroke-width="1.2" stroke-dasharray="1.5 4"/>')
        text, (hx, hy, anchor) = a.held_note()
        parts.append(_text(hx, hy, text, size=9.5, anchor=anchor, fill=GREY, extra=' font-style="italic"'))
    cls = "hop dropped" if h.drop is not None else "hop"
    pid = f' data-pid="{h.pid}"' if interactive else ""
    line = (f'<line class="{cls}"{pid} x1="{a.x1:.1f}" y1="{a.y1:.1f}" x2="{a.x2:.1f}" y2="{a.y2:.1f}" '
            f'stroke="{color}" stroke-width="1.4"')
    if h.drop is not None:
        parts.append(line + ' stroke-dasharray="6 3"/>')
        d, x2, y2 = 5, a.x2, a.y2
        parts.append(f'<path d="M{x2 - d:.1f},{y2 - d:.1f} L{x2 + d:.1f},{y2 + d:.1f} M{x2 - d:.1f},{y2 + d:.1f} '
                     f'L{x2 + d:.1f},{y2 - d:.1f}" stroke="{color}" stroke-width="2.4"/>')
    else:
        parts.append(line + ' marker-end="url(#arrow)"/>')
    if interactive:  # a thin line is hard to hit: a wide invisible twin takes the click
        parts.append(f'<line class="hit"{pid} x1="{a.x1:.1f}" y1="{a.y1:.1f}" x2="{a.x2:.1f}" y2="{a.y2:.1f}" '
                     'stroke="transparent" stroke-width="12" pointer-events="stroke"/>')
    return parts


def _svg_label(a: _Arrow) -> list[str]:
    above, below = a.label_lines(a.compact)
    band = a.label_band(a.label_at, a.compact)
    ang = a.angle()[0]
    rot = f' transform="rotate({ang:.2f} {band.cx:.1f} {band.cy:.1f})"'
    dropped = a.hop.drop is not None
    parts = []
    for k, line in enumerate(above):  # the first line carries the flags: class "label"
        cls = ' class="label"' if k == 0 else ""
        parts.append(_text(band.cx, band.cy - 4 - 12 * (len(above) - 1 - k), line, size=10.5, anchor="middle",
                           fill=a.color, extra=cls + rot))
    for k, line in enumerate(below):
        parts.append(_text(band.cx, band.cy + 11 + 10 * k, line, size=9, anchor="middle",
                           fill=a.color if dropped else GREY, extra=rot))
    if dropped:
        text, (x, y, anchor) = a.reason()
        parts.append(_text(x, y, text, size=10.5, anchor=anchor, fill=a.color, weight="bold"))
    return parts


def _place_labels(arrows: list[_Arrow], placer: _Placer) -> None:
    """Each label where it overlaps least, in time order; then labels still overlapping are placed again
    with all the others known (two FINs crossing: the first one placed moves aside for the second)."""
    bands: dict[int, _Band] = {}

    def place(i: int, a: _Arrow) -> None:
        # The candidate with the least overlap, the earliest on a tie: the first that overlaps
        # nothing wins at once (most labels), so the rest are not measured.
        best: tuple[int, tuple[float, bool]] | None = None
        for o in a.candidates():
            ov = placer.overlap(a.label_band(*o))
            if best is None or ov < best[0]:
                best = (ov, o)
                if ov == 0:
                    break
        assert best is not None
        a.label_at, a.compact = best[1]
        bands[i] = a.label_band(a.label_at, a.compact)
        placer.add(bands[i])

    for i, a in enumerate(arrows):
        place(i, a)
    for _ in range(2):
        clashing = [i for i in range(len(arrows)) if placer.touches(bands[i])]
        if not clashing:
            break
        for i in clashing:
            placer.remove(bands[i])
            place(i, arrows[i])


# --------------------------------------------------------------------------- the document


def _text(x: float, y: float, s: str, *, size: float = 11, anchor: str = "start", fill: str = "#222",
          weight: str = "normal", extra: str = "", halo: bool = True) -> str:
    halo_attr = ' stroke="#fff" stroke-width="3.5" stroke-linejoin="round" paint-order="stroke"' if halo else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}" '
            f'font-weight="{weight}"{halo_attr}{extra}>{escape(s)}</text>')


def _state_sides(lad: Ladder) -> dict[str, int]:
    """-1: write a node's states on its left, +1: on its right -- away from the arrows it sends and gets."""
    pos = {c: i for i, c in enumerate(lad.columns)}
    peers: dict[str, set[int]] = {c: set() for c in lad.columns}
    for h in lad.hops:
        if h.dst in pos and h.src in pos:
            peers[h.src].add(pos[h.dst])  # type: ignore[index]
            peers[h.dst].add(pos[h.src])  # type: ignore[index]
    sides = {}
    for c, i in pos.items():
        if peers[c] and all(p > i for p in peers[c]):
            sides[c] = -1
        elif peers[c] and all(p < i for p in peers[c]):
            sides[c] = 1
        else:
            sides[c] = -1 if i == 0 and len(pos) > 1 else 1
    return sides


def _state_label(lad: Ladder, multi: set[str], i: int) -> str:
    s = lad.states[i]
    return s.new + (f" :{s.key[1]}" if s.node in multi else "")


def _empty_svg(lad: Ladder) -> str:
    lines = lad.notes or ["No packets in the trace: nothing to draw."]
    width = int(max(420, 40 + max(text_width(n, 12) for n in lines), 40 + text_width(lad.title, 15, True)))
    height = 80 + 20 * len(lines)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="{FONT}">',
        "<title>" + escape(f"Ladder diagram: {lad.title}") + "</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
        _text(16, 24, lad.title, size=15, weight="bold"),
    ]
    for k, note in enumerate(lines):
        out.append(_text(16, 56 + 20 * k, note, size=12, fill="#555"))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render_svg(lad: Ladder, *, interactive: bool = False, geometry: dict[str, Any] | None = None) -> str:
    """The ladder as a standalone SVG document (parses as XML).

    ``interactive`` (the HTML report): every arrow carries ``data-pid`` (its packet)
    and a wide transparent twin to click, every lifeline box ``class="lane"
    data-node=NAME``. ``geometry``, when given, is filled with what a script needs to
    put a time on the figure: ``anchors`` (``[t_us, y]`` pairs, y in the SVG's own
    units, increasing), ``width`` and ``height``.
    """
    if lad.empty:
        return _empty_svg(lad)
    lay = layout(lad)
    multi = multi_conn_nodes(lad)
    sides = _state_sides(lad)
    # Room outside the first and last lines: state labels, then timer lanes.
    lanes: dict[str, int] = {}
    for tm in lad.timers:
        lanes[tm.node] = max(lanes.get(tm.node, 0), 1 + sum(1 for o in lad.timers if o.node == tm.node
                                                             and o is not tm and o.start < tm.start < o.end))
    state_w: dict[str, float] = {}
    for i, s in enumerate(lad.states):
        state_w[s.node] = max(state_w.get(s.node, 0.0), text_width(_state_label(lad, multi, i), 10.5, True) + 18)
    first, last = (lad.columns[0], lad.columns[-1]) if lad.columns else ("", "")
    left_w = max(STATE_W, state_w.get(first, 0.0)) if sides.get(first) == -1 else STATE_W / 2
    right_w = max(STATE_W, state_w.get(last, 0.0)) if sides.get(last) == 1 else STATE_W / 2
    left_lanes = lanes.get(first, 0) if sides.get(first) == -1 else 0
    right_lanes = lanes.get(last, 0) if sides.get(last) == 1 else 0
    x0 = AXIS_W + left_w + left_lanes * BRACKET_W + 34
    xs = {c: x0 + i * COL_GAP for i, c in enumerate(lad.columns)}
    width = int((xs[last] if lad.columns else x0) + right_w + right_lanes * BRACKET_W + 40)
    notes = [f"Time runs downward, to scale within bursts; idle gaps longer than {duration_text(lay.cut_us)} "
             "are cut at the ≈ marks, which give the time left out."]
    if lad.truncated:
        notes.append(f"Only the first {MAX_HOPS} packets are drawn ({lad.truncated} more: use --conn or --window).")
    notes += lad.notes
    width = max(width, int(40 + max(text_width(t, 11) for t in notes)), int(40 + text_width(lad.title, 15, True)))
    shift = 16 * (len(notes) - 1)  # extra note lines push the figure down
    height = int(lay.height + 50 + shift)
    if geometry is not None:
        geometry.update(anchors=[[t, round(y + shift, 1)] for t, y in lay.anchors], width=width, height=height)
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="{FONT}">',
        "<title>" + escape(f"Ladder diagram: {lad.title}") + "</title>",
        f'<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" markerHeight="9" '
        f'orient="auto-start-reverse"><path d="M0,1 L10,5 L0,9 z" fill="{BLUE}"/></marker></defs>',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
        _text(16, 24, lad.title + (f" - {lad.selection}" if lad.selection else ""), size=15, weight="bold"),
    ]
    for k, note in enumerate(notes):
        out.append(_text(16, 42 + 16 * k, note, size=11, fill="#555"))
    out.append(f'<g transform="translate(0 {shift})">')
    out += _lifelines(lad, lay, xs, interactive)
    out += _breaks_and_axis(lay, width)
    out += _timer_brackets(lad, lay, xs, sides, {c: max(STATE_W, state_w.get(c, 0.0)) for c in lad.columns})

    # State boxes first (fixed), then every arrow's label where it overlaps the least.
    placer = _Placer()
    boxes: list[tuple[float, float, float, str, str]] = []
    for i, s in enumerate(lad.states):
        if s.node not in xs:
            continue
        y = lay.ys[(s.t, s.idx)]
        label = _state_label(lad, multi, i)
        w = text_width(label, 10.5, True) + 10
        rx = xs[s.node] - 8 - w if sides[s.node] < 0 else xs[s.node] + 8
        placer.add(_rect_band(rx, y - 8, rx + w, y + 8))
        boxes.append((rx, y, w, label, s.new))
    arrows = [a for a in (_arrow(h, lay, xs) for h in lad.hops) if a is not None]
    for a in arrows:
        for band in a.fixed_bands():
            placer.add(band)
    _place_labels(arrows, placer)
    for a in arrows:
        out += _svg_arrow(a, interactive)
    for a in arrows:
        out += _svg_label(a)
    for (rx, y, w, label, new), s in zip(boxes, (s for s in lad.states if s.node in xs), strict=True):
        fill = "#fff4d6" if new == "TIME_WAIT" else ("#f1f1f1" if new == "CLOSED" else "#e6f4ea")
        stroke = "#b07d00" if new == "TIME_WAIT" else ("#999" if new == "CLOSED" else "#2e7d32")
        out.append(f'<rect class="state" x="{rx:.1f}" y="{y - 8:.1f}" width="{w:.1f}" height="16" rx="3" '
                   f'fill="{fill}" stroke="{stroke}" stroke-width="0.8"/>')
        out.append(_text(rx + w / 2, y + 4, label, size=10.5, anchor="middle", weight="bold", halo=False))
        out.append(f'<circle cx="{xs[s.node]:.1f}" cy="{y:.1f}" r="2.6" fill="{stroke}"/>')
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _lifelines(lad: Ladder, lay: Layout, xs: dict[str, float], interactive: bool = False) -> list[str]:
    """A box with the node's name and address on top of a vertical line, dotted through the breaks."""
    out = []
    for c in lad.columns:
        x = xs[c]
        lane = f' class="lane" data-node="{escape(c)}"' if interactive else ""
        out.append(f'<rect{lane} x="{x - 62:.1f}" y="{TOP - 66}" width="124" height="40" rx="6" fill="#eef2fb" '
                   f'stroke="{BLUE}"/>')
        out.append(_text(x, TOP - 49, c, size=13, anchor="middle", weight="bold", halo=False))
        out.append(_text(x, TOP - 34, lad.addrs.get(c, "") or lad.kinds.get(c, ""), size=10, anchor="middle",
                         fill="#444", halo=False))
        y = TOP - 22
        for b0, b1, _ in lay.breaks:
            out.append(f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x:.1f}" y2="{b0:.1f}" stroke="#333" stroke-width="1.6"/>')
            out.append(f'<line x1="{x:.1f}" y1="{b0:.1f}" x2="{x:.1f}" y2="{b1:.1f}" stroke="#333" '
                       'stroke-width="1.6" stroke-dasharray="2 4"/>')
            y = b1
        out.append(f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x:.1f}" y2="{lay.height:.1f}" stroke="#333" '
                   'stroke-width="1.6"/>')
    return out


def _breaks_and_axis(lay: Layout, width: int) -> list[str]:
    """Zig-zag marks across the figure where time was cut (with how much), and the time labels."""
    out = []
    for b0, b1, gap in lay.breaks:
        mid = (b0 + b1) / 2
        x_a, x_b = AXIS_W - 6, width - 16
        for dy in (-3, 3):
            pts = [f"{x_a + i * 12:.1f},{mid + dy + (-3 if i % 2 else 3):.1f}" for i in range(int((x_b - x_a) / 12) + 1)]
            out.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="#9aa4b8" stroke-width="1"/>')
        out.append(_text(8, mid + 4, f"≈ {duration_text(gap)}", size=10.5, fill=GREY, weight="bold"))
    out.append(_text(8, TOP - 34, "time (s)", size=10, fill="#555", halo=False))
    for y, t in lay.time_marks:
        out.append(_text(8, y + 3.5, fmt_time(t), size=9.5, fill="#666"))
    return out


def _timer_brackets(lad: Ladder, lay: Layout, xs: dict[str, float], sides: dict[str, int],
                    room: dict[str, float]) -> list[str]:
    """Timers as brackets beside the state labels, one lane per overlapping timer."""
    out = []
    lanes: dict[str, list[tuple[float, float, int]]] = {}
    # A timer re-armed the moment it fires (RTO backing off) continues in the same lane without the word.
    chained = {(tm.node, tm.end) for tm in lad.timers} & {(tm.node, tm.start) for tm in lad.timers}
    for tm in sorted(lad.timers, key=lambda t: t.start):
        if tm.node not in xs:
            continue
        ya, yb = lay.y_at(tm.start), lay.y_at(tm.end)
        if yb - ya < 6:
            continue
        used = lanes.setdefault(tm.node, [])
        lane = 0
        while any(ln == lane and not (yb <= u0 or ya >= u1) for u0, u1, ln in used):  # touching may share
            lane += 1
        say_fired = tm.fired and (tm.node, tm.end) not in chained
        used.append((ya, yb + (16 if say_fired else 0), lane))  # "fired" is written below the bracket
        sgn = sides[tm.node]
        bx = xs[tm.node] + sgn * (room[tm.node] + 14 + lane * BRACKET_W)
        tick = -sgn * 6
        color = "#8a4b08" if tm.name != "rto" else "#6b3fa0"
        out.append(f'<path class="timer" d="M{bx + tick:.1f},{ya:.1f} H{bx:.1f} V{yb:.1f} H{bx + tick:.1f}" '
                   f'fill="none" stroke="{color}" stroke-width="1.5"/>')
        label = tm.label
        if yb - ya < text_width(label, 10) + 8:
            short = label.split(" ", 1)[0]
            label = short if yb - ya >= text_width(short, 10) + 8 else ""
        cy = (ya + yb) / 2
        if label:
            out.append(_text(bx + sgn * 10, cy, label, size=10, anchor="middle", fill=color,
                             extra=f' transform="rotate(-90 {bx + sgn * 10:.1f} {cy:.1f})"', halo=False))
        if tm.fired:
            out.append(f'<circle cx="{bx:.1f}" cy="{yb:.1f}" r="3" fill="{color}"/>')
        end_word = "fired" if say_fired else "restarted" if tm.restarted else ""
        if end_word:
            out.append(_text(bx + sgn * 5, yb + 13 if tm.fired else yb + 3, end_word, size=9,
                             anchor="end" if sgn < 0 else "start", fill=color))
    return out
