"""ConRFT / CO-RFT training stages and their baselines, in-process, in one loop.

    demonstrations -> demo buffer; the feature normalisation is fixed from them
    offline stage  `offline_updates` updates on the demo buffer:
                     sft, hg_dagger          consistency BC only
                     cal_conrft (H = 1),     Cal-ConRFT: Cal-QL critic + beta * BC - eta * Q actor
                     co_rft (H > 1)          (the same losses on chunks: CO-RFT's chunked TD)
                     hil_conrft              Cal-ConRFT, then the online stage
    online stage   episodes with the policy in control and a human who may take over; every executed step
                   enters the online buffer, human-driven segments also the demo buffer; after each episode
                   `updates_per_env_step` x T updates:
                     hil_conrft              HIL-ConRFT losses on 50/50 demo/online batches (RLPD)
                     hg_dagger               consistency BC on the demo buffer (demos + interventions)
                     hil_serl                SAC on 50/50 batches (conrft_core.sac); it has no offline stage
    evaluation     success rate and mean length on fixed seeds (>= eval_seed) that training never uses, with
                   no human; at the end also on the unseen object range

A run directory holds `checkpoint.safetensors` (agent, optimisers, normalisation, progress, config), the two
buffers, TensorBoard logs, `metrics.jsonl` and `result.json`; a run restarted on it resumes where the last
checkpoint left it (offline: at that update; online: after that episode).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from conrft_core.agent import AgentConfig, ConRFTAgent
from conrft_core.checkpoint import (CheckpointError, load_checkpoint, load_into, load_optimizer, optimizer_tensors,
                                    save_checkpoint)
from conrft_core.config import ConfigError, first_difference, from_dict, to_dict
from conrft_core.episode import Episode
from conrft_core.finetune import EncoderConfig, FinetuneEncoders
from conrft_core.pretrain import VLA, PretrainConfig
from conrft_core.replay import ReplayBuffer, sample_mixed
from conrft_core.runlog import RunLog
from conrft_core.sac import SACAgent, SACConfig
from conrft_core.training import Featurizer, Human, evaluate, human_segments, rollout


@dataclass(frozen=True)
class Method:
    offline: bool  # runs the offline stage
    online: bool  # runs the online stage with a human
    imitation: bool  # BC updates only, no critic
    mixed_batches: bool  # online batches mix demo and online buffers (RLPD); else demo buffer only
    sac: bool = False  # the HIL-SERL agent instead of the consistency policy


METHODS = {
    "sft": Method(offline=True, online=False, imitation=True, mixed_batches=False),
    "cal_conrft": Method(offline=True, online=False, imitation=False, mixed_batches=False),
    "co_rft": Method(offline=True, online=False, imitation=False, mixed_batches=False),
    "hil_conrft": Method(offline=True, online=True, imitation=False, mixed_batches=True),
    "hg_dagger": Method(offline=True, online=True, imitation=True, mixed_batches=False),
    "hil_serl": Method(offline=False, online=True, imitation=False, mixed_batches=True, sac=True),
}


@dataclass
class TrainConfig:
    method: str = "hil_conrft"  # one of METHODS
    seed: int = 0
    offline_updates: int = 2000
    online_env_steps: int = 12_000
    updates_per_env_step: float = 1.0  # actor updates per executed step (critic updates: x critic_updates_per_actor)
    batch_size: int = 256
    demo_fraction: float = 0.5  # RLPD share of demo + intervention samples in online batches
    replay_capacity: int = 100_000
    eval_episodes: int = 20
    eval_every_steps: int = 1000
    unseen_eval_episodes: int = 0  # final evaluation on the unseen object range
    eval_seed: int = 1_000_000  # evaluation seeds eval_seed + i never overlap training seeds (< eval_seed)
    checkpoint_every_updates: int = 1000  # offline stage
    checkpoint_every_steps: int = 1000  # online stage (at the end of the episode that crosses it)
    device: str = "auto"  # auto: cuda when available, else cpu
    agent: AgentConfig = field(default_factory=AgentConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)  # features: vla_finetune only

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"train.method '{self.method}' is unknown; choose one of {', '.join(METHODS)}")
        if self.method == "co_rft" and self.agent.horizon < 2:
            raise ValueError("train.method co_rft trains action chunks: set train.agent.consistency.horizon >= 2")
        for name in ("offline_updates", "online_env_steps", "eval_episodes", "unseen_eval_episodes"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "eval_every_steps", "checkpoint_every_updates", "checkpoint_every_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.replay_capacity < 2:
            raise ValueError(f"train.replay_capacity must be >= 2, got {self.replay_capacity}")
        if not 0 <= self.demo_fraction <= 1:
            raise ValueError(f"train.demo_fraction must be in [0, 1], got {self.demo_fraction}")
        if self.updates_per_env_step < 0:
            raise ValueError(f"train.updates_per_env_step must be >= 0, got {self.updates_per_env_step}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"train.device must be auto, cpu or cuda[:N], got {self.device!r}")

    @property
    def horizon(self) -> int:
        return 1 if METHODS[self.method].sac else self.agent.horizon


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_agent(cfg: TrainConfig, feature_dim: int,
                encoders: FinetuneEncoders | None = None) -> ConRFTAgent | SACAgent:
    if not METHODS[cfg.method].sac:
        return ConRFTAgent(feature_dim, cfg.agent, encoders)
    if encoders is not None:
        raise ValueError("train.method hil_serl has no VLA to fine-tune; use features: state or vla with it")
    return SACAgent(feature_dim, cfg.sac)


class Policy:
    """The agent with the feature normalisation fixed from the demonstrations: features in, chunks out.

    Raw features mix metres, newtons and radians, and task-relevant ones (object offsets of a few cm) would
    otherwise be invisible to the networks."""

    def __init__(self, agent: ConRFTAgent | SACAgent, feature_dim: int, device: torch.device):
        self.agent, self.device = agent, device
        self.mean = torch.zeros(feature_dim, device=device)
        self.std = torch.ones(feature_dim, device=device)

    def fit_normalization(self, feats: np.ndarray) -> None:
        x = torch.as_tensor(feats, device=self.device, dtype=torch.float32)
        self.mean, self.std = x.mean(0), x.std(0).clamp_min(1e-3)

    def normalize(self, feats) -> torch.Tensor:
        x = torch.as_tensor(feats, device=self.device, dtype=torch.float32)
        return ((x - self.mean) / self.std).clamp(-10.0, 10.0)

    def __call__(self, feats: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """(H, 7) action chunk for one feature vector."""
        return self.agent.act(self.normalize(feats).unsqueeze(0), deterministic)[0].cpu().numpy()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {**{f"agent/{k}": v for k, v in self.agent.state_dict().items()},
                "features/mean": self.mean, "features/std": self.std}

    def actor_tensors(self) -> dict[str, torch.Tensor]:
        """What acting needs (the learner broadcasts these to the policy node): actor and normalisation."""
        return {**{f"actor/{k}": v for k, v in self.agent.actor.state_dict().items()},
                "features/mean": self.mean, "features/std": self.std}

    def load_actor(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """Inverse of `actor_tensors`, all-or-nothing like `load`."""
        self._check_normalization(tensors, source)
        load_into(self.agent.actor, tensors, prefix="actor/", source=source)
        self.mean, self.std = tensors["features/mean"].to(self.device), tensors["features/std"].to(self.device)

    def _check_normalization(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        for key in ("features/mean", "features/std"):
            if key not in tensors or tensors[key].shape != self.mean.shape:
                raise CheckpointError(f"{source}: tensor '{key}' is missing or not of shape {tuple(self.mean.shape)}")

    def load(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """All-or-nothing: the agent's tensors are checked before anything is copied."""
        self._check_normalization(tensors, source)
        load_into(self.agent, tensors, prefix="agent/", source=source)
        self.mean, self.std = tensors["features/mean"].to(self.device), tensors["features/std"].to(self.device)


class Trainer:
    """The agent, both buffers and the progress of one run; `run(human)` does every stage of the method.

    `meta` (JSON-able) is stored in checkpoints next to the config: what the caller needs to rebuild the
    environment and featurizer for evaluation (task, simulator config, feature kind).
    """

    CHECKPOINT = "checkpoint.safetensors"

    def __init__(self, cfg: TrainConfig, env, featurizer: Featurizer, run_dir: str | Path | None = None,
                 log: RunLog | None = None, meta: dict | None = None, progress: bool = True,
                 encoders: FinetuneEncoders | None = None):
        """`encoders` switches to the full fine-tuning mode: the buffers store camera frames and every update
        encodes them (conrft_core.finetune); `featurizer` must then be their FinetuneFeaturizer."""
        self.cfg, self.env, self.featurizer, self.meta = cfg, env, featurizer, meta or {}
        self.encoders = encoders
        self.method = METHODS[cfg.method]
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.log = log or RunLog(None, quiet=not progress)
        self.progress = progress
        self.device = resolve_device(cfg.device)
        self.rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.agent = build_agent(cfg, featurizer.dim, encoders).to(self.device)
        self.policy = Policy(self.agent, featurizer.dim, self.device)
        self.demo_buffer, self.online_buffer = self._make_buffer(), self._make_buffer()
        # Progress, saved in checkpoints.
        self.offline_done = 0
        self.env_steps = self.episodes = self.intervened_steps = self.updates = 0
        self.update_seconds = self.rollout_seconds = 0.0
        self.curve: list[dict] = []
        self.on_update: Callable[[int], None] | None = None  # e.g. the learner node's weight broadcast

    @property
    def _gamma(self) -> float:
        return (self.cfg.sac if self.method.sac else self.cfg.agent).critic.gamma

    def _make_buffer(self) -> ReplayBuffer:
        """Frozen mode: one feature vector per observation, no frames. Full fine-tuning: the frames (with the
        backbone's history window), no features."""
        if self.encoders is None:
            return ReplayBuffer(self.cfg.replay_capacity, cameras=(), image_shape=(1, 1, 3),
                                embedding_dim=self.featurizer.dim, history=1, gamma=self._gamma)
        bb = self.encoders.vla_cfg.backbone
        return ReplayBuffer(self.cfg.replay_capacity, cameras=bb.cameras, image_shape=(bb.image_size, bb.image_size, 3),
                            history=bb.history, gamma=self._gamma)

    def _add(self, buffer: ReplayBuffer, ep: Episode, feats: np.ndarray) -> None:
        buffer.add_episode(ep, embeddings=feats if self.encoders is None else None)

    def add_demos(self, demos: list[tuple[Episode, np.ndarray]]) -> None:
        """Store demonstrations (episode, features) and fix the feature normalisation from them."""
        if not demos:
            raise ValueError("no demonstrations: training needs at least one successful demonstration episode")
        for ep, feats in demos:
            self._add(self.demo_buffer, ep, feats)
        if self.encoders is None:
            self.policy.fit_normalization(np.concatenate([f for _, f in demos]))
        else:
            self.encoders.fit_normalization([ep for ep, _ in demos])

    # ------------------------------------------------------------------------------------------ updates
    def _batch(self, sample: dict) -> dict:
        t = lambda x: torch.as_tensor(x, device=self.device).float()  # noqa: E731
        keys = ("actions", "rewards", "reward_mask", "discount", "done", "mc_return")
        rest = {k: t(sample[k]) for k in keys}
        if self.encoders is not None:  # observation windows, encoded by the agent in every update
            def obs(o):
                return {"images": {c: torch.as_tensor(v, device=self.device) for c, v in o["images"].items()},
                        "proprio": t(o["proprio"])}
            return {"obs": obs(sample["obs"]), "next_obs": obs(sample["next_obs"]), **rest}
        return {"state": self.policy.normalize(sample["obs"]["embedding"][:, -1]),
                "next_state": self.policy.normalize(sample["next_obs"]["embedding"][:, -1]), **rest}

    def _sampler(self, mixed: bool):
        cfg, horizon, gamma = self.cfg, self.cfg.horizon, self._gamma
        if not mixed or len(self.online_buffer) == 0:
            return lambda: self._batch(self.demo_buffer.sample(cfg.batch_size, horizon, gamma, self.rng))
        fractions = [cfg.demo_fraction, 1.0 - cfg.demo_fraction]
        return lambda: self._batch(sample_mixed([self.demo_buffer, self.online_buffer], fractions, cfg.batch_size,
                                                horizon, gamma, self.rng))

    def _update(self, sample, offline: bool) -> dict:
        start = time.perf_counter()
        info = self.agent.update_bc(sample) if self.method.imitation else self.agent.update(sample, offline=offline)
        self.update_seconds += time.perf_counter() - start
        self.updates += 1
        if self.on_update is not None:
            self.on_update(self.updates)
        return info

    # ------------------------------------------------------------------------------------------- stages
    def run(self, human: Human | None = None) -> dict:
        """Every stage of the method, resuming from the progress counters; returns (and writes) the result."""
        if self.method.offline:
            self.offline()
        if not self.curve:
            self.evaluate()  # the starting point of the online learning curve
        if self.method.online and self.cfg.online_env_steps > 0:
            if human is None:
                raise ValueError(f"method {self.cfg.method} has an online stage and needs a human (or scripted one)")
            self.online(human)
        result = self.result()
        self.save()
        self.write_result(result)
        return result

    def offline(self) -> None:
        """Cal-ConRFT / CO-RFT (or BC for sft, hg_dagger) on the demonstration buffer only."""
        todo = self.cfg.offline_updates - self.offline_done
        sample = self._sampler(mixed=False)
        info: dict = {}
        for _ in tqdm(range(todo), desc=f"offline {self.cfg.method}", unit="upd", disable=not self.progress,
                      mininterval=2.0):
            info = self._update(sample, offline=True)
            self.offline_done += 1
            if self.offline_done % 100 == 0:
                self.log.scalars("offline", self.offline_done, info)
            if self.offline_done % self.cfg.checkpoint_every_updates == 0:
                self.save()

    def online(self, human: Human) -> None:
        """HIL-ConRFT (or HG-DAgger / HIL-SERL): policy episodes with human takeovers, updates after each."""
        next_eval = (self.env_steps // self.cfg.eval_every_steps + 1) * self.cfg.eval_every_steps
        next_ckpt = (self.env_steps // self.cfg.checkpoint_every_steps + 1) * self.cfg.checkpoint_every_steps
        bar = tqdm(total=self.cfg.online_env_steps, initial=self.env_steps, desc=f"online {self.cfg.method}",
                   unit="step", disable=not self.progress, mininterval=2.0)
        while self.env_steps < self.cfg.online_env_steps:
            seed = int(self.rng.integers(self.cfg.eval_seed))  # training seeds stay below the evaluation seeds
            start = time.perf_counter()
            ep, feats = rollout(self.env, self.featurizer, self.policy, seed=seed, episode_id=self.episodes, human=human)
            self.rollout_seconds += time.perf_counter() - start
            self.learn_from_episode(ep, feats)
            bar.update(ep.length)
            bar.set_postfix(success=int(ep.success), len=ep.length, interv=f"{ep.intervened.mean():.2f}")
            if self.env_steps >= next_eval:
                self.evaluate()
                next_eval += self.cfg.eval_every_steps
            if self.env_steps >= next_ckpt:
                self.save()
                next_ckpt += self.cfg.checkpoint_every_steps
        bar.close()

    def learn_from_episode(self, ep: Episode, feats: np.ndarray) -> dict:
        """One online episode (from the in-process rollout, or received over ROS by the learner node): into
        the online buffer, its human-driven segments also into the demo buffer, then UTD x T updates."""
        self.episodes += 1
        self.env_steps += ep.length
        self.intervened_steps += int(ep.intervened.sum())
        self._add(self.online_buffer, ep, feats)
        # Full fine-tuning stores frames, not features: a segment's first step then sees its own frame as the
        # history before it (as every episode's first step does), not the policy's frames before the takeover.
        for seg in human_segments(ep, feats):
            self._add(self.demo_buffer, *seg)
        sample = self._sampler(mixed=self.method.mixed_batches)
        info: dict = {}
        for _ in range(round(ep.length * self.cfg.updates_per_env_step)):
            info = self._update(sample, offline=False)
        self.log.scalars("episode", self.env_steps, {"success": ep.success, "length": ep.length,
                                                     "intervention_rate": float(ep.intervened.mean())})
        self.log.scalars("online", self.env_steps, info)
        return info

    def evaluate(self, unseen: bool = False, episodes: int | None = None) -> dict:
        """No human, fixed seeds; appended to the learning curve unless `unseen`."""
        act = lambda feats: self.policy(feats, deterministic=True)  # noqa: E731
        n = self.cfg.eval_episodes if episodes is None else episodes
        result = evaluate(self.env, self.featurizer, act, n, self.cfg.eval_seed, unseen=unseen)
        group = "eval_unseen" if unseen else "eval"
        self.log.scalars(group, self.env_steps, result)
        self.log.info(f"[{group}] online steps {self.env_steps}: success {result['success_rate']:.0%} "
                      f"mean length {result['mean_length']:.1f} ({n} episodes)")
        if not unseen:
            self.curve.append({"env_steps": self.env_steps, **result})
        return result

    def result(self) -> dict:
        """The run's summary: final evaluation (the last curve point), unseen range, cost, the exact config."""
        final = self.curve[-1] if self.curve and self.curve[-1]["env_steps"] == self.env_steps else self.evaluate()
        unseen = self.evaluate(unseen=True, episodes=self.cfg.unseen_eval_episodes) \
            if self.cfg.unseen_eval_episodes else None
        return {
            "method": self.cfg.method, **self.meta,
            "success_rate": final["success_rate"], "mean_length": final["mean_length"],
            "unseen_success_rate": unseen["success_rate"] if unseen else None,
            "online_env_steps": self.env_steps, "online_episodes": self.episodes,
            "intervention_rate": self.intervened_steps / self.env_steps if self.env_steps else 0.0,
            "updates": self.updates, "update_seconds": self.update_seconds, "rollout_seconds": self.rollout_seconds,
            "updates_per_s": self.updates / self.update_seconds if self.update_seconds else None,
            "env_steps_per_s": self.env_steps / self.rollout_seconds if self.rollout_seconds else None,
            "replay_bytes_per_transition": self.online_buffer.bytes_per_transition,
            "device": str(self.device), "curve": self.curve, "config": to_dict(self.cfg),
        }

    # -------------------------------------------------------------------------------------- checkpoints
    def _tensors(self) -> dict[str, torch.Tensor]:
        tensors = self.policy.tensors()
        for name, opt in self.agent.optimizers().items():
            tensors.update(optimizer_tensors(opt, f"optim/{name}/"))
        tensors["rng/torch"] = torch.get_rng_state()
        return tensors

    def _progress(self) -> dict:
        keys = ("offline_done", "env_steps", "episodes", "intervened_steps", "updates", "update_seconds",
                "rollout_seconds", "curve")
        return {**{k: getattr(self, k) for k in keys}, "rng": self.rng.bit_generator.state}

    def save(self) -> None:
        """Checkpoint and buffers into the run directory (each file written atomically)."""
        if self.run_dir is None:
            return
        self.demo_buffer.save(self.run_dir / "demo_buffer.safetensors")
        self.online_buffer.save(self.run_dir / "online_buffer.safetensors")
        config = {"train": to_dict(self.cfg), "feature_dim": self.featurizer.dim, "meta": self.meta,
                  "progress": self._progress()}
        if self.encoders is not None:  # what load_policy needs to rebuild them
            config["finetune"] = {"vla": to_dict(self.encoders.vla_cfg), "instruction": self.encoders.instruction}
        save_checkpoint(self.run_dir / self.CHECKPOINT, self._tensors(), config)

    def restore(self) -> bool:
        """Resume from the run directory's checkpoint if there is one (the config must be the same)."""
        if self.run_dir is None or not (self.run_dir / self.CHECKPOINT).exists():
            return False
        path = self.run_dir / self.CHECKPOINT
        tensors, config = load_checkpoint(path)
        if ("finetune" in config) != (self.encoders is not None):
            mode = "full fine-tuning (features: vla_finetune)" if "finetune" in config else "frozen-feature"
            raise CheckpointError(f"{path} was written in the {mode} mode; resume it with the same features")
        key = first_difference(config["train"], to_dict(self.cfg), "train")
        if key:
            raise CheckpointError(f"{path} was written with another config ({key} differs); use the same config "
                                  f"to resume, or a new run directory")
        demo = ReplayBuffer.load(self.run_dir / "demo_buffer.safetensors")
        online = ReplayBuffer.load(self.run_dir / "online_buffer.safetensors")
        self.policy.load(tensors, source=str(path))
        for name, opt in self.agent.optimizers().items():
            load_optimizer(opt, tensors, f"optim/{name}/")
        torch.set_rng_state(tensors["rng/torch"])
        self.demo_buffer, self.online_buffer = demo, online
        self.meta = config.get("meta", self.meta)
        progress = config["progress"]
        self.rng.bit_generator.state = progress.pop("rng")
        for key, value in progress.items():
            setattr(self, key, value)
        self.log.info(f"resumed {path}: offline updates {self.offline_done}, online steps {self.env_steps}")
        return True

    def write_result(self, result: dict) -> Path | None:
        if self.run_dir is None:
            return None
        path = self.run_dir / "result.json"
        path.write_text(json.dumps(result, indent=2))
        return path


def load_policy(path: str | Path, device: str = "auto") -> tuple[Policy, dict]:
    """The policy of a checkpoint (agent and normalisation) and the checkpoint's config, for evaluation
    (`conrft eval`) and the policy node; the config's `meta` says how to rebuild env and featurizer."""
    tensors, config = load_checkpoint(path)
    try:
        cfg = from_dict(TrainConfig, {**config["train"], "device": device}, "train")
    except (ConfigError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} carries an unusable config: {exc}") from None
    torch_device = resolve_device(cfg.device)
    encoders = None
    if "finetune" in config:  # full fine-tuning: the checkpoint holds its own backbone and critic encoder
        try:
            vla = VLA(from_dict(PretrainConfig, config["finetune"]["vla"], "pretrain"))
        except (ConfigError, ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {path} carries an unusable backbone config: {exc}") from None
        encoders = FinetuneEncoders(vla, cfg.encoder, config["finetune"]["instruction"])
    policy = Policy(build_agent(cfg, int(config["feature_dim"]), encoders).to(torch_device),
                    int(config["feature_dim"]), torch_device)
    policy.load(tensors, source=f"checkpoint {path}")
    policy.agent.eval()
    return policy, config
