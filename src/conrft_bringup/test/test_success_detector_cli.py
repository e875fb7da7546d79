"""`conrft success-detector` as a user runs it: real bags from `conrft sim-demos` (MuJoCo rendering, 32x32
cameras), training, evaluation on held-out episodes against the sim's privileged success, and bad input."""
import json
import os
import shutil
import subprocess

import pytest

from conrft_core.checkpoint import load_checkpoint, save_checkpoint
from conrft_core.data.bags import EpisodeBagWriter, read_episodes

SIZE = "32"


def conrft(*args, timeout=300):
    exe = shutil.which("conrft")
    assert exe, "conrft is not on PATH: source ./env.sh"
    # One torch thread: the detector's weights (and so its scores here) depend on the thread count, and a 2-core CI
    # machine would otherwise train on two.
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def sim_demos(out, episodes, seed, *extra, size=SIZE):
    res = conrft("sim-demos", "--task", "pick_cube", "--episodes", episodes, "--seed", seed, "--image-width", size,
                 "--image-height", size, "--out", out, "--quiet", *extra)
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """A detector trained on 12 human-like pick_cube demonstrations, and a held-out bag of other seeds."""
    tmp = tmp_path_factory.mktemp("success_detector")
    train = sim_demos(tmp / "train", 12, 0)
    held = sim_demos(tmp / "held", 6, 1000, "--keep-failures")
    model = tmp / "detector.safetensors"
    res = conrft("success-detector", "train", train, "--out", model, "--steps", 400, "--quiet")
    assert res.returncode == 0, res.stderr
    return {"model": model, "train": train, "held": held, "stdout": res.stdout, "tmp": tmp}


def test_training_reports_and_writes_the_file(detector):
    out = detector["stdout"]
    assert "success detector on front, wrist (32x32, its own CNN)" in out
    assert "threshold | precision | recall" in out and "<- chosen (best F1)" in out
    assert "train: 9 episodes" in out and "validation: 3 episodes" in out  # split by episode
    _, meta = load_checkpoint(detector["model"])
    assert meta["cameras"] == ["front", "wrist"] and meta["image_size"] == [32, 32] and meta["features"] == "cnn"
    assert 0.0 < meta["threshold"] < 1.0 and meta["validation"]["validation_positives"] == 3


def test_held_out_episodes_beat_chance_against_the_privileged_success(detector, tmp_path):
    # Held-out bag: one positive frame per successful episode (where the sim declared success), ~1.3% of frames.
    res = conrft("success-detector", "eval", detector["model"], detector["held"], "--json", tmp_path / "bag.json")
    assert res.returncode == 0, res.stderr
    bag = json.loads((tmp_path / "bag.json").read_text())
    chance = bag["positives"] / bag["frames"]
    assert chance < 0.03
    # 6 positive frames, 3 validation episodes to choose the threshold from: a third found at 10x chance precision
    assert bag["recall"] >= 1 / 3 and bag["precision"] >= 10 * chance, bag
    # Rollouts past the success, every frame labelled with the sim's privileged flag (what a live session sees).
    res = conrft("success-detector", "eval", detector["model"], "--sim-episodes", 4, "--seed", 7000,
                 "--after-success", 8, "--quiet", "--json", tmp_path / "sim.json")
    assert res.returncode == 0, res.stderr
    sim = json.loads((tmp_path / "sim.json").read_text())
    assert sim["episodes"] == 4 and sim["positives"] >= 4 * 8
    assert sim["recall"] >= 0.5 and sim["precision"] >= 0.5, sim
    assert sim["detected"] >= 2 and sim["missed"] <= 1, sim
    assert "against the privileged success" in res.stdout and "precision" in res.stdout


def error_line(res) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    return lines[0]


def test_a_bag_without_a_positive_frame_writes_nothing(detector, tmp_path):
    failures = tmp_path / "failures"
    with EpisodeBagWriter(failures) as w:
        for ep in read_episodes(detector["train"])[:3]:
            ep.success, ep.terminated, ep.truncated = False, False, True  # as if the time limit had ended them
            w.write_episode(ep)
    out = tmp_path / "d.safetensors"
    line = error_line(conrft("success-detector", "train", failures, "--out", out, "--quiet"))
    assert line.startswith("conrft success-detector: error: bag ") and str(failures) in line
    assert "no positive frame" in line
    assert list(tmp_path.glob("*.safetensors*")) == [] and list(tmp_path.glob(".d.*")) == []


def test_a_camera_not_in_the_bag_and_an_existing_output(detector, tmp_path):
    line = error_line(conrft("success-detector", "train", detector["held"], "--out", tmp_path / "d.safetensors",
                             "--cameras", "front,side", "--quiet"))
    assert str(detector["held"]) in line and "no camera 'side'" in line
    assert not (tmp_path / "d.safetensors").exists()
    line = error_line(conrft("success-detector", "train", detector["held"], "--out", detector["model"], "--quiet"))
    assert "already exists" in line and str(detector["model"]) in line


def test_a_model_file_of_the_wrong_shape_is_named(detector, tmp_path):
    tensors, meta = load_checkpoint(detector["model"])
    wrong = tmp_path / "wrong.safetensors"
    save_checkpoint(wrong, {k: v[..., :1] if v.ndim == 4 else v for k, v in tensors.items()}, meta)
    line = error_line(conrft("success-detector", "eval", wrong, detector["held"]))
    assert f"success detector {wrong}: tensor 'net/" in line and "has shape" in line
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, {"x": tensors[next(iter(tensors))]}, {"kind": "vla"})
    assert f"{other} is not a success detector" in error_line(conrft("success-detector", "eval", other,
                                                                      detector["held"]))


def test_a_bag_of_another_image_size_is_refused(detector, tmp_path):
    big = sim_demos(tmp_path / "big", 1, 2000, size="48")
    line = error_line(conrft("success-detector", "eval", detector["model"], big))
    assert "camera 'front' images are (48, 48, 3), the detector was trained on (32, 32, 3)" in line
