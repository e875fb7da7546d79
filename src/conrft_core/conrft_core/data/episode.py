"""An episode as the learner stores it: a sequence of observations and the actions between them.

Observations are stored once per step (T + 1 of them for T actions: the last is the observation after the
final action), so chunked samples (s_t, a_t..a_{t+H-1}, r_t..r_{t+H-1}, s_{t+H}) index into these arrays
without copying frames. This is the unit that demonstration bags, live transitions and replay buffers share.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np

from conrft_core.config import ConfigError

# (robot, episode id): an episode's identity across the robots of a fleet; robot "" is a single robot's.
EpisodeKey = tuple[str, int]
ROBOT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # a ROS name token: also a folder name in the learner's journal


def check_robot_name(name: str, where: str) -> str:
    """`name` if it is "" (a single robot) or a ROS name token; else ConfigError naming `where`."""
    if name and not ROBOT_NAME.fullmatch(name):
        raise ConfigError(f"{where}: robot name {name!r} is not a ROS name token (letters, digits and '_', starting "
                         f"with a letter), e.g. robot_1")
    return name


def key_to_meta(key: EpisodeKey) -> int | str:
    """A key as checkpoints list it: the bare id for robot "" (as before fleets), "robot/id" otherwise."""
    return key[1] if not key[0] else f"{key[0]}/{key[1]}"


def key_from_meta(value: int | str) -> EpisodeKey:
    if isinstance(value, int):
        return "", value
    robot, _, eid = value.rpartition("/")
    return robot, int(eid)


def first_episode_id() -> int:
    """Where a reset server (sim node, home_reset) starts numbering episodes: its start time in seconds. Ids must
    never repeat within a session, also across a restart of the server (a resumed learner drops ids it has
    learned from), and a restarted server has passed every earlier id (a reset takes more than a second)."""
    return int(time.time())


@dataclass
class Episode:
    """One episode. T = number of actions; every per-observation array has T + 1 rows."""

    episode_id: int
    instruction: str
    images: dict[str, np.ndarray]  # camera -> (T+1, H, W, 3) uint8
    proprio: np.ndarray  # (T+1, P) float32 (P = 19 on this stack's robots, conrft_core.robot.spaces)
    actions: np.ndarray  # (T, A) float32, executed (A = 7 on this stack's robots)
    rewards: np.ndarray  # (T,) float32
    intervened: np.ndarray  # (T,) bool, the human had control
    terminated: bool  # ended by success/failure (no bootstrap past the last step)
    truncated: bool  # ended by a time limit or an operator stop
    policy_actions: np.ndarray | None = None  # (T, A) float32; None for pure demonstrations
    policy_versions: np.ndarray | None = None  # (T,) uint64
    stamps: np.ndarray | None = None  # (T,) float64 seconds, time of each step's observation
    success: bool = False  # the task was achieved at the last step
    held: np.ndarray | None = None  # (T,) bool, the node held the arm for safety (None: never)
    robot: str = ""  # the robot that produced it ("" on a single robot, in demonstrations and in-process)

    def __post_init__(self) -> None:
        t = len(self.actions)
        if t == 0:
            raise ValueError(f"episode {self.episode_id} has no steps")
        if self.actions.ndim != 2 or self.actions.shape[1] < 1:
            raise ValueError(f"episode {self.episode_id}: actions must have shape (T, A), got {self.actions.shape}")
        if self.proprio.ndim != 2 or len(self.proprio) != t + 1:
            raise ValueError(
                f"episode {self.episode_id}: proprio must have shape ({t + 1}, P), got {self.proprio.shape}"
            )
        for name, frames in self.images.items():
            if frames.ndim != 4 or len(frames) != t + 1 or frames.dtype != np.uint8:
                raise ValueError(
                    f"episode {self.episode_id}: camera '{name}' must be (T+1, H, W, 3) uint8, got "
                    f"{frames.shape} {frames.dtype}"
                )
        if self.rewards.shape != (t,) or self.intervened.shape != (t,):
            raise ValueError(f"episode {self.episode_id}: rewards and intervened must have shape ({t},)")
        if self.held is not None and self.held.shape != (t,):
            raise ValueError(f"episode {self.episode_id}: held must have shape ({t},)")

    @property
    def demonstrated(self) -> np.ndarray:
        """(T,) bool: the steps whose action the human chose (intervened, not held for safety)."""
        return self.intervened if self.held is None else self.intervened & ~self.held

    @property
    def key(self) -> EpisodeKey:
        return self.robot, self.episode_id

    @property
    def length(self) -> int:
        return len(self.actions)

    @property
    def episode_return(self) -> float:
        return float(self.rewards.sum())
