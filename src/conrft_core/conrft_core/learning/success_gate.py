"""When the success detector node (and its evaluation) declares success: the classifier's probability over a
run of frames, plus optional conditions on the robot state (ConRFT's released code also requires the gripper
state and a height).

A single frame above the threshold is not enough: a passing occlusion or a frame caught mid-motion would end
the episode as a success, and the learner would be rewarded for it. `consecutive_frames` frames in a row must
pass (probability and every configured condition); any frame that fails starts the count again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from conrft_core.config import ConfigError


@dataclass
class GateConfig:
    threshold: float = -1.0  # probability of success per frame; < 0 = the threshold stored in the model file
    consecutive_frames: int = 2
    require_gripper: Literal["", "open", "closed"] = ""  # "" = no gripper condition
    gripper_open_width: float = 0.04  # m: open means at least this wide, closed narrower
    ee_height_range: tuple[float, float] = (0.0, 0.0)  # m, [min, max] end-effector z in the base frame; [0, 0] = none

    def __post_init__(self) -> None:
        if self.threshold > 1.0:
            raise ConfigError(f"'threshold' must be a probability in [0, 1] (or < 0 for the model's), got "
                              f"{self.threshold}")
        if self.consecutive_frames < 1:
            raise ConfigError(f"'consecutive_frames' must be >= 1, got {self.consecutive_frames}")
        if self.gripper_open_width <= 0:
            raise ConfigError(f"'gripper_open_width' must be > 0 m, got {self.gripper_open_width}")
        low, high = self.ee_height_range
        if low > high:
            raise ConfigError(f"'ee_height_range' [min, max] must have min <= max, got {list(self.ee_height_range)}")

    @property
    def needs_state(self) -> bool:
        return bool(self.require_gripper) or self.ee_height_range != (0.0, 0.0)


class SuccessGate:
    """Feed one frame at a time (`update`); True once `consecutive_frames` frames in a row passed."""

    def __init__(self, cfg: GateConfig, model_threshold: float):
        self.cfg = cfg
        self.threshold = cfg.threshold if cfg.threshold >= 0 else model_threshold
        self.run = 0

    def conditions(self, gripper_width: float | None, ee_z: float | None) -> bool:
        """The state conditions; a configured one fails without a state (None) to check it on."""
        cfg = self.cfg
        if cfg.require_gripper:
            if gripper_width is None or (gripper_width >= cfg.gripper_open_width) != (cfg.require_gripper == "open"):
                return False
        if cfg.ee_height_range != (0.0, 0.0):
            low, high = cfg.ee_height_range
            if ee_z is None or not low <= ee_z <= high:
                return False
        return True

    def update(self, probability: float, gripper_width: float | None = None, ee_z: float | None = None) -> bool:
        passed = probability >= self.threshold and self.conditions(gripper_width, ee_z)
        self.run = self.run + 1 if passed else 0
        return self.run >= self.cfg.consecutive_frames

    def reset(self) -> None:
        self.run = 0
