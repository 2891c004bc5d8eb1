"""Injected faults with nftables: drop the first packet of a kind, once, and count it."""

from __future__ import annotations

import json
import subprocess

from timewait.kernel.topology import KernelLab

PURE_ACK = "tcp flags & (fin|syn|rst|ack) == ack"
ANY_FIN = "tcp flags & fin == fin"


def drop_once(lab: KernelLab, host: str, table: str, hook: str, match: str, v6: bool = False) -> None:
    """Drop the first packet matching ``match`` per (source address, source port) at ``hook`` of ``host``.

    The first packet adds its flow to a dynamic set and is dropped; later ones
    find it there and pass. A set, not a conntrack mark: a dropped packet's
    fresh conntrack entry would be dropped with it, and its mark lost. With
    ``v6`` the table is an ``ip6`` one: it sees IPv6 packets only (``match``
    then says ``ip6 saddr``, not ``ip saddr``).
    """
    fam, key, kind = ("ip6", "ip6 saddr", "ipv6_addr") if v6 else ("ip", "ip saddr", "ipv4_addr")
    lab.nft(host, f"""table {fam} {table} {{
  set seen {{ type {kind} . inet_service; flags dynamic; }}
  chain c {{
    type filter hook {hook} priority -150; policy accept;
    {key} . tcp sport @seen accept
    {match} add @seen {{ {key} . tcp sport }} counter drop
  }}
}}
""")


def dropped(lab: KernelLab, host: str, table: str, v6: bool = False) -> int:
    """How many packets the table's counter has dropped (0 if the table is gone)."""
    r = subprocess.run(["ip", "netns", "exec", lab.ns(host), "nft", "-j", "list", "table", "ip6" if v6 else "ip", table],
                       capture_output=True, text=True, timeout=5)
    if r.returncode != 0:
        return 0
    for item in json.loads(r.stdout).get("nftables", []):
        for e in (item.get("rule") or {}).get("expr", []):
            if "counter" in e:
                return int(e["counter"].get("packets", 0))
    return 0
