"""The RFC 9293 state machine skeleton as data.

States are small integers (cheap to compare on the hot path); ``NAMES`` gives
their RFC spelling. :data:`TRANSITIONS` maps ``(state, event)`` to the next
state. The connection moves *only* through :data:`TRANSITIONS`, and the state
diagram (``timewait diagram --states``) is drawn from the same table, so the
picture cannot drift from the engine. An undefined pair raises
:class:`InvalidTransition`.
"""

from __future__ import annotations

CLOSED = 0
LISTEN = 1
SYN_SENT = 2
SYN_RECEIVED = 3
ESTABLISHED = 4
FIN_WAIT_1 = 5
FIN_WAIT_2 = 6
CLOSE_WAIT = 7
CLOSING = 8
LAST_ACK = 9
TIME_WAIT = 10

NAMES = (
    "CLOSED", "LISTEN", "SYN_SENT", "SYN_RECEIVED", "ESTABLISHED", "FIN_WAIT_1",
    "FIN_WAIT_2", "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT",
)
BY_NAME = {n: i for i, n in enumerate(NAMES)}

# States in which the connection is synchronized (RFC 9293 §3.10.7.4).
SYNCHRONIZED = frozenset({ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT})
# States in which our FIN has been sent.
FIN_SENT = frozenset({FIN_WAIT_1, FIN_WAIT_2, CLOSING, LAST_ACK, TIME_WAIT})

# Events.
APP_CONNECT = "connect"
APP_LISTEN = "listen"
APP_CLOSE = "close"
APP_ABORT = "abort"
RCV_SYN = "rcv SYN"
RCV_SYN_ACK = "rcv SYN,ACK"
RCV_ACK = "rcv ACK of SYN"
RCV_FIN = "rcv FIN"
RCV_ACK_OF_FIN = "rcv ACK of FIN"
RCV_RST = "rcv RST"
RCV_SYN_RFC793 = "rcv SYN in window (RFC 793: reset)"
TIMEOUT = "retransmission give-up"
TIMEOUT_FW2 = "fin_wait2 timeout"
TIMEOUT_2MSL = "TIME_WAIT timeout"
TW_OVERFLOW = "tw buckets full"
LISTENER_GONE = "listener closed"

# (state, event) -> (next state, what is sent). The send column is for the
# diagram; the connection code does the sending.
TRANSITIONS: dict[tuple[int, str], tuple[int, str]] = {
    (CLOSED, APP_CONNECT): (SYN_SENT, "SYN"),
    (CLOSED, APP_LISTEN): (LISTEN, ""),
    (LISTEN, RCV_SYN): (SYN_RECEIVED, "SYN,ACK"),
    (LISTEN, APP_CLOSE): (CLOSED, ""),
    (SYN_SENT, RCV_SYN_ACK): (ESTABLISHED, "ACK"),
    (SYN_SENT, RCV_SYN): (SYN_RECEIVED, "SYN,ACK"),
    (SYN_SENT, APP_CLOSE): (CLOSED, ""),
    (SYN_SENT, APP_ABORT): (CLOSED, ""),
    (SYN_SENT, RCV_RST): (CLOSED, ""),
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
    (TIME_WAIT, TIMEOUT_2MSL): (CLOSED, ""),
    (TIME_WAIT, RCV_RST): (CLOSED, ""),
    (TIME_WAIT, TW_OVERFLOW): (CLOSED, ""),
    (TIME_WAIT, RCV_SYN): (CLOSED, "SYN,ACK (new incarnation)"),
}

# Flattened for the hot path: (state << 5 | event index) would be faster still,
# but a dict on a (int, str) tuple is one lookup per *transition*, not per segment.


class InvalidTransition(RuntimeError):
    """A (state, event) pair that the table does not define: an engine bug."""

    def __init__(self, state: int, event: str) -> None:
        super().__init__(f"no transition from {NAMES[state]} on {event!r}")
        self.state = state
        self.event = event


def next_state(state: int, event: str) -> int:
    try:
        return TRANSITIONS[(state, event)][0]
    except KeyError:
        raise InvalidTransition(state, event) from None
