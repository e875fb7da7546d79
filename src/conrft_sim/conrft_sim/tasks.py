"""Manipulation tasks: scene bodies, randomised resets, privileged state and success checks.

Object positions are randomised by a planar offset from a nominal position: uniform in the +-2.5 cm square for
training, or, with `unseen=True`, uniform in the +-6 cm square with the training square cut out, so "unseen"
positions never overlap the training range. Every task starts the EE at a fixed pose (`start_pos`,
`start_quat`, `start_gripper`), pointing down; the simulator solves the joint posture for it.
"""
from __future__ import annotations

import mujoco
import numpy as np

from conrft_core.robot.spaces import SafetyBox

TRAIN_RANGE = 0.025  # m, half-width of the training offset square
UNSEEN_RANGE = 0.06  # m, half-width of the unseen offset square (training square excluded)
DOWN = (0.0, 1.0, 0.0, 0.0)  # EE z axis pointing down, fingers opening along world y (wxyz)
DOWN_YAW90 = (0.0, np.sqrt(0.5), np.sqrt(0.5), 0.0)  # pointing down, rotated 90 deg: fingers open along world x


def sample_offset(rng: np.random.Generator, unseen: bool) -> np.ndarray:
    """Planar (dx, dy) offset from the nominal object position."""
    if not unseen:
        return rng.uniform(-TRAIN_RANGE, TRAIN_RANGE, size=2)
    while True:  # rejection sampling: the acceptance rate is 1 - (2.5/6)^2 ~ 0.83
        offset = rng.uniform(-UNSEEN_RANGE, UNSEEN_RANGE, size=2)
        if np.max(np.abs(offset)) > TRAIN_RANGE:
            return offset


def _in_contact(data: mujoco.MjData, geom: int, others: tuple[int, ...]) -> list[bool]:
    """For each geom in `others`, whether it currently touches `geom`."""
    pairs = data.contact.geom[: data.ncon]
    hits = pairs[(pairs == geom).any(axis=1)]
    return [bool((hits == other).any()) for other in others]


class Task:
    """Base class. Subclasses set the class attributes and implement the scene, reset and success."""

    name: str
    instruction: str
    safety_box: SafetyBox
    start_pos: tuple[float, float, float]
    start_quat: tuple[float, float, float, float] = DOWN
    start_gripper: float = 0.08  # m, opening at reset

    def xml(self) -> str:
        raise NotImplementedError

    def reset(self, model: mujoco.MjModel, data: mujoco.MjData, rng: np.random.Generator, unseen: bool) -> None:
        """Place the objects; the robot is already at its start posture (kinematics computed)."""
        raise NotImplementedError

    def success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        raise NotImplementedError

    def privileged(self, model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, np.ndarray]:
        raise NotImplementedError


def _set_free_body(model, data, body: str, pos, quat=(1.0, 0.0, 0.0, 0.0)) -> None:
    adr = model.jnt_qposadr[model.body(body).jntadr[0]]
    data.qpos[adr:adr + 3] = pos
    data.qpos[adr + 3:adr + 7] = quat


class PickCube(Task):
    name = "pick_cube"
    instruction = "pick up the red cube"
    safety_box = SafetyBox(low=(0.3, -0.2, 0.01), high=(0.7, 0.2, 0.35))
    start_pos = (0.45, 0.0, 0.14)
    nominal = np.array([0.5, 0.0])
    half = 0.0225  # 4.5 cm cube
    lift_height = 0.05

    def xml(self) -> str:
        return (f'<body name="cube" pos="{self.nominal[0]} {self.nominal[1]} {self.half}"><freejoint/>'
                f'<geom name="cube" class="world" type="box" size="{self.half} {self.half} {self.half}" '
                'mass="0.1" rgba="0.85 0.1 0.1 1"/></body>')

    def reset(self, model, data, rng, unseen) -> None:
        xy = self.nominal + sample_offset(rng, unseen)
        _set_free_body(model, data, "cube", (xy[0], xy[1], self.half))

    def success(self, model, data) -> bool:
        lifted = data.xpos[model.body("cube").id][2] >= self.half + self.lift_height
        held = all(_in_contact(data, model.geom("cube").id,
                               (model.geom("finger_left_pad").id, model.geom("finger_right_pad").id)))
        return bool(lifted and held)

    def privileged(self, model, data) -> dict[str, np.ndarray]:
        body = model.body("cube").id
        return {"cube_pos": data.xpos[body].copy(), "cube_quat": data.xquat[body].copy(),
                "cube_rest_z": np.array(self.half)}


class PegInsert(Task):
    """Insert a square peg into a square hole (1.5 mm clearance per side, 3 mm in total).

    The peg is a free body that starts physically grasped: at reset it is placed between the fingers, which are
    set against its faces with the gripper commanded closed (~50 N squeeze). Nothing welds it to the hand, so
    opening the gripper drops it and hard contacts can make it slip or tilt in the grasp.
    """

    name = "peg_insert"
    instruction = "insert the peg into the hole"
    safety_box = SafetyBox(low=(0.35, -0.15, 0.05), high=(0.65, 0.15, 0.3))
    start_pos = (0.47, 0.0, 0.17)
    start_gripper = 0.0
    nominal = np.array([0.5, 0.0])
    peg_half = 0.0125  # 2.5 cm square peg
    peg_half_len = 0.04
    peg_top_above_ee = 0.02  # grasp point: peg top 2 cm above the fingertip centre
    hole_half = 0.014  # 2.8 cm square hole
    hole_depth = 0.04
    wall = 0.02
    success_depth = 0.02

    def xml(self) -> str:
        h, t, z = self.hole_half, self.wall, self.hole_depth / 2
        walls = "".join(
            f'<geom class="world" type="box" size="{sx} {sy} {z}" pos="{px} {py} {z}" friction="0.3" '
            'rgba="0.2 0.35 0.8 1"/>'
            for sx, sy, px, py in ((t / 2, h + t, h + t / 2, 0), (t / 2, h + t, -h - t / 2, 0),
                                   (h, t / 2, 0, h + t / 2), (h, t / 2, 0, -h - t / 2))
        )
        p, L = self.peg_half, self.peg_half_len
        return (f'<body name="hole" pos="{self.nominal[0]} {self.nominal[1]} 0">{walls}</body>'
                f'<body name="peg" pos="0.3 0.3 {L}"><freejoint/>'
                f'<geom name="peg" class="world" type="box" size="{p} {p} {L}" mass="0.05" friction="0.3" '
                'rgba="0.95 0.75 0.1 1"/></body>')

    def reset(self, model, data, rng, unseen) -> None:
        xy = self.nominal + sample_offset(rng, unseen)
        model.body_pos[model.body("hole").id][:2] = xy
        ee = model.site("ee").id
        # Peg axis along the EE z axis (down), its faces aligned with the hand; fingers closed on its faces.
        axis = data.site_xmat[ee].reshape(3, 3)[:, 2]
        centre = data.site_xpos[ee] + axis * (self.peg_half_len - self.peg_top_above_ee)
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, data.site_xmat[ee])
        _set_free_body(model, data, "peg", centre, quat)
        for joint in ("finger_left", "finger_right"):
            data.qpos[model.jnt_qposadr[model.joint(joint).id]] = self.peg_half

    def _peg_bottom(self, model, data) -> np.ndarray:
        """Centre of the lower end face of the peg."""
        body = model.body("peg").id
        half_axis = data.xmat[body].reshape(3, 3)[:, 2] * self.peg_half_len
        return data.xpos[body] - half_axis * np.sign(half_axis[2])

    def success(self, model, data) -> bool:
        bottom = self._peg_bottom(model, data)
        hole = model.body_pos[model.body("hole").id]
        inside = np.all(np.abs(bottom[:2] - hole[:2]) < self.hole_half)
        return bool(inside and bottom[2] <= self.hole_depth - self.success_depth)

    def privileged(self, model, data) -> dict[str, np.ndarray]:
        body = model.body("peg").id
        hole = model.body_pos[model.body("hole").id].copy()
        hole[2] = self.hole_depth  # centre of the hole's opening
        return {"peg_pos": data.xpos[body].copy(), "peg_quat": data.xquat[body].copy(),
                "peg_bottom": self._peg_bottom(model, data), "hole_top": hole}


class DrawerOpen(Task):
    """Pull a drawer out of a low cabinet by its bar handle.

    The handle bar runs along y, so the hand starts rotated 90 deg about the vertical (fingers opening along x)
    to straddle it; the cabinet is low enough for the hand to pass over its top.
    """

    name = "drawer_open"
    instruction = "open the drawer"
    safety_box = SafetyBox(low=(0.25, -0.15, 0.04), high=(0.6, 0.15, 0.3))
    start_pos = (0.46, 0.0, 0.12)
    start_quat = DOWN_YAW90
    nominal = np.array([0.66, 0.0])  # cabinet centre
    depth, width, height = 0.2, 0.26, 0.1
    handle_standoff = 0.05
    handle_z = 0.06
    success_distance = 0.10

    def xml(self) -> str:
        d, w, h, t = self.depth / 2, self.width / 2, self.height, 0.01
        shell = "".join(
            f'<geom class="world" type="box" size="{sx} {sy} {sz}" pos="{px} {py} {pz}" rgba="0.55 0.6 0.65 1"/>'
            for sx, sy, sz, px, py, pz in (
                (d, w, t / 2, 0, 0, h - t / 2), (d, w, t / 2, 0, 0, t / 2),  # top, bottom
                (d, t / 2, h / 2, 0, w - t / 2, h / 2), (d, t / 2, h / 2, 0, -w + t / 2, h / 2),  # sides
                (t / 2, w, h / 2, d - t / 2, 0, h / 2),  # back
            )
        )
        fx = -d - 0.006  # drawer front panel centre (the front face is at fx - 0.006)
        bar_x = fx - 0.006 - self.handle_standoff
        drawer = (
            f'<geom class="world" type="box" size="0.006 {w - 0.012} {h / 2 - 0.014}" pos="{fx} 0 {h / 2}" '
            'rgba="0.85 0.55 0.3 1"/>'
            f'<geom class="world" type="box" size="{d - 0.02} {w - 0.02} 0.004" pos="{0.0 - 0.01} 0 0.016" '
            'rgba="0.85 0.55 0.3 1"/>'
            + "".join(f'<geom class="world" type="capsule" size="0.006" fromto="{fx} {y} {self.handle_z} '
                      f'{bar_x} {y} {self.handle_z}" rgba="0.2 0.2 0.2 1"/>' for y in (-0.045, 0.045))
            + f'<geom name="handle" class="world" type="capsule" size="0.008" fromto="{bar_x} -0.055 '
            f'{self.handle_z} {bar_x} 0.055 {self.handle_z}" rgba="0.2 0.2 0.2 1"/>'
        )
        return (f'<body name="cabinet" pos="{self.nominal[0]} {self.nominal[1]} 0">{shell}'
                '<body name="drawer"><joint name="drawer" type="slide" axis="-1 0 0" range="0 0.2" damping="5" '
                f'frictionloss="2" armature="0.5"/>{drawer}</body></body>')

    def reset(self, model, data, rng, unseen) -> None:
        xy = self.nominal + sample_offset(rng, unseen)
        model.body_pos[model.body("cabinet").id][:2] = xy
        data.qpos[model.jnt_qposadr[model.joint("drawer").id]] = 0.0

    def _opening(self, model, data) -> float:
        return float(data.qpos[model.jnt_qposadr[model.joint("drawer").id]])

    def success(self, model, data) -> bool:
        return self._opening(model, data) >= self.success_distance

    def privileged(self, model, data) -> dict[str, np.ndarray]:
        return {"handle_pos": data.geom_xpos[model.geom("handle").id].copy(),
                "drawer_opening": np.array(self._opening(model, data))}


TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (DrawerOpen, PegInsert, PickCube)}


def make_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}'; choose one of: {', '.join(sorted(TASKS))}")
    return TASKS[name]()
