"""Assembling the RobotState of a real robot from its driver's topics: everything that needs no ROS graph.

The robot-state publisher (conrft_policy.robot_state_publisher) subscribes to the driver's joint states, end-
effector pose and (optionally) twist and wrench, and publishes one `conrft_interfaces/RobotState`. Here:

- presets of topic and joint names per driver (`franka`: franka_ros2; `sim`: conrft_sim's sim_node), where
  explicitly set parameters win;
- `JointCache`: the latest position/velocity/stamp of every joint, merged over JointState messages (drivers may
  publish arm and gripper joints in separate messages on the same topic), with errors that name missing joints;
- `TwistEstimator`: the end-effector twist from consecutive stamped poses, when the driver publishes none;
- `stale_inputs`: which inputs are older than the allowed age.

Quaternions are wxyz here (conrft_core's convention); ROS messages carry xyzw, converted by the node.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from conrft_core.config import ConfigError

# franka_ros2 (Humble/Jazzy releases): joint_state_broadcaster on /joint_states (the gripper's joint states
# merged in by joint_state_publisher), franka_robot_state_broadcaster for the EE pose and the external wrench.
PRESETS: dict[str, dict] = {
    "franka": {
        "joint_states_topic": "/joint_states",
        "pose_topic": "/franka_robot_state_broadcaster/current_pose",
        "twist_topic": "",  # the broadcaster publishes only a desired twist: estimate from poses
        "wrench_topic": "/franka_robot_state_broadcaster/external_wrench_in_base_frame",
        "gripper_joints": ["fr3_finger_joint1", "fr3_finger_joint2"],
        "arm_joints": [f"fr3_joint{i}" for i in range(1, 8)],
    },
    # conrft_sim's sim_node, which publishes what a driver's broadcasters would.
    "sim": {
        "joint_states_topic": "/joint_states",
        "pose_topic": "/sim/ee_pose",
        "twist_topic": "/sim/ee_twist",
        "wrench_topic": "/sim/wrench",
        "gripper_joints": ["panda_finger_joint1", "panda_finger_joint2"],
        "arm_joints": [f"panda_joint{i}" for i in range(1, 8)],
    },
    "custom": {},
}
PRESET_KEYS = ("joint_states_topic", "pose_topic", "twist_topic", "wrench_topic", "gripper_joints", "arm_joints")


class RobotStateError(ValueError):
    """Driver data cannot make a RobotState (missing joints, bad timing); the message says what and why."""


@dataclass
class RobotStateConfig:
    joint_states_topic: str
    pose_topic: str
    twist_topic: str  # "" = estimate from consecutive poses
    wrench_topic: str  # "" = zeros
    gripper_joints: list[str] = field(default_factory=list)  # their positions sum to the opening width
    arm_joints: list[str] = field(default_factory=list)  # output order


def _names(value) -> list[str]:
    """A ROS string-list parameter -> names; None, [] and [""] (ROS cannot declare an empty list) are empty."""
    return [str(v) for v in (value or []) if str(v)]


def resolve_config(params: dict, explicit: Iterable[str]) -> RobotStateConfig:
    """Fill the topic/joint parameters from `params["preset"]`, except those in `explicit` (set by the user).

    Raises ConfigError naming the parameter when the preset is unknown or a required value is missing.
    """
    preset = params.get("preset", "custom")
    if preset not in PRESETS:
        raise ConfigError(f"parameter 'preset' is '{preset}'; choose one of: {', '.join(PRESETS)} (custom: set "
                          f"{', '.join(PRESET_KEYS)} yourself)")
    explicit = set(explicit)
    values = {k: (params[k] if k in explicit or k not in PRESETS[preset] else PRESETS[preset][k])
              for k in PRESET_KEYS}
    cfg = RobotStateConfig(joint_states_topic=str(values["joint_states_topic"]), pose_topic=str(values["pose_topic"]),
                           twist_topic=str(values["twist_topic"]), wrench_topic=str(values["wrench_topic"]),
                           gripper_joints=_names(values["gripper_joints"]), arm_joints=_names(values["arm_joints"]))
    for key in ("joint_states_topic", "pose_topic"):
        if not getattr(cfg, key):
            raise ConfigError(f"parameter '{key}' is required with preset '{preset}' (the driver's "
                              f"{'sensor_msgs/JointState' if key == 'joint_states_topic' else 'EE PoseStamped'} topic)")
    if not cfg.arm_joints:
        raise ConfigError(f"parameter 'arm_joints' is required with preset '{preset}': the arm's joint names in "
                          f"output order, as they appear in {cfg.joint_states_topic}")
    dup = sorted({n for n in cfg.arm_joints + cfg.gripper_joints if (cfg.arm_joints + cfg.gripper_joints).count(n) > 1})
    if dup:
        raise ConfigError(f"parameters 'arm_joints'/'gripper_joints' name joint(s) {dup} more than once")
    return cfg


class JointCache:
    """Latest position, velocity and stamp (seconds) per joint name, merged over JointState messages."""

    def __init__(self):
        self.position: dict[str, float] = {}
        self.velocity: dict[str, float | None] = {}
        self.stamp: dict[str, float] = {}

    def update(self, names: Sequence[str], positions: Sequence[float], velocities: Sequence[float],
               stamp: float) -> None:
        """One JointState. Velocities may be empty (then unknown); other length mismatches raise."""
        if len(positions) != len(names) or len(velocities) not in (0, len(names)):
            raise RobotStateError(f"joint state with {len(names)} names, {len(positions)} positions and "
                                  f"{len(velocities)} velocities: the arrays must have equal lengths")
        for i, name in enumerate(names):
            self.position[name] = float(positions[i])
            self.velocity[name] = float(velocities[i]) if len(velocities) else None
            self.stamp[name] = float(stamp)

    def _require(self, names: Sequence[str], what: str, param: str) -> None:
        missing = [n for n in names if n not in self.position]
        if missing:
            have = ", ".join(sorted(self.position)) or "none yet"
            raise RobotStateError(f"{what} joint(s) {missing} not in the joint states (joints received: {have}); "
                                  f"fix parameter '{param}' or the driver's joint names")

    def arm(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, float]:
        """(positions, velocities (0 where unknown), oldest stamp) of `names`, in that order."""
        self._require(names, "arm", "arm_joints")
        pos = np.array([self.position[n] for n in names])
        vel = np.array([self.velocity[n] or 0.0 for n in names])
        return pos, vel, min(self.stamp[n] for n in names)

    def missing_velocities(self, names: Sequence[str]) -> list[str]:
        return [n for n in names if self.velocity.get(n) is None]

    def gripper_width(self, names: Sequence[str]) -> tuple[float, float | None]:
        """(sum of the finger joints' positions, oldest stamp); (0.0, None) when there are no gripper joints."""
        if not names:
            return 0.0, None
        self._require(names, "gripper", "gripper_joints")
        return float(sum(self.position[n] for n in names)), min(self.stamp[n] for n in names)


def twist_between(pos0, quat0, t0: float, pos1, quat1, t1: float) -> np.ndarray:
    """Twist (linear xyz, angular xyz) in the base frame that moves pose 0 (at t0) to pose 1 (at t1).

    Linear: (p1 - p0) / dt. Angular: the rotation vector of R1 R0^T over dt (spatial angular velocity, so it is
    expressed in the base frame like the poses). Quaternions wxyz; q and -q are the same rotation.
    """
    dt = float(t1) - float(t0)
    if not dt > 0:
        raise RobotStateError(f"poses must have increasing stamps to estimate a twist (dt = {dt:.6f} s)")
    r0 = Rotation.from_quat(np.asarray(quat0, float), scalar_first=True)
    r1 = Rotation.from_quat(np.asarray(quat1, float), scalar_first=True)
    linear = (np.asarray(pos1, float) - np.asarray(pos0, float)) / dt
    angular = (r1 * r0.inv()).as_rotvec() / dt
    return np.concatenate([linear, angular])


class TwistEstimator:
    """Twist from consecutive poses as they arrive. A pose with a stamp not newer than the last is ignored."""

    def __init__(self):
        self._last: tuple[np.ndarray, np.ndarray, float] | None = None
        self.twist = np.zeros(6)
        self.ready = False  # a twist needs two poses

    def update(self, pos, quat_wxyz, stamp: float) -> np.ndarray:
        pos, quat = np.asarray(pos, float), np.asarray(quat_wxyz, float)
        if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(quat)) and np.linalg.norm(quat) > 1e-9):
            raise RobotStateError("end-effector pose has non-finite values or a zero quaternion")
        if self._last is not None:
            p0, q0, t0 = self._last
            if stamp <= t0:
                return self.twist
            self.twist = twist_between(p0, q0, t0, pos, quat, stamp)
            self.ready = True
        self._last = (pos, quat, float(stamp))
        return self.twist


def stale_inputs(ages: dict[str, float | None], max_age: float) -> list[str]:
    """Reasons for not publishing: inputs never received (age None) or older than `max_age` seconds."""
    reasons = []
    for name, a in ages.items():
        if a is None:
            reasons.append(f"no {name} received yet")
        elif a > max_age:
            reasons.append(f"{name} is {a:.3f} s old (max_age {max_age} s)")
        elif a < -max_age:  # a stamp from the future: another clock (sim time vs wall time?)
            reasons.append(f"{name} is stamped {-a:.3f} s in the future (clock mismatch: use_sim_time?)")
    return reasons
