"""32-bit modular sequence-number arithmetic (RFC 9293 §3.4, Linux ``before()``/``after()``)."""

MOD = 1 << 32
MASK = MOD - 1
HALF = 1 << 31


def add(a: int, n: int) -> int:
    """``a + n`` modulo 2**32."""
    return (a + n) & MASK


def diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` as Linux's ``(s32)(a - b)``."""
    d = (a - b) & MASK
    return d - MOD if d >= HALF else d


def before(a: int, b: int) -> bool:
    """``a`` precedes ``b`` (``(s32)(a - b) < 0``)."""
    return ((a - b) & MASK) >= HALF


def after(a: int, b: int) -> bool:
    """``a`` follows ``b`` (``(s32)(b - a) < 0``)."""
    return ((b - a) & MASK) >= HALF


def before_eq(a: int, b: int) -> bool:
    return not after(a, b)


def after_eq(a: int, b: int) -> bool:
    return not before(a, b)


def between(lo: int, x: int, hi: int) -> bool:
    """``lo <= x <= hi`` on the circle (Linux ``between(seq, s1, s2)``)."""
    return ((x - lo) & MASK) <= ((hi - lo) & MASK)
