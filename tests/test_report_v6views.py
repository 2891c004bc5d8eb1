"""IPv6 in the socket views (issue 16 item 4): ss writes ``[addr]:port``, netstat ``tcp6`` and
``addr:port`` with columns as wide as the widest address; the ladder and the HTML explorer
read and write IPv6 endpoints the same way."""

from __future__ import annotations

import pytest

from timewait.errors import UsageError
from timewait.plain import endpoint
from timewait.report.explorer import _endpoint
from timewait.report.ladder import parse_conn
from timewait.report.sockets import Socket, netstat_lines
from timewait.report.ss import ss_rows
from timewait.tcp.segment import V6, ip_aton, ula_of

C1, C2 = ip_aton(ula_of("10.211.55.5")), ip_aton(ula_of("10.211.55.10"))


def _tw() -> Socket:
    return Socket("c1", (C1, 60494, C2, 8888), "TIME_WAIT", 0, timer="timewait", deadline_us=59_000_000)


def _listen() -> Socket:
    return Socket("c2", (V6, 8888, 0, 0), "LISTEN", 0, send_q=16)


def test_ss_brackets_ipv6_endpoints_and_widens_its_columns() -> None:
    rows = ss_rows([_tw(), _listen()], 0)
    assert rows == [
        "State      Recv-Q  Send-Q  Local Address:Port         Peer Address:Port          Process",
        "TIME-WAIT  0       0       [fd00::10:211:55:5]:60494  [fd00::10:211:55:10]:8888  timer:(timewait,59sec,0)",
        "LISTEN     0       16      [::]:8888                  [::]:*",
    ]


def test_netstat_says_tcp6_and_grows_columns_past_23_characters() -> None:
    rows = netstat_lines([_tw(), _listen()])
    assert rows == [
        "Proto Recv-Q Send-Q Local Address           Foreign Address         State",
        "tcp6       0      0 fd00::10:211:55:5:60494 fd00::10:211:55:10:8888 TIME_WAIT",
        "tcp6       0     16 :::8888                 :::*                    LISTEN",
    ]
    wide = Socket("c1", (ip_aton("fd00:1234:5678::10:211:55:5"), 60494, C2, 8888), "ESTABLISHED", 0)
    rows = netstat_lines([wide])
    assert rows == [
        "Proto Recv-Q Send-Q Local Address                      Foreign Address                    State",
        "tcp6       0      0 fd00:1234:5678:0:10:211:55:5:60494 fd00::10:211:55:10:8888            ESTABLISHED",
    ]


def test_ipv4_rows_are_netstats_own() -> None:
    s = Socket("c1", (ip_aton("10.211.55.5"), 60494, ip_aton("10.211.55.10"), 8888), "TIME_WAIT", 0)
    lst = Socket("c2", (0, 8888, 0, 0), "LISTEN", 0, send_q=16)
    assert netstat_lines([s, lst])[1:] == [
        "tcp        0      0 10.211.55.5:60494       10.211.55.10:8888       TIME_WAIT",
        "tcp        0     16 0.0.0.0:8888            0.0.0.0:*               LISTEN",
    ]
    assert (s.local, s.peer, lst.peer) == ("10.211.55.5:60494", "10.211.55.10:8888", "0.0.0.0:*")


def test_explorer_labels_ipv6_endpoints_as_ss() -> None:
    assert _endpoint(C1, 60494) == "[fd00::10:211:55:5]:60494"
    assert _endpoint(0, 0, True) == "[::]:*"
    assert _endpoint(V6, 8888) == "[::]:8888"
    assert _endpoint(0, 0) == "0.0.0.0:*"
    assert _endpoint(ip_aton("10.211.55.5"), 60494) == "10.211.55.5:60494"


@pytest.mark.parametrize("text", ["[fd00::10:211:55:5]:60494", "fd00::10:211:55:5:60494"])
def test_ladder_conn_reads_an_ipv6_endpoint_both_ways(text: str) -> None:
    assert parse_conn(text) == (C1, 60494)
    assert parse_conn(endpoint(ula_of("10.211.55.5"), 60494)) == (C1, 60494)  # what the views print


def test_ladder_conn_refuses_a_bad_ipv6_endpoint() -> None:
    with pytest.raises(UsageError, match=r"\[fd00::10:211:55:5\]:60494"):
        parse_conn("[fd00::zz]:80")


def test_an_ipv6_runs_ss_and_netstat_tables() -> None:
    from timewait.report.sockets import netstat_at
    from timewait.report.ss import ss_table
    from timewait.scenarios import run_scenario

    r = run_scenario("nc-timewait", params={"family": "ipv6"}, census_at=[0.0002])  # as --ss takes it
    port = r.metrics["client_port"]
    c2 = ss_table(r, 0.0002, host="c2").splitlines()[1:]
    assert c2 == [
        "State     Recv-Q  Send-Q  Local Address:Port         Peer Address:Port          Process",
        "LISTEN    0       1       [::]:8888                  [::]:*",
        f"SYN-RECV  0       0       [fd00::10:211:55:10]:8888  [fd00::10:211:55:5]:{port}  timer:(on,1sec,0)",
    ]
    assert netstat_at(r, 3.0)["c1"] == [
        f"tcp6       0      0 fd00::10:211:55:5:{port} fd00::10:211:55:10:8888 TIME_WAIT"]
    assert len(str(port)) == 5  # the row above is exactly 23 characters wide: no column grew


def test_an_ipv6_runs_ladder_and_html_label_its_endpoints() -> None:
    from timewait.report.html import render_html, reproduce_command
    from timewait.report.ladder import build_ladder, connections
    from timewait.report.ladder_svg import render_svg
    from timewait.scenarios import run_scenario

    r = run_scenario("nc-timewait", params={"family": "ipv6"})
    port = r.metrics["client_port"]
    assert connections(r) == [f"[fd00::10:211:55:5]:{port} <-> [fd00::10:211:55:10]:8888"]
    whole = build_ladder(r)
    lad = build_ladder(r, conn=f"[fd00::10:211:55:5]:{port}")  # the spelling connections() prints
    assert lad.addrs == {"c1": "fd00::10:211:55:5", "c2": "fd00::10:211:55:10"}
    assert len(lad.hops) == len(whole.hops) == 8
    svg = render_svg(lad)
    assert ">fd00::10:211:55:5<" in svg and ">fd00::10:211:55:10<" in svg
    with pytest.raises(UsageError, match=r"connections: \[fd00::10:211:55:5\]:\d+ <-> \[fd00::10:211:55:10\]:8888"):
        build_ladder(r, conn="[fd00::10:211:55:5]:1")
    page = render_html(r)
    assert '"l":"[::]:8888","p":"[::]:*"' in page
    assert f'"l":"[fd00::10:211:55:5]:{port}","p":"[fd00::10:211:55:10]:8888"' in page
    assert "tcp6 " in page and "--set family=ipv6" in reproduce_command(r)
