"""ISNs and timestamp offsets (ISN-1, TS-3): a keyed 4-tuple hash plus a 64 ns clock."""

from __future__ import annotations

from timewait.tcp.config import SEC
from timewait.tcp.isn import SecureSeq
from timewait.tcp.segment import ip_aton

A, B = ip_aton("10.211.55.5"), ip_aton("10.211.55.10")
M32 = 0xFFFFFFFF


def test_ISN_1_same_tuple_same_time_same_isn_and_offset():
    s = SecureSeq(b"secret")
    assert s.seq_and_ts_off(A, B, 40000, 8888, 5 * SEC) == s.seq_and_ts_off(A, B, 40000, 8888, 5 * SEC)
    assert SecureSeq(b"secret").seq_and_ts_off(A, B, 40000, 8888, 0) == s.seq_and_ts_off(A, B, 40000, 8888, 0)


def test_ISN_1_clock_advances_one_per_64ns():
    """[obs] the same 4-tuple 0.7585 s later: ISN larger by 758,500,000 ns >> 6 (~11.85 M)."""
    s = SecureSeq(b"secret")
    t1 = 3 * SEC
    t2 = t1 + 758_500
    i1, off1 = s.seq_and_ts_off(A, B, 40000, 8888, t1)
    i2, off2 = s.seq_and_ts_off(A, B, 40000, 8888, t2)
    assert (i2 - i1) & M32 == ((t2 * 1000) >> 6) - ((t1 * 1000) >> 6) == 11_851_562
    assert off1 == off2  # TS-3: the offset depends on the 4-tuple only


def test_ISN_2_clock_wraps_every_274_9_seconds():
    s = SecureSeq(b"secret")
    period_ns = (1 << 32) * 64
    assert period_ns == 274_877_906_944
    i1, _ = s.seq_and_ts_off(A, B, 40000, 8888, 0)
    # 125 periods is a whole number of microseconds: the clock part is back where it started.
    i2, _ = s.seq_and_ts_off(A, B, 40000, 8888, 125 * period_ns // 1000)
    assert i1 == i2
    i3, _ = s.seq_and_ts_off(A, B, 40000, 8888, period_ns // 1000)
    assert abs(((i3 - i1 + (1 << 31)) & M32) - (1 << 31)) <= 16  # one period later: within 1 µs of it


def test_tuples_and_secrets_look_unrelated():
    s = SecureSeq(b"secret")
    ports = [s.seq_and_ts_off(A, B, p, 8888, 0) for p in range(40000, 40064)]
    assert len({isn for isn, _ in ports}) == 64
    assert len({off for _, off in ports}) == 64  # per-4-tuple offsets (6.18 stable)
    other = SecureSeq(b"another boot")
    assert other.seq_and_ts_off(A, B, 40000, 8888, 0) != s.seq_and_ts_off(A, B, 40000, 8888, 0)


def test_direction_matters():
    """The passive side hashes its own (local, remote) view: not the same value as the client's."""
    s = SecureSeq(b"secret")
    assert s.seq_and_ts_off(A, B, 40000, 8888, 0) != s.seq_and_ts_off(B, A, 8888, 40000, 0)


def test_TS_3_offsets_fit_32_bits():
    s = SecureSeq(b"secret")
    for p in range(32768, 32868):
        isn, off = s.seq_and_ts_off(A, B, p, 80, 123_456_789)
        assert 0 <= isn <= M32 and 0 <= off <= M32


def test_TS_3_per_host_offset_ignores_ports():
    s = SecureSeq(b"secret")
    assert s.ts_off_per_host(A, B) == s.ts_off_per_host(A, B)
    assert s.ts_off_per_host(A, B) != s.ts_off_per_host(B, A)


def test_PS_3_port_offset_rekeys_every_10_seconds():
    """PS-3: secure_ipv4_port_ephemeral mixes jiffies / (10 HZ)."""
    s = SecureSeq(b"secret")
    assert s.port_offset(A, B, 8888, 0) == s.port_offset(A, B, 8888, 10 * SEC - 1)
    changed = sum(s.port_offset(A, B, 8888, k * 10 * SEC) != s.port_offset(A, B, 8888, (k + 1) * 10 * SEC)
                  for k in range(20))
    assert changed == 20
    assert s.port_offset(A, B, 8888, 0) != s.port_offset(A, B, 8889, 0)
