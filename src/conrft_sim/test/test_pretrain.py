"""Generalist VLA pretraining on rendered multi-task demonstrations, the saved model, and fine-tuning on its
frozen embeddings or with the backbone trained too (tiny backbone, 32x32 images)."""
import os

os.environ["MUJOCO_GL"] = "egl"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from conrft_core.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from conrft_core.config import from_dict, to_dict  # noqa: E402
from conrft_core.learning.backbone import BackboneConfig  # noqa: E402
from conrft_core.learning.policy import load_policy  # noqa: E402
from conrft_core.learning.vla import PretrainConfig, VLAFeaturizer, _windows, load_vla, pretrain  # noqa: E402
from conrft_sim.demos import generate_demos, noise_preset  # noqa: E402
from conrft_sim.env import ConRFTSimEnv  # noqa: E402
from conrft_sim.experiment import ExperimentConfig, evaluate_checkpoint, make_env, pretrain_vla, run_experiment  # noqa: E402
from conrft_sim.sim import SimConfig  # noqa: E402

BACKBONE = {"image_size": 32, "patch_grid": 4, "d_model": 32, "num_layers": 1, "num_heads": 2}


def tiny_cfg(steps):
    return from_dict(PretrainConfig, {"backbone": BACKBONE, "head": {"hidden_dim": 32, "num_levels": 10},
                                      "steps": steps, "batch_size": 16}, "pretrain")


@pytest.fixture(scope="module")
def vla_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("vla") / "vla.safetensors"
    info = pretrain_vla(tiny_cfg(20), path, ["pick_cube", "peg_insert"], episodes_per_task=1, device="cpu",
                        progress=False)
    assert info["episodes"] == 2 and info["parameters"] > 0
    return path


def demos(task, n, size=32):
    env = ConRFTSimEnv(SimConfig(task=task, image_width=size, image_height=size))
    return [ep for ep, _ in generate_demos(env, noise_preset("zero", task), n, seed=0)]


def test_pretraining_lowers_the_multitask_bc_loss():
    episodes = demos("pick_cube", 1) + demos("drawer_open", 1)
    assert len({ep.instruction for ep in episodes}) == 2

    def loss(model):
        torch.manual_seed(0)
        images, proprio, actions, instr = _windows(episodes, 2, np.random.default_rng(0), 64, ("front", "wrist"))
        with torch.no_grad():
            return model.head.bc_loss(actions, model.features(images, proprio, instr)).item()

    before = loss(pretrain(episodes, tiny_cfg(1), torch.device("cpu"), progress=False, log=lambda *_: None))
    after = loss(pretrain(episodes, tiny_cfg(150), torch.device("cpu"), progress=False, log=lambda *_: None))
    assert after < 0.7 * before, (before, after)

    with pytest.raises(ValueError, match="image_size is 64"):
        cfg = tiny_cfg(1)
        cfg.backbone = BackboneConfig(**{**BACKBONE, "image_size": 64})
        pretrain(episodes, cfg, torch.device("cpu"), progress=False)


def test_saved_vla_gives_the_same_frozen_features(vla_path):
    env = ConRFTSimEnv(SimConfig(task="pick_cube", image_width=32, image_height=32))
    a, b = VLAFeaturizer(load_vla(vla_path)), VLAFeaturizer(load_vla(vla_path))
    obs, _ = env.reset(seed=0)
    first = a(obs)
    assert first.shape == (a.dim,) and a.dim == 32 + 19
    np.testing.assert_allclose(first[-19:], obs["proprio"], rtol=1e-6)
    obs2, *_ = env.step(np.array([1, 0, 0, 0, 0, 0, 1], np.float32))
    second = a(obs2)
    assert not np.allclose(first, second)
    b.reset()
    np.testing.assert_allclose(b(obs), first, rtol=1e-5, atol=1e-6)  # same weights, same window -> same features
    a.reset()
    np.testing.assert_allclose(a(obs), first, rtol=1e-5, atol=1e-6)  # reset starts a fresh window

    data = bytearray(vla_path.read_bytes())
    bad = vla_path.with_name("truncated.safetensors")
    bad.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="truncated"):
        load_vla(bad)


def test_fine_tuning_runs_on_frozen_vla_features(vla_path, tmp_path):
    cfg = from_dict(ExperimentConfig, {
        "features": "vla", "vla_checkpoint": str(vla_path), "sim": {"task": "peg_insert", "max_episode_steps": 25},
        "demos": {"episodes": 2, "noise": "zero"},
        "train": {"method": "hil_conrft", "offline_updates": 5, "online_env_steps": 20, "batch_size": 8,
                  "eval_episodes": 1, "device": "cpu",
                  "agent": {"consistency": {"hidden_dim": 16}, "critic": {"hidden_dim": 16, "cql_num_samples": 2}}}})
    env, featurizer = make_env(cfg, "cpu")
    assert set(env.config.cameras) == {"front", "wrist"} and env.config.image_width == 32
    result = run_experiment(cfg, tmp_path, progress=False)
    assert result["features"] == "vla" and result["online_env_steps"] >= 20
    with pytest.raises(ValueError, match="vla_checkpoint"):
        from_dict(ExperimentConfig, {"features": "vla"})


def test_full_fine_tuning_trains_the_backbone_stores_frames_and_reloads(vla_path, tmp_path):
    train = {"method": "co_rft", "offline_updates": 4, "batch_size": 8, "eval_episodes": 1, "device": "cpu",
             "agent": {"consistency": {"hidden_dim": 16, "horizon": 2},
                       "critic": {"hidden_dim": 16, "cql_num_samples": 2}},
             "encoder": {"critic_channels": 8, "critic_dim": 16}}
    cfg = from_dict(ExperimentConfig, {"features": "vla_finetune", "vla_checkpoint": str(vla_path),
                                       "sim": {"task": "peg_insert", "max_episode_steps": 25},
                                       "demos": {"episodes": 2, "noise": "zero"}, "train": train})
    result = run_experiment(cfg, tmp_path / "run", progress=False)
    assert result["features"] == "vla_finetune" and result["updates"] == 4
    assert result["replay_bytes_per_transition"] > 2 * 32 * 32 * 3  # two camera frames per step, stored once

    tensors, _ = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    pretrained = load_vla(vla_path).backbone.state_dict()
    moved = [k for k, v in pretrained.items() if not torch.equal(tensors[f"agent/encoders.backbone.{k}"], v)]
    assert moved, "the backbone did not change in full fine-tuning mode"
    evaluated = evaluate_checkpoint(tmp_path / "run" / "checkpoint.safetensors", 1, device="cpu")
    assert evaluated["method"] == "co_rft" and evaluated["episodes"] == 1
    policy, _ = load_policy(tmp_path / "run" / "checkpoint.safetensors", device="cpu")
    _, featurizer = make_env(cfg, "cpu", encoders=policy.agent.encoders)
    assert featurizer.encoders is policy.agent.encoders  # evaluation embeds with the fine-tuned backbone

    again = run_experiment(cfg, tmp_path / "run", resume=True, progress=False)  # frames, encoders, optimisers
    assert again["updates"] == 4 and again["config"] == result["config"]
    with pytest.raises(CheckpointError, match="full fine-tuning"):
        run_experiment(from_dict(ExperimentConfig, {**to_dict(cfg), "features": "vla"}), tmp_path / "run",
                       resume=True, progress=False)

    with pytest.raises(ValueError, match="hil_serl"):
        run_experiment(from_dict(ExperimentConfig, {**to_dict(cfg), "train": {**train, "method": "hil_serl"}}),
                       None, progress=False)
