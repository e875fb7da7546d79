"""conrft_core's import structure, read from the source (ast, nothing executed): no import circle, and the
directions its package docstring allows (robot -> learning -> data; config and checkpoint import no part)."""
import ast
from pathlib import Path

import pytest

import conrft_core

ROOT = Path(conrft_core.__file__).resolve().parent
PARTS = ("data", "learning", "robot")
# part -> the parts it may import
ALLOWED = {"data": set(), "learning": {"data"}, "robot": {"data", "learning"}, "": set()}


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every conrft_core module `path` imports, anywhere in the file (also inside functions and
    `if TYPE_CHECKING:`); `from pkg import name` counts as pkg.name when that is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    return {name: imported_modules(path, set(files)) - {name} for name, path in files.items()}


def part_of(module: str) -> str:
    """'data', 'learning', 'robot', or '' for the shared modules and the package itself."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 and pieces[1] in PARTS else ""


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def forbidden(graph: dict[str, set[str]]) -> list[str]:
    """'a -> b' for every import from one part into another that ALLOWED does not list."""
    return [f"{src} -> {dst}" for src, targets in sorted(graph.items()) for dst in sorted(targets)
            if part_of(dst) not in ("", part_of(src), *ALLOWED[part_of(src)])]


def test_conrft_core_has_no_import_circle():
    assert circles(import_graph()) == []


def test_imports_follow_the_allowed_directions():
    assert forbidden(import_graph()) == []


def test_every_module_lives_in_a_part_or_is_shared():
    top = sorted(p.stem for p in ROOT.glob("*.py") if p.stem != "__init__")
    assert top == ["checkpoint", "config"], top
    for part in PARTS:
        assert (ROOT / part / "__init__.py").read_text().startswith('"""'), f"{part}/__init__.py needs its docstring"


def test_no_module_imports_rclpy():
    users = [module_name(p) for p in ROOT.rglob("*.py")
             if any(isinstance(n, (ast.Import, ast.ImportFrom)) and "rclpy" in ast.dump(n)
                    for n in ast.walk(ast.parse(p.read_text())))]
    assert users == []


# The checks themselves, on a small tree written here: they must name what is wrong.
def write_tree(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "conrft_core"
    for rel, text in {"__init__.py": "", "data/__init__.py": "", "learning/__init__.py": "",
                      "robot/__init__.py": "", **files}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    return pkg


def test_a_circle_is_found_and_named(tmp_path):
    pkg = write_tree(tmp_path, {
        "learning/agent.py": "from conrft_core.learning.finetune import Encoders\n",
        "learning/finetune.py": "from conrft_core.learning import vla\n",
        "learning/vla.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                           "    from conrft_core.learning.agent import step\n",
        "learning/nets.py": "import torch\n",
    })
    assert circles(import_graph(pkg)) == [["conrft_core.learning.agent", "conrft_core.learning.finetune",
                                           "conrft_core.learning.vla"]]


@pytest.mark.parametrize("files, expected", [
    ({"data/replay.py": "from conrft_core.robot.spaces import PROPRIO_DIM\n", "robot/spaces.py": ""},
     ["conrft_core.data.replay -> conrft_core.robot.spaces"]),
    ({"learning/agent.py": "def f():\n    from conrft_core.robot import spaces\n", "robot/spaces.py": ""},
     ["conrft_core.learning.agent -> conrft_core.robot", "conrft_core.learning.agent -> conrft_core.robot.spaces"]),
    ({"config.py": "import conrft_core.data.episode\n", "data/episode.py": ""},
     ["conrft_core.config -> conrft_core.data.episode"]),
    ({"robot/weights.py": "from conrft_core.learning.policy import Policy\nfrom conrft_core.config import x\n",
      "learning/policy.py": "from conrft_core.data.episode import Episode\n", "data/episode.py": "", "config.py": ""},
     []),
])
def test_a_forbidden_direction_is_named(tmp_path, files, expected):
    assert forbidden(import_graph(write_tree(tmp_path, files))) == expected
