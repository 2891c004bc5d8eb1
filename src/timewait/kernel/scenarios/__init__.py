"""Scenarios on the running kernel: the simulator's experiments in real network namespaces.

Each module registers a function ``run(lab: KLab)`` with :func:`kscenario`
under the simulator scenario's name, with the same parameter and metric names
(``timewait kernel compare`` lines them up). A kernel scenario may lower a
default to keep a run short (``kernel_defaults``, said on stderr) and may add
parameters the simulator does not need (``kernel_only``, e.g. ``wait``).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from timewait.errors import UsageError
from timewait.kernel import counters as kcounters
from timewait.kernel import diag
from timewait.kernel.topology import KernelLab, KernelUnavailable, require_lab, stop_process
from timewait.result import Findings, NodeInfo, RunResult
from timewait.scenarios import COMMON_PARAMS, Param
from timewait.tcp.segment import ip_aton, ula_of
from timewait.trace import Trace

#: What the running kernel cannot show, and why (one line each).
UNSUPPORTED: dict[str, str] = {
    "tw-recycle-nat": "tcp_tw_recycle was removed in Linux 4.12; this kernel cannot show it "
                      "(run it in the simulator: timewait run tw-recycle-nat)",
    "two-msl": "a computed timeline, not something a kernel does (timewait run two-msl)",
    "quiz": "a quiz, answered by the simulator's scenarios",
}

#: Parameters every kernel twin takes besides its scenario's own: ``--set family=ipv6``, the
#: simulator's own parameter (each IPv4 address of the scenario as its ULA twin, ula_of).
KERNEL_COMMON: dict[str, Param] = {"family": COMMON_PARAMS["family"]}

#: Common simulator parameters the kernel cannot honour, and why.
REFUSED_COMMON: dict[str, str] = {
    "timewait": "--set timewait=off is a lesson knob of the simulator; a real kernel always keeps TIME_WAIT",
    "msl": "--set msl: Linux's TIME_WAIT is the compiled-in TCP_TIMEWAIT_LEN (60 s), no MSL to set",
    "mem": "--set mem: the kernel lab cannot change this machine's memory; set "
           "--sysctl HOST:net.ipv4.tcp_max_tw_buckets=N instead",
}


@dataclass
class KernelScenario:
    name: str
    fn: Callable[[KLab], None]
    params: dict[str, Param]
    kernel_only: frozenset[str] = frozenset()
    kernel_defaults: dict[str, Any] = field(default_factory=dict)
    default_sysctls: list[str] = field(default_factory=list)
    note: str = ""
    #: ``(metric, fn)``: a metric the kernel run reads from the kernel and the simulator's run
    #: shows only in a view; ``fn(sim_result, kernel_value)`` derives the simulator's from its trace.
    sim_view: tuple[str, Callable[[Any, Any], Any]] | None = None
    #: Refuses parameters the kernel twin cannot run (a UsageError), before root or a namespace is needed.
    validate: Callable[[dict[str, Any]], None] | None = None
    #: Why this twin cannot run on IPv6 (``--set family=ipv6``); None: it can.
    no_ipv6: str | None = "its kernel twin is built for IPv4 only"


KREGISTRY: dict[str, KernelScenario] = {}


def kscenario(name: str, *, kernel_params: dict[str, Param] | None = None,
              kernel_defaults: dict[str, Any] | None = None, default_sysctls: list[str] | None = None,
              note: str = "", sim_view: tuple[str, Callable[[Any, Any], Any]] | None = None,
              validate: Callable[[dict[str, Any]], None] | None = None,
              no_ipv6: str | None = "its kernel twin is built for IPv4 only",
              ) -> Callable[[Callable[[KLab], None]], Callable[[KLab], None]]:
    """Register the kernel version of simulator scenario ``name``.

    It takes the simulator scenario's parameters (one table, so the two cannot
    drift) plus ``kernel_params`` that only the kernel run has, and ``family``
    (:data:`KERNEL_COMMON`); ``no_ipv6=None`` says the twin runs on IPv6 too,
    else it is the reason it does not.
    """
    from timewait.scenarios import get_scenario

    extra = dict(kernel_params or {})
    params = {**get_scenario(name).params, **extra}

    def deco(fn: Callable[[KLab], None]) -> Callable[[KLab], None]:
        KREGISTRY[name] = KernelScenario(name, fn, params, frozenset(extra), dict(kernel_defaults or {}),
                                         list(default_sysctls or []), note, sim_view, validate, no_ipv6)
        return fn

    return deco


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def all_kernel_scenarios() -> dict[str, KernelScenario]:
    _load_all()
    return dict(sorted(KREGISTRY.items()))


def get_kernel_scenario(name: str) -> KernelScenario:
    _load_all()
    if name in UNSUPPORTED:
        raise KernelUnavailable(f"{name}: {UNSUPPORTED[name]}")
    sc = KREGISTRY.get(name)
    if sc is None:
        raise UsageError(f"no kernel version of scenario {name!r}; the kernel lab has: {', '.join(sorted(KREGISTRY))}")
    return sc


def parse_kernel_params(sc: KernelScenario, params: dict[str, Any] | None) -> dict[str, Any]:
    """The scenario's parameters: kernel defaults overlaid with ``params`` (validated)."""
    out = {k: sc.kernel_defaults.get(k, p.default) for k, p in sc.params.items()}
    table = {**KERNEL_COMMON, **sc.params}
    for k, v in (params or {}).items():
        if k in REFUSED_COMMON:
            raise KernelUnavailable(REFUSED_COMMON[k])
        if k not in table:
            raise UsageError(f"unknown parameter {k!r} for kernel {sc.name}; allowed: {', '.join(sorted(table))}")
        out[k] = table[k].parse(k, v)  # family only when given: an IPv4 run's parameters stay as they were
    if out.get("family") == "ipv6" and sc.no_ipv6 is not None:
        raise KernelUnavailable(f"--set family=ipv6: kernel {sc.name} runs on IPv4 only: {sc.no_ipv6}")
    if sc.validate is not None:
        sc.validate(out)
    return out


def parse_sysctl_flags(items: list[str]) -> list[tuple[str, str, str]]:
    """``HOST:NAME=VALUE`` flags (HOST may be ``*``) as triples."""
    from timewait.kernel.sysctls import refuse_global
    from timewait.sim.simulation import parse_sysctl_override
    from timewait.sim.sysctl import SYSCTLS

    out = []
    for text in items:
        host, name, value = parse_sysctl_override(text)
        if "." not in name:  # a bare name, as the simulator takes it: tcp_tw_reuse
            name = "net.ipv4." + name
        if name.endswith("tcp_tw_recycle"):
            raise KernelUnavailable(f"{name}: tcp_tw_recycle was removed in Linux 4.12; this kernel is "
                                    f"{os.uname().release} (try the simulator with --profile linux-4.9)")
        refuse_global(host, name, value)
        if name in SYSCTLS:  # a value out of the kernel's bounds is refused before root is needed
            SYSCTLS[name].parse(name, value)
        out.append((host, name, value))
    return out


def check_sysctl_hosts(name: str, params: dict[str, Any] | None, items: list[str]) -> None:
    """``--sysctl HOST:…`` must name a host of the scenario: checked against the simulator's world
    of the same scenario (its hosts are the kernel twin's), built and stopped before its first
    event, so the error comes before root or a namespace is needed."""
    from timewait.scenarios import get_scenario
    from timewait.sweep import scenario_hosts

    wanted = {h for h, _n, _v in parse_sysctl_flags(items)} - {"*"}
    if not wanted:
        return
    hosts = scenario_hosts(get_scenario(name), {k: str(v) for k, v in (params or {}).items()}, "linux", 1)
    if hosts is None:
        return  # the scenario says what is wrong with its parameters when it runs
    unknown = sorted(wanted - set(hosts))
    if unknown:
        raise UsageError(f"--sysctl for unknown host {unknown[0]!r}; hosts: {', '.join(hosts)}")


def check_sysctl_flags(items: list[str]) -> list[tuple[str, str, str]]:
    """``--sysctl`` flags parsed and confined: per-namespace ``net.*`` settings with values the kernel takes.

    Needs root (:func:`require_lab` first); every refusal comes before any
    namespace of the run is made.
    """
    from timewait.kernel.sysctls import confine

    return confine(parse_sysctl_flags(items))


def kernel_profile() -> str:
    return f"kernel-{os.uname().release}"


class KLab(Findings):
    """What a kernel scenario works with: the namespaces, parameters, checks and metrics."""

    def __init__(self, sc: KernelScenario, lab: KernelLab, params: dict[str, Any],
                 sysctls: list[tuple[str, str, str]], pcap: str | None = None, pcap_host: str | None = None,
                 progress: bool = False) -> None:
        super().__init__()
        self.scenario = sc
        self.k = lab
        self.p = params
        self.sysctls = sysctls
        self.pcap = pcap
        self.pcap_host = pcap_host
        self.pcap_proc: Any = None  # tcpdump of --pcap, into the lab's temp dir until the run ends
        self.pcap_tmp = os.path.join(lab.tmpdir, "pcap-flag.pcap")
        self.progress = progress
        self.v6 = params.get("family") == "ipv6"
        if self.v6:
            lab.family = socket.AF_INET6  # the lab's sockets (KernelLab.socket) are IPv6 ones
        self.addrs: dict[str, list[str]] = {}
        self.kinds: dict[str, str] = {}
        self.t0 = time.monotonic()
        self.t0_wall = time.time()
        self.t_end: float | None = None
        self.paths: list[Any] = []  # emulated paths (kernel/path.py): their records are the run's trace
        self.trace_records: list[tuple] = []

    # -- building
    def addr(self, v4: str) -> str:
        """The run's address for the scenario's IPv4 address ``v4``: itself, or on IPv6 its ULA
        twin (``10.211.55.5`` -> ``fd00::10:211:55:5``, :func:`~timewait.tcp.segment.ula_of`)."""
        if not self.v6:
            return v4
        return "::" if v4 == "0.0.0.0" else ula_of(v4)

    @property
    def plen(self) -> int:
        """The prefix length of the scenario's /24 links: /112 on IPv6 (the last group varies)."""
        return 112 if self.v6 else 24

    @property
    def families(self) -> tuple[int, ...]:
        """The address family of the run's sockets, for inet_diag dumps."""
        return (socket.AF_INET6,) if self.v6 else (socket.AF_INET,)

    def host(self, name: str, *addrs: str, kind: str = "host") -> str:
        """A namespace for ``name``; ``addrs`` are recorded for the result's node table."""
        ns = self.k.add_host(name, forward=kind != "host", v6=self.v6)
        self.addrs[name] = [a.split("/")[0] for a in addrs]
        self.kinds[name] = kind
        return ns

    def two_hosts(self, a: str, a_addr: str, b: str, b_addr: str, *, delay_ms: float | None = None) -> Any:
        """Hosts ``a`` and ``b`` joined on one /24: a veth pair, or with ``delay_ms`` an emulated
        path (:meth:`path`, returned). The simulator's :meth:`timewait.scenarios.Lab.two_hosts`.
        On IPv6 the addresses are IPv6 ones (:meth:`addr`) on a /112."""
        self.host(a, a_addr)
        self.host(b, b_addr)
        if delay_ms is None:
            self.k.link(a, f"{a_addr}/{self.plen}", b, f"{b_addr}/{self.plen}")
            return None
        return self.path(a, f"{a_addr}/{self.plen}", b, f"{b_addr}/{self.plen}", delay_ms=delay_ms)

    def ready(self) -> None:
        """Topology built: apply ``--sysctl`` flags, start the capture, start the clock."""
        hosts = list(self.k.hosts)
        for host, name, value in self.sysctls:
            if host != "*" and host not in self.k.hosts:
                raise UsageError(f"--sysctl for unknown host {host!r}; hosts: {', '.join(hosts)}")
            for h in hosts if host == "*" else [host]:
                self.k.sysctl(h, name, value)
        if self.pcap:
            h = self.pcap_host or hosts[0]
            on_path = any(h in (p.a[0], p.b[0]) for p in self.paths)
            self.pcap_proc = self.k.tcpdump(h, "tun0" if on_path else "eth0", self.pcap_tmp)
        self.start_clock()

    def start_clock(self, at_wall: float | None = None) -> None:
        """Time 0 of the run (now, or the wall-clock instant ``at_wall``)."""
        now_wall, now_mono = time.time(), time.monotonic()
        at = now_wall if at_wall is None else at_wall
        self.t0_wall = at
        self.t0 = now_mono - (now_wall - at)

    def sleep_until(self, t: float) -> None:
        """Wait until ``t`` seconds on the run's clock (at once if that has passed)."""
        left = t - self.now()
        if left > 0:
            time.sleep(left)

    def rel(self, wall: float) -> float:
        """A wall-clock (tcpdump) time on the run's clock."""
        return wall - self.t0_wall

    def path(self, a: str, a_addr: str, b: str, b_addr: str, delay_ms: float = 0.0,
             jitter_ms: float = 0.0, seed: int = 1, a_routes: tuple[str, ...] = (),
             b_routes: tuple[str, ...] = (), max_age_s: float | None = None) -> Any:
        """Join hosts ``a`` and ``b`` through an emulated path (TUN devices, faults, delay); started.

        ``a_routes``/``b_routes`` are prefixes routed into each end's device (a router end needs
        them); ``max_age_s`` is the path's MSL (see :class:`timewait.kernel.path.Path`). It is
        stopped with the lab, and what crossed it becomes the run's trace.
        """
        from timewait.kernel.path import Path as EmulatedPath
        from timewait.kernel.tun import Tun

        if ":" in a_addr and not _codec_reads_ipv6():
            raise KernelUnavailable("--set family=ipv6: the emulated path's packet codec "
                                    "(timewait.tcp.segment) reads IPv4 only in this build")
        ta = Tun(self.k.ns(a), a_addr, routes=a_routes)
        tb = Tun(self.k.ns(b), b_addr, routes=b_routes)
        p = EmulatedPath((a, ta), (b, tb), clock=self.now, delay_ms=delay_ms, jitter_ms=jitter_ms,
                         seed=seed, max_age_s=max_age_s).start()
        self.paths.append(p)
        return p

    def stop_paths(self) -> None:
        """Stop every emulated path; their records (time order) become the run's trace."""
        for p in self.paths:
            p.stop()
        recs = [r for p in self.paths for r in p.records]
        recs += self.trace_records
        recs.sort(key=lambda r: r[0])
        self.trace_records = recs
        self.paths = []

    # -- recording
    def now(self) -> float:
        """Seconds since :meth:`ready` (the kernel run's clock, like the simulator's time)."""
        return time.monotonic() - self.t0

    def sample(self, name: str, t: float, value: float) -> None:
        """As the simulator's, with ``t`` to the millisecond (a wall clock's)."""
        super().sample(name, round(t, 3), value)

    def tw(self, host: str) -> list[diag.DiagSock]:
        """The TIME_WAIT sockets of ``host`` now."""
        return diag.dump(self.k.ns(host), states=diag.mask(diag.TIME_WAIT), families=self.families)

    def counters(self, host: str) -> dict[str, int]:
        return kcounters.read(self.k.ns(host))

    def sysctl_int(self, host: str, name: str) -> int:
        return int(self.k.read_sysctl(host, name))

    def may_reuse(self, host: str, peer: str | None = None) -> tuple[bool, str]:
        """PS-5 on this kernel's sysctls of ``host`` (not loopback: the lab's links are veths or
        paths), with ``peer``'s timestamps setting when given; the reason in words."""
        from timewait.tcp.timewait import tw_reuse_verdict

        ts = "net.ipv4.tcp_timestamps"
        peer_ts = self.sysctl_int(peer, ts) != 0 if peer is not None else True
        return tw_reuse_verdict(self.sysctl_int(host, "net.ipv4.tcp_tw_reuse"), self.sysctl_int(host, ts) != 0,
                                peer_timestamps=peer_ts)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """``{host: {states, counters, sysctls}}`` as the simulator reports them."""
        from timewait.sim.sysctl import SYSCTLS

        out = {}
        for host, ns in self.k.hosts.items():
            socks = diag.dump(ns)
            sysctls: dict[str, Any] = {}
            for name in SYSCTLS:
                try:
                    v = self.k.read_sysctl(host, name)
                except OSError:
                    continue
                sysctls[name] = int(v) if v.lstrip("-").isdigit() else v
            out[host] = {"states": diag.state_counts(socks), "counters": kcounters.tcp_nonzero(kcounters.read(ns)),
                         "sysctls": sysctls}
        return out


def run_kernel(name: str, *, params: dict[str, Any] | None = None, sysctls: list[str] | None = None,
               seed: int = 1, pcap: str | None = None, pcap_host: str | None = None,
               progress: bool = False, messages: list[str] | None = None) -> RunResult:
    """Run scenario ``name`` on the running kernel and return the simulator's :class:`RunResult` shape.

    ``messages`` collects the sentences worth telling the user (lowered
    defaults, kernel notes); the CLI prints them on stderr.
    """
    sc = get_kernel_scenario(name)
    p = parse_kernel_params(sc, params)
    if pcap is not None:
        from timewait.report.outputs import check_output

        check_output("--pcap", Path(pcap), (".pcap", ".cap"))
    parse_sysctl_flags(list(sysctls or []))  # refuse kernel.*, vm.* ... even where the lab cannot run
    check_sysctl_hosts(name, params, list(sysctls or []))
    require_lab()
    user = check_sysctl_flags(list(sysctls or []))
    defaults = [t for t in parse_sysctl_flags(sc.default_sysctls)
                if not any(u[0] in (t[0], "*") and u[1] == t[1] for u in user)]
    if messages is not None:
        lowered = {k: v for k, v in sc.kernel_defaults.items() if k not in (params or {})}
        if lowered:
            messages.append("kernel run defaults: " + ", ".join(f"{k}={v}" for k, v in lowered.items())
                            + " (the simulator's are larger; --set to change)")
        if defaults:
            messages.append("kernel run sysctls: " + ", ".join(f"{h}:{n}={v}" for h, n, v in defaults))
        if sc.note:
            messages.append(sc.note)
    with KernelLab() as k:
        lab = KLab(sc, k, p, defaults + user, pcap=pcap, pcap_host=pcap_host, progress=progress)
        try:
            sc.fn(lab)
        finally:
            lab.stop_paths()
        sim_time = round(lab.t_end if lab.t_end is not None else lab.now(), 3)
        hosts = lab.snapshot()
        if pcap is not None:
            _place_pcap(lab, Path(pcap), messages)
    public = {k2: v for k2, v in p.items()}
    nodes = {n: NodeInfo(n, lab.kinds.get(n, "host"), [_aton(a) for a in lab.addrs.get(n, [])]) for n in hosts}
    if messages is not None:
        messages.extend(lab.notes)
    trace = Trace(enabled=bool(lab.trace_records))
    trace.records = lab.trace_records
    return RunResult(scenario=name, profile=kernel_profile(), seed=seed, params=public, sim_time=sim_time,
                     checks=lab.checks, metrics=lab.metrics, hosts=hosts, trace=trace, nodes=nodes,
                     contrast="\n".join(lab.notes), series=lab.series, sysctl_overrides=list(sysctls or []))


def _place_pcap(lab: KLab, path: Path, messages: list[str] | None) -> None:
    """Stop the ``--pcap`` capture and move it into place atomically; say "wrote" only if it was."""
    import shutil

    from timewait.report.outputs import write_atomically

    note = messages if messages is not None else []
    if lab.pcap_proc is None:
        note.append(f"--pcap {path}: not written (the scenario ended before its capture started)")
        return
    stop_process(lab.pcap_proc)  # tcpdump flushes and closes the file on SIGTERM
    if not os.path.exists(lab.pcap_tmp) or os.path.getsize(lab.pcap_tmp) < 24:  # not even a pcap header
        note.append(f"--pcap {path}: not written (tcpdump produced no capture)")
        return

    def copy(out: BinaryIO) -> None:
        with open(lab.pcap_tmp, "rb") as src:
            shutil.copyfileobj(src, out)

    write_atomically(path, copy)
    note.append(f"wrote {path}")


def _codec_reads_ipv6() -> bool:
    """Whether :func:`timewait.tcp.segment.decode` reads back an IPv6 packet it encoded."""
    from timewait.tcp.segment import Segment, decode, encode

    a, b = ip_aton("fd00::1"), ip_aton("fd00::2")
    try:
        return decode(encode(Segment(a, b, 1, 2, 0, 0, 0x02, 1000, b"")), verify=False).src == a
    except Exception:  # noqa: BLE001 - any failure means: not this build
        return False


def _aton(a: str) -> int:
    return ip_aton(a)


def progress_line(text: str, done: float | None = None, total: float | None = None) -> None:
    """A status bar on stderr when it is a terminal (long kernel waits; :func:`timewait.progress.status`):
    ``done`` of ``total`` seconds give it a bar and an ETA; ``""`` removes it."""
    from timewait.progress import status

    status(text, done, total)
