"""The HTML report's explorer in a real headless Chromium, driven over the DevTools protocol.

Each test writes a page, opens it with :func:`test_report_support.load_pages`
(which records every request, console error, exception and failed load) and runs
JavaScript in it: moving the time scrubber as a user does (``input`` events on
the range), clicking an arrow found where it is drawn (``elementFromPoint``), and
reading the tables back. What the page shows is compared with the simulator's own
census and TCBs at those instants, taken independently of the trace.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_report_support import load_pages, png_pixels, result_of, run_or_skip
from timewait import trace as T
from timewait.report.html import render_html
from timewait.report.sockets import Socket, to_us
from timewait.tcp.states import FIN_WAIT_2, NAMES, TIME_WAIT

ROWS = ("[...document.querySelectorAll('#tw-sockets tbody tr[data-host]')]"
        ".map(r => [r.dataset.host, r.dataset.state, r.dataset.local, r.dataset.peer])")


def scrub_to(t_us: int) -> str:
    """JavaScript: move the range input to ``t_us`` as a user would, then read the socket table."""
    return (f"(() => {{ const s = document.getElementById('tw-scrub'); s.value = '{t_us}'; "
            f"s.dispatchEvent(new Event('input', {{bubbles: true}})); "
            f"return {{rows: {ROWS}, total: document.getElementById('tw-sock-total').textContent, "
            f"counts: [...document.querySelectorAll('#tw-counts tbody tr[data-host]')]"
            f".map(r => [r.dataset.host, r.dataset.name, +r.dataset.value]), "
            f"note: document.getElementById('tw-count-note').textContent}}; }})()")


def assert_clean(rep: Any) -> None:
    """No console error, exception or failed load; every request is the page itself or a data: URL."""
    assert rep.errors == [], rep.errors
    assert rep.requests and all(u.split(":", 1)[0] in ("file", "data") for u in rep.requests), rep.requests


def census_rows(result: Any, t_us: int) -> list[list[str]]:
    rows = [Socket(*r) for socks in result.census[t_us].values() for r in socks]
    return sorted([s.host, s.state, s.local, s.peer] for s in rows)


def test_scrubbing_shows_the_census_of_that_instant(tmp_path: Path) -> None:
    """nc-timewait: in the handshake, at the exact instant c1 is ESTABLISHED, mid-connection, at the
    instant c1's TIME_WAIT starts, inside it and after it. At each, the table's rows are the sockets
    the engine's census listed at that instant, and the counts are the telemetry's sample."""
    instants = [0.0003, 0.0004, 1.5, 2.0014, 30.0, 65.0]
    r = run_or_skip("nc-timewait", census_at=instants)
    page = tmp_path / "nc.html"
    page.write_text(render_html(r), encoding="utf-8")
    probes = tuple(scrub_to(to_us(t)) for t in instants)
    rep = load_pages([page], evaluate=probes)[0]
    assert_clean(rep)
    seen = []
    run = r.telemetry[0]
    for t, probe in zip(instants, probes, strict=True):
        got = rep.values[probe]
        want = census_rows(r, to_us(t))
        assert sorted(got["rows"]) == want, (t, got["rows"], want)
        seen.append(json.dumps(want))
        # Counts: the telemetry sample at or before t, named with its instant.
        k = max(i for i, ts in enumerate(run.times_us) if ts <= to_us(t))
        want_counts = sorted([h, n, a[k]] for h, store in run.values.items() for n, a in store.items() if a[k])
        assert sorted(got["counts"]) == want_counts, (t, got["counts"])
        assert got["note"] == f"sample at {run.times_us[k] / 1e6:.6f} s (every {run.step_us / 1e6:g} s)"
    assert len(set(seen)) == len(instants)  # the table did change with the scrubber every time
    # In TIME_WAIT and only then, c1 has its TIME-WAIT row (and the count says 1).
    tw = [t for t in instants if any(row[1] == "TIME_WAIT" for row in json.loads(seen[instants.index(t)]))]
    assert tw == [2.0014, 30.0]


def test_the_table_of_a_big_run_is_the_census_with_totals(tmp_path: Path) -> None:
    """port-exhaustion on 1,000 ports: a thousand TIME-WAIT sockets at 5 s; the page lists the first
    200 rows (each one of the census's) and totals every socket, as the census counts them."""
    # Every connection traced: by default a run of this scale traces its first 200 (--trace-select),
    # and the page then says its table is partial (test_trace_select.py).
    r = run_or_skip("port-exhaustion", sysctls=["*:net.ipv4.ip_local_port_range=40000 40999"], census_at=[5.0],
                    trace_select="all")
    page = tmp_path / "pe.html"
    page.write_text(render_html(r), encoding="utf-8")
    probe = scrub_to(to_us(5.0))
    rep = load_pages([page], evaluate=(probe,))[0]
    assert_clean(rep)
    got = rep.values[probe]
    want = census_rows(r, to_us(5.0))
    assert len(want) > 1000 and len(got["rows"]) == 200
    assert all(row in want for row in got["rows"])
    per_host: dict[str, dict[str, int]] = {}
    for host, state, _, _ in want:
        per_host.setdefault(host, {}).setdefault(state, 0)
        per_host[host][state] += 1
    assert got["total"].startswith(f"{len(want)} sockets (the first 200 listed)")
    assert f"c1: TIME-WAIT {per_host['c1']['TIME_WAIT']}" in got["total"]


def test_a_selective_run_scrubs_through_the_engines_snapshots(tmp_path: Path) -> None:
    """port-exhaustion on 1,000 ports with the default selection (the first 200 connections
    traced): the table at a scrubbed instant is the engine's snapshot at or before it, whose
    totals per state equal the telemetry's exact counts there (not the traced 200), and whose
    rows are the census's first 200 of that instant, in ss order."""
    instants = [1.0, 30.0, 70.0]
    r = run_or_skip("port-exhaustion", sysctls=["*:net.ipv4.ip_local_port_range=40000 40999"],
                    census_at=instants, snapshot_rows=200)
    assert r.trace.select is not None  # the default selection of a run this big
    page = tmp_path / "pe.html"
    page.write_text(render_html(r), encoding="utf-8")
    assert "The table shows the engine&#x27;s snapshot at or before the scrubbed instant" in page.read_text()
    probes = tuple(scrub_to(to_us(t) + 1234) for t in instants)  # between snapshot instants
    rep = load_pages([page], evaluate=probes)[0]
    assert_clean(rep)
    run = r.telemetry[0]
    totals = []
    for t, probe in zip(instants, probes, strict=True):
        got = rep.values[probe]
        snap_t = max(ts for ts in r.snapshots if ts <= to_us(t) + 1234)
        assert got["total"].startswith(f"snapshot at {snap_t / 1e6:.6f} s: "), got["total"]
        k = run.times_us.index(snap_t)
        tw = run.values["c1"]["TIME_WAIT"][k]
        assert f"c1: TIME-WAIT {tw}" in got["total"], (got["total"], tw)
        totals.append(tw)
        # The rows: 200 of c1's sockets of that instant and the server's listener, each one the
        # census's (census_at asked for it), and the totals the census's count per state.
        census = [[s.host, s.state, s.local, s.peer] for s in
                  (Socket(*row) for socks in r.census[snap_t].values() for row in socks)]
        assert len(got["rows"]) == 201 and all(row in census for row in got["rows"])
        assert sum(1 for row in census if row[0] == "c1" and row[1] == "TIME_WAIT") == tw
    assert totals[1] == totals[2] == 1000  # every port held: far more sockets than the 200 traced


def test_a_trace_missing_sockets_says_so_beside_the_table() -> None:
    """A trace that lacks a connection's STATE records (as a selective trace would) no longer
    matches the telemetry: the page says so beside the table, and that the counts are exact."""
    r = run_or_skip("nc-timewait")
    full = render_html(r)
    assert "does not hold every socket" not in full
    c1_key = next(rec[3] for rec in r.trace.records if rec[1] == T.STATE and rec[2] == "c1")
    r.trace.records = [rec for rec in r.trace.records if not (rec[1] == T.STATE and rec[3] == c1_key)]
    page = render_html(r)
    table = page.index('id="tw-sockets"')
    note = page.rindex("The trace does not hold every socket", 0, table)
    assert page.index("Sockets at", note - 400) < note  # in the socket table's column, above it
    assert "c1 had 1 SYN_SENT (telemetry), the trace holds 0" in page
    assert "the counts below come from the telemetry and are exact" in page


# --------------------------------------------------------------------------- TCBs of a clicked segment


def _nc_sim() -> tuple[Any, Any, Any]:
    """c1 -- r1 -- c2: an nc session through a router; c1 closes at 1 s and ends in TIME_WAIT."""
    from timewait.apps.basic import NcClient, NcServer
    from timewait.sim.simulation import Simulation

    sim = Simulation(seed=5)
    c1 = sim.add_host("c1", "10.0.1.5")
    r1 = sim.add_router("r1", "10.0.1.1", "10.0.2.1")
    c2 = sim.add_host("c2", "10.0.2.10")
    sim.link(c1, r1, delay_ms=0.3)
    sim.link(r1, c2, delay_ms=0.5)
    NcServer(c2, 8888)
    NcClient(c1, "10.0.2.10", 8888, lines=[(0.5, b"hello\n")], close_at_s=1.0)
    return sim, c1, c2


def _engine_tcb(host: Any, key: tuple[int, int, int, int]) -> dict[str, str]:
    """The cells the page should show for what holds ``key`` in the engine now (read from the engine)."""
    conn = host.ehash.get(key)
    if conn is not None:
        timers = [(("persist" if conn.probing else "rto"), conn.rto_at)] if conn.rto_at else []
        if conn.fw2_at:
            timers.append(("fin_wait2" if conn.state == FIN_WAIT_2 else "keepalive", conn.fw2_at))
        vals = [NAMES[conn.state], conn.snd_una, conn.snd_nxt, conn.rcv_nxt, conn.snd_wnd, conn.rcv_window(),
                conn.ts_recent]
    elif key in host.twhash:
        tw = host.twhash[key]
        timers = [("timewait", tw.deadline)]
        vals = ["TIME_WAIT" if tw.substate == TIME_WAIT else "FIN_WAIT_2", tw.snd_nxt, tw.snd_nxt, tw.rcv_nxt, "-",
                tw.rcv_wnd, tw.ts_recent]
    else:
        return {"state": "no socket"}
    names = ("state", "snd_una", "snd_nxt", "rcv_nxt", "snd_wnd", "rcv_wnd", "ts_recent")
    cells = {n: str(v) for n, v in zip(names, vals, strict=True)}
    cells["timers"] = "; ".join(f"{n} at {d / 1e6:.6f} s" for n, d in timers) or "none"
    return cells


def click(pid: int) -> str:
    """JavaScript: find arrow ``pid`` where it is drawn, click what is on top there, read the TCB panel."""
    return (f"(() => {{ const hit = document.querySelector('#tw-ladder-box .hit[data-pid=\"{pid}\"]'); "
            "hit.scrollIntoView({block: 'center', inline: 'center'}); const r = hit.getBoundingClientRect(); "
            "const el = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2); "
            "el.dispatchEvent(new MouseEvent('click', {bubbles: true})); "
            "const cells = {}; document.querySelectorAll('#tw-tcb td').forEach(td => "
            "{ cells[td.dataset.end + '.' + td.dataset.when + '.' + td.dataset.field] = td.textContent; }); "
            "return {on: el.dataset.pid, shown: document.getElementById('tw-tcb').dataset.pid, cells: cells}; })()")


def test_clicking_a_segment_shows_both_ends_tcb_before_and_after(tmp_path: Path) -> None:
    """Four segments of an nc session through a router -- c1's data, c1's FIN, c2's FIN and c1's last
    ACK -- clicked on the ladder. Each shows the sender's TCB just before and after it left, and the
    receiver's just before and after it arrived: state, snd_una, snd_nxt, rcv_nxt, both windows,
    ts_recent and armed timers, equal to what a second, identical simulation holds when stopped
    1 µs before and at those instants. The last ACK's receiver (LAST_ACK) is gone after it."""
    sim, _, _ = _nc_sim()
    sim.run(70)
    result = result_of(sim, "routed-nc")
    page = tmp_path / "tcb.html"
    page.write_text(render_html(result), encoding="utf-8")

    recs = result.trace.records
    tx = {rec[3].pid: rec for rec in recs if rec[1] == T.TX}
    rx = {rec[3].pid: rec for rec in recs if rec[1] == T.RX}
    c1_tx = [rec for rec in recs if rec[1] == T.TX and rec[2] == "c1"]
    c2_tx = [rec for rec in recs if rec[1] == T.TX and rec[2] == "c2"]
    data = next(rec for rec in c1_tx if rec[3].payload)
    fin1 = next(rec for rec in c1_tx if rec[3].flags & 0x01)
    fin2 = next(rec for rec in c2_tx if rec[3].flags & 0x01)
    last_ack = next(rec for rec in c1_tx if rec[0] > rx[fin2[3].pid][0] - 1 and not rec[3].flags & 0x01)
    picked = [data[3].pid, fin1[3].pid, fin2[3].pid, last_ack[3].pid]

    # The same simulation again, stopped at each instant: the engine's TCBs there.
    checkpoints: dict[int, list[tuple[int, str, str]]] = {}
    for pid in picked:
        s, d = tx[pid], rx[pid]
        ks = (s[3].src, s[3].sport, s[3].dst, s[3].dport)
        kd = (d[3].dst, d[3].dport, d[3].src, d[3].sport)
        for t, node, key, cell in ((s[0] - 1, s[2], ks, "tx.before"), (s[0], s[2], ks, "tx.after"),
                                   (d[0] - 1, d[2], kd, "rx.before"), (d[0], d[2], kd, "rx.after")):
            checkpoints.setdefault(t, []).append((pid, cell, node, key))  # type: ignore[arg-type]
    sim2, *_ = _nc_sim()
    engine: dict[tuple[int, str], dict[str, str]] = {}
    for t in sorted(checkpoints):
        sim2.run((t + 0.5) / 1e6)
        for pid, cell, node, key in checkpoints[t]:  # type: ignore[misc]
            engine[(pid, cell)] = _engine_tcb(sim2.hosts[node], key)

    probes = tuple(click(pid) for pid in picked)
    rep = load_pages([page], evaluate=probes)[0]
    assert_clean(rep)
    for pid, probe in zip(picked, probes, strict=True):
        got = rep.values[probe]
        assert got["on"] == str(pid) and got["shown"] == str(pid), got  # the arrow itself took the click
        for cell in ("tx.before", "tx.after", "rx.before", "rx.after"):
            want = engine[(pid, cell)]
            shown = {f: got["cells"][f"{cell}.{f}"] for f in want}
            if want == {"state": "no socket"} and cell == "rx.after":
                assert shown["state"] == "CLOSED", (pid, cell, got["cells"])  # the TCB's last values
                continue
            assert shown == want, (pid, cell, shown, want)
    # What the four show, in words: data leaves ESTABLISHED; FIN_WAIT_1 after c1's FIN; c2 goes
    # LAST_ACK; c1's last ACK is sent from TIME_WAIT (a record: no send window), c2 is then CLOSED.
    cells = [rep.values[p]["cells"] for p in probes]
    assert cells[1]["tx.after.state"] == "FIN_WAIT_1" and cells[2]["tx.after.state"] == "LAST_ACK"
    assert cells[3]["tx.after.state"] == "TIME_WAIT" and cells[3]["tx.after.snd_wnd"] == "-"
    assert cells[3]["tx.after.timers"].startswith("timewait at ")
    assert cells[3]["rx.before.state"] == "LAST_ACK" and cells[3]["rx.after.state"] == "CLOSED"


# --------------------------------------------------------------------------- wide topologies

LAYOUT = ("(() => { const box = document.getElementById('tw-ladder-box'); const b = box.getBoundingClientRect(); "
          "return {lanes: [...document.querySelectorAll('#tw-ladder-box .lane')].map(e => { "
          "const r = e.getBoundingClientRect(); return [e.dataset.node, r.left, r.right, r.top, r.bottom]; }), "
          "vw: innerWidth, vh: innerHeight, pageW: document.documentElement.scrollWidth, "
          "pageH: document.documentElement.scrollHeight, scrollY: scrollY, boxTop: box.scrollTop, "
          "boxH: box.clientHeight, boxScrollH: box.scrollHeight, box: [b.left, b.right, b.top, b.bottom], "
          "cursor: document.getElementById('tw-cursor').getBoundingClientRect().top, "
          "svgH: +box.querySelector('svg').getAttribute('height')}; })()")
LATE = ("(() => { const a = JSON.parse(document.getElementById('tw-data').textContent).anchors; "
        "const s = document.getElementById('tw-scrub'); s.value = String(a[a.length - 1][0]); "
        "s.dispatchEvent(new Event('input', {bubbles: true})); const box = document.getElementById('tw-ladder-box'); "
        "const b = box.getBoundingClientRect(); return {boxTop: box.scrollTop, box: [b.top, b.bottom], "
        "cursor: document.getElementById('tw-cursor').getBoundingClientRect().top}; })()")

BACK = "document.getElementById('tw-ladder-box').scrollTop = 0"  # for the screenshot, taken last


def test_wide_topologies_show_every_lane_and_open_at_the_first_event(tmp_path: Path) -> None:
    """tw-recycle-nat (A, B, the NAT and the server), nat and ttl at a 1200 x 900 viewport: every
    lane's box lies inside the viewport's width, the page does not scroll sideways, the ladder scrolls
    inside its own box of at most 3/4 of the window (not the page down the ladder's height) and opens at the first event, with the
    cursor there; scrubbing to the last event scrolls the box so the cursor is in view. The screenshot
    shows the server's lane box (not blank where the layout says it is)."""
    names = ["tw-recycle-nat", "nat", "ttl"]
    pages = []
    for name in names:
        path = tmp_path / f"{name}.html"
        path.write_text(render_html(run_or_skip(name)), encoding="utf-8")
        pages.append(path)
    reports = load_pages(pages, evaluate=(LAYOUT, LATE, BACK), width=1200, height=900)
    for name, rep in zip(names, reports, strict=True):
        assert_clean(rep)
        lay, late = rep.values[LAYOUT], rep.values[LATE]
        assert len(lay["lanes"]) >= 3, (name, lay["lanes"])
        for node, left, right, _, _ in lay["lanes"]:
            assert 0 <= left < right <= lay["vw"], (name, node, left, right, lay["vw"])
        assert lay["pageW"] <= lay["vw"], (name, lay["pageW"])
        assert lay["scrollY"] == 0 and lay["boxTop"] == 0, (name, lay)
        assert lay["boxScrollH"] > lay["boxH"] and lay["boxH"] <= 0.75 * lay["vh"] + 1, (name, lay)
        assert lay["box"][2] <= lay["cursor"] <= lay["box"][3], (name, lay)   # first event in view
        assert late["boxTop"] > 0 and late["box"][0] <= late["cursor"] <= late["box"][1], (name, late)
    # The server's lane in tw-recycle-nat's screenshot: its box is drawn where the layout says (the
    # lane's light blue fill and its dark name are there).
    trn = reports[0]
    _, left, right, top, bottom = next(lane for lane in trn.values[LAYOUT]["lanes"] if lane[0] == "server")
    pixels = png_pixels(trn.png)
    assert pixels.shape[1] == 1200
    region = pixels[int(top) + 2:int(bottom) - 2, int(left) + 2:int(right) - 2, :3]
    fill = (abs(region - (0xee / 255, 0xf2 / 255, 0xfb / 255)).max(axis=2) < 0.02).mean()
    dark = (region.max(axis=2) < 0.4).mean()
    assert fill > 0.5 and dark > 0.01, (fill, dark)


def test_tcb_snapshots_are_made_only_while_tracing() -> None:
    """max-rate runs with its trace off: no record and no TCB snapshot. A traced run's snapshots
    point inside its records, in order, and name the states its STATE records give."""
    from test_report_support import light_run

    off = light_run("max-rate")
    assert off.trace.records == [] and off.trace.tcbs == []
    r = run_or_skip("nc-timewait")
    snaps = [T.Tcb._make(e) for e in r.trace.tcbs]
    assert snaps and [s.pos for s in snaps] == sorted(s.pos for s in snaps)
    assert all(0 < s.pos <= len(r.trace.records) for s in snaps)
    entered = {(rec[2], rec[3], rec[5]) for rec in r.trace.records if rec[1] == T.STATE}
    assert {(s.node, s.key, s.state) for s in snaps if s.why == "after"} <= entered
