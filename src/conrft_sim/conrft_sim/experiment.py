"""A simulated training run: one YAML file says the task, the features, the demonstrations, the simulated
human and the training stages; `run_experiment` does demos -> offline -> online -> evaluation in-process.

Used by `conrft train` and `conrft eval` and by the learning benchmark (`conrft bench`). The same stages run
over ROS 2 in the node graph; this is the in-process reference.

Features: `state` (proprio + the simulator's privileged object state, no cameras rendered) is the cheap
configuration the tests and the CPU benchmark use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from conrft_core.config import from_dict, load_yaml, to_dict
from conrft_core.runlog import RunLog
from conrft_core.trainer import TrainConfig, Trainer, load_policy
from conrft_core.training import StateFeaturizer, collect_demos, evaluate
from conrft_sim.demos import NOISE_PRESETS, Demonstrator, noise_preset
from conrft_sim.env import ConRFTSimEnv
from conrft_sim.intervener import IntervenerConfig, ScriptedIntervener
from conrft_sim.sim import SimConfig

FEATURES = ("state",)


@dataclass
class DemoConfig:
    episodes: int = 20
    noise: str = "human_like"  # conrft_sim.demos.NOISE_PRESETS
    seed: int = 0  # demonstration episode seeds seed, seed + 1, ... (below train.eval_seed)

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"demos.episodes must be >= 1, got {self.episodes}")
        if self.noise not in NOISE_PRESETS:
            raise ValueError(f"demos.noise '{self.noise}' is unknown; choose one of {', '.join(NOISE_PRESETS)}")


@dataclass
class ExperimentConfig:
    features: str = "state"
    sim: SimConfig = field(default_factory=SimConfig)
    demos: DemoConfig = field(default_factory=DemoConfig)
    intervener: IntervenerConfig = field(default_factory=IntervenerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise ValueError(f"features '{self.features}' is not available; choose one of {', '.join(FEATURES)}")
        if self.demos.seed + 3 * self.demos.episodes > self.train.eval_seed:
            raise ValueError("demos.seed is so large that demonstration seeds would reach train.eval_seed")


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


def make_env(cfg: ExperimentConfig) -> tuple[ConRFTSimEnv, StateFeaturizer]:
    """The simulator env and its featurizer; state features need no rendering, so no cameras."""
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
    env, featurizer = make_env(cfg)
    task = cfg.sim.task
    log = RunLog(run_dir, quiet=not progress)
    meta = {"task": task, "features": cfg.features, "experiment": to_dict(cfg)}
    trainer = Trainer(cfg.train, env, featurizer, run_dir=run_dir, log=log, meta=meta, progress=progress)
    try:
        if run_dir is not None and (Path(run_dir) / Trainer.CHECKPOINT).exists() and not resume:
            raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or choose "
                                  f"another --run-dir")
        if not trainer.restore():
            demonstrator = Demonstrator(task, noise_preset(cfg.demos.noise), np.random.default_rng(cfg.demos.seed))
            demos = collect_demos(env, featurizer, demonstrator, cfg.demos.episodes, seed=cfg.demos.seed)
            lengths = [ep.length for ep, _ in demos]
            log.info(f"{len(demos)} {cfg.demos.noise} demonstrations of {task}: length {np.mean(lengths):.1f} "
                     f"+- {np.std(lengths):.1f}")
            trainer.add_demos(demos)
        human = ScriptedIntervener(task, cfg.intervener, np.random.default_rng(cfg.train.seed + 1))
        return trainer.run(human)
    finally:
        log.close()
        env.close()


def evaluate_checkpoint(path: str | Path, episodes: int, unseen: bool = False, first_seed: int | None = None,
                        device: str = "auto") -> dict:
    """Success rate and mean length of a checkpoint's policy, on the env its run was trained in."""
    policy, config = load_policy(path, device=device)
    cfg = from_dict(ExperimentConfig, config["meta"]["experiment"])
    env, featurizer = make_env(cfg)
    if featurizer.dim != config["feature_dim"]:
        raise ValueError(f"checkpoint {path} expects {config['feature_dim']} features, the env gives {featurizer.dim}")
    try:
        act = lambda feats: policy(feats, deterministic=True)  # noqa: E731
        seed = cfg.train.eval_seed if first_seed is None else first_seed
        return {"task": cfg.sim.task, "method": cfg.train.method, "episodes": episodes, "unseen": unseen,
                **evaluate(env, featurizer, act, episodes, seed, unseen=unseen)}
    finally:
        env.close()
