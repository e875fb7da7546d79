"""FrankaSim: the MuJoCo scene, the impedance controller, a task and the cameras behind one small API.

Two levels of use:
- low level (the ROS sim node, which receives absolute pose targets at arbitrary times): `set_target`,
  `set_gripper`, `step_physics`; the impedance law runs every physics substep against the last target, so the
  arm holds the last valid command when no new one arrives, as a real impedance controller does;
- high level (gymnasium env, experts): `apply_action` turns a 7-D normalised action into a target with
  `conrft_core.robot.spaces.action_to_target` and the task's safety box, then runs one control period.

Time (`sim_time`) restarts at 0 on every reset.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import mujoco
import numpy as np

from conrft_core.robot.spaces import ActionScale, action_to_target, proprio_vector
from conrft_sim.controller import CartesianImpedanceController, ImpedanceGains
from conrft_sim.model import ARM_ACTUATORS, ARM_JOINTS, FINGER_JOINTS, GRIPPER_MAX_WIDTH, HOME_QPOS, build_scene_xml
from conrft_sim.tasks import TASKS, make_task

CAMERAS = ("front", "wrist")
RESET_SETTLE_TIME = 0.1  # s of physics after placing objects, so they rest and a reset grasp closes


@dataclass
class SimConfig:
    """Simulator and episode settings; every field is validated and errors name the field and the fix."""

    task: str = "pick_cube"
    image_width: int = 128
    image_height: int = 128
    cameras: tuple[str, ...] = CAMERAS
    physics_dt: float = 0.002  # s
    control_dt: float = 0.1  # s, one apply_action
    max_episode_steps: int = 100
    success_reward: float = 10.0
    step_penalty: float = 0.05
    action_scale: ActionScale = field(default_factory=ActionScale)
    gains: ImpedanceGains = field(default_factory=ImpedanceGains)
    unseen: bool = False  # default object-position range for resets: training (False) or unseen (True)

    def __post_init__(self) -> None:
        self.cameras = tuple(self.cameras)
        if self.task not in TASKS:
            raise ValueError(f"SimConfig.task: unknown task '{self.task}'; choose one of: {', '.join(sorted(TASKS))}")
        for name in ("image_width", "image_height"):
            value = getattr(self, name)
            if not (isinstance(value, int) and 8 <= value <= 2048):
                raise ValueError(f"SimConfig.{name} must be an integer in [8, 2048] pixels, got {value!r}")
        unknown = [c for c in self.cameras if c not in CAMERAS]
        if unknown or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"SimConfig.cameras must be distinct names from {CAMERAS}, got {self.cameras}")
        for name in ("physics_dt", "control_dt"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"SimConfig.{name} must be a positive number of seconds, got {value!r}")
        ratio = self.control_dt / self.physics_dt
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-6:
            raise ValueError(f"SimConfig.control_dt ({self.control_dt}) must be a whole multiple of physics_dt "
                             f"({self.physics_dt}); e.g. control_dt=0.1 with physics_dt=0.002")
        if not (isinstance(self.max_episode_steps, int) and self.max_episode_steps >= 1):
            raise ValueError(f"SimConfig.max_episode_steps must be a positive integer, got {self.max_episode_steps!r}")
        if not math.isfinite(self.success_reward):
            raise ValueError(f"SimConfig.success_reward must be finite, got {self.success_reward!r}")
        if not (math.isfinite(self.step_penalty) and self.step_penalty >= 0):
            raise ValueError(f"SimConfig.step_penalty must be finite and >= 0 (it is subtracted), "
                             f"got {self.step_penalty!r}")
        if not isinstance(self.action_scale, ActionScale):
            raise ValueError("SimConfig.action_scale must be an ActionScale")
        if not isinstance(self.gains, ImpedanceGains):
            raise ValueError("SimConfig.gains must be an ImpedanceGains")


class FrankaSim:
    """One simulated Franka cell for one task. Poses are in the robot base frame, quaternions wxyz."""

    def __init__(self, config: SimConfig | None = None):
        self.config = cfg = config or SimConfig()
        self.task = make_task(cfg.task)
        self.model = m = mujoco.MjModel.from_xml_string(
            build_scene_xml(self.task.xml(), cfg.image_width, cfg.image_height))
        m.opt.timestep = cfg.physics_dt
        self.data = mujoco.MjData(m)
        self.controller = CartesianImpedanceController(m, self.data, cfg.gains)
        self._substeps = round(cfg.control_dt / cfg.physics_dt)
        self._ee = m.site("ee").id
        self._hand = m.body("hand").id
        self._ft = m.site("ft").id
        self._qpos = np.array([m.jnt_qposadr[m.joint(j).id] for j in ARM_JOINTS])
        self._qvel = np.array([m.jnt_dofadr[m.joint(j).id] for j in ARM_JOINTS])
        self._fingers = np.array([m.jnt_qposadr[m.joint(j).id] for j in FINGER_JOINTS])
        actuators = [m.actuator(a).id for a in ARM_ACTUATORS]
        if actuators != list(range(7)):
            raise ValueError(f"arm actuators must be the first 7, got {actuators}")
        self._gripper = m.actuator("gripper").id
        self._force = m.sensor_adr[m.sensor("ft_force").id]
        self._torque = m.sensor_adr[m.sensor("ft_torque").id]
        self._start_q = self._solve_ik(np.array(self.task.start_pos), np.array(self.task.start_quat))
        self._renderer = None
        if cfg.cameras:
            self._renderer = mujoco.Renderer(m, cfg.image_height, cfg.image_width)
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        self._target_pos = np.zeros(3)
        self._target_quat = np.array([1.0, 0.0, 0.0, 0.0])
        self.reset()

    # ----------------------------------------------------------------------------------------------- episode
    def reset(self, seed: int | None = None, unseen: bool | None = None) -> None:
        """Robot to the task's start pose, objects randomised from `seed`; `unseen` overrides the config."""
        m, d = self.model, self.data
        rng = np.random.default_rng(seed)
        mujoco.mj_resetData(m, d)
        d.qpos[self._qpos] = self._start_q
        d.qpos[self._fingers] = self.task.start_gripper / 2
        mujoco.mj_forward(m, d)
        self.task.reset(m, d, rng, self.config.unseen if unseen is None else unseen)
        mujoco.mj_forward(m, d)
        self.controller.reset(self._start_q)
        self._target_pos, self._target_quat = self.ee_pose()
        self.set_gripper(self.task.start_gripper)
        self.step_physics(round(RESET_SETTLE_TIME / m.opt.timestep))
        d.time = 0.0
        self.reset_pose = self.ee_pose()

    def apply_action(self, action) -> None:
        """One control period for a normalised 7-D action (see conrft_core.robot.spaces).

        Raises ValueError (nothing applied) for a wrong shape or non-finite values.
        """
        pos, quat, width = action_to_target(action, *self.ee_pose(), self.config.action_scale, self.task.safety_box)
        self.set_target(pos, quat)
        self.set_gripper(width)
        self.step_physics(self._substeps)

    # ------------------------------------------------------------------------------------------- low level
    def set_target(self, pos, quat_wxyz) -> None:
        """Absolute EE target in the base frame, held until the next call. Not clipped to the task's safety
        box (that is the commanding side's job, as with a real controller); the impedance law clips the error."""
        pos = np.asarray(pos, dtype=np.float64)
        quat = np.asarray(quat_wxyz, dtype=np.float64)
        if pos.shape != (3,) or quat.shape != (4,):
            raise ValueError(f"target must be pos (3,) and quat (4,), got {pos.shape} and {quat.shape}")
        norm = np.linalg.norm(quat)
        if not (np.all(np.isfinite(pos)) and np.isfinite(norm) and norm > 1e-6):
            raise ValueError(f"target contains non-finite values or a zero quaternion: pos={pos}, quat={quat}; "
                             "the previous target is kept")
        self._target_pos = pos.copy()
        self._target_quat = quat / norm

    def set_gripper(self, width: float) -> None:
        """Commanded opening in metres, clipped to [0, 0.08]; the finger force is limited to ~70 N."""
        if not math.isfinite(width):
            raise ValueError(f"gripper width must be finite, got {width!r}")
        self.data.ctrl[self._gripper] = min(max(width, 0.0), GRIPPER_MAX_WIDTH)

    def set_stiffness(self, translational: float, rotational: float) -> None:
        """New impedance stiffness (damping follows the configured ratio); validated like ImpedanceGains."""
        gains = dataclasses.replace(self.controller.gains, translational_stiffness=translational,
                                    rotational_stiffness=rotational)
        self.controller.set_gains(gains)

    def step_physics(self, n_substeps: int) -> None:
        m, d, torques = self.model, self.data, self.controller.torques
        arm_ctrl = d.ctrl[:7]
        for _ in range(n_substeps):
            mujoco.mj_step1(m, d)  # kinematics and bias forces of the current state
            arm_ctrl[:] = torques(self._target_pos, self._target_quat)
            mujoco.mj_step2(m, d)
        mujoco.mj_forward(m, d)  # derived quantities (poses, sensors) for the final state, for the getters

    # ---------------------------------------------------------------------------------------------- getters
    @property
    def sim_time(self) -> float:
        return float(self.data.time)

    @property
    def target(self) -> tuple[np.ndarray, np.ndarray]:
        return self._target_pos.copy(), self._target_quat.copy()

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,), quaternion (4,) wxyz) of the fingertip centre in the base frame."""
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, self.data.site_xmat[self._ee])
        return self.data.site_xpos[self._ee].copy(), quat

    def ee_twist(self) -> np.ndarray:
        """(6,) linear then angular velocity of the EE, base frame."""
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(self.model, self.data, mujoco.mjtObj.mjOBJ_SITE, self._ee, vel, 0)
        return np.concatenate([vel[3:], vel[:3]])  # MuJoCo returns (angular, linear)

    def wrench(self) -> np.ndarray:
        """(6,) force and torque that the environment applies to the hand, at the flange, in the base frame.

        From the flange force-torque sensor with the hand's own weight removed (a static load compensation,
        as the Franka's estimated external wrench has); a grasped object's weight does show up.
        """
        m, d = self.model, self.data
        rot = d.site_xmat[self._ft].reshape(3, 3)
        # The sensor measures the force (torque) the arm exerts on the hand, in the site frame. Statically
        # arm + weight + external = 0, so external = -measured - weight (torques about the flange alike).
        weight = m.body_subtreemass[self._hand] * m.opt.gravity
        lever = d.subtree_com[self._hand] - d.site_xpos[self._ft]
        force = -rot @ d.sensordata[self._force:self._force + 3] - weight
        torque = -rot @ d.sensordata[self._torque:self._torque + 3] - np.cross(lever, weight)
        return np.concatenate([force, torque])

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._qpos].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._qvel].copy()

    def finger_positions(self) -> np.ndarray:
        """(2,) opening of each finger (m); they sum to the gripper width."""
        return self.data.qpos[self._fingers].copy()

    def gripper_width(self) -> float:
        return float(self.finger_positions().sum())

    def success(self) -> bool:
        return self.task.success(self.model, self.data)

    def privileged(self) -> dict[str, np.ndarray]:
        return self.task.privileged(self.model, self.data)

    def proprio(self) -> np.ndarray:
        pos, quat = self.ee_pose()
        return proprio_vector(pos, quat, *self.reset_pose, self.gripper_width(), self.ee_twist(), self.wrench())

    def snapshot(self) -> np.ndarray:
        """The world's state as one vector: time, qpos, qvel, body positions (reset moves some bodies, e.g.
        the hole). `restore` on another FrankaSim of the same task reproduces the poses, gripper width,
        privileged state and success (not wrench or proprio: actuator commands and the reset pose are not in
        it); the scripted teleop node mirrors the sim node this way (ROS topic /sim/world_state)."""
        m, d = self.model, self.data
        return np.concatenate([[d.time], d.qpos, d.qvel, m.body_pos.ravel()])

    def restore(self, snapshot) -> None:
        m, d = self.model, self.data
        snap = np.asarray(snapshot, dtype=np.float64)
        sizes = (1, m.nq, m.nv, m.nbody * 3)
        if snap.shape != (sum(sizes),):
            raise ValueError(f"snapshot has {snap.size} values, this {self.task.name} scene needs {sum(sizes)}; "
                             f"is the sim node running another task?")
        time, qpos, qvel, body_pos = np.split(snap, np.cumsum(sizes)[:-1])
        d.time, d.qpos[:], d.qvel[:] = time[0], qpos, qvel
        m.body_pos[:] = body_pos.reshape(-1, 3)
        mujoco.mj_forward(m, d)

    def render(self) -> dict[str, np.ndarray]:
        """{camera: (H, W, 3) uint8} for the configured cameras."""
        images = {}
        for camera in self.config.cameras:
            self._renderer.update_scene(self.data, camera=camera)
            images[camera] = self._renderer.render()
        return images

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------------------------------------- internals
    def _solve_ik(self, pos: np.ndarray, quat: np.ndarray, iterations: int = 300) -> np.ndarray:
        """Arm posture placing the EE at (pos, quat): damped least squares from the home posture, with a
        nullspace pull towards home so the solution is the nearby, elbow-up one."""
        m, d = self.model, self.data
        home = np.array(HOME_QPOS)
        q = home.copy()
        lo, hi = m.jnt_range[[m.joint(j).id for j in ARM_JOINTS]].T
        jac = np.zeros((6, m.nv))
        err, cur, inv, diff = np.zeros(6), np.zeros(4), np.zeros(4), np.zeros(4)
        for _ in range(iterations):
            d.qpos[self._qpos] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            mujoco.mj_jacSite(m, d, jac[:3], jac[3:], self._ee)
            err[:3] = pos - d.site_xpos[self._ee]
            mujoco.mju_mat2Quat(cur, d.site_xmat[self._ee])
            mujoco.mju_negQuat(inv, cur)
            mujoco.mju_mulQuat(diff, quat, inv)
            mujoco.mju_quat2Vel(err[3:], diff, 1.0)
            if np.linalg.norm(err) < 1e-8:
                break
            j = jac[:, self._qvel]
            pinv = j.T @ np.linalg.inv(j @ j.T + 1e-6 * np.eye(6))
            q = np.clip(q + pinv @ err + 0.1 * (np.eye(7) - pinv @ j) @ (home - q), lo, hi)
        if np.linalg.norm(err) > 1e-4:
            raise RuntimeError(f"no joint posture reaches the task start pose {pos}, {quat} (error {err})")
        return q
