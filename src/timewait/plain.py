"""Values as a person reads them, not as Python prints them.

Check details, notes and the console's metric tables show data (bytes a host read, lists of
errnos, counters by name) in words: ``"hello\\n"`` rather than ``b'hello\\n'``,
``EADDRNOTAVAIL 3248`` rather than ``{'EADDRNOTAVAIL': 3248}``, ``none`` rather than ``None``
or ``[]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NONE = "none"


def plain(v: Any) -> str:
    """``v`` in words: bytes as quoted text with visible escapes, a list as ``a, b``, a mapping
    as ``k v, k v``, None and empty collections as ``none``, a float in at most 6 digits."""
    if v is None:
        return NONE
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, bytes | bytearray):
        return text_of(bytes(v))
    if isinstance(v, str):
        return v
    if isinstance(v, Mapping):
        return ", ".join(f"{k} {plain(x)}" for k, x in v.items()) or NONE
    if isinstance(v, list | tuple | set | frozenset):
        items = sorted(v, key=str) if isinstance(v, set | frozenset) else v
        return ", ".join(plain(x) for x in items) or NONE
    return str(v)


def text_of(data: bytes) -> str:
    """Bytes on the wire as double-quoted text, control characters escaped (``"hi\\n"``)."""
    out = []
    for b in data:
        c = chr(b)
        if c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif c == '"' or c == "\\":
            out.append("\\" + c)
        elif 32 <= b < 127:
            out.append(c)
        else:
            out.append(f"\\x{b:02x}")
    return '"' + "".join(out) + '"'


def quoted(v: Any) -> str:
    """Data (bytes, or text a host read) as double-quoted text with visible escapes; None: none."""
    if v is None:
        return NONE
    return text_of(v.encode("utf-8", "backslashreplace") if isinstance(v, str) else bytes(v))


def bracketed(addr: str) -> str:
    """An address as it comes before ``:port``: IPv6 in brackets (``[fd00::1]``), IPv4 as is."""
    return f"[{addr}]" if ":" in addr else addr


def endpoint(addr: str, port: int | str) -> str:
    """``addr:port`` as ss and URLs write it: an IPv6 address in brackets (``[fd00::1]:80``)."""
    return f"{bracketed(addr)}:{port}"
