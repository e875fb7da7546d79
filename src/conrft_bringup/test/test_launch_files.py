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

ROOT = Path(__file__).resolve().parents[3]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
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
