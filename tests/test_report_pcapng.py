"""pcapng: one interface per node, packet comments for each fate the bytes do not show, read back by tshark."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from test_report_support import have, light_run, run_or_skip
from timewait.report.outputs import write_outputs
from timewait.report.pcap import captured_packets
from timewait.result import RunResult
from timewait.tcp.config import SEC
from timewait.trace import COUNTER, DROP, DUP, RX, TX, views

pytestmark = pytest.mark.skipif(not have("tshark"), reason="tshark is not installed (apt-get install tshark)")


def frames_of(path: Path) -> list[dict[str, str]]:
    """Every frame as tshark decodes it: number, time in µs, interface, ports, comment."""
    cmd = ["tshark", "-r", str(path), "-n", "-T", "fields", "-E", "separator=|", "-E", "occurrence=a",
           "-E", "aggregator=;", "-e", "frame.number", "-e", "frame.time_epoch", "-e", "frame.interface_name",
           "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.flags", "-e", "frame.comment",
           "-e", "_ws.malformed", "-e", "ip.src"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    complaints = [ln for ln in proc.stderr.splitlines() if ln.strip() and "Running as user" not in ln]
    assert not complaints, complaints
    rows = []
    for line in proc.stdout.splitlines():
        n, t, iface, sport, dport, flags, comment, malformed, src = line.split("|")
        assert not malformed, line
        rows.append({"n": int(n), "t_us": round(float(t) * SEC), "iface": iface, "sport": int(sport),
                     "dport": int(dport), "flags": int(flags, 16), "comment": comment, "src": src})
    return rows


def write(result: RunResult, path: Path, host: str | None = None) -> list[dict[str, str]]:
    msgs = write_outputs(result, pcap=path, pcap_host=host)
    assert "fates as packet comments" in msgs[0]
    return frames_of(path)


def test_every_node_is_an_interface_holding_what_it_saw(tmp_path: Path) -> None:
    result = run_or_skip("tw-reuse")
    rows = write(result, tmp_path / "tw.pcapng")
    # The union of the interfaces: each node's frames are exactly what its interface saw.
    for node in result.nodes:
        mine = [r for r in rows if r["iface"] == node]
        seen = captured_packets(result, node)
        assert [(r["t_us"], r["sport"], r["dport"]) for r in mine] == [
            (p.time_us, p.seg.sport, p.seg.dport) for p in seen], node
    assert {r["iface"] for r in rows} == set(result.nodes)
    only = write(result, tmp_path / "c1.pcapng", host="c1")
    assert {r["iface"] for r in only} == {"c1"} and len(only) == len(captured_packets(result, "c1"))


def test_tw_reuse_dropped_acks_and_the_paws_discard_are_commented_at_their_frames(tmp_path: Path) -> None:
    result = run_or_skip("tw-reuse")
    rows = write(result, tmp_path / "tw.pcapng")
    recs = views(result.trace.records)
    faulted = [r.t for r in recs if r.kind == DROP and r.reason == "fault"]
    assert faulted, "the scenario loses c1's last ACKs by a fault rule"
    dropped = [r for r in rows if "dropped by a fault rule at c1: never delivered" in r["comment"]]
    assert [r["t_us"] for r in dropped] == faulted
    assert all(r["iface"] == "c1" and r["src"] == "10.211.55.5" and r["flags"] == 0x010 for r in dropped)
    # None of them reached c2: no frame of c2's interface at a dropped ACK's time carries its ports.
    # The held duplicate: sent once by c2 (commented there), discarded by PAWS at c1 where it arrived.
    paws = [r for r in recs if r.kind == COUNTER and r.node == "c1" and r.name == "TcpExtPAWSEstab"]
    assert len(paws) == 1
    arrived = [r for r in rows if "discarded by PAWS at c1" in r["comment"]]
    assert len(arrived) == 1 and arrived[0]["iface"] == "c1" and arrived[0]["t_us"] == paws[0].t
    dup = next(r for r in recs if r.kind == DUP)
    rx = next(r for r in recs if r.kind == RX and r.node == "c1" and r.t == paws[0].t)
    assert (rx.seg.seq, rx.seg.payload) == (dup.seg.seq, dup.seg.payload)
    sent = [r for r in rows if r["comment"].startswith("duplicated by the network")]
    assert [(r["iface"], r["t_us"]) for r in sent] == [(dup.node, dup.t)]
    assert f"a copy arrives {dup.seconds:g} s after this one" in sent[0]["comment"]


def test_lost_last_ack_the_lost_ack_is_commented_and_never_reaches_c2(tmp_path: Path) -> None:
    result = light_run("lost-last-ack")
    rows = write(result, tmp_path / "lla.pcapng")
    recs = views(result.trace.records)
    lost = [r for r in recs if r.kind == DROP and r.reason == "fault"]
    assert len(lost) == 1
    frames = [r for r in rows if "never delivered" in r["comment"]]
    assert [(r["iface"], r["t_us"], r["flags"]) for r in frames] == [("c1", lost[0].t, 0x010)]
    acks_at_c2 = [r for r in rows if r["iface"] == "c2" and r["t_us"] >= lost[0].t and r["flags"] == 0x010
                  and r["src"] == "10.211.55.5"]
    first_rx = next(r for r in recs if r.kind == RX and r.node == "c2" and r.t > lost[0].t and r.seg.src == lost[0].seg.src)
    assert not acks_at_c2 or acks_at_c2[0]["t_us"] >= first_rx.t  # the lost ACK itself never shows at c2


def test_ttl_expiry_is_commented_at_the_router(tmp_path: Path) -> None:
    result = run_or_skip("ttl")
    rows = write(result, tmp_path / "ttl.pcapng")
    drops = [r for r in views(result.trace.records) if r.kind == DROP and r.reason == "ttl"]
    assert drops
    commented = [r for r in rows if r["comment"].startswith("TTL expired at")]
    assert [(r["iface"], r["t_us"]) for r in commented] == [(d.node, d.t) for d in drops]
    assert all(f"TTL expired at {r['iface']}: ICMP time exceeded sent" == r["comment"] for r in commented)


def test_the_tx_frames_of_the_network_are_the_classic_pcaps_packets(tmp_path: Path) -> None:
    """Every packet the classic whole-network pcap holds is in the pcapng too, at its sender."""
    result = run_or_skip("nc-timewait")
    rows = write(result, tmp_path / "nc.pcapng")
    sent = [(p.time_us, p.node, p.seg.sport) for p in captured_packets(result) if p.kind == "tx"]
    txs = [(r.t, r.node, r.seg.sport) for r in views(result.trace.records) if r.kind == TX]
    assert sent == txs
    have_ = {(r["t_us"], r["iface"], r["sport"]) for r in rows}
    assert set(txs) <= have_
