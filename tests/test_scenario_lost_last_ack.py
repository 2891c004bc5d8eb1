"""S4 lost-last-ack: TIME_WAIT re-ACKs the resent FIN; without it the new SYN meets LAST_ACK."""

from __future__ import annotations

import pytest

from timewait.apps.basic import NcClient, NcServer
from timewait.measure import state_intervals
from timewait.scenarios import run_scenario
from timewait.sim.simulation import Simulation
from timewait.tcp.config import SEC
from timewait.tcp.segment import ACK, FIN, RST, SYN
from timewait.trace import DROP, STATE, TIMER, TX

C1, C2 = "10.211.55.5", "10.211.55.10"


def _tx(res, host, flags=None):
    return [r for r in res.trace.records if r[1] == TX and r[2] == host
            and (flags is None or r[3].flags & (SYN | ACK | FIN | RST) == flags)]


@pytest.fixture(scope="module")
def on():
    return run_scenario("lost-last-ack")


@pytest.fixture(scope="module")
def off():
    return run_scenario("lost-last-ack", params={"timewait": "off"})


def test_timewait_on_passes_every_check(on) -> None:
    assert on.passed, [c for c in on.checks if not c.passed]
    assert on.metrics["path"] == "wait"


def test_last_ack_lost_fin_resent_after_rto_and_reacked(on) -> None:
    recs = on.trace.records
    lost = next(r for r in recs if r[1] == DROP and r[4] == "fault")
    assert lost[2] == "c1" and lost[3].flags == ACK and lost[0] == 2_001_400
    fins = [r for r in _tx(on, "c2", FIN | ACK) if r[0] < 10 * SEC]
    assert [r[0] for r in fins] == [2_001_200, 2_201_600]  # RTO = 200 ms floor + srtt
    assert fins[0][3].seq == fins[1][3].seq
    assert lost[3].ack == fins[0][3].end_seq
    # The resent FIN reaches c1's TIME_WAIT at 2.2018 s: an ACK at once, timer to +60 s.
    reack = [r for r in _tx(on, "c1", ACK) if r[0] == 2_201_800]
    assert len(reack) == 1 and reack[0][3].ack == fins[1][3].end_seq
    timers = [r for r in recs if r[1] == TIMER and r[2] == "c1" and r[4] == "timewait"]
    assert [(r[0], r[5]) for r in timers if r[0] < 10 * SEC] == [(2_001_400, 62_001_400), (2_201_800, 62_201_800)]
    assert on.metrics["timewait_deadline_after_reack"] == pytest.approx(62.2018)
    closed = next(r for r in recs if r[1] == STATE and r[2] == "c2" and r[4] == "LAST_ACK")
    assert closed[0] == 2_202_000 and closed[5] == "CLOSED"


def test_timewait_holds_the_port_until_its_restarted_timer_ends(on) -> None:
    tws = [i for i in state_intervals(on.trace, "TIME_WAIT") if i.host == "c1"]
    assert tws[0].start == pytest.approx(2.0014) and tws[0].end == pytest.approx(62.2018)
    assert on.metrics["eaddrnotavail"] == 13  # every 5 s from 2.0514 s to 62.0514 s
    assert on.metrics["reconnected_at"] == pytest.approx(67.0518)
    calls = [r for r in on.trace.records if r[1] == "call" and r[2] == "c1" and r[4] == "connect"]
    assert [r[6] for r in calls[1:]] == ["EADDRNOTAVAIL"] * 13 + [None]


def test_timewait_off_passes_every_check(off) -> None:
    assert off.passed, [c for c in off.checks if not c.passed]
    assert off.metrics["path"] == "collide"


def test_off_linux_challenge_ack_rst_and_quick_syn_resend(off) -> None:
    recs = off.trace.records
    assert not [i for i in state_intervals(off.trace, "TIME_WAIT") if i.host == "c1" and (i.seconds or 0) > 0]
    syns = _tx(off, "c1", SYN)
    old_syn, new_syn, resyn = syns
    assert new_syn[0] == 2_051_400 and new_syn[3].sport == 60494
    fin_c1 = _tx(off, "c1", FIN | ACK)[0][3]
    fin_c2 = _tx(off, "c2", FIN | ACK)[0][3]
    chal = next(r for r in _tx(off, "c2") if r[0] == 2_051_600)
    assert chal[3].flags == ACK  # LA-1: never an RST
    assert (chal[3].seq, chal[3].ack) == (fin_c2.end_seq, fin_c1.end_seq)  # LA-2
    rst = _tx(off, "c1", RST)[0]
    assert rst[0] == 2_051_800 and rst[3].seq == chal[3].ack  # LA-3
    gone = next(r for r in recs if r[1] == STATE and r[2] == "c2" and r[4] == "LAST_ACK")
    assert gone[0] == 2_052_000 and gone[5] == "CLOSED"
    assert resyn[0] == rst[0] + 8_000 and resyn[3].seq == new_syn[3].seq  # TCP_TIMEOUT_MIN
    assert off.metrics["handshake_s"] == pytest.approx(0.0088)
    assert off.metrics["eaddrnotavail"] == 0
    assert [t for t, _ in off.metrics["timeline"]] == sorted(t for t, _ in off.metrics["timeline"])


@pytest.mark.parametrize("profile", ["chapter", "rfc793"])
def test_textbook_profiles_reset_the_in_window_syn_and_the_handshake_fails(profile) -> None:
    res = run_scenario("lost-last-ack", params={"timewait": "off"}, profile=profile)
    assert res.passed, [c for c in res.checks if not c.passed]
    assert res.metrics["syn_in_window"] is True
    assert res.metrics["syn_offset_from_rcv_nxt"] == 1000
    syn = next(r for r in _tx(res, "c1", SYN) if r[0] == 2_051_400)
    reply = next(r for r in _tx(res, "c2") if r[0] == 2_051_600)
    assert reply[3].flags == RST | ACK and reply[3].seq == 0 and reply[3].ack == syn[3].seq + 1
    gone = next(r for r in res.trace.records if r[1] == STATE and r[2] == "c2" and r[4] == "LAST_ACK")
    assert gone[0] == 2_051_600 and gone[5] == "CLOSED"
    assert res.metrics["reconnect_result"] == "ECONNREFUSED"
    assert res.metrics["handshake_s"] is None


def test_textbook_out_of_window_syn_gets_an_ack_and_a_late_handshake() -> None:
    res = run_scenario("lost-last-ack", params={"timewait": "off", "syn_in_window": "off"}, profile="chapter")
    assert res.passed, [c for c in res.checks if not c.passed]
    assert res.metrics["syn_in_window"] is False
    reply = next(r for r in _tx(res, "c2") if r[0] == 2_051_600)
    assert reply[3].flags == ACK
    assert res.metrics["handshake_s"] == pytest.approx(1.0004)  # the SYN's 1 s RTO, no quick resend


def test_linux_answers_a_challenge_ack_in_or_out_of_window() -> None:
    res = run_scenario("lost-last-ack", params={"timewait": "off", "syn_in_window": "off"})
    assert res.passed, [c for c in res.checks if not c.passed]
    assert res.metrics["syn_in_window"] is False
    assert res.metrics["handshake_s"] == pytest.approx(0.0088)


@pytest.mark.parametrize("profile", ["chapter", "rfc793", "linux-4.9"])
def test_timewait_on_under_other_profiles(profile) -> None:
    res = run_scenario("lost-last-ack", profile=profile)
    assert res.passed, [c for c in res.checks if not c.passed]
    assert res.metrics["path"] == "wait"


def test_timestamps_let_linux_take_the_timewait_over_at_once() -> None:
    res = run_scenario("lost-last-ack", params={"timestamps": "on"})
    assert res.passed, [c for c in res.checks if not c.passed]
    assert res.metrics["path"] == "collide"
    assert res.hosts["c1"]["counters"].get("TcpExtTWRecycled") == 1


# ---------------------------------------------------------------------------- engine rules these runs rely on


def _closing_pair(sim: Simulation):
    c1 = sim.add_host("c1", C1)
    c2 = sim.add_host("c2", C2)
    sim.link(c1, c2, delay_ms=0.2)
    return c1, c2


def test_engine_timewait_off_also_for_an_orphaned_closer() -> None:
    sim = Simulation(seed=1)
    sim.timewait_enabled = False
    c1, c2 = _closing_pair(sim)
    NcServer(c2, 8888)
    NcClient(c1, C2, 8888, lines=[(1.0, b"hi\n")], close_at_s=2.0)
    sim.run(10)
    assert not c1.twhash
    assert all((i.seconds or 0) == 0 for i in state_intervals(sim.trace, "TIME_WAIT"))


def test_engine_close_after_timewait_entry_keeps_the_trace_right() -> None:
    sim = Simulation(seed=1)
    c1, c2 = _closing_pair(sim)
    NcServer(c2, 8888)
    client = NcClient(c1, C2, 8888, lines=[(1.0, b"hi\n")])
    client.sock.on_eof = lambda s: s.close()
    c1.call_at(2 * SEC, client.sock.shutdown)
    sim.run(70)
    tw = [i for i in state_intervals(sim.trace, "TIME_WAIT") if i.host == "c1"]
    assert len(tw) == 1 and tw[0].seconds == 60


def test_checks_hold_when_the_caller_turns_the_trace_off() -> None:
    # The checks are measured from the trace, so the scenario records it anyway (Lab.need_trace).
    assert run_scenario("lost-last-ack", trace=False).passed


def test_a_user_sysctl_wins_over_the_timestamps_param() -> None:
    res = run_scenario("lost-last-ack", sysctls=["*:net.ipv4.tcp_timestamps=1"])
    assert res.passed, [c for c in res.checks if not c.passed]
    assert res.metrics["path"] == "collide"  # PS-1: the bound connect() took the TIME_WAIT over
    assert res.hosts["c1"]["sysctls"]["net.ipv4.tcp_timestamps"] == 1


def test_its_syn_meets_last_ack_is_about_the_first_reconnect_syn():
    """The check once passed by construction (it looked for any SYN that met LAST_ACK). Now it
    is about c1's first SYN after the close: with that SYN lost and c1's RSTs lost too (so c2
    stays in LAST_ACK), only the retransmission meets LAST_ACK, and the claim fails."""
    name = "its SYN meets c2 still in LAST_ACK"
    ok = run_scenario("lost-last-ack", params={"timewait": "off"})
    assert {c.name: c.passed for c in ok.checks}[name] is True
    bad = run_scenario("lost-last-ack", params={"timewait": "off"},
                       faults=["drop from=c1 flags=S nth=2", "drop from=c1 flags=R count=all"])
    assert {c.name: c.passed for c in bad.checks}[name] is False
