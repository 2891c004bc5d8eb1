"""Runs the report tests share: registered scenarios, and small custom topologies.

The custom runs use the simulator's Python API (tests may; ``report`` may not)
to get what the registered scenarios may not have yet: a router on the path,
and a lost packet.
"""

from __future__ import annotations

import shutil

import pytest

from timewait.result import NodeInfo, RunResult
from timewait.tcp.config import SEC


def registered() -> list[str]:
    from timewait.scenarios import all_scenarios

    return list(all_scenarios())


def run_or_skip(name: str, **kw: object) -> RunResult:
    """Run a registered scenario, or skip the test while it is not written yet."""
    from timewait.scenarios import all_scenarios, run_scenario

    if name not in all_scenarios():
        pytest.skip(f"scenario {name!r} is not registered yet")
    return run_scenario(name, **kw)  # type: ignore[arg-type]


def result_of(sim, name: str, *, params: dict | None = None) -> RunResult:
    """A RunResult for a hand-built Simulation, shaped like run_scenario's."""
    nodes = {n: NodeInfo(n, node.kind, list(node.addrs)) for n, node in sim.net.nodes.items()}
    return RunResult(
        scenario=name, profile="linux", seed=sim.seed, params=params or {}, sim_time=sim.sched.now / SEC,
        checks=[], metrics={}, hosts={n: h.snapshot() for n, h in sim.hosts.items()},
        trace=sim.trace, nodes=nodes,
    )


def routed_run(*, lose_last_ack: bool = False, ttl_drop: bool = False) -> RunResult:
    """c1 -- r1 -- c2: an nc session through one router (TTL 64 -> 63), optionally losing c1's last ACK."""
    from timewait.apps.basic import NcClient, NcServer
    from timewait.sim.simulation import Simulation

    sim = Simulation(seed=3)
    c1 = sim.add_host("c1", "10.0.1.5")
    r1 = sim.add_router("r1", "10.0.1.1", "10.0.2.1")
    c2 = sim.add_host("c2", "10.0.2.10")
    sim.link(c1, r1, delay_ms=0.3)
    sim.link(r1, c2, delay_ms=0.5)
    if lose_last_ack:
        sim.fault("drop from=c1 flags=. len=0 nth=2")
    NcServer(c2, 8888)
    NcClient(c1, "10.0.2.10", 8888, lines=[(0.5, b"hi\n")], close_at_s=1.0)
    sim.run(70)
    return result_of(sim, "routed-nc")


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def test_routed_run_has_a_router_hop() -> None:
    r = routed_run()
    kinds = {rec[1] for rec in r.trace.records}
    assert "fwd" in kinds and r.nodes["r1"].kind == "router"


# --------------------------------------------------------------------------- headless Chromium

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
    # No name resolves: nothing the page (or the browser) asks for can leave the machine.
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class PageReport:
    """What loading one page in headless Chromium showed."""

    def __init__(self) -> None:
        self.errors: list[str] = []     # console errors, uncaught exceptions, failed loads
        self.requests: list[str] = []   # every URL the page requested
        self.png: bytes = b""


def _pipe_fds(read_fd: int, write_fd: int) -> None:
    """In the child: put the pipe ends on fds 3 and 4 (moved high first so they cannot collide)."""
    import fcntl
    import os

    r = fcntl.fcntl(read_fd, fcntl.F_DUPFD, 10)
    w = fcntl.fcntl(write_fd, fcntl.F_DUPFD, 10)
    os.dup2(r, 3, inheritable=True)
    os.dup2(w, 4, inheritable=True)


def load_page(path: str, *, width: int = 1200, height: int = 900, timeout_s: float = 60.0) -> PageReport:
    """Open ``path`` in headless Chromium over the DevTools protocol (``--remote-debugging-pipe``).

    Collects console errors, exceptions and every network request, and takes a
    full-page screenshot. Bounded by ``timeout_s``.
    """
    import base64
    import json
    import os
    import select
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    exe = chromium()
    if exe is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    report = PageReport()
    with tempfile.TemporaryDirectory() as profile:
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4.
        proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=lambda: _pipe_fds(to_chrome_r, from_chrome_w),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        deadline = time.monotonic() + timeout_s
        buf = b""
        events: list[dict] = []
        next_id = 0

        def read_message() -> dict | None:
            nonlocal buf
            while b"\0" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("Chromium did not answer in time")
                ready, _, _ = select.select([from_chrome_r], [], [], left)
                if not ready:
                    continue
                chunk = os.read(from_chrome_r, 1 << 20)
                if not chunk:
                    return None
                buf += chunk
            msg, _, buf = buf.partition(b"\0")
            return json.loads(msg)

        def call(method: str, params: dict | None = None, session: str | None = None) -> dict:
            nonlocal next_id
            next_id += 1
            msg: dict = {"id": next_id, "method": method, "params": params or {}}
            if session:
                msg["sessionId"] = session
            os.write(to_chrome_w, json.dumps(msg).encode() + b"\0")
            while True:
                reply = read_message()
                if reply is None:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                if reply.get("id") == next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
                events.append(reply)

        def wait_for(method: str) -> None:
            while not any(e.get("method") == method for e in events):
                msg = read_message()
                if msg is None:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                events.append(msg)

        try:
            target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Network", "Page"):
                call(f"{domain}.enable", session=session)
            call("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
            events.clear()
            call("Page.navigate", {"url": Path(path).resolve().as_uri()}, session)
            wait_for("Page.loadEventFired")
            metrics = call("Page.getLayoutMetrics", session=session)
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            shot = call("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            }, session)
            report.png = base64.b64decode(shot["data"])
            try:
                call("Browser.close")
            except RuntimeError:
                pass
        finally:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            os.close(to_chrome_w)
            os.close(from_chrome_r)
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Network.requestWillBeSent":
            report.requests.append(params["request"]["url"])
        elif method == "Runtime.exceptionThrown":
            report.errors.append(json.dumps(params.get("exceptionDetails", {}))[:300])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            report.errors.append(json.dumps(params.get("args", []))[:300])
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            report.errors.append(params["entry"].get("text", "")[:300])
        elif method == "Network.loadingFailed":
            report.errors.append(f"load failed: {params.get('errorText')}")
    return report
