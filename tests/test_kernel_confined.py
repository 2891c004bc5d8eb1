"""The kernel lab stays inside its namespaces and cleans up only what is its own (issue 15 part 4).

--sysctl takes only per-namespace net.* settings (kernel.hostname is refused
before any namespace exists); cleanup spares labs whose owner runs and
removes a SIGKILLed run's namespaces, veths and temp dir; inspect --netns
without root is one line; --pcap is checked before the run and written
atomically; and the root namespace's sysctls, nft ruleset, links, namespace
list and temp dirs are the same after a run, a failed run, an interrupted run
and a killed run followed by cleanup as before it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from kernel_support import lab_missing

CLI = [sys.executable, "-m", "timewait"]

#: Root-namespace settings that change by themselves, whatever the lab does.
VOLATILE = {
    "kernel.ns_last_pid": "the last pid handed out: every process started anywhere changes it",
    "kernel.random.uuid": "a fresh UUID on every read",
    "kernel.random.entropy_avail": "the entropy estimate rises and falls with the machine's activity",
    "kernel.pty.nr": "pseudo-terminals other programs open and close",
    "net.netfilter.nf_conntrack_count": "connections the host's own conntrack is tracking right now",
}


def _need_lab() -> None:
    reason = lab_missing()
    if reason:
        pytest.skip(reason)


def _cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=timeout)


def _netns() -> list[str]:
    from pyroute2 import netns

    return netns.listnetns()


def _root_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def _tmp_dirs(pid: int) -> list[str]:
    return [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(f"timewait-kernel-{pid}-")]


def _wait_running(p: subprocess.Popen[str]) -> list[int]:
    """Until the run's two namespaces exist and a process runs in one; returns those pids."""
    from timewait.kernel.topology import pids_in

    prefix = f"tw-{p.pid}-"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ours = [n for n in _netns() if n.startswith(prefix)]
        pids = [x for n in ours for x in pids_in(n)]
        if len(ours) == 2 and pids:
            return pids
        time.sleep(0.05)
    p.kill()
    raise AssertionError("the run never got going")


# ---------------------------------------------------------------- 1. --sysctl only per namespace

@pytest.mark.kernel
@pytest.mark.parametrize(("flag", "needle"), [
    ("c1:kernel.hostname=timewait-was-here", "kernel.hostname is not confined to a network namespace"),
    ("c1:vm.swappiness=1", "vm.swappiness is not confined"),
    ("*:fs.file-max=1000", "fs.file-max is not confined"),
    ("c1:net.core.netdev_max_backlog=5", "not a per-network-namespace setting"),   # registered for init_net only
    ("c1:net.core.rmem_max=4096", "not a per-network-namespace setting"),          # read-only in a child netns
    ("c1:net.ipv4.no_such_setting=1", "not a per-network-namespace setting"),
    ("c1:net.ipv4.tcp_tw_reuse=5", "allowed values are 0, 1, 2"),                  # the simulator's parser
    ("c1:net.ipv4.ip_local_port_range=5000 4000", "1 <= LOW <= HIGH <= 65535"),
    ("c1:net.ipv4.tcp_congestion_control=no-such-cc", "the kernel refuses this value"),  # the kernel's own check
])
def test_sysctl_outside_the_namespace_is_refused_in_one_line(flag, needle):
    _need_lab()
    before = socket.gethostname()
    out = _cli("kernel", "run", "nc-timewait", "--set", "wait=1", "--sysctl", flag)
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert socket.gethostname() == before


@pytest.mark.kernel
def test_refusal_comes_before_any_namespace_and_before_the_simulator(monkeypatch):
    _need_lab()
    from timewait.errors import UsageError
    from timewait.kernel import compare as kcompare
    from timewait.kernel import scenarios as ks

    def no_lab(*_a: object, **_k: object) -> None:
        raise AssertionError("a namespace was about to be made")

    monkeypatch.setattr(ks, "KernelLab", no_lab)
    with pytest.raises(UsageError, match="kernel.hostname"):
        ks.run_kernel("nc-timewait", sysctls=["c1:kernel.hostname=X"])
    with pytest.raises(UsageError, match="net.core.netdev_max_backlog"):
        ks.run_kernel("nc-timewait", sysctls=["*:net.core.netdev_max_backlog=5"])
    monkeypatch.setattr("timewait.scenarios.run_scenario", no_lab)
    with pytest.raises(UsageError, match="kernel.hostname"):
        kcompare.compare("nc-timewait", sysctls=["c1:kernel.hostname=X"])


@pytest.mark.kernel
def test_the_allowed_list_is_the_kernels_per_namespace_table():
    _need_lab()
    from timewait.kernel.sysctls import confine, per_netns_sysctls, probe_name

    before = sorted(_netns())
    table = per_netns_sysctls()
    assert sorted(_netns()) == before  # the probe namespace has no name: nothing to leave behind
    assert {"net.ipv4.tcp_tw_reuse", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_max_tw_buckets",
            "net.core.somaxconn", "net.ipv4.conf.all.forwarding"} <= table
    assert not any(n.startswith(("kernel.", "vm.", "fs.")) for n in table)
    assert "net.core.netdev_max_backlog" not in table and "net.core.rmem_max" not in table
    assert probe_name("net.ipv4.conf.eth0.rp_filter") == "net.ipv4.conf.default.rp_filter"  # lab devices
    # the simulator's syntax, normalised to what the kernel reads
    assert confine([("c1", "net.ipv4.ip_local_port_range", "40000-40999")]) == [
        ("c1", "net.ipv4.ip_local_port_range", "40000\t40999")]


# ---------------------------------------------------------------- 2. cleanup: owners, SIGKILL

def test_an_owner_is_its_pid_and_start_time(tmp_path, monkeypatch):
    from timewait.kernel.ledger import Ledger, Owner, start_time, survey

    me = Owner.me()
    assert me.alive() and me.start == start_time(os.getpid())
    assert not Owner(me.pid, me.start + 1).alive()  # same pid, another process: the owner is gone
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mine = Ledger()
    mine.add(namespaces=["tw-1-c1"], links=["tw1v0a", "tw1v0b"])
    dead = tmp_path / f"timewait-kernel-{me.pid}-{me.start + 1}-x"
    dead.mkdir()
    (tmp_path / "timewait-kernel-oldstyle").mkdir()
    found = {os.path.basename(f.dirs[0]) if f.dirs else "": f for f in survey(["tw-1-c1", "tw-2-c1"], ["tw1v0a"])}
    assert found[os.path.basename(mine.dir)].alive and found[os.path.basename(mine.dir)].namespaces == ["tw-1-c1"]
    assert found[os.path.basename(mine.dir)].links == ["tw1v0a"]  # tw1v0b no longer exists
    assert not found[dead.name].alive
    assert found["timewait-kernel-oldstyle"].owner is None
    loose = found[""]  # tw-2-c1: in no record, owner from its name
    assert loose.owner is None and loose.namespaces == ["tw-2-c1"]
    mine.remove()


@pytest.fixture
def live_lab():
    _need_lab()
    from timewait.kernel.topology import KernelLab

    with KernelLab() as k:
        k.add_host("c1")
        k.add_host("c2")
        k.link("c1", "10.211.56.1/24", "c2", None)  # a veth end left in the root namespace's name list
        yield k


@pytest.mark.kernel
def test_sigkill_then_cleanup_removes_everything_and_spares_a_live_lab(live_lab):
    from timewait.kernel.topology import running

    p = subprocess.Popen([*CLI, "kernel", "run", "nc-timewait", "--set", "wait=30"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    pids = _wait_running(p)
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    prefix = f"tw-{p.pid}-"
    assert [n for n in _netns() if n.startswith(prefix)] and _tmp_dirs(p.pid)  # what a SIGKILL leaves
    live = sorted(live_lab.hosts.values())

    dry = _cli("kernel", "cleanup", "--all", "--dry-run")  # --dry-run: other labs on this machine stay untouched
    assert dry.returncode == 0, dry.stderr
    would = dry.stdout.splitlines()[0]
    assert prefix in would and not any(n in would for n in live)
    assert any(live[0] in line and "alive" in line for line in dry.stdout.splitlines()[1:]), dry.stdout

    out = _cli("kernel", "cleanup")
    assert out.returncode == 0, out.stderr
    assert f"{prefix}c1" in out.stdout and f"timewait-kernel-{p.pid}-" in out.stdout
    assert not [n for n in _netns() if n.startswith(prefix)]
    assert not [x for x in _root_links() if x.startswith(f"tw{p.pid}v")]
    assert not _tmp_dirs(p.pid)
    assert not [x for x in pids if running(x)]
    assert set(live) <= set(_netns()) and os.path.isdir(live_lab.tmpdir)  # the live lab is left alone
    assert any(live[0] in line and "left alone" in line for line in out.stdout.splitlines())


# ---------------------------------------------------------------- 3. inspect --netns without root

def _netns_for_inspect() -> str:
    from pyroute2 import netns

    name = f"tw-{os.getpid()}-inspect"
    netns.create(name)
    return name


@pytest.mark.kernel
@pytest.mark.parametrize("who", ["nobody", "root without capabilities"])
def test_inspect_netns_without_root_is_one_line(who):
    _need_lab()
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv")
    drop = (["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if who == "nobody"
            else ["setpriv", "--bounding-set=-all", "--inh-caps=-all"])
    probe = subprocess.run([*drop, sys.executable, "-c", "import timewait.cli, timewait.kernel.inspect, pyroute2"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"the package and its dependencies are not importable as {who} here")
    from pyroute2 import netns

    name = _netns_for_inspect()
    try:
        out = subprocess.run([*drop, *CLI, "inspect", "--netns", name], capture_output=True, text=True, timeout=60)
    finally:
        netns.remove(name)
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "CAP_SYS_ADMIN" in out.stderr, out.stderr


# ---------------------------------------------------------------- 4. --pcap checked first, written atomically

@pytest.mark.kernel
@pytest.mark.parametrize(("target", "needle"), [
    ("adir/x.txt", "must end in .pcap"),
    ("adir", "is a directory"),
    ("adir.pcap", "is a directory"),
])
def test_pcap_path_is_checked_before_the_run(tmp_path, target, needle):
    _need_lab()
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir.pcap").mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    out = subprocess.run([*CLI, "kernel", "run", "linger", "--pcap", target], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path, env={**os.environ, "PYTHONPATH": _src()})
    assert out.returncode == 2 and needle in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "wrote" not in out.stdout + out.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.kernel
def test_pcap_is_written_atomically_and_only_reported_when_written(tmp_path):
    _need_lab()
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    path = tmp_path / "run.pcap"
    ok = _cli("kernel", "run", "linger", "--pcap", str(path))
    assert ok.returncode == 0, ok.stderr
    assert f"wrote {path}" in ok.stdout
    assert path.read_bytes()[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1")
    assert [p.name for p in tmp_path.iterdir()] == ["run.pcap"]  # no temporary file beside it
    failed = tmp_path / "failed.pcap"
    bad = _cli("kernel", "run", "linger", "--pcap", str(failed), "--sysctl", "zz:net.ipv4.tcp_tw_reuse=1")
    assert bad.returncode == 2 and "unknown host" in bad.stderr
    assert not failed.exists() and "wrote" not in bad.stdout + bad.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["run.pcap"]


def _src() -> str:
    return str(Path(__file__).resolve().parent.parent / "src")


# ---------------------------------------------------------------- 5. the host as it was

def host_state(other_than: int | None = None) -> dict[str, object]:
    """What a lab run must leave as it found it, in the root namespace.

    Every readable file under /proc/sys/net and /proc/sys/kernel except
    :data:`VOLATILE`, ``nft list ruleset``, ``ip -o link``, the named network
    namespaces and the timewait temp dirs. Other processes on this machine
    (other test runs) make and remove labs of their own meanwhile: names
    carrying another pid, and temp dirs without an owner in their name, are
    theirs and left out; everything carrying ``other_than`` is kept in.
    """
    sysctls: dict[str, str] = {}
    for top in ("/proc/sys/net", "/proc/sys/kernel"):
        for d, _dirs, files in os.walk(top):
            for f in files:
                name = os.path.join(d, f)[len("/proc/sys/"):].replace("/", ".")
                if name in VOLATILE:
                    continue
                try:
                    with open(os.path.join(d, f)) as fh:
                        sysctls[name] = fh.read()
                except OSError:  # write-only (route.flush) or refusing reads
                    continue

    def ours(name: str) -> bool:
        m = re.match(r"^(?:tw-(\d+)-|tw(\d+)v\d+[ab]|timewait-kernel-(\d+)-)", name)
        if m is None:
            return not name.startswith("timewait-kernel-")
        return other_than is not None and int(next(g for g in m.groups() if g)) == other_than

    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout.splitlines()
    nft = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=True).stdout
    return {
        "sysctls": sysctls,
        "nft": nft,
        "links": sorted(re.sub(r"^\d+: ", "", x) for x in links if ours(x.split(":")[1].strip().split("@")[0])),
        "netns": sorted(n for n in _netns() if ours(n)),
        "tmp": sorted(n for n in os.listdir(tempfile.gettempdir()) if n.startswith("timewait-kernel-") and ours(n)),
    }


def _diff(a: dict[str, object], b: dict[str, object]) -> list[str]:
    out = []
    for key in a:
        if key == "sysctls":
            sa, sb = a[key], b[key]
            assert isinstance(sa, dict) and isinstance(sb, dict)
            out += [f"sysctl {k}: {sa.get(k)!r} -> {sb.get(k)!r}" for k in sorted(set(sa) | set(sb))
                    if sa.get(k) != sb.get(k)]
        elif a[key] != b[key]:
            out.append(f"{key}: {a[key]!r} -> {b[key]!r}")
    return out


def _interrupted(sig: int) -> subprocess.Popen[str]:
    p = subprocess.Popen([*CLI, "kernel", "run", "nc-timewait", "--set", "wait=30"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, text=True)
    _wait_running(p)
    p.send_signal(sig)
    p.wait(30)
    return p


@pytest.mark.kernel
@pytest.mark.parametrize("how", ["finished", "failed", "interrupted", "killed then cleanup"])
def test_the_root_namespace_is_as_it_was(how):
    _need_lab()
    before = host_state()
    if how in ("finished", "failed"):
        # failed: an unknown host in --sysctl is found only after the namespaces are made
        flag = "*:net.ipv4.tcp_fin_timeout=5" if how == "finished" else "zz:net.ipv4.tcp_tw_reuse=1"
        p = subprocess.Popen([*CLI, "kernel", "run", "linger", "--sysctl", flag], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        _, err = p.communicate(timeout=120)
        assert p.returncode == (0 if how == "finished" else 2), err
        assert how == "finished" or "unknown host" in err
    elif how == "interrupted":
        p = _interrupted(signal.SIGINT)
        assert p.returncode == 130
    else:
        p = _interrupted(signal.SIGKILL)
        assert _tmp_dirs(p.pid)
        assert _cli("kernel", "cleanup").returncode == 0
    assert _diff(before, host_state(other_than=p.pid)) == []
