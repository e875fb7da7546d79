"""The robot-learner link between two hosts (network namespaces, conrft_bringup.netns; needs root):

- discovery: seconds from both sides started until the robot's transitions writer matches the learner's reader,
  for each discovery configuration of config/dds (multicast, discovery_server);
- outage: the link taken down for --down seconds while the robot publishes 10 transitions a second (two 64x64
  images each) and the learner a weight version a second: transitions produced vs received, duplicates, seconds
  from the link's return until the learner receives again and until the robot adopts a new weight version;
  with --outbox the robot keeps the policy node's outbox and the learner journals and acknowledges as the learner
  node does: transitions produced (of whole episodes) vs journaled, steps journaled twice, seconds from the link's
  return until the learner holds everything produced;
- weights: with --weights-mb, weight versions of each payload size sent across the link every few seconds while
  the robot streams transitions: seconds from publishing to the robot holding the version (p50 / max), and the
  robot's longest gap between two transitions meanwhile; with Fast DDS's default transports and with
  FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA.

    sudo python -m conrft_bringup.link_bench [--down 30] [--outbox] [--modes multicast discovery_server] [--out F]
    sudo python -m conrft_bringup.link_bench --weights-mb 1 10 100 [--modes multicast] [--out F]

Every process is a real rclpy participant (conrft_bringup.link_probe) with the policy node's QoS and Fast DDS's
default transports. The namespaces share one kernel and /dev/shm, yet Fast DDS tells them apart as hosts and
sends over UDP, not shared memory: nothing is received while the link is down (`received_while_down`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rclpy.serialization import deserialize_message

from conrft_bringup.netns import Host, TwoHosts
from conrft_core.data.journal import TransitionJournal
from conrft_interfaces.msg import Transition

ROOT = Path(__file__).resolve()
while not (ROOT / "config").is_dir() and ROOT.parent != ROOT:  # the workspace root, from src/ or build/
    ROOT = ROOT.parent
DDS = ROOT / "config" / "dds"
MODES = ("multicast", "discovery_server")


def sourced_env(env_file: Path, base: dict[str, str]) -> dict[str, str]:
    """The environment after `source env_file` in bash: the shipped file is what is tested, not a copy of it."""
    out = subprocess.run(["bash", "-c", 'source "$1" && env -0', "_", str(env_file)], env=base,
                         capture_output=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


def host_env(mode: str, hosts: TwoHosts, domain_id: int, ros_home: Path) -> dict[str, str]:
    """Each host's environment for a discovery mode, with a private domain and ROS_HOME."""
    base = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_HOME": str(ros_home), "PYTHONUNBUFFERED": "1",
            "CONRFT_DISCOVERY_SERVER": hosts.robot.address}
    return sourced_env(DDS / f"{mode}.env", base)


def start_server(host: Host, env: dict[str, str], log: Path):
    """The discovery server on `host`; returns once it listens (its log line)."""
    proc = host.popen([sys.executable, "-m", "conrft_bringup.discovery_server"], log=log, env=env)
    wait_for(lambda: "discovery server up" in log.read_text() or proc.poll() is not None, 30, "discovery server")
    if proc.poll() is not None:
        raise RuntimeError(f"discovery server exited: {log.read_text()[-2000:]}")
    return proc


@dataclass
class Probe:
    """A link_probe process and its JSON-lines log."""

    proc: subprocess.Popen
    log: Path

    def events(self, kind: str | None = None) -> list[dict]:
        lines = [json.loads(s) for s in self.log.read_text().splitlines() if s.startswith("{")]
        return [e for e in lines if kind is None or e["event"] == kind]


def start_probe(host: Host, role: str, env: dict[str, str], log: Path, *args: str) -> Probe:
    return Probe(host.popen([sys.executable, "-m", "conrft_bringup.link_probe", role, *args], log=log, env=env), log)


def wait_for(predicate, timeout: float, what: str, poll: float = 0.1) -> float:
    """Seconds until predicate() held; AssertionError naming `what` after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Link:
    """Robot and learner probes across two fresh namespaces in one discovery mode (a context manager)."""

    def __init__(self, mode: str, tmp: Path, transports: str = "DEFAULT"):
        self.mode, self.tmp, self.transports = mode, tmp, transports
        self.hosts = TwoHosts()
        self.server: subprocess.Popen | None = None

    def __enter__(self) -> Link:
        self.hosts.__enter__()
        try:
            domain = 1 + (os.getpid() + 37) % 100  # not the test run's own domain (conftest: 1 + pid % 100)
            self.env = {h: host_env(self.mode, self.hosts, domain, self.tmp / "ros_home") for h in ("robot", "learner")}
            if self.transports != "DEFAULT":  # e.g. LARGE_DATA: TCP between hosts (README "Two machines")
                for env in self.env.values():
                    env["FASTDDS_BUILTIN_TRANSPORTS"] = self.transports
            if self.mode == "discovery_server":
                self.server = start_server(self.hosts.robot, self.env["robot"], self.tmp / "server.log")
        except BaseException:
            self.hosts.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.hosts.close()

    def start(self, robot_args=(), learner_args=()) -> tuple[Probe, Probe, float]:
        """Both probes started together; returns them and the wall-clock start time."""
        t0 = time.time()
        robot = start_probe(self.hosts.robot, "robot", self.env["robot"], self.tmp / "robot.log", *robot_args)
        learner = start_probe(self.hosts.learner, "learner", self.env["learner"], self.tmp / "learner.log",
                              *learner_args)
        return robot, learner, t0


def discovery_seconds(robot: Probe, learner: Probe, t0: float, timeout: float = 60.0) -> float:
    """From start until the robot's first transition reached the learner (both sides discovered each other)."""
    wait_for(lambda: learner.events("received"), timeout, "the first transition across the link")
    return learner.events("received")[0]["t"] - t0


def outage(link: Link, down: float, outbox: bool = False) -> dict:
    """Take the link down for `down` s mid-stream; counts and recovery times (module doc)."""
    journal = link.tmp / "journal"
    args = (("--outbox", str(link.tmp / "outbox")), ("--journal", str(journal))) if outbox else ((), ())
    robot, learner, t0 = link.start(*args)
    discovered = discovery_seconds(robot, learner, t0)
    wait_for(lambda: robot.events("weights"), 30, "weights at the robot")
    time.sleep(2.0)
    link.hosts.robot.set_link(False)
    t_down = time.time()
    time.sleep(down)
    link.hosts.robot.set_link(True)
    t_up = time.time()
    version_at_up = max(e["version"] for e in learner.events("weights"))
    resumed = lambda: [e for e in learner.events("received") if e["t"] > t_up]  # noqa: E731
    weights_back = lambda: [e for e in robot.events("weights") if e["version"] > version_at_up]  # noqa: E731
    wait_for(lambda: resumed() and weights_back(), max(60.0, 2 * down), "traffic after the link returned")
    if outbox:  # whole episodes come back from the outbox: wait for those of the outage
        until_up = {(e["episode"], e["step"]) for e in robot.events("sent") if e["t"] <= t_up}
        wait_for(lambda: until_up <= {(e["episode"], e["step"]) for e in learner.events("journaled")},
                 max(60.0, 2 * down), "every transition produced until the link returned, journaled")
        caught_up = time.time() - t_up
    time.sleep(3.0)  # the backlog of a reliable writer, if it kept one, drains in well under that
    t_end = time.time()
    robot.proc.terminate()
    robot.proc.wait()
    time.sleep(1.0)
    sent = [(e["episode"], e["step"]) for e in robot.events("sent")]
    got = Counter((e["episode"], e["step"]) for e in learner.events("received"))
    during = {(e["episode"], e["step"]) for e in robot.events("sent") if t_down <= e["t"] <= t_up}
    first = min(sent.index(k) for k in got) if got else 0  # published before discovery: nobody to receive them
    lost = [k for k in sent[first:] if k not in got]
    result = {"mode": link.mode, "down_s": down, "discovery_s": round(discovered, 2),
              "produced": len(sent) - first, "received": len(got), "lost": len(lost),
              "lost_of_produced_while_down": len(during - set(got)), "produced_while_down": len(during),
              "duplicates": sum(n - 1 for n in got.values()),
              "received_while_down": sum(t_down + 0.5 < e["t"] < t_up for e in learner.events("received")),
              "unmatched": sorted(e["endpoint"] for e in robot.events("unmatched") + learner.events("unmatched")
                                  if e["t"] < t_end),
              "transitions_resumed_s": round(resumed()[0]["t"] - t_up, 2),
              "new_weights_s": round(weights_back()[0]["t"] - t_up, 2)}
    if outbox:
        result.update(journal_counts(sent, journal), caught_up_s=round(caught_up, 2),
                      resent_episodes=len(robot.events("resent")))
    return result


def journal_counts(sent: list[tuple[int, int]], folder: Path) -> dict:
    """Transitions of whole episodes produced (every episode but the one the robot was stopped in) vs those in the
    learner's journal; steps journaled twice."""
    journal = TransitionJournal(folder)
    held = [(m.episode_id, m.step) for eid in journal.episodes()
            for m in (deserialize_message(r, Transition) for r in journal.records(eid))]
    produced = {k for k in sent if k[0] != sent[-1][0]}
    return {"outbox_produced": len(produced), "outbox_journaled": len(produced & set(held)),
            "outbox_lost": len(produced - set(held)), "journal_duplicates": len(held) - len(set(held))}


def weights(link: Link, mb: float, versions: int = 5, every: float = 4.0) -> dict:
    """Weight versions of `mb` MB across the link (module doc)."""
    size = int(mb * 1e6)
    robot, learner, t0 = link.start((), ("--weights-bytes", str(size), "--weights-every", str(every)))
    try:
        discovery_seconds(robot, learner, t0)
        held = lambda: {e["version"] for e in robot.events("weights")}  # noqa: E731
        wait_for(lambda: held(), 60, "the first weights at the robot")
        first = min(held())
        wanted = set(range(first + 1, first + 1 + versions))
        wait_for(lambda: wanted <= held(), versions * every + 60, f"{versions} versions of {mb} MB at the robot")
    finally:
        robot.proc.terminate()
        learner.proc.terminate()
        robot.proc.wait()
        learner.proc.wait()
    published = {e["version"]: e["t"] for e in learner.events("publishing")}
    arrived = {e["version"]: e["t"] for e in robot.events("weights")}
    latency = sorted(arrived[v] - published[v] for v in wanted)
    window = (published[min(wanted)], arrived[max(wanted)])
    sent = [e["t"] for e in robot.events("sent") if window[0] <= e["t"] <= window[1]]
    return {"mode": link.mode, "transports": link.env["robot"].get("FASTDDS_BUILTIN_TRANSPORTS", "DEFAULT"),
            "payload_mb": mb, "versions": versions, "latency_s_p50": round(latency[len(latency) // 2], 3),
            "latency_s_max": round(latency[-1], 3),
            "robot_max_gap_s": round(max(b - a for a, b in zip(sent, sent[1:])), 3) if len(sent) > 1 else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="link_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--down", type=float, default=30.0, help="seconds the link is down")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--outbox", action="store_true", help="the robot keeps an outbox, the learner a journal")
    parser.add_argument("--weights-mb", type=float, nargs="+", help="measure weight payloads of these sizes instead")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    results = []
    for mode in args.modes:
        for transports in (("DEFAULT", "LARGE_DATA") if args.weights_mb else ("DEFAULT",)):
            for mb in args.weights_mb or [None]:
                with tempfile.TemporaryDirectory(prefix="conrft-link-") as tmp, \
                        Link(mode, Path(tmp), transports) as link:
                    results.append(outage(link, args.down, args.outbox) if mb is None else weights(link, mb))
                print(json.dumps(results[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
