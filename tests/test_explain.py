"""``timewait explain``: real captures in (the kernel lab's, the simulator's, hand-made ones), lifecycles out."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest

from kernel_support import lab_missing
from timewait.cli import main
from timewait.explain.analysis import explain
from timewait.explain.reader import read_capture


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def explain_json(capsys: pytest.CaptureFixture[str], path: Path, *more: str) -> dict:
    rc, out, err = run_cli(capsys, "explain", str(path), "--json", *more)
    assert rc == 0, err
    return json.loads(out)


def kernel_capture(tmp_path: Path, name: str, *argv: str) -> Path:
    reason = lab_missing()
    if reason:
        pytest.skip(reason)
    path = tmp_path / f"{name}.pcap"
    proc = subprocess.run([sys.executable, "-m", "timewait", "kernel", "run", name, "--pcap", str(path), *argv],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode in (0, 1), proc.stderr
    assert path.is_file(), proc.stdout + proc.stderr
    return path


# ------------------------------------------------------------------------------------------ kernel captures

@pytest.mark.kernel
def test_lost_last_ack_capture_names_the_holder_the_resent_fin_and_its_reack(tmp_path, capsys) -> None:
    path = kernel_capture(tmp_path, "lost-last-ack", "--set", "wait=3")
    doc = explain_json(capsys, path)
    pkts = list(read_capture(str(path)))
    t0 = pkts[0].t_us
    fins = [p for p in pkts if p.flags & dpkt.tcp.TH_FIN and p.sport == 8888]
    assert len(fins) == 2, "the server's FIN and its one repeat"
    [tw] = doc["time_wait"]["rows"]
    assert tw["holder"] == "client" and tw["connection"] == "10.211.55.5:60494 > 10.211.55.10:8888"
    [refin] = doc["fin_retransmitted"]["rows"]
    assert refin["side"] == "server" and refin["holder_state"] == "TIME_WAIT"
    assert refin["t"] == round((fins[1].t_us - t0) / 1e6, 6)  # the kernel's own time for the repeat
    [reack] = doc["fin_reacked"]["rows"]
    assert reack["side"] == "client" and reack["state"] == "TIME_WAIT"
    after = next(p for p in pkts if p.t_us > fins[1].t_us and p.sport == 60494)
    assert reack["t"] == round((after.t_us - t0) / 1e6, 6)
    assert tw["restarted"] == 1 and tw["timer_from_s"] == reack["t"]


@pytest.mark.kernel
def test_lost_last_ack_ipv6_capture_names_the_holder_the_resent_fin_and_its_reack(tmp_path, capsys) -> None:
    """The same story from the kernel lab's IPv6 run (--set family=ipv6): addresses in brackets,
    the kernel's own times, and the ladder drawn from the IPv6 capture."""
    path = kernel_capture(tmp_path, "lost-last-ack", "--set", "family=ipv6", "--set", "wait=3")
    doc = explain_json(capsys, path)
    pkts = list(read_capture(str(path)))
    assert {p.family for p in pkts} == {6}
    t0 = pkts[0].t_us
    fins = [p for p in pkts if p.flags & dpkt.tcp.TH_FIN and p.sport == 8888]
    assert len(fins) == 2, "the server's FIN and its one repeat"
    conn = "[fd00::10:211:55:5]:60494 > [fd00::10:211:55:10]:8888"
    [tw] = doc["time_wait"]["rows"]
    assert tw["holder"] == "client" and tw["connection"] == conn
    assert tw["what"] == "TIME_WAIT held by the client [fd00::10:211:55:5]:60494"
    [refin] = doc["fin_retransmitted"]["rows"]
    assert refin["side"] == "server" and refin["holder_state"] == "TIME_WAIT" and refin["connection"] == conn
    assert refin["t"] == round((fins[1].t_us - t0) / 1e6, 6)
    [reack] = doc["fin_reacked"]["rows"]
    assert reack["side"] == "client" and reack["state"] == "TIME_WAIT"
    after = next(p for p in pkts if p.t_us > fins[1].t_us and p.sport == 60494)
    assert reack["t"] == round((after.t_us - t0) / 1e6, 6)
    assert tw["restarted"] == 1 and tw["timer_from_s"] == reack["t"]
    # The text view keeps the brackets (no markup eats them); the ladder draws the IPv6 hosts.
    svg, mmd = tmp_path / "lla6.svg", tmp_path / "lla6.mmd"
    rc, out, err = run_cli(capsys, "explain", str(path), "--conn", "[fd00::10:211:55:5]:60494", "--diagram", str(svg))
    assert rc == 0, err
    assert f"{conn}  client, timer restarted 1x" in out
    assert f"({len(pkts)} packet hops" in out or f"{len(pkts)} packet hops" in out
    text = svg.read_text()
    assert "fd00::10:211:55:5" in text and "fd00::10:211:55:10" in text and "TIME_WAIT" in text
    rc, out, err = run_cli(capsys, "explain", str(path), "--conn", "fd00::10:211:55:10", "--diagram", str(mmd))
    assert rc == 0, err
    lines = mmd.read_text().splitlines()
    assert sum(1 for ln in lines if "->>" in ln) == len(pkts)
    assert any("FIN" in ln for ln in lines if "n1->>n0" in ln)


@pytest.mark.kernel
def test_port_exhaustion_capture_shows_every_port_in_time_wait(tmp_path, capsys) -> None:
    path = kernel_capture(tmp_path, "port-exhaustion", "--set", "duration=2")
    doc = explain_json(capsys, path)
    [d] = doc["destinations"]
    assert d["connections"] == 1000 and d["ports"]["distinct_seen"] == 1000
    assert (d["ports"]["lowest"], d["ports"]["highest"]) == (40000, 40999)
    assert d["client_time_wait_peak"] == 1000 and d["exhausted"] is True
    assert d["verdict"].startswith("this client would exhaust ports in ")
    assert doc["time_wait"]["by_holder"] == {"client": 1000}
    rc, out, _ = run_cli(capsys, "explain", str(path), "--port-range", "32768-60999")
    assert rc == 0 and "28232 ports / 60 s TIME_WAIT = 470.5 conn/s" in out


@pytest.mark.kernel
def test_port_exhaustion_with_tw_reuse_capture_shows_the_reuse_intervals(tmp_path, capsys) -> None:
    path = kernel_capture(tmp_path, "port-exhaustion", "--set", "duration=3",
                          "--sysctl", "c1:net.ipv4.tcp_tw_reuse=1")
    doc = explain_json(capsys, path)
    rows = doc["reuse"]["rows"]
    assert doc["reuse"]["taken_over"] > 0 and rows
    # tcp_tw_reuse_delay (1000 ms): no 4-tuple is used again sooner than a second after its last ACK.
    assert min(r["gap_s"] for r in rows if r["met"] and "taken over" in r["met"]) >= 1.0
    assert doc["destinations"][0]["exhausted"] is False


# ------------------------------------------------------------------------------------------ simulator captures

def test_tw_reuse_pcapng_paws_challenge_ack_and_resent_syn(tmp_path, capsys) -> None:
    path = tmp_path / "tw.pcapng"
    assert main(["run", "tw-reuse", "--pcap", str(path)]) == 0
    capsys.readouterr()
    doc = explain_json(capsys, path)
    assert doc["capture"]["interface"] == "c1"
    [reuse] = doc["reuse"]["rows"]
    assert "the client's own TIME_WAIT, taken over" in reuse["met"]
    [met] = doc["syn_met_state"]["rows"]
    assert met["answer"] == "ACK" and "challenge ACK" in met["what"]
    [paws] = doc["paws"]["rows"]
    assert paws["side"] == "server" and paws["connection"].endswith("#2")
    assert doc["syn_retransmitted"]["count"] == 1
    c2 = explain_json(capsys, path, "--iface", "c2")
    assert c2["capture"]["interface"] == "c2" and c2["paws"]["count"] == 0  # the duplicate arrived at c1 only


def test_conn_draws_the_capture_with_the_simulator_views(tmp_path, capsys) -> None:
    cap = tmp_path / "nc.pcap"
    assert main(["run", "nc-timewait", "--pcap", str(cap)]) == 0
    capsys.readouterr()
    svg, page = tmp_path / "nc.svg", tmp_path / "nc.html"
    rc, out, err = run_cli(capsys, "explain", str(cap), "--conn", "8888", "--diagram", str(svg), "--html", str(page))
    assert rc == 0, err
    n = sum(1 for _ in read_capture(str(cap)))
    assert f"({n} packet hops" in out or f"{n} packet hops" in out
    assert "TIME_WAIT" in svg.read_text() and page.stat().st_size > 0


# ------------------------------------------------------------------------------------------ hand-made captures

def _tcp(src: bytes, dst: bytes, sport: int, dport: int, flags: int, seq: int, ack: int, v6: bool) -> bytes:
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=65535)
    if v6:
        ip = dpkt.ip6.IP6(src=src, dst=dst, nxt=dpkt.ip.IP_PROTO_TCP, hlim=64, data=tcp, plen=len(tcp))
    else:
        ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_TCP, ttl=64, data=tcp)
        ip.len = len(ip)
    return bytes(ip)


def _close_sequence(v6: bool) -> list[bytes]:
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    a = socket.inet_pton(fam, "fd00::1" if v6 else "192.0.2.1")
    b = socket.inet_pton(fam, "fd00::2" if v6 else "192.0.2.2")
    S, A, F = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN
    return [_tcp(a, b, 40000, 80, S, 100, 0, v6), _tcp(b, a, 80, 40000, S | A, 500, 101, v6),
            _tcp(a, b, 40000, 80, A, 101, 501, v6), _tcp(a, b, 40000, 80, F | A, 101, 501, v6),
            _tcp(b, a, 80, 40000, F | A, 501, 102, v6), _tcp(a, b, 40000, 80, A, 102, 502, v6)]


def _write_pcap(path: Path, linktype: int, frames: list[bytes]) -> None:
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f, linktype=linktype)
        for i, fr in enumerate(frames):
            w.writepkt(fr, ts=1.0 + i * 0.001)


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("link", ["raw", "ethernet", "sll", "sll2"])
def test_every_link_type_and_both_families_give_the_same_lifecycle(tmp_path, link, v6) -> None:
    ips = _close_sequence(v6)
    etype = 0x86DD if v6 else 0x0800
    wrap = {
        "raw": (101, lambda ip: ip),
        "ethernet": (1, lambda ip: b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", etype) + ip),
        "sll": (113, lambda ip: struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 6, etype) + ip),
        "sll2": (276, lambda ip: struct.pack("!HHIHBB8s", etype, 0, 2, 1, 0, 6, b"\x02" * 6) + ip),
    }[link]
    path = tmp_path / "c.pcap"
    _write_pcap(path, wrap[0], [wrap[1](ip) for ip in ips])
    ex = explain(read_capture(str(path)))
    [c] = ex.done
    assert c.end == "fin" and c.tw_holder == 0 and c.state == ["TIME_WAIT", "CLOSED"]
    assert [(side, new) for _, side, _, new in c.transitions] == [
        (0, "SYN_SENT"), (1, "SYN_RECEIVED"), (0, "ESTABLISHED"), (1, "ESTABLISHED"), (0, "FIN_WAIT_1"),
        (1, "CLOSE_WAIT"), (0, "FIN_WAIT_2"), (1, "LAST_ACK"), (0, "TIME_WAIT"), (1, "CLOSED")]


def test_garbage_and_truncated_files_are_one_line_and_exit_2(tmp_path, capsys) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture at all" * 10)
    rc, out, err = run_cli(capsys, "explain", str(junk))
    assert rc == 2 and not out and err.count("\n") == 1 and "not a capture" in err
    good = tmp_path / "good.pcap"
    _write_pcap(good, 101, _close_sequence(False))
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(good.read_bytes()[:-10])
    rc, out, err = run_cli(capsys, "explain", str(cut))
    assert rc == 2 and not out and err.count("\n") == 1 and "cut short in record 6" in err
    rc, out, err = run_cli(capsys, "explain", str(cut), "--allow-truncated", "--json")
    assert rc == 0 and json.loads(out)["capture"]["frames"] == 5
    rc, _, err = run_cli(capsys, "explain", str(tmp_path / "missing.pcap"))
    assert rc == 2 and "no such file" in err
    for bad in (["--port-range", "9-1"], ["--time-wait", "nan"], ["--conn", "x:99999"], ["--diagram", "a.svg"]):
        rc, out, err = run_cli(capsys, "explain", str(good), *bad)
        assert rc == 2 and not out and err.count("\n") == 1, (bad, err)


def test_a_malformed_frame_is_counted_never_raised(tmp_path) -> None:
    frames = _close_sequence(False)
    frames.insert(2, b"\x45\x00\x00\x14garbage")
    path = tmp_path / "m.pcap"
    _write_pcap(path, 101, frames)
    from timewait.explain.reader import ReadStats

    stats = ReadStats()
    assert len(list(read_capture(str(path), stats))) == 6
    assert stats.malformed + stats.other == 1 and stats.frames == 7
