"""Several robots feeding one learner (`conrft session config/sim_fleet.yaml robots:=N`): the session's fleet
expansion, a two-robot session over DDS, and the learner refusing robots it must not learn from."""
from pathlib import Path

import pytest
import yaml

from conrft_core.checkpoint import load_checkpoint
from conrft_core.data.episode import key_from_meta
from conrft_core.data.outbox import Outbox

ROOT = Path(__file__).resolve().parents[3]
FLEET = ROOT / "config" / "sim_fleet.yaml"
SHARED = ["/conrft/transitions", "/conrft/transitions_resent", "/conrft/episode_acks", "/conrft/policy_weights"]


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
def test_fleet_session_refuses_bad_fleets(tmp_path, session_variant, change, message):
    from conrft_bringup.session import load_session
    from conrft_core.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_session(session_variant(FLEET, tmp_path / "fleet.yaml", change), {})


def test_launch_file_moves_the_session_s_names(tmp_path):
    """train_fleet.launch.py cannot run here: it reads the remap list from sim_fleet.yaml, the session's home."""
    text = (ROOT / "launch" / "train_fleet.launch.py").read_text()
    assert '"sim_fleet.yaml"' in text and 'fleet["remap"]' in text


def test_two_robots_feed_one_learner(tmp_path, graph_assets, run_session):
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


def test_learner_refuses_unknown_and_doubled_robot_names(tmp_path, graph_assets, run_session, session_variant):
    """Robot 2 configured with robot 1's name: the learner takes in one sender as robot_1 and refuses the other's
    transitions, which stay in that robot's outbox. Then a robot the learner does not list: nothing taken in."""
    def refused(name: str, robots: int, change) -> tuple[str, Path]:
        def variant(cfg):
            change(cfg)
            cfg["fleet"]["robots_parameter"] = ""
            cfg["session"]["timeout"] = 45
        run_dir = tmp_path / name
        res = run_session(session_variant(FLEET, tmp_path / f"{name}.yaml", variant),
                          {**graph_assets, "run_dir": run_dir, "robots": robots, "max_episode_steps": 20}, timeout=300)
        assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
        return res.stdout + res.stderr, run_dir

    def doubled(cfg):
        cfg["fleet"]["parameters"]["policy"]["robot_name"] = cfg["fleet"]["parameters"]["teleop"]["robot_name"] = \
            "robot_1"
        cfg["nodes"]["learner"]["parameters"]["robots"] = ["robot_1"]
    out, run_dir = refused("doubled", 2, doubled)
    assert "two senders publish as robot robot_1: /robot_1/policy and /robot_2/policy" in out \
        or "two senders publish as robot robot_1: /robot_2/policy and /robot_1/policy" in out, out[-4000:]
    kept = [Outbox(run_dir / "outbox" / r / "policy", 10**9, 10.0).steps for r in ("robot_1", "robot_2")]
    assert any(kept), kept  # the refused sender's episodes were never acknowledged: nothing of them is lost

    out, run_dir = refused("unknown", 1, lambda cfg: cfg["nodes"]["learner"]["parameters"].update(robots=["robot_7"]))
    assert "robot robot_1 is not one of this learner's robots (robot_7)" in out, out[-4000:]
    assert not list((run_dir / "journal").rglob("episode_*.bin"))  # nothing of it taken in
    assert Outbox(run_dir / "outbox" / "robot_1" / "policy", 10**9, 10.0).steps  # all of it still on the robot
