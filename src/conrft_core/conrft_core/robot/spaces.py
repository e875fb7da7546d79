"""The robot I/O contract shared by the simulator and the real-robot nodes.

Action (7-D, each in [-1, 1]): [dx, dy, dz, rx, ry, rz, gripper]. The first six are a translation delta and an
axis-angle rotation delta, both in the robot BASE frame, scaled by `ActionScale` and applied to the currently
MEASURED end-effector pose; the gripper entry is an absolute opening width (-1 closed, +1 fully open).

Proprio (19-D float32): EE pose relative to the reference (reset) frame, gripper width, EE twist, wrench.

Quaternions in this module are (w, x, y, z), MuJoCo's order. ROS geometry messages use (x, y, z, w): convert at
the ROS boundary, never here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

ACTION_DIM = 7
PROPRIO_DIM = 19
TRANSITION_DIMS = (ACTION_DIM, PROPRIO_DIM)  # the `dims` the data readers check this stack's Transitions against
PROPRIO_NAMES = [
    "pos_x", "pos_y", "pos_z",
    "rot_x", "rot_y", "rot_z",
    "gripper",
    "vel_x", "vel_y", "vel_z",
    "angvel_x", "angvel_y", "angvel_z",
    "force_x", "force_y", "force_z",
    "torque_x", "torque_y", "torque_z",
]


@dataclass(frozen=True)
class ActionScale:
    """Physical size of a full-scale (|a| = 1) action."""

    max_translation: float = 0.01  # m per control step
    max_rotation: float = 0.1  # rad per control step
    gripper_max_width: float = 0.08  # m, opening at gripper action +1

    def __post_init__(self) -> None:
        for name in ("max_translation", "max_rotation", "gripper_max_width"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ActionScale.{name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class SafetyBox:
    """Axis-aligned bounds on the EE position in the robot base frame (metres)."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if len(value) != 3 or not all(math.isfinite(v) for v in value):
                raise ValueError(f"SafetyBox.{name} must be 3 finite numbers, got {value!r}")
        if not all(lo < hi for lo, hi in zip(self.low, self.high)):
            raise ValueError(f"SafetyBox.low must be below SafetyBox.high on every axis, got low={self.low} "
                             f"high={self.high}")

    def clip(self, pos) -> np.ndarray:
        return np.clip(np.asarray(pos, dtype=np.float64), self.low, self.high)


def _quat_to_rotation(quat_wxyz) -> Rotation:
    return Rotation.from_quat(np.asarray(quat_wxyz, dtype=np.float64), scalar_first=True)


def action_to_target(action, ee_pos, ee_quat, scale: ActionScale, box: SafetyBox):
    """Turn a normalised action into (target_pos (3,), target_quat (4,) wxyz, gripper_width).

    Raises ValueError for a wrong shape or non-finite values; out-of-range values are clipped to [-1, 1].
    """
    a = np.asarray(action, dtype=np.float64)
    if a.shape != (ACTION_DIM,):
        raise ValueError(f"action must have shape ({ACTION_DIM},), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action contains non-finite values (NaN or inf): {a.tolist()}; nothing was applied")
    a = np.clip(a, -1.0, 1.0)
    target_pos = box.clip(np.asarray(ee_pos, dtype=np.float64) + a[:3] * scale.max_translation)
    # Left-multiplying applies the delta about base-frame axes.
    r_target = Rotation.from_rotvec(a[3:6] * scale.max_rotation) * _quat_to_rotation(ee_quat)
    target_quat = r_target.as_quat(scalar_first=True)
    if target_quat[0] < 0:  # canonical hemisphere, so equal rotations give equal targets
        target_quat = -target_quat
    gripper_width = float((a[6] + 1.0) * 0.5 * scale.gripper_max_width)
    return target_pos, target_quat, gripper_width


def proprio_vector(ee_pos, ee_quat, ref_pos, ref_quat, gripper_width, ee_twist, wrench) -> np.ndarray:
    """Proprioceptive state (19,) float32; see PROPRIO_NAMES for the layout.

    Position and rotation are relative to the reference frame and expressed in it; twist (linear, angular) and
    wrench (force, torque) are passed through as given (base frame).
    """
    r_ref = _quat_to_rotation(ref_quat)
    rel_pos = r_ref.inv().apply(np.asarray(ee_pos, dtype=np.float64) - np.asarray(ref_pos, dtype=np.float64))
    rel_rot = (r_ref.inv() * _quat_to_rotation(ee_quat)).as_rotvec()
    out = np.concatenate([rel_pos, rel_rot, [gripper_width], np.asarray(ee_twist).reshape(6),
                          np.asarray(wrench).reshape(6)])
    return out.astype(np.float32)


def step_reward(success: bool, success_reward: float, step_penalty: float) -> float:
    """Sparse reward of one control step: -step_penalty, plus success_reward on the step that succeeds."""
    return -step_penalty + (success_reward if success else 0.0)
