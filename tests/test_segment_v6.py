"""The IPv6/TCP codec: header layout (RFC 8200), the TCP checksum over the IPv6 pseudo-header
(checked against dpkt and by hand), round trips, and malformed or truncated input."""

from __future__ import annotations

import struct

import dpkt
import pytest

from timewait.tcp.segment import (
    ACK,
    FIN,
    PSH,
    SYN,
    V6,
    DecodeError,
    Segment,
    checksum,
    decode,
    encode,
    ip_aton,
    ip_packed,
)

C1, C2 = ip_aton("fd00::10:211:55:5"), ip_aton("fd00::10:211:55:10")


def v6_syn(**kw) -> Segment:
    seg = Segment(C1, C2, 60494, 8888, 124386153, 0, SYN, 64800, mss=1440, wscale=7, sack_ok=True,
                  ts=(3129142531, 0), ip_id=0x1234)
    for k, v in kw.items():
        setattr(seg, k, v)
    return seg


def test_ipv6_header_layout():
    raw = encode(v6_syn(ttl=63))
    assert len(raw) == 40 + 40  # IPv6 header + TCP with 20 bytes of options
    # version 6, traffic class 0, flow label 0; payload length; next header TCP; hop limit = ttl
    assert raw[:8] == bytes.fromhex("60000000") + struct.pack("!HBB", 40, 6, 63)
    assert raw[8:24] == bytes.fromhex("fd000000000000000010021100550005")
    assert raw[24:40] == bytes.fromhex("fd000000000000000010021100550010")
    assert struct.unpack("!HH", raw[40:44]) == (60494, 8888)
    # ip_id is not on the wire: the same segment with another ip_id is the same bytes
    assert encode(v6_syn(ttl=63, ip_id=7)) == raw


def test_tcp_checksum_is_over_the_ipv6_pseudo_header():
    raw = encode(v6_syn())
    tcp = raw[40:]
    pseudo = raw[8:24] + raw[24:40] + struct.pack("!I", len(tcp)) + b"\0\0\0" + bytes((6,))
    assert checksum(pseudo + tcp) == 0
    # the IPv4 pseudo-header's sum of the same TCP bytes would not verify
    assert checksum(struct.pack("!IIBBH", 1, 2, 0, 6, len(tcp)) + tcp) != 0


def test_checksum_agrees_with_dpkt():
    seg = Segment(C1, C2, 8888, 60494, 1, 2, PSH | ACK, 507, b"hello\n", ts=(5, 6))
    raw = encode(seg)
    ip = dpkt.ip6.IP6(raw)
    assert ip.nxt == 6 and ip.hlim == 64 and ip.plen == len(raw) - 40
    tcp = ip.data
    ours = tcp.sum
    tcp.sum = 0
    ip.data = tcp
    assert dpkt.ip6.IP6(bytes(ip)).data.sum == ours  # dpkt fills in the checksum on pack


def test_decode_a_packet_built_by_dpkt():
    tcp = dpkt.tcp.TCP(sport=33000, dport=80, seq=1000, ack=2000, flags=dpkt.tcp.TH_ACK | dpkt.tcp.TH_FIN,
                       win=1024, data=b"xy")
    ip = dpkt.ip6.IP6(src=ip_packed(C1), dst=ip_packed(C2), nxt=6, hlim=17, plen=len(bytes(tcp)), data=tcp)
    ip.extension_hdrs = {}
    seg = decode(bytes(ip))
    assert (seg.src, seg.dst, seg.sport, seg.dport, seg.seq, seg.ack) == (C1, C2, 33000, 80, 1000, 2000)
    assert seg.flags == ACK | FIN and seg.win == 1024 and seg.payload == b"xy" and seg.ttl == 17
    assert seg.src & V6 and seg.ip_id == 0


@pytest.mark.parametrize("seg", [
    v6_syn(),
    v6_syn(flags=SYN | ACK, ack=99, ttl=1),
    Segment(C2, C1, 8888, 60494, 5, 6, ACK, 0),
    Segment(ip_aton("::1"), ip_aton("::1"), 1, 2, 0xFFFFFFFF, 0, FIN | ACK, 65535, b"\0" * 1440),
])
def test_round_trip(seg):
    seg.ip_id = 0
    assert decode(encode(seg)) == seg


def test_mixed_families_cannot_be_encoded():
    with pytest.raises(ValueError, match="mixes IPv4 and IPv6"):
        encode(Segment(C1, ip_aton("10.0.0.1"), 1, 2, 0, 0, SYN))
    with pytest.raises(ValueError, match="mixes IPv4 and IPv6"):
        encode(Segment(ip_aton("10.0.0.1"), C1, 1, 2, 0, 0, SYN))


GOOD = encode(v6_syn())


def _with(offset: int, data: bytes) -> bytes:
    return GOOD[:offset] + data + GOOD[offset + len(data):]


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty packet"),
    (GOOD[:39], "shorter than an IPv6 header"),
    (GOOD[:40], "payload length 40 does not fit 40 bytes"),
    (GOOD[:79], "payload length 40 does not fit 79 bytes"),
    (_with(4, struct.pack("!H", 10)), "payload length 10"),
    (_with(6, bytes((0,))), "next header 0 is not TCP"),
    (_with(6, bytes((17,))), "next header 17 is not TCP"),
    (_with(52, bytes((0x40,))), "data offset 16 is invalid"),
    (_with(52, bytes((0xF0,))), "data offset 60 is invalid"),
    (_with(79, bytes((GOOD[79] ^ 1,))), "bad TCP checksum"),
    (_with(23, bytes((GOOD[23] ^ 1,))), "bad TCP checksum"),  # the pseudo-header's source
    (bytes((0x50,)) + GOOD[1:], "IP version 5"),
])
def test_malformed_raises_decode_error(data, message):
    with pytest.raises(DecodeError, match=message):
        decode(data)


def test_every_truncation_is_a_decode_error():
    for n in range(len(GOOD)):
        with pytest.raises(DecodeError):
            decode(GOOD[:n])


def test_verify_false_skips_the_checksum_only():
    bad = _with(79, bytes((GOOD[79] ^ 1,)))
    assert decode(bad, verify=False).ts is not None
    with pytest.raises(DecodeError, match="next header"):
        decode(_with(6, bytes((59,))), verify=False)
