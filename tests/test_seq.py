"""32-bit sequence arithmetic: Linux's before()/after() on the circle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timewait.tcp import seq

u32 = st.integers(0, seq.M32)


@pytest.mark.parametrize(
    ("a", "b", "before"),
    [
        (1, 2, True),
        (2, 1, False),
        (5, 5, False),
        (0xFFFFFFFF, 0, True),          # wrap: the last number precedes 0
        (0, 0xFFFFFFFF, False),
        (0, 0x7FFFFFFF, True),          # just under half the circle ahead
        (0, 0x80000000, True),          # exactly half: (s32)(0 - 2**31) = INT_MIN < 0, and
        (0x80000000, 0, True),          # the other way round too, as in Linux
    ],
)
def test_before_matches_linux_s32(a, b, before):
    assert seq.before(a, b) is before


def test_diff_is_signed_32_bit():
    assert seq.diff(0, 0xFFFFFFFF) == 1
    assert seq.diff(0xFFFFFFFF, 0) == -1
    assert seq.diff(0x80000000, 0) == -(1 << 31)
    assert seq.diff(0x7FFFFFFF, 0) == (1 << 31) - 1


def test_add_wraps():
    assert seq.add(0xFFFFFFFF, 1) == 0
    assert seq.add(0xFFFFFF00, 0x200) == 0x100
    assert seq.add(5, -10) == 0xFFFFFFFB


def test_between_on_the_circle():
    assert seq.between(0xFFFFFFF0, 0x5, 0x10)
    assert seq.between(0xFFFFFFF0, 0xFFFFFFF0, 0x10)
    assert seq.between(0xFFFFFFF0, 0x10, 0x10)
    assert not seq.between(0xFFFFFFF0, 0x11, 0x10)
    assert not seq.between(0xFFFFFFF0, 0xFFFFFFEF, 0x10)


@given(u32, u32)
def test_before_after_are_mirror_images(a, b):
    assert seq.before(a, b) == seq.after(b, a)
    assert seq.before_eq(a, b) == (not seq.after(a, b))
    assert seq.after_eq(a, b) == (not seq.before(a, b))
    if a == b:
        assert not seq.before(a, b) and not seq.after(a, b)


@given(u32, st.integers(-(1 << 31) + 1, (1 << 31) - 1))
def test_diff_inverts_add(a, n):
    assert seq.diff(seq.add(a, n), a) == n
    assert seq.after(seq.add(a, n), a) == (n > 0)
