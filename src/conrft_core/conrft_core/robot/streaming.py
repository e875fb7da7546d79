"""Target streaming: each 10 Hz control step's target pose as a stream of poses at `stream_rate`, the way the
Cartesian impedance controllers our users run expect targets (franka_ros2 filters its equilibrium pose, FZI's
maintainers ask for targets "as a function of time" at ~100 Hz, CRISP's client streams at 50 Hz).

A new step target starts a segment from the pose streamed last to the target, lasting one control period: the
position follows a linear or minimum-jerk profile, the orientation slerps along the same profile. Every streamed
pose then passes the limits: speed and acceleration of the position, angular speed, and the safety box (the
acceleration limit may carry the stream up to max_speed^2 / (2 max_accel) past a target before it returns: the
next target is not known in advance). A hold streams the measured pose at once. The control step (transitions, chunks, rewards) keeps its meaning: streaming only
shapes how the controller is driven between two steps. Times are seconds on any monotonic clock the caller
keeps (steady wall time on a robot, sim time in simulation). Quaternions are wxyz (conrft_core's convention).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from conrft_core.robot.spaces import SafetyBox


@dataclass(frozen=True)
class StreamConfig:
    stream_rate: float = 100.0  # Hz of the streamed targets
    step_period: float = 0.1  # s, the control step a segment spans
    profile: Literal["linear", "min_jerk"] = "linear"  # linear: steady motion across steps; min_jerk stops at each
    max_speed: float = 0.25  # m/s of the streamed position
    max_accel: float = 5.0  # m/s^2
    max_angular_speed: float = 2.0  # rad/s of the streamed orientation

    def __post_init__(self) -> None:
        for name in ("stream_rate", "step_period", "max_speed", "max_accel", "max_angular_speed"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"stream.{name} must be a positive finite number, got {value!r}")
        if self.profile not in ("linear", "min_jerk"):
            raise ValueError(f"stream.profile must be linear or min_jerk, got {self.profile!r}")
        if self.stream_rate * self.step_period < 1:
            raise ValueError("stream.stream_rate must give at least one streamed target per control step")


def progress(tau: float, profile: str) -> float:
    """Fraction of the segment at normalised time tau in [0, 1]: linear, or minimum jerk (zero velocity and
    acceleration at both ends)."""
    tau = min(max(tau, 0.0), 1.0)
    return tau if profile == "linear" else tau**3 * (10.0 - 15.0 * tau + 6.0 * tau * tau)


def _rotation(quat_wxyz) -> Rotation:
    return Rotation.from_quat(np.asarray(quat_wxyz, np.float64), scalar_first=True)


class TargetStreamer:
    """`set_target` at each control step (or `hold`), `sample(now)` at every stream tick."""

    def __init__(self, cfg: StreamConfig, box: SafetyBox, pos, quat_wxyz, now: float):
        self.cfg, self.box = cfg, box
        self.pos, self.rot = np.asarray(pos, np.float64), _rotation(quat_wxyz)  # last streamed pose
        self.vel = np.zeros(3)
        self.last = now
        self.hold(pos, quat_wxyz, now)

    def set_target(self, pos, quat_wxyz, now: float) -> None:
        """A new step target: a segment from the pose streamed last to it, over one control period."""
        self._segment(self.pos, self.rot, np.asarray(pos, np.float64), _rotation(quat_wxyz), now)

    def hold(self, pos, quat_wxyz, now: float) -> None:
        """Stream the measured pose (reached at once: holding must not wait out a segment)."""
        p, r = np.asarray(pos, np.float64), _rotation(quat_wxyz)
        self._segment(p, r, p, r, now)
        self.pos, self.rot, self.vel = self.box.clip(p), r, np.zeros(3)

    def _segment(self, p0, r0, p1, r1, now: float) -> None:
        self.p0, self.p1, self.t0 = p0, p1, now
        self.slerp = Slerp([0.0, 1.0], Rotation.concatenate([r0, r1]))

    def sample(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """The pose to stream at `now` (position (3,), quaternion wxyz (4,)), within every limit."""
        cfg = self.cfg
        s = progress((now - self.t0) / cfg.step_period, cfg.profile)
        want_pos, want_rot = self.p0 + s * (self.p1 - self.p0), self.slerp(s)
        dt = max(now - self.last, 1e-6)  # the time since the pose sent last: a sample out of turn moves less
        vel = (want_pos - self.pos) / dt
        dv = vel - self.vel
        if np.linalg.norm(dv) > cfg.max_accel * dt:
            vel = self.vel + dv * (cfg.max_accel * dt / np.linalg.norm(dv))
        if np.linalg.norm(vel) > cfg.max_speed:
            vel = vel * (cfg.max_speed / np.linalg.norm(vel))
        pos = self.box.clip(self.pos + vel * dt)
        self.vel, self.pos = (pos - self.pos) / dt, pos
        turn = (self.rot.inv() * want_rot).as_rotvec()
        angle, limit = np.linalg.norm(turn), cfg.max_angular_speed * dt
        self.rot = self.rot * Rotation.from_rotvec(turn * (limit / angle if angle > limit else 1.0))
        self.last = now
        return self.pose()

    def pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The pose streamed last (position (3,), quaternion wxyz (4,), w >= 0)."""
        quat = self.rot.as_quat(scalar_first=True)
        return self.pos.copy(), quat if quat[0] >= 0 else -quat
