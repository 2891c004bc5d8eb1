"""The one clock: ordering at an instant, cancellation, the TIME_WAIT lane, and what a
connection leaves on it."""

from __future__ import annotations

import pytest

from conftest import make_lan
from timewait.sim.scheduler import Lane, Scheduler
from timewait.tcp.config import SEC


class Item:
    __slots__ = ("name", "due")

    def __init__(self, name: str) -> None:
        self.name, self.due = name, -1


def test_events_of_one_instant_run_in_scheduling_order_even_when_added_meanwhile() -> None:
    s, log = Scheduler(), []

    def first(_: object) -> None:
        log.append("first")
        s.at(s.now, log.append, "added at the running instant")
        s.at(s.now - 5, log.append, "added in the past")  # clamped to now: runs this instant, last

    s.at(10, first)
    s.at(10, log.append, "second")
    s.at(5, log.append, "earlier")
    s.at(11, log.append, "later")
    s.run()
    assert log == ["earlier", "first", "second", "added at the running instant", "added in the past", "later"]
    assert (s.now, s.events, s.pending()) == (11, 6, 0)


def test_run_until_stops_after_that_instant_and_advances_the_clock() -> None:
    s, log = Scheduler(), []
    for t in (10, 20, 30):
        s.at(t, log.append, t)
    s.run(until=20)
    assert (log, s.now, s.next_time()) == ([10, 20], 20, 30)
    s.run(until=25)
    assert (log, s.now) == ([10, 20], 25)
    s.run()
    assert log == [10, 20, 30]


def test_max_events_stops_inside_an_instant_and_resumes_there() -> None:
    s, log = Scheduler(), []
    for x in "abc":
        s.at(7, log.append, x)
    s.run(max_events=2)
    assert (log, s.events, s.pending()) == (["a", "b"], 2, 1)
    s.run()
    assert log == ["a", "b", "c"]


def test_cancel_withdraws_a_future_event_but_never_from_the_running_instant() -> None:
    s, log = Scheduler(), []
    s.at(10, log.append, "kept")
    s.at(10, log.append, "withdrawn")
    assert s.cancel(10, log.append, "withdrawn")
    assert not s.cancel(10, log.append, "withdrawn")  # already gone
    assert not s.cancel(99, log.append, "never scheduled")

    def at_ten(_: object) -> None:
        assert not s.cancel(10, log.append, "runs anyway")  # being iterated: left to run

    s.at(10, at_ten)
    s.at(10, log.append, "runs anyway")
    s.run()
    assert log == ["kept", "runs anyway"]


def test_an_exception_leaves_the_rest_of_the_instant_scheduled() -> None:
    s, log = Scheduler(), []

    def boom(_: object) -> None:
        raise RuntimeError("boom")

    s.at(3, log.append, "a")
    s.at(3, boom)
    s.at(3, log.append, "b")
    with pytest.raises(RuntimeError):
        s.run()
    assert (log, s.pending()) == (["a"], 1)
    s.run()
    assert log == ["a", "b"]


def test_lane_runs_items_at_their_due_times_before_the_instants_other_events() -> None:
    s, log = Scheduler(), []
    lane = Lane(s, lambda item: log.append(item.name))
    s.at(100, log.append, "scheduled before the items")
    a, b, c = Item("a"), Item("b"), Item("c")
    assert lane.push(a, 100) and lane.push(b, 100) and lane.push(c, 200)
    s.run()
    assert log == ["a", "b", "scheduled before the items", "c"]
    assert s.events == 4 and len(lane) == 0 and a.due == b.due == c.due == -1


def test_lane_refuses_an_earlier_due_time_or_an_item_still_queued() -> None:
    s = Scheduler()
    lane = Lane(s, lambda item: None)
    a, b = Item("a"), Item("b")
    assert lane.push(a, 50)
    assert not lane.push(b, 40)   # earlier than the lane's last: the caller uses the heap
    assert not lane.push(a, 60)   # queued once at most
    assert lane.push(b, 50) and len(lane) == 2


def test_one_connection_holds_one_wake_up_and_time_wait_holds_none_on_the_heap() -> None:
    """A connection's timer is moved (not stacked) when its deadline comes earlier and withdrawn
    when it leaves; 1,000 TIME_WAIT records then cost the scheduler one event (the lane's head)."""
    sim, c1, c2 = make_lan()
    ls = c2.socket()
    ls.bind(0, 80)
    ls.listen(1000)

    def accept(lsock: object) -> None:
        x = lsock.accept()  # type: ignore[attr-defined]
        x.on_data = lambda y: y.send(y.recv())
        x.on_eof = lambda y: y.close()

    ls.on_accept = accept
    for i in range(1000):
        s = c1.socket()
        s.on_connected = lambda x: x.send(b"ping")
        s.on_data = lambda x: (x.recv(), x.close())
        c1.call_at(i * 1000, (lambda sock: lambda: sock.connect("10.0.0.2", 80))(s))
    sim.run(5)
    assert len(c1.twhash) == 1000 and not c1.ehash and not c2.ehash
    assert sim.sched.pending() == 1
    # 10 segments (ping and its echo are quick-ACKed first, DA-1; the server's FIN carries the
    # ACK of the client's, DA-4) and one connect each: no stale wake-ups, no delack wake-up
    assert sim.sched.events == 1000 * 11
    sim.run(70)
    assert not c1.twhash and sim.sched.pending() == 0
    assert sim.sched.events == 1000 * 12 and sim.sched.now == 70 * SEC
