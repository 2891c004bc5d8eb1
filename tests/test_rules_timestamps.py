"""TS-1..TS-3 on two hosts: negotiation, the timestamps clock and its offsets, with exact values.

c1 (10.211.55.5, up 900.136 s) talks to c2 (10.211.55.10:8888, up 50 s) over a 0.5 ms link, so
TSval = uptime in ms + simulated ms + the offset of the profile in force.
"""

from __future__ import annotations

import pytest

from conftest import flags_text
from timewait.apps.basic import NcClient
from timewait.sim.simulation import Simulation
from timewait.tcp.segment import ACK, SYN, ip_aton
from timewait.trace import TX

C1, C2 = "10.211.55.5", "10.211.55.10"
A, B = ip_aton(C1), ip_aton(C2)
UPTIME_MS = {"c1": 900_136, "c2": 50_000}
M32 = 0xFFFFFFFF


def run(mode: int | None = 1, *, c1_mode: int | None = None, c2_mode: int | None = None, clients: int = 1,
        profile: str = "linux", offsets: str | None = None) -> tuple[Simulation, list]:
    """``clients`` nc sessions from c1 (started 10 ms apart) to c2; returns the sim and every
    transmitted ``(time_us, host, segment)``."""
    sysctls = [] if mode is None else [f"*:net.ipv4.tcp_timestamps={mode}"]
    if c1_mode is not None:
        sysctls.append(f"c1:net.ipv4.tcp_timestamps={c1_mode}")
    if c2_mode is not None:
        sysctls.append(f"c2:net.ipv4.tcp_timestamps={c2_mode}")
    sim = Simulation(profile=profile, seed=3, sysctls=sysctls)
    c1 = sim.add_host("c1", C1, uptime_s=900.136)
    c2 = sim.add_host("c2", C2, uptime_s=50.0)
    if offsets is not None:
        c1.cfg.ts_offsets = c2.cfg.ts_offsets = offsets
    sim.link(c1, c2, delay_ms=0.5)
    lsock = c2.socket()
    lsock.bind(0, 8888)
    lsock.listen()

    def accept(ls) -> None:  # every connection: read, close on EOF
        while (s := ls.accept()) is not None:
            s.on_data = lambda s: s.recv()
            s.on_eof = lambda s: s.close()

    lsock.on_accept = accept
    for k in range(clients):
        sim.at(k * 0.01, lambda: NcClient(c1, C2, 8888, lines=[(0.25, b"x\n")], close_at_s=0.5))
    sim.run(1)
    return sim, [(r[0], r[2], r[3]) for r in sim.trace.records if r[1] == TX]


def offset(host: str, t: int, seg) -> int:
    """TSval minus the host's monotonic ms clock at transmit time."""
    return (seg.ts[0] - UPTIME_MS[host] - t // 1000) & M32


def test_TS_2_mode_2_tsval_is_the_uptime_in_ms_sampled_at_transmit():
    _, tx = run(2)
    assert len(tx) >= 8
    for t, host, seg in tx:
        assert seg.ts[0] == UPTIME_MS[host] + t // 1000, (t, host, seg)


def test_TS_3_mode_1_adds_the_upper_half_of_the_isn_hash_per_4_tuple():
    """6.18 stable: the offset is the upper 32 bits of the siphash that yields the ISN, keyed by
    each side's own (local, remote, lport, rport): one fixed offset per 4-tuple and direction,
    different for two ports to the same destination."""
    sim, tx = run(1, clients=2)
    c1, c2 = sim.hosts["c1"], sim.hosts["c2"]
    ports = sorted({seg.sport for _, host, seg in tx if host == "c1"})
    assert len(ports) == 2
    expect = {}
    for p in ports:
        expect["c1", p] = c1.secure.seq_and_ts_off(A, B, p, 8888, 0)[1]
        expect["c2", p] = c2.secure.seq_and_ts_off(B, A, 8888, p, 0)[1]
    for t, host, seg in tx:
        port = seg.sport if host == "c1" else seg.dport
        assert offset(host, t, seg) == expect[host, port], (t, host, seg)
    assert len(set(expect.values())) == 4


def test_TS_3_linux_4_9_has_no_offset():
    _, tx = run(None, profile="linux-4.9")
    assert all(offset(host, t, seg) == 0 for t, host, seg in tx)


def test_TS_3_linux_4_11_offset_per_host_pair():
    sim, tx = run(1, clients=2, offsets="host")
    c1, c2 = sim.hosts["c1"], sim.hosts["c2"]
    want = {"c1": c1.secure.ts_off_per_host(A, B), "c2": c2.secure.ts_off_per_host(B, A)}
    assert all(offset(host, t, seg) == want[host] for t, host, seg in tx)
    assert len({seg.sport for _, host, seg in tx if host == "c1"}) == 2


def test_TS_3_linux_4_10_random_offset_per_connection():
    """4.10: each connection draws its own offset; fixed for its lifetime."""
    _, tx = run(1, clients=2, offsets="random")
    per_conn: dict = {}
    for t, host, seg in tx:
        per_conn.setdefault((host, seg.sport if host == "c1" else seg.dport), set()).add(offset(host, t, seg))
    assert all(len(v) == 1 for v in per_conn.values())
    c1_offsets = [next(iter(v)) for (h, _), v in per_conn.items() if h == "c1"]
    assert len(c1_offsets) == 2 and c1_offsets[0] != c1_offsets[1]


def test_TS_1_mode_0_no_option_anywhere():
    _, tx = run(0)
    assert tx and all(seg.ts is None for _, _, seg in tx)
    syn = next(seg for _, _, seg in tx if seg.flags & (SYN | ACK) == SYN)
    assert syn.mss == 1460 and syn.ts is None


@pytest.mark.parametrize(("c1_mode", "c2_mode"), [(1, 0), (0, 1)], ids=["server-off", "client-off"])
def test_TS_1_either_side_off_means_no_timestamps_after_the_syn(c1_mode, c2_mode):
    """The SYN carries the option iff the client's tcp_timestamps != 0; the SYN-ACK iff the SYN
    had one and the server's is != 0; nothing after that carries it."""
    sim, tx = run(None, c1_mode=c1_mode, c2_mode=c2_mode)
    (t0, _, syn), = [(t, h, s) for t, h, s in tx if s.flags == SYN]
    off = sim.hosts["c1"].secure.seq_and_ts_off(A, B, syn.sport, 8888, 0)[1]
    assert t0 == 0 and syn.ts == (((UPTIME_MS["c1"] + off) & M32, 0) if c1_mode else None)
    assert [(t, h, flags_text(s.flags)) for t, h, s in tx] == [
        (0, "c1", "S"), (500, "c2", "S."), (1000, "c1", "."), (250_000, "c1", "P."), (250_500, "c2", "."),
        (500_000, "c1", "F."), (500_500, "c2", "F."), (501_000, "c1", ".")]
    assert all(s.ts is None for t, h, s in tx if s.flags != SYN)
