"""Torque-level Cartesian impedance control, the law a real ros2_control impedance controller runs.

    tau = J^T (K e - D J dq) + N (k_ns (q_ns - q) - d_ns dq) + c(q, dq) + g(q),   N = I - J^T (J^T)^#

with the pose error e clipped in norm (as franka_ros2 / serl controllers clip the target error) and the result
clipped to the torque limits. Damping is D = 2 zeta sqrt(K M) per axis. franka_ros2's example uses M = 1
(D = 2 sqrt(K)); that over-damps rotation badly (the EE rotational inertia is ~0.1-0.6 kg m^2) and under-damps
translation, so M here is a nominal apparent mass / inertia of the Panda at the EE: with zeta = 1 a 2 cm step
settles to 2 mm in ~0.28 s on every axis without overshooting the band. (The diagonal of the operational-space
inertia is 5-11 kg along the axes; joint damping and armature supply the remaining dissipation.)
The law runs every physics substep, so it is written against preallocated buffers and mju_* calls; the
nullspace projector changes slowly with the posture and is refreshed every few calls.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from conrft_sim.model import ARM_JOINTS, HOME_QPOS, TORQUE_LIMITS

NOMINAL_APPARENT_MASS = 3.5  # kg
NOMINAL_APPARENT_INERTIA = 0.3  # kg m^2


@dataclass
class ImpedanceGains:
    translational_stiffness: float = 1000.0  # N/m
    rotational_stiffness: float = 40.0  # Nm/rad
    damping_ratio: float = 1.0  # D = 2 * ratio * sqrt(K * nominal apparent mass or inertia)
    nullspace_stiffness: float = 10.0  # Nm/rad, pulls towards the reset posture
    max_translational_error: float = 0.03  # m, norm clip of the position error
    max_rotational_error: float = 0.3  # rad, norm clip of the orientation error

    def __post_init__(self) -> None:
        for name in ("translational_stiffness", "rotational_stiffness", "damping_ratio",
                     "max_translational_error", "max_rotational_error"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ImpedanceGains.{name} must be a positive finite number, got {value!r}")
        if not (math.isfinite(self.nullspace_stiffness) and self.nullspace_stiffness >= 0):
            raise ValueError(f"ImpedanceGains.nullspace_stiffness must be finite and >= 0, "
                             f"got {self.nullspace_stiffness!r}")


class CartesianImpedanceController:
    """Impedance law for the 7 arm joints of the model from `conrft_sim.model`, tracking the site "ee"."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, gains: ImpedanceGains,
                 projector_period: int = 5):
        self.model, self.data = model, data
        self._site = model.site("ee").id
        self._qpos = _consecutive([model.jnt_qposadr[model.joint(name).id] for name in ARM_JOINTS], "qpos")
        self._dofs = _consecutive([model.jnt_dofadr[model.joint(name).id] for name in ARM_JOINTS], "dof")
        self._tau_limit = np.array(TORQUE_LIMITS)
        self._jac = np.zeros((6, model.nv))
        self._jacp, self._jacr = self._jac[:3], self._jac[3:]  # contiguous row views filled by mj_jacSite
        self._quat = np.zeros(4)
        self._quat_inv = np.zeros(4)
        self._quat_err = np.zeros(4)
        self._error = np.zeros(6)
        self._projector = np.eye(7)
        self._projector_period = projector_period
        self._calls = 0
        self.nullspace_target = np.array(HOME_QPOS)
        self.set_gains(gains)

    def set_gains(self, gains: ImpedanceGains) -> None:
        self.gains = gains
        self._k = np.array([gains.translational_stiffness] * 3 + [gains.rotational_stiffness] * 3)
        inertia = np.array([NOMINAL_APPARENT_MASS] * 3 + [NOMINAL_APPARENT_INERTIA] * 3)
        self._d = 2.0 * gains.damping_ratio * np.sqrt(self._k * inertia)
        self._k_ns = gains.nullspace_stiffness
        self._d_ns = 2.0 * math.sqrt(gains.nullspace_stiffness)

    def reset(self, nullspace_target) -> None:
        """Start a new episode: posture for the nullspace term, projector recomputed on the next call."""
        self.nullspace_target = np.array(nullspace_target, dtype=np.float64)
        self._calls = 0

    def torques(self, target_pos: np.ndarray, target_quat: np.ndarray) -> np.ndarray:
        """Joint torques (7,) for the current state; needs positions/velocities computed (mj_step1)."""
        m, d = self.model, self.data
        mujoco.mj_jacSite(m, d, self._jacp, self._jacr, self._site)
        jac = self._jac[:, self._dofs]
        q, dq = d.qpos[self._qpos], d.qvel[self._dofs]

        err = self._error
        np.subtract(target_pos, d.site_xpos[self._site], out=err[:3])
        mujoco.mju_mat2Quat(self._quat, d.site_xmat[self._site])
        mujoco.mju_negQuat(self._quat_inv, self._quat)
        mujoco.mju_mulQuat(self._quat_err, target_quat, self._quat_inv)  # world-frame rotation to the target
        mujoco.mju_quat2Vel(err[3:], self._quat_err, 1.0)  # axis * angle, angle wrapped to [-pi, pi]
        g = self.gains
        n = math.sqrt(err[0] ** 2 + err[1] ** 2 + err[2] ** 2)
        if n > g.max_translational_error:
            err[:3] *= g.max_translational_error / n
        n = math.sqrt(err[3] ** 2 + err[4] ** 2 + err[5] ** 2)
        if n > g.max_rotational_error:
            err[3:] *= g.max_rotational_error / n

        if self._calls % self._projector_period == 0:
            # N = I - J^T (J^T)^#, with (J^T)^# = (J J^T)^-1 J (J has full row rank away from singularities;
            # the small regulariser keeps it finite near them).
            self._projector = np.eye(7) - jac.T @ np.linalg.solve(jac @ jac.T + 1e-6 * np.eye(6), jac)
        self._calls += 1

        wrench = self._k * err - self._d * (jac @ dq)
        tau = jac.T @ wrench
        tau += self._projector @ (self._k_ns * (self.nullspace_target - q) - self._d_ns * dq)
        tau += d.qfrc_bias[self._dofs]
        return np.clip(tau, -self._tau_limit, self._tau_limit, out=tau)


def _consecutive(addresses, what: str) -> slice:
    """Slice over 7 consecutive addresses (slices keep the per-substep indexing cheap)."""
    addresses = [int(a) for a in addresses]
    if addresses != list(range(addresses[0], addresses[0] + 7)):
        raise ValueError(f"arm joints must occupy 7 consecutive {what} addresses, got {addresses}")
    return slice(addresses[0], addresses[0] + 7)
