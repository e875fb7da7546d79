"""Held-out frames for measuring a success detector against the simulator's privileged success.

A demonstration bag ends at the first successful step, so it holds one positive frame per episode and says
nothing about what the detector does once the task is done. In a session that takes success from the
detector, the episode goes on until the detector fires: these rollouts do the same, running the scripted
operator `after_success` steps past the first privileged success (failures: to the step limit) and labelling every frame
with `sim.success()`, the flag the sim node publishes on /sim/success.
"""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from conrft_core.learning.success import LabelledFrames
from conrft_sim.demos import noise_preset
from conrft_sim.env import ConRFTSimEnv
from conrft_sim.experts import make_expert
from conrft_sim.sim import SimConfig


def rollout_frames(task: str, cameras: tuple[str, ...], image_size: tuple[int, int], episodes: int, seed: int,
                   after_success: int = 10, noise: str = "human_like", progress: bool = False) -> LabelledFrames:
    """`episodes` operator episodes from seeds seed, seed + 1, ..., every frame (camera images at `image_size`
    (height, width)) labelled with the privileged success at that frame."""
    if episodes < 1 or after_success < 0:
        raise ValueError(f"episodes must be >= 1 and after_success >= 0, got {episodes} and {after_success}")
    env = ConRFTSimEnv(SimConfig(task=task, cameras=tuple(cameras), image_height=image_size[0],
                                 image_width=image_size[1]))
    expert = make_expert(task, noise_preset(noise, task), np.random.default_rng(seed))
    images, labels, episode, step, success = {c: [] for c in cameras}, [], [], [], []
    for e in tqdm(range(episodes), desc=f"{task} held-out rollouts", unit="ep", disable=not progress):
        obs, info = env.reset(seed=seed + e)
        expert.reset()
        frames, flags, left = [obs], [info["success"]], after_success
        while left > 0 if any(flags) else len(frames) <= env.config.max_episode_steps:
            left -= any(flags)  # the frames after the first success
            obs, _, _, _, info = env.step(np.asarray(expert.act(env.sim), np.float32))
            frames.append(obs)
            flags.append(info["success"])
        for c in cameras:
            images[c].extend(f[c] for f in frames)
        labels.extend(flags)
        episode.extend([e] * len(frames))
        step.extend(range(len(frames)))
        success.extend([any(flags)] * len(frames))
    env.close()
    return LabelledFrames({c: np.stack(v) for c, v in images.items()}, np.asarray(labels, bool),
                          np.asarray(episode), np.asarray(step), np.asarray(success, bool))
