"""The modelled network: link delay, loss, duplication, reordering, jitter, MSL age and fault rules."""

from __future__ import annotations

import pytest

from timewait.errors import UsageError
from timewait.sim.network import parse_fault
from timewait.sim.simulation import Simulation
from timewait.tcp.segment import ACK, SYN, Segment, ip_aton
from timewait.trace import DROP, RX

A, B = "10.0.0.1", "10.0.0.2"
SEC = 1_000_000


def pair(**link):
    sim = Simulation(seed=7)
    a, b = sim.add_host("a", A), sim.add_host("b", B)
    sim.link(a, b, **link)
    return sim, a, b


def send_n(sim, a, n, gap_us=1000):
    """n bare ACKs from a to b (b answers each with an RST: no socket), one every gap_us."""
    for i in range(n):
        sim.sched.at(i * gap_us, lambda _, i=i: a.transmit(
            Segment(ip_aton(A), ip_aton(B), 1000, 2000, i, 0, ACK, 0)), None)


def arrivals(sim, node="b"):
    return [(r[0], r[3].seq) for r in sim.trace.records if r[1] == RX and r[2] == node]


def test_link_delay_is_exact():
    sim, a, b = pair(delay_ms=2.5)
    send_n(sim, a, 3)
    sim.run(1)
    assert arrivals(sim) == [(2500, 0), (3500, 1), (4500, 2)]


def test_loss_is_seeded_and_traced():
    runs = []
    for _ in range(2):
        sim, a, b = pair(delay_ms=1, loss=0.3)
        send_n(sim, a, 200)
        sim.run(1)
        lost = [r[3].seq for r in sim.trace.records if r[1] == DROP and r[4] == "loss" and r[2] == "a"]
        runs.append(lost)
        assert len(arrivals(sim)) == 200 - len(lost)
    assert runs[0] == runs[1] and 30 < len(runs[0]) < 90


def test_duplication_delivers_twice():
    sim, a, b = pair(delay_ms=1, dup=1.0)
    send_n(sim, a, 2)
    sim.run(1)
    assert arrivals(sim) == [(1000, 0), (1000, 0), (2000, 1), (2000, 1)]


def test_reordering_delays_some_packets_past_later_ones():
    sim, a, b = pair(delay_ms=1, reorder=0.5, reorder_ms=5)
    send_n(sim, a, 20)
    sim.run(1)
    seqs = [s for _, s in arrivals(sim)]
    assert sorted(seqs) == list(range(20)) and seqs != list(range(20))


def test_jitter_stays_within_bounds():
    sim, a, b = pair(delay_ms=1, jitter_ms=2)
    send_n(sim, a, 50)
    sim.run(1)
    for t, seq in arrivals(sim):
        assert 1000 <= t - seq * 1000 < 3000


def test_hold_past_msl_kills_the_packet():
    sim, a, b = pair(delay_ms=1)
    sim.fault("hold 31 from=a flags=. nth=1")  # the network's MSL is 30 s under linux
    sim.fault("hold 29 from=a flags=. nth=2")
    send_n(sim, a, 2)
    sim.run(40)
    assert arrivals(sim) == [(29 * SEC + 2000, 1)]  # held 29 s: younger than MSL, delivered
    assert [(r[0], r[2]) for r in sim.trace.records if r[1] == DROP and r[4] == "msl"] == [(31 * SEC + 1000, "b")]


def test_fault_drop_nth_matching_segment_only():
    sim, a, b = pair(delay_ms=1)
    sim.fault("drop from=a flags=. len=0 nth=2")
    send_n(sim, a, 3)
    sim.run(1)
    assert [s for _, s in arrivals(sim)] == [0, 2]


def test_fault_dup_with_delay_makes_a_delayed_duplicate():
    sim, a, b = pair(delay_ms=1)
    sim.fault("dup 0.5 from=a nth=1")
    send_n(sim, a, 1)
    sim.run(1)
    assert arrivals(sim) == [(1000, 0), (501000, 0)]


def test_fault_filters_flags_exactly():
    f = parse_fault("drop from=c1 flags=S nth=1")
    assert f.flags == SYN and f.src == "c1"
    with pytest.raises(UsageError):
        parse_fault("explode from=c1")
    with pytest.raises(UsageError):
        parse_fault("drop flags=Q")
    with pytest.raises(UsageError):
        parse_fault("hold from=c1")


def test_an_impairment_set_after_the_link_is_made_takes_effect():
    """Host.transmit's fast path trusts Link.plain; setting loss later must clear it."""
    sim, a, b = pair(delay_ms=1)
    link = sim.net.links[0]
    assert link.plain
    link.loss = 1.0
    assert not link.plain
    send_n(sim, a, 3)
    sim.run(1)
    assert arrivals(sim) == []
    link.loss = 0.0
    assert link.plain
