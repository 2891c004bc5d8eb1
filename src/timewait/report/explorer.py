"""The HTML report's interactive part: a time scrubber over the ladder, sockets, counts and series.

:func:`explorer_html` returns one block of HTML with its data (a JSON script
element) and its script (inline, ours, no library). Nothing is fetched.

- **Sockets at the scrubbed instant** come from the trace when it holds every
  socket: each traced socket's state intervals (from STATE records: the state at T
  is the last record at or before T) and listeners (from bind/listen/close calls),
  exact at any instant; :func:`trace_gaps` checks it against the telemetry at every
  sample instant. Where the trace was cut, left sockets out (``--trace-select``) or
  holds more than the page carries, the table shows the engine's own snapshot at or
  before the instant instead (``RunResult.snapshots``: every host's first
  :data:`MAX_ROWS` sockets and its exact count per state, about 100 over the run,
  whatever the trace kept), and says which instant it is.
- **Counts** at the instant come from the telemetry samples (exact at the sample
  instants, whatever the trace kept): the sample at or before T is shown, with its time.
- **Series** are drawn as inline SVG from the telemetry arrays, with a cursor.
- **Clicking a segment** shows both ends' TCB before and after it, from the
  trace's TCB snapshots (:attr:`timewait.trace.Trace.tcbs`, see :func:`packet_tcbs`).
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from html import escape
from typing import Any

from timewait import trace as T
from timewait.plain import endpoint
from timewait.report.ladder import Ladder, hop_label
from timewait.report.ladder_svg import render_svg
from timewait.report.sockets import Socket
from timewait.report.ss import SS_STATE_NAMES
from timewait.result import RunResult, SeriesRun
from timewait.tcp.segment import V6, ip_aton, ip_ntoa, is_v6

#: Sockets the page carries at most (the first ones traced); past that the table says it is partial.
MAX_SOCKETS = 3000
#: Rows the socket table lists at one instant (the totals per state are always complete); also
#: the rows per host of the engine's snapshots (``run_scenario(snapshot_rows=…)``).
MAX_ROWS = 200
Key = tuple[int, int, int, int]
_TCB_FIELDS = ("state", "snd_una", "snd_nxt", "rcv_nxt", "snd_wnd", "rcv_wnd", "ts_recent", "timers")
_STATE_COLORS = {
    "TIME_WAIT": "#d62728", "ESTABLISHED": "#1f77b4", "FIN_WAIT_2": "#ff7f0e", "FIN_WAIT_1": "#e6a23c",
    "CLOSE_WAIT": "#9467bd", "LAST_ACK": "#8c564b", "SYN_SENT": "#2ca02c", "SYN_RECEIVED": "#17becf",
    "CLOSING": "#7f7f7f", "LISTEN": "#bcbd22",
}
_DASHES = ("", "6 3", "2 3", "8 3 2 3")


def _endpoint(addr: int, port: int, v6: bool = False) -> str:
    """``ss``'s spelling: ``10.211.55.5:60494``, ``[fd00::10:211:55:5]:60494``; a listener's
    missing peer (``v6``: of an IPv6 listener) is ``0.0.0.0:*`` or ``[::]:*``."""
    if port == 0 and addr & ~V6 == 0:
        return "[::]:*" if v6 or is_v6(addr) else "0.0.0.0:*"
    return endpoint(ip_ntoa(addr), port)


# --------------------------------------------------------------------------- sockets over time


def socket_intervals(result: RunResult) -> tuple[list[dict[str, Any]], int]:
    """Every traced socket as ``{h, l, p, iv: [[t0, t1 | None, state], …], tm: [[t, name, deadline], …]}``
    (``t1`` exclusive, None: to the end), first traced first, at most :data:`MAX_SOCKETS`; and how many
    sockets were left out past that cap. Listeners come from their bind/listen/close calls."""
    rows: dict[tuple[str, Any], dict[str, Any]] = {}
    left_out = 0
    bound: dict[tuple[str, int], tuple[int, int]] = {}
    listening: dict[tuple[str, int], dict[str, Any]] = {}

    def row(node: str, key: Key, create: bool) -> dict[str, Any] | None:
        nonlocal left_out
        r = rows.get((node, key))
        if r is None and create:
            if len(rows) >= MAX_SOCKETS:
                left_out += 1
                rows[(node, key)] = r = {"skip": True}
                return None
            r = rows[(node, key)] = {"h": node, "l": _endpoint(key[0], key[1]),
                                     "p": _endpoint(key[2], key[3], is_v6(key[0])), "iv": [], "tm": []}
        return None if r is None or r.get("skip") else r

    for rec in result.trace.records:
        t, kind, node = rec[0], rec[1], rec[2]
        if kind == T.STATE:
            r = row(node, rec[3], True)
            if r is None:
                continue
            iv = r["iv"]
            if iv and iv[-1][1] is None:
                if iv[-1][0] == t:
                    iv.pop()  # a state left at the instant it was entered is never listed
                else:
                    iv[-1][1] = t
            if rec[5] != "CLOSED":
                if iv and iv[-1][1] == t and iv[-1][2] == rec[5]:
                    iv[-1][1] = None
                else:
                    iv.append([t, None, rec[5]])
        elif kind == T.TIMER:
            r = row(node, rec[3], False)
            if r is not None:
                r["tm"].append([t, rec[4], rec[5]])
        elif kind == T.CALL and rec[6] is None:
            fd, call = (node, rec[3]), rec[4]
            if call == "bind" and rec[5][1]:
                bound[fd] = (ip_aton(rec[5][0]), rec[5][1])
            elif call == "listen" and fd in bound:
                a, p = bound[fd]
                lr = row(node, (a, p, 0, 0), True)
                if lr is not None:
                    lr["iv"].append([t, None, "LISTEN"])
                    listening[fd] = lr
            elif call == "close":
                bound.pop(fd, None)
                lr = listening.pop(fd, None)
                if lr is not None and lr["iv"] and lr["iv"][-1][1] is None:
                    lr["iv"][-1][1] = t
    out = [r for r in rows.values() if not r.get("skip") and (r["iv"] or r["tm"])]
    return out, left_out


def trace_gaps(result: RunResult) -> list[str]:
    """Where the sockets the trace holds disagree with the telemetry's exact counts: the first
    sample instant and host where they differ (empty when the trace has every socket)."""
    if not result.telemetry or not result.trace.records:
        return []
    run = result.telemetry[0]
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    records = result.trace.records
    i, n = 0, len(records)
    for k, ts in enumerate(run.times_us):
        while i < n and records[i][0] <= ts:
            rec = records[i]
            if rec[1] == T.STATE and rec[4] != rec[5]:
                c = counts[rec[2]]
                if rec[4] != "CLOSED":
                    c[rec[4]] -= 1
                if rec[5] != "CLOSED":
                    c[rec[5]] += 1
            i += 1
        for host, store in run.values.items():
            for state in _STATE_COLORS:
                if state == "LISTEN":
                    continue
                want = store[state][k] if state in store else 0
                got = counts[host][state] if host in counts else 0
                if want != got:
                    return [f"at {ts / 1e6:g} s {host} had {want} {state} (telemetry), the trace holds {got}"]
    return []


# --------------------------------------------------------------------------- TCBs around a packet


def _tcb_value(entry: tuple[Any, ...] | None) -> list[Any] | None:
    if entry is None:
        return None
    tcb = T.Tcb._make(entry)
    return [tcb.state, tcb.snd_una, tcb.snd_nxt, tcb.rcv_nxt, tcb.snd_wnd, tcb.rcv_wnd, tcb.ts_recent,
            [list(x) for x in tcb.timers]]


class _Tcbs:
    """The trace's TCB snapshots, indexed by (node, key), and each node's step starts (RX, FIRE)."""

    def __init__(self, result: RunResult) -> None:
        self.by: dict[tuple[str, Key], list[tuple[Any, ...]]] = defaultdict(list)
        for e in result.trace.tcbs:
            self.by[(e[2], e[3])].append(e)
        self.pos = {k: [e[0] for e in v] for k, v in self.by.items()}
        self.steps: dict[str, list[int]] = defaultdict(list)
        for i, rec in enumerate(result.trace.records):
            if rec[1] in (T.RX, T.FIRE):
                self.steps[rec[2]].append(i)

    def before(self, node: str, key: Key, idx: int) -> tuple[Any, ...] | None:
        """The last snapshot taken before record ``idx``."""
        entries = self.by.get((node, key))
        if not entries:
            return None
        k = bisect.bisect_right(self.pos[(node, key)], idx)
        return entries[k - 1] if k else None

    def at_rx(self, node: str, key: Key, idx: int) -> tuple[Any, ...] | None:
        """The snapshot taken as the segment of RX record ``idx`` reached its socket."""
        e = self.before(node, key, idx + 1)
        return e if e is not None and e[0] == idx + 1 and e[4] == "rx" else None

    def after(self, node: str, key: Key, idx: int, t: int) -> tuple[Any, ...] | None:
        """The last end-of-step snapshot of the step holding record ``idx`` (None: it made none)."""
        entries = self.by.get((node, key))
        if not entries:
            return None
        steps = self.steps.get(node, [])
        s = bisect.bisect_right(steps, idx)
        limit = steps[s] if s < len(steps) else 1 << 62
        k = bisect.bisect_right(self.pos[(node, key)], idx)
        found = None
        for e in entries[k:]:
            if e[0] > limit or e[1] != t:
                break
            if e[4] == "after":
                found = e
        return found


def packet_tcbs(result: RunResult, pids: set[int]) -> dict[int, dict[str, Any]]:
    """For each packet of ``pids``: its sender's TCB before and after sending it (``tx``) and its
    receiver's before and after the segment reached it (``rx``, None when it never arrived).

    A snapshot list is ``[state, snd_una, snd_nxt, rcv_nxt, snd_wnd, rcv_wnd, ts_recent, timers]``
    or None (no socket). ``after`` None with a ``before``: the step changed nothing of it.
    """
    tcbs = _Tcbs(result)
    out: dict[int, dict[str, Any]] = {}
    for idx, rec in enumerate(result.trace.records):
        kind = rec[1]
        if kind not in (T.TX, T.RX, T.DROP):
            continue
        seg = rec[3]
        pid = seg.pid
        if pid not in pids:
            continue
        node, t = rec[2], rec[0]
        if kind == T.TX and pid not in out:
            key = (seg.src, seg.sport, seg.dst, seg.dport)
            first, second = hop_label(seg)
            out[pid] = {"label": f"{first} {second}".strip(), "drop": None, "rx": None,
                        "tx": {"node": node, "t": t, "key": f"{_endpoint(key[0], key[1])} > {_endpoint(key[2], key[3])}",
                               "before": _tcb_value(tcbs.before(node, key, idx)),
                               "after": _tcb_value(tcbs.after(node, key, idx, t))}}
        elif kind == T.RX and pid in out:
            key = (seg.dst, seg.dport, seg.src, seg.sport)
            out[pid]["rx"] = {"node": node, "t": t, "key": f"{_endpoint(key[0], key[1])} < {_endpoint(key[2], key[3])}",
                              "before": _tcb_value(tcbs.at_rx(node, key, idx)),
                              "after": _tcb_value(tcbs.after(node, key, idx, t))}
        elif kind == T.DROP and pid in out:
            out[pid]["drop"] = f"{T.DROP_REASONS.get(rec[4], rec[4])} at {node}"
    return out


# --------------------------------------------------------------------------- series as SVG


def _series_svg(run: SeriesRun, title: str, names: list[tuple[str, str]], end_us: int) -> str:
    """One plot: the series ``(host, name)`` of ``run`` against time, with a cursor the script moves."""
    w, h, x0, x1, y0, y1 = 1100, 210, 56, 1084, 24, 180
    vmax = max([max(run.get(hh, n), default=0) for hh, n in names] + [1])
    span = max(end_us, 1)
    hosts = sorted({hh for hh, _ in names})
    parts = [f'<svg class="series" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" '
             f'height="{h}" data-x0="{x0}" data-x1="{x1}" data-end="{span}" font-family="DejaVu Sans, sans-serif">',
             f'<rect x="0" y="0" width="{w}" height="{h}" fill="#fff"/>',
             f'<text x="{x0}" y="15" font-size="12" font-weight="bold">{escape(title)}</text>',
             f'<line x1="{x0}" y1="{y1}" x2="{x1}" y2="{y1}" stroke="#888"/>',
             f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#888"/>',
             f'<text x="{x0 - 4}" y="{y0 + 4}" font-size="10" text-anchor="end">{vmax}</text>',
             f'<text x="{x0 - 4}" y="{y1}" font-size="10" text-anchor="end">0</text>']
    for k in range(6):
        tx = x0 + (x1 - x0) * k / 5
        parts.append(f'<text x="{tx:.1f}" y="{y1 + 14}" font-size="10" text-anchor="middle">'
                     f'{span * k / 5 / 1e6:g} s</text>')
    legend_x = float(x0 + 8)
    for hh, name in names:
        vals = run.get(hh, name)
        color = _STATE_COLORS.get(name, "#444")
        dash = _DASHES[hosts.index(hh) % len(_DASHES)]
        pts = " ".join(f"{x0 + (x1 - x0) * t / span:.1f},{y1 - (y1 - y0) * v / vmax:.1f}"
                       for t, v in zip(run.times_us, vals, strict=False))
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6"{dash_attr} points="{pts}"/>')
        label = f"{hh} {name}"
        parts.append(f'<line x1="{legend_x}" y1="{y1 + 26}" x2="{legend_x + 18}" y2="{y1 + 26}" stroke="{color}" '
                     f'stroke-width="2"{dash_attr}/>')
        parts.append(f'<text x="{legend_x + 22}" y="{y1 + 29}" font-size="10">{escape(label)}</text>')
        legend_x += 30 + 6.2 * len(label)
    parts.append(f'<line class="tcursor" x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#e8710a" stroke-width="1.5"/>')
    parts.append("</svg>")
    return "".join(parts)


def series_svgs(result: RunResult) -> list[str]:
    """Sockets by state and ports in use for each simulation of the run (states that moved)."""
    out = []
    for run in result.telemetry:
        suffix = f" ({run.label})" if len(result.telemetry) > 1 else ""
        states = [(hh, n) for hh in run.hosts for n in _STATE_COLORS if any(run.get(hh, n))]
        if states:
            out.append(_series_svg(run, "sockets by state" + suffix, states, run.end_us))
        ports = [(hh, "ports_in_use") for hh in run.hosts if any(run.get(hh, "ports_in_use"))]
        if ports:
            out.append(_series_svg(run, "local ports in use" + suffix, ports, run.end_us))
    return out


def _telemetry_data(result: RunResult) -> list[dict[str, Any]]:
    runs = []
    for run in result.telemetry:
        runs.append({"label": run.label, "step": run.step_us, "t": list(run.times_us),
                     "v": {h: {n: list(a) for n, a in store.items()} for h, store in run.values.items()}})
    return runs


def snapshot_data(result: RunResult) -> list[dict[str, Any]]:
    """The engine's snapshots for the page: ``[{t, h: {host: {n: {state: count}, r: [[state, local,
    peer, timer text], …]}}}, …]`` in time order (rows in ss order, at most :data:`MAX_ROWS`)."""
    out = []
    for t in sorted(result.snapshots):
        hosts: dict[str, Any] = {}
        for host, snap in result.snapshots[t].items():
            rows = []
            for row in snap.rows:
                so = Socket(*row)  # the ss view's own spelling of the endpoints
                when = ("" if so.timer is None or so.deadline_us is None
                        else f"{so.timer}, in {(so.deadline_us - t) / 1e6:.3f} s")
                rows.append([so.state, so.local, so.peer, when])
            hosts[host] = {"n": snap.per_state, "r": rows}
        out.append({"t": t, "h": hosts})
    return out


# --------------------------------------------------------------------------- the block


#: The explorer's style, added to the page's.
EXPLORER_CSS = """
#tw-explorer .bar { position: sticky; top: 0; z-index: 5; background: #fff; padding: 8px 0;
  border-bottom: 1px solid #ccd; display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
#tw-scrub { flex: 1 1 380px; }
#tw-time { width: 9em; }
#tw-readout { font-family: "DejaVu Sans Mono", monospace; }
#tw-ladder-box { max-height: 72vh; overflow: auto; position: relative; }
#tw-ladder-box.fit svg { max-width: 100%; height: auto; }  /* shrink a wide ladder, never enlarge */
#tw-ladder-box .hit { cursor: pointer; }
#tw-ladder-box svg text { pointer-events: none; }  /* a click on a label reaches its arrow */
#tw-ladder-box .hop.sel { stroke-width: 3.5; stroke: #e8710a; }
.tw-cols { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
.tw-cols > div { flex: 1 1 420px; min-width: 0; }
.tw-note { color: #8a4b08; font-weight: bold; }
#tw-sockets td, #tw-counts td, #tw-tcb td { font-family: "DejaVu Sans Mono", monospace; font-size: 12px; }
#tw-tcb th { font-size: 12px; }
svg.series { max-width: 100%; height: auto; display: block; margin: 6px 0; }
"""

_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("tw-data").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var scrub = $("tw-scrub"), timeIn = $("tw-time"), box = $("tw-ladder-box");
  var svg = box ? box.querySelector("svg") : null;
  var SS = D.ss, FIELDS = D.fields, cursor = null, now = 0;

  function fmt(us) { return (us / 1e6).toFixed(6) + " s"; }
  function esc(s) { return String(s).replace(/[&<>"]/g, function (c) {
    return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]; }); }
  // The last index i with arr[i] <= x (-1 when none), arr ascending.
  function floorIdx(arr, x, get) {
    var lo = 0, hi = arr.length - 1, ans = -1;
    while (lo <= hi) { var mid = (lo + hi) >> 1;
      if (get(arr[mid]) <= x) { ans = mid; lo = mid + 1; } else { hi = mid - 1; } }
    return ans;
  }
  // y on the ladder (SVG units) of time t: interpolated between the events around it.
  function yOf(t) {
    var a = D.anchors; if (!a.length) { return 0; }
    var i = floorIdx(a, t, function (p) { return p[0]; });
    if (i < 0) { return a[0][1]; }
    if (i >= a.length - 1) { return a[a.length - 1][1]; }
    var p = a[i], q = a[i + 1];
    return q[0] > p[0] ? p[1] + (q[1] - p[1]) * (t - p[0]) / (q[0] - p[0]) : p[1];
  }
  function moveLadder(t) {
    if (!svg || !D.anchors.length) { return; }
    var y = yOf(t);
    if (!cursor) {
      cursor = document.createElementNS("http://www.w3.org/2000/svg", "line");
      cursor.setAttribute("id", "tw-cursor");
      cursor.setAttribute("stroke", "#e8710a"); cursor.setAttribute("stroke-width", "2");
      cursor.setAttribute("stroke-dasharray", "8 4"); cursor.setAttribute("pointer-events", "none");
      cursor.setAttribute("x1", "0"); cursor.setAttribute("x2", String(D.svgW));
      svg.appendChild(cursor);
    }
    cursor.setAttribute("y1", y.toFixed(1)); cursor.setAttribute("y2", y.toFixed(1));
    var scale = svg.getBoundingClientRect().height / D.svgH;
    var want = y * scale - box.clientHeight / 3;
    box.scrollTop = Math.max(0, want);
  }
  function timerText(row, t) {
    var i = floorIdx(row.tm, t, function (x) { return x[0]; });
    if (i < 0) { return ""; }
    var m = row.tm[i];
    if (m[2] === null || m[2] < t) { return ""; }
    return m[1] + ", in " + ((m[2] - t) / 1e6).toFixed(3) + " s";
  }
  function socketsAt(t) {
    var out = [];
    D.sockets.forEach(function (row) {
      for (var k = 0; k < row.iv.length; k++) {
        var iv = row.iv[k];
        if (iv[0] <= t && (iv[1] === null || t < iv[1])) { out.push([row, iv[2]]); break; }
      }
    });
    return out;
  }
  // A partial trace: the engine's snapshot at or before t stands in for it.
  function drawSnapshot(t) {
    var body = $("tw-sockets").tBodies[0], html = [], tot = [], total = 0;
    var k = floorIdx(D.snaps, t, function (s) { return s.t; });
    if (k < 0) {
      body.innerHTML = '<tr><td colspan="5">(no snapshot at or before this instant)</td></tr>';
      $("tw-sock-total").textContent = "";
      return;
    }
    var snap = D.snaps[k];
    Object.keys(snap.h).forEach(function (h) {
      var x = snap.h[h], n = 0;
      var per = Object.keys(x.n).map(function (s) { n += x.n[s]; return (SS[s] || s) + " " + x.n[s]; });
      total += n;
      if (per.length) { tot.push(h + ": " + per.join(", ") + (n > x.r.length ? " (first " + x.r.length + " listed)" : "")); }
      x.r.forEach(function (r) {
        html.push('<tr data-host="' + esc(h) + '" data-state="' + esc(r[0]) + '" data-local="' + esc(r[1]) +
          '" data-peer="' + esc(r[2]) + '"><td>' + esc(h) + "</td><td>" + esc(SS[r[0]] || r[0]) + "</td><td>" +
          esc(r[1]) + "</td><td>" + esc(r[2]) + "</td><td>" + esc(r[3]) + "</td></tr>");
      });
    });
    if (!html.length) { html.push('<tr><td colspan="5">(no socket at this instant)</td></tr>'); }
    body.innerHTML = html.join("");
    var el = $("tw-sock-total");
    el.dataset.snapshot = String(snap.t);
    el.textContent = "snapshot at " + fmt(snap.t) + ": " + total + " sockets" + (tot.length ? "; " + tot.join("; ") : "");
  }
  function drawSockets(t) {
    if (D.snaps.length) { drawSnapshot(t); return; }
    var body = $("tw-sockets").tBodies[0], rows = socketsAt(t), html = [], per = {};
    rows.forEach(function (x) {
      var row = x[0], st = x[1];
      per[row.h] = per[row.h] || {}; per[row.h][st] = (per[row.h][st] || 0) + 1;
      if (html.length < D.maxRows) {
        html.push('<tr data-host="' + esc(row.h) + '" data-state="' + esc(st) + '" data-local="' + esc(row.l) +
          '" data-peer="' + esc(row.p) + '"><td>' + esc(row.h) + "</td><td>" + esc(SS[st] || st) + "</td><td>" +
          esc(row.l) + "</td><td>" + esc(row.p) + "</td><td>" + esc(timerText(row, t)) + "</td></tr>");
      }
    });
    if (!rows.length) { html.push('<tr><td colspan="5">(no socket in the trace at this instant)</td></tr>'); }
    body.innerHTML = html.join("");
    var tot = Object.keys(per).map(function (h) {
      return h + ": " + Object.keys(per[h]).map(function (s) { return (SS[s] || s) + " " + per[h][s]; }).join(", ");
    });
    $("tw-sock-total").textContent = rows.length + " sockets" + (rows.length > D.maxRows ?
      " (the first " + D.maxRows + " listed)" : "") + (tot.length ? "; " + tot.join("; ") : "");
  }
  function drawCounts(t) {
    var html = [], notes = [];
    D.telemetry.forEach(function (run) {
      var k = floorIdx(run.t, t, function (x) { return x; });
      if (k < 0) { return; }
      notes.push((D.telemetry.length > 1 ? run.label + ": " : "") + "sample at " + fmt(run.t[k]) +
        " (every " + run.step / 1e6 + " s)");
      Object.keys(run.v).forEach(function (h) {
        Object.keys(run.v[h]).forEach(function (name) {
          var v = run.v[h][name][k];
          if (v) {
            html.push('<tr data-host="' + esc(h) + '" data-name="' + esc(name) + '" data-value="' + v + '"><td>' +
              esc((D.telemetry.length > 1 ? run.label + " " : "") + h) + "</td><td>" + esc(name) + "</td><td>" + v +
              "</td></tr>");
          }
        });
      });
    });
    $("tw-counts").tBodies[0].innerHTML = html.join("") || '<tr><td colspan="3">(no telemetry)</td></tr>';
    $("tw-count-note").textContent = notes.join("; ");
  }
  function drawSeries(t) {
    Array.prototype.forEach.call(document.querySelectorAll("svg.series"), function (s) {
      var x0 = +s.dataset.x0, x1 = +s.dataset.x1, end = +s.dataset.end;
      var x = x0 + (x1 - x0) * Math.min(Math.max(t / end, 0), 1);
      var c = s.querySelector(".tcursor");
      c.setAttribute("x1", x.toFixed(1)); c.setAttribute("x2", x.toFixed(1));
    });
  }
  function setTime(t, fromInput) {
    t = Math.max(0, Math.min(D.end, Math.round(t)));
    now = t;
    scrub.value = String(t);
    if (!fromInput) { timeIn.value = (t / 1e6).toFixed(6); }
    Array.prototype.forEach.call(document.querySelectorAll(".tw-at"), function (e) { e.textContent = fmt(t); });
    $("tw-readout").textContent = fmt(t);
    moveLadder(t); drawSockets(t); drawCounts(t); drawSeries(t);
    document.body.dataset.scrubbed = String(t);
  }
  function stepEvent(dir) {
    var ev = D.events, i;
    if (!ev.length) { return; }
    if (dir > 0) { i = floorIdx(ev, now, function (x) { return x; }) + 1; if (i < ev.length) { setTime(ev[i]); } }
    else { i = floorIdx(ev, now - 1, function (x) { return x; }); if (i >= 0) { setTime(ev[i]); } }
  }
  function tcbCell(v, k) {
    if (v === null || v === undefined) { return "-"; }  // a TIME_WAIT record keeps no send window
    if (k === 7) { return v.map(function (x) { return x[0] + " at " + fmt(x[1]); }).join("; ") || "none"; }
    return String(v);
  }
  function showTcb(pid) {
    var p = D.packets[pid], panel = $("tw-tcb");
    if (!p) { return; }
    Array.prototype.forEach.call(document.querySelectorAll("#tw-ladder-box .hop.sel"), function (e) {
      e.classList.remove("sel"); });
    Array.prototype.forEach.call(document.querySelectorAll('#tw-ladder-box .hop[data-pid="' + pid + '"]'),
      function (e) { e.classList.add("sel"); });
    var ends = [["tx", p.tx], ["rx", p.rx]], head = ["<tr><th></th>"], rows = [];
    ends.forEach(function (e) {
      if (!e[1]) { return; }
      var who = e[0] === "tx" ? "sender " : "receiver ";
      head.push('<th colspan="2">' + esc(who + e[1].node + " (" + e[1].key + ") at " + fmt(e[1].t)) + "</th>");
    });
    head.push("</tr><tr><th></th>");
    ends.forEach(function (e) { if (e[1]) { head.push("<th>before</th><th>after</th>"); } });
    head.push("</tr>");
    FIELDS.forEach(function (f, k) {
      var r = ['<tr><th>' + f + "</th>"];
      ends.forEach(function (e) {
        if (!e[1]) { return; }
        [["before", e[1].before], ["after", e[1].after === null ? e[1].before : e[1].after]].forEach(function (w) {
          var v = w[1];
          var text = v ? tcbCell(v[k], k) : (k === 0 ? "no socket" : "");
          r.push('<td data-end="' + e[0] + '" data-when="' + w[0] + '" data-field="' + f + '">' + esc(text) + "</td>");
        });
      });
      rows.push(r.join("") + "</tr>");
    });
    var notes = [];
    if (!p.rx) { notes.push("It never reached a TCP stack" + (p.drop ? ": " + p.drop : "") + "."); }
    else if (p.drop) { notes.push("Dropped: " + p.drop + "."); }
    if (p.rx && p.rx.after === null && p.rx.before) { notes.push("The receiver's TCB did not change."); }
    panel.innerHTML = "<h3>" + esc(p.label) + "</h3>" + (notes.length ? '<p class="tw-note">' +
      esc(notes.join(" ")) + "</p>" : "") + "<table>" + head.join("") + rows.join("") + "</table>";
    panel.hidden = false;
    panel.dataset.pid = String(pid);
  }
  scrub.addEventListener("input", function () { setTime(+scrub.value); });
  timeIn.addEventListener("change", function () { setTime(Math.round(parseFloat(timeIn.value) * 1e6), true); });
  $("tw-prev").addEventListener("click", function () { stepEvent(-1); });
  $("tw-next").addEventListener("click", function () { stepEvent(1); });
  $("tw-fit").addEventListener("change", function () { box.classList.toggle("fit", this.checked); setTime(now); });
  if (box) {
    box.addEventListener("click", function (ev) {
      var el = ev.target.closest ? ev.target.closest("[data-pid]") : null;
      if (el) { showTcb(+el.dataset.pid); }
    });
  }
  window.timewait = { setTime: setTime, showTcb: showTcb, yOf: yOf };
  setTime(D.events.length ? D.events[0] : 0);
  if (box) { box.scrollTop = 0; box.scrollLeft = 0; }
})();
"""


def _json_script(data: Any) -> str:
    text = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="tw-data">{text}</script>'


def explorer_html(result: RunResult, lad: Ladder | None, *, cut: str | None) -> str:
    """The explorer block (style: :data:`EXPLORER_CSS`): scrubber, ladder, sockets and counts at the instant, TCB panel, series.

    ``lad`` is the ladder to draw (None or empty: no figure); ``cut`` the trace's cut notice.
    """
    e = escape
    end = int(round(result.sim_time * 1_000_000))
    geometry: dict[str, Any] = {"anchors": [], "width": 0, "height": 0}
    figure = ""
    pids: set[int] = set()
    if lad is not None and not lad.empty:
        figure = render_svg(lad, interactive=True, geometry=geometry)
        pids = {h.pid for h in lad.hops if h.pid}
    sockets, left_out = socket_intervals(result) if result.trace.records else ([], 0)
    gaps = trace_gaps(result) if result.trace.records else []
    # The trace's table is exact at any instant only when it holds every socket; else the
    # engine's snapshots, exact at their instants, stand in for it.
    snaps = snapshot_data(result) if (cut or left_out or gaps or not result.trace.records) else []
    events = sorted({iv[0] for r in sockets for iv in r["iv"]} | {iv[1] for r in sockets for iv in r["iv"]
                                                                   if iv[1] is not None}
                    | {t for t, _ in geometry["anchors"]})
    data = {
        "end": end, "anchors": geometry["anchors"], "svgW": geometry["width"], "svgH": geometry["height"],
        "sockets": [] if snaps else sockets, "snaps": snaps, "maxRows": MAX_ROWS, "events": events, "ss": SS_STATE_NAMES, "fields": list(_TCB_FIELDS),
        "telemetry": _telemetry_data(result), "packets": packet_tcbs(result, pids) if pids else {},
    }
    notes: list[str] = []
    if snaps:
        why = cut or (f"the page carries the first {MAX_SOCKETS} sockets of the trace, {left_out} more are left out"
                      if left_out else f"the trace does not hold every socket: {gaps[0]}" if gaps else
                      "this run has no trace")
        notes.append(f"{why.rstrip('.')}. The table shows the engine's snapshot at or before the scrubbed "
                     f"instant (every {(snaps[1]['t'] - snaps[0]['t']) / 1e6 if len(snaps) > 1 else 0:g} s; each "
                     f"host's first {MAX_ROWS} sockets, its count per state exact at that instant); the counts "
                     "below come from the telemetry and are exact.")
    elif not result.trace.records:
        notes.append("This run has no trace, so no socket table: the counts below come from the telemetry "
                     "and are exact.")
    else:
        if cut:
            notes.append(cut)
        if left_out:
            notes.append(f"The page carries the first {MAX_SOCKETS} sockets of the trace ({left_out} more "
                         "are left out): the table is partial.")
        if gaps and not cut:
            notes.append("The trace does not hold every socket (" + gaps[0] + "): the table lists the traced "
                         "ones; the counts below come from the telemetry and are exact.")
        elif notes:
            notes.append("The counts below come from the telemetry and are exact.")
    first = events[0] if events else 0
    parts = [
        '<div id="tw-explorer">',
        '<div class="bar"><button type="button" id="tw-prev">&#9664; event</button>'
        f'<input type="range" id="tw-scrub" min="0" max="{end}" step="1" value="{first}" '
        'aria-label="simulated time (µs)">'
        '<button type="button" id="tw-next">event &#9654;</button>'
        f'<label>t = <input type="number" id="tw-time" min="0" max="{end / 1e6:.6f}" step="0.000001" '
        f'value="{first / 1e6:.6f}"> s</label><span id="tw-readout"></span>'
        '<label><input type="checkbox" id="tw-fit" checked> fit the ladder to the width</label></div>',
    ]
    if figure:
        parts.append('<p class="meta">The dashed orange line on the ladder is the scrubbed instant; click an '
                     "arrow for both ends' TCB before and after that segment.</p>")
        parts.append(f'<div class="figure fit" id="tw-ladder-box">{figure}</div>')
    elif lad is not None:
        parts += [f"<p>{e(n)}</p>" for n in lad.notes]
    parts.append('<div id="tw-tcb" hidden></div>')
    parts.append('<div class="tw-cols"><div><h3>Sockets at <span class="tw-at"></span></h3>')
    parts += [f'<p class="tw-note cut">{e(n)}</p>' for n in notes]
    parts.append('<p id="tw-sock-total"></p><table id="tw-sockets"><thead><tr><th>host</th><th>state</th>'
                 "<th>local</th><th>peer</th><th>timer</th></tr></thead><tbody></tbody></table></div>")
    parts.append('<div><h3>Counts at <span class="tw-at"></span> (telemetry)</h3><p id="tw-count-note"></p>'
                 '<table id="tw-counts"><thead><tr><th>host</th><th>count</th><th>value</th></tr></thead>'
                 "<tbody></tbody></table></div></div>")
    svgs = series_svgs(result)
    if svgs:
        parts.append("<h3>Series (telemetry)</h3>")
        parts += svgs
    parts.append(_json_script(data))
    parts.append(f"<script>{_JS}</script>")
    parts.append("</div>")
    return "\n".join(parts)
