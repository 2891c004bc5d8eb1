"""Initial sequence numbers and timestamp offsets, as Linux derives them.

``secure_tcp_seq_and_ts_off`` (net/core/secure_seq.c): a keyed hash of the
4-tuple plus a clock that advances once every 64 ns (ISN-1). Linux uses
siphash with a boot-time secret; we use keyed BLAKE2b with a secret drawn from
the simulation's seeded RNG, which has the property that matters: the same
4-tuple always maps to the same offset, different tuples look unrelated.
The upper 32 bits of the same hash are the per-4-tuple timestamp offset
(TS-3, Linux 6.18 stable).

IPv6 (``secure_tcpv6_seq``, ``secure_tcpv6_ts_off``, ``secure_ipv6_port_ephemeral``) hashes
the 16-byte addresses in place of the 4-byte ones (V6-8); the IPv4 path is unchanged.
"""

from __future__ import annotations

import hashlib
import struct

_blake2b = hashlib.blake2b
_PACK = {n: struct.Struct(f"!{n}I").pack for n in (2, 3, 4)}
_PACK3 = _PACK[3]
_V4_MAX = 0xFFFFFFFF  # addresses above are IPv6 (timewait.tcp.segment.is_v6)


def _pack6(saddr: int, daddr: int, *words: int) -> bytes:
    """The IPv6 hash input: both 16-byte addresses, then the 32-bit words."""
    m = (1 << 128) - 1
    return ((saddr & m).to_bytes(16, "big") + (daddr & m).to_bytes(16, "big")
            + b"".join(w.to_bytes(4, "big") for w in words))


class SecureSeq:
    """Keyed 4-tuple hashes for ISNs, TS offsets and the port-search offset."""

    __slots__ = ("_key", "_port_key", "_ts_key", "tick_ns", "_port_cache", "_port_epoch", "_seq_h")

    def __init__(self, secret: bytes, tick_ns: int = 64) -> None:
        self.tick_ns = tick_ns  # Linux: 64 ns; RFC 793's clock: 4 µs
        self._key = hashlib.blake2b(secret + b"seq", digest_size=16).digest()
        self._port_key = hashlib.blake2b(secret + b"port", digest_size=16).digest()
        self._ts_key = hashlib.blake2b(secret + b"tshost", digest_size=16).digest()
        self._port_cache: dict[tuple[int, int, int], int] = {}  # this 10 s epoch's port hashes
        self._port_epoch = -1
        # The ISN hash keyed once: copying a keyed state skips hashing the key block per call.
        self._seq_h = _blake2b(digest_size=8, key=self._key)

    @staticmethod
    def _h64(key: bytes, *words: int) -> int:
        data = _PACK[len(words)](*words)
        return int.from_bytes(_blake2b(data, digest_size=8, key=key).digest(), "big")

    def seq_and_ts_off(self, saddr: int, daddr: int, sport: int, dport: int, now_us: int) -> tuple[int, int]:
        """``(isn, ts_offset)`` for a connection from ``saddr:sport`` to ``daddr:dport``.

        ISN = low 32 bits of the hash + ``now_ns / tick`` (``>> 6`` on Linux); the offset is
        the upper 32 bits. IPv6 addresses are hashed as 16 bytes each (``secure_tcpv6_seq``).
        """
        b = self._seq_h.copy()
        if saddr > _V4_MAX:
            b.update(_pack6(saddr, daddr, (sport << 16) | dport))
        else:
            b.update(_PACK3(saddr, daddr, (sport << 16) | dport))
        h = int.from_bytes(b.digest(), "big")  # = _h64(self._key, saddr, daddr, sport << 16 | dport)
        isn = ((h & 0xFFFFFFFF) + (now_us * 1000) // self.tick_ns) & 0xFFFFFFFF
        return isn, h >> 32

    def ts_off_per_host(self, saddr: int, daddr: int) -> int:
        """Linux 4.11-era per-host-pair timestamp offset."""
        if saddr > _V4_MAX:
            return int.from_bytes(_blake2b(_pack6(saddr, daddr), digest_size=8, key=self._ts_key).digest(),
                                  "big") >> 32
        return self._h64(self._ts_key, saddr, daddr) >> 32

    def port_offset(self, saddr: int, daddr: int, dport: int, now_us: int) -> int:
        """``secure_ipv4_port_ephemeral``: 64-bit hash, re-keyed by time every 10 s (PS-3)."""
        epoch = now_us // 10_000_000
        if epoch != self._port_epoch:
            self._port_epoch = epoch
            self._port_cache.clear()
        k = (saddr, daddr, dport)
        h = self._port_cache.get(k)
        if h is None:
            if saddr > _V4_MAX:  # secure_ipv6_port_ephemeral
                h = int.from_bytes(_blake2b(_pack6(saddr, daddr, dport, epoch), digest_size=8,
                                            key=self._port_key).digest(), "big")
            else:
                h = self._h64(self._port_key, saddr, daddr, dport, epoch)
            self._port_cache[k] = h
        return h
