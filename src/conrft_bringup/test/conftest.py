"""Tiny assets for tests that run the node graph: an untrained small VLA, a short demonstration bag and a
training config sized for seconds (learning quality is the benchmark's business, not these tests')."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]

IMAGE_SIZE = 32
INSTRUCTION = "pick up the red cube"
TRAIN = {"train": {"method": "hil_conrft", "offline_updates": 20, "online_env_steps": 100, "batch_size": 32,
                   "updates_per_env_step": 0.5, "checkpoint_every_updates": 10,
                   "agent": {"consistency": {"hidden_dim": 32}, "critic": {"hidden_dim": 32}}}}


def make_assets(folder: Path, online_env_steps: int = 100) -> dict[str, str]:
    from conrft_bringup.cli import main as conrft
    from conrft_core.learning.backbone import BackboneConfig
    from conrft_core.learning.vla import VLA, PretrainConfig, save_vla

    folder.mkdir(parents=True, exist_ok=True)
    vla = folder / "vla.safetensors"
    save_vla(vla, VLA(PretrainConfig(backbone=BackboneConfig(image_size=IMAGE_SIZE, patch_grid=4, d_model=32,
                                                             num_layers=1, num_heads=2))))
    bag = folder / "demos"
    assert conrft(["sim-demos", "--task", "pick_cube", "--episodes", "2", "--image-width", str(IMAGE_SIZE),
                   "--image-height", str(IMAGE_SIZE), "--out", str(bag), "--quiet"]) == 0
    train = folder / "train.yaml"
    cfg = {"train": {**TRAIN["train"], "online_env_steps": online_env_steps}}
    train.write_text(yaml.safe_dump(cfg))
    return {"vla_checkpoint": str(vla), "demo_bag": str(bag), "train_config": str(train),
            "image_size": str(IMAGE_SIZE)}


@pytest.fixture(scope="module")
def graph_assets(tmp_path_factory):
    """make_assets in a folder shared by the tests of one module."""
    return make_assets(tmp_path_factory.mktemp("graph_assets"))


@pytest.fixture
def make_graph_assets():
    return make_assets


def _run_session(path, args: dict, timeout: float) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "conrft_bringup.cli", "session", str(path), *(f"{k}:={v}" for k, v in args.items())]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def _session_variant(source: Path, out: Path, change) -> Path:
    """The session file `source` with `change(cfg)` applied, written to `out`, its parameter files still found."""
    cfg = yaml.safe_load(source.read_text())
    for node in cfg["nodes"].values():
        node["params"] = [str(source.parent / p) for p in node.get("params", [])]
    change(cfg)
    out.write_text(yaml.safe_dump(cfg))
    return out


@pytest.fixture
def run_session():
    """run_session(session file, {argument: value}, timeout): `conrft session` to its end, output captured."""
    return _run_session


@pytest.fixture
def session_variant():
    return _session_variant
