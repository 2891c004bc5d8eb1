"""Kernel lab pieces that need no root: counter parsing, tolerances, advice, parameter names."""

from __future__ import annotations

import pytest

from timewait.kernel import counters
from timewait.kernel.compare import (
    TOLERANCES,
    Tolerance,
    agrees,
    compare_results,
    tolerance_for,
    within,
)
from timewait.kernel.inspect import Census, advise
from timewait.result import Check, RunResult
from timewait.trace import Trace

SNMP = """Ip: Forwarding DefaultTTL
Ip: 1 64
Tcp: RtoAlgorithm ActiveOpens PassiveOpens CurrEstab
Tcp: 1 3 2 1
"""
NETSTAT = """TcpExt: SyncookiesSent TW TWRecycled TCPTimeWaitOverflow
TcpExt: 0 5 1 0
"""


def test_counters_parse_under_nstat_names():
    got = counters.parse(SNMP + NETSTAT)
    assert got["TcpActiveOpens"] == 3
    assert got["TcpExtTW"] == 5
    assert got["IpDefaultTTL"] == 64
    assert counters.tcp_nonzero(got) == {"TcpActiveOpens": 3, "TcpExtTW": 5, "TcpExtTWRecycled": 1,
                                         "TcpPassiveOpens": 2}


def test_every_tolerance_says_why():
    for key, tol in TOLERANCES.items():
        assert tol.why, key
        assert tol.kind in ("exact", "range", "rel", "sum-rel", "ignore", "masked-port"), key


@pytest.mark.parametrize(("tol", "sim", "kern", "ok"), [
    (Tolerance("range", -0.1, 4.2), 60.0, 62.3, True),
    (Tolerance("range", -0.1, 4.2), 60.0, 59.5, False),
    (Tolerance("rel", 50, 0.25), {"EADDRNOTAVAIL": 4600}, {"EADDRNOTAVAIL": 4000}, True),
    (Tolerance("rel", 50, 0.25), {"EADDRNOTAVAIL": 4600}, {"ETIMEDOUT": 4600}, False),
    (Tolerance("sum-rel", 0, 0.1), [600, 1000], [900, 800], True),
    (Tolerance("exact"), [1, 2], [1, 2], True),
    (Tolerance("exact"), ["c1"], ["c1", "c2"], False),
    (Tolerance("rel", 5, 0.02), [1000, 0, 0], [1000, 3, 0], True),
    # nc-timewait's netstat rows: the ephemeral port masked, nothing else
    (Tolerance("masked-port", -0.1, 4.2), {"at": 2.05, "c1": ["tcp 10.211.55.5:46290 10.211.55.10:8888 TIME_WAIT"]},
     {"at": 2.06, "c1": ["tcp 10.211.55.5:51850 10.211.55.10:8888 TIME_WAIT"]}, True),
    (Tolerance("masked-port", -0.1, 4.2), {"c2": []}, {"c2": ["tcp 10.211.55.10:8888 0.0.0.0:* LISTEN"]}, False),
    (Tolerance("masked-port", -0.1, 4.2), ["10.0.0.1:8888 x"], ["10.0.0.1:8889 x"], False),
])
def test_within(tol, sim, kern, ok):
    assert within(tol, sim, kern) is ok


def test_dict_metric_keys_take_their_own_tolerances():
    from timewait.kernel.compare import within_metric

    sim = {"rate": 18.0, "succeeded": 1080, "failed": {"EADDRNOTAVAIL": 90}, "time_wait_peak": 999}
    late = {"rate": 18.0, "succeeded": 1040, "failed": {"EADDRNOTAVAIL": 130}, "time_wait_peak": 1000}
    assert within_metric("max-rate", "over", sim, late)  # a wheel bucket late: 40 fewer, 40 more failures
    assert not within_metric("max-rate", "over", sim, {**late, "succeeded": 1000})  # 80 fewer: more than a bucket
    assert not within_metric("max-rate", "over", sim, {**late, "rate": 18.5})  # a key without one: exact


def _result(metrics, checks, scenario="nc-timewait"):
    return RunResult(scenario=scenario, profile="x", seed=1, params={}, sim_time=0.0,
                     checks=[Check(n, p) for n, p in checks], metrics=metrics, hosts={}, trace=Trace(False),
                     nodes={})


def test_compare_rows_verdicts():
    sim = _result({"time_wait_seconds": 60.0, "time_wait_hosts": ["c1"], "client_port": 1, "only_sim": 1,
                   "port_range": [1, 2], "close_at": 2.0},
                  [("a", True), ("b", True), ("c", False), ("d", False), ("e", True)])
    kern = _result({"time_wait_seconds": 62.0, "time_wait_hosts": ["c2"], "client_port": 2, "only_kern": 1,
                    "port_range": [1, 2], "close_at": 2.0},
                   [("a", True), ("b", False), ("c", False), ("f", False), ("g", True)])
    rows = compare_results(sim, kern)
    v = {r.name: r.verdict for r in rows}
    assert v == {"time_wait_seconds": "agree", "time_wait_hosts": "differs", "client_port": "ignored",
                 "only_sim": "sim only", "only_kern": "kernel only",
                 "port_range": "input", "close_at": "input",           # echoed inputs are not agreement
                 "a": "agree", "b": "differs", "c": "fails on both",  # a claim failing anywhere is not
                 "d": "differs", "e": "sim only", "f": "differs", "g": "kernel only"}
    assert tolerance_for("anything", "client_port").kind == "ignore"


def test_a_check_failing_on_both_sides_is_not_agreement():
    sim = _result({"time_wait_seconds": 60.0}, [("claim", False)])
    kern = _result({"time_wait_seconds": 60.5}, [("claim", False)])
    assert not agrees(compare_results(sim, kern))
    assert agrees(compare_results(_result({}, [("claim", True)]), _result({}, [("claim", True)])))


def _census(**kw):
    base = dict(netns=None, kernel="6.18.0", taken_at=0.0, elapsed_s=0.0, total=0, states={}, time_wait=0,
                tw_by_remote=[], tw_by_local=[], tw_histogram=[0] * 6, tw_new_per_s=0.0, server_side_tw=0,
                ports=[], port_range=(32768, 60999), max_tw_buckets=131072,
                sysctls={"net.ipv4.tcp_tw_reuse": "2", "net.ipv4.tcp_timestamps": "1",
                         "net.ipv4.tcp_tw_reuse_delay": "1000"}, counters={})
    base.update(kw)
    return Census(**base)


def test_no_advice_when_nothing_is_near():
    assert advise(_census()) == []


def test_advice_for_a_nearly_exhausted_destination_is_right_for_this_kernel(monkeypatch):
    monkeypatch.setattr("timewait.kernel.inspect.kernel_version", lambda: (6, 18))
    c = _census(time_wait=25000, ports=[{"local": "10.0.0.1", "destination": "10.0.0.2:6379", "in_use": 25000,
                                         "range": 28232, "share": 0.885}])
    text = " ".join(advise(c))
    assert "pool" in text and "server close first" in text
    assert "tcp_tw_reuse=1" in text and "outgoing" in text and "loopback" in text and "timestamps" in text
    assert "ip_local_port_range" in text and "destination" in text
    # Never the wrong advice: recycle is gone, fin_timeout does not shorten TIME_WAIT.
    assert "tcp_tw_recycle no longer exists" in text
    assert "fin_timeout does not shorten TIME_WAIT" in text
    assert "set net.ipv4.tcp_tw_recycle" not in text


def test_advice_knows_tw_reuse_needs_timestamps():
    c = _census(ports=[{"local": "10.0.0.1", "destination": "10.0.0.2:1", "in_use": 20000, "range": 28232,
                        "share": 0.71}], sysctls={"net.ipv4.tcp_tw_reuse": "0", "net.ipv4.tcp_timestamps": "0"})
    text = " ".join(advise(c))
    assert "tcp_timestamps is 0" in text and "tcp_tw_reuse=1 lets" not in text


def test_advice_knows_tw_reuse_2_already_covers_loopback():
    c = _census(ports=[{"local": "127.0.0.1", "destination": "127.0.0.2:6379", "in_use": 700, "range": 1000,
                        "share": 0.7}], port_range=(40000, 40999))
    text = " ".join(advise(c))
    assert "tcp_tw_reuse=2 already" in text and "tcp_tw_reuse=1 lets" not in text


def test_advice_near_the_bucket_cap():
    c = _census(time_wait=120000, max_tw_buckets=131072, counters={"TcpExtTCPTimeWaitOverflow": 7})
    text = " ".join(advise(c))
    assert "tcp_max_tw_buckets" in text and "TcpExtTCPTimeWaitOverflow = 7" in text


def test_kernel_scenarios_use_the_simulators_parameter_names():
    from timewait.kernel.scenarios import all_kernel_scenarios
    from timewait.scenarios import all_scenarios

    sims = all_scenarios()
    shared = [n for n in all_kernel_scenarios() if n in sims]
    assert {"nc-timewait", "redis-short-connections", "port-exhaustion"} <= set(shared)
    for name, ks in all_kernel_scenarios().items():
        if name in sims:
            assert set(ks.params) - ks.kernel_only == set(sims[name].params), name


def test_refusals_name_the_reason():
    from timewait.errors import UsageError
    from timewait.kernel.scenarios import (
        get_kernel_scenario,
        parse_kernel_params,
        parse_sysctl_flags,
    )

    with pytest.raises(UsageError, match="4.12"):
        get_kernel_scenario("tw-recycle-nat")
    with pytest.raises(UsageError, match="4.12"):
        parse_sysctl_flags(["c2:net.ipv4.tcp_tw_recycle=1"])
    with pytest.raises(UsageError, match="lesson knob"):
        parse_kernel_params(get_kernel_scenario("nc-timewait"), {"timewait": "off"})
    with pytest.raises(UsageError, match="allowed: close_at"):
        parse_kernel_params(get_kernel_scenario("nc-timewait"), {"bogus": "1"})


def test_refuses_politely_without_root(monkeypatch, capsys):
    from timewait.cli import main

    monkeypatch.setattr("timewait.kernel.topology.os.geteuid", lambda: 1000)
    assert main(["kernel", "run", "nc-timewait"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs root" in err


# ---------------------------------------------------------------- IPv6 (issue 16): no root needed

def test_family_is_taken_by_every_twin_and_refused_where_it_cannot_run():
    from timewait.errors import UsageError
    from timewait.kernel.scenarios import (
        KernelUnavailable,
        all_kernel_scenarios,
        parse_kernel_params,
    )

    ks = all_kernel_scenarios()
    v6 = {n for n, s in ks.items() if s.no_ipv6 is None}
    assert {"lost-last-ack", "port-exhaustion", "simultaneous-close", "nc-timewait", "tw-reuse"} <= v6
    assert {"nat", "ttl", "delayed-duplicate"}.isdisjoint(v6)
    assert parse_kernel_params(ks["lost-last-ack"], {"family": "ipv6"})["family"] == "ipv6"
    assert "family" not in parse_kernel_params(ks["lost-last-ack"], {})  # IPv4 runs' params unchanged
    with pytest.raises(KernelUnavailable, match=r"kernel nat runs on IPv4 only: not ported yet: .*masquerade"):
        parse_kernel_params(ks["nat"], {"family": "ipv6"})
    with pytest.raises(UsageError, match="allowed ipv4, ipv6"):
        parse_kernel_params(ks["linger"], {"family": "v6"})


@pytest.mark.parametrize(("text", "addr", "port"), [
    ("[fd00::10:211:55:10]", "fd00::10:211:55:10/128", None),
    ("[fd00::10:211:55:10]:8888", "fd00::10:211:55:10/128", 8888),
    ("[fd00::10:211:55:0/112]:9999", "fd00::10:211:55:0/112", 9999),
    ("fd00::10:211:55:10/112", "fd00::10:211:55:0/112", None),
    ("fd00::10:211:55:0/112:80", "fd00::10:211:55:0/112", 80),
    ("fd00::10:211:55:10", "fd00::10:211:55/128", 10),    # ss reads the last group as the port
    ("10.0.0.2:6379", "10.0.0.2/32", 6379),
    ("*:8888", None, 8888),
])
def test_ss_address_syntax_for_both_families(text, addr, port):
    import ipaddress

    from timewait.kernel.ssfilter import _host

    net, p = _host(text)
    assert (net, p) == (None if addr is None else ipaddress.ip_network(addr), port)


def test_ss_filters_match_v4_mapped_sockets_as_the_kernel_does():
    from timewait.kernel.ssfilter import parse

    def n(*filt: str) -> int:
        f = parse(list(filt))
        socks = [("10.0.0.1", "10.0.0.2"), ("::ffff:10.0.0.1", "::ffff:10.0.0.2"), ("fd00::1", "fd00::2")]
        return sum(f.match(6, la, 40000, ra, 80) for la, ra in socks)

    assert (n("dst", "0.0.0.0/0"), n("dst", "::/0"), n("dst", "*"), n("dst", "10.0.0.2")) == (2, 2, 3, 2)
    assert (n("dst", "[fd00::2]"), n("src", "[fd00::/64]"), n("dst", "[::ffff:10.0.0.2]:80")) == (1, 1, 1)


@pytest.mark.parametrize(("linktype", "v6"), [(1, False), (1, True), (101, False), (101, True)],
                         ids=["ethernet-ipv4", "ethernet-ipv6", "raw-ipv4", "raw-ipv6"])
def test_read_pcap_reads_both_families_on_ethernet_and_raw_links(tmp_path, linktype, v6):
    """The lab's captures: eth0 of a veth (Ethernet) or tun0 of the emulated path (LINKTYPE_RAW, 101)."""
    import socket

    import dpkt

    from timewait.kernel.capture import read_pcap

    fam, a, b = (socket.AF_INET6, "fd00::10:211:55:5", "fd00::10:211:55:10") if v6 else \
        (socket.AF_INET, "10.211.55.5", "10.211.55.10")
    tcp = dpkt.tcp.TCP(sport=40000, dport=8888, seq=7, ack=0, flags=dpkt.tcp.TH_SYN, win=1000)
    src, dst = socket.inet_pton(fam, a), socket.inet_pton(fam, b)
    if v6:
        ip = dpkt.ip6.IP6(src=src, dst=dst, nxt=6, hlim=64, data=tcp, plen=len(tcp))
    else:
        ip = dpkt.ip.IP(src=src, dst=dst, p=6, ttl=64, data=tcp)
        ip.len = len(ip)
    frame = bytes(ip) if linktype == 101 else bytes(dpkt.ethernet.Ethernet(
        src=b"\x02" * 6, dst=b"\x04" * 6, type=0x86DD if v6 else 0x0800, data=ip))
    path = tmp_path / "c.pcap"
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=linktype)
        w.writepkt(frame, ts=1.5)
    [p] = read_pcap(str(path))
    assert (p.t, p.src, p.sport, p.dst, p.dport, p.flags, p.seq) == (1.5, a, 40000, b, 8888, dpkt.tcp.TH_SYN, 7)
