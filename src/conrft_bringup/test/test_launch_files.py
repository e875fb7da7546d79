"""Launch files cannot run here (no `launch` / `launch_ros` wheels), so check what can be checked statically:
every launch file parses, each Node names an executable that its package installs, each parameter file it
names exists, and every inline parameter is one the parameter file declares for that node."""
import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))


def console_scripts(package: str) -> set[str]:
    setup = (ROOT / "src" / package / "setup.py").read_text()
    return set(re.findall(r'"(\w+) = ', setup))


def node_calls(tree):
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Node":
            yield {kw.arg: kw.value for kw in call.keywords}


def test_there_are_launch_files():
    assert LAUNCH_FILES


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_references_exist(path):
    tree = ast.parse(path.read_text())
    assert any(isinstance(f, ast.FunctionDef) and f.name == "generate_launch_description" for f in tree.body)
    config_names = {c.value for c in ast.walk(tree) if isinstance(c, ast.Constant) and str(c.value).endswith(".yaml")}
    for name in config_names:
        assert (ROOT / "config" / name).is_file(), f"{path.name} names config/{name}, which does not exist"
    nodes = list(node_calls(tree))
    assert nodes, f"{path.name} starts no Node"
    for kw in nodes:
        package, executable, name = (kw[k].value for k in ("package", "executable", "name"))
        assert executable in console_scripts(package), f"{package} installs no executable '{executable}'"
        declared = set()
        for cfg in config_names:
            declared |= set(yaml.safe_load((ROOT / "config" / cfg).read_text()).get(name, {}).get("ros__parameters", {}))
        for item in ast.walk(kw["parameters"]):
            if isinstance(item, ast.Dict):
                for key in item.keys:
                    assert key.value in declared, f"{path.name}: '{key.value}' is not a parameter of node '{name}'"
