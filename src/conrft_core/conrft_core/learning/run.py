"""The state of one training run: agent, policy, both buffers and progress, and how one update is made.

`conrft_core.learning.stages` runs the stages on it (offline, online, evaluation); `conrft_core.learning.resume`
saves it into its run directory and restores it. The in-process loop (`conrft train`) and the learner node
share it; only the in-process loop has an env.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from conrft_core.data.episode import Episode
from conrft_core.data.replay import ReplayBuffer, discounted_returns, sample_mixed
from conrft_core.learning.agent import ConRFTAgent
from conrft_core.learning.finetune import FinetuneEncoders
from conrft_core.learning.methods import METHODS, TrainConfig
from conrft_core.learning.policy import Policy, build_agent, resolve_device
from conrft_core.learning.rollout import human_segments
from conrft_core.learning.runlog import RunLog


class TrainRun:
    """`feature_dim`: the featurizer's output size; `proprio_dim`: the env's proprio size (the buffers store
    proprio). `encoders` switches to the full fine-tuning mode: the buffers store camera frames and every update
    encodes them (conrft_core.learning.finetune). `meta` (JSON-able) is stored in checkpoints next to the config:
    what a caller needs to rebuild the env and featurizer for evaluation (task, simulator config, feature kind).
    """

    def __init__(self, cfg: TrainConfig, feature_dim: int, proprio_dim: int, run_dir: str | Path | None = None,
                 log: RunLog | None = None, meta: dict | None = None, progress: bool = True,
                 encoders: FinetuneEncoders | None = None):
        self.cfg, self.feature_dim, self.proprio_dim, self.meta = cfg, feature_dim, proprio_dim, meta or {}
        self.method = METHODS[cfg.method]
        self.encoders = encoders
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.log = log or RunLog(None, quiet=not progress)
        self.progress = progress
        self.device = resolve_device(cfg.device)
        self.rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.agent = build_agent(cfg, feature_dim, encoders).to(self.device)
        self.policy = Policy(self.agent, feature_dim, self.device)
        self.demo_buffer, self.online_buffer = self.make_buffer(), self.make_buffer()
        # Progress, saved in checkpoints.
        self.offline_done = 0
        self.env_steps = self.episodes = self.intervened_steps = self.updates = 0
        self.update_seconds = self.rollout_seconds = 0.0
        self.curve: list[dict] = []
        self.on_update: Callable[[int], None] | None = None  # e.g. the learner node's weight broadcast
        self._diag_rng = np.random.default_rng(cfg.seed + 1_000_003)  # diagnostics only, never checkpointed

    def make_buffer(self) -> ReplayBuffer:
        """Frozen mode: one feature vector per observation, no frames. Full fine-tuning: the frames (with the
        backbone's history window), no features."""
        dims = dict(proprio_dim=self.proprio_dim, action_dim=self.cfg.action_dim, gamma=self.cfg.gamma)
        if self.encoders is None:
            return ReplayBuffer(self.cfg.replay_capacity, cameras=(), image_shape=(1, 1, 3),
                                embedding_dim=self.feature_dim, history=1, **dims)
        bb = self.encoders.vla_cfg.backbone
        return ReplayBuffer(self.cfg.replay_capacity, cameras=bb.cameras, image_shape=(bb.image_size, bb.image_size, 3),
                            history=bb.history, **dims)

    def add(self, buffer: ReplayBuffer, ep: Episode, feats: np.ndarray) -> None:
        buffer.add_episode(ep, embeddings=feats if self.encoders is None else None)

    def add_demos(self, demos: list[tuple[Episode, np.ndarray]]) -> None:
        """Store demonstrations (episode, features) and fix the feature normalisation from them. Steps a recording
        node held for safety (nobody drove) are left out: the human's runs between them are stored."""
        if not demos:
            raise ValueError("no demonstrations: training needs at least one successful demonstration episode")
        for ep, feats in demos:
            for seg in human_segments(ep, feats) if ep.held is not None else [(ep, feats)]:
                self.add(self.demo_buffer, *seg)
        if self.encoders is None:
            self.policy.fit_normalization(np.concatenate([f for _, f in demos]))
        else:
            self.encoders.fit_normalization([ep for ep, _ in demos])

    def batch(self, sample: dict) -> dict:
        """A replay sample as tensors on the run's device: normalised features (frozen mode) or observation
        windows that the agent encodes in every update (full fine-tuning)."""
        t = lambda x: torch.as_tensor(x, device=self.device).float()  # noqa: E731
        keys = ("actions", "rewards", "reward_mask", "discount", "done", "mc_return")
        rest = {k: t(sample[k]) for k in keys}
        source = sample.get("source", np.zeros(len(sample["actions"]), int))  # mixed batches: 0 = demo buffer
        rest["from_demos"] = torch.as_tensor(source == 0, device=self.device)
        if self.encoders is not None:
            def obs(o):
                return {"images": {c: torch.as_tensor(v, device=self.device) for c, v in o["images"].items()},
                        "proprio": t(o["proprio"])}
            return {"obs": obs(sample["obs"]), "next_obs": obs(sample["next_obs"]), **rest}
        return {"state": self.policy.normalize(sample["obs"]["embedding"][:, -1]),
                "next_state": self.policy.normalize(sample["next_obs"]["embedding"][:, -1]), **rest}

    def sampler(self, mixed: bool) -> Callable[[], dict]:
        """Batches from the demo buffer, or RLPD-mixed demo / online batches once the online buffer has data."""
        cfg, horizon, gamma = self.cfg, self.cfg.horizon, self.cfg.gamma
        if not mixed or len(self.online_buffer) == 0:
            return lambda: self.batch(self.demo_buffer.sample(cfg.batch_size, horizon, gamma, self.rng))
        fractions = [cfg.demo_fraction, 1.0 - cfg.demo_fraction]
        return lambda: self.batch(sample_mixed([self.demo_buffer, self.online_buffer], fractions, cfg.batch_size,
                                               horizon, gamma, self.rng))

    def update(self, sample: Callable[[], dict], offline: bool) -> dict:
        """One agent update (BC only for the imitation methods), timed and counted."""
        start = time.perf_counter()
        if self.method.imitation:
            info = self.agent.update_bc(sample)
        elif isinstance(self.agent, ConRFTAgent):
            info = self.agent.update(sample, offline=offline, online_updates=self.updates - self.offline_done)
        else:
            info = self.agent.update(sample, offline=offline)
        self.update_seconds += time.perf_counter() - start
        self.updates += 1
        if self.on_update is not None:
            self.on_update(self.updates)
        return info

    def diagnostics(self, ep: Episode | None = None, feats: np.ndarray | None = None) -> dict:
        """`ConRFTAgent.diagnostics` on a fresh demo batch and, for an online episode, the mean over its steps of
        Q(s_t, pi(s_t)) and of the discounted return that followed s_t. Frozen-mode consistency agents only; its
        own random streams, so logging never changes what is trained."""
        if self.encoders is not None or not isinstance(self.agent, ConRFTAgent) or len(self.demo_buffer) == 0:
            return {}
        with torch.random.fork_rng(devices=[self.device.index or 0] if self.device.type == "cuda" else []):
            sample = self.demo_buffer.sample(self.cfg.batch_size, self.cfg.horizon, self.cfg.gamma, self._diag_rng)
            info = self.agent.diagnostics(self.batch(sample), with_critic=not self.method.imitation)
            if ep is not None and not self.method.imitation:
                returns = discounted_returns(ep.rewards, self.cfg.gamma)[:-1]
                q = self.agent.q_pi(self.policy.normalize(feats[:-1]))
                info.update({"diag/q_pi_episode": q.mean().item(), "diag/return_episode": float(returns.mean())})
        return info
