"""Property tests (Hypothesis): arbitrary segment sequences never crash the protocol core or
break its invariants, and the codec round-trips and fails only with DecodeError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import (
    LOCAL_ADDR,
    LOCAL_PORT,
    REMOTE_ADDR,
    REMOTE_PORT,
    REMOTE_TS,
    Record,
    make_record,
    make_tcb,
)
from timewait.tcp.config import SEC
from timewait.tcp.segment import ACK, FIN, PSH, RST, SYN, DecodeError, Segment, decode, encode
from timewait.tcp.seq import after, before, before_eq, diff
from timewait.tcp.states import CLOSED, FIN_WAIT_2, NAMES, SYN_SENT, TIME_WAIT
from timewait.tcp.timewait import TW_ACK, TW_KILL, TW_RST, TW_SUCCESS, TW_SYN, TimeWait

M32 = 0xFFFFFFFF
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- generating traffic

# Weighted toward what a live peer sends; the odd combinations still come up.
flag_sets = st.sampled_from([ACK, ACK, ACK, ACK | PSH, ACK | PSH, ACK | FIN, ACK | FIN, ACK | FIN, ACK | FIN | PSH,
                             SYN, SYN | ACK, RST, RST | ACK, FIN, PSH, 0, SYN | FIN, SYN | RST,
                             ACK | SYN | FIN | RST | PSH])
near = st.one_of(st.sampled_from([0, 0, 0, -1, 1, 5]), st.integers(-70_000, 70_000))
small = st.one_of(st.just(0), st.integers(-5, 5))
anywhere = st.integers(0, M32)


@st.composite
def peer_segments(draw):
    """A recipe for one segment from the peer, resolved against the connection when sent: half
    of them are what a well-behaved peer would send next (seq rcv_nxt, ack snd_nxt, a newer
    TSval), the rest have sequence and ack numbers near rcv_nxt / snd_una / snd_nxt or anywhere."""
    return (
        draw(st.booleans()),
        draw(flag_sets),
        draw(st.sampled_from(["rcv_nxt", "rcv_nxt", "any"])), draw(near), draw(anywhere),
        draw(st.sampled_from(["una", "nxt", "nxt", "any"])), draw(small), draw(anywhere),
        draw(st.sampled_from([0, 0, 1, 5, 100, 1460, 3000])),
        draw(st.sampled_from(["none", "recent", "old", "new", "any"])), draw(st.integers(0, 100)),
        draw(st.integers(0, 0xFFFF)),
        draw(st.sampled_from([None, None, (1460, 7)])),
    )


seg_op = st.tuples(st.just("seg"), peer_segments())
app_op = st.tuples(st.just("app"), st.sampled_from(["send", "send", "recv", "close", "shutdown", "abort"]),
                   st.integers(0, 5000))
ops = st.lists(st.one_of(seg_op, seg_op, seg_op, app_op), min_size=1, max_size=25)  # mostly segments
gaps = st.lists(st.sampled_from([0, 1, 1000, 50_000, 200_000, 1_000_000, 30 * SEC]), min_size=25, max_size=25)


def build(recipe, *, rcv_nxt: int, snd_una: int, snd_nxt: int, ts_recent: int) -> Segment:
    polite, flags, smode, sdelta, sany, amode, adelta, aany, n, tmode, tdelta, win, synopts = recipe
    if polite:
        smode, sdelta, amode, adelta, tmode = "rcv_nxt", 0, "nxt", 0, "new"
    seq = (rcv_nxt + sdelta) & M32 if smode == "rcv_nxt" else sany
    base = {"una": snd_una, "nxt": snd_nxt}.get(amode)
    ack = (base + adelta) & M32 if base is not None else aany
    ts = {"none": None, "recent": (ts_recent, 0), "old": ((ts_recent - 1 - tdelta) & M32, 0),
          "new": ((ts_recent + tdelta) & M32, 0), "any": ((ts_recent * 7919 + tdelta) & M32, tdelta)}[tmode]
    seg = Segment(REMOTE_ADDR, LOCAL_ADDR, REMOTE_PORT, LOCAL_PORT, seq, ack, flags, win, b"p" * n, ts=ts)
    if synopts and flags & SYN:
        seg.mss, seg.wscale = synopts
    return seg


# ---------------------------------------------------------------- invariants


def check_tw_output(tw: TimeWait, outcome: int, out: Segment | None, trigger: Segment) -> None:
    assert outcome in (TW_SUCCESS, TW_ACK, TW_RST, TW_SYN, TW_KILL)
    if outcome == TW_ACK:
        assert out is not None and out.flags == ACK
        assert (out.seq, out.ack) == (tw.snd_nxt, tw.rcv_nxt)
    elif outcome == TW_RST:
        assert out is not None and out.flags & RST and not trigger.flags & RST
    else:
        assert out is None


def drive_record(rec: Record, recipes, times) -> None:
    """Feed segments to a TIME_WAIT record until it is gone; check what it answers."""
    tw = rec.tw
    for recipe, now in zip(recipes, times, strict=False):
        seg = build(recipe, rcv_nxt=tw.rcv_nxt, snd_una=tw.snd_nxt, snd_nxt=tw.snd_nxt, ts_recent=tw.ts_recent)
        old = (tw.rcv_nxt, tw.substate, tw.deadline)
        outcome, out = tw.process(seg, now, rec.cfg, rec.env.bump)
        check_tw_output(tw, outcome, out, seg)
        assert diff(tw.rcv_nxt, old[0]) in (0, 1)  # only TW-F6 moves it, by the FIN
        assert tw.substate in (TIME_WAIT, FIN_WAIT_2)
        assert old[1] == FIN_WAIT_2 or tw.substate == TIME_WAIT  # never back to FIN_WAIT_2
        assert tw.deadline == old[2] or tw.deadline == now + rec.cfg.tw_len
        if outcome in (TW_RST, TW_KILL, TW_SYN):
            return


def run_connection(state: str, ts: bool, orphan: bool, script, gap_list) -> None:
    t = make_tcb(state, ts=ts, orphan=orphan)
    c = t.conn
    now = 0
    for (kind, *args), gap in zip(script, gap_list, strict=False):
        now += gap
        # Timers due before this instant fire first, in order (as the host's scheduler does).
        for _ in range(100):
            pa = c.poll_at()
            if not pa or pa > now:
                break
            before_state = (c.rcv_nxt, c.snd_una, c.snd_nxt, c.state)
            c.on_timer(pa)
            c.flush(pa)
            check_conn(t, before_state, t.drain())
        old = (c.rcv_nxt, c.snd_una, c.snd_nxt, c.state)
        if kind == "seg":
            seg = build(args[0], rcv_nxt=c.rcv_nxt, snd_una=c.snd_una, snd_nxt=c.snd_nxt, ts_recent=c.ts_recent or REMOTE_TS)
            c.process(seg, now)
        else:
            call, n = args
            if call == "send":
                c.send(b"d" * n, now)
            elif call == "close":
                c.close(now)
            elif call == "recv":
                c.recv()
            elif call == "shutdown":
                c.shutdown_write(now)
            else:
                c.abort(now)
        c.flush(now)
        check_conn(t, old, t.drain())
        if c.state == TIME_WAIT or (c.state == FIN_WAIT_2 and c.orphan):
            # The owner replaces the socket by a record (TW-4, TW-6) and feeds that from now on.
            sub = c.state
            tw = TimeWait.from_connection(c, now, sub, 60 * SEC)
            rec = Record(tw, t.env)
            rest = [a[0] for k, *a in script if k == "seg"]
            drive_record(rec, rest, range(now, now + 10 * SEC * len(rest) + 1, 10 * SEC))
            return
        if c.state == CLOSED:
            return


def check_conn(t, old, out: list[Segment]) -> None:
    c = t.conn
    old_rcv, old_una, old_nxt, old_state = old
    assert 0 <= c.state < len(NAMES)
    assert before_eq(c.snd_una, c.snd_nxt), "snd_una after snd_nxt"
    assert not before(c.snd_una, old_una), "snd_una moved back"
    assert not before(c.snd_nxt, old_nxt) or c.state == SYN_SENT, "snd_nxt moved back"
    if old_state != SYN_SENT:
        assert 0 <= diff(c.rcv_nxt, old_rcv), "rcv_nxt moved back"
    if c.state == CLOSED:
        assert c.poll_at() == 0, "a closed connection keeps a timer"
    for seg in out:
        assert 0 <= seg.win <= 0xFFFF
        assert decode(encode(seg)) == seg
        stateless_reset = seg.flags == RST and seg.ts is None and seg.win == 0
        if stateless_reset:
            continue  # tcp_v4_send_reset: seq = the trigger's ack
        if seg.flags & ACK:
            if old_state == SYN_SENT:
                assert seg.ack == c.rcv_nxt
            else:
                assert 0 <= diff(seg.ack, old_rcv) <= diff(c.rcv_nxt, old_rcv), "ACK beyond rcv_nxt"
        # Never send beyond snd_nxt, never below the ISS.
        assert before_eq(seg.end_seq, c.snd_nxt) or (seg.flags & RST and seg.seq == c.snd_nxt)
        assert not after(c.iss, seg.seq)


STATES = ["SYN_SENT", "SYN_RECEIVED", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "CLOSE_WAIT", "CLOSING",
          "LAST_ACK"]


@pytest.mark.parametrize("state", STATES)
@given(script=ops, gap_list=gaps, ts=st.booleans(), orphan=st.booleans())
@SETTINGS
def test_any_segments_any_state_keep_invariants(state, script, gap_list, ts, orphan):
    run_connection(state, ts, orphan, script, gap_list)


@pytest.mark.parametrize("substate", ["TIME_WAIT", "FIN_WAIT_2"])
@given(recipes=st.lists(peer_segments(), min_size=1, max_size=30),
       steps=st.lists(st.integers(0, 5 * SEC), min_size=30, max_size=30), ts=st.booleans(),
       rfc1337=st.integers(0, 1))
@SETTINGS
def test_any_segments_to_a_time_wait_record(substate, recipes, steps, ts, rfc1337):
    rec = make_record(substate, ts=ts, rfc1337=rfc1337)
    times, now = [], 0
    for s in steps:
        now += s
        times.append(now)
    drive_record(rec, recipes, times)


# ---------------------------------------------------------------- codec

addr = st.integers(0, M32)
port = st.integers(0, 0xFFFF)
u32 = st.integers(0, M32)


@st.composite
def segments(draw) -> Segment:
    return Segment(
        draw(addr), draw(addr), draw(port), draw(port), draw(u32), draw(u32), draw(st.integers(0, 0xFF)),
        draw(st.integers(0, 0xFFFF)), draw(st.binary(max_size=300)),
        mss=draw(st.one_of(st.none(), st.integers(0, 0xFFFF))),
        wscale=draw(st.one_of(st.none(), st.integers(0, 255))),
        sack_ok=draw(st.booleans()),
        ts=draw(st.one_of(st.none(), st.tuples(u32, u32))),
        ttl=draw(st.integers(0, 255)), ip_id=draw(st.integers(0, 0xFFFF)),
    )


one_option = st.one_of(
    st.just(b"\x01"),
    st.integers(0, 0xFFFF).map(lambda v: struct.pack("!BBH", 2, 4, v)),
    st.integers(0, 14).map(lambda v: bytes((3, 3, v))),
    st.just(b"\x04\x02"),
    st.tuples(u32, u32).map(lambda t: struct.pack("!BBII", 8, 10, *t)),
    st.tuples(st.integers(9, 253), st.binary(max_size=6)).map(lambda t: bytes((t[0], 2 + len(t[1]))) + t[1]),
)


@st.composite
def raw_options(draw) -> bytes:
    """Whole options (any order, unknown kinds too), EOL-padded to 32 bits, at most 40 bytes."""
    opts = b""
    for o in draw(st.lists(one_option, max_size=6)):
        if len(opts) + len(o) + (-(len(opts) + len(o)) % 4) <= 40:
            opts += o
    return opts + b"\x00" * (-len(opts) % 4)


@given(segments())
@settings(max_examples=300, deadline=None)
def test_decode_encode_round_trip(seg):
    assert decode(encode(seg)) == seg


@given(segments(), raw_options())
@settings(max_examples=300, deadline=None)
def test_encode_decode_is_byte_exact(seg, opts):
    seg.raw_options = opts
    b = encode(seg)
    assert encode(decode(b)) == b


@given(st.binary(max_size=120), st.booleans())
@settings(max_examples=400, deadline=None)
def test_arbitrary_bytes_raise_only_decode_error(data, verify):
    try:
        decode(data, verify=verify)
    except DecodeError:
        pass


@given(segments(), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, 400))
@settings(max_examples=400, deadline=None)
def test_mutated_packets_raise_only_decode_error(seg, edits, cut):
    b = bytearray(encode(seg))
    for i, v in edits:
        if i < len(b):
            b[i] = v
    for data in (bytes(b), bytes(b[:cut])):
        for verify in (True, False):
            try:
                decode(data, verify=verify)
            except DecodeError:
                pass


# ---------------------------------------------------------------- liveness on two hosts

from timewait.sim.host import Host, Socket, SocketError  # noqa: E402
from timewait.sim.simulation import Simulation  # noqa: E402

# One application step: (delay before it in ms, what, bytes to write).
app_step = st.tuples(st.sampled_from([0, 0, 1, 5, 50, 300, 1000, 3000]),
                     st.sampled_from(["send", "send", "send", "recv"]),
                     st.sampled_from([1, 100, 1460, 2048, 5000, 20000]))
app_plan = st.tuples(st.lists(app_step, max_size=6),
                     st.sampled_from([0, 10, 500, 2000, 6000]),   # ms from the last step to the final recv
                     st.sampled_from([0, 0, 1, 400, 3000]))       # ms from the final recv to close()


def _play(host: Host, sock: Socket, plan, start_us: int) -> None:
    """Schedule one end's writes and reads, then a last read and close() (the app always ends)."""
    steps, to_read, to_close = plan

    def act(what: str, n: int) -> None:
        if sock.closed:
            return
        try:
            if what == "send":
                sock.send(b"w" * n)
            elif what == "recv":
                sock.recv()
            else:
                sock.close()
        except SocketError:
            pass  # EPIPE / ENOTCONN after a reset: the application just carries on

    t = start_us
    for delay, what, n in steps:
        t += delay * 1000
        host.call_at(t, lambda w=what, k=n: act(w, k))
    t += to_read * 1000
    host.call_at(t, lambda: act("recv", 0))
    host.call_at(t + to_close * 1000, lambda: act("close", 0))


@given(client_buf=st.sampled_from([2048, 4096, 8192, 131072]), server_buf=st.sampled_from([2048, 4096, 8192]),
       clients=st.lists(st.tuples(st.sampled_from([0, 0, 100, 1500]), app_plan, app_plan,
                                  st.sampled_from([0, 0, 20, 1500])), min_size=1, max_size=3),
       listener_close_ms=st.sampled_from([1, 700, 2500, 10_000]), seed=st.integers(1, 5))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_PR_LS_every_connection_ends_when_both_applications_read_and_close(
        client_buf, server_buf, clients, listener_close_ms, seed):
    """Small receive buffers make zero windows common; applications read late and close in any
    order, the listener closes at any moment (children not yet accepted included). Whatever
    happens, by the bound every connection has ended: no socket, no TIME_WAIT record, no port
    in use, no orphan left on either host (PR-1..PR-6, LS-1..LS-4)."""
    sim = Simulation(seed=seed, trace=False)
    c1 = sim.add_host("c1", "10.0.0.1", uptime_s=1000)
    c2 = sim.add_host("c2", "10.0.0.2", uptime_s=1000)
    sim.link(c1, c2, delay_ms=0.5)
    c1.cfg.rcv_buf, c2.cfg.rcv_buf = client_buf, server_buf
    lsock = c2.socket()
    lsock.bind(0, 8888)
    lsock.listen()
    plans = {}

    def on_accept(ls_: Socket) -> None:
        port = ls_.accept_queue[-1].conn.rport  # type: ignore[union-attr]
        accept_delay, server_plan = plans[port]

        def take() -> None:
            for i, child in enumerate(ls_.accept_queue):
                if child.conn is not None and child.conn.rport == port:
                    del ls_.accept_queue[i]
                    _play(c2, child, server_plan, sim.sched.now)
                    return

        c2.call_at(sim.sched.now + accept_delay * 1000, take)

    lsock.on_accept = on_accept
    c2.call_at(listener_close_ms * 1000, lsock.close)
    for k, (connect_ms, client_plan, server_plan, accept_delay) in enumerate(clients):
        def dial(cp=client_plan, sp=server_plan, ad=accept_delay) -> None:
            s = c1.socket()
            s.connect("10.0.0.2", 8888)
            plans[s.lport] = (ad, sp)
            _play(c1, s, cp, sim.sched.now)

        c1.call_at(connect_ms * 1000 + k, dial)
    sim.run(2000)
    for h in (c1, c2):
        left = {NAMES[c.state] for c in h.ehash.values()}
        assert not h.ehash and not h.twhash, f"{h.name} still holds {left or 'TIME_WAIT'}"
        assert not h.ports.buckets and h.orphans == 0
