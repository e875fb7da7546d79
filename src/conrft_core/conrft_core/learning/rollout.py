"""Episodes against a gymnasium environment: rollouts with an optional human, demonstrations, evaluation.

The policy executes its H-step chunk open-loop and re-plans when the chunk is used up or a human intervention
ends. Policies work on feature vectors: a `Featurizer` maps each observation to one (state features, or a
frozen VLA embedding with proprio), and the buffers store only those, once per observation. The stages that
train on these episodes are in `conrft_core.learning.stages`.

Any gymnasium env with a Dict observation space works: its `proprio` Box gives the proprio size, every
(H, W, 3) uint8 Box is a camera, an `instruction` entry is optional; success is read from the step `info`
under `success_key`. `ObservationSpec` takes these from the env and checks each reset's observation against
them, so a mismatch is reported at the first reset, naming the key.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from conrft_core.data.episode import Episode


class Featurizer(Protocol):
    dim: int
    obs_keys: tuple[str, ...]  # the observation entries it reads

    def reset(self) -> None:
        """Start of an episode (clears any observation history)."""

    def __call__(self, obs: dict) -> np.ndarray:
        """Feature vector (dim,) float32 of the current observation."""


@dataclass(frozen=True)
class ObservationSpec:
    """What the loop reads from an env: the cameras it records, the proprio and action sizes."""

    cameras: tuple[str, ...]
    proprio_dim: int
    action_dim: int
    shapes: Mapping[str, tuple[int, ...]]  # every Box entry's shape

    @classmethod
    def of(cls, env) -> ObservationSpec:
        spaces = getattr(getattr(env, "observation_space", None), "spaces", None)
        if not isinstance(spaces, Mapping) or len(getattr(spaces.get("proprio"), "shape", ())) != 1:
            raise ValueError("the env's observation_space must be a gymnasium Dict space with a 'proprio' Box of "
                             "shape (P,): the robot's proprioceptive vector")
        action_shape = getattr(getattr(env, "action_space", None), "shape", None)
        if action_shape is None or len(action_shape) != 1:
            raise ValueError(f"the env's action_space must be a Box of shape (A,), got shape {action_shape}")
        shapes = {k: tuple(v.shape) for k, v in spaces.items() if getattr(v, "shape", None) is not None}
        cameras = tuple(k for k, v in spaces.items()
                        if getattr(v, "dtype", None) == np.uint8 and len(shapes.get(k, ())) == 3 and shapes[k][2] == 3)
        return cls(cameras, shapes["proprio"][0], action_shape[0], shapes)

    def check(self, obs: dict, featurizer: Featurizer) -> None:
        """Raise ValueError naming the first entry the featurizer needs that `obs` lacks, or whose shape is
        not the observation space's."""
        for key in dict.fromkeys(("proprio", *self.cameras, *featurizer.obs_keys)):
            if key not in obs:
                who = "the featurizer reads" if key in featurizer.obs_keys else "the observation space names"
                raise ValueError(f"the env's observation has no '{key}' entry (it has {sorted(obs)}); {who} it")
            if key in self.shapes and np.shape(obs[key]) != self.shapes[key]:
                raise ValueError(f"observation '{key}' has shape {np.shape(obs[key])}, the env's observation_space "
                                 f"says {self.shapes[key]}")


class Human(Protocol):
    """Whoever may take over during online episodes: a teleop device, or the scripted simulated human."""

    def reset(self) -> None: ...

    def step(self, env, policy_action: np.ndarray) -> tuple[np.ndarray, bool]:
        """The action to execute and whether the human is in control this step."""


class StateFeaturizer:
    """Low-dimensional features for state-only configurations: proprio plus the env's `state` entry."""

    obs_keys = ("proprio", "state")

    def __init__(self, dim: int):
        self.dim = dim

    def reset(self) -> None:
        pass

    def __call__(self, obs: dict) -> np.ndarray:
        return np.concatenate([obs["proprio"], obs["state"]]).astype(np.float32)


def rollout(env, featurizer: Featurizer, act: Callable[[np.ndarray], np.ndarray], seed: int, episode_id: int = 0,
            human: Human | None = None, unseen: bool = False,
            success_key: str = "success") -> tuple[Episode, np.ndarray]:
    """One episode; returns it with its features (T+1, dim). `act(features)` gives an (H, A) chunk."""
    spec = ObservationSpec.of(env)
    obs, _ = env.reset(seed=seed, options={"unseen": unseen})
    spec.check(obs, featurizer)
    featurizer.reset()
    if human is not None:
        human.reset()
    cams = spec.cameras
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
        if success_key not in info:
            raise ValueError(f"the env's step info has no '{success_key}' entry (it has {sorted(info)}); set "
                             f"train.success_key to the entry that says the task was achieved")
        actions.append(action)
        policy_actions.append(policy_action)
        rewards.append(reward)
        intervened.append(by_human)
        proprio.append(obs["proprio"])
        feats.append(featurizer(obs))
        for c in cams:
            frames[c].append(obs[c])
    episode = Episode(
        episode_id=episode_id, instruction=str(obs.get("instruction", "")),
        images={c: np.stack(f) for c, f in frames.items()},
        proprio=np.stack(proprio).astype(np.float32), actions=np.stack(actions).astype(np.float32),
        rewards=np.asarray(rewards, np.float32), intervened=np.asarray(intervened, bool),
        terminated=bool(terminated), truncated=bool(truncated and not terminated),
        policy_actions=np.stack(policy_actions).astype(np.float32), success=bool(info[success_key]),
    )
    return episode, np.stack(feats)


def human_segments(ep: Episode, feats: np.ndarray) -> list[tuple[Episode, np.ndarray]]:
    """Maximal runs of human-driven steps as episodes of their own, for the demo buffer (ConRFT, HIL-SERL).

    A step the node held for safety (`Episode.held`) is nobody's demonstration: it ends a run. A run ending
    mid-episode is truncated (its last observation is bootstrapped); one ending the episode keeps the episode's
    terminal flag.
    """
    human = ep.demonstrated
    out, t = [], 0
    while t < ep.length:
        if not human[t]:
            t += 1
            continue
        end = t
        while end < ep.length and human[end]:
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


def evaluate(env, featurizer: Featurizer, act, episodes: int, first_seed: int, unseen: bool = False,
             success_key: str = "success") -> dict:
    """Success rate and mean length with no human, on seeds first_seed .. first_seed + episodes - 1."""
    results = [rollout(env, featurizer, act, seed=first_seed + i, unseen=unseen, success_key=success_key)[0]
               for i in range(episodes)]
    return {"success_rate": float(np.mean([e.success for e in results])),
            "mean_length": float(np.mean([e.length for e in results]))}


def collect_demos(env, featurizer: Featurizer, demonstrator: Human, episodes: int, seed: int,
                  max_attempts: int | None = None, success_key: str = "success") -> list[tuple[Episode, np.ndarray]]:
    """Successful episodes driven entirely by `demonstrator` (a human who is always in control), with
    features; seeds seed, seed + 1, ... Raises RuntimeError when `max_attempts` (default 3x) are not enough."""
    idle_chunk = np.zeros((1, ObservationSpec.of(env).action_dim), np.float32)  # never executed: a human drives
    demos: list[tuple[Episode, np.ndarray]] = []
    for attempt in range(max_attempts or 3 * episodes):
        ep, feats = rollout(env, featurizer, lambda feats: idle_chunk, seed=seed + attempt, episode_id=len(demos),
                            human=demonstrator, success_key=success_key)
        if ep.success:
            demos.append((ep, feats))
            if len(demos) == episodes:
                return demos
    raise RuntimeError(f"only {len(demos)} of {episodes} demonstrations succeeded; use a less noisy demonstrator")
