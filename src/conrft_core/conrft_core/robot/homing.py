"""Episode resets on a real robot: the end effector driven back to a home pose through the same Cartesian
impedance controller the policy commands (the `home_reset` node serves this as the ResetEpisode service).

The target moves from the measured pose up by `lift` (so a grasped or nearby object is not dragged across the
table), across at that height, then down to home, at most `speed` m/s and `angular_speed` rad/s; every target
stays inside the safety box. Home can be shifted on x/y per episode seed, so training sees varied starts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from conrft_core.robot.spaces import SafetyBox


@dataclass(frozen=True)
class HomingConfig:
    home_position: tuple[float, float, float]  # m, base frame
    home_orientation: tuple[float, float, float, float]  # quaternion w, x, y, z
    random_xy: float = 0.0  # m: home x and y shifted uniformly in [-random_xy, random_xy] per seed
    lift: float = 0.05  # m raised before moving across
    speed: float = 0.05  # m/s of the moving target
    angular_speed: float = 0.5  # rad/s of the moving target
    position_tolerance: float = 0.01  # m: arrived
    angle_tolerance: float = 0.05  # rad: arrived

    def __post_init__(self) -> None:
        if len(self.home_position) != 3 or not all(math.isfinite(v) for v in self.home_position):
            raise ValueError(f"home_position must be 3 finite numbers (m), got {list(self.home_position)}")
        q = np.asarray(self.home_orientation, dtype=np.float64)
        if q.shape != (4,) or not np.all(np.isfinite(q)) or abs(np.linalg.norm(q) - 1.0) > 1e-3:
            raise ValueError(f"home_orientation must be a unit quaternion [w, x, y, z], got {list(q)}")
        for name in ("random_xy", "lift"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be >= 0 (m), got {getattr(self, name)}")
        for name in ("speed", "angular_speed", "position_tolerance", "angle_tolerance"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    def check_inside(self, box: SafetyBox) -> None:
        """Every home this config can draw lies inside the box (else the reset would fight the safety clip)."""
        r = np.array([self.random_xy, self.random_xy, 0.0])
        pos = np.asarray(self.home_position)
        if np.any(pos - r < box.low) or np.any(pos + r > box.high):
            raise ValueError(f"home_position {list(pos)} +- random_xy {self.random_xy} leaves the safety box "
                             f"{list(box.low)} .. {list(box.high)}; move home or widen the box")


def home_for_seed(cfg: HomingConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(position, quaternion wxyz) of this episode's home; a negative seed draws a fresh one."""
    rng = np.random.default_rng(seed if seed >= 0 else None)
    pos = np.asarray(cfg.home_position, dtype=np.float64).copy()
    if cfg.random_xy > 0:
        pos[:2] += rng.uniform(-cfg.random_xy, cfg.random_xy, size=2)
    return pos, np.asarray(cfg.home_orientation, dtype=np.float64)


def waypoints(start_pos, start_quat, goal_pos, goal_quat, cfg: HomingConfig, box: SafetyBox,
              dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Targets (N, 3) positions and (N, 4) wxyz quaternions, one per `dt`, ending at the goal."""
    start, goal = box.clip(start_pos), box.clip(goal_pos)
    height = min(max(start[2] + cfg.lift, goal[2]), box.high[2])
    corners = np.array([start, [start[0], start[1], height], [goal[0], goal[1], height], goal])
    lengths = np.linalg.norm(np.diff(corners, axis=0), axis=1)
    rotations = Rotation.from_quat(np.array([start_quat, goal_quat], dtype=np.float64), scalar_first=True)
    angle = (rotations[1] * rotations[0].inv()).magnitude()
    steps = max(1, math.ceil(max(lengths.sum() / (cfg.speed * dt), angle / (cfg.angular_speed * dt))))
    fraction = np.arange(1, steps + 1) / steps
    distance = np.concatenate([[0.0], np.cumsum(lengths)])
    along = fraction * distance[-1]
    positions = np.stack([np.interp(along, distance, corners[:, k]) for k in range(3)], axis=1)
    quats = Slerp([0.0, 1.0], rotations)(fraction).as_quat(scalar_first=True)
    return positions, quats


def pose_error(pos, quat, goal_pos, goal_quat) -> tuple[float, float]:
    """(m, rad) between a pose and the goal."""
    rot = Rotation.from_quat(np.array([quat, goal_quat], dtype=np.float64), scalar_first=True)
    return float(np.linalg.norm(np.asarray(pos) - goal_pos)), float((rot[1] * rot[0].inv()).magnitude())


def arrived(pos, quat, goal_pos, goal_quat, cfg: HomingConfig) -> bool:
    dist, angle = pose_error(pos, quat, goal_pos, goal_quat)
    return dist <= cfg.position_tolerance and angle <= cfg.angle_tolerance
