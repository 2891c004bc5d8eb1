"""The RFC 9293 state machine skeleton as data.

States are small integers (cheap to compare on the hot path); ``NAMES`` gives
their RFC spelling. :data:`TRANSITIONS` maps ``(state, event)`` to the next
state. A connection (``Connection._go``) and a TIME_WAIT record
(``TimeWait.go``) move *only* through :data:`TRANSITIONS`, and the state
diagram (``timewait diagram --states``) is drawn from the same table, so the
picture cannot drift from the engine. An undefined pair raises
:class:`InvalidTransition`.

Not every row shows in a scenario's trace: :data:`DRAWN_ONLY` names the rows
the engine never takes (drawn for RFC 9293's picture) and :data:`RARE` the rows
only a specific rare path takes, each with its reason; tests/test_transitions.py
checks that the scenarios take every other row and unit-tests the rare ones.
"""

from __future__ import annotations

from typing import Final

CLOSED: Final = 0
LISTEN: Final = 1
SYN_SENT: Final = 2
SYN_RECEIVED: Final = 3
ESTABLISHED: Final = 4
FIN_WAIT_1: Final = 5
FIN_WAIT_2: Final = 6
CLOSE_WAIT: Final = 7
CLOSING: Final = 8
LAST_ACK: Final = 9
TIME_WAIT: Final = 10

NAMES = (
    "CLOSED", "LISTEN", "SYN_SENT", "SYN_RECEIVED", "ESTABLISHED", "FIN_WAIT_1",
    "FIN_WAIT_2", "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT",
)
BY_NAME = {n: i for i, n in enumerate(NAMES)}

# Events.
APP_CONNECT: Final = "connect"
APP_LISTEN: Final = "listen"
APP_CLOSE: Final = "close"
APP_ABORT: Final = "abort"
RCV_SYN: Final = "rcv SYN"
RCV_SYN_ACK: Final = "rcv SYN,ACK"
RCV_ACK: Final = "rcv ACK of SYN"
RCV_FIN: Final = "rcv FIN"
RCV_ACK_OF_FIN: Final = "rcv ACK of FIN"
RCV_RST: Final = "rcv RST"
RCV_ICMP: Final = "rcv ICMP error (hard)"
RCV_SYN_RFC793: Final = "rcv SYN in window (RFC 793: reset)"
TIMEOUT: Final = "retransmission give-up"
TIMEOUT_FW2: Final = "fin_wait2 timeout"
TIMEOUT_2MSL: Final = "TIME_WAIT timeout"
TW_OVERFLOW: Final = "tw buckets full"
LISTENER_GONE: Final = "listener closed"
LISTENER_SYN: Final = "rcv SYN at a listener"
TW_HANDOFF: Final = "replaced by a TIME_WAIT record"
TW_OFF: Final = "TIME_WAIT disabled (lesson knob)"
TW_REUSE: Final = "connect() takes the 4-tuple"
RCV_SYN_OR_DATA: Final = "rcv SYN or new data"

# (state, event) -> (next state, what is sent). The send column is for the
# diagram; the connection code does the sending.
TRANSITIONS: dict[tuple[int, str], tuple[int, str]] = {
    (CLOSED, APP_CONNECT): (SYN_SENT, "SYN"),
    (CLOSED, APP_LISTEN): (LISTEN, ""),
    # A listener's child: tcp_conn_request makes a request sock already in SYN_RECV (the engine's
    # listener is a Socket that stays in LISTEN; its child is a new TCB).
    (CLOSED, LISTENER_SYN): (SYN_RECEIVED, "SYN,ACK"),
    (LISTEN, RCV_SYN): (SYN_RECEIVED, "SYN,ACK"),
    (LISTEN, APP_CLOSE): (CLOSED, ""),
    (SYN_SENT, RCV_SYN_ACK): (ESTABLISHED, "ACK"),
    (SYN_SENT, RCV_SYN): (SYN_RECEIVED, "SYN,ACK"),
    (SYN_SENT, APP_CLOSE): (CLOSED, ""),
    (SYN_SENT, RCV_RST): (CLOSED, ""),
    (SYN_SENT, RCV_ICMP): (CLOSED, ""),  # IC-1: tcp_v4_err, e.g. time-exceeded from a router
    (SYN_SENT, TIMEOUT): (CLOSED, ""),
    (SYN_RECEIVED, RCV_ACK): (ESTABLISHED, ""),
    (SYN_RECEIVED, APP_CLOSE): (FIN_WAIT_1, "FIN"),
    (SYN_RECEIVED, APP_ABORT): (CLOSED, "RST"),
    (SYN_RECEIVED, RCV_RST): (CLOSED, ""),
    (SYN_RECEIVED, TIMEOUT): (CLOSED, ""),
    (SYN_RECEIVED, LISTENER_GONE): (CLOSED, ""),  # a listener's request forgotten (LS-2, LS-3)
    (ESTABLISHED, APP_CLOSE): (FIN_WAIT_1, "FIN"),
    (ESTABLISHED, RCV_FIN): (CLOSE_WAIT, "ACK"),
    (ESTABLISHED, APP_ABORT): (CLOSED, "RST"),
    (ESTABLISHED, RCV_RST): (CLOSED, ""),
    (ESTABLISHED, TIMEOUT): (CLOSED, ""),
    (FIN_WAIT_1, RCV_ACK_OF_FIN): (FIN_WAIT_2, ""),
    (FIN_WAIT_1, RCV_FIN): (CLOSING, "ACK"),
    (FIN_WAIT_1, APP_ABORT): (CLOSED, "RST"),
    (FIN_WAIT_1, RCV_RST): (CLOSED, ""),
    (FIN_WAIT_1, TIMEOUT): (CLOSED, ""),
    (FIN_WAIT_2, RCV_FIN): (TIME_WAIT, "ACK"),
    (FIN_WAIT_2, APP_ABORT): (CLOSED, "RST"),
    (FIN_WAIT_2, RCV_RST): (CLOSED, ""),
    (FIN_WAIT_2, TIMEOUT_FW2): (CLOSED, ""),
    (FIN_WAIT_2, TW_OVERFLOW): (CLOSED, ""),
    # An orphan's FIN_WAIT2 becomes a FIN_WAIT_2-substate record (TW-6; tcp_time_wait ends the
    # socket with tcp_done), which takes the FIN_WAIT_2 rows from then on.
    (FIN_WAIT_2, TW_HANDOFF): (CLOSED, ""),
    (FIN_WAIT_2, RCV_SYN_OR_DATA): (CLOSED, "RST"),  # the record's TW-F3, TW-F5 (TCP_TW_RST)
    (FIN_WAIT_2, TW_REUSE): (CLOSED, ""),  # PS-1: a bound connect() takes it over
    (CLOSE_WAIT, APP_CLOSE): (LAST_ACK, "FIN"),
    (CLOSE_WAIT, APP_ABORT): (CLOSED, "RST"),
    (CLOSE_WAIT, RCV_RST): (CLOSED, ""),
    (CLOSE_WAIT, TIMEOUT): (CLOSED, ""),
    (CLOSING, RCV_ACK_OF_FIN): (TIME_WAIT, ""),
    (CLOSING, RCV_RST): (CLOSED, ""),
    (CLOSING, APP_ABORT): (CLOSED, ""),
    (CLOSING, TIMEOUT): (CLOSED, ""),
    (LAST_ACK, RCV_ACK_OF_FIN): (CLOSED, ""),
    (LAST_ACK, RCV_RST): (CLOSED, ""),
    (LAST_ACK, APP_ABORT): (CLOSED, ""),
    (LAST_ACK, TIMEOUT): (CLOSED, ""),
    # RFC 793 / pre-3.6 Linux only (profiles rfc793, chapter): an in-window SYN resets.
    **{(st, RCV_SYN_RFC793): (CLOSED, "RST") for st in (SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT,
                                                         CLOSING, LAST_ACK)},
    # The socket is replaced by its record (TW-4); the record takes the TIME_WAIT rows below.
    (TIME_WAIT, TW_HANDOFF): (CLOSED, ""),
    (TIME_WAIT, TIMEOUT_2MSL): (CLOSED, ""),
    (TIME_WAIT, TW_OFF): (CLOSED, ""),
    (TIME_WAIT, TW_REUSE): (CLOSED, ""),  # PS-1, PS-5: connect() takes over the 4-tuple
    (TIME_WAIT, RCV_RST): (CLOSED, ""),
    (TIME_WAIT, TW_OVERFLOW): (CLOSED, ""),
    (TIME_WAIT, RCV_SYN): (CLOSED, "SYN,ACK (new incarnation)"),
}

# The table without the diagram's column, by event then state: Connection._go looks a move up
# here (two dict lookups on interned keys, no tuple built per move).
def _by_event() -> dict[str, dict[int, int]]:
    out: dict[str, dict[int, int]] = {}
    for (state, event), (nxt, _) in TRANSITIONS.items():
        out.setdefault(event, {})[state] = nxt
    return out


NEXT = _by_event()

# Rows the engine never takes, with why: they are drawn for RFC 9293's picture.
DRAWN_ONLY: dict[tuple[int, str], str] = {
    (CLOSED, APP_LISTEN): "a listener is a Socket (sim/host.py listen()), not a TCB: no connection enters LISTEN",
    (LISTEN, RCV_SYN): "the listener stays in LISTEN; the TCB a SYN makes takes (CLOSED, LISTENER_SYN) instead",
    (LISTEN, APP_CLOSE): "closing a listener (LS-1) changes no TCB's state from LISTEN",
}

# Rows only a specific rare path takes (no scenario at its small sizes reaches them), with the
# path; each has a unit test in tests/test_transitions.py.
_GIVE_UP = "an unanswered retransmission until the give-up budget (LA-4, SYN-1)"
_ABORT = "an abortive close: CL-1 unread data, CL-2 SO_LINGER {1, 0}, CL-4 too many orphans, LS-1"
_RESET = "an exact RST (RFC 5961, LA-3) in a state the scenarios pass through in an instant"
RARE: dict[tuple[int, str], str] = {
    (SYN_SENT, RCV_SYN): "simultaneous open (both ends connect() at once)",
    (SYN_SENT, RCV_RST): "connection refused: an RST with an acceptable ACK (tcp_rcv_synsent_state_process)",
    (SYN_RECEIVED, APP_CLOSE): "close() during a simultaneous open (the passive child has no socket yet)",
    (SYN_RECEIVED, APP_ABORT): _ABORT,
    (SYN_RECEIVED, RCV_RST): _RESET,
    (SYN_RECEIVED, TIMEOUT): "the SYN-ACK never answered: tcp_synack_retries",
    (SYN_RECEIVED, LISTENER_GONE): "the listener closed during the handshake (LS-2, LS-3)",
    (ESTABLISHED, TIMEOUT): _GIVE_UP,
    (FIN_WAIT_1, APP_ABORT): _ABORT,
    (FIN_WAIT_1, RCV_RST): _RESET,
    (FIN_WAIT_1, TIMEOUT): _GIVE_UP,
    (FIN_WAIT_2, APP_ABORT): _ABORT,
    (FIN_WAIT_2, RCV_RST): _RESET,
    (FIN_WAIT_2, TW_HANDOFF): "an orphan waits in FIN_WAIT_2 for a peer that keeps its side open (TW-6); "
                              "the scenarios' peers close within the delayed ACK of the FIN (DA-4), "
                              "so their FIN carries that ACK",
    (FIN_WAIT_2, TIMEOUT_FW2): "an orphan's FIN_WAIT_2 record expires before the peer's FIN (TW-6)",
    (FIN_WAIT_2, TW_OVERFLOW): "tcp_max_tw_buckets full when an orphan reaches FIN_WAIT2 (TW-8)",
    (FIN_WAIT_2, RCV_SYN_OR_DATA): "a SYN or new data for an orphan's FIN_WAIT_2 record (TW-F3, TW-F5)",
    (FIN_WAIT_2, TW_REUSE): "a bound connect() takes over a FIN_WAIT_2 record (PS-1)",
    (CLOSE_WAIT, APP_ABORT): _ABORT,
    (CLOSE_WAIT, RCV_RST): _RESET,
    (CLOSE_WAIT, TIMEOUT): _GIVE_UP,
    (CLOSING, RCV_RST): _RESET,
    (CLOSING, APP_ABORT): _ABORT,
    (CLOSING, TIMEOUT): _GIVE_UP,
    (LAST_ACK, APP_ABORT): _ABORT,
    (LAST_ACK, TIMEOUT): _GIVE_UP,
    (TIME_WAIT, RCV_RST): "TIME-WAIT assassination: an exact RST with tcp_rfc1337=0 (TW-A)",
    (TIME_WAIT, TW_OVERFLOW): "tcp_max_tw_buckets full (TW-8)",
    (TIME_WAIT, RCV_SYN): "a new incarnation's SYN meets the record and a listener (RO-1, TW-B)",
    **{(st, RCV_SYN_RFC793): "the rfc793 / chapter lesson profiles only (syn_in_lastack_rst)"
       for st in (SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK)},
}


class InvalidTransition(RuntimeError):
    """A (state, event) pair that the table does not define: an engine bug."""

    def __init__(self, state: int, event: str) -> None:
        super().__init__(f"no transition from {NAMES[state]} on {event!r}")
        self.state = state
        self.event = event


def step(state: int, event: str) -> int:
    """The state ``event`` leads to from ``state``; :class:`InvalidTransition` if the table has no row."""
    try:
        return NEXT[event][state]
    except KeyError:
        raise InvalidTransition(state, event) from None
