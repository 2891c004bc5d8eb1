"""Only counters Linux has: every nstat name the engine can bump exists in the running kernel's
/proc/net/netstat or /proc/net/snmp (or, for the linux-4.9 profile, in 4.9's), so a counter
compared with the kernel lab or read by a user means what it means in Linux."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "timewait"
# Counters of kernels the profiles model but this one no longer has, with why.
RETIRED = {
    "TcpExtPAWSPassive": "LINUX_MIB_PAWSPASSIVEREJECTED: tcp_tw_recycle's PAWS drop, removed with it in 4.12",
}


def kernel_counters() -> set[str]:
    names: set[str] = set()
    for f in ("/proc/net/netstat", "/proc/net/snmp"):
        lines = Path(f).read_text().splitlines()
        for head in lines[0::2]:
            prefix, _, rest = head.partition(":")
            names.update(prefix + n for n in rest.split())
    return names


def engine_counters() -> set[str]:
    pat = re.compile(r"\"((?:Tcp|TcpExt|Ip|IpExt|Icmp)[A-Z][A-Za-z0-9]+)\"")
    out: set[str] = set()
    for sub in ("tcp", "sim"):
        for f in (SRC / sub).rglob("*.py"):
            out.update(pat.findall(f.read_text()))
    return out


def test_engine_bumps_only_linux_counters():
    if not Path("/proc/net/netstat").exists():
        pytest.skip("not Linux: no /proc/net/netstat to compare with")
    have = kernel_counters()
    missing = sorted(n for n in engine_counters() if n not in have and n not in RETIRED)
    assert missing == [], f"counters Linux does not have: {missing}"
    assert engine_counters() >= {"TcpEstabResets", "TcpExtTW"}  # the pattern finds them
