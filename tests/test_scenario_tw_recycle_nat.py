"""Scenario tw-recycle-nat (S9), and the legacy recycle rules RC-1..RC-3 of the host it relies on."""

from __future__ import annotations

import json

import pytest

from timewait.errors import UsageError
from timewait.scenarios import get_scenario, run_scenario
from timewait.sim.simulation import Simulation
from timewait.tcp.config import SEC
from timewait.tcp.segment import SYN, Segment, ip_aton
from timewait.tcp.states import FIN_WAIT_2
from timewait.trace import DROP, STATE

RECYCLE_OFF = "server:net.ipv4.tcp_tw_recycle=0"


def failed(r) -> list:
    return [c for c in r.checks if not c.passed]


def test_default_profile_is_linux_4_9() -> None:
    assert get_scenario("tw-recycle-nat").profile == "linux-4.9"


def test_RC_4_b_is_blackholed_while_a_talks() -> None:
    r = run_scenario("tw-recycle-nat")
    assert r.profile == "linux-4.9" and r.passed, failed(r)
    m = r.metrics
    assert m["recycle"] is True and m["server_ts_cache"].keys() == {"203.0.113.1"}
    assert all(x["ok"] and x["connect_delay_s"] < 1 for x in m["A_attempts"])
    assert m["B_attempts"][0]["error"] == "ETIMEDOUT" and not any(x["ok"] for x in m["B_attempts"])
    assert m["syns_dropped"] == {"A": 0, "B": m["syns_sent"]["B"]} and m["paws_passive"] == m["syns_sent"]["B"]
    assert r.hosts["server"]["counters"]["TcpExtPAWSPassive"] == m["paws_passive"]
    drops = [x for x in r.trace.records if x[1] == DROP and x[2] == "server"]
    assert drops and {x[4] for x in drops} == {"recycle"}
    # RC-2: the server's TIME_WAITs last 3.5 x RTO, not 60 s.
    assert m["server_time_wait_killed_fast"] == len(m["A_attempts"])
    assert "ETIMEDOUT" in r.contrast and "tcp_tw_recycle=0" in r.contrast
    json.dumps(r.to_json())


def test_contrast_without_recycle_both_are_served() -> None:
    r = run_scenario("tw-recycle-nat", sysctls=[RECYCLE_OFF])
    assert r.passed, failed(r)
    assert [c.name for c in r.checks][0].startswith("without tcp_tw_recycle both clients")
    assert all(x["ok"] for x in r.metrics["B_attempts"]) and len(r.metrics["B_attempts"]) >= 5
    assert r.metrics["paws_passive"] == 0


def test_when_a_goes_quiet_b_waits_out_the_60_s_cache() -> None:
    r = run_scenario("tw-recycle-nat", params={"a_every": "0"})
    assert r.passed, failed(r)
    first = r.metrics["B_attempts"][0]
    assert first["ok"] and 60 <= first["connect_delay_s"] < 70


@pytest.mark.parametrize("mode", ["random", "4tuple"])
def test_RC_5_per_connection_offsets_break_recycle_for_everyone(mode: str) -> None:
    r = run_scenario("tw-recycle-nat", params={"client_ts": mode})
    assert r.passed, failed(r)
    # Not "fine": the faster clock's SYNs are dropped too, and recycle still drops SYNs.
    assert r.metrics["syns_dropped"]["A"] > 0 and r.metrics["paws_passive"] > 0
    assert "broke for everyone" in r.contrast


def test_per_host_offsets_keep_the_nat_breakage() -> None:
    r = run_scenario("tw-recycle-nat", params={"client_ts": "host"})
    assert r.passed, failed(r)
    assert r.metrics["syns_dropped"]["A"] == 0 and r.metrics["B_attempts"][0]["error"] == "ETIMEDOUT"


def test_under_the_current_profile_there_is_no_recycle_to_break() -> None:
    r = run_scenario("tw-recycle-nat", profile="linux")
    assert r.passed and r.metrics["recycle"] is False
    assert "removed in Linux 4.12" in r.contrast
    with pytest.raises(UsageError, match="4.12"):
        run_scenario("tw-recycle-nat", profile="linux", sysctls=[RECYCLE_OFF])


def test_checks_hold_without_the_trace() -> None:
    for kw in ({}, {"sysctls": [RECYCLE_OFF]}, {"params": {"client_ts": "random"}}):
        r = run_scenario("tw-recycle-nat", trace=False, **kw)
        assert r.passed, (kw, failed(r))


def test_bad_parameters() -> None:
    with pytest.raises(UsageError, match="client_ts"):
        run_scenario("tw-recycle-nat", params={"client_ts": "sometimes"})
    with pytest.raises(UsageError, match="server_close"):
        run_scenario("tw-recycle-nat", params={"server_close": "never"})


# ---------------------------------------------------------------------------- the host's recycle rules

CLIENT, SERVER = "10.0.0.1", "10.0.0.2"


def pair(client_close_delay: float = 0.05, server: str = "close"):
    """A client and a linux-4.9 server with tcp_tw_recycle=1 that closes first after a reply."""
    sim = Simulation(profile="linux-4.9", seed=1, sysctls=["srv:net.ipv4.tcp_tw_recycle=1"])
    c = sim.add_host("c", CLIENT, uptime_s=5000)
    s = sim.add_host("srv", SERVER, uptime_s=100)
    sim.link(c, s, delay_ms=5)
    ls = s.socket()
    ls.bind(0, 80)
    ls.listen(10)

    def accept(lsock):
        x = lsock.accept()
        x.send(b"hi")
        x.on_eof = lambda y: (y.recv(), y.close())
        s.call_later(0.01, x.close if server == "close" else x.shutdown)

    ls.on_accept = accept
    cs = c.socket()
    cs.on_eof = lambda x: (x.recv(), c.call_later(client_close_delay, x.close))
    cs.connect(SERVER, 80)
    return sim, c, s


def server_tw(sim: Simulation, s) -> tuple:
    recs = [r for r in sim.trace.records if r[1] == STATE and r[2] == "srv" and r[5] == "TIME_WAIT"]
    return recs[0] if recs else None


def test_RC_1_RC_2_full_socket_time_wait_caches_the_stamp_and_is_short() -> None:
    # shutdown(): the socket is not orphaned, the client's FIN makes it TIME_WAIT (tcp_time_wait).
    sim, c, s = pair(server="shutdown")
    sim.run(1)
    assert list(s.peer_ts) == [ip_aton(CLIENT)]                    # RC-1
    entered = server_tw(sim, s)[0]
    left = [r[0] for r in sim.trace.records if r[1] == STATE and r[2] == "srv" and r[4] == "TIME_WAIT"]
    assert left and left[0] - entered < SEC                          # RC-2: 3.5 x RTO
    assert s.counters.get("TcpExtTWKilled") == 1


def test_RC_3_syn_filter_boundaries() -> None:
    sim = Simulation(profile="linux-4.9", seed=1, sysctls=["srv:net.ipv4.tcp_tw_recycle=1"])
    c = sim.add_host("c", CLIENT, uptime_s=5000)
    s = sim.add_host("srv", SERVER, uptime_s=100)
    sim.link(c, s, delay_ms=5)
    ls = s.socket()
    ls.bind(0, 80)
    ls.listen(10)
    s.peer_ts[ip_aton(CLIENT)] = (1000, 0)  # cached TSval 1000, stamped at t=0
    tsvals = {50000: 999, 50001: 998, 50002: 1000, 50003: 2000, 50004: None,
              50005: 1000 + 2**31 - 5, 50006: 1000 + 2**31 + 5}  # u32 arithmetic: the last is 'behind'
    for port, ts in tsvals.items():
        c.transmit(Segment(ip_aton(CLIENT), ip_aton(SERVER), port, 80, 1, 0, SYN, 1000,
                           ts=None if ts is None else (ts, 0)))
    sim.run(0.1)
    dropped = sorted(r[3].sport for r in sim.trace.records if r[1] == DROP and r[4] == "recycle")
    # More than TCP_PAWS_WINDOW (1) behind, or no timestamp at all: dropped (RC-3).
    assert dropped == [50001, 50004, 50006]
    # After TCP_PAWS_MSL (60 s) the cache no longer blocks.
    c.call_at(60 * SEC + 1, lambda: c.transmit(Segment(ip_aton(CLIENT), ip_aton(SERVER), 50010, 80, 1, 0, SYN,
                                                       1000, ts=(5, 0))))
    sim.run(61)
    assert not any(r[1] == DROP and r[4] == "recycle" and r[3].sport == 50010 for r in sim.trace.records)


def test_RC_1_orphan_fin_wait2_record_caches_the_stamp() -> None:
    sim, c, s = pair(client_close_delay=0.05)
    sim.run(0.08)  # the server's FIN is ACKed; the client's FIN comes 50 ms later
    assert [tw.substate for tw in s.twhash.values()] == [FIN_WAIT_2]  # the orphan became a FIN_WAIT2 record
    assert list(s.peer_ts) == [ip_aton(CLIENT)]


def test_RC_2_time_wait_reached_from_fin_wait2_record_is_short_and_cached() -> None:
    sim, c, s = pair(client_close_delay=0.05)
    sim.run(1)
    assert list(s.peer_ts) == [ip_aton(CLIENT)]
    entered = server_tw(sim, s)[0]
    left = [r[0] for r in sim.trace.records if r[1] == STATE and r[2] == "srv" and r[4] == "TIME_WAIT"]
    assert left and left[0] - entered < SEC
