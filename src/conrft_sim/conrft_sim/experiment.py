"""A simulated training run: one YAML file says the task, the features, the demonstrations, the simulated
human and the training stages; `run_experiment` does demos -> offline -> online -> evaluation in-process.

Used by `conrft train` and `conrft eval` and by the learning benchmark (`conrft bench`). The same stages run
over ROS 2 in the node graph; this is the in-process reference.

Features: `state` (proprio + the simulator's privileged object state, no cameras rendered) is the cheap
configuration the tests and the CPU benchmark use; `vla` is ConRFT's frozen-backbone mode: the embedding of
the pretrained VLA in `vla_checkpoint` (`conrft pretrain`) plus proprio, from rendered camera images;
`vla_finetune` is CO-RFT's full fine-tuning mode: the same VLA's backbone trains with the policy, and the critic
has its own image encoder (`conrft_core.learning.finetune`; `train.encoder` holds its settings).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from conrft_core.config import from_dict, load_yaml, to_dict
from conrft_core.learning.finetune import FinetuneEncoders, FinetuneFeaturizer
from conrft_core.learning.methods import TrainConfig
from conrft_core.learning.policy import load_policy, resolve_device
from conrft_core.learning.resume import CHECKPOINT, restore_run
from conrft_core.learning.rollout import Featurizer, ObservationSpec, StateFeaturizer, collect_demos, evaluate
from conrft_core.learning.run import TrainRun
from conrft_core.learning.runlog import RunLog
from conrft_core.learning.stages import train
from conrft_core.learning.vla import PretrainConfig, VLAFeaturizer, load_vla, pretrain, save_vla
from conrft_sim.demos import NOISE_PRESETS, Demonstrator, generate_demos, noise_preset
from conrft_sim.env import ConRFTSimEnv
from conrft_sim.experts import ExpertNoise
from conrft_sim.intervener import IntervenerConfig, ScriptedIntervener
from conrft_sim.sim import SimConfig
from conrft_sim.tasks import TASKS

FEATURES = ("state", "vla", "vla_finetune")


@dataclass
class DemoConfig:
    episodes: int = 20
    noise: str = "human_like"  # conrft_sim.demos.NOISE_PRESETS
    # The operator's speed factor in (0, 1] instead of the preset's for the task: a slower operator makes longer,
    # more hesitant demonstrations, and the imitation policy runs out of steps more often. None: the preset's.
    speed: float | None = None
    seed: int = 0  # demonstration episode seeds seed, seed + 1, ... (below every evaluation seed)

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"demos.episodes must be >= 1, got {self.episodes}")
        if self.noise not in NOISE_PRESETS:
            raise ValueError(f"demos.noise '{self.noise}' is unknown; choose one of {', '.join(NOISE_PRESETS)}")
        if self.speed is not None and not 0 < self.speed <= 1:
            raise ValueError(f"demos.speed must be in (0, 1] (or null: the preset's), got {self.speed}")

    def operator(self, task: str) -> ExpertNoise:
        """The demonstrating operator's setting for `task`."""
        noise = noise_preset(self.noise, task)
        return noise if self.speed is None else replace(noise, speed=self.speed)


@dataclass
class ExperimentConfig:
    features: str = "state"
    vla_checkpoint: str = ""  # vla.safetensors from `conrft pretrain`, for features: vla and vla_finetune
    sim: SimConfig = field(default_factory=SimConfig)
    demos: DemoConfig = field(default_factory=DemoConfig)
    intervener: IntervenerConfig = field(default_factory=IntervenerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise ValueError(f"features '{self.features}' is not available; choose one of {', '.join(FEATURES)}")
        if self.features != "state" and not self.vla_checkpoint:
            raise ValueError(f"features: {self.features} needs vla_checkpoint (a vla.safetensors written by "
                             f"`conrft pretrain`)")
        if self.demos.seed + 3 * self.demos.episodes > self.train.training_seed_limit:
            raise ValueError("demos.seed is so large that demonstration seeds would reach the evaluation seeds "
                             "(train.eval_seed, train.test_eval_seed)")


def load_experiment(path: str | Path, overrides: dict | None = None) -> ExperimentConfig:
    """The YAML file, with `overrides` ({"train.method": "sft", ...}) applied, validated key by key."""
    data = load_yaml(path)
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return from_dict(ExperimentConfig, data)


def make_env(cfg: ExperimentConfig, device: str = "auto",
             encoders: FinetuneEncoders | None = None) -> tuple[ConRFTSimEnv, Featurizer]:
    """The simulator env and its featurizer: state features need no rendering, so no cameras; VLA features
    render the backbone's cameras at its image size. features: vla_finetune starts the trainable encoders
    from the pretrained VLA (the featurizer's `encoders`), unless a checkpoint's own `encoders` are given."""
    if cfg.features != "state":
        if encoders is None:
            model = load_vla(cfg.vla_checkpoint, resolve_device(device))
            if cfg.features == "vla_finetune":
                encoders = FinetuneEncoders(model, cfg.train.encoder, TASKS[cfg.sim.task].instruction)
                encoders.to(resolve_device(device))
        bb = (model.cfg if encoders is None else encoders.vla_cfg).backbone
        sim = from_dict(SimConfig, {**to_dict(cfg.sim), "cameras": list(bb.cameras), "image_width": bb.image_size,
                                    "image_height": bb.image_size}, "sim")
        return ConRFTSimEnv(sim), VLAFeaturizer(model) if encoders is None else FinetuneFeaturizer(encoders)
    sim = from_dict(SimConfig, {**to_dict(cfg.sim), "cameras": []}, "sim")
    env = ConRFTSimEnv(sim, privileged_state=True)
    obs, _ = env.reset(seed=0)
    return env, StateFeaturizer(len(obs["proprio"]) + len(obs["state"]))


def run_experiment(cfg: ExperimentConfig, run_dir: str | Path | None, resume: bool = False,
                   progress: bool = True) -> dict:
    """Demos -> the method's stages -> evaluation; returns the result (also `run_dir/result.json`).

    With `resume`, an existing checkpoint in `run_dir` is continued (same config required); without it a
    `run_dir` holding a checkpoint is refused rather than overwritten.
    """
    if run_dir is not None and (Path(run_dir) / CHECKPOINT).exists() and not resume:
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or choose "
                              f"another --run-dir")
    env, featurizer = make_env(cfg, cfg.train.device)
    task = cfg.sim.task
    log = RunLog(run_dir, quiet=not progress)
    meta = {"task": task, "features": cfg.features, "experiment": to_dict(cfg)}
    run = TrainRun(cfg.train, featurizer.dim, ObservationSpec.of(env).proprio_dim, run_dir=run_dir, log=log,
                   meta=meta, progress=progress, encoders=getattr(featurizer, "encoders", None))
    try:
        if not restore_run(run):
            demonstrator = Demonstrator(task, cfg.demos.operator(task), np.random.default_rng(cfg.demos.seed))
            demos = collect_demos(env, featurizer, demonstrator, cfg.demos.episodes, seed=cfg.demos.seed,
                                  success_key=cfg.train.success_key)
            lengths = [ep.length for ep, _ in demos]
            log.info(f"{len(demos)} {cfg.demos.noise} demonstrations of {task}: length {np.mean(lengths):.1f} "
                     f"+- {np.std(lengths):.1f}")
            run.add_demos(demos)
        human = ScriptedIntervener(task, cfg.intervener, np.random.default_rng(cfg.train.seed + 1))
        return train(run, env, featurizer, human)
    finally:
        log.close()
        env.close()


def evaluate_checkpoint(path: str | Path, episodes: int, unseen: bool = False, first_seed: int | None = None,
                        device: str = "auto") -> dict:
    """Success rate and mean length of a checkpoint's policy, on the env its run was trained in."""
    policy, config = load_policy(path, device=device)
    cfg = from_dict(ExperimentConfig, config["meta"]["experiment"])
    env, featurizer = make_env(cfg, device, encoders=getattr(policy.agent, "encoders", None))
    if featurizer.dim != config["feature_dim"]:
        raise ValueError(f"checkpoint {path} expects {config['feature_dim']} features, the env gives {featurizer.dim}")
    try:
        act = lambda feats: policy(feats, deterministic=True)  # noqa: E731
        seed = cfg.train.evaluation_seed if first_seed is None else first_seed
        return {"task": cfg.sim.task, "method": cfg.train.method, "episodes": episodes, "unseen": unseen,
                **evaluate(env, featurizer, act, episodes, seed, unseen=unseen, success_key=cfg.train.success_key)}
    finally:
        env.close()


def pretrain_vla(cfg: PretrainConfig, out: str | Path, tasks: list[str], episodes_per_task: int, noise: str = "zero",
                 seed: int = 0, device: str = "auto", progress: bool = True) -> dict:
    """Generalist pretraining on scripted demonstrations of `tasks` rendered at the backbone's image size;
    writes `out` (vla.safetensors). Demo seeds: seed * 100000 + task index * 10000 + i."""
    bb = cfg.backbone
    episodes = []
    for k, task in enumerate(tasks):
        sim = SimConfig(task=task, cameras=bb.cameras, image_width=bb.image_size, image_height=bb.image_size)
        env = ConRFTSimEnv(sim)
        try:
            episodes += [ep for ep, _ in generate_demos(env, noise_preset(noise, task), episodes_per_task,
                                                         seed=seed * 100_000 + k * 10_000)]
        finally:
            env.close()
    model = pretrain(episodes, cfg, resolve_device(device), progress=progress)
    save_vla(out, model)
    return {"episodes": len(episodes), "steps": sum(ep.length for ep in episodes), "tasks": tasks,
            "parameters": sum(p.numel() for p in model.parameters()), "out": str(out)}


def evaluate_session(run_dir: str | Path, episodes: int, device: str = "auto", progress: bool = True) -> dict:
    """Success vs online steps of a ROS session: each policy snapshot of the learner
    (`run_dir/snapshots/policy_<steps>.safetensors`) evaluated in simulation on the evaluation seeds, no human."""
    from tqdm import tqdm

    from conrft_core.checkpoint import load_checkpoint
    from conrft_core.robot.weights import build_policy, unpack

    run_dir = Path(run_dir)
    snapshots = sorted((run_dir / "snapshots").glob("policy_*.safetensors"))
    if not snapshots:
        raise FileNotFoundError(f"{run_dir}/snapshots holds no policy snapshots; was it written by a learner node "
                                f"with snapshot_every_steps > 0?")
    _, config = load_checkpoint(run_dir / CHECKPOINT)
    cfg = from_dict(ExperimentConfig, config["meta"]["experiment"])
    env, featurizer = make_env(cfg, device)
    curve = []
    try:
        for path in tqdm(snapshots, desc="snapshots", unit="policy", disable=not progress):
            payload = path.read_bytes()
            policy = build_policy(*unpack(payload, hashlib.sha256(payload).hexdigest()), device)
            act = lambda feats, policy=policy: policy(feats, deterministic=True)  # noqa: E731
            # The consistency policy samples its noise even when deterministic: seeded, a snapshot's score is a
            # function of the snapshot (the same run reported twice gives the same numbers).
            torch.manual_seed(cfg.train.evaluation_seed)
            curve.append({"env_steps": int(path.stem.split("_")[1]),
                          **evaluate(env, featurizer, act, episodes, cfg.train.evaluation_seed,
                                     success_key=cfg.train.success_key)})
    finally:
        env.close()
    progress_ = config["progress"]
    return {"task": cfg.sim.task, "method": cfg.train.method, "label": f"{cfg.train.method} (ROS session)",
            "curve": curve, "success_rate": curve[-1]["success_rate"], "mean_length": curve[-1]["mean_length"],
            "online_env_steps": progress_["env_steps"], "online_episodes": progress_["episodes"],
            "intervention_rate": progress_["intervened_steps"] / max(progress_["env_steps"], 1),
            "eval_episodes": episodes}
