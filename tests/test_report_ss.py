"""ss -tan -o tables and netstat rows rebuilt from the trace."""

from __future__ import annotations

import pytest

from test_report_support import run_or_skip
from timewait.errors import UsageError
from timewait.report.sockets import key_moments, sockets_at, to_us
from timewait.report.ss import print_ms_timer, ss_summary, ss_table


@pytest.fixture(scope="module")
def nc():
    return run_or_skip("nc-timewait")


def _tw(nc) -> tuple[float, float]:
    return nc.metrics["time_wait_entered_at"], nc.metrics["time_wait_left_at"]


def test_print_ms_timer_matches_iproute2() -> None:
    assert print_ms_timer(59_000) == "59sec"
    assert print_ms_timer(59_999) == "59sec"
    assert print_ms_timer(60_000) == "1min"
    assert print_ms_timer(90_000) == "1min30sec"
    assert print_ms_timer(200) == "200ms"
    assert print_ms_timer(5_300) == "5.300ms"  # ss's own odd spelling of 5.3 s
    assert print_ms_timer(0) == "0ms"


def test_countdown_one_second_after_close_reads_59sec(nc) -> None:
    close_at = float(nc.params.get("close_at", 2.0))
    table = ss_table(nc, close_at + 1, host="c1")
    rows = [ln for ln in table.splitlines() if ln.startswith("TIME-WAIT")]
    assert len(rows) == 1
    assert "timer:(timewait,59sec,0)" in rows[0]
    assert "10.211.55.5:" in rows[0] and "10.211.55.10:8888" in rows[0]
    assert "TIME-WAIT" not in ss_table(nc, close_at + 1, host="c2")


def test_time_wait_gone_after_60_seconds(nc) -> None:
    entered, left = _tw(nc)
    assert left - entered == pytest.approx(60.0)
    assert "TIME-WAIT" in ss_table(nc, entered + 59.999, host="c1")
    assert "TIME-WAIT" not in ss_table(nc, entered + 60, host="c1")


def test_fin_wait_2_shows_the_timewait_timer() -> None:
    # On Linux nc's server closes within the delayed ACK of the FIN, whose ACK then rides on its
    # own FIN (DA-4): c1 passes FIN_WAIT_2 in an instant. The textbook profile ACKs at once, so
    # c1's orphan waits in FIN_WAIT_2 (a record) until the server's FIN.
    nc = run_or_skip("nc-timewait", profile="rfc793")
    fw2 = [r for r in nc.trace.records if r[1] == "state" and r[5] == "FIN_WAIT_2"]
    assert fw2
    at = fw2[0][0] / 1e6
    table = ss_table(nc, at, host="c1")
    row = next(ln for ln in table.splitlines() if ln.startswith("FIN-WAIT-2"))
    assert "timer:(timewait," in row


def test_established_socket_shows_unacked_bytes_and_rto(nc) -> None:
    # nc sends "hello\n" at 1.0 s; a moment later it is in flight.
    table = ss_table(nc, 1.0001, host="c1")
    row = next(ln for ln in table.splitlines() if ln.startswith("ESTAB"))
    assert row.split()[2] == "6" and "timer:(on," in row


def test_summary_counts_per_remote_and_local(nc) -> None:
    text = ss_summary(nc, float(nc.params.get("close_at", 2.0)) + 1)
    assert text.splitlines()[0].endswith(": 1")
    assert "10.211.55.10:8888" in text and "10.211.55.5 " in text


def test_bad_host_and_time_are_usage_errors(nc) -> None:
    with pytest.raises(UsageError, match="no host 'zz'"):
        ss_table(nc, 1, host="zz")
    with pytest.raises(UsageError, match="covers 0 to"):
        ss_table(nc, nc.sim_time + 10)


def test_key_moments_after_close_and_after_expiry(nc) -> None:
    moments = key_moments(nc)
    entered, left = _tw(nc)
    after_close = [m for m in moments if entered <= m.at_us / 1e6 < left]
    assert after_close
    socks = sockets_at(nc, after_close[0].at_us)
    assert [s.state for s in socks["c1"]] == ["TIME_WAIT"] and socks["c2"] == []
    assert any(abs(m.at_us / 1e6 - left) < 1e-6 for m in moments)
    assert sockets_at(nc, to_us(left))["c1"] == []


def test_listeners_are_listed_while_open_with_their_backlog() -> None:
    """ss and netstat list LISTEN sockets: built from the bind/listen/close calls in the trace."""
    lla = run_or_skip("lost-last-ack")
    table = ss_table(lla, 3.0, host="c2")
    row = next(ln for ln in table.splitlines() if ln.startswith("LISTEN"))
    assert row.split()[1:5] == ["0", "16", "0.0.0.0:8888", "0.0.0.0:*"]
    # nc -l closes its listener once it has accepted: at 1 s c2 of nc-timewait has none.
    nc = run_or_skip("nc-timewait")
    assert not any(s.state == "LISTEN" for s in sockets_at(nc, to_us(1.0))["c2"])
    assert any(s.state == "LISTEN" for s in sockets_at(nc, 0)["c2"])


def test_netstat_spells_states_as_net_tools() -> None:
    from timewait.report.sockets import Socket, netstat_lines

    rows = netstat_lines([Socket("c1", (1, 2, 3, 4), "FIN_WAIT_1", 0), Socket("c1", (1, 2, 3, 5), "SYN_RECEIVED", 0),
                          Socket("c1", (1, 9, 0, 0), "LISTEN", 0)])
    assert [r.split()[-1] for r in rows[1:]] == ["FIN_WAIT1", "SYN_RECV", "LISTEN"]
