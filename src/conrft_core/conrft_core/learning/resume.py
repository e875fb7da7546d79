"""A run directory: the checkpoint and buffers a run is resumed from, and its result.

    checkpoint.safetensors   agent, optimisers, feature normalisation, torch RNG; as metadata the train config,
                             feature size, `meta`, progress counters (with the numpy RNG) and, in full
                             fine-tuning, the backbone config that rebuilds the encoders
    demo_buffer.safetensors, online_buffer.safetensors
    result.json              the run's summary (conrft_core.learning.stages.run_result)

Each file is written atomically. A run resumes only with the config it was written with (a key added to the
config since, at its default, is no change) and in the same feature mode.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from conrft_core.checkpoint import CheckpointError, load_checkpoint, load_optimizer, optimizer_tensors, save_checkpoint
from conrft_core.config import first_difference, from_dict, to_dict
from conrft_core.data.replay import ReplayBuffer
from conrft_core.learning.methods import TrainConfig
from conrft_core.learning.run import TrainRun

CHECKPOINT = "checkpoint.safetensors"
PROGRESS = ("offline_done", "env_steps", "episodes", "intervened_steps", "updates", "update_seconds",
            "rollout_seconds", "curve")


def save_run(run: TrainRun) -> None:
    """Checkpoint and buffers into the run directory (nothing without one)."""
    if run.run_dir is None:
        return
    run.demo_buffer.save(run.run_dir / "demo_buffer.safetensors")
    run.online_buffer.save(run.run_dir / "online_buffer.safetensors")
    tensors = run.policy.tensors()
    for name, opt in run.agent.optimizers().items():
        tensors.update(optimizer_tensors(opt, f"optim/{name}/"))
    tensors["rng/torch"] = torch.get_rng_state()
    progress = {**{k: getattr(run, k) for k in PROGRESS}, "rng": run.rng.bit_generator.state}
    config = {"train": to_dict(run.cfg), "feature_dim": run.feature_dim, "meta": run.meta, "progress": progress}
    if run.encoders is not None:  # what load_policy needs to rebuild them
        config["finetune"] = {"vla": to_dict(run.encoders.vla_cfg), "instruction": run.encoders.instruction}
    save_checkpoint(run.run_dir / CHECKPOINT, tensors, config)


def restore_run(run: TrainRun) -> bool:
    """Resume from the run directory's checkpoint if there is one (the config must be the same)."""
    if run.run_dir is None or not (run.run_dir / CHECKPOINT).exists():
        return False
    path = run.run_dir / CHECKPOINT
    tensors, config = load_checkpoint(path)
    if ("finetune" in config) != (run.encoders is not None):
        mode = "full fine-tuning (features: vla_finetune)" if "finetune" in config else "frozen-feature"
        raise CheckpointError(f"{path} was written in the {mode} mode; resume it with the same features")
    stored = to_dict(from_dict(TrainConfig, config["train"], "train"))
    key = first_difference(stored, to_dict(run.cfg), "train")
    if key:
        raise CheckpointError(f"{path} was written with another config ({key} differs); use the same config "
                              f"to resume, or a new run directory")
    demo = ReplayBuffer.load(run.run_dir / "demo_buffer.safetensors")
    online = ReplayBuffer.load(run.run_dir / "online_buffer.safetensors")
    run.policy.load(tensors, source=str(path))
    for name, opt in run.agent.optimizers().items():
        load_optimizer(opt, tensors, f"optim/{name}/")
    torch.set_rng_state(tensors["rng/torch"])
    run.demo_buffer, run.online_buffer = demo, online
    run.meta = config.get("meta", run.meta)
    progress = config["progress"]
    run.rng.bit_generator.state = progress.pop("rng")
    for key, value in progress.items():
        setattr(run, key, value)
    run.log.info(f"resumed {path}: offline updates {run.offline_done}, online steps {run.env_steps}")
    return True


def write_result(run: TrainRun, result: dict) -> Path | None:
    if run.run_dir is None:
        return None
    path = run.run_dir / "result.json"
    path.write_text(json.dumps(result, indent=2))
    return path
