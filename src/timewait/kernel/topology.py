"""A throw-away lab of network namespaces, veth pairs and processes, always torn down.

Every namespace is named ``tw-<pid>-<host>`` and every veth starts life in the
root namespace as ``tw<pid>v<n>[ab]``, and the lab's record
(:class:`~timewait.kernel.ledger.Ledger`) lists each before it is made, with
the owner's pid and start time, so a dead run's leftovers can be told apart
from a live run's and from everything else (:func:`cleanup`).
Creation steps run with SIGINT/SIGTERM held back, so a signal can only land
between steps, and :meth:`KernelLab.close` (also reached from ``with``) kills
the processes, closes the sockets and removes veths and namespaces.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

from pyroute2 import IPRoute, NetNS
from pyroute2 import netns as pr_netns

from timewait.errors import UsageError
from timewait.kernel.ledger import NS_RE, VETH_RE, Found, Ledger, survey
from timewait.kernel.ledger import running as running
from timewait.kernel.nsenter import inside, read_sysctl, sysctl_path, write_sysctl

_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
PR_SET_PDEATHSIG = 1
#: ``IFA_F_NODAD``: an IPv6 address usable at once; with DAD it stays tentative ~1-2 s.
IFA_F_NODAD = 0x02


def family_of(addr: str) -> int:
    """``AF_INET6`` for an IPv6 address (text with a colon, CIDR or not), else ``AF_INET``."""
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def split_cidr(addr: str, prefixlen: int | None = None) -> tuple[str, int]:
    """``"a/len"`` (or ``a`` with ``prefixlen``; else the host length, 32 or 128) as ``(a, len)``."""
    net, _, plen = addr.partition("/")
    if plen:
        return net, int(plen)
    return net, prefixlen if prefixlen is not None else (128 if ":" in net else 32)


class KernelUnavailable(UsageError):
    """The kernel lab cannot run here (no root, no netns) or cannot show this scenario."""


def require_lab() -> None:
    """Refuse politely unless we are root on a kernel with network namespaces and veth."""
    if sys.platform != "linux":
        raise KernelUnavailable("the kernel lab needs Linux (network namespaces)")
    if os.geteuid() != 0:
        raise KernelUnavailable("the kernel lab needs root (it creates network namespaces); try sudo")
    if not os.path.exists("/proc/self/ns/net"):
        raise KernelUnavailable("this kernel has no network namespaces (CONFIG_NET_NS)")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            raise KernelUnavailable(f"the kernel lab needs `{tool}` (apt-get install iproute2 nftables)")


@contextmanager
def held_signals() -> Iterator[None]:
    """Hold back SIGINT/SIGTERM/SIGHUP for the block; they are delivered right after it."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


_OWNER = os.getpid()


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    # A forked helper (pyroute2 forks to create namespaces and sockets) inherits this
    # handler and our stack: it must vanish, not unwind into the lab's cleanup.
    if os.getpid() != _OWNER:
        os._exit(128 + signum)
    raise SystemExit(128 + signum)


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Die with the parent (even on SIGKILL) and do not get the terminal's Ctrl-C twice."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


class KernelLab:
    """Namespaces (one per host), veth links, routes, sysctls, nft rules, processes and sockets.

    Use as a context manager; everything it made is removed on exit, whatever the
    exit (return, exception, Ctrl-C, SIGTERM).
    """

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"tw-{os.getpid()}-"
        self.tag = f"tw{os.getpid()}v"
        self.hosts: dict[str, str] = {}
        self.procs: list[subprocess.Popen[Any]] = []
        self.socks: list[socket.socket] = []
        self.veths: list[str] = []
        self.family = socket.AF_INET  # of :meth:`socket`'s sockets when none is named
        self.ledger = Ledger()  # the temp dir and the owner record, before anything else is made
        self.tmpdir = self.ledger.dir
        self._old_handlers: dict[int, Any] = {}
        self._closed = False
        self._pid = os.getpid()

    # ------------------------------------------------------------------ lifetime
    def __enter__(self) -> KernelLab:
        global _OWNER
        _OWNER = os.getpid()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, _exit_on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop processes, close sockets, delete veths and namespaces (idempotent)."""
        if self._closed or os.getpid() != self._pid:
            return  # done already, or a forked child that must not tear down its parent's lab
        with held_signals():
            self._closed = True
            for p in self.procs:
                stop_process(p)
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass
            delete_links(self.veths)
            for ns in self.hosts.values():
                remove_netns(ns)
            self.ledger.remove()  # last: until the namespaces are gone the record must say they exist
            for sig, h in self._old_handlers.items():
                signal.signal(sig, h)

    # ------------------------------------------------------------------ building
    def ns(self, host: str) -> str:
        try:
            return self.hosts[host]
        except KeyError:
            raise UsageError(f"unknown host {host!r}; hosts: {', '.join(self.hosts)}") from None

    def add_host(self, name: str, forward: bool = False, v6: bool = False) -> str:
        """A fresh namespace for host ``name`` with ``lo`` up; ``forward`` makes it a router
        (of IPv6 too with ``v6``). Settings are the namespace's own, never the host's."""
        ns = self.prefix + name
        with held_signals():
            self.hosts[name] = ns
            self.ledger.add(namespaces=[ns])
            pr_netns.create(ns)
        with NetNS(ns) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        if forward:
            write_sysctl(ns, "net.ipv4.ip_forward", "1")
            if v6:
                write_sysctl(ns, "net.ipv6.conf.all.forwarding", "1")
        return ns

    @staticmethod
    def _add_addr(ipr: Any, idx: int, addr: str, prefixlen: int) -> None:
        """``addr`` (CIDR, or with ``prefixlen``) on link ``idx``; an IPv6 one without DAD."""
        net, plen = split_cidr(addr, prefixlen)
        if ":" in net:
            ipr.addr("add", index=idx, address=net, prefixlen=plen, family=socket.AF_INET6, flags=IFA_F_NODAD)
        else:
            ipr.addr("add", index=idx, address=net, prefixlen=plen)

    def bridge(self, host: str, name: str, addr: str, prefixlen: int = 24) -> str:
        """A bridge (a LAN switch) inside ``host`` with an address of its own; link ends join it."""
        with NetNS(self.ns(host)) as ipr:
            ipr.link("add", ifname=name, kind="bridge")
            idx = ipr.link_lookup(ifname=name)[0]
            self._add_addr(ipr, idx, addr, prefixlen)
            ipr.link("set", index=idx, state="up")
        return name

    def link(self, a: str, a_addr: str | Sequence[str], b: str, b_addr: str | Sequence[str] | None,
             prefixlen: int = 24, a_if: str | None = None, b_if: str | None = None,
             b_bridge: str | None = None) -> tuple[str, str]:
        """A veth pair between hosts ``a`` and ``b`` with an address on each end; returns the names.

        An end's address may be several (IPv4 and IPv6, each CIDR); an IPv6 one is added
        without DAD, so it is usable at once. With ``b_bridge`` the ``b`` end has no
        address and becomes a port of that bridge.
        """
        n = len(self.veths) // 2
        ra, rb = f"{self.tag}{n}a", f"{self.tag}{n}b"
        with held_signals():
            self.veths += [ra, rb]
            self.ledger.add(links=[ra, rb])
            with IPRoute() as ipr:
                ipr.link("add", ifname=ra, kind="veth", peer=rb)
                ipr.link("set", index=ipr.link_lookup(ifname=ra)[0], net_ns_fd=self.ns(a))
                ipr.link("set", index=ipr.link_lookup(ifname=rb)[0], net_ns_fd=self.ns(b))
        names = (a_if or f"eth{self._ifcount(a)}", b_if or f"eth{self._ifcount(b)}")
        for host, root_name, ifname, addr in ((a, ra, names[0], a_addr), (b, rb, names[1], b_addr)):
            with NetNS(self.ns(host)) as ipr:
                idx = ipr.link_lookup(ifname=root_name)[0]
                ipr.link("set", index=idx, ifname=ifname)
                if addr is not None:
                    for one in [addr] if isinstance(addr, str) else addr:
                        self._add_addr(ipr, idx, one, prefixlen)
                elif host == b and b_bridge is not None:
                    ipr.link("set", index=idx, master=ipr.link_lookup(ifname=b_bridge)[0])
                ipr.link("set", index=idx, state="up")
        return names

    def _ifcount(self, host: str) -> int:
        with NetNS(self.ns(host)) as ipr:
            return sum(1 for link in ipr.get_links() if link.get_attr("IFLA_IFNAME", "").startswith("eth"))

    def route_dev(self, host: str, dst: str, ifname: str) -> None:
        """A route to ``dst`` straight out of ``ifname`` (on-link, no gateway)."""
        net, plen = split_cidr(dst)
        with NetNS(self.ns(host)) as ipr:
            ipr.route("add", dst=net, dst_len=plen, oif=ipr.link_lookup(ifname=ifname)[0], family=family_of(net))

    def route(self, host: str, gateway: str, dst: str | None = None) -> None:
        """A route to ``dst`` (default: the default route of the gateway's family) via ``gateway``."""
        if dst is None:
            dst = "::/0" if ":" in gateway else "0.0.0.0/0"
        net, plen = split_cidr(dst)
        with NetNS(self.ns(host)) as ipr:
            ipr.route("add", dst=net, dst_len=plen, gateway=gateway, family=family_of(gateway))

    def sysctl(self, host: str, name: str, value: str) -> None:
        """Write a sysctl inside the host's namespace (a name that does not exist there is a UsageError)."""
        ns = self.ns(host)
        if not os.path.exists(sysctl_path(name)) and not _exists_in(ns, name):
            if name.endswith("tcp_tw_recycle"):
                raise KernelUnavailable(f"{name}: tcp_tw_recycle was removed in Linux 4.12; "
                                        f"this kernel is {os.uname().release}")
            raise UsageError(f"--sysctl {host}:{name}: no such sysctl on this kernel")
        try:
            write_sysctl(ns, name, value)
        except OSError as e:
            raise UsageError(f"--sysctl {host}:{name}={value!r}: the kernel refused it ({e.strerror})") from None

    def read_sysctl(self, host: str, name: str) -> str:
        return read_sysctl(self.ns(host), name)

    def nft(self, host: str, ruleset: str) -> None:
        """Load an nftables ruleset (``nft -f -`` text) in the host's namespace."""
        r = subprocess.run(["ip", "netns", "exec", self.ns(host), "nft", "-f", "-"], input=ruleset,
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise RuntimeError(f"nft in {host} failed: {r.stderr.strip()}")

    def nft_list(self, host: str) -> str:
        r = subprocess.run(["ip", "netns", "exec", self.ns(host), "nft", "list", "ruleset"],
                           capture_output=True, text=True, timeout=10)
        return r.stdout

    def spawn(self, host: str, argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the host's namespace (``ip netns exec``); it is stopped on close."""
        with held_signals():
            p = subprocess.Popen(["ip", "netns", "exec", self.ns(host), *argv], preexec_fn=_child_setup,
                                 start_new_session=True, **popen)
            self.procs.append(p)
        return p

    def socket(self, host: str, family: int | None = None, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket in the host's namespace (of :attr:`family` unless named), closed with the lab
        unless closed before."""
        with inside(self.ns(host)):
            s = socket.socket(self.family if family is None else family, kind)
        self.socks.append(s)
        return s

    def forget(self, s: socket.socket) -> None:
        """Close a socket made by :meth:`socket` and stop tracking it."""
        s.close()
        try:
            self.socks.remove(s)
        except ValueError:
            pass

    def tcpdump(self, host: str, iface: str, path: str, snaplen: int = 200) -> subprocess.Popen[Any]:
        """Capture on ``iface`` of ``host`` into ``path`` until the lab closes (or :func:`stop_process`)."""
        if shutil.which("tcpdump") is None:
            raise KernelUnavailable("--pcap needs tcpdump (apt-get install tcpdump)")
        p = self.spawn(host, ["tcpdump", "-Z", "root", "--immediate-mode", "-i", iface, "-U", "-n", "-s", str(snaplen), "-w", path, "tcp"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 5
        # tcpdump says "listening on ..." on stderr once the capture is armed.
        os.set_blocking(p.stderr.fileno(), False)  # type: ignore[union-attr]
        seen = b""
        while time.monotonic() < deadline and b"listening" not in seen and p.poll() is None:
            time.sleep(0.02)
            try:
                seen += p.stderr.read() or b""  # type: ignore[union-attr]
            except (BlockingIOError, TypeError):
                pass
        return p


def _exists_in(ns: str, name: str) -> bool:
    with inside(ns):
        return os.path.exists(sysctl_path(name))


def stop_process(p: subprocess.Popen[Any], grace_s: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; reaps the child."""
    if p.poll() is None:
        try:
            p.terminate()
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        except ProcessLookupError:
            pass
    for f in (p.stdin, p.stdout, p.stderr):
        if f is not None:
            try:
                f.close()
            except OSError:
                pass


def delete_links(names: list[str]) -> None:
    """Delete the root namespace's links ``names`` (a veth's peer goes with it); any already
    gone, or that will not go, are passed over: teardown must finish."""
    with IPRoute() as ipr:
        for name in names:
            for idx in ipr.link_lookup(ifname=name):
                try:
                    ipr.link("del", index=idx)
                except Exception:
                    pass


def remove_netns(ns: str) -> None:
    """Kill what still runs in ``ns`` and remove it (quietly if it is already gone).

    Waits (at most 2 s) until the killed processes are gone or zombies: SIGKILL is
    asynchronous, and one that is not our child is reaped by init, not by us.
    """
    killed = pids_in(ns)
    for pid in killed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 2.0
    while killed and time.monotonic() < deadline:
        killed = [pid for pid in killed if running(pid)]
        if killed:
            time.sleep(0.01)
    try:
        pr_netns.remove(ns)
    except FileNotFoundError:
        pass
    except OSError:
        pass


def pids_in(ns: str) -> list[int]:
    """Processes whose network namespace is ``ns`` (what ``ip netns pids`` prints)."""
    path = os.path.join(pr_netns.NETNS_RUN_DIR, ns)
    try:
        st = os.stat(path)
    except OSError:
        return []
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            s = os.stat(f"/proc/{d}/ns/net")
        except OSError:
            continue
        if (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino) and int(d) != os.getpid():
            out.append(int(d))
    return out


def find_labs() -> list[Found]:
    """Every lab on this host (live or not), grouped by owner, from the records and the names."""
    # Names first, records second: a lab records each thing before making it (see ledger.survey).
    nss = [n for n in pr_netns.listnetns() if NS_RE.match(n)]
    with IPRoute() as ipr:
        links = [name for link in ipr.get_links() if VETH_RE.match(name := link.get_attr("IFLA_IFNAME", ""))]
    return survey(nss, links)


def cleanup(include_unrecorded: bool = False, dry_run: bool = False) -> tuple[list[Found], list[Found]]:
    """Remove the labs whose owner is gone; returns (removed, left alone because the owner runs).

    A lab whose recorded owner is alive is never removed. ``include_unrecorded``
    also takes things in no record (owner unknown) whose pid is in use.
    """
    removed: list[Found] = []
    kept: list[Found] = []
    for lab in find_labs():
        if lab.empty:
            continue
        if lab.alive and not (include_unrecorded and lab.owner is None):
            kept.append(lab)
            continue
        removed.append(lab)
        if dry_run:
            continue
        with held_signals():
            delete_links(lab.links)
            for ns in lab.namespaces:
                remove_netns(ns)
            for d in lab.dirs:
                shutil.rmtree(d, ignore_errors=True)
    return removed, kept
