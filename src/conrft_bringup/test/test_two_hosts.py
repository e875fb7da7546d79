"""The robot host and the learner host as two network namespaces joined by a veth pair (needs root and
`ip netns`): the harness itself, transitions and weights across the link in both discovery configurations of
config/dds, and the link taken down and brought back."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conrft_bringup import link_bench, netns
from conrft_bringup.link_bench import Link, discovery_seconds, wait_for

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


pytestmark = pytest.mark.skipif(not _can_make_namespaces(), reason="needs root and `ip netns`")


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


def test_the_session_nodes_across_the_link(tmp_path, make_graph_assets):
    """sim, policy and teleop nodes on the robot host, the learner node on the learner host (multicast): the
    learner's weights reach the policy, the policy's episodes reach the learner, which finishes its online stage
    and sends weights the policy adopts."""
    assets = make_graph_assets(tmp_path / "assets", online_env_steps=60)
    size = assets["image_size"]
    with Link("multicast", tmp_path) as link:
        def node(host, module, log, *args):
            return getattr(link.hosts, host).popen([sys.executable, "-m", module, "--ros-args", *args],
                                                   log=tmp_path / log, env=link.env[host])
        node("robot", "conrft_sim.sim_node", "sim.log", "--params-file", str(CONFIG / "sim_node.yaml"),
             "-p", f"image_width:={size}", "-p", f"image_height:={size}")
        node("robot", "conrft_policy.policy_node", "policy.log", "--params-file", str(CONFIG / "policy_sim.yaml"),
             "-p", "use_sim_time:=true", "-p", f"vla_checkpoint:={assets['vla_checkpoint']}",
             "-p", "instruction:=pick up the red cube", "-p", "max_episode_steps:=20")
        node("robot", "conrft_teleop.teleop_node", "teleop.log", "--params-file", str(CONFIG / "teleop_sim.yaml"),
             "-p", "use_sim_time:=true")
        learner = node("learner", "conrft_learner.learner_node", "learner.log",
                       "--params-file", str(CONFIG / "learner.yaml"), "-p", "use_sim_time:=true",
                       "-p", f"vla_checkpoint:={assets['vla_checkpoint']}", "-p", f"demo_bags:=[{assets['demo_bag']}]",
                       "-p", f"run_dir:={tmp_path / 'run'}", "-p", f"config_file:={assets['train_config']}",
                       "-p", "task:=pick_cube", "-p", "publish_every_updates:=5")
        policy_log = tmp_path / "policy.log"
        adopted = lambda: [int(v) for v in re.findall(r"adopted policy weights version (\d+)",  # noqa: E731
                                                      policy_log.read_text())]
        try:
            assert learner.wait(timeout=240) == 0
            wait_for(lambda: max(adopted(), default=0) >= 2, 30, "weights of the online stage at the policy")
        except (AssertionError, subprocess.TimeoutExpired):
            pytest.fail(f"policy:\n{policy_log.read_text()[-2000:]}\nlearner:\n"
                        f"{(tmp_path / 'learner.log').read_text()[-3000:]}")
    assert re.search(r"online stage complete: \d+ steps", (tmp_path / "learner.log").read_text())
