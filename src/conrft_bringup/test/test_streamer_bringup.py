"""Where the node graph is started, a streaming controller preset starts the target streamer with the policy node's
topics, frame, safety box and rates, and the sim preset (one target per step) none: `conrft session`'s
`stream_of`, and the launch files' streamer function, run here with stand-ins for the launch packages (absent on
this machine)."""
import sys
import types
from pathlib import Path

import pytest
import yaml

from conrft_bringup.session import load_session
from conrft_core.config import ConfigError
from conrft_core.robot.relay import FROM_POLICY

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "config"
SESSION = CONFIG / "sim_pick_cube.yaml"


def preset_policy(name: str) -> dict:
    return yaml.safe_load((CONFIG / "controllers" / f"{name}.yaml").read_text())["policy"]["ros__parameters"]


@pytest.mark.parametrize("controller", ["franka_ros2", "crisp", "fzi"])
def test_a_session_with_a_streaming_preset_starts_the_target_streamer(controller):
    _, nodes = load_session(SESSION, {"controller": controller})
    streamer, policy = nodes["target_streamer"], preset_policy(controller)
    assert streamer.executable == "target_streamer" and streamer.params == [str(CONFIG / "target_streamer.yaml")]
    assert set(streamer.parameters) == set(FROM_POLICY)
    for key in ("target_topic", "frame_id", "reset_node", "stream_rate"):  # the preset's, over policy_sim.yaml's
        assert streamer.parameters[key] == policy[key]
    box = yaml.safe_load((CONFIG / "policy_sim.yaml").read_text())["policy"]["ros__parameters"]["safety_box_low"]
    assert streamer.parameters["safety_box_low"] == box


def test_a_session_with_the_sim_preset_starts_none():
    _, nodes = load_session(SESSION, {})
    assert "target_streamer" not in nodes and "policy" in nodes


def test_a_streamer_of_no_node_or_split_across_a_fleet_is_refused(tmp_path, session_variant):
    def orphan(cfg):
        cfg["nodes"]["target_streamer"]["stream_of"] = "polcy"
    with pytest.raises(ConfigError, match="nodes.target_streamer.stream_of names 'polcy', which is not an enabled"):
        load_session(session_variant(SESSION, tmp_path / "orphan.yaml", orphan), {"controller": "fzi"})

    def fleet(cfg):
        cfg["fleet"] = {"robots": 2, "nodes": ["sim", "policy", "teleop"]}
    with pytest.raises(ConfigError, match="must copy the target streamer 'target_streamer' and its policy node"):
        load_session(session_variant(SESSION, tmp_path / "fleet.yaml", fleet), {"controller": "fzi"})


@pytest.fixture
def launch_stand_ins(monkeypatch):
    """Modules the launch files import, standing in for launch / launch_ros: a Node is the dict of its arguments,
    a LaunchConfiguration its argument's name; the package share is this workspace."""
    def module(name, **attrs):
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))

    anything = lambda *a, **k: None  # noqa: E731
    for name in ("launch", "launch.actions", "launch.conditions", "launch.substitutions", "launch_ros",
                 "launch_ros.actions", "launch_ros.substitutions"):
        module(name, LaunchDescription=anything, DeclareLaunchArgument=anything, OpaqueFunction=anything,
               GroupAction=anything, IfCondition=anything, UnlessCondition=anything, PathJoinSubstitution=anything,
               PythonExpression=anything, FindPackageShare=anything, PushRosNamespace=anything,
               LaunchConfiguration=lambda name: name, Node=lambda **kw: kw)
    module("ament_index_python.packages", get_package_share_directory=lambda package: str(ROOT))
    monkeypatch.delitem(sys.modules, "conrft_bringup.launch_actions", raising=False)  # imported on the stand-ins


def streamer_nodes(launch_file: str, **arguments) -> list[dict]:
    """The nodes the launch file's OpaqueFunction for the target streamer returns."""
    actions = []
    namespace = {}
    exec(compile((ROOT / "launch" / launch_file).read_text(), launch_file, "exec"), namespace)
    namespace["OpaqueFunction"] = lambda function, args=(), kwargs=None: actions.append((function, args, kwargs))
    namespace["generate_launch_description"]()
    (function, args, kwargs), = [a for a in actions if "streamer" in a[0].__name__]
    context = types.SimpleNamespace(perform_substitution=lambda name: arguments[name])
    return function(context, *args, **(kwargs or {}))


@pytest.mark.parametrize("launch_file, policy_file, arguments", [
    ("train_real.launch.py", "policy_real.yaml", {}),
    ("train_sim.launch.py", "policy_sim.yaml", {}),
    ("record_demos.launch.py", "policy_real.yaml", {"sim": "false"}),
    ("record_demos.launch.py", "policy_sim.yaml", {"sim": "true"}),
])
def test_launch_files_start_the_target_streamer_where_the_preset_streams(launch_stand_ins, launch_file,
                                                                        policy_file, arguments):
    assert streamer_nodes(launch_file, controller="sim", **arguments) == []
    (node,) = streamer_nodes(launch_file, controller="franka_ros2", **arguments)
    assert (node["package"], node["executable"], node["name"]) == ("conrft_policy", "target_streamer",
                                                                  "target_streamer")
    own, shared, *sim_time = node["parameters"]
    assert own == str(CONFIG / "target_streamer.yaml")
    policy = yaml.safe_load((CONFIG / policy_file).read_text())["policy"]["ros__parameters"]
    assert shared["safety_box_high"] == policy["safety_box_high"]
    assert shared["target_topic"] == preset_policy("franka_ros2")["target_topic"]
    assert sim_time == ([{"use_sim_time": True}] if policy_file == "policy_sim.yaml" else [])
