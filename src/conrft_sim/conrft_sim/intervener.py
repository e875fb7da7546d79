"""Scripted intervener: the simulated human of HIL-ConRFT online training.

In HIL-ConRFT (as in HIL-SERL) a human watches the policy and takes over with a SpaceMouse when it stalls or
heads away from success. While they drive, the executed action is theirs and the transition carries the
`intervened` flag; intervention steps also enter the demonstration buffer. Here a scripted expert plays that
human, per control step:

- judging the policy: a step is "bad" when the EE is stalled (it moved less than `stall_distance` over the
  last `patience` policy steps, or over the fewer since the policy got control, and the task is not done)
  or when the policy heads away (the cosine between its commanded translation and the expert's suggested one
  is below `away_cosine`; judged only when both are non-negligible). The suggestion comes from
  `Expert.suggest`, which infers the phase from the privileged state and leaves the driving expert untouched;
- taking over: on the `patience`-th consecutive bad step the expert `resume`s from the current state and
  drives (that step's action is already the human's), at most `max_takeovers` times per episode. A policy
  that does not move is taken over after `patience` steps (its first step has no motion history yet);
- handing back: at the first phase the expert advances to once it has driven `takeover_steps` steps: the
  human has fixed what went wrong and moved the task on. The final phase has no next one, so a human who
  takes over there finishes the episode;
- reacting late (`reaction_steps`): what the human decides on a step's state is executed that many steps
  later (the policy acts meanwhile). 0 is the in-process loop's ideal human; the ROS graph's scripted teleop
  reacts one step late (it judges step t on the transition the policy node publishes at the start of step
  t + 1, and its command reaches the step after).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from conrft_sim.demos import NOISE_PRESETS, noise_preset
from conrft_sim.experts import make_expert
from conrft_sim.sim import FrankaSim

MIN_TRANSLATION = 0.1  # normalised (1 mm commanded): a smaller translation has no meaningful direction


@dataclass
class IntervenerConfig:
    patience: int = 5  # consecutive bad policy steps before the human takes over
    stall_distance: float = 0.003  # m: EE moved less than this over the last `patience` steps = stalled
    away_cosine: float = 0.0  # policy vs suggested translation: a cosine below this is heading away
    takeover_steps: int = 8  # minimum steps the human drives once they take over
    max_takeovers: int = 4  # per episode
    expert_noise: str = "zero"  # preset from conrft_sim.demos.NOISE_PRESETS for the human's driving
    enabled: bool = True
    reaction_steps: int = 0  # steps between the state a decision is made on and the step it is executed at

    def __post_init__(self) -> None:
        for name, low in (("patience", 1), ("takeover_steps", 1), ("max_takeovers", 0), ("reaction_steps", 0)):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= low):
                raise ValueError(f"intervener.{name} must be an integer >= {low}, got {value!r}")
        if not (math.isfinite(self.stall_distance) and self.stall_distance >= 0):
            raise ValueError(f"intervener.stall_distance must be finite and >= 0 (m), got {self.stall_distance!r}")
        if not (math.isfinite(self.away_cosine) and -1 <= self.away_cosine <= 1):
            raise ValueError(f"intervener.away_cosine must be in [-1, 1], got {self.away_cosine!r}")
        if self.expert_noise not in NOISE_PRESETS:
            raise ValueError(f"intervener.expert_noise must be one of {', '.join(NOISE_PRESETS)}, "
                             f"got {self.expert_noise!r}")
        if not isinstance(self.enabled, bool):
            raise ValueError(f"intervener.enabled must be true or false, got {self.enabled!r}")


class ScriptedIntervener:
    """Decides, per control step, whether the policy's action or the simulated human's is executed.

    Call `reset()` after each env reset and `step(sim, policy_action)` before each env step; the returned flag
    is the transition's `intervened` (those steps also go to the demonstration buffer). Per-episode counters:
    `steps`, `intervened_steps`, `takeovers`; `rate` is the fraction of intervened steps.
    """

    def __init__(self, task_name: str, config: IntervenerConfig | None = None,
                 rng: np.random.Generator | None = None):
        self.config = config or IntervenerConfig()
        self.expert = make_expert(task_name, noise_preset(self.config.expert_noise, task_name),
                                  rng if rng is not None else np.random.default_rng())
        self.reset()

    def reset(self) -> None:
        self.steps = self.intervened_steps = self.takeovers = 0
        self._human = False
        self._driven = 0  # steps driven since the takeover
        self._decided: deque[tuple[np.ndarray, bool]] = deque()  # decisions not yet executed (reaction_steps)
        self._watch_policy()

    @property
    def rate(self) -> float:
        return self.intervened_steps / self.steps if self.steps else 0.0

    def step(self, env, policy_action) -> tuple[np.ndarray, bool]:
        """(action to execute, whether the human is in control this step, i.e. the `intervened` flag).

        `env` is the `ConRFTSimEnv` being rolled out (the `Human` protocol of conrft_core.learning.rollout) or a bare
        `FrankaSim`: the human watches the privileged state either way."""
        sim: FrankaSim = getattr(env, "sim", env)
        policy_action = np.asarray(policy_action, dtype=np.float32)
        self.steps += 1
        self._decided.append(self._decide(sim, policy_action))
        action, human = self._decided.popleft() if len(self._decided) > self.config.reaction_steps \
            else (policy_action, False)
        if not human:
            return policy_action, False  # the policy acts on the current state meanwhile
        self.intervened_steps += 1
        return action, True

    def _decide(self, sim: FrankaSim, policy_action: np.ndarray) -> tuple[np.ndarray, bool]:
        if not self._human and self.config.enabled:
            self._bad_streak = self._bad_streak + 1 if self._policy_is_bad(sim, policy_action) else 0
            if self._bad_streak >= self.config.patience and self.takeovers < self.config.max_takeovers:
                self.takeovers += 1
                self._human, self._driven = True, 0
                self.expert.resume(sim)
        if not self._human:
            return policy_action, False
        phase = self.expert.phase
        action = self.expert.act(sim)
        self._driven += 1
        if self._driven >= self.config.takeover_steps and self.expert.phase > phase:
            self._human = False  # hand back from the next step on
            self._watch_policy()
        return action, True

    def _watch_policy(self) -> None:
        """Judge the policy afresh: no bad steps, no EE history."""
        self._bad_streak = 0
        # EE positions at the start of the last policy steps: patience + 1 of them span `patience` steps of motion.
        self._recent = deque(maxlen=self.config.patience + 1)

    def _policy_is_bad(self, sim: FrankaSim, policy_action: np.ndarray) -> bool:
        pos = sim.ee_pose()[0]
        self._recent.append(pos)
        stalled = (len(self._recent) > 1 and np.linalg.norm(pos - self._recent[0]) < self.config.stall_distance
                   and not sim.success())
        # Heading away: judged only when both the expert's suggestion and the policy's command have a direction
        # (a policy that barely moves is caught as stalled instead).
        suggested, commanded = self.expert.suggest(sim)[:3], policy_action[:3]
        norms = np.linalg.norm(suggested), np.linalg.norm(commanded)
        if min(norms) < MIN_TRANSLATION:
            return stalled
        return stalled or commanded @ suggested / (norms[0] * norms[1]) < self.config.away_cosine
