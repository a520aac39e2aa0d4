"""Hosts on one machine: Linux network namespaces joined by a bridge, for network-fault runs.

`NetLab` gives each host ("gpu-pc", "robot-0", ...) a network namespace of its own with an
`eth0` and an address in `SUBNET`, and joins them through a bridge in a "switch" namespace,
as a lab's PCs hang off one switch. Processes started with `Host.command` run inside a host
and see only its interfaces: a learner there binds a real, non-loopback address, and actors
reach it through real veth links. Faults are what this kernel offers without netem: a link
pulled at the switch (`link_down` / `link_up`: the host's eth0 loses carrier and the packets
are dropped, as with a cable bumped out), an interface removed outright, processes killed.

The addresses exist only inside the namespaces, so nothing here can reach or disturb any
other machine. `close()` (also on leaving a `with` block, i.e. when a test fails) kills the
processes still in the lab's namespaces and deletes them, and with them every link; a lab
left behind by a killed run (its owner pid is gone) is removed by the next one. Needs root
(CAP_NET_ADMIN) and iproute2; `unavailable_reason()` says why not, for a skip message.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass

PREFIX = "serl-lab"
SUBNET = ipaddress.ip_network("10.231.0.0/24")
"""Private (RFC 1918) addresses, assigned inside the lab's namespaces only."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def unavailable_reason() -> str | None:
    """Why this machine cannot make a lab (not root, no iproute2, no netns), or None."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    probe = f"{PREFIX}-probe-{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _namespaces() -> list[str]:
    listed = _ip("netns", "list", check=False).stdout.splitlines()
    return [line.split()[0] for line in listed if line.strip()]


def _pids(namespace: str) -> list[int]:
    out = _ip("netns", "pids", namespace, check=False).stdout
    return [int(pid) for pid in out.split()]


def _kill_and_delete(namespace: str) -> None:
    for pid in _pids(namespace):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _ip("netns", "del", namespace, check=False)


def remove_stale_labs() -> None:
    """Delete namespaces of labs whose owner process is gone (a run killed before close)."""
    for namespace in _namespaces():
        if not namespace.startswith(f"{PREFIX}-"):
            continue
        owner = namespace.split("-")[2]
        if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
            _kill_and_delete(namespace)


@dataclass(frozen=True)
class Host:
    """One simulated PC: a namespace, its eth0 address, and its port on the switch."""

    name: str
    namespace: str
    address: str
    switch_port: str

    @property
    def prefix(self) -> tuple[str, ...]:
        """Runs a command inside this host (`ip netns exec` execs it: the pid is the program's)."""
        return ("ip", "netns", "exec", self.namespace)

    def command(self, argv: list[str]) -> list[str]:
        return [*self.prefix, *argv]

    def pids(self) -> list[int]:
        """Every process running inside this host."""
        return _pids(self.namespace)


class NetLab:
    """A switch and hosts; see the module docstring. Use as a context manager."""

    def __init__(self, name: str = "lab") -> None:
        remove_stale_labs()
        self.tag = f"{PREFIX}-{os.getpid()}-{name}"
        self.switch = f"{self.tag}-sw"
        self.hosts: dict[str, Host] = {}
        self._made: list[str] = []
        self._make_namespace(self.switch)
        self._in_switch("link", "add", "br0", "type", "bridge")
        self._in_switch("link", "set", "br0", "up")

    def __enter__(self) -> NetLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_host(self, name: str) -> Host:
        """A new host on the switch, with the next address of SUBNET."""
        index = len(self.hosts) + 1
        host = Host(
            name=name,
            namespace=f"{self.tag}-{name}",
            address=str(SUBNET[index]),
            switch_port=f"port{index}",
        )
        self._make_namespace(host.namespace)
        _ip("-n", host.namespace, "link", "set", "lo", "up")
        self._cable(host)
        self.hosts[name] = host
        return host

    def link_down(self, host: Host) -> None:
        """Pull the host's cable at the switch: its packets are dropped until `link_up`."""
        self._in_switch("link", "set", host.switch_port, "down")

    def link_up(self, host: Host) -> None:
        self._in_switch("link", "set", host.switch_port, "up")

    def remove_interface(self, host: Host) -> None:
        """Delete the host's eth0 (and its switch port): its address and routes are gone."""
        _ip("-n", host.namespace, "link", "del", "eth0")

    def restore_interface(self, host: Host) -> None:
        """Give a host whose interface was removed a new one, with the same address."""
        self._in_switch("link", "del", host.switch_port, check=False)
        self._cable(host)

    def kill_host(self, host: Host) -> None:
        """SIGKILL every process inside the host, as when its PC loses power."""
        for pid in host.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Kill what still runs in the lab and delete its namespaces (and so every link)."""
        for namespace in reversed(self._made):
            _kill_and_delete(namespace)
        self._made.clear()
        self.hosts.clear()

    def _make_namespace(self, namespace: str) -> None:
        _ip("netns", "add", namespace)
        self._made.append(namespace)

    def _cable(self, host: Host) -> None:
        """A veth pair from a port on the bridge to the host's eth0, addressed and up."""
        self._in_switch(
            "link", "add", host.switch_port, "type", "veth",
            "peer", "name", "eth0", "netns", host.namespace,
        )  # fmt: skip
        self._in_switch("link", "set", host.switch_port, "master", "br0")
        self._in_switch("link", "set", host.switch_port, "up")
        address = f"{host.address}/{SUBNET.prefixlen}"
        _ip("-n", host.namespace, "addr", "add", address, "dev", "eth0")
        _ip("-n", host.namespace, "link", "set", "eth0", "up")

    def _in_switch(self, *args: str, check: bool = True) -> None:
        _ip("-n", self.switch, *args, check=check)
