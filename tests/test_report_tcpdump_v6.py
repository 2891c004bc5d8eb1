"""IPv6 packets in the tcpdump text view (``IP6 ADDR.PORT > ADDR.PORT: ...``, checked line for line
against the real tcpdump reading the run's pcap) and IPv6 addresses in --trace-select."""

from __future__ import annotations

import subprocess

import pytest

from test_report_pcap_v6 import dual_stack_run
from test_report_support import have
from timewait import trace as T
from timewait.report.pcap import captured_packets, write_pcap
from timewait.report.tcpdump import endpoint, format_record, format_segment, key_text
from timewait.tcp.segment import ACK, SYN, Segment, ip_aton
from timewait.trace import TraceSelect

A, B = ip_aton("fd00::10:211:55:5"), ip_aton("fd00::10:211:55:10")


def syn6(**kw) -> Segment:
    return Segment(A, B, 60494, 8888, 1234, 0, SYN, 64800, mss=1440, wscale=7, sack_ok=True, ts=(100, 0), **kw)


def test_an_ipv6_syn_reads_as_tcpdump_prints_it():
    assert format_record((0, T.TX, "c1", syn6())) == (
        "0.000000 c1 Out IP6 fd00::10:211:55:5.60494 > fd00::10:211:55:10.8888: Flags [S], seq 1234, win 64800, "
        "options [mss 1440,sackOK,TS val 100 ecr 0,nop,wscale 7], length 0")


def test_the_hop_limit_is_hlim_and_ipv6_has_no_ip_id():
    assert format_segment(syn6(ttl=63), verbose=True).endswith("length 0, hlim 63")
    assert format_record((5, T.FWD, "r1", syn6(), syn6(ttl=63))).endswith("length 0, hlim 63")
    assert format_record((5, T.DROP, "r1", syn6(ttl=1), "ttl")).startswith(
        "0.000005 r1 # DROP IP6 fd00::10:211:55:5.60494 > ")
    assert format_record((5, T.ICMP, "r1", syn6(ttl=1), "time-exceeded")).startswith(
        "0.000005 r1 # ICMP6 time-exceeded for IP6 fd00::10:211:55:5.60494 > ")
    # IPv4 unchanged
    v4 = Segment(ip_aton("10.0.0.1"), ip_aton("10.0.0.2"), 1, 2, 0, 0, SYN, ttl=9, ip_id=7)
    assert format_segment(v4, verbose=True).endswith("length 0, ttl 9, id 7")
    assert format_record((5, T.ICMP, "r1", v4, "time-exceeded")).startswith("0.000005 r1 # ICMP time-exceeded for IP ")


def test_endpoints_bracket_ipv6_before_a_colon():
    assert endpoint(A, 8888) == "[fd00::10:211:55:5]:8888"
    assert endpoint(A, 8888, ".") == "fd00::10:211:55:5.8888"
    assert endpoint(ip_aton("10.0.0.1"), 80) == "10.0.0.1:80"
    assert key_text((A, 60494, B, 8888)) == "[fd00::10:211:55:5]:60494 -> [fd00::10:211:55:10]:8888"


@pytest.mark.skipif(not have("tcpdump"), reason="tcpdump is not installed")
def test_every_line_matches_the_real_tcpdump_on_the_runs_pcap(tmp_path):
    run = dual_stack_run()
    path = tmp_path / "both.pcap"
    write_pcap(run, path, "c1")
    proc = subprocess.run(["tcpdump", "-n", "-S", "-r", str(path)], capture_output=True, text=True,
                          timeout=60, check=True)
    theirs = [ln.split(" ", 1)[1] for ln in proc.stdout.splitlines()]
    ours = [format_segment(p.seg) for p in captured_packets(run, "c1")]
    assert len(ours) > 10 and any(ln.startswith("IP6 ") for ln in ours) and any(ln.startswith("IP ") for ln in ours)
    assert ours == theirs


def test_trace_select_takes_ipv6_addresses_and_4_tuples():
    sel = TraceSelect("conn:host fd00::10:211:55:10 and port 8888 or [fd00::1]:5000-[fd00::2]:80")
    assert sel.choose("c1", (A, 60494, B, 8888))
    assert not sel.choose("c1", (A, 60494, B, 9999))
    one, two = ip_aton("fd00::1"), ip_aton("fd00::2")
    assert sel.choose("c1", (two, 80, one, 5000)) and not sel.choose("c1", (two, 80, one, 5001))
    bare = TraceSelect("conn:fd00::1:5000-fd00::2:80")  # the port follows the last colon
    assert bare.choose("c1", (one, 5000, two, 80))


def test_trace_select_host_of_a_v4_mapped_address_is_the_ipv4_connection():
    sel = TraceSelect("conn:host ::ffff:10.0.0.2")
    assert sel.choose("c2", (ip_aton("10.0.0.2"), 8888, ip_aton("10.0.0.1"), 40000))


def test_an_ack_without_payload_shows_no_seq():
    seg = Segment(B, A, 8888, 60494, 5, 6, ACK, 507)
    assert format_segment(seg) == "IP6 fd00::10:211:55:10.8888 > fd00::10:211:55:5.60494: Flags [.], ack 6, win 507, length 0"
