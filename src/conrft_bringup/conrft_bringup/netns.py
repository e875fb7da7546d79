"""Two "hosts" on one machine: Linux network namespaces joined by a veth pair (needs root and `ip netns`).

The robot host and the learner host of a two-machine session, for tests and benchmarks that must cross a real
network link (one that can be taken down) rather than the loopback interface:

    with TwoHosts() as hosts:
        learner = hosts.learner.popen(["python", "-m", "..."], env=env)
        hosts.robot.set_link(False)    # the cable pulled
        ...                            # on exit: every process in either namespace killed, namespaces deleted

Each host also gets its own /dev/shm (a folder of the machine's, bind-mounted over it for every process started
on the host): Fast DDS names its shared-memory ports after the domain and participant index, so processes on the
two hosts would otherwise open the same port files and take each other's discovery messages.

Names carry this process's id and a random suffix, so concurrent runs never collide; namespaces left behind
by a run that was killed outright (SIGKILL skips every cleanup) are removed by the next run, by pid.
"""
from __future__ import annotations

import atexit
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "conrft-"
SHM = Path("/dev/shm")
NAME = re.compile(rf"^{PREFIX}(\d+)-[0-9a-f]+-(robot|learner)$")


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def namespaces() -> list[str]:
    """Every network namespace on the machine (`ip netns list`), ids stripped."""
    return [line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _kill_all(namespace: str) -> None:
    """Every process inside the namespace (whoever started it): SIGTERM, then SIGKILL after a grace period."""
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        pids = [int(p) for p in _ip("netns", "pids", namespace).split()]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + grace
        while pids and time.monotonic() < end and _ip("netns", "pids", namespace).split():
            time.sleep(0.05)


def remove_stale() -> list[str]:
    """Delete the namespaces (and /dev/shm folders) of runs whose process is gone; returns their names."""
    stale = [ns for ns in namespaces() if (m := NAME.match(ns)) and not _alive(int(m.group(1)))]
    for ns in stale:
        _kill_all(ns)
        _ip("netns", "delete", ns)
    for folder in SHM.glob(f"{PREFIX}*"):
        if (m := NAME.match(folder.name)) and not _alive(int(m.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
    return stale


@dataclass
class Host:
    """One end of the link: a namespace, its veth device and address, its /dev/shm."""

    namespace: str
    device: str
    address: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def shm(self) -> Path:
        return SHM / self.namespace

    def command(self, argv: list[str]) -> list[str]:
        """argv on this host: `ip netns exec` gives each command a mount namespace of its own, where the bind
        mount stays."""
        return ["ip", "netns", "exec", self.namespace, "sh", "-c", 'mount --bind "$0" /dev/shm && exec "$@"',
                str(self.shm), *argv]

    def popen(self, argv: list[str], log: Path | None = None, **kwargs) -> subprocess.Popen:
        """A process inside the namespace, in its own session (killed with its group); output to `log`."""
        out = open(log, "w") if log is not None else subprocess.DEVNULL
        proc = subprocess.Popen(self.command(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, **kwargs)
        if log is not None:
            out.close()  # the child holds its own copy
        self.procs.append(proc)
        return proc

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(argv), capture_output=True, text=True, **kwargs)

    def set_link(self, up: bool) -> None:
        """Carrier on or off for both ends of the veth pair (`ip link set DEV down`). Going down flushes this end's
        routes; coming up restores the multicast one (a real host's default route covers multicast)."""
        _ip("-n", self.namespace, "link", "set", self.device, "up" if up else "down")
        if up:
            _ip("-n", self.namespace, "route", "replace", "224.0.0.0/4", "dev", self.device)

    def wait_settled(self, timeout: float = 10.0) -> None:
        """Until no address of the device is still tentative (IPv6 duplicate detection, ~1.5 s after the link
        comes up). Measured: a Fast DDS discovery client started before that announces no address of the link
        (only loopback) and is never found; a real host has long settled when its nodes start."""
        end = time.monotonic() + timeout
        while "tentative" in _ip("-n", self.namespace, "addr", "show", "dev", self.device):
            if time.monotonic() > end:
                raise TimeoutError(f"{self.device} in {self.namespace} still tentative after {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()


class TwoHosts:
    """The robot and learner namespaces on `subnet` (.1 robot, .2 learner), each with loopback up and a multicast
    route over the veth (a namespace has no default route to carry DDS's 239.255.0.1)."""

    def __init__(self, subnet: str = "10.213.0.0/24"):
        net = ipaddress.ip_network(subnet)
        self.prefix_len = net.prefixlen
        token = f"{os.getpid()}-{secrets.token_hex(3)}"
        short = f"{os.getpid():x}{token[-6:]}"[-11:]  # device names are at most 15 characters
        self.robot = Host(f"{PREFIX}{token}-robot", f"c{short}r", str(net[1]))
        self.learner = Host(f"{PREFIX}{token}-learner", f"c{short}l", str(net[2]))
        self._created: list[str] = []

    @property
    def hosts(self) -> tuple[Host, Host]:
        return self.robot, self.learner

    def __enter__(self) -> TwoHosts:
        remove_stale()
        atexit.register(self.close)
        try:
            for h in self.hosts:
                _ip("netns", "add", h.namespace)
                self._created.append(h.namespace)
                h.shm.mkdir()
            r, le = self.hosts
            _ip("link", "add", r.device, "netns", r.namespace, "type", "veth",
                "peer", "name", le.device, "netns", le.namespace)
            for h in self.hosts:
                _ip("-n", h.namespace, "link", "set", "lo", "up")
                _ip("-n", h.namespace, "addr", "add", f"{h.address}/{self.prefix_len}", "dev", h.device)
                h.set_link(True)
            for h in self.hosts:
                h.wait_settled()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Kill every process in both namespaces, then delete them (which destroys the veth pair) and their
        /dev/shm folders (with what killed Fast DDS processes leave there). Idempotent."""
        for h in self.hosts:
            h.stop()
        for ns in self._created:
            _kill_all(ns)
            _ip("netns", "delete", ns)
            shutil.rmtree(SHM / ns, ignore_errors=True)
        self._created.clear()
        atexit.unregister(self.close)

    def reachable(self) -> bool:
        """A TCP connect robot -> learner answered, even by a refusal (no `ping` on every machine)."""
        probe = ("import socket, sys\ntry: socket.create_connection((sys.argv[1], 9), timeout=1)\n"
                 "except ConnectionRefusedError: pass\nexcept OSError: sys.exit(1)")
        return self.robot.run([sys.executable, "-c", probe, self.learner.address]).returncode == 0

    def wait_link(self, up: bool, timeout: float = 10.0) -> None:
        """Until the learner is reachable from the robot (up) or not (down)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.reachable() == up:
                return
            time.sleep(0.1)
        raise TimeoutError(f"link not {'up' if up else 'down'} after {timeout} s")
