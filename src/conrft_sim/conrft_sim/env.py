"""Gymnasium environment over FrankaSim: 10 Hz control, camera images + proprio + instruction observations."""
from __future__ import annotations

import string

import gymnasium as gym
import numpy as np

from conrft_core.robot.spaces import ACTION_DIM, PROPRIO_DIM, step_reward
from conrft_sim.sim import FrankaSim, SimConfig


class ConRFTSimEnv(gym.Env):
    """Observation: {camera: (H, W, 3) uint8 for each configured camera, "proprio": (19,) float32,
    "instruction": str}. Action: (7,) in [-1, 1] (see conrft_core.robot.spaces). Reward: -step_penalty every step,
    plus success_reward on the step that succeeds. Terminated on success, truncated at max_episode_steps.

    `reset(options={"unseen": True})` draws object positions from the unseen range for that episode.
    `env.sim` is the underlying FrankaSim (scripted experts act on it).
    `privileged_state=True` adds "state": the task's privileged object state, flattened (float32) — for
    state-only configurations (tests, HIL-SERL-style baselines), never for the VLA policy.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, config: SimConfig | None = None, render_mode: str | None = None,
                 privileged_state: bool = False):
        self.config = config or SimConfig()
        self.privileged_state = privileged_state
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if render_mode == "rgb_array" and "front" not in self.config.cameras:
            raise ValueError("render_mode='rgb_array' shows the front camera: add 'front' to SimConfig.cameras")
        self.render_mode = render_mode
        self.sim = FrankaSim(self.config)
        shape = (self.config.image_height, self.config.image_width, 3)
        obs_spaces = {cam: gym.spaces.Box(0, 255, shape, np.uint8) for cam in self.config.cameras}
        obs_spaces["proprio"] = gym.spaces.Box(-np.inf, np.inf, (PROPRIO_DIM,), np.float32)
        obs_spaces["instruction"] = gym.spaces.Text(max_length=256, charset=string.printable)
        if privileged_state:
            obs_spaces["state"] = gym.spaces.Box(-np.inf, np.inf, self._state().shape, np.float32)
        self.observation_space = gym.spaces.Dict(obs_spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self._steps = 0
        self._images: dict[str, np.ndarray] = {}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        unknown = set(options) - {"unseen"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; the only option is 'unseen' (bool)")
        # Without a seed, draw one from the env's generator so a seeded first reset fixes all later episodes.
        sim_seed = seed if seed is not None else int(self.np_random.integers(2**31))
        self.sim.reset(seed=sim_seed, unseen=bool(options.get("unseen", self.config.unseen)))
        self._steps = 0
        return self._observation(), {"success": False, "step": 0}

    def step(self, action):
        self.sim.apply_action(action)
        self._steps += 1
        success = self.sim.success()
        reward = step_reward(success, self.config.success_reward, self.config.step_penalty)
        truncated = not success and self._steps >= self.config.max_episode_steps
        return self._observation(), float(reward), success, truncated, {"success": success, "step": self._steps}

    def render(self):
        if self.render_mode == "rgb_array":
            return self._images["front"]
        return None

    def close(self) -> None:
        self.sim.close()

    def _state(self) -> np.ndarray:
        privileged = self.sim.privileged()
        return np.concatenate([np.ravel(privileged[k]) for k in sorted(privileged)]).astype(np.float32)

    def _observation(self) -> dict:
        self._images = self.sim.render()
        obs = {**self._images, "proprio": self.sim.proprio(), "instruction": self.sim.task.instruction}
        if self.privileged_state:
            obs["state"] = self._state()
        return obs
