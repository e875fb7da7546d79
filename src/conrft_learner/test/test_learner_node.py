"""Learner node bad input: each mistake exits 1 with one message naming the parameter or file and the fix,
before anything is trained or written. (Its behaviour in a running graph: conrft_bringup's session and fault
tests.)"""
import pytest

from conrft_core.learning.backbone import BackboneConfig
from conrft_core.learning.vla import VLA, PretrainConfig, save_vla

NODE = "conrft_learner.learner_node"


@pytest.fixture
def vla(tmp_path):
    path = tmp_path / "vla.safetensors"
    save_vla(path, VLA(PretrainConfig(backbone=BackboneConfig(image_size=32, patch_grid=4, d_model=32,
                                                              num_layers=1, num_heads=2))))
    return path


def unreadable_bag(folder):
    folder.mkdir()
    (folder / "metadata.yaml").write_text("rosbag2_bagfile_information: [not, a, bag]\n")
    return folder


@pytest.mark.parametrize("case, message", [
    ("no_vla", "parameter 'vla_checkpoint' is required"),
    ("no_bags", "parameter 'demo_bags' is required"),
    ("missing_vla", "vla.missing"),
    ("missing_bag", "is not a rosbag2 bag (no metadata.yaml); pass the bag folder"),
    ("unreadable_bag", "cannot read bag"),
    ("bad_config_key", "train.updates_per_step"),
    ("bad_type", "batch_size"),
])
def test_bad_input_exits_1_naming_the_problem(ros_process, vla, tmp_path, case, message):
    run_dir = tmp_path / "run"
    params = {"vla_checkpoint": str(vla), "demo_bags": f"[{tmp_path / 'demos'}]", "run_dir": str(run_dir)}
    config = tmp_path / "train.yaml"
    if case == "no_vla":
        del params["vla_checkpoint"]  # not set: the default is empty
    elif case == "no_bags":
        params["demo_bags"] = "['']"
    elif case == "missing_vla":
        params["vla_checkpoint"] = str(tmp_path / "vla.missing")
    elif case == "unreadable_bag":
        params["demo_bags"] = f"[{unreadable_bag(tmp_path / 'bad_bag')}]"
    elif case == "bad_config_key":
        config.write_text("train:\n  updates_per_step: 2\n")
        params["config_file"] = str(config)
    elif case == "bad_type":
        config.write_text("train:\n  batch_size: many\n")
        params["config_file"] = str(config)
    learner = ros_process(NODE, *[a for k, v in params.items() for a in ("-p", f"{k}:={v}")])
    assert learner.wait(timeout=60) == 1, learner.output()
    out = learner.output()
    assert message in out, out
    assert "Traceback" not in out
    assert not (run_dir / "checkpoint.safetensors").exists()
