"""In-process ConRFT / CO-RFT training against a gymnasium environment, stage by stage.

    demonstrations -> demo buffer
    offline stage (Cal-ConRFT; CO-RFT with H > 1): `offline_updates` agent updates on the demo buffer
    online stage (HIL-ConRFT): episodes with the policy in control and a human who may take over; every
        executed step enters the online buffer, human-driven segments also enter the demo buffer; after each
        episode, `updates_per_env_step` x T agent updates on 50/50 demo/online batches (RLPD)
    evaluation: success rate and episode length on fixed seeds distinct from the training seeds, no human

The policy executes its H-step chunk open-loop and re-plans when the chunk is used up or a human intervention
ends. The agent works on feature vectors: a `Featurizer` maps each observation to one (state features, or a
frozen VLA embedding with proprio), and the buffers store only those, once per observation.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from conrft_core.agent import AgentConfig, ConRFTAgent
from conrft_core.episode import Episode
from conrft_core.replay import ReplayBuffer, sample_mixed

OBS_NON_IMAGE_KEYS = ("proprio", "instruction", "state")


class Featurizer(Protocol):
    dim: int

    def reset(self) -> None:
        """Start of an episode (clears any observation history)."""

    def __call__(self, obs: dict) -> np.ndarray:
        """Feature vector (dim,) float32 of the current observation."""


class Human(Protocol):
    """Whoever may take over during online episodes: a teleop device, or the scripted simulated human."""

    def reset(self) -> None: ...

    def step(self, env, policy_action: np.ndarray) -> tuple[np.ndarray, bool]:
        """The action to execute and whether the human is in control this step."""


class StateFeaturizer:
    """Low-dimensional features for state-only configurations: proprio plus the env's `state` entry."""

    def __init__(self, dim: int):
        self.dim = dim

    def reset(self) -> None:
        pass

    def __call__(self, obs: dict) -> np.ndarray:
        return np.concatenate([obs["proprio"], obs["state"]]).astype(np.float32)


@dataclass
class TrainConfig:
    seed: int = 0
    offline_updates: int = 2000
    online_env_steps: int = 12_000
    updates_per_env_step: float = 1.0  # actor updates per executed step (critic updates: x critic_updates_per_actor)
    batch_size: int = 256
    demo_fraction: float = 0.5  # RLPD share of demo + intervention samples in online batches
    replay_capacity: int = 100_000
    eval_episodes: int = 20
    eval_every_steps: int = 1000
    eval_seed: int = 1_000_000  # evaluation seeds eval_seed + i never overlap training seeds (< eval_seed)
    device: str = "auto"  # auto: cuda when available, else cpu
    agent: AgentConfig = field(default_factory=AgentConfig)

    def __post_init__(self) -> None:
        for name in ("offline_updates", "online_env_steps", "eval_episodes"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0")
        if self.batch_size < 1 or self.eval_every_steps < 1 or self.replay_capacity < 2:
            raise ValueError("train.batch_size and train.eval_every_steps must be >= 1, train.replay_capacity >= 2")
        if not 0 <= self.demo_fraction <= 1:
            raise ValueError(f"train.demo_fraction must be in [0, 1], got {self.demo_fraction}")
        if self.updates_per_env_step < 0:
            raise ValueError("train.updates_per_env_step must be >= 0")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def rollout(env, featurizer: Featurizer, act: Callable[[np.ndarray], np.ndarray], seed: int, episode_id: int = 0,
            human: Human | None = None) -> tuple[Episode, np.ndarray]:
    """One episode; returns it with its features (T+1, dim). `act(features)` gives an (H, 7) chunk."""
    obs, _ = env.reset(seed=seed)
    featurizer.reset()
    if human is not None:
        human.reset()
    cams = [k for k in obs if k not in OBS_NON_IMAGE_KEYS]
    frames, proprio, feats = {c: [obs[c]] for c in cams}, [obs["proprio"]], [featurizer(obs)]
    actions, policy_actions, rewards, intervened = [], [], [], []
    pending: list[np.ndarray] = []
    terminated = truncated = False
    info: dict = {}
    while not (terminated or truncated):
        if not pending:
            pending = list(act(feats[-1]))
        policy_action = pending.pop(0)
        action, by_human = human.step(env, policy_action) if human is not None else (policy_action, False)
        if by_human:
            pending = []  # the policy re-plans from the state the human leaves
        obs, reward, terminated, truncated, info = env.step(action)
        actions.append(action)
        policy_actions.append(policy_action)
        rewards.append(reward)
        intervened.append(by_human)
        proprio.append(obs["proprio"])
        feats.append(featurizer(obs))
        for c in cams:
            frames[c].append(obs[c])
    episode = Episode(
        episode_id=episode_id, instruction=obs["instruction"], images={c: np.stack(f) for c, f in frames.items()},
        proprio=np.stack(proprio).astype(np.float32), actions=np.stack(actions).astype(np.float32),
        rewards=np.asarray(rewards, np.float32), intervened=np.asarray(intervened, bool),
        terminated=bool(terminated), truncated=bool(truncated and not terminated),
        policy_actions=np.stack(policy_actions).astype(np.float32), success=bool(info.get("success", False)),
    )
    return episode, np.stack(feats)


def human_segments(ep: Episode, feats: np.ndarray) -> list[tuple[Episode, np.ndarray]]:
    """Maximal runs of human-driven steps as episodes of their own, for the demo buffer (ConRFT, HIL-SERL).

    A run ending mid-episode is truncated (its last observation is bootstrapped); one ending the episode
    keeps the episode's terminal flag.
    """
    out, t = [], 0
    while t < ep.length:
        if not ep.intervened[t]:
            t += 1
            continue
        end = t
        while end < ep.length and ep.intervened[end]:
            end += 1
        last = end == ep.length
        seg = Episode(
            episode_id=ep.episode_id, instruction=ep.instruction,
            images={c: f[t:end + 1] for c, f in ep.images.items()}, proprio=ep.proprio[t:end + 1],
            actions=ep.actions[t:end], rewards=ep.rewards[t:end], intervened=ep.intervened[t:end],
            terminated=last and ep.terminated, truncated=not (last and ep.terminated),
            success=last and ep.success,
        )
        out.append((seg, feats[t:end + 1]))
        t = end
    return out


def evaluate(env, featurizer: Featurizer, act, episodes: int, first_seed: int) -> dict:
    """Success rate and mean length with no human, on seeds first_seed .. first_seed + episodes - 1."""
    results = [rollout(env, featurizer, act, seed=first_seed + i)[0] for i in range(episodes)]
    return {"success_rate": float(np.mean([e.success for e in results])),
            "mean_length": float(np.mean([e.length for e in results]))}


class Trainer:
    """Holds the agent and both buffers; `offline()` and `online()` run the two stages."""

    def __init__(self, cfg: TrainConfig, env, featurizer: Featurizer, log: Callable[[dict], None] = print):
        self.cfg, self.env, self.featurizer, self.log = cfg, env, featurizer, log
        self.device = resolve_device(cfg.device)
        self.rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.agent = ConRFTAgent(featurizer.dim, cfg.agent).to(self.device)
        gamma = cfg.agent.critic.gamma
        make = lambda: ReplayBuffer(cfg.replay_capacity, cameras=(), image_shape=(1, 1, 3),  # noqa: E731
                                    embedding_dim=featurizer.dim, history=1, gamma=gamma)
        self.demo_buffer, self.online_buffer = make(), make()
        self.env_steps = 0
        self.episodes = 0
        self.curve: list[dict] = []
        # Feature normalisation, fixed from the demonstrations: raw features mix metres, newtons and radians,
        # and task-relevant ones (object offsets of a few cm) would otherwise be invisible to the networks.
        self.feat_mean = torch.zeros(featurizer.dim, device=self.device)
        self.feat_std = torch.ones(featurizer.dim, device=self.device)

    def normalize(self, feats) -> torch.Tensor:
        x = torch.as_tensor(feats, device=self.device, dtype=torch.float32)
        return ((x - self.feat_mean) / self.feat_std).clamp(-10.0, 10.0)

    def act(self, feats: np.ndarray) -> np.ndarray:
        return self.agent.act(self.normalize(feats).unsqueeze(0))[0].cpu().numpy()

    def add_demos(self, demos: list[tuple[Episode, np.ndarray]]) -> None:
        """Store demonstrations and fix the feature normalisation from them."""
        for ep, feats in demos:
            self.demo_buffer.add_episode(ep, embeddings=feats)
        all_feats = torch.as_tensor(np.concatenate([f for _, f in demos]), device=self.device)
        self.feat_mean = all_feats.mean(0)
        self.feat_std = all_feats.std(0).clamp_min(1e-3)

    def _batch(self, sample: dict) -> dict:
        t = lambda x: torch.as_tensor(x, device=self.device).float()  # noqa: E731
        keys = ("actions", "rewards", "reward_mask", "discount", "done", "mc_return")
        return {"state": self.normalize(sample["obs"]["embedding"][:, -1]),
                "next_state": self.normalize(sample["next_obs"]["embedding"][:, -1]), **{k: t(sample[k]) for k in keys}}

    def _sampler(self, online: bool):
        cfg, horizon, gamma = self.cfg, self.cfg.agent.horizon, self.cfg.agent.critic.gamma
        if not online or len(self.online_buffer) == 0:
            return lambda: self._batch(self.demo_buffer.sample(cfg.batch_size, horizon, gamma, self.rng))
        fractions = [cfg.demo_fraction, 1.0 - cfg.demo_fraction]
        return lambda: self._batch(sample_mixed([self.demo_buffer, self.online_buffer], fractions, cfg.batch_size,
                                                horizon, gamma, self.rng))

    def offline(self) -> dict:
        """Cal-ConRFT (or CO-RFT for H > 1): updates on the demonstration buffer only."""
        info = {}
        sample = self._sampler(online=False)
        for _ in range(self.cfg.offline_updates):
            info = self.agent.update(sample, offline=True)
        return info

    def evaluate(self) -> dict:
        result = evaluate(self.env, self.featurizer, self.act, self.cfg.eval_episodes, self.cfg.eval_seed)
        point = {"env_steps": self.env_steps, **result}
        self.curve.append(point)
        self.log(point)
        return point

    def online(self, human: Human | None) -> None:
        """HIL-ConRFT: policy episodes with human takeovers, then RLPD-mixed updates after each episode."""
        next_eval = self.env_steps + self.cfg.eval_every_steps
        while self.env_steps < self.cfg.online_env_steps:
            seed = int(self.rng.integers(self.cfg.eval_seed))  # training seeds stay below the evaluation seeds
            ep, feats = rollout(self.env, self.featurizer, self.act, seed=seed,
                                episode_id=self.episodes, human=human)
            self.episodes += 1
            self.env_steps += ep.length
            self.online_buffer.add_episode(ep, embeddings=feats)
            for seg in human_segments(ep, feats):
                self.demo_buffer.add_episode(*seg)
            sample = self._sampler(online=True)
            info = {}
            for _ in range(round(ep.length * self.cfg.updates_per_env_step)):
                info = self.agent.update(sample, offline=False)
            self.log({"env_steps": self.env_steps, "episode": self.episodes, "success": ep.success,
                      "length": ep.length, "intervention_rate": float(ep.intervened.mean()), **info})
            if self.env_steps >= next_eval:
                self.evaluate()
                next_eval += self.cfg.eval_every_steps
