"""tcpdump-style lines: flags, seq, ack, options and the other record kinds."""

from __future__ import annotations

from timewait import trace as T
from timewait.report.tcpdump import (
    RelSeq,
    flag_letters,
    format_options,
    format_record,
    format_segment,
)
from timewait.tcp.segment import ACK, FIN, PSH, RST, SYN, Segment, encode_options, ip_aton

C1, C2 = ip_aton("10.211.55.5"), ip_aton("10.211.55.10")


def syn() -> Segment:
    return Segment(C1, C2, 60494, 8888, 1234, 0, SYN, 64240, mss=1460, wscale=7, sack_ok=True, ts=(100, 0))


def test_syn_reads_like_the_issue_example() -> None:
    line = format_record((0, T.TX, "c1", syn()))
    assert line == ("0.000000 c1 Out IP 10.211.55.5.60494 > 10.211.55.10.8888: Flags [S], seq 1234, win 64240, "
                    "options [mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7], length 0")
    assert format_record((200, T.RX, "c2", syn())).startswith("0.000200 c2 In  IP 10.211.55.5.60494 > ")


def test_flag_letters_follow_tcpdump_order() -> None:
    assert flag_letters(SYN | ACK) == "S."
    assert flag_letters(FIN | ACK) == "F."
    assert flag_letters(RST) == "R"
    assert flag_letters(PSH | ACK) == "P."
    assert flag_letters(0) == "none"


def test_data_segment_has_seq_range_ack_and_nop_nop_ts() -> None:
    seg = Segment(C1, C2, 60494, 8888, 1235, 5679, PSH | ACK, 502, b"hello\n", ts=(200, 150))
    text = format_segment(seg)
    assert "Flags [P.], seq 1235:1241, ack 5679, win 502" in text
    assert "options [nop,nop,TS val 200 ecr 150]" in text
    assert text.endswith("length 6")


def test_pure_ack_has_no_seq_like_tcpdump_but_verbose_shows_it_and_ttl() -> None:
    seg = Segment(C1, C2, 60494, 8888, 1241, 5680, ACK, 502)
    assert "seq" not in format_segment(seg)
    verbose = format_segment(seg, verbose=True)
    assert "seq 1241" in verbose and "ttl 64" in verbose


def test_ttl_on_packet_lines_only_verbose_elsewhere_when_not_64() -> None:
    seg = Segment(C1, C2, 1, 2, 0, 0, RST, ttl=11)
    assert "ttl" not in format_record((0, T.TX, "c1", seg))  # tcpdump's line, as tcpdump -n
    assert format_record((0, T.TX, "c1", seg), verbose=True).endswith("ttl 11, id 0")
    assert format_record((0, T.FWD, "r1", seg, seg)).endswith("ttl 11")
    assert format_segment(seg, show_ttl=True).endswith("ttl 11")
    assert "ttl" not in format_segment(Segment(C1, C2, 1, 2, 0, 0, RST), show_ttl=True)


def test_options_follow_the_encoder_wire_order() -> None:
    no_ts = Segment(C1, C2, 1, 2, 0, 0, SYN, mss=1460, sack_ok=True, wscale=7)
    assert format_options(encode_options(no_ts)) == "mss 1460,nop,nop,sackOK,nop,wscale 7"
    mss_only = Segment(C1, C2, 1, 2, 0, 0, SYN, mss=536)
    assert format_options(encode_options(mss_only)) == "mss 536"
    # Padding after an odd option is printed as tcpdump does: eol, then stop.
    assert format_options(bytes([3, 3, 7, 0])) == "wscale 7,eol"


def test_other_record_kinds_are_readable() -> None:
    key = (C1, 60494, C2, 8888)
    assert format_record((2_000_400, T.STATE, "c1", key, "FIN_WAIT_1", "FIN_WAIT_2")) == (
        "2.000400 c1 # 10.211.55.5:60494 -> 10.211.55.10:8888 FIN_WAIT_1 -> FIN_WAIT_2")
    drop = format_record((5, T.DROP, "c2", syn(), "paws"))
    assert "DROP" in drop and "[paws: rejected by PAWS" in drop
    timer = format_record((1_000_000, T.TIMER, "c1", key, "timewait", 61_000_000))
    assert "timer timewait armed, fires at 61.000000 (in 60 s)" in timer
    assert "cancelled" in format_record((1, T.TIMER, "c1", key, "rto", None))
    assert "timer rto fired" in format_record((1, T.FIRE, "c1", key, "rto"))
    assert format_record((1, T.COUNTER, "c1", "TcpExtTW", 1)).endswith("counter TcpExtTW +1")
    assert "-> EADDRNOTAVAIL" in format_record((1, T.CALL, "c1", 3, "connect", ("10.211.55.10", 8888), "EADDRNOTAVAIL"))
    assert format_record((1, T.NOTE, "c1", "Ctrl+C")).endswith("note: Ctrl+C")
    out = syn().copy(ttl=63, src=ip_aton("192.0.2.1"), sport=1025)
    fwd = format_record((1, T.FWD, "nat", syn(), out))
    assert "fwd IP 192.0.2.1.1025 > 10.211.55.10.8888" in fwd and "rewritten from 10.211.55.5.60494" in fwd


def test_every_record_of_a_real_run_formats() -> None:
    from test_report_support import run_or_skip

    r = run_or_skip("nc-timewait")
    lines = [format_record(rec) for rec in r.trace.records]
    assert len(lines) == len(r.trace.records)
    assert any("Flags [F.]" in ln for ln in lines)
    assert any("FIN_WAIT_2 -> TIME_WAIT" in ln for ln in lines)


def test_relative_seq_as_tcpdump_computes_it() -> None:
    """print-tcp.c: only packets with ACK take part; a SYN with ACK (or the first ACK of a flow)
    sets the bases and prints absolute; a bare SYN or RST prints absolute and changes nothing."""
    rel = RelSeq()
    synack = Segment(C2, C1, 8888, 60494, 5000, 1235, SYN | ACK, 65160)
    ack = Segment(C1, C2, 60494, 8888, 1235, 5001, ACK, 502)
    data = Segment(C1, C2, 60494, 8888, 1235, 5001, PSH | ACK, 502, b"hello\n")
    assert "seq 1234," in format_segment(syn(), rel=rel)
    assert "seq 5000, ack 1235" in format_segment(synack, rel=rel)
    assert "ack 1, win" in format_segment(ack, rel=rel)
    assert "seq 1:7, ack 1" in format_segment(data, rel=rel)
    bare_rst = Segment(C1, C2, 60494, 8888, 1241, 0, RST, 0)
    assert "seq 1241," in format_segment(bare_rst, rel=rel)
    assert "seq 1:7, ack 1" in format_segment(data, rel=rel)  # the bases did not move


def test_packet_lines_equal_tcpdump_reading_our_pcap(tmp_path) -> None:
    """The real judge: tcpdump -n -tt (and -S) on a host's pcap prints exactly our packet lines
    for that host, once the host and direction columns are taken off."""
    import re
    import shutil
    import subprocess

    import pytest

    from timewait.report.pcap import write_pcap
    from timewait.report.tcpdump import format_trace
    from timewait.scenarios import run_scenario

    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed (bash .ci/run installs it)")
    for name in ("lost-last-ack", "tw-reuse", "simultaneous-close"):
        result = run_scenario(name)
        pcap = tmp_path / f"{name}.pcap"
        write_pcap(result, pcap, host="c1")
        for flag in ([], ["-S"]):
            r = subprocess.run(["tcpdump", *flag, "-n", "-tt", "-r", str(pcap)], capture_output=True,
                               text=True, timeout=60, check=True)
            ours = [re.sub(r"^(\S+) c1 (Out|In ) ", r"\1 ", ln)
                    for ln in format_trace(result.trace.records, absolute=bool(flag))
                    if re.match(r"^\S+ c1 (Out|In ) IP ", ln)]
            assert ours == r.stdout.splitlines(), (name, flag)
