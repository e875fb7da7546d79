"""Every Python package of the workspace declares what its code imports (read with ast, nothing executed).

- A library from PyPI is in setup.py's install_requires (so `pip install src/conrft_core` brings it) and, where
  rosdep has a key for it, in package.xml; nothing else is declared there.
- A ROS package (a wheel named ros-*, or a package of this workspace) is a dependency in package.xml.
"""
import ast
import importlib.metadata
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.name for p in SRC.iterdir() if (p / "setup.py").is_file())
# rosdep keys (ros/rosdistro rosdep/python.yaml) of the PyPI libraries used; None: rosdep has none yet.
ROSDEP = {"numpy": "python3-numpy", "pyyaml": "python3-yaml", "scipy": "python3-scipy", "torch": "python3-torch",
          "opencv-python-headless": "python3-opencv", "matplotlib": "python3-matplotlib", "tqdm": "python3-tqdm",
          "rosbags": "python3-rosbags-pip", "tensorboard": "python3-tensorboard-pip",
          "gymnasium": "python3-gymnasium-pip", "mujoco": "python3-mujoco-pip", "safetensors": None}
# Imports that need a distribution their name does not say.
IMPLIED = {"torch.utils.tensorboard": "tensorboard"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imports(package: str) -> set[str]:
    """Dotted names imported anywhere in the package's code (tests excluded)."""
    names = set()
    for path in (SRC / package / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
    return names


def needs(package: str) -> tuple[set[str], set[str]]:
    """(PyPI distributions, ROS packages) the package's imports need."""
    dists_of = importlib.metadata.packages_distributions()
    pypi, ros = set(), set()
    for name in imports(package):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in ("__future__", package):
            continue
        if name in IMPLIED:
            pypi.add(IMPLIED[name])
        dists = dists_of.get(top, [])
        if top in PACKAGES or (SRC / top).is_dir() or not dists or any(d.startswith("ros-") for d in dists):
            ros.add(top)
        else:  # several distributions may provide one module (mujoco): the one the package declares counts
            declared = declared_pypi(package)
            pypi.add(next((normalize(d) for d in dists if normalize(d) in declared), normalize(dists[0])))
    return pypi, ros


def declared_pypi(package: str) -> set[str]:
    tree = ast.parse((SRC / package / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            reqs = {normalize(re.split(r"[<>=!~;\[ ]", elt.value)[0]) for elt in node.value.elts}
            return reqs - {"setuptools"}  # the ament_python build's own
    return set()


def declared_ros(package: str) -> set[str]:
    root = ET.parse(SRC / package / "package.xml").getroot()
    return {e.text.strip() for tag in ("depend", "exec_depend") for e in root.iter(tag)}


@pytest.mark.parametrize("package", PACKAGES)
def test_setup_py_declares_exactly_the_pypi_libraries_imported(package):
    pypi, _ = needs(package)
    declared = declared_pypi(package)
    assert declared == pypi, (f"{package}/setup.py install_requires lacks {sorted(pypi - declared)}, "
                              f"declares unused {sorted(declared - pypi)}")


@pytest.mark.parametrize("package", PACKAGES)
def test_package_xml_declares_every_ros_package_and_rosdep_key(package):
    pypi, ros = needs(package)
    missing_keys = {d for d in pypi if d not in ROSDEP}
    assert not missing_keys, f"add the rosdep key (or None) of {missing_keys} to ROSDEP"
    keys = {ROSDEP[d] for d in pypi} - {None}
    declared = declared_ros(package)
    missing, stray = sorted((ros | keys) - declared), sorted({k for k in declared if k.startswith("python3-")} - keys)
    assert not missing, f"{package}/package.xml lacks {missing}"
    assert not stray, f"{package}/package.xml declares {stray}, which its code does not import"


def test_the_checks_see_every_package_and_library():
    """The checks above would pass vacuously on a wrong source path or an import walk that finds nothing."""
    assert {"conrft_core", "conrft_sim", "conrft_policy", "conrft_learner", "conrft_teleop",
            "conrft_bringup"} <= set(PACKAGES)
    pypi, ros = needs("conrft_core")
    assert {"torch", "numpy", "safetensors", "rosbags", "tensorboard", "opencv-python-headless"} <= pypi
    assert "ament_index_python" in ros and "rclpy" not in ros
