"""`timewait capacity`: exact numbers for every option, and one-line usage errors."""

from __future__ import annotations

import json

import pytest

from timewait.capacity import (
    CapacityQuestion,
    answer,
    parse_ports,
    port_count,
)
from timewait.cli import main
from timewait.errors import UsageError


def ask(**kw) -> dict:
    """The JSON document of one question, as `--json` prints it."""
    return answer(CapacityQuestion(**kw)).to_json()


def step(doc: dict, key: str) -> dict:
    return next(s for s in doc["steps"] if s["key"] == key)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["capacity", *args])
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------- the chapter


def test_chapter_exercise_msl_60_ports_1025_65535(capsys):
    rc, out, err = run_cli(capsys, "--time-wait", "120", "--ports", "1025-65535", "--json")
    assert rc == 0 and err == ""
    doc = json.loads(out)
    assert doc["connections_per_second"] == 537.6
    assert doc["answer"]["value"] == 537.6
    assert doc["answer"]["exact"] == pytest.approx(64511 / 120)
    assert doc["formula"] == "ports / TIME_WAIT"
    assert doc["answer"]["computation"] == "64511 / 120 s = 537.6 conn/s"


def test_msl_is_half_of_time_wait(capsys):
    rc, out, _ = run_cli(capsys, "--msl", "60", "--ports", "1025-65535", "--json")
    assert rc == 0
    assert json.loads(out)["answer"]["value"] == 537.6


def test_linux_defaults():
    doc = ask()
    assert doc["question"]["port_count"] == 28232
    assert doc["answer"]["exact"] == pytest.approx(28232 / 60)
    assert doc["answer"]["value"] == 470.5
    assert [s["key"] for s in doc["steps"]] == ["base"]


def test_port_count_uses_both_parities():
    # PS-2: connect() scans low's parity first, then the other; every port counts.
    assert port_count(32768, 60999) == 28232
    assert port_count(1025, 65535) == 64511  # the kernel uses every port of an odd range too
    assert port_count(40000, 40001) == 2
    assert port_count(5, 5) == 1


def test_rich_output_shows_formula_and_answer(capsys):
    rc, out, _ = run_cli(capsys, "--time-wait", "120", "--ports", "1025-65535")
    assert rc == 0
    assert "ports / TIME_WAIT" in out
    assert "64511 / 120 s = 537.6 conn/s" in out
    assert "Answer: 537.6 conn/s" in out


# ------------------------------------------------------------------- options


def test_destinations_multiply():
    doc = ask(destinations=4)
    s = step(doc, "destinations")
    assert s["exact"] == pytest.approx(4 * 28232 / 60)
    assert s["value"] == 1882.1
    assert s["details"]["per_destination"] == 470.5
    assert "PS-4" in s["explanation"]


def test_tw_reuse_1_limit_is_ports_over_delay():
    s = step(ask(tw_reuse=1), "tw_reuse")
    assert s["value"] == 28232
    assert s["formula"] == "ports x destinations / min(tcp_tw_reuse_delay, TIME_WAIT)"
    assert "timestamps" in s["explanation"] and "PS-5" in s["explanation"]
    assert step(ask(tw_reuse=1, tw_reuse_delay_ms=200), "tw_reuse")["value"] == 141160


def test_tw_reuse_delay_longer_than_time_wait_gains_nothing():
    s = step(ask(tw_reuse=1, tw_reuse_delay_ms=60000, time_wait=30), "tw_reuse")
    assert s["exact"] == pytest.approx(28232 / 30)
    assert "gains nothing" in s["explanation"]


def test_tw_reuse_2_only_on_loopback():
    off = step(ask(tw_reuse=2), "tw_reuse")
    assert off["value"] == 470.5
    assert "loopback" in off["explanation"] and "28232.0 conn/s" in off["explanation"]
    assert step(ask(tw_reuse=2, loopback=True), "tw_reuse")["value"] == 28232
    # Linux's default is 2, so --loopback alone already shows the reuse.
    assert ask(loopback=True)["answer"]["value"] == 28232


def test_tw_reuse_needs_timestamps_and_mode_0_never_reuses():
    s = step(ask(tw_reuse=1, timestamps=False), "tw_reuse")
    assert s["value"] == 470.5 and "TS-1" in s["explanation"]
    assert step(ask(tw_reuse=0, loopback=True), "tw_reuse")["value"] == 470.5


def test_linger0_removes_time_wait_and_says_the_danger():
    s = step(ask(linger0=True), "linger0")
    assert s["value"] is None
    assert "RST" in s["explanation"] and "delayed duplicates" in s["explanation"]
    assert step(ask(linger0=True, request_ms=10), "linger0")["value"] == 2823200


def test_pool_needs_n_ports_and_is_bounded_by_throughput():
    s = step(ask(pool=100, request_ms=5), "pool")
    assert s["value"] == 20000 and s["unit"] == "req/s"
    assert s["details"] == {"ports_needed": 100, "fits": True}
    check = ask(pool=100, request_ms=5, rate=30000)["rate_check"]
    assert check["sustainable"] is False and check["headroom"]["value"] == -10000
    assert check["headroom"]["explanation"] == "No: 30000 req/s is over the limit of 20000.0 req/s."
    assert step(ask(pool=100), "pool")["value"] is None
    big = step(ask(pool=30000), "pool")
    assert big["value"] is None and big["details"]["fits"] is False


def test_max_tw_buckets_below_ports_lifts_the_port_limit():
    s = step(ask(max_tw_buckets=8192), "max_tw_buckets")
    assert s["value"] is None
    assert s["details"]["protected_rate"] == 136.5  # 8192 / 60
    assert "TW-8" in s["explanation"]
    with_life = step(ask(max_tw_buckets=8192, request_ms=10), "max_tw_buckets")
    assert with_life["value"] == (28232 - 8192) / 0.01


def test_max_tw_buckets_above_ports_never_binds():
    s = step(ask(max_tw_buckets=131072), "max_tw_buckets")
    assert s["value"] == 470.5
    assert "never binds" in s["explanation"]


def test_server_closes_frees_client_ports_and_loads_the_server():
    doc = ask(server_closes=True, rate=1000)
    s = step(doc, "server_closes")
    assert s["value"] is None
    assert s["details"]["server_cap_reached_at_rate"] == pytest.approx(131072 / 60, abs=0.05)
    assert s["details"]["four_tuple_reuse_above_rate"] == 470.5
    tw = doc["rate_check"]["time_wait_count"]
    assert tw["value"] == 60000 and tw["details"]["holder"] == "the server"
    capped = ask(server_closes=True, max_tw_buckets=8192, rate=1000)["rate_check"]["time_wait_count"]
    assert capped["value"] == 8192
    assert "The other 863.5 conn/s of closes skip TIME_WAIT (TW-8)" in capped["explanation"]  # 1000 - 8192/60


def test_nat_in_front_shares_public_ports():
    doc = ask(ports=(1025, 65535), time_wait=120, clients=50)
    s = step(doc, "nat")
    assert s["value"] == 537.6  # 64512 public ports / 120 s conntrack TIME_WAIT
    assert s["details"]["binds"] == "the NAT"
    assert s["details"]["nat_timeout_s"] == 120
    assert "nf_conntrack_tcp_timeout_time_wait" in s["explanation"]


def test_nat_one_client_is_bound_by_its_own_ports():
    s = step(ask(nat_ports=64512), "nat")
    assert s["value"] == 470.5 and s["details"]["binds"] == "the clients"


def test_nat_timeout_and_clients():
    s = step(ask(clients=4, nat_timeout=30), "nat")
    assert s["details"]["nat_limit"] == pytest.approx(64512 / 30, abs=0.05)
    assert s["value"] == 1882.1  # 4 x 28232 / 60 is the smaller
    assert s["details"]["binds"] == "the clients"


def test_nat_with_linger0_holds_mapping_for_close_timeout():
    s = step(ask(clients=10, linger0=True), "nat")
    assert s["value"] == 6451.2  # 64512 / 10 s
    assert s["details"]["nat_timeout_s"] == 10


def test_rate_over_the_limit():
    rc = ask(rate=500)["rate_check"]
    assert rc["sustainable"] is False
    assert rc["headroom"]["value"] == pytest.approx(28232 / 60 - 500, abs=0.05)
    assert "EADDRNOTAVAIL" in rc["headroom"]["explanation"]
    assert "56.464 s" in rc["headroom"]["explanation"]  # 28232 / 500
    assert rc["time_wait_count"]["value"] == 28232  # 30000 wanted, capped by ports


def test_rate_within_the_limit_littles_law():
    rc = ask(rate=400)["rate_check"]
    assert rc["sustainable"] is True
    assert rc["headroom"]["value"] == 70.5
    assert rc["time_wait_count"]["value"] == 24000
    assert rc["time_wait_count"]["formula"] == "rate x TIME_WAIT"


def test_rate_exercise_just_under_and_over():
    assert ask(ports=(1025, 65535), time_wait=120, rate=537)["rate_check"]["sustainable"] is True
    assert ask(ports=(1025, 65535), time_wait=120, rate=538)["rate_check"]["sustainable"] is False


# ---------------------------------------------------------------- bad input


def test_bad_port_range_is_one_line(capsys):
    rc, out, err = run_cli(capsys, "--ports", "70000-1")
    assert rc == 2 and out == ""
    assert err.count("\n") == 1
    assert "ports must be LOW-HIGH with 1 <= LOW <= HIGH <= 65535" in err


@pytest.mark.parametrize("text", ["70000-1", "5-4", "0-10", "a-b", "-5-10", "10", "1-2-3"])
def test_parse_ports_rejects(text):
    with pytest.raises(UsageError, match="LOW-HIGH"):
        parse_ports(text)


def test_parse_ports_accepts_sysctl_form():
    assert parse_ports("32768 60999") == (32768, 60999)
    assert parse_ports("1025-65535") == (1025, 65535)


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(tw_reuse=3), "--tw-reuse must be 0, 1 or 2"),
        (dict(tw_reuse_delay_ms=0), "--tw-reuse-delay must be 1..60000"),
        (dict(destinations=0), "--destinations"),
        (dict(time_wait=0), "--time-wait"),
        (dict(pool=0), "--pool"),
        (dict(max_tw_buckets=-1), "--max-tw-buckets"),
        (dict(clients=0), "--clients"),
        (dict(nat_timeout=30), "needs --nat-ports or --clients"),
        (dict(rate=-1), "--rate"),
        (dict(linger0=True, server_closes=True), "exclude each other"),
    ],
)
def test_bad_options_raise_usage_error(kw, words):
    with pytest.raises(UsageError, match=words.replace(".", r"\.")):
        answer(CapacityQuestion(**kw))


def test_time_wait_and_msl_together_is_an_error(capsys):
    rc, _, err = run_cli(capsys, "--time-wait", "60", "--msl", "30")
    assert rc == 2 and "not both" in err
