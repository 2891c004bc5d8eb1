"""32-bit modular sequence-number arithmetic (RFC 9293 §3.4), in Linux's own helpers.

Sequence numbers and timestamps live on a circle of 2**32. Linux compares them
with ``before()``/``after()`` (``include/net/tcp.h``), which cast the difference
to ``s32``: exactly half the circle apart, each of two numbers is "before" the
other. These are the project's only definitions of those helpers and of the
constants, for the TCP core and everyone else; the compiled build makes them
native calls.
"""

from typing import Final

MOD: Final = 1 << 32
M32: Final = 0xFFFFFFFF   # the 32-bit mask: ``x & M32`` is ``(u32)x``
H32: Final = 0x80000000   # half the circle: ``(x & M32) >= H32`` is ``(s32)x < 0``


def add(a: int, n: int) -> int:
    """``a + n`` modulo 2**32."""
    return (a + n) & M32


def diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` as Linux's ``(s32)(a - b)``."""
    d = (a - b) & M32
    return d - MOD if d >= H32 else d


def before(a: int, b: int) -> bool:
    """``a`` precedes ``b``: ``(s32)(a - b) < 0``."""
    return ((a - b) & M32) >= H32


def after(a: int, b: int) -> bool:
    """``a`` follows ``b``: ``before(b, a)``."""
    return ((b - a) & M32) >= H32


def before_eq(a: int, b: int) -> bool:
    """``!after(a, b)``."""
    return not after(a, b)


def after_eq(a: int, b: int) -> bool:
    """``!before(a, b)``."""
    return not before(a, b)


def newer(a: int, b: int) -> bool:
    """``(s32)(a - b) > 0``: ``a`` is strictly ahead of ``b`` by less than half the circle
    (the test of ``tcp_paws_check`` and ``tcp_timewait_state_process``)."""
    return 0 < ((a - b) & M32) < H32


def between(lo: int, x: int, hi: int) -> bool:
    """``lo <= x <= hi`` on the circle (Linux ``between(seq, s1, s2)``)."""
    return ((x - lo) & M32) <= ((hi - lo) & M32)


def tcp_in_window(seq: int, end_seq: int, s_win: int, e_win: int) -> bool:
    """``tcp_in_window`` (tcp_minisocks.c): the segment ``[seq, end_seq)`` touches the
    window ``[s_win, e_win)``, or is a zero-length segment at its right edge."""
    if seq == s_win:
        return True
    if after(end_seq, s_win) and before(seq, e_win):
        return True
    return seq == e_win and seq == end_seq
