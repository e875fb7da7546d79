"""Scripted experts: phase machines over privileged state that emit normalised 7-D actions.

They stand in for a human teleoperator, both for demonstrations and as the intervening human during online
training. `ExpertNoise` makes them human-like: Gaussian action noise, short hesitations, an occasional detour
waypoint and a speed factor, so demonstrations are "limited and inconsistent" in length and path.

A demonstration starts with `reset()` (phase 0) and the phases advance as the task progresses. To take over
mid-episode (the simulated human of HIL-ConRFT, see `conrft_sim.intervener`) `resume(sim)` instead infers the
phase from the privileged state, and `suggest(sim)` tells what the expert would do from here without changing it.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from conrft_sim.sim import FrankaSim


HUMAN_SPEED = {"drawer_open": 0.8}  # per-task exceptions to the human-like operator's speed factor (0.65)


@dataclass
class ExpertNoise:
    action_noise: float = 0.0  # std of Gaussian noise on the 6 motion components (normalised units)
    hesitation_prob: float = 0.0  # per-step probability of starting a 1-5 step pause
    detour_prob: float = 0.0  # per-episode probability of a detour waypoint before the approach
    speed: float = 1.0  # scales the largest motion command, in (0, 1]

    def __post_init__(self) -> None:
        for name in ("action_noise", "hesitation_prob", "detour_prob"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"ExpertNoise.{name} must be finite and >= 0, got {value!r}")
        for name in ("hesitation_prob", "detour_prob"):
            if getattr(self, name) > 1:
                raise ValueError(f"ExpertNoise.{name} is a probability and must be <= 1, got {getattr(self, name)!r}")
        if not (math.isfinite(self.speed) and 0 < self.speed <= 1):
            raise ValueError(f"ExpertNoise.speed must be in (0, 1], got {self.speed!r}")

    @classmethod
    def zero(cls, task: str = "") -> ExpertNoise:
        return cls()

    @classmethod
    def human_like(cls, task: str) -> ExpertNoise:
        """The default demonstration setting: a careful, hesitant operator (slow, pauses, detours), so that
        SFT on 20 demonstrations is a mediocre policy, the paper's starting point. SFT success over 3 seeds:
        pick_cube 47%, peg_insert 39%, drawer_open 83% (a faster, steadier operator: 90 / 67 / 74%). drawer_open's
        path is the longest: at the slow speed most attempts run out of the 100 steps (41% succeed), so there the
        operator moves faster (87% succeed); demonstration sets keep the successes."""
        return cls(action_noise=0.25, hesitation_prob=0.1, detour_prob=0.6, speed=HUMAN_SPEED.get(task, 0.65))


OPEN, CLOSED = 1.0, -1.0
GAIN = 1.5
PAD_HALF_WIDTH = 0.01  # m, finger pads (conrft_sim.model)
BAR_DIAMETER = 0.016  # m, drawer handle (conrft_sim.tasks.DrawerOpen)


class Expert:
    """Base: noise handling and the move-to-pose primitive; subclasses implement `_plan`."""

    task_name: str

    def __init__(self, noise: ExpertNoise, rng: np.random.Generator):
        self.noise, self.rng = noise, rng
        self.reset()

    def reset(self) -> None:
        """Start a new episode (call after the sim reset)."""
        self.phase = 0
        self.phase_steps = 0
        self._pause = 0
        self._detour = None  # placed on the first step, once the first goal is known
        self._detour_pending = self.rng.random() < self.noise.detour_prob

    def resume(self, sim: FrankaSim) -> None:
        """Take over mid-episode from whatever state the policy left: the phase comes from the privileged state
        (`_infer_phase`), so the expert finishes the task from there. No detour: a correcting human goes
        straight for the goal."""
        self.phase = self._infer_phase(sim)
        self.phase_steps = 0
        self._pause = 0
        self._detour = None
        self._detour_pending = False

    def suggest(self, sim: FrankaSim) -> np.ndarray:
        """The noise-free action the expert would take first after `resume(sim)`. Side-effect free: a shallow
        copy plans it, so this expert's phase, pause and random generator are untouched."""
        probe = copy.copy(self)
        probe.resume(sim)
        return np.clip(probe._move(sim, *probe._plan(sim)), -1.0, 1.0).astype(np.float32)

    def act(self, sim: FrankaSim) -> np.ndarray:
        goal_pos, gripper = self._plan(sim)
        pos = sim.ee_pose()[0]
        if self._detour_pending:
            self._detour_pending = False
            # A waypoint off to one side of the straight line to the first goal, and higher.
            lateral = self.rng.uniform(0.03, 0.06) * self.rng.choice([-1.0, 1.0])
            self._detour = (pos + goal_pos) / 2 + np.array([0.0, lateral, self.rng.uniform(0.02, 0.05)])
        if self._detour is not None:
            if np.linalg.norm(pos - self._detour) < 0.01:
                self._detour = None
            else:
                goal_pos = self._detour
        action = self._move(sim, goal_pos, gripper)
        # Humans move more carefully close to a goal: the noise shrinks with the remaining distance.
        care = float(np.clip(np.linalg.norm(goal_pos - pos) / 0.03, 0.25, 1.0))
        if self._pause == 0 and self.rng.random() < self.noise.hesitation_prob:
            self._pause = int(self.rng.integers(1, 6))
        if self._pause > 0:
            self._pause -= 1
            action[:6] = 0.0
        elif self.noise.action_noise > 0:
            action[:6] += self.rng.normal(0.0, self.noise.action_noise * care, 6)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def _advance(self) -> None:
        self.phase += 1
        self.phase_steps = 0

    def _move(self, sim: FrankaSim, goal_pos, gripper: float) -> np.ndarray:
        """Proportional step towards goal_pos with the task's start orientation, at most `speed` per axis."""
        scale = sim.config.action_scale
        pos, quat = sim.ee_pose()
        rot = (Rotation.from_quat(sim.task.start_quat, scalar_first=True)
               * Rotation.from_quat(quat, scalar_first=True).inv())
        action = np.empty(7)
        # Gain > 1: the arm covers only ~60% of a commanded delta within one control period (impedance lag).
        action[:3] = GAIN * (np.asarray(goal_pos) - pos) / scale.max_translation
        action[3:6] = GAIN * rot.as_rotvec() / scale.max_rotation
        # Scale the motion together so that the largest component is at most `speed` (straight-line moves).
        peak = np.max(np.abs(action[:6]))
        if peak > self.noise.speed:
            action[:6] *= self.noise.speed / peak
        action[6] = gripper
        self.phase_steps += 1
        return action

    def _plan(self, sim: FrankaSim) -> tuple[np.ndarray, float]:
        raise NotImplementedError

    def _infer_phase(self, sim: FrankaSim) -> int:
        """The phase that fits the current state; the conditions mirror the phase transitions of `_plan`."""
        raise NotImplementedError

    @staticmethod
    def _between_fingers(sim: FrankaSim, point, thickness: float) -> bool:
        """Whether `point` (the centre of an object `thickness` across) lies between the finger pads, so that
        closing grasps it: inside the opening, within the pads' width, and from 2 cm above the TCP down to the
        grasp tolerance of `_plan` below it (6 mm, just past the fingertips)."""
        pos, quat = sim.ee_pose()
        # EE frame: x along the pads' width, y across the fingers, z pointing down out of the hand.
        local = Rotation.from_quat(quat, scalar_first=True).inv().apply(np.asarray(point) - pos)
        room = max(sim.gripper_width() - thickness, 0.0) / 2
        return bool(abs(local[0]) < PAD_HALF_WIDTH and abs(local[1]) < room + 0.003 and -0.02 < local[2] < 0.006)


class PickCubeExpert(Expert):
    """Approach above the cube, descend, close, lift."""

    task_name = "pick_cube"

    def _plan(self, sim):
        cube = sim.privileged()["cube_pos"]
        pos = sim.ee_pose()[0]
        above = cube + [0.0, 0.0, 0.04]
        grasp = cube.copy()
        if self.phase == 0:  # approach
            if np.linalg.norm((pos - above)[:2]) < 0.005 and abs(pos[2] - above[2]) < 0.02:
                self._advance()
            return above, OPEN
        if self.phase == 1:  # descend
            if np.linalg.norm(pos - grasp) < 0.006:
                self._advance()
            return grasp, OPEN
        if self.phase == 2:  # grasp: close and let the fingers settle
            if self.phase_steps >= 3:
                self._advance()
            return grasp, CLOSED
        return np.array([pos[0], pos[1], sim.task.half + 0.12]), CLOSED  # lift

    def _infer_phase(self, sim):
        cube = sim.privileged()["cube_pos"]
        pos, width = sim.ee_pose()[0], sim.gripper_width()
        size = 2 * sim.task.half
        if self._between_fingers(sim, cube, size):
            return 3 if width < size + 0.002 else 2  # closed on it: lift; else close
        # Over the cube, no higher than where the approach ends, with the fingers open wide enough to pass it.
        if np.linalg.norm((pos - cube)[:2]) < 0.005 and pos[2] < cube[2] + 0.06 and width > size + 0.01:
            return 1
        return 0


class PegInsertExpert(Expert):
    """Align the peg over the hole, then descend with continuous lateral correction; back off if stuck."""

    task_name = "peg_insert"

    def _plan(self, sim):
        priv = sim.privileged()
        pos = sim.ee_pose()[0]
        hole, bottom = priv["hole_top"], priv["peg_bottom"]
        offset = pos - bottom  # EE relative to the peg tip: compensates how the peg sits in the grasp
        xy_err = np.linalg.norm((bottom - hole)[:2])
        if self.phase == 0:  # align above the hole
            goal = hole + [0.0, 0.0, 0.015] + offset
            if xy_err < 0.0008 and abs(bottom[2] - hole[2] - 0.015) < 0.01:
                self._advance()
            return goal, CLOSED
        # insert: push down 1.5 cm below the current tip while correcting laterally
        if xy_err > 0.003 and bottom[2] > hole[2] - 0.003:  # caught on the rim: back up and re-align
            self.phase = 0
        return np.array([hole[0], hole[1], bottom[2] - 0.015]) + offset, CLOSED

    def _infer_phase(self, sim):
        priv = sim.privileged()
        hole, bottom = priv["hole_top"], priv["peg_bottom"]
        xy_err = np.linalg.norm((bottom - hole)[:2])
        height = bottom[2] - hole[2]
        clearance = sim.task.hole_half - sim.task.peg_half
        # Insert when the tip is already between the walls, or just above the hole and aligned within the
        # clearance. A tip off by more than that would catch the rim: lift and align first.
        if (height < -0.003 and xy_err < sim.task.hole_half) or (height < 0.025 and xy_err < clearance):
            return 1
        return 0


class DrawerOpenExpert(Expert):
    """Reach above the handle with the fingers half open, descend around it, close, pull out."""

    task_name = "drawer_open"
    half_open = 2 * 0.05 / 0.08 - 1  # 5 cm opening: clears the bar without touching the drawer front

    def _plan(self, sim):
        handle = sim.privileged()["handle_pos"]
        pos = sim.ee_pose()[0]
        above = handle + [0.0, 0.0, 0.04]
        grasp = handle + [0.0, 0.0, -0.004]
        if self.phase == 0:  # reach above the handle
            if np.linalg.norm((pos - above)[:2]) < 0.005 and abs(pos[2] - above[2]) < 0.02:
                self._advance()
            return above, self.half_open
        if self.phase == 1:  # descend around the bar
            if np.linalg.norm(pos - grasp) < 0.006:
                self._advance()
            return grasp, self.half_open
        if self.phase == 2:  # grasp
            if self.phase_steps >= 3:
                self._advance()
            return grasp, CLOSED
        return handle + [-0.1, 0.0, -0.004], CLOSED  # pull towards the robot

    def _infer_phase(self, sim):
        handle = sim.privileged()["handle_pos"]
        pos, width = sim.ee_pose()[0], sim.gripper_width()
        if self._between_fingers(sim, handle, BAR_DIAMETER):
            return 3 if width < BAR_DIAMETER + 0.004 else 2  # closed on it: pull; else close
        # Over the bar, no higher than where the reach ends, with the fingers open wide enough to pass it.
        if np.linalg.norm((pos - handle)[:2]) < 0.005 and pos[2] < handle[2] + 0.06 and width > BAR_DIAMETER + 0.01:
            return 1
        return 0


EXPERTS: dict[str, type[Expert]] = {cls.task_name: cls for cls in (DrawerOpenExpert, PegInsertExpert, PickCubeExpert)}


def make_expert(task_name: str, noise: ExpertNoise, rng: np.random.Generator) -> Expert:
    if task_name not in EXPERTS:
        raise ValueError(f"no expert for task '{task_name}'; choose one of: {', '.join(sorted(EXPERTS))}")
    return EXPERTS[task_name](noise, rng)
