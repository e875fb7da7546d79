"""The robot host and the learner host as two network namespaces joined by a veth pair (needs root and
`ip netns`): the harness itself, transitions and weights across the link in both discovery configurations of
config/dds, and the link taken down and brought back: within a participant's lease (DDS resends), and past it
with the session nodes (the policy node's outbox resends)."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rclpy.serialization import deserialize_message

from conrft_bringup import link_bench, netns
from conrft_bringup.link_bench import Link, discovery_seconds, wait_for
from conrft_core.data.journal import TransitionJournal
from conrft_interfaces.msg import Transition

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "config"


def _can_make_namespaces() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        netns.namespaces()
    except (OSError, RuntimeError):
        return False
    return True


pytestmark = [pytest.mark.skipif(not _can_make_namespaces(), reason="needs root and `ip netns`"),
              pytest.mark.realtime]  # the nodes run in namespaces of their own, not through ros_process


def ours() -> list[str]:
    return [ns for ns in netns.namespaces() if ns.startswith(f"{netns.PREFIX}{os.getpid()}-")]


@pytest.fixture(autouse=True)
def no_namespace_left():
    yield
    assert ours() == [], "namespaces left behind"


def test_harness_makes_two_linked_hosts_and_removes_them_on_failure():
    with pytest.raises(RuntimeError, match="inside"), netns.TwoHosts() as hosts:
        assert sorted(ours()) == sorted([hosts.robot.namespace, hosts.learner.namespace])
        assert hosts.reachable()
        assert "224.0.0.0/4" in hosts.robot.run(["ip", "route"]).stdout
        sleeper = hosts.learner.popen(["sleep", "600"])
        hosts.robot.set_link(False)
        hosts.wait_link(False)
        hosts.robot.set_link(True)
        hosts.wait_link(True)
        assert "224.0.0.0/4" in hosts.robot.run(["ip", "route"]).stdout  # restored after the flap
        raise RuntimeError("a failure inside")
    assert sleeper.poll() is not None  # processes started inside are killed


def test_namespaces_of_a_killed_run_are_removed_by_the_next():
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{netns.PREFIX}{dead.pid}-abcdef-robot"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    assert stale in netns.remove_stale()
    assert stale not in netns.namespaces()


@pytest.mark.parametrize("mode", link_bench.MODES)
def test_transitions_and_weights_cross_the_link(mode, tmp_path):
    with Link(mode, tmp_path) as link:
        robot, learner, t0 = link.start()
        assert discovery_seconds(robot, learner, t0, timeout=30) < 30
        wait_for(lambda: len(learner.events("received")) >= 30 and len(robot.events("weights")) >= 2, 30,
                 "30 transitions at the learner and 2 weight versions at the robot")
    got = [(e["episode"], e["step"]) for e in learner.events("received")]
    sent = [(e["episode"], e["step"]) for e in robot.events("sent")]
    first = sent.index(got[0])
    assert got == sent[first:first + len(got)]  # in order, none missing or repeated
    versions = [e["version"] for e in robot.events("weights")]
    assert versions == sorted(set(versions))


def test_discovery_server_clients_find_nothing_without_the_server(tmp_path):
    """The control for the discovery-server configuration: its clients discover through the server only (on this
    link, where multicast discovery works), so with the server gone nothing is found."""
    with Link("discovery_server", tmp_path) as link:
        link.server.kill()
        link.server.wait()
        robot, learner, _ = link.start()
        time.sleep(10.0)
        assert not learner.events("received")
        assert robot.events("sent")  # the robot ran; nobody heard it


@pytest.mark.parametrize("mode", link_bench.MODES)
def test_link_down_and_up_loses_nothing_within_the_lease(mode, tmp_path):
    """8 s down: less than a participant's lease (Fast DDS: 20 s), so the reliable writer keeps every unacknowledged
    transition for the learner and resends it when the link returns; weights flow again."""
    with Link(mode, tmp_path) as link:
        r = link_bench.outage(link, down=8.0)
    assert r["produced_while_down"] >= 60, r
    assert r["received_while_down"] == 0, r  # the link really carried the data
    assert (r["lost"], r["duplicates"], r["unmatched"]) == (0, 0, []), r
    assert r["transitions_resumed_s"] < 10 and r["new_weights_s"] < 10, r


def start_session(link, tmp_path, assets, *learner_args):
    """sim, policy and teleop nodes on the robot host, the learner node on the learner host; returns the learner."""
    size = assets["image_size"]

    def node(host, module, log, *args):
        return getattr(link.hosts, host).popen([sys.executable, "-m", module, "--ros-args", *args],
                                               log=tmp_path / log, env=link.env[host])
    node("robot", "conrft_sim.sim_node", "sim.log", "--params-file", str(CONFIG / "sim_node.yaml"),
         "-p", f"image_width:={size}", "-p", f"image_height:={size}")
    node("robot", "conrft_policy.policy_node", "policy.log", "--params-file", str(CONFIG / "policy_sim.yaml"),
         "-p", "use_sim_time:=true", "-p", f"vla_checkpoint:={assets['vla_checkpoint']}",
         "-p", "instruction:=pick up the red cube", "-p", "max_episode_steps:=20", "-p", "outbox_resend_after:=3.0")
    node("robot", "conrft_teleop.teleop_node", "teleop.log", "--params-file", str(CONFIG / "teleop_sim.yaml"),
         "-p", "use_sim_time:=true")
    return node("learner", "conrft_learner.learner_node", "learner.log",
                "--params-file", str(CONFIG / "learner.yaml"), "-p", "use_sim_time:=true",
                "-p", f"vla_checkpoint:={assets['vla_checkpoint']}", "-p", f"demo_bags:=[{assets['demo_bag']}]",
                "-p", f"run_dir:={tmp_path / 'run'}", "-p", f"config_file:={assets['train_config']}",
                "-p", "task:=pick_cube", "-p", "publish_every_updates:=5", *learner_args)


def adopted(policy_log: Path) -> list[tuple[float, int]]:
    """(wall-clock time, version) of each weight version the policy node adopted."""
    return [(float(t), int(v)) for t, v in
            re.findall(r"\[(\d+\.\d+)\] \[policy\]: adopted policy weights version (\d+)", policy_log.read_text())]


def test_the_session_nodes_across_the_link(tmp_path, make_graph_assets):
    """The learner's weights reach the policy, the policy's episodes reach the learner (multicast), which finishes
    its online stage and sends weights the policy adopts."""
    assets = make_graph_assets(tmp_path / "assets", online_env_steps=60)
    with Link("multicast", tmp_path) as link:
        learner = start_session(link, tmp_path, assets)
        policy_log = tmp_path / "policy.log"
        try:
            assert learner.wait(timeout=240) == 0
            wait_for(lambda: max((v for _, v in adopted(policy_log)), default=0) >= 2, 30,
                     "weights of the online stage at the policy")
        except (AssertionError, subprocess.TimeoutExpired):
            pytest.fail(f"policy:\n{policy_log.read_text()[-2000:]}\nlearner:\n"
                        f"{(tmp_path / 'learner.log').read_text()[-3000:]}")
    assert re.search(r"online stage complete: \d+ steps", (tmp_path / "learner.log").read_text())


def test_a_partition_longer_than_the_lease_loses_no_transition(tmp_path, make_graph_assets):
    """The session nodes with the link down for 25 s mid-session: longer than a participant's lease, so DDS drops
    the learner with every transition it had not acknowledged (link_bench). The policy keeps acting on its last
    weights, its outbox resends the episodes the learner missed, every step produced until the link returned is
    in the learner's journal exactly once, and new weights reach the policy."""
    assets = make_graph_assets(tmp_path / "assets", online_env_steps=100_000)
    policy_log, learner_log = tmp_path / "policy.log", tmp_path / "learner.log"
    outbox = tmp_path / "ros_home" / "conrft" / "outbox" / "policy"  # the robot host's ROS_HOME (link_bench)
    ended = lambda: {int(e): (float(t), int(n)) for t, e, n in re.findall(  # noqa: E731
        r"\[(\d+\.\d+)\] \[policy\]: episode (\d+) ended after (\d+) steps", policy_log.read_text())}
    started = lambda: [(float(t), int(v)) for t, v in re.findall(  # noqa: E731
        r"\[(\d+\.\d+)\] \[policy\]: episode \d+ started \(policy version (\d+)\)", policy_log.read_text())]
    with Link("multicast", tmp_path) as link:
        # No checkpoint during the test: the journal keeps every transition the learner received.
        start_session(link, tmp_path, assets, "-p", "checkpoint_every_episodes:=1000")
        try:
            wait_for(lambda: len(re.findall(r"\]: episode \d+: ", learner_log.read_text())) >= 2, 180,
                     "two episodes at the learner")
            link.hosts.robot.set_link(False)
            t_down = time.time()
            time.sleep(25.0)
            link.hosts.robot.set_link(True)
            t_up = time.time()
            before = {e for e, (t, _) in ended().items() if t < t_up}
            # The outbox is empty of them once the learner has acknowledged each (journaled, synced).
            wait_for(lambda: not any((outbox / f"episode_{e:08d}.bin").exists() for e in before), 60,
                     "every episode of the partition acknowledged")
            last = max(v for t, v in adopted(policy_log) if t < t_down)
            wait_for(lambda: any(t > t_up and v > last for t, v in adopted(policy_log)), 60, "new weights")
        except AssertionError as exc:
            pytest.fail(f"{exc}\npolicy:\n{policy_log.read_text()[-3000:]}\n"
                        f"learner:\n{learner_log.read_text()[-3000:]}")
    during = {e for e, (t, _) in ended().items() if t_down < t < t_up}
    assert len(during) >= 5, ended()  # the robot kept running episodes
    # On weights from before the partition: a version is the learner's wall-clock ms at publishing (one received
    # just before the link went down may still be adopted during it, at the end of a chunk).
    assert all(v / 1e3 < t_down for t, v in started() if t_down < t < t_up), (t_down, started())
    assert "outbox: resent episode" in policy_log.read_text()
    journal = TransitionJournal(tmp_path / "run" / "journal")
    held = [(m.episode_id, m.step) for e in journal.episodes()
            for m in (deserialize_message(r, Transition) for r in journal.records(e))]
    assert len(held) == len(set(held)), "a step journaled twice"
    produced = {(e, t) for e in before for t in range(ended()[e][1])}
    assert {k for k in held if k[0] in before} == produced, sorted(produced ^ {k for k in held if k[0] in before})
    learned = re.findall(r"\]: episode (\d+): ", learner_log.read_text())
    assert len(learned) == len(set(learned)), "an episode learned from twice"
