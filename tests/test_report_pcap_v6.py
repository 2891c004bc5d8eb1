"""IPv6 runs in pcap and pcapng (LINKTYPE_RAW carries both families): the real tshark decodes
every packet as IPv6/TCP, checksums verified, with no malformed packet and no warning or error."""

from __future__ import annotations

import subprocess

import pytest

from test_report_support import have, result_of
from timewait.report.pcap import captured_packets, write_pcap
from timewait.report.pcapng import encode_pcapng
from timewait.result import RunResult
from timewait.tcp.segment import ip_ntoa

pytestmark = pytest.mark.skipif(not have("tshark"), reason="tshark is not installed (apt-get install tshark)")

FIELDS = ["ip.version", "ipv6.src", "ipv6.dst", "ipv6.hlim", "ipv6.plen", "ip.src", "tcp.srcport", "tcp.dstport",
          "tcp.flags", "tcp.seq_raw", "tcp.len", "tcp.checksum.status", "tcp.options.mss_val",
          "_ws.malformed", "_ws.expert.severity", "_ws.expert.group"]
OPTS = ["-n", "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
        "-o", "tcp.relative_sequence_numbers:FALSE"]
# Expert groups that mean the bytes are wrong (checksum, undecoded, malformed, protocol); a
# whole-network capture holds each routed packet twice, which TCP analysis calls out of order
# (the Sequence group), as in tests/test_report_pcap.py.
BAD_GROUPS = {0x01000000, 0x05000000, 0x07000000, 0x09000000}


def dual_stack_run() -> RunResult:
    """c1 -- r1 -- c2 with both families: an nc session over IPv6 (hop limit 64 -> 63 at r1)
    and one over IPv4, data both ways, both closed."""
    from timewait.apps.basic import NcClient, NcServer
    from timewait.sim.simulation import Simulation
    from timewait.sim.socket import AF_INET6

    sim = Simulation(seed=3)
    c1 = sim.add_host("c1", "fd00::10:211:55:5", "10.211.55.5")
    r1 = sim.add_router("r1", "fd00::1", "fd00:2::1")
    c2 = sim.add_host("c2", "fd00::10:211:55:10", "10.211.55.10")
    sim.link(c1, r1, delay_ms=0.3)
    sim.link(r1, c2, delay_ms=0.5)
    srv = NcServer(c2, 8888)
    assert srv.lsock.family == AF_INET6
    NcClient(c1, "fd00::10:211:55:10", 8888, lines=[(0.5, b"hi\n"), (0.6, b"x" * 2000)], close_at_s=1.0)
    NcServer(c2, 9999)
    NcClient(c1, "10.211.55.10", 9999, lines=[(0.5, b"v4\n")], close_at_s=1.0)
    sim.run(70)
    return result_of(sim, "dual-stack-nc")


def tshark(path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["tshark", "-r", str(path), *OPTS, *args], capture_output=True, text=True,
                          timeout=120, check=True)


def rows(path) -> list[dict[str, str]]:
    cmd = ["-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in FIELDS:
        cmd += ["-e", f]
    proc = tshark(path, *cmd)
    complaints = [ln for ln in proc.stderr.splitlines() if ln.strip() and "Running as user" not in ln]
    assert complaints == [], complaints
    return [dict(zip(FIELDS, line.split("|"), strict=True)) for line in proc.stdout.splitlines()]


def assert_clean(path, packets) -> None:
    got = rows(path)
    assert len(got) == len(packets) > 0
    v6 = 0
    for row, p in zip(got, packets, strict=True):
        seg = p.seg
        assert row["tcp.srcport"] == str(seg.sport) and row["tcp.seq_raw"] == str(seg.seq)
        assert row["tcp.checksum.status"] == "1"  # good (wireshark: 0 bad, 1 good, 2 unverified)
        assert row["_ws.malformed"] == ""
        assert not {int(g, 0) for g in row["_ws.expert.group"].split(",") if g} & BAD_GROUPS, row
        if seg.src > 0xFFFFFFFF:
            v6 += 1
            assert row["ip.version"] == "6" and row["ip.src"] == ""
            assert (row["ipv6.src"], row["ipv6.dst"]) == (ip_ntoa(seg.src), ip_ntoa(seg.dst))
            assert row["ipv6.hlim"] == str(seg.ttl)
            assert row["ipv6.plen"] == str(20 + len(seg.payload) + len(encode_opts(seg)))
            if seg.mss is not None:
                assert row["tcp.options.mss_val"] == "1440"
        else:
            assert row["ip.version"] == "4" and row["ip.src"] == ip_ntoa(seg.src)
    assert 0 < v6 < len(packets)
    assert_expert_clean(path)


def assert_expert_clean(path) -> None:
    """``tshark -z expert``: no error at all, and every warning a TCP sequence one."""
    expert = tshark(path, "-q", "-z", "expert").stdout
    assert "Malformed" not in expert and "checksum" not in expert.lower(), expert
    assert "Errors (" not in expert, expert
    section = ""
    for line in expert.splitlines():
        if line and not line[0].isspace() and "(" in line:
            section = line.split(" (")[0]
        elif section == "Warns" and line.strip() and line.strip()[0].isdigit():
            assert line.split()[1] == "Sequence", line


def encode_opts(seg) -> bytes:
    from timewait.tcp.segment import encode_options

    return encode_options(seg)


@pytest.fixture(scope="module")
def run() -> RunResult:
    return dual_stack_run()


def test_pcap_of_an_ipv6_run_decodes_cleanly(run, tmp_path):
    path = tmp_path / "v6.pcap"
    n = write_pcap(run, path)
    packets = captured_packets(run)
    assert n == len(packets)
    hlims = {p.seg.ttl for p in packets if p.seg.src > 0xFFFFFFFF}
    assert hlims == {64, 63}  # sent, and forwarded by r1
    assert_clean(path, packets)


def test_pcap_of_one_host_holds_what_it_sent_and_received(run, tmp_path):
    path = tmp_path / "v6-c2.pcap"
    write_pcap(run, path, "c2")
    assert_clean(path, captured_packets(run, "c2"))


def test_pcapng_of_an_ipv6_run_decodes_cleanly(run, tmp_path):
    path = tmp_path / "v6.pcapng"
    with open(path, "wb") as f:
        n = encode_pcapng(run, f)
    got = rows(path)
    assert len(got) == n > 0
    assert {r["ip.version"] for r in got} == {"4", "6"}
    assert all(r["tcp.checksum.status"] == "1" and r["_ws.malformed"] == "" for r in got)
    assert_expert_clean(path)


def test_a_host_capture_of_an_ipv6_session_has_no_warning_at_all(run, tmp_path):
    """One host's view holds each packet once: tshark has nothing to warn about."""
    path = tmp_path / "v6-c1.pcap"
    write_pcap(run, path, "c1")
    expert = tshark(path, "-q", "-z", "expert").stdout
    assert "Warns (" not in expert and "Errors (" not in expert, expert
