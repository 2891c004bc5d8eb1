"""The transition table is the engine's only way to change state (tcp/states.py).

- A move the table does not define raises :class:`InvalidTransition`.
- Run at small sizes, the scenarios take every row except those the table marks
  :data:`DRAWN_ONLY` (never taken) or :data:`RARE` (taken only by a rare path), and
  every state change their traces record is a row's move.
- Each :data:`RARE` row is taken by a named unit test.

Rows are recorded by wrapping ``Connection._go`` and ``TimeWait.go``, the two places a
state changes.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from conftest import C1, make_lan, make_record, make_tcb, rs, states
from timewait.scenarios import all_scenarios, run_scenario
from timewait.tcp.config import MS, SEC
from timewait.tcp.connection import Connection
from timewait.tcp.segment import ACK, RST, SYN
from timewait.tcp.states import (
    APP_CONNECT,
    CLOSE_WAIT,
    CLOSING,
    DRAWN_ONLY,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LAST_ACK,
    NAMES,
    RARE,
    RCV_FIN,
    SYN_RECEIVED,
    SYN_SENT,
    TIME_WAIT,
    TRANSITIONS,
    InvalidTransition,
    step,
)
from timewait.tcp.timewait import TimeWait

Row = tuple[int, str]

# Small sizes: the long scenarios' parameters cut to a few seconds of simulated time.
SMALL: dict[str, dict[str, Any]] = {
    "port-exhaustion": {"duration": 3.0, "rtt_ms": 20.0},
    "max-rate": {"ports": "40000-40999"},
    "redis-short-connections": {"connections": 200},
}


@contextmanager
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[Row]]:
    """Every ``(state, event)`` row taken while the block runs."""
    import timewait.tcp.connection as connection_module

    if not connection_module.__file__.endswith(".py"):
        # A mypyc-compiled class cannot have a method replaced; the table and its moves are the
        # same code in both builds, so the pure-Python pass of the suite records them.
        pytest.skip("records rows by wrapping Connection._go: only on the pure-Python build "
                    "(TIMEWAIT_PURE_PYTHON=1, the suite's second pass in CI)")
    taken: set[Row] = set()
    go, tw_go = Connection._go, TimeWait.go

    def conn_go(self: Connection, event: str) -> None:
        taken.add((self.state, event))
        go(self, event)

    def record_go(self: TimeWait, event: str) -> None:
        taken.add((self.substate, event))
        tw_go(self, event)

    with monkeypatch.context() as m:
        m.setattr(Connection, "_go", conn_go)
        m.setattr(TimeWait, "go", record_go)
        yield taken


# ---------------------------------------------------------------- InvalidTransition


def test_a_move_not_in_the_table_raises() -> None:
    t = make_tcb("ESTABLISHED")
    with pytest.raises(InvalidTransition, match="no transition from ESTABLISHED on 'connect'"):
        t.conn._go(APP_CONNECT)
    assert t.state == "ESTABLISHED"  # nothing moved
    with pytest.raises(InvalidTransition):
        step(TIME_WAIT, RCV_FIN)
    rec = make_record("TIME_WAIT")
    with pytest.raises(InvalidTransition) as e:
        rec.tw.go(RCV_FIN)  # only the FIN_WAIT_2 substate takes the peer's FIN
    assert (e.value.state, e.value.event) == (TIME_WAIT, RCV_FIN) and rec.tw.substate == TIME_WAIT


def test_the_marks_name_rows_of_the_table() -> None:
    assert set(DRAWN_ONLY) <= set(TRANSITIONS) and set(RARE) <= set(TRANSITIONS)
    assert not set(DRAWN_ONLY) & set(RARE)
    assert all(DRAWN_ONLY.values()) and all(RARE.values())  # each says why


# ---------------------------------------------------------------- coverage by the scenarios


def test_scenarios_take_every_row_but_the_marked_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    pairs: set[tuple[str, str]] = set()
    with recording(monkeypatch) as taken:
        for name in all_scenarios():
            r = run_scenario(name, params=SMALL.get(name))
            pairs |= {(rec[4], rec[5]) for rec in r.trace.records if rec[1] == "state"}
    table_pairs = {(NAMES[s], NAMES[nxt]) for (s, _), (nxt, _) in TRANSITIONS.items()}
    assert pairs <= table_pairs, pairs - table_pairs  # every traced change is a row's move
    named = {(NAMES[s], e) for s, e in taken}
    assert not set(DRAWN_ONLY) & taken, f"a drawn-only row was taken: {set(DRAWN_ONLY) & taken}"
    assert not set(RARE) & taken, f"taken by a scenario, so not rare: {set(RARE) & taken}"
    missing = set(TRANSITIONS) - set(DRAWN_ONLY) - set(RARE) - taken
    assert not missing, f"rows no scenario takes (mark them, with a test): {sorted(missing)}; taken: {sorted(named)}"


# ---------------------------------------------------------------- the rare rows, one test each


def _rst(state: str) -> None:
    t = make_tcb(state)
    t.send(t.seg(RST, t.conn.rcv_nxt), at=MS)
    assert t.state == "CLOSED"


def _give_up(state: str) -> None:
    t = make_tcb(state)
    t.conn.send(b"x", 0)
    t.run_timers(until=3600 * SEC)
    assert t.state == "CLOSED" and t.conn.err == "ETIMEDOUT"


def _abort(state: str) -> None:
    t = make_tcb(state)
    t.conn.abort_now(0)
    assert t.state == "CLOSED"


def _rfc793_syn(state: str) -> None:
    """The RFC 793 lesson profile (``syn_in_lastack_rst``): an in-window SYN resets."""
    t = make_tcb(state, syn_in_lastack_rst=True)
    out = t.send(t.seg(SYN, t.conn.rcv_nxt + 5), at=MS)
    assert t.state == "CLOSED" and [s.flags for s in out] == [RST | ACK]


def _syn_received_close() -> None:
    """close() in SYN_RECEIVED after a simultaneous open: the FIN waits for the handshake."""
    t = make_tcb("SYN_SENT")
    t.send(t.seg(SYN, rs(0), ts=False), at=MS)
    assert t.state == "SYN_RECEIVED"
    t.conn.close(2 * MS)
    assert t.state == "FIN_WAIT_1"


def _fw2_record(sim_at: Callable[..., None]) -> tuple[Any, Any, Any, list]:
    """c1 closes at 1 s and orphans its FIN_WAIT2 (TW-6: a record); c2 keeps its side open."""
    from test_rules_host import dial, serve

    sim, c1, c2 = make_lan()
    acc = serve(c2, close_on_eof=False)
    dial(c1, bind=(C1, 40000), reuseaddr=True, close_at=SEC)
    out: list = []
    sim_at(c1, c2, acc, out)
    sim.run(3)
    return sim, c1, c2, out


def _fw2_record_gets_data() -> None:
    """TW-F5: new data for an orphan's FIN_WAIT_2 record is answered by an RST and the record dies."""
    sim, c1, _, _ = _fw2_record(lambda c1, c2, acc, out: c2.call_at(2 * SEC, lambda: acc[1].send(b"late")))
    assert ("FIN_WAIT_2", "CLOSED") in {(old, new) for t, _, old, new in states(sim, "c1") if t >= 2 * SEC}
    assert not c1.twhash and c1.counters["TcpOutRsts"] == 1


def _fw2_record_taken_over() -> None:
    """PS-1: a bound connect() takes over a FIN_WAIT_2 record that saw timestamps."""
    from test_rules_host import attempt

    sim, c1, _, res = _fw2_record(lambda c1, c2, acc, out: attempt(c1, 2 * SEC, out, bind=(C1, 40000),
                                                                  reuseaddr=True))
    assert res == [(2 * SEC, 40000)] and c1.counters["TcpExtTWRecycled"] == 1


def _existing(ref: str) -> Callable[[], None]:
    """A test elsewhere that takes the row: ``module::function``."""
    module, fn = ref.split("::")

    def run() -> None:
        f = getattr(importlib.import_module(module), fn)
        fixtures = {"tcb": make_tcb, "record": make_record, "lan": make_lan}
        f(**{p: fixtures[p] for p in inspect.signature(f).parameters})

    return run


DRIVERS: dict[Row, Callable[[], None]] = {
    (SYN_SENT, "rcv SYN"): _existing("test_connection_open::test_simultaneous_open_both_established"),
    (SYN_SENT, "rcv RST"): _existing("test_connection_open::test_synsent_rst_with_acceptable_ack_refuses"),
    (SYN_RECEIVED, "close"): _syn_received_close,
    (SYN_RECEIVED, "abort"): _existing("test_connection_close::test_CL_2_linger0_in_syn_received_sends_rst"),
    (SYN_RECEIVED, "rcv RST"): lambda: _rst("SYN_RECEIVED"),
    (SYN_RECEIVED, "retransmission give-up"):
        _existing("test_connection_open::test_synack_retransmission_1_2_4_8_16_then_give_up"),
    (SYN_RECEIVED, "listener closed"):
        _existing("test_rules_listen_stop::test_LS_2_LS_4_request_of_a_closed_listener_is_dropped_at_its_timer"),
    (ESTABLISHED, "retransmission give-up"): lambda: _give_up("ESTABLISHED"),
    (FIN_WAIT_1, "abort"): _existing("test_rules_host::test_CL_4_too_many_orphans_reset_and_destroy"),
    (FIN_WAIT_1, "rcv RST"): lambda: _rst("FIN_WAIT_1"),
    (FIN_WAIT_1, "retransmission give-up"): lambda: _give_up("FIN_WAIT_1"),
    (FIN_WAIT_2, "abort"): _existing("test_connection_close::test_new_data_after_close_in_fin_wait_2_resets"),
    (FIN_WAIT_2, "rcv RST"): lambda: _rst("FIN_WAIT_2"),
    (FIN_WAIT_2, "replaced by a TIME_WAIT record"): _existing("test_rules_host::test_TW_6_orphan_fin_wait2_timeout"),
    (FIN_WAIT_2, "fin_wait2 timeout"): _existing("test_rules_host::test_TW_6_orphan_fin_wait2_timeout"),
    (FIN_WAIT_2, "tw buckets full"):
        _existing("test_rules_host::test_TW_8_orphan_fin_wait2_overflow_destroys_the_socket"),
    (FIN_WAIT_2, "rcv SYN or new data"): _fw2_record_gets_data,
    (FIN_WAIT_2, "connect() takes the 4-tuple"): _fw2_record_taken_over,
    (CLOSE_WAIT, "abort"): lambda: _abort("CLOSE_WAIT"),
    (CLOSE_WAIT, "rcv RST"): lambda: _rst("CLOSE_WAIT"),
    (CLOSE_WAIT, "retransmission give-up"): lambda: _give_up("CLOSE_WAIT"),
    (CLOSING, "rcv RST"): lambda: _rst("CLOSING"),
    (CLOSING, "abort"): lambda: _abort("CLOSING"),
    (CLOSING, "retransmission give-up"): lambda: _give_up("CLOSING"),
    (LAST_ACK, "abort"): lambda: _abort("LAST_ACK"),
    (LAST_ACK, "retransmission give-up"): _existing("test_connection_close::test_LA_4_not_orphaned_uses_retries2"),
    (TIME_WAIT, "rcv RST"): _existing("test_rules_host::test_LA_3_ISN_2_lower_isn_meets_time_wait_ack_rst_kills_it"),
    (TIME_WAIT, "tw buckets full"): _existing("test_rules_host::test_TW_8_overflow_skips_timewait"),
    (TIME_WAIT, "rcv SYN"):
        _existing("test_rules_host::test_RO_1_RO_2_RO_3_listener_takes_syn_with_fixed_isn_and_ts_continue"),
    **{(s, "rcv SYN in window (RFC 793: reset)"): (lambda name=NAMES[s]: _rfc793_syn(name))
       for s in (SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK)},
}


def test_every_rare_row_has_a_test() -> None:
    assert set(DRIVERS) == set(RARE)


@pytest.mark.parametrize("row", sorted(RARE), ids=lambda r: f"{NAMES[r[0]]}-{r[1]}")
def test_rare_row_is_taken(row: Row, monkeypatch: pytest.MonkeyPatch) -> None:
    with recording(monkeypatch) as taken:
        DRIVERS[row]()
    assert row in taken, sorted((NAMES[s], e) for s, e in taken)
