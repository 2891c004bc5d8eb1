"""Scenario tw-recycle-nat (S9), and the legacy recycle rules RC-1..RC-3 of the host it relies on."""

from __future__ import annotations

import json

import pytest

from timewait.errors import UsageError
from timewait.scenarios import get_scenario, run_scenario
from timewait.sim.nat import Nat
from timewait.sim.simulation import Simulation
from timewait.tcp.config import SEC
from timewait.tcp.segment import ACK, FIN, SYN, Segment, ip_aton
from timewait.tcp.states import FIN_WAIT_2
from timewait.trace import DROP, STATE, TIMER, TX

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
# A client (up 5000 s) and a linux-4.9 server (up 100 s) with tcp_tw_recycle=1, 5 ms apart (RTT
# 10 ms: the server's RTO is 10 ms + TCP_RTO_MIN = 210 ms, 3.5 x RTO = 735 ms). The server answers
# "hi" at 5 ms, closes first at 25 ms; the client's FIN comes at 80 ms (arrives 85 ms).

CLIENT, SERVER = "10.0.0.1", "10.0.0.2"
C = ip_aton(CLIENT)
SHORT = 735_000  # (rto << 2) - (rto >> 1) for rto = 210 ms


def pair(client_close_delay: float = 0.05, server: str = "close", seed: int = 1,
         extra: tuple[str, ...] = ()):
    """A client and a linux-4.9 server with tcp_tw_recycle=1 that closes first after a reply."""
    sim = Simulation(profile="linux-4.9", seed=seed,
                     sysctls=["srv:net.ipv4.tcp_tw_recycle=1", *extra])
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


def srv_timers(sim: Simulation) -> list[tuple[int, str, int | None]]:
    return [(r[0], r[4], r[5]) for r in sim.trace.records if r[1] == TIMER and r[2] == "srv"]


def srv_states(sim: Simulation) -> list[tuple[int, str, str]]:
    return [(r[0], r[4], r[5]) for r in sim.trace.records if r[1] == STATE and r[2] == "srv"]


def client_fin(sim: Simulation) -> Segment:
    return next(r[3] for r in sim.trace.records if r[1] == TX and r[2] == "c" and r[3].flags & FIN)


def test_RC_1_RC_2_full_socket_time_wait_caches_the_stamp_and_is_short() -> None:
    """shutdown(): not orphaned, so the client's FIN at 85 ms makes the full socket TIME_WAIT
    (tcp_time_wait): the cache gets the client's TSval of that FIN, stamped at 85 ms, and the
    record lives 3.5 x RTO = 735 ms."""
    sim, c, s = pair(server="shutdown")
    sim.run(1)
    fin = client_fin(sim)
    assert fin.ts[0] == 5_000_080
    assert s.deathrow.peer_ts == {C: (5_000_080, 85_000)}                       # RC-1
    assert srv_timers(sim)[-1] == (85_000, "timewait", 85_000 + SHORT)  # RC-2
    assert srv_states(sim)[-2:] == [(85_000, "FIN_WAIT_2", "TIME_WAIT"), (85_000 + SHORT, "TIME_WAIT", "CLOSED")]
    assert s.counters.get("TcpExtTWKilled") == 1 and "TcpExtTW" not in s.counters


def test_RC_1_orphan_fin_wait2_record_caches_the_stamp() -> None:
    """close(): the orphan becomes a FIN_WAIT2 record at 35 ms (the ACK of its FIN); that entry
    stores the client's latest TSval (its ACK at 30 ms); the record's timeout stays tcp_fin_timeout."""
    sim, c, s = pair(client_close_delay=0.05)
    sim.run(0.08)
    assert [tw.substate for tw in s.twhash.values()] == [FIN_WAIT_2]
    assert s.deathrow.peer_ts == {C: (5_000_030, 35_000)}
    assert srv_timers(sim)[-1] == (35_000, "timewait", 35_000 + 60 * SEC)


def test_RC_2_time_wait_reached_from_fin_wait2_record_is_short_and_cached() -> None:
    """The late FIN (85 ms) turns the record into TIME_WAIT: cache refreshed with that FIN's
    TSval (tcp_tw_remember_stamp) and the record rescheduled for tw_timeout = 735 ms."""
    sim, c, s = pair(client_close_delay=0.05)
    sim.run(1)
    assert s.deathrow.peer_ts == {C: (5_000_080, 85_000)}
    assert srv_timers(sim)[-2:] == [(35_000, "timewait", 60_035_000), (85_000, "timewait", 85_000 + SHORT)]
    assert srv_states(sim)[-2:] == [(85_000, "FIN_WAIT_2", "TIME_WAIT"), (85_000 + SHORT, "TIME_WAIT", "CLOSED")]


def test_RC_2_a_segment_that_reschedules_the_record_gives_it_the_full_60_s() -> None:
    """TW-C still re-arms to TCP_TIMEWAIT_LEN: the client's FIN, resent at 200 ms, is ACKed and
    moves the short record's expiry to 205 ms + 60 s. (The client, already CLOSED, answers that
    ACK with a RST at 210 ms; tcp_rfc1337=1 keeps it from killing the record, TW-R.)"""
    sim, c, s = pair(server="shutdown", extra=("srv:net.ipv4.tcp_rfc1337=1",))
    sim.run(0.1)
    fin = client_fin(sim)
    c.call_at(200_000, lambda: c.transmit(fin.copy()))
    sim.run(70)
    ack = [(r[0], r[3].flags, r[3].seq, r[3].ack) for r in sim.trace.records
           if r[1] == TX and r[2] == "srv" and r[0] >= 200_000]
    assert ack == [(205_000, ACK, fin.ack, (fin.seq + 1) & 0xFFFFFFFF)]
    assert srv_timers(sim)[-1] == (205_000, "timewait", 60_205_000)
    assert srv_states(sim)[-1] == (60_205_000, "TIME_WAIT", "CLOSED")


def _listener_with_cache(cached: tuple[int, int]):
    sim = Simulation(profile="linux-4.9", seed=1, sysctls=["srv:net.ipv4.tcp_tw_recycle=1"])
    c = sim.add_host("c", CLIENT, uptime_s=5000)
    s = sim.add_host("srv", SERVER, uptime_s=100)
    sim.link(c, s, delay_ms=5)
    ls = s.socket()
    ls.bind(0, 80)
    ls.listen(10)
    s.deathrow.peer_ts[C] = cached
    return sim, c, s


def _syn(port: int, ts: int | None) -> Segment:
    return Segment(C, ip_aton(SERVER), port, 80, 1, 0, SYN, 1000, ts=None if ts is None else (ts, 0))


def test_RC_3_syn_filter_boundaries() -> None:
    """Cached TSval 1000 stamped at 0: a SYN more than TCP_PAWS_WINDOW (1) behind, or without a
    timestamp, is dropped silently (PAWSPassive, no RST); the others get a SYN-ACK."""
    sim, c, s = _listener_with_cache((1000, 0))
    tsvals = {50000: 999, 50001: 998, 50002: 1000, 50003: 2000, 50004: None,
              50005: 1000 + 2**31 - 5, 50006: 1000 + 2**31 + 5}  # u32 arithmetic: the last is 'behind'
    for port, ts in tsvals.items():
        c.transmit(_syn(port, ts))
    sim.run(0.1)
    drops = [(r[0], r[3].sport, r[4]) for r in sim.trace.records if r[1] == DROP and r[2] == "srv"]
    assert drops == [(5000, p, "recycle") for p in (50001, 50004, 50006)]
    answered = [(r[0], r[3].dport, r[3].flags) for r in sim.trace.records if r[1] == TX and r[2] == "srv"]
    assert answered == [(5000, p, SYN | ACK) for p in (50000, 50002, 50003, 50005)]
    assert s.counters["TcpExtPAWSPassive"] == 3


def test_RC_3_cache_blocks_only_while_younger_than_paws_msl() -> None:
    """The entry blocks while now - stamp < TCP_PAWS_MSL (60 s): a SYN arriving at 59.995 s is
    dropped, one arriving at 60.000 s gets a SYN-ACK."""
    sim, c, s = _listener_with_cache((1000, 0))
    c.call_at(59_990_000, lambda: c.transmit(_syn(50010, 5)))
    c.call_at(59_995_000, lambda: c.transmit(_syn(50011, 5)))
    sim.run(61)
    drops = [(r[0], r[3].sport) for r in sim.trace.records if r[1] == DROP and r[2] == "srv"]
    assert drops == [(59_995_000, 50010)]
    assert [(r[0], r[3].dport) for r in sim.trace.records if r[1] == TX and r[2] == "srv"] == [(60_000_000, 50011)]


def test_RC_3_a_syn_matching_a_live_time_wait_skips_the_filter() -> None:
    """The filter is for SYNs that find no TIME_WAIT. A timestamp-less SYN (which the filter would
    drop) for the 4-tuple of the live short record is accepted by TW-B's sequence clause and
    answered with tw_snd_nxt + 65537; the same SYN from another port is dropped."""
    sim, c, s = pair(server="shutdown")
    sim.run(0.1)
    (key, tw), = s.twhash.items()
    seq = (tw.rcv_nxt + 1000) & 0xFFFFFFFF
    for port in (key[3], key[3] + 1):
        syn = Segment(C, ip_aton(SERVER), port, 80, seq, 0, SYN, 1000)
        c.call_at(200_000, lambda syn=syn: c.transmit(syn))
    sim.run(0.3)
    assert [(r[0], r[3].sport) for r in sim.trace.records if r[1] == DROP and r[4] == "recycle"] == [
        (205_000, key[3] + 1)]
    synack = [r[3] for r in sim.trace.records if r[1] == TX and r[2] == "srv" and r[3].flags == SYN | ACK][-1]
    assert (synack.dport, synack.seq, synack.ack) == (key[3], (tw.snd_nxt + 65537) & 0xFFFFFFFF, seq + 1)


def test_RC_4_clients_behind_one_nat_a_lower_clock_is_blackholed_for_60_s() -> None:
    """A (up 10 days) and B (up 1 h) share the NAT's address. A is served first and the server's
    TIME_WAIT caches A's TSval (864,000,020 at 25 ms). B's SYN at 3 s carries 3,603,000: dropped,
    and so is every 4.9 retransmission (1, 3, 7, 15, 31 s later), with no SYN-ACK and no RST; the
    one at 66 s finds the entry older than 60 s and connects."""
    sim = Simulation(profile="linux-4.9", seed=1, sysctls=["srv:net.ipv4.tcp_tw_recycle=1"])
    a = sim.add_host("A", "192.168.1.10", uptime_s=864000)
    b = sim.add_host("B", "192.168.1.11", uptime_s=3600)
    s = sim.add_host("srv", "198.51.100.10", uptime_s=100)
    nat = Nat("nat", "203.0.113.1", "192.168.1.0/24")
    sim.add_node(nat)
    sim.link(a, nat, delay_ms=1)
    sim.link(b, nat, delay_ms=1)
    sim.link(nat, s, delay_ms=4)
    ls = s.socket()
    ls.bind(0, 80)
    ls.listen(10)

    def accept(lsock):  # close first (lingering close), then close() on the client's EOF
        while (x := lsock.accept()) is not None:
            x.on_eof = lambda y: y.close()
            x.shutdown()

    ls.on_accept = accept
    events: list = []
    for host, at in ((a, 0), (b, 3 * SEC)):
        def go(host=host):
            cs = host.socket()
            cs.on_eof = lambda x: x.close()
            cs.on_connected = lambda x: events.append((sim.sched.now, x.host.name, "connected"))
            cs.on_error = lambda x, e: events.append((sim.sched.now, x.host.name, e))
            cs.connect("198.51.100.10", 80)
        host.call_at(at, go)
    sim.run(70)
    assert s.deathrow.peer_ts == {ip_aton("203.0.113.1"): (3_666_020, 66_025_000)}  # finally B's
    b_syns = [(r[0], r[3].ts[0]) for r in sim.trace.records if r[1] == TX and r[2] == "B" and r[3].flags == SYN]
    assert b_syns == [(t * SEC, 3_600_000 + t * 1000) for t in (3, 4, 6, 10, 18, 34, 66)]
    drops = [(r[0], r[4]) for r in sim.trace.records if r[1] == DROP]
    assert drops == [(t * SEC + 5000, "recycle") for t in (3, 4, 6, 10, 18, 34)]
    to_b = [(r[0], r[3].flags) for r in sim.trace.records if r[1] == TX and r[2] == "srv" and r[0] > SEC]
    assert to_b[0] == (66 * SEC + 5000, SYN | ACK)  # nothing at all before: no SYN-ACK, no RST
    assert events == [(10_000, "A", "connected"), (66 * SEC + 10_000, "B", "connected")]
    assert s.counters["TcpExtPAWSPassive"] == 6


@pytest.mark.parametrize(("seed", "dropped"), [(1, True), (3, False)])
def test_RC_5_per_connection_random_offsets_make_one_host_look_like_many(seed: int, dropped: bool) -> None:
    """4.10: each connection of the same client draws its own TS offset. The second connection's
    SYN (1 s) is dropped iff its TSval is more than 1 behind the cached one, which the random
    offsets decide: seed 1 behind (dropped at 1.005 s and its retransmission at 2.005 s), seed 3
    ahead (a SYN-ACK at 1.005 s)."""
    sim = Simulation(profile="linux-4.9", seed=seed, sysctls=["srv:net.ipv4.tcp_tw_recycle=1"])
    c = sim.add_host("c", CLIENT, uptime_s=5000)
    s = sim.add_host("srv", SERVER, uptime_s=100)
    c.cfg.ts_offsets = "random"
    sim.link(c, s, delay_ms=5)
    ls = s.socket()
    ls.bind(0, 80)
    ls.listen(10)

    def accept(lsock):
        while (x := lsock.accept()) is not None:
            x.on_eof = lambda y: y.close()
            x.shutdown()

    ls.on_accept = accept

    def connect():
        cs = c.socket()
        cs.on_eof = lambda x: x.close()
        cs.connect(SERVER, 80)

    c.call_at(0, connect)
    c.call_at(SEC, connect)
    sim.run(2.5)
    syns = [(r[0], r[3].ts[0]) for r in sim.trace.records if r[1] == TX and r[2] == "c" and r[3].flags == SYN]
    cached = s.deathrow.peer_ts[C][0] if dropped else None
    first_off = (syns[0][1] - 5_000_000) & 0xFFFFFFFF
    second_off = (syns[1][1] - 5_001_000) & 0xFFFFFFFF
    assert first_off != second_off  # unrelated offsets, not a clock that moved 1 s
    drops = [r[0] for r in sim.trace.records if r[1] == DROP and r[4] == "recycle"]
    if dropped:
        assert 1 < (cached - syns[1][1]) & 0xFFFFFFFF < 1 << 31
        assert [t for t, _ in syns] == [0, SEC, 2 * SEC] and drops == [SEC + 5000, 2 * SEC + 5000]
    else:
        assert drops == [] and [t for t, _ in syns] == [0, SEC]
        assert [(r[0], r[3].flags) for r in sim.trace.records if r[1] == TX and r[2] == "srv"
                and r[0] > SEC][0] == (SEC + 5000, SYN | ACK)
