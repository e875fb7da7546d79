"""Several robots feeding one learner (`conrft session config/sim_fleet.yaml robots:=N`): the session's fleet
expansion, a two-robot session over DDS, and the learner refusing robots it must not learn from."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conrft_core.checkpoint import load_checkpoint
from conrft_core.data.episode import key_from_meta
from conrft_core.data.outbox import Outbox

ROOT = Path(__file__).resolve().parents[3]
FLEET = ROOT / "config" / "sim_fleet.yaml"
SHARED = ["/conrft/transitions", "/conrft/transitions_resent", "/conrft/episode_acks", "/conrft/policy_weights"]


def run_session(path, args: dict, timeout: float) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "conrft_bringup.cli", "session", str(path), *(f"{k}:={v}" for k, v in args.items())]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def fleet_variant(tmp_path, change) -> Path:
    """The shipped fleet session with `change(cfg)` applied, its parameter files still found."""
    cfg = yaml.safe_load(FLEET.read_text())
    for node in cfg["nodes"].values():
        node["params"] = [str(FLEET.parent / p) for p in node["params"]]
    change(cfg)
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_fleet_session_gives_each_robot_its_namespace_clock_and_name():
    from conrft_bringup.session import Session, load_session

    cfg, nodes = load_session(FLEET, {"robots": "3"})
    robots = ["robot_1", "robot_2", "robot_3"]
    assert sorted(nodes) == sorted(["learner"] + [f"{r}/{n}" for r in robots for n in ("sim", "policy", "teleop")])
    assert nodes["learner"].parameters["robots"] == robots
    for k, robot in enumerate(robots, start=1):
        policy = nodes[f"{robot}/policy"]
        assert policy.namespace == robot and policy.remap["/clock"] == f"/{robot}/clock"
        assert not set(SHARED) & set(policy.remap)  # the learner's link stays shared
        assert policy.parameters["robot_name"] == nodes[f"{robot}/teleop"].parameters["robot_name"] == robot
        assert policy.parameters["seed"] == k * 100000  # typed like a YAML value, not a string
    session = Session(cfg, nodes)  # holds the rewritten parameter files
    cmd = session._command("robot_2/policy", nodes["robot_2/policy"])
    assert cmd[cmd.index("--ros-args") + 1:][:4] == ["-r", "__node:=policy", "-r", "__ns:=/robot_2"]
    assert "/sim/reset:=/robot_2/sim/reset" in cmd
    files = [Path(cmd[i + 1]) for i, a in enumerate(cmd) if a == "--params-file"]
    assert all("/robot_2/policy" in yaml.safe_load(f.read_text()) for f in files)  # a namespaced node's blocks


@pytest.mark.parametrize("change, message", [
    (lambda c: c["fleet"].update(robots=0), "fleet.robots must be a whole number >= 1, got 0"),
    (lambda c: c["fleet"].update(nodes=["sim", "polcy"]), "fleet names node 'polcy'"),
    (lambda c: c["fleet"].update(remap=["clock"]), "fleet.remap entries must be absolute names"),
    (lambda c: c["fleet"].update(name="robot-{k}"), "robot name 'robot-1' is not a ROS name token"),
])
def test_fleet_session_refuses_bad_fleets(tmp_path, change, message):
    from conrft_bringup.session import load_session
    from conrft_core.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_session(fleet_variant(tmp_path, change), {})


def test_launch_file_moves_the_session_s_names(tmp_path):
    """train_fleet.launch.py cannot run here: it reads the remap list from sim_fleet.yaml, the session's home."""
    text = (ROOT / "launch" / "train_fleet.launch.py").read_text()
    assert '"sim_fleet.yaml"' in text and 'fleet["remap"]' in text


def test_two_robots_feed_one_learner(tmp_path, graph_assets):
    run_dir = tmp_path / "run"
    res = run_session(FLEET, {**graph_assets, "run_dir": run_dir, "robots": 2, "max_episode_steps": 30,
                              "online_env_steps": 150}, timeout=420)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    _, config = load_checkpoint(run_dir / "checkpoint.safetensors")
    keys = [key_from_meta(v) for v in config["meta"]["ingested_episodes"]]
    assert {robot for robot, _ in keys} == {"robot_1", "robot_2"}, keys  # both robots' episodes, kept apart
    assert config["progress"]["env_steps"] >= 150
    # One weights stream, adopted by both policy nodes: versions adopted by one are adopted by the other.
    adopted = {r: {line.split("version ")[1].split()[0] for line in out.splitlines()
                   if line.startswith(f"[{r}/policy]") and "adopted policy weights version" in line}
               for r in ("robot_1", "robot_2")}
    assert len(adopted["robot_1"] & adopted["robot_2"]) >= 2, adopted
    # Each robot's outbox is its own, and the learner's acknowledgements emptied each of the episodes it took in.
    for robot in ("robot_1", "robot_2"):
        outbox = Outbox(run_dir / "outbox" / robot / "policy", 10**9, 10.0)
        learned = {eid for r, eid in keys if r == robot}
        assert not learned & set(outbox.steps), (robot, outbox.steps)
    assert "not one of this learner's robots" not in out and "two senders" not in out


def test_learner_refuses_unknown_and_doubled_robot_names(tmp_path, graph_assets):
    """Robot 1 is named as the learner expects; robot 2 is configured with robot 1's name as well; the learner
    takes in one sender as robot_1 and refuses the other's transitions, which stay in that robot's outbox."""
    def doubled(cfg):
        cfg["fleet"]["parameters"]["policy"]["robot_name"] = "robot_1"
        cfg["fleet"]["parameters"]["teleop"]["robot_name"] = "robot_1"
        cfg["fleet"]["robots_parameter"] = ""
        cfg["nodes"]["learner"]["parameters"]["robots"] = ["robot_1"]
        cfg["session"]["timeout"] = 60
    run_dir = tmp_path / "run"
    res = run_session(fleet_variant(tmp_path, doubled), {**graph_assets, "run_dir": run_dir, "robots": 2,
                                                         "max_episode_steps": 20}, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "two senders publish as robot robot_1: /robot_1/policy and /robot_2/policy" in out \
        or "two senders publish as robot robot_1: /robot_2/policy and /robot_1/policy" in out, out[-4000:]
    kept = [Outbox(run_dir / "outbox" / r / "policy", 10**9, 10.0).steps for r in ("robot_1", "robot_2")]
    assert any(kept), kept  # the refused sender's episodes were never acknowledged: nothing of them is lost

    def unknown(cfg):
        cfg["fleet"]["robots_parameter"] = ""
        cfg["nodes"]["learner"]["parameters"]["robots"] = ["robot_7"]
        cfg["session"]["timeout"] = 45
    run_dir = tmp_path / "run_unknown"
    res = run_session(fleet_variant(tmp_path, unknown), {**graph_assets, "run_dir": run_dir, "robots": 1,
                                                         "max_episode_steps": 20}, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "robot robot_1 is not one of this learner's robots (robot_7)" in out, out[-4000:]
    assert not list((run_dir / "journal").rglob("episode_*.bin"))  # nothing of it taken in
    assert Outbox(run_dir / "outbox" / "robot_1" / "policy", 10**9, 10.0).steps  # all of it still on the robot
