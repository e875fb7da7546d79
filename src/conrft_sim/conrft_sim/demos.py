"""Demonstrations from the scripted experts: the simulated stand-in for a human with a SpaceMouse.

`collect_episode` runs one expert episode in the gymnasium env and returns it as an `Episode` (every step
marked `intervened`, since a human drove it), ready for `conrft_core.data.bags.EpisodeBagWriter`.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from conrft_core.data.episode import Episode
from conrft_sim.env import ConRFTSimEnv
from conrft_sim.experts import ExpertNoise, make_expert

NOISE_PRESETS = {"zero": ExpertNoise.zero, "human_like": ExpertNoise.human_like}


def noise_preset(name: str, task: str) -> ExpertNoise:
    """The expert setting `name` for `task` (the human-like operator's speed depends on the task)."""
    if name not in NOISE_PRESETS:
        raise ValueError(f"unknown demo noise preset '{name}'; choose one of: {', '.join(NOISE_PRESETS)}")
    return NOISE_PRESETS[name](task)


def collect_episode(env: ConRFTSimEnv, expert, episode_id: int, seed: int, unseen: bool = False) -> Episode:
    """Roll out `expert` for one episode from a reset with `seed`."""
    obs, _ = env.reset(seed=seed, options={"unseen": unseen})
    expert.reset()
    cams = [k for k in obs if k not in ("proprio", "instruction")]
    frames = {c: [obs[c]] for c in cams}
    proprio, actions, rewards, stamps = [obs["proprio"]], [], [], []
    terminated = truncated = success = False
    while not (terminated or truncated):
        stamps.append(env.sim.sim_time)
        action = np.asarray(expert.act(env.sim), np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        success = bool(info["success"])
        actions.append(action)
        rewards.append(reward)
        proprio.append(obs["proprio"])
        for c in cams:
            frames[c].append(obs[c])
    return Episode(
        episode_id=episode_id,
        instruction=obs["instruction"],
        images={c: np.stack(f) for c, f in frames.items()},
        proprio=np.stack(proprio).astype(np.float32),
        actions=np.stack(actions),
        rewards=np.asarray(rewards, np.float32),
        intervened=np.ones(len(actions), bool),
        terminated=bool(terminated),
        truncated=bool(truncated and not terminated),
        stamps=np.asarray(stamps, np.float64),
        success=success,
    )


def generate_demos(
    env: ConRFTSimEnv, noise: ExpertNoise, episodes: int, seed: int = 0, unseen: bool = False,
    keep_failures: bool = False, max_attempts: int | None = None,
) -> Iterator[tuple[Episode, int]]:
    """Yield (episode, attempts so far) until `episodes` are kept; failures are dropped unless kept.

    Episode seeds are `seed, seed + 1, ...`, so a run is reproducible and distinct from evaluation seeds
    chosen elsewhere. Raises RuntimeError if `max_attempts` (default 3x episodes) pass without enough.
    """
    rng = np.random.default_rng(seed)
    expert = make_expert(env.sim.task.name, noise, rng)
    max_attempts = max_attempts or 3 * episodes
    kept = 0
    for attempt in range(max_attempts):
        ep = collect_episode(env, expert, episode_id=kept, seed=seed + attempt, unseen=unseen)
        if ep.success or keep_failures:
            kept += 1
            yield ep, attempt + 1
            if kept == episodes:
                return
    raise RuntimeError(
        f"only {kept} of {episodes} demonstrations succeeded in {max_attempts} attempts; "
        f"use --noise zero or --keep-failures"
    )


class Demonstrator:
    """The scripted expert as a human who is always in control (the `Human` protocol of conrft_core.learning.rollout):
    with `conrft_core.learning.rollout.collect_demos` it records demonstrations together with their policy features."""

    def __init__(self, task_name: str, noise: ExpertNoise, rng: np.random.Generator):
        self.expert = make_expert(task_name, noise, rng)

    def reset(self) -> None:
        self.expert.reset()

    def step(self, env: ConRFTSimEnv, policy_action) -> tuple[np.ndarray, bool]:
        return np.asarray(self.expert.act(env.sim), np.float32), True
