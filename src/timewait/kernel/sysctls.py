"""Which sysctls ``kernel run --sysctl`` may write: only those confined to a network namespace.

``kernel.*``, ``vm.*``, ``fs.*`` and the ``net.*`` tables Linux registers only
for the initial namespace are one setting for the whole machine: writing them
"inside" a lab namespace changes the host. The kernel says which tables are
per namespace by showing them in a child namespace (a table registered only
for ``init_net`` is absent there, and some shared ones are shown read-only),
so the allowed list is what a fresh namespace's ``/proc/sys/net`` holds and
lets root write, read once per process. Values are checked with the
simulator's parsers where it knows the setting (the same bounds on both sides)
and then by the kernel itself, written into a fresh throw-away namespace,
so a bad value is refused before any namespace of the run exists.
"""

from __future__ import annotations

import functools
import os
import re
import stat

from timewait.errors import UsageError
from timewait.kernel.nsenter import fresh_netns, sysctl_path
from timewait.kernel.topology import KernelUnavailable

PROC_SYS = "/proc/sys/"
#: Per-device settings: the lab's devices (eth0, br0) do not exist in the probe, ``default`` does.
DEVICE_RE = re.compile(r"^(net\.ipv[46]\.(?:conf|neigh))\.([^.]+)\.(.+)$")
ALLOWED = "only per-network-namespace net.* settings are allowed (e.g. net.ipv4.tcp_tw_reuse)"


@functools.cache
def per_netns_sysctls() -> frozenset[str]:
    """The writable settings under /proc/sys/net of a fresh network namespace, as dotted names."""
    names: set[str] = set()
    try:
        with fresh_netns():
            for d, _dirs, files in os.walk(PROC_SYS + "net"):
                for f in files:
                    path = os.path.join(d, f)
                    try:
                        mode = os.stat(path).st_mode
                    except OSError:
                        continue
                    if stat.S_ISREG(mode) and mode & stat.S_IWUSR:
                        names.add(path[len(PROC_SYS):].replace("/", "."))
    except OSError as e:
        raise KernelUnavailable(f"--sysctl: cannot list the per-namespace sysctls ({e.strerror}); "
                           "the kernel lab needs root") from None
    return frozenset(names)


def probe_name(name: str) -> str | None:
    """The name to look up in the fresh namespace for ``name`` (None: not a per-namespace setting)."""
    table = per_netns_sysctls()
    if name in table:
        return name
    m = DEVICE_RE.match(name)
    if m and m.group(2) != "default":
        # conf.* has a ``default`` entry in every namespace; neigh.* has it only in the initial
        # one (net.ipv6.neigh.default is global), so a device's neigh setting is probed on ``lo``.
        for dev in ("default", "lo"):
            if f"{m.group(1)}.{dev}.{m.group(3)}" in table:
                return f"{m.group(1)}.{dev}.{m.group(3)}"
    return None


def refuse_global(host: str, name: str, value: str) -> None:
    """The check that needs no kernel: anything outside ``net.`` is refused at once."""
    if not name.startswith("net."):
        raise UsageError(f"--sysctl {host}:{name}={value}: {name} is not confined to a network namespace "
                         f"(it would change this machine); {ALLOWED}")


def confine(triples: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """``(host, name, value)`` flags checked (name per namespace, value in bounds) and normalised.

    Raises a one-line :class:`UsageError` naming the first setting that is
    refused. Needs root (it lists and tries settings in fresh namespaces).
    """
    from timewait.sim.sysctl import SYSCTLS, format_value

    out: list[tuple[str, str, str]] = []
    for host, name, value in triples:
        flag = f"--sysctl {host}:{name}"
        refuse_global(host, name, value)
        if probe_name(name) is None:
            raise UsageError(f"{flag}={value}: {name} is not a per-network-namespace setting on this kernel "
                             f"(unknown, read-only or global); {ALLOWED}")
        sim = SYSCTLS.get(name)
        if sim is not None:  # the simulator's parser: its bounds, and the text the kernel wants
            value = str(format_value(sim.parse(flag, value)))
        out.append((host, name, value))
    _try_in_fresh_netns(out)
    return out


def _try_in_fresh_netns(triples: list[tuple[str, str, str]]) -> None:
    """Write every value in a throw-away namespace: the kernel's own bounds, before the run."""
    try:
        with fresh_netns():
            for host, name, value in triples:
                path = sysctl_path(probe_name(name) or name)
                try:
                    with open(path, "w") as f:
                        f.write(value)
                except OSError as e:
                    raise UsageError(f"--sysctl {host}:{name}={value!r}: the kernel refuses this value "
                                     f"({e.strerror})") from None
    except UsageError:
        raise
    except OSError as e:
        raise KernelUnavailable(f"--sysctl: cannot try the values in a fresh namespace ({e.strerror}); "
                           "the kernel lab needs root") from None
