"""What the report tests share: runs of registered scenarios, small custom topologies, headless Chromium.

The custom runs use the simulator's Python API (tests may; ``report`` may not)
to get what the registered scenarios may not have: a router on the path, and a
lost packet. Chromium is driven either by its ``--screenshot`` command line or
over the DevTools protocol on a pipe (no port is opened).
"""

from __future__ import annotations

import base64
import fcntl
import functools
import io
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from timewait.result import NodeInfo, RunResult
from timewait.tcp.config import SEC


def registered() -> list[str]:
    from timewait.scenarios import all_scenarios

    return list(all_scenarios())


# Settings that keep the big scenarios small (and their checks passing): the views are under test here.
LIGHT: dict[str, dict[str, list[str]]] = {
    "max-rate": {"set": ["ports=40000-40999"]},  # still runs with its trace off, as by default
    "port-exhaustion": {"sysctl": ["*:net.ipv4.ip_local_port_range=40000 40999"]},  # still > MAX_HOPS packets
    "redis-short-connections": {"set": ["connections=200"]},
}


def light_args(name: str) -> list[str]:
    """:data:`LIGHT` as ``timewait run`` options."""
    return [arg for flag, values in LIGHT.get(name, {}).items() for v in values for arg in (f"--{flag}", v)]


@functools.cache
def light_run(name: str) -> RunResult:
    """A registered scenario with :data:`LIGHT` settings, run once per test session."""
    light = LIGHT.get(name, {})
    params = dict(item.split("=", 1) for item in light.get("set", []))
    return run_or_skip(name, params=params or None, sysctls=light.get("sysctl"))


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


def routed_run(*, lose_last_ack: bool = False) -> RunResult:
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
CHROMIUM_TIMEOUT_S = 60.0


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_or_skip() -> str:
    exe = chromium()
    if exe is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    return exe


def screenshot(page: Path, png: Path, profile: Path, *, width: int, height: int) -> str:
    """``chromium --headless --screenshot``: render ``page`` to ``png``; returns Chromium's stderr."""
    exe = chromium_or_skip()
    proc = subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
         f"--window-size={width},{height}", "--enable-logging=stderr", "--v=0", page.resolve().as_uri()],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stderr


def png_pixels(png: bytes) -> Any:
    """The decoded image as a float array (rows, columns, channels), values 0..1."""
    import matplotlib.image

    return matplotlib.image.imread(io.BytesIO(png), format="png")


@dataclass
class PageReport:
    """What loading one page in headless Chromium showed."""

    url: str
    errors: list[str] = field(default_factory=list)     # console errors, uncaught exceptions, failed loads
    requests: list[str] = field(default_factory=list)   # every URL the page requested
    values: dict[str, Any] = field(default_factory=dict)  # the expressions asked for, evaluated after load
    png: bytes = b""


class _DevTools:
    """The DevTools protocol over ``--remote-debugging-pipe``: NUL-separated JSON on fds 3 (in) and 4 (out)."""

    def __init__(self, read_fd: int, write_fd: int, deadline: float) -> None:
        self.read_fd, self.write_fd, self.deadline = read_fd, write_fd, deadline
        self.buf = b""
        self.events: list[dict] = []
        self.next_id = 0

    def read(self) -> dict:
        while b"\0" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self.buf += chunk
        msg, _, self.buf = self.buf.partition(b"\0")
        return json.loads(msg)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        msg: dict = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self.read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> None:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self.read())


def _pipe_fds(read_fd: int, write_fd: int) -> None:
    """In the child: put the pipe ends on fds 3 and 4 (moved high first so they cannot collide)."""
    r = fcntl.fcntl(read_fd, fcntl.F_DUPFD, 10)
    w = fcntl.fcntl(write_fd, fcntl.F_DUPFD, 10)
    os.dup2(r, 3, inheritable=True)
    os.dup2(w, 4, inheritable=True)


def load_pages(paths: list[Path], *, evaluate: tuple[str, ...] = (), width: int = 1200, height: int = 900,
               timeout_s: float = CHROMIUM_TIMEOUT_S) -> list[PageReport]:
    """Open each of ``paths`` in one headless Chromium over the DevTools protocol (``--remote-debugging-pipe``).

    For each page: every console error, uncaught exception, log error and failed
    load; every network request (``Network.requestWillBeSent``); the value of
    each JavaScript expression in ``evaluate``; and a full-page screenshot.
    One browser launch for all of them, bounded by ``timeout_s``.
    """
    exe = chromium_or_skip()
    reports = []
    with tempfile.TemporaryDirectory() as profile:
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # Not pass_fds=(3, 4): Popen would check those in the parent, where they may not exist.
            # The pipe ends are close-on-exec; only the inheritable copies made on 3 and 4 reach Chromium.
            close_fds=False, preexec_fn=lambda: _pipe_fds(to_chrome_r, from_chrome_w),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        cdp = _DevTools(from_chrome_r, to_chrome_w, time.monotonic() + timeout_s)
        try:
            target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Network", "Page"):
                cdp.call(f"{domain}.enable", session=session)
            cdp.call("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
            for path in paths:
                report = PageReport(Path(path).resolve().as_uri())
                cdp.events.clear()
                cdp.call("Page.navigate", {"url": report.url}, session)
                cdp.wait_for("Page.loadEventFired")
                for expr in evaluate:
                    res = cdp.call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session)
                    report.values[expr] = res.get("result", {}).get("value")
                metrics = cdp.call("Page.getLayoutMetrics", session=session)
                size = metrics.get("cssContentSize") or metrics["contentSize"]
                shot = cdp.call("Page.captureScreenshot", {
                    "format": "png", "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
                }, session)
                report.png = base64.b64decode(shot["data"])
                _collect(cdp.events, report)
                reports.append(report)
            try:
                cdp.call("Browser.close")
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
    return reports


def load_page(path: Path, **kw: Any) -> PageReport:
    """:func:`load_pages` for one page."""
    return load_pages([path], **kw)[0]


def _collect(events: list[dict], report: PageReport) -> None:
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
