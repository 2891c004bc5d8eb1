"""The TCP state diagram, drawn from :data:`timewait.tcp.states.TRANSITIONS` (the engine's own table).

A layered layout in pure Python: states in layers by their longest path from
CLOSED (so the picture reads top to bottom like RFC 9293's figure), ordered
within a layer by the barycentre of their predecessors. Transitions into
CLOSED on a reset (received, or sent for an in-window SYN by RFC 793), an
abort, a give-up timeout, a full TIME_WAIT table, a closed listener, the hand-over to a
TIME_WAIT record or its end by connect() or the timewait=off knob are
listed under each state's box instead of drawn as arrows (they would cross
everything); every other transition is an arrow labelled ``event / sent``.
The normal ends of a connection (LAST_ACK, TIME_WAIT, FIN_WAIT_2 timeout) go
to a second CLOSED box at the bottom.
"""

from __future__ import annotations

from collections import defaultdict
from xml.sax.saxutils import escape

from timewait.tcp.states import (
    APP_ABORT,
    CLOSED,
    LISTENER_GONE,
    NAMES,
    RCV_RST,
    RCV_SYN_OR_DATA,
    RCV_SYN_RFC793,
    TIMEOUT,
    TRANSITIONS,
    TW_HANDOFF,
    TW_OFF,
    TW_OVERFLOW,
    TW_REUSE,
)

_SIDE_EVENTS = (RCV_RST, RCV_SYN_RFC793, APP_ABORT, TIMEOUT, TW_OVERFLOW, LISTENER_GONE, TW_HANDOFF, TW_OFF,
                TW_REUSE, RCV_SYN_OR_DATA)
BOTTOM = -1  # the second CLOSED box
BOX_W, BOX_H = 150, 34
X_GAP, Y_GAP = 250, 138
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"


def _edges() -> tuple[dict[tuple[int, int], list[str]], dict[int, list[str]]]:
    """Arrows ``{(src, dst): [labels]}`` and side notes ``{state: [labels]}`` from the table."""
    arrows: dict[tuple[int, int], list[str]] = defaultdict(list)
    notes: dict[int, list[str]] = defaultdict(list)
    for (state, event), (nxt, sent) in TRANSITIONS.items():
        label = f"{event} / {sent}" if sent else event
        if nxt == CLOSED and event in _SIDE_EVENTS:
            notes[state].append(label)
        else:
            arrows[(state, nxt)].append(label)
    return dict(arrows), dict(notes)


def _layers(arrows: dict[tuple[int, int], list[str]]) -> dict[int, int]:
    """Longest path from CLOSED over the arrows that do not return to CLOSED."""
    layer = {CLOSED: 0}
    forward = [(a, b) for a, b in arrows if b != CLOSED]
    for _ in range(len(NAMES)):
        changed = False
        for a, b in forward:
            if a in layer and layer.get(b, -1) < layer[a] + 1:
                layer[b] = layer[a] + 1
                changed = True
        if not changed:
            break
    return layer


def layout() -> tuple[dict[int, tuple[float, float]], dict[tuple[int, int], list[str]], dict[int, list[str]]]:
    """Box centres per state (``BOTTOM`` for the final CLOSED), the arrows and the side notes."""
    arrows, notes = _edges()
    layer = _layers(arrows)
    deepest = max(layer.values())
    # Arrows back to CLOSED from the lower half end at the bottom CLOSED box.
    routed: dict[tuple[int, int], list[str]] = {}
    for (a, b), labels in arrows.items():
        if b == CLOSED and layer.get(a, 0) * 2 > deepest:
            routed[(a, BOTTOM)] = labels
        else:
            routed[(a, b)] = labels
    layer[BOTTOM] = deepest + 1
    rows: dict[int, list[int]] = defaultdict(list)
    for s in sorted(layer, key=lambda s: (s == BOTTOM, s)):
        rows[layer[s]].append(s)
    pos_index = {s: i for row in rows.values() for i, s in enumerate(row)}
    preds: dict[int, list[int]] = defaultdict(list)
    for a, b in routed:
        if layer.get(b, 0) > layer.get(a, 0):
            preds[b].append(a)
    for _ in range(4):  # barycentre sweeps
        for depth in sorted(rows)[1:]:
            row = rows[depth]

            def bary(s: int, row: list[int] = row) -> float:
                ps = [pos_index[p] - (len(rows[layer[p]]) - 1) / 2 for p in preds.get(s, [])]
                return sum(ps) / len(ps) if ps else pos_index[s] - (len(row) - 1) / 2

            row.sort(key=bary)
            for i, s in enumerate(row):
                pos_index[s] = i
    width = max(len(r) for r in rows.values())
    centres = {}
    for depth, row in rows.items():
        offset = (width - len(row)) / 2
        for i, s in enumerate(row):
            centres[s] = (90 + BOX_W / 2 + (offset + i) * X_GAP, 90 + depth * Y_GAP)
    return centres, routed, notes


def _free_channel(want: float, boxes: list[float]) -> float:
    """The x nearest ``want`` that is clear of every box centred at ``boxes`` (with a margin)."""
    margin = BOX_W / 2 + 22
    candidates = [want] + [b + d for b in boxes for d in (-margin - 3, margin + 3)]
    free = [c for c in candidates if all(abs(c - b) >= margin for b in boxes)]
    return min(free, key=lambda c: abs(c - want))


def render_state_svg() -> str:
    """The state diagram as a standalone SVG document."""
    centres, arrows, notes = layout()
    width = int(max(x for x, _ in centres.values()) + BOX_W / 2 + 300)
    height = int(max(y for _, y in centres.values()) + 110)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="{FONT}">',
        "<title>TCP connection states (from timewait.tcp.states.TRANSITIONS)</title>",
        '<defs><marker id="ah" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto"><path d="M0,1 L10,5 L0,9 z" fill="#1f3b73"/></marker></defs>',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        '<text x="16" y="26" font-size="16" font-weight="bold">TCP connection states</text>',
        '<text x="16" y="46" font-size="11" fill="#555">Drawn from the transition table the engine runs on '
        "(timewait.tcp.states.TRANSITIONS). Arrows: event / segment sent.</text>",
    ]
    halo = 'stroke="#fff" stroke-width="4" stroke-linejoin="round" paint-order="stroke"'
    for (a, b), labels in sorted(arrows.items()):
        (x1, y1), (x2, y2) = centres[a], centres[b]
        anchor = "middle"
        if y2 > y1:  # downward: bottom of a to top of b, around the boxes of skipped layers
            sx, sy, ex, ey = x1, y1 + BOX_H / 2, x2, y2 - BOX_H / 2
            between = [x for st, (x, y) in centres.items() if y1 < y < y2]
            if between:
                cx = _free_channel((x1 + x2) / 2, between)
                my = min(y for st, (x, y) in centres.items() if y1 < y < y2)
                path = (f"M{sx:.1f},{sy:.1f} C{sx:.1f},{sy + 40:.1f} {cx:.1f},{my - 60:.1f} {cx:.1f},{my:.1f} "
                        f"S{ex:.1f},{ey - 40:.1f} {ex:.1f},{ey:.1f}")
                nearest = min(between, key=lambda x: abs(x - cx))
                anchor = "end" if cx < nearest else "start"
                lx, ly = cx + (-6 if anchor == "end" else 6), my
            else:
                path = f"M{sx:.1f},{sy:.1f} C{sx:.1f},{sy + 45:.1f} {ex:.1f},{ey - 45:.1f} {ex:.1f},{ey:.1f}"
                lx, ly = (sx + ex) / 2, (sy + ey) / 2
        elif y2 < y1:  # back up to CLOSED: leave from the side, curve outside
            left = x1 <= x2
            sx = x1 - BOX_W / 2 if left else x1 + BOX_W / 2
            ex, ey = (x2 - BOX_W / 2 if left else x2 + BOX_W / 2), y2
            bow = -70 if left else 70
            path = f"M{sx:.1f},{y1:.1f} C{sx + bow:.1f},{y1:.1f} {ex + bow:.1f},{ey:.1f} {ex:.1f},{ey:.1f}"
            lx, ly = (sx + ex) / 2 + bow * 0.8, (y1 + ey) / 2
        else:  # same layer
            sx, ex = (x1 + BOX_W / 2, x2 - BOX_W / 2) if x2 > x1 else (x1 - BOX_W / 2, x2 + BOX_W / 2)
            path = f"M{sx:.1f},{y1 - 6:.1f} C{(sx + ex) / 2:.1f},{y1 - 40:.1f} {(sx + ex) / 2:.1f},{y1 - 40:.1f} {ex:.1f},{y2 - 6:.1f}"
            lx, ly = (sx + ex) / 2, y1 - 34
        out.append(f'<path d="{path}" fill="none" stroke="#1f3b73" stroke-width="1.3" marker-end="url(#ah)"/>')
        for i, label in enumerate(labels):  # one line per transition between the same two states
            ty = ly + 4 + (i - (len(labels) - 1) / 2) * 13
            out.append(f'<text x="{lx:.1f}" y="{ty:.1f}" font-size="10.5" text-anchor="{anchor}" fill="#1f3b73" '
                       f"{halo}>{escape(label)}</text>")
    for s, (x, y) in centres.items():
        name = "CLOSED" if s == BOTTOM else NAMES[s]
        fill = "#fff4d6" if name == "TIME_WAIT" else ("#f1f1f1" if name == "CLOSED" else "#e6f4ea")
        out.append(f'<rect x="{x - BOX_W / 2:.1f}" y="{y - BOX_H / 2:.1f}" width="{BOX_W}" height="{BOX_H}" rx="8" '
                   f'fill="{fill}" stroke="#333" stroke-width="1.2"/>')
        out.append(f'<text x="{x:.1f}" y="{y + 5:.1f}" font-size="13" font-weight="bold" text-anchor="middle">'
                   f"{escape(name)}</text>")
    # The side exits to CLOSED, as a list beside the figure.
    lx = max(x for x, _ in centres.values()) + BOX_W / 2 + 40
    ly = 90.0
    out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="12" font-weight="bold" fill="#8a1c1c">'
               "Straight to CLOSED from</text>")
    for st in sorted(notes, key=lambda st: centres[st][1]):
        ly += 20
        out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="11" font-weight="bold">{escape(NAMES[st])}</text>')
        for label in notes[st]:
            ly += 14
            out.append(f'<text x="{lx + 12:.1f}" y="{ly:.1f}" font-size="10.5" fill="#8a1c1c">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render_state_mermaid() -> str:
    """The same table as a Mermaid ``stateDiagram-v2`` (every transition, side ones included)."""
    lines = ["stateDiagram-v2", "    [*] --> CLOSED"]
    for (state, event), (nxt, sent) in TRANSITIONS.items():
        label = f"{event} / {sent}" if sent else event
        lines.append(f"    {NAMES[state]} --> {NAMES[nxt]}: {label.replace(':', ' ').replace(';', ',')}")
    return "\n".join(lines) + "\n"
