"""Launch files cannot run here (no `launch` / `launch_ros` wheels), so check what can be checked statically:
every launch file parses, each Node names an executable its package installs (or a known external package),
each parameter file it names exists, every inline parameter is one the node declares, and every key of every
node parameter file is a parameter of that node (a typo there would be refused at start-up)."""
import ast
import importlib
import re
from pathlib import Path

import pytest
import yaml

from conrft_core.robot.controllers import load_preset, preset_names

ROOT = Path(__file__).resolve().parents[3]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
PRESETS = ROOT / "config" / "controllers"
EXTERNAL = {"rviz2", "spacenav"}  # packages of a full ROS 2 install, not of this workspace
# Parameter file -> (package, executable) of the node whose blocks it holds.
PARAM_FILES = {
    "sim_node.yaml": ("conrft_sim", "sim_node"), "policy_sim.yaml": ("conrft_policy", "policy_node"),
    "policy_real.yaml": ("conrft_policy", "policy_node"), "teleop_sim.yaml": ("conrft_teleop", "teleop_node"),
    "teleop_spacenav.yaml": ("conrft_teleop", "teleop_node"), "learner.yaml": ("conrft_learner", "learner_node"),
    "camera_publisher.yaml": ("conrft_policy", "camera_publisher"),
    "robot_state_publisher.yaml": ("conrft_policy", "robot_state_publisher"),
    "demo_recorder.yaml": ("conrft_bringup", "demo_recorder"),
    "home_reset.yaml": ("conrft_policy", "home_reset"),
    "success_detector.yaml": ("conrft_policy", "success_detector"),
    "target_streamer.yaml": ("conrft_policy", "target_streamer"),
}


def console_scripts(package: str) -> dict[str, str]:
    """executable -> module of the package's console scripts."""
    setup = (ROOT / "src" / package / "setup.py").read_text()
    return dict(re.findall(r'"(\w+) = ([\w.]+):main"', setup))


def declared(package: str, executable: str) -> set[str]:
    return set(importlib.import_module(console_scripts(package)[executable]).PARAMS) | {"use_sim_time"}


def node_calls(tree):
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Node":
            yield {kw.arg: kw.value for kw in call.keywords}


def test_there_are_launch_files():
    assert {p.name for p in LAUNCH_FILES} >= {"train_sim.launch.py", "train_real.launch.py",
                                              "record_demos.launch.py", "eval.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_references_exist(path):
    tree = ast.parse(path.read_text())
    assert any(isinstance(f, ast.FunctionDef) and f.name == "generate_launch_description" for f in tree.body)
    strings = [c.value for c in ast.walk(tree) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
    for name in {m for s in strings for m in re.findall(r"[\w]+\.yaml", s)}:
        assert (ROOT / "config" / name).is_file(), f"{path.name} names config/{name}, which does not exist"
    for name in {m for s in strings for m in re.findall(r"[\w]+\.rviz", s)}:
        assert (ROOT / "src" / "conrft_bringup" / "rviz" / name).is_file(), f"{path.name}: rviz/{name} is missing"
    nodes = list(node_calls(tree))
    assert nodes, f"{path.name} starts no Node"
    for kw in nodes:
        package, executable = kw["package"].value, kw["executable"].value
        if package in EXTERNAL:
            continue
        assert executable in console_scripts(package), f"{package} installs no executable '{executable}'"
        params = declared(package, executable)
        for item in ast.walk(kw.get("parameters", ast.List(elts=[]))):
            if isinstance(item, ast.Dict):
                for key in item.keys:
                    assert key.value in params, f"{path.name}: '{key.value}' is not a parameter of {executable}"


@pytest.mark.parametrize("name", sorted(PARAM_FILES))
def test_parameter_file_keys_are_node_parameters(name):
    data = yaml.safe_load((ROOT / "config" / name).read_text())
    params = declared(*PARAM_FILES[name])
    assert data, f"config/{name} is empty"
    for node, block in data.items():
        unknown = set(block["ros__parameters"]) - params
        assert not unknown, f"config/{name} [{node}]: {sorted(unknown)} are not parameters of {PARAM_FILES[name][1]}"


def test_every_node_parameter_file_is_checked():
    files = {p.name for p in (ROOT / "config").glob("*.yaml")
             if "ros__parameters" in p.read_text()}
    assert files == set(PARAM_FILES)


# Controller presets: node block -> (package, executable) whose parameters it sets.
PRESET_NODES = {"policy": ("conrft_policy", "policy_node"), "home_reset": ("conrft_policy", "home_reset"),
                "sim": ("conrft_sim", "sim_node")}


@pytest.mark.parametrize("name", preset_names(PRESETS))
def test_controller_preset_keys_are_node_parameters(name):
    preset = load_preset(PRESETS / f"{name}.yaml")
    assert "policy" in preset.nodes
    for node, params in preset.nodes.items():
        unknown = set(params) - declared(*PRESET_NODES[node])
        assert not unknown, f"controllers/{name}.yaml [{node}]: {sorted(unknown)} are not parameters of that node"


def test_launch_files_choose_a_preset_with_one_argument():
    """train_real offers every preset; each launch file with a `controller` argument passes the preset to the nodes
    that publish or serve targets, right after their own parameter file (its values win)."""
    real = ast.parse((ROOT / "launch" / "train_real.launch.py").read_text())
    offered = next(ast.literal_eval(n.value) for n in real.body
                   if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "CONTROLLERS")
    assert sorted(offered) == preset_names(PRESETS)
    choosing = []
    for path in LAUNCH_FILES:
        tree = ast.parse(path.read_text())
        args = {c.args[0].value for c in ast.walk(tree)
                if isinstance(c, ast.Call) and getattr(c.func, "id", None) == "DeclareLaunchArgument"}
        if "controller" not in args:
            continue
        choosing.append(path.name)
        for kw in node_calls(tree):
            if kw["executable"].value in ("policy_node", "home_reset", "sim_node"):
                second = kw["parameters"].elts[1]
                assert getattr(second, "id", None) == "preset", \
                    f"{path.name}: {kw['executable'].value} does not get the controller preset after its own file"
    assert set(choosing) >= {"train_real.launch.py", "train_sim.launch.py", "record_demos.launch.py"}


def test_sim_preset_is_what_the_sim_node_serves():
    from conrft_sim import sim_node

    preset = load_preset(PRESETS / "sim.yaml")
    assert preset.stiffness.name == sim_node.STIFFNESS_SERVICE  # the project's stiffness path, unchanged
    policy = importlib.import_module("conrft_policy.policy_node").PARAMS
    assert preset.target_topic == sim_node.PARAMS["target_topic"] == policy["target_topic"]
    assert preset.frame_id == sim_node.PARAMS["frame_id"]
