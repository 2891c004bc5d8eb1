"""TS-1..TS-3: the timestamps clock and its offsets, with exact values."""

from __future__ import annotations

from timewait.apps.basic import NcClient, NcServer
from timewait.sim.simulation import Simulation
from timewait.tcp.segment import ACK, SYN
from timewait.trace import TX

C1, C2 = "10.211.55.5", "10.211.55.10"


def run(mode: int) -> tuple[Simulation, list]:
    sim = Simulation(seed=3, sysctls=[f"*:net.ipv4.tcp_timestamps={mode}"])
    c1 = sim.add_host("c1", C1, uptime_s=900.136)
    c2 = sim.add_host("c2", C2, uptime_s=50.0)
    sim.link(c1, c2, delay_ms=0.5)
    NcServer(c2, 8888)
    NcClient(c1, C2, 8888, lines=[(0.25, b"x\n")], close_at_s=0.5)
    sim.run(1)
    return sim, [(r[0], r[2], r[3]) for r in sim.trace.records if r[1] == TX]


def test_TS_2_mode_2_tsval_is_the_uptime_in_ms_sampled_at_transmit():
    _, tx = run(2)
    for t, host, seg in tx:
        base = 900_136 if host == "c1" else 50_000
        assert seg.ts[0] == base + t // 1000, (t, host, seg)


def test_TS_3_mode_1_adds_one_offset_per_4_tuple():
    _, tx = run(1)
    offs = {(host, seg.sport, seg.dport): (seg.ts[0] - (900_136 if host == "c1" else 50_000) - t // 1000) & 0xFFFFFFFF
            for t, host, seg in tx}
    c1_offsets = {v for (h, _, _), v in offs.items() if h == "c1"}
    assert len(c1_offsets) == 1 and c1_offsets != {0}  # one 4-tuple, one fixed non-zero offset


def test_TS_1_mode_0_no_option_anywhere():
    _, tx = run(0)
    assert tx and all(seg.ts is None for _, _, seg in tx)
    syn = next(seg for _, _, seg in tx if seg.flags & (SYN | ACK) == SYN)
    assert syn.mss == 1460 and syn.ts is None
