"""``--set family=ipv6`` (issue 16 item 4): the chapter's scenarios on IPv6, their addresses mapped
into the ULA prefix (``ula_of``), and the scenarios whose point does not hold there refused."""

from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest

from test_report_support import have
from timewait.errors import UsageError
from timewait.scenarios import (
    REGISTRY,
    Scenario,
    all_scenarios,
    family_addr,
    family_prefix,
    get_scenario,
    parse_params,
    run_scenario,
)
from timewait.tcp.segment import ULA_PREFIX, ip_aton, ip_ntoa, is_v6, ula_of

IPV6 = sorted(n for n, sc in all_scenarios().items() if not sc.no_ipv6)
IPV4_ONLY = sorted(n for n, sc in all_scenarios().items() if sc.no_ipv6)
# Settings that keep the big ones small; their checks hold the same (see test_report_support.LIGHT).
LIGHT = {"max-rate": {"ports": "40000-40999"}, "redis-short-connections": {"connections": "200"}}
LIGHT_SYSCTL = {"port-exhaustion": ["*:net.ipv4.ip_local_port_range=40000 40999"]}
# The NAT scenarios' own addresses (TEST-NET ranges) under fd00:: too.
NAT_V6 = {"nat": {"nat": ["fd00::203:0:113:1"], "server": ["fd00::198:51:100:10"]},
          "tw-recycle-nat": {"nat": ["fd00::203:0:113:1"], "server": ["fd00::198:51:100:10"],
                             "A": ["fd00::192:168:1:10"], "B": ["fd00::192:168:1:11"]}}


def test_family_is_a_common_parameter_ipv4_by_default() -> None:
    sc = get_scenario("nc-timewait")
    assert parse_params(sc, None)["family"] == "ipv4"
    assert parse_params(sc, {"family": "ipv6"})["family"] == "ipv6"
    with pytest.raises(UsageError, match=r"^--set family='ipv5': allowed ipv4, ipv6$"):
        parse_params(sc, {"family": "ipv5"})
    # the default is not a parameter of the result: IPv4 runs' JSON is what it was
    assert "family" not in run_scenario("nc-timewait", trace=False).params


def test_the_chapters_addresses_map_into_the_ula_prefix() -> None:
    assert family_addr({"family": "ipv6"}, "10.211.55.5") == "fd00::10:211:55:5"
    assert family_addr({"family": "ipv4"}, "10.211.55.5") == "10.211.55.5"
    assert family_addr({}, "10.211.55.5") == "10.211.55.5"  # a kernel twin's parameters: IPv4
    v6 = {"family": "ipv6"}
    assert family_prefix(v6, "192.168.1.0/24") == "fd00::192:168:1:0/112"
    assert family_prefix(v6, "10.211.0.0/16") == "fd00::10:211:0:0/96"
    assert family_prefix({"family": "ipv4"}, "192.168.1.0/24") == "192.168.1.0/24"
    inside = ipaddress.IPv6Network(family_prefix(v6, "192.168.1.0/24"))
    assert all(ipaddress.IPv6Address(ula_of(f"192.168.1.{i}")) in inside for i in (0, 10, 255))
    assert ipaddress.IPv6Address(ula_of("192.168.2.10")) not in inside


def test_every_chapter_scenario_has_an_ipv6_version() -> None:
    # nat and tw-recycle-nat too: NAT66 masquerade shares conntrack and the port allocator with
    # NAT44, and 4.9's tcp_tw_recycle checked peers of either family (tcp_conn_request).
    assert IPV4_ONLY == []
    assert {"nc-timewait", "ttl", "delayed-duplicate", "lost-last-ack", "two-msl", "tw-reuse", "timestamps",
            "port-exhaustion", "max-rate", "quiz", "nat", "tw-recycle-nat"} <= set(IPV6)


def test_a_scenario_without_an_ipv6_version_is_refused_before_it_runs(monkeypatch) -> None:
    ran: list[str] = []
    sc = Scenario("v4-only", "a scenario whose point is IPv4's", lambda lab: ran.append("ran"),
                  no_ipv6="its point is the IPv4 header's")
    monkeypatch.setitem(REGISTRY, sc.name, sc)
    monkeypatch.setattr("timewait.scenarios._load_all", lambda: None)
    with pytest.raises(UsageError, match=r"^--set family=ipv6: v4-only has no IPv6 version: its point is the IPv4 "
                                         r"header's$"):
        run_scenario("v4-only", params={"family": "ipv6"})
    assert ran == []
    run_scenario("v4-only")
    assert ran == ["ran"]


def test_a_bad_family_is_one_line_and_exit_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "timewait", "run", "nc-timewait", "--set", "family=ipv5"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "timewait: error: --set family='ipv5': allowed ipv4, ipv6\n"


def _ula_text(a: int) -> bool:
    """``a`` is :func:`ula_of` of some dotted quad."""
    text = ip_ntoa(a)
    if not (is_v6(a) and text.startswith(ULA_PREFIX)):
        return False
    quad = ".".join(text.removeprefix(ULA_PREFIX).split(":"))
    try:
        return ula_of(quad) == text
    except ValueError:
        return False


@pytest.mark.parametrize("name", IPV6)
def test_ipv6_version_passes_its_checks_on_ula_addresses(name: str) -> None:
    params = {"family": "ipv6", **LIGHT.get(name, {})}
    r = run_scenario(name, params=params, sysctls=LIGHT_SYSCTL.get(name), trace=False)
    failed = [f"{c.name}: {c.detail}" for c in r.checks if not c.passed]
    assert r.checks and not failed, failed
    assert r.params["family"] == "ipv6"
    addrs = {n: node.addrs for n, node in r.nodes.items()}
    if name == "quiz":  # no hosts of its own: its evidence is IPv6 runs of the other scenarios
        assert r.metrics["runs"] and all("family=ipv6" in k for k in r.metrics["runs"]), list(r.metrics["runs"])
        assert "[fd00::10:211:55:2]:61594" in r.metrics["statements"]["C"]["evidence"][0]
        return
    assert addrs and all(a and all(_ula_text(x) for x in a) for a in addrs.values()), \
        {n: [ip_ntoa(x) for x in a] for n, a in addrs.items()}
    for node, want in NAT_V6.get(name, {}).items():
        assert [ip_ntoa(x) for x in addrs[node]] == want


def test_an_ipv6_runs_hosts_are_the_chapters_addresses_under_fd00() -> None:
    r = run_scenario("nc-timewait", params={"family": "ipv6"}, trace=False)
    assert {n: [ip_ntoa(a) for a in node.addrs] for n, node in r.nodes.items()} == {
        "c1": ["fd00::10:211:55:5"], "c2": ["fd00::10:211:55:10"]}


def _expert(pcap) -> dict[str, list[str]]:
    """tshark's expert info by section (Errors, Warns, Notes, Chats): its summary rows."""
    proc = subprocess.run(["tshark", "-r", str(pcap), "-n", "-o", "tcp.check_checksum:TRUE", "-q", "-z", "expert"],
                          capture_output=True, text=True, timeout=120, check=True)
    assert [ln for ln in proc.stderr.splitlines() if ln.strip() and "Running as user" not in ln] == []
    out: dict[str, list[str]] = {}
    section = None
    for ln in proc.stdout.splitlines():
        head = ln.split(" (")[0]
        if head in ("Errors", "Warns", "Notes", "Chats"):
            section = head
            out[section] = []
        elif section and ln.strip() and not ln.startswith("=") and "Frequency" not in ln:
            out[section].append(" ".join(ln.split()))
    return out


# The quiz has no packets of its own; max-rate runs with its trace off (counters only).
PCAP = [n for n in IPV6 if n not in ("quiz", "max-rate")]


@pytest.mark.skipif(not have("tshark"), reason="tshark is not installed (apt-get install tshark)")
@pytest.mark.parametrize("name", PCAP)
def test_tshark_decodes_an_ipv6_runs_pcap_without_a_warning(name: str, tmp_path) -> None:
    """Every packet is IPv6 between ULA addresses with a good TCP checksum; tshark has no error
    and no warning but the TCP story's own (a reset, a segment not captured: group Sequence)."""
    pcap = tmp_path / f"{name}-v6.pcap"
    light = [a for k, v in LIGHT.get(name, {}).items() for a in ("--set", f"{k}={v}")]
    light += [a for v in LIGHT_SYSCTL.get(name, []) for a in ("--sysctl", v)]
    subprocess.run([sys.executable, "-m", "timewait", "run", name, "--set", "family=ipv6", *light,
                    "--pcap", str(pcap)], check=True, capture_output=True, timeout=600)
    expert = _expert(pcap)
    assert expert.get("Errors", []) == [], expert
    assert all(" Sequence TCP " in row for row in expert.get("Warns", [])), expert["Warns"]
    fields = subprocess.run(["tshark", "-r", str(pcap), "-n", "-o", "tcp.check_checksum:TRUE", "-T", "fields",
                             "-e", "ipv6.src", "-e", "ipv6.dst", "-e", "tcp.checksum.status", "-e", "ip.src",
                             "-e", "_ws.malformed"], capture_output=True, text=True, timeout=120, check=True)
    rows = [ln.split("\t") for ln in fields.stdout.splitlines()]
    assert rows
    assert all(_ula_text(ip_aton(r[0])) and _ula_text(ip_aton(r[1])) for r in rows), rows[:3]
    assert {r[2] for r in rows} == {"1"}  # every TCP checksum verified good
    assert {r[3] for r in rows} == {""}  # no IPv4 packet at all
    assert {r[4] for r in rows} == {""}  # nothing malformed


@pytest.mark.skipif(not have("tshark"), reason="tshark is not installed (apt-get install tshark)")
def test_nc_timewaits_ipv6_pcap_is_between_c1_and_c2_with_no_warning_at_all(tmp_path) -> None:
    pcap = tmp_path / "nc-v6.pcap"
    subprocess.run([sys.executable, "-m", "timewait", "run", "nc-timewait", "--set", "family=ipv6",
                    "--pcap", str(pcap)], check=True, capture_output=True, timeout=300)
    expert = _expert(pcap)
    assert "Errors" not in expert and "Warns" not in expert, expert
    fields = subprocess.run(["tshark", "-r", str(pcap), "-n", "-T", "fields", "-e", "ipv6.src", "-e", "ipv6.dst"],
                            capture_output=True, text=True, timeout=120, check=True)
    assert {tuple(ln.split("\t")) for ln in fields.stdout.splitlines()} == {
        ("fd00::10:211:55:5", "fd00::10:211:55:10"), ("fd00::10:211:55:10", "fd00::10:211:55:5")}
