"""The IPv4/TCP codec: byte layout, checksums (checked against dpkt), Linux option order,
round trips and malformed input."""

from __future__ import annotations

import struct

import dpkt
import pytest

from timewait.tcp.segment import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    DecodeError,
    Segment,
    checksum,
    decode,
    encode,
    encode_options,
    ip_aton,
    ip_ntoa,
)

C1, C2 = ip_aton("10.211.55.5"), ip_aton("10.211.55.10")


def linux_syn(**kw) -> Segment:
    seg = Segment(C1, C2, 46290, 8888, 124386153, 0, SYN, 64240, mss=1460, wscale=7, sack_ok=True,
                  ts=(3129142531, 0), ip_id=0x1234)
    for k, v in kw.items():
        setattr(seg, k, v)
    return seg


# ---------------------------------------------------------------- layout


def test_syn_bytes_are_a_linux_syn():
    b = encode(linux_syn())
    assert len(b) == 60
    # IPv4: version 4, IHL 5, total 60, id, DF, TTL 64, TCP, addresses.
    assert b[:2] == b"\x45\x00"
    assert struct.unpack("!HHHBB", b[2:10]) == (60, 0x1234, 0x4000, 64, 6)
    assert b[12:20] == bytes([10, 211, 55, 5, 10, 211, 55, 10])
    tcp = b[20:]
    assert struct.unpack("!HHII", tcp[:12]) == (46290, 8888, 124386153, 0)
    assert tcp[12] >> 4 == 10 and tcp[13] == SYN
    assert struct.unpack("!H", tcp[14:16]) == (64240,)
    # Options exactly as tcp_options_write lays them out: MSS, SACK_PERM+TS, NOP, WSCALE.
    assert tcp[20:] == bytes.fromhex("020405b4" "0402080a") + struct.pack("!II", 3129142531, 0) + bytes.fromhex("01030307")


@pytest.mark.parametrize(
    ("changes", "options"),
    [
        ({}, "020405b4 0402080a TS 01030307"),
        ({"sack_ok": False}, "020405b4 0101080a TS 01030307"),
        ({"ts": None}, "020405b4 01010402 01030307"),
        ({"ts": None, "sack_ok": False, "wscale": None}, "020405b4"),
        ({"mss": None, "wscale": None, "sack_ok": False}, "0101080a TS"),
        ({"mss": None, "ts": None, "sack_ok": False}, "01030307"),
    ],
    ids=["syn", "no-sack", "no-ts", "mss-only", "ts-only", "wscale-only"],
)
def test_option_order_as_linux_writes_them(changes, options):
    seg = linux_syn(**changes)
    ts = struct.pack("!II", *seg.ts).hex() if seg.ts else ""
    assert encode_options(seg).hex() == options.replace("TS", ts).replace(" ", "")


def test_data_segment_layout():
    seg = Segment(C1, C2, 46290, 8888, 1000, 2000, ACK | PSH, 512, b"hello\n", ts=(7, 9), ttl=63, ip_id=5)
    b = encode(seg)
    assert len(b) == 20 + 32 + 6
    assert b[8] == 63
    assert b[20 + 12] >> 4 == 8
    assert b[-6:] == b"hello\n"


# ---------------------------------------------------------------- checksums


def test_checksums_agree_with_dpkt():
    """dpkt recomputes both checksums when they are zeroed; ours must be the same."""
    for seg in (linux_syn(), Segment(C1, C2, 1, 2, 3, 4, ACK | FIN | PSH, 5, b"odd length!", ts=(1, 2)),
                Segment(C2, C1, 8888, 46290, 0, 99, RST | ACK, 0)):
        ours = encode(seg)
        ip = dpkt.ip.IP(ours)
        assert ip.sum == struct.unpack("!H", ours[10:12])[0]
        tcp_sum = ip.data.sum
        ip.sum = 0
        ip.data.sum = 0
        assert bytes(ip) == ours
        assert ip.data.sum == tcp_sum


def test_decode_a_packet_built_by_dpkt():
    tcp = dpkt.tcp.TCP(sport=40000, dport=80, seq=0xFFFFFFF0, ack=17, off=8, flags=dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH,
                       win=502, opts=bytes.fromhex("0101080a") + struct.pack("!II", 100, 200), data=b"GET /")
    ip = dpkt.ip.IP(src=bytes([192, 0, 2, 1]), dst=bytes([198, 51, 100, 7]), p=dpkt.ip.IP_PROTO_TCP, ttl=61, id=77,
                    data=tcp)
    ip.df = 1
    ip.len = 20 + len(tcp)
    raw = bytes(ip)
    seg = decode(raw)
    assert (ip_ntoa(seg.src), ip_ntoa(seg.dst), seg.sport, seg.dport) == ("192.0.2.1", "198.51.100.7", 40000, 80)
    assert (seg.seq, seg.ack, seg.flags, seg.win, seg.ts, seg.ttl, seg.ip_id) == (
        0xFFFFFFF0, 17, ACK | PSH, 502, (100, 200), 61, 77)
    assert seg.payload == b"GET /" and seg.raw_options is None
    assert encode(seg) == raw


def test_checksum_rfc1071_examples():
    assert checksum(b"") == 0xFFFF
    assert checksum(b"\x00\x01\xf2\x03\xf4\xf5\xf6\xf7") == (~0xDDF2) & 0xFFFF  # RFC 1071 §3 example sum
    assert checksum(b"\xff") == checksum(b"\xff\x00")
    b = encode(linux_syn())
    assert checksum(b[:20]) == 0


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "seg",
    [
        linux_syn(),
        linux_syn(flags=SYN | ACK, ack=5, ts=(1, 3129142531)),
        Segment(C1, C2, 46290, 8888, 124386154, 2638333241, ACK, 512, ts=(3129142531, 2599453128)),
        Segment(C1, C2, 46290, 8888, 124386154, 2638333241, ACK | PSH, 512, b"hello\n"),
        Segment(C2, C1, 8888, 46290, 0, 124386161, RST | ACK, 0),
        Segment(C2, C1, 8888, 46290, 0xFFFFFFFF, 0xFFFFFFFF, 0xFF, 0xFFFF, b"\x00" * 1460, ttl=1, ip_id=0xFFFF),
    ],
    ids=["syn", "syn-ack", "ack-ts", "data", "rst", "extremes"],
)
def test_round_trip(seg):
    b = encode(seg)
    assert decode(b) == seg
    assert encode(decode(b)) == b


def test_non_canonical_options_survive_byte_for_byte():
    """A BSD-style SYN (MSS, NOP, WS, SACK_PERM, TS, EOL padding) and unknown options are kept raw."""
    opts = bytes.fromhex("020405b4" "01030306" "0402" "080a00000001" "00000000" "00000000")
    seg = Segment(C1, C2, 1, 2, 3, 0, SYN, 65535, raw_options=opts)
    b = encode(seg)
    d = decode(b)
    assert (d.mss, d.wscale, d.sack_ok, d.ts) == (1460, 6, True, (1, 0))
    assert d.raw_options == opts
    assert encode(d) == b
    unknown = bytes.fromhex("1e040000")  # kind 30 (MPTCP), length 4
    d2 = decode(encode(Segment(C1, C2, 1, 2, 3, 0, ACK, 1, raw_options=unknown)))
    assert d2.raw_options == unknown and d2.ts is None


# ---------------------------------------------------------------- malformed


def _fix_ip_sum(b: bytearray) -> bytes:
    b[10:12] = b"\0\0"
    b[10:12] = struct.pack("!H", checksum(bytes(b[:20])))
    return bytes(b)


def _with_tcp(b: bytes, tcp: bytes) -> bytes:
    """Replace the TCP part and fix both checksums and the IP length."""
    ip = bytearray(b[:20])
    ip[2:4] = struct.pack("!H", 20 + len(tcp))
    t = bytearray(tcp)
    t[16:18] = b"\0\0"
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(t))
    t[16:18] = struct.pack("!H", checksum(bytes(pseudo) + bytes(t)))
    return _fix_ip_sum(ip) + bytes(t)


GOOD = encode(linux_syn())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (GOOD[:19], "shorter than an IPv4 header"),
        (bytes([0x65]) + GOOD[1:], "IPv6 next header 64 is not TCP"),  # read as IPv6 now
        (_fix_ip_sum(bytearray(bytes([0x44]) + GOOD[1:])), "header length 16"),
        (_fix_ip_sum(bytearray(GOOD[:9] + b"\x11" + GOOD[10:])), "protocol 17"),
        (_fix_ip_sum(bytearray(GOOD[:2] + struct.pack("!H", 61) + GOOD[4:])), "total length 61"),
        (_fix_ip_sum(bytearray(GOOD[:2] + struct.pack("!H", 39) + GOOD[4:])), "total length 39"),
        (GOOD[:10] + b"\x00\x00" + GOOD[12:], "IPv4 header checksum"),
        (GOOD[:-1] + bytes([GOOD[-1] ^ 1]), "TCP checksum"),
        (_with_tcp(GOOD, GOOD[20:32] + bytes([0x40]) + GOOD[33:]), "data offset 16"),
        (_with_tcp(GOOD, GOOD[20:32] + bytes([0xF0]) + GOOD[33:]), "data offset 60"),
        (_with_tcp(GOOD, GOOD[20:32] + bytes([0x60]) + GOOD[33:40] + bytes.fromhex("01010108")), "truncated"),
        (_with_tcp(GOOD, GOOD[20:32] + bytes([0x60]) + GOOD[33:40] + bytes.fromhex("02090000")), "bad length 9"),
        (_with_tcp(GOOD, GOOD[20:32] + bytes([0x60]) + GOOD[33:40] + bytes.fromhex("02010000")), "bad length 1"),
    ],
    ids=["short", "ipv6", "ihl", "udp", "total-long", "total-short", "ip-sum", "tcp-sum", "doff-small",
         "doff-big", "opt-truncated", "opt-overrun", "opt-len-1"],
)
def test_malformed_raises_decode_error(data, message):
    with pytest.raises(DecodeError, match=message):
        decode(data)


def test_verify_false_skips_checksums_only():
    bad = GOOD[:-1] + bytes([GOOD[-1] ^ 1])
    seg = decode(bad, verify=False)
    assert seg.wscale == 6
    with pytest.raises(DecodeError):
        decode(GOOD[:19], verify=False)


def test_trailing_link_padding_is_ignored():
    assert decode(GOOD + b"\0" * 6) == decode(GOOD)


def test_ip_aton_rejects_bad_text():
    assert ip_aton("255.255.255.255") == 0xFFFFFFFF
    for bad in ("1.2.3", "1.2.3.256", "a.b.c.d", "1.2.3.4.5", ""):
        with pytest.raises(ValueError, match="not an IP(v4)? address"):
            ip_aton(bad)


def test_ip_aton_reads_both_families_into_disjoint_integers():
    """IPv6 addresses carry bit 128, so ``::1`` never equals 0.0.0.1 in a table key."""
    from timewait.tcp.segment import V6, ip_ntoa, ip_packed, is_v6

    assert ip_aton("::1") == V6 | 1 != ip_aton("0.0.0.1")
    assert ip_aton("fd00::c0a8:101") == V6 | 0xFD00 << 112 | 0xC0A80101
    assert is_v6(ip_aton("fd00::1")) and not is_v6(ip_aton("255.255.255.255"))
    assert ip_ntoa(ip_aton("FD00:0:0::0001")) == "fd00::1"
    assert ip_ntoa(ip_aton("192.168.1.2")) == "192.168.1.2"
    assert ip_packed(ip_aton("fd00::1")) == bytes.fromhex("fd00" + "00" * 13 + "01")
    assert ip_packed(ip_aton("10.0.0.1")) == bytes((10, 0, 0, 1))
    from timewait.tcp.segment import ula_of

    assert ula_of("10.211.55.5") == "fd00::10:211:55:5"
    assert ip_ntoa(ip_aton(ula_of("192.168.1.255"))) == "fd00::192:168:1:255"
    for bad in ("fd00::g", "1::2::3", ":::"):
        with pytest.raises(ValueError, match="not an IP address"):
            ip_aton(bad)
