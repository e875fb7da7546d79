"""Episodes against a gymnasium environment: rollouts with an optional human, demonstrations, evaluation.

The policy executes its H-step chunk open-loop and re-plans when the chunk is used up or a human intervention
ends. Policies work on feature vectors: a `Featurizer` maps each observation to one (state features, or a
frozen VLA embedding with proprio), and the buffers store only those, once per observation. The stages that
train on these episodes are in `conrft_core.trainer`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from conrft_core.episode import Episode

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


def rollout(env, featurizer: Featurizer, act: Callable[[np.ndarray], np.ndarray], seed: int, episode_id: int = 0,
            human: Human | None = None, unseen: bool = False) -> tuple[Episode, np.ndarray]:
    """One episode; returns it with its features (T+1, dim). `act(features)` gives an (H, 7) chunk."""
    obs, _ = env.reset(seed=seed, options={"unseen": unseen})
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


def evaluate(env, featurizer: Featurizer, act, episodes: int, first_seed: int, unseen: bool = False) -> dict:
    """Success rate and mean length with no human, on seeds first_seed .. first_seed + episodes - 1."""
    results = [rollout(env, featurizer, act, seed=first_seed + i, unseen=unseen)[0] for i in range(episodes)]
    return {"success_rate": float(np.mean([e.success for e in results])),
            "mean_length": float(np.mean([e.length for e in results]))}


def collect_demos(env, featurizer: Featurizer, demonstrator: Human, episodes: int, seed: int,
                  max_attempts: int | None = None) -> list[tuple[Episode, np.ndarray]]:
    """Successful episodes driven entirely by `demonstrator` (a human who is always in control), with
    features; seeds seed, seed + 1, ... Raises RuntimeError when `max_attempts` (default 3x) are not enough."""
    idle = lambda feats: np.zeros((1, 7), np.float32)  # noqa: E731 - never executed: the demonstrator drives
    demos: list[tuple[Episode, np.ndarray]] = []
    for attempt in range(max_attempts or 3 * episodes):
        ep, feats = rollout(env, featurizer, idle, seed=seed + attempt, episode_id=len(demos), human=demonstrator)
        if ep.success:
            demos.append((ep, feats))
            if len(demos) == episodes:
                return demos
    raise RuntimeError(f"only {len(demos)} of {episodes} demonstrations succeeded; use a less noisy demonstrator")
