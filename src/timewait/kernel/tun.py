"""TUN devices the lab drives itself: a namespace's IP packets in and out of Python.

A TUN device made in a lab namespace (``/dev/net/tun``, ``IFF_TUN | IFF_NO_PI``)
gives the lab every IP packet the namespace's kernel routes into it and lets
it write packets the kernel receives as if from a wire. The device lives as
long as its file descriptor (it is not persistent): closing the fd, or the
namespace going away, removes it, so nothing is left on the host.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess

from timewait.kernel.nsenter import inside

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MTU = 1500


class Tun:
    """A TUN device ``name`` in namespace ``netns``, with ``addr`` (CIDR) on it, up."""

    def __init__(self, netns: str, addr: str, name: str = "tun0", routes: tuple[str, ...] = ()) -> None:
        self.netns, self.name = netns, name
        with inside(netns):  # the device is made in the calling thread's namespace
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
            except OSError:
                os.close(fd)
                raise
        self.fd = fd
        ip = ["ip", "-n", netns]
        if ":" in addr:
            # IPv6 on the device, but quiet: no link-local address (addr_gen_mode 1), no router
            # solicitations, and the address usable at once (nodad), so the path carries TCP only.
            for k, v in (("addr_gen_mode", "1"), ("router_solicitations", "0"), ("accept_ra", "0")):
                _sysctl(netns, f"net.ipv6.conf.{name}.{k}", v)
            subprocess.run([*ip, "addr", "add", addr, "dev", name, "nodad"], check=True, capture_output=True)
        else:
            # No IPv6 on the device: its router solicitations would be noise on the path.
            _sysctl(netns, f"net.ipv6.conf.{name}.disable_ipv6", "1")
            subprocess.run([*ip, "addr", "add", addr, "dev", name], check=True, capture_output=True)
        subprocess.run([*ip, "link", "set", name, "mtu", str(MTU), "up"], check=True, capture_output=True)
        for r in routes:
            subprocess.run([*ip, "route", "add", r, "dev", name], check=True, capture_output=True)

    def fileno(self) -> int:
        return self.fd

    def read(self) -> bytes | None:
        """One packet the namespace sent into the device, or None when there is none now."""
        try:
            return os.read(self.fd, 65535)
        except BlockingIOError:
            return None

    def write(self, packet: bytes) -> None:
        """Hand ``packet`` (a whole IP packet, checksums right) to the namespace's kernel."""
        os.write(self.fd, packet)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _sysctl(netns: str, name: str, value: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", f"{name}={value}"], check=False,
                   capture_output=True)
