"""MJCF scene: a Panda-like 7-DoF arm built from the published Franka kinematics, with primitive geometry.

Each link body is placed with the Franka modified-DH parameters (Craig convention): the transform from link i-1
to link i is Rx(alpha) Tx(a) Rz(q) Tz(d), and since Tz(d) commutes with Rz(q) the body sits at
(a, -sin(alpha) d, cos(alpha) d) with orientation Rx(alpha) and its joint about the local z axis. Geometry is a
cylinder housing on each joint axis plus a capsule to the next joint; link masses, centres of mass and inertias
are the published identified values, joint armature/damping those of common Panda models. The hand is mounted
-45 deg about the flange z axis, as on the real robot, so at the home posture the EE frame is x forward,
y towards -y world, z down, and the fingers open along world y.
"""
from __future__ import annotations

import math

import numpy as np

# Franka Panda modified-DH parameters (joints 1-7, then the flange) and limits (Franka documentation).
DH_A = (0.0, 0.0, 0.0, 0.0825, -0.0825, 0.0, 0.088, 0.0)
DH_D = (0.333, 0.0, 0.316, 0.0, 0.384, 0.0, 0.0, 0.107)
DH_ALPHA = (0.0, -math.pi / 2, math.pi / 2, math.pi / 2, -math.pi / 2, math.pi / 2, math.pi / 2, 0.0)
JOINT_LIMITS = (
    (-2.8973, 2.8973), (-1.7628, 1.7628), (-2.8973, 2.8973), (-3.0718, -0.0698),
    (-2.8973, 2.8973), (-0.0175, 3.7525), (-2.8973, 2.8973),
)
TORQUE_LIMITS = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
HOME_QPOS = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)
# Identified link inertial parameters (Gaz et al. 2019, as published in mujoco_menagerie's panda.xml):
# mass (kg), centre of mass and full inertia (Ixx Iyy Izz Ixy Ixz Iyz) in each link frame.
LINK_INERTIALS = (
    (4.970684, (0.003875, 0.002081, -0.04762), (0.70337, 0.70661, 0.009117, -0.000139, 0.006772, 0.019169)),
    (0.646926, (-0.003141, -0.02872, 0.003495), (0.007962, 0.02811, 0.025995, -0.003925, 0.010254, 0.000704)),
    (3.228604, (0.027518, 0.039252, -0.066502), (0.037242, 0.036155, 0.01083, -0.004761, -0.011396, -0.012805)),
    (3.587895, (-0.05317, 0.104419, 0.027454), (0.025853, 0.019552, 0.028323, 0.007796, -0.001332, 0.008641)),
    (1.225946, (-0.011953, 0.041065, -0.038437), (0.035549, 0.029474, 0.008627, -0.002117, -0.004037, 0.000229)),
    (1.666555, (0.060149, -0.014117, -0.010517), (0.001964, 0.004354, 0.005433, 0.000109, -0.001158, 0.000341)),
    (0.735522, (0.010517, -0.004252, 0.061597), (0.012516, 0.010027, 0.004815, -0.000428, -0.001196, -0.000741)),
)
LINK_RADII = (0.06, 0.06, 0.055, 0.055, 0.05, 0.045, 0.04)
HAND_MASS = 0.73
FLANGE_TO_FINGER_BASE = 0.0584
FLANGE_TO_TCP = 0.1034
GRIPPER_MAX_WIDTH = 0.08
GRIPPER_FORCE_LIMIT = 70.0  # N, Franka Hand continuous grasping force

ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
ARM_ACTUATORS = tuple(f"torque{i}" for i in range(1, 8))
FINGER_JOINTS = ("finger_left", "finger_right")
FRONT_CAMERA_POS = (1.05, 0.3, 0.5)
FRONT_CAMERA_LOOKAT = (0.45, 0.0, 0.12)


def _fmt(values) -> str:
    return " ".join(f"{v:.6g}" for v in values)


def _camera_xyaxes(forward, up_hint) -> str:
    """MJCF xyaxes of a camera looking along `forward` (cameras look down their -z axis, y is image up)."""
    f = np.asarray(forward, float) / np.linalg.norm(forward)
    x = np.cross(f, up_hint)
    x /= np.linalg.norm(x)
    return _fmt(np.concatenate([x, np.cross(x, f)]))


def _link_xml(i: int, inner: str) -> str:
    """Link i (0-based): inertial, joint, geometry, with the child `inner` nested inside."""
    a, d, alpha = DH_A[i], DH_D[i], DH_ALPHA[i]
    pos = (a, -math.sin(alpha) * d, math.cos(alpha) * d)
    quat = (math.cos(alpha / 2), math.sin(alpha / 2), 0.0, 0.0)
    # Offset to the next joint (or flange), expressed in this link's frame.
    an, dn, alphan = DH_A[i + 1], DH_D[i + 1], DH_ALPHA[i + 1]
    child = np.array([an, -math.sin(alphan) * dn, math.cos(alphan) * dn])
    r = LINK_RADII[i]
    geoms = []
    if i == 0:  # the shoulder column rotating on the base
        geoms.append(f'<geom type="capsule" fromto="0 0 -0.14 0 0 0" size="{r}"/>')
    if np.linalg.norm(child) > 1e-6:
        geoms.append(f'<geom type="capsule" fromto="0 0 0 {_fmt(child)}" size="{r * 0.9:.4g}"/>')
    geoms.append(f'<geom type="cylinder" fromto="0 0 {-r} 0 0 {r}" size="{r * 1.05:.4g}" material="joint"/>')
    mass, com, inertia = LINK_INERTIALS[i]
    lo, hi = JOINT_LIMITS[i]
    return (
        f'<body name="link{i + 1}" pos="{_fmt(pos)}" quat="{_fmt(quat)}">\n'
        f'  <inertial mass="{mass}" pos="{_fmt(com)}" fullinertia="{_fmt(inertia)}"/>\n'
        f'  <joint name="{ARM_JOINTS[i]}" range="{lo} {hi}"/>\n'
        + "".join(f"  {g}\n" for g in geoms)
        + inner
        + "</body>\n"
    )


def _hand_xml() -> str:
    half_w = GRIPPER_MAX_WIDTH / 2
    finger_len = FLANGE_TO_TCP - FLANGE_TO_FINGER_BASE + 0.004  # tips 4 mm beyond the TCP
    cam_pos = np.array([0.065, 0.0, 0.03])
    cam_forward = np.array([0.0, 0.0, 0.2]) - cam_pos  # look past the fingertips at the workspace below
    fingers = ""
    for name, sign in zip(FINGER_JOINTS, (1, -1)):
        # Finger joint q = distance of the inner face from the hand's centre plane; opening = q_left + q_right.
        fingers += (
            f'<body name="{name}" pos="0 0 {FLANGE_TO_FINGER_BASE}">\n'
            f'  <joint name="{name}" type="slide" axis="0 {sign} 0" range="0 {half_w}" damping="2" armature="0.05"/>\n'
            f'  <geom name="{name}_pad" class="finger" type="box" size="0.01 0.009 {finger_len / 2:.4f}" '
            f'pos="0 {sign * 0.009} {finger_len / 2:.4f}"/>\n'
            "</body>\n"
        )
    hand_quat = (math.cos(-math.pi / 8), 0.0, 0.0, math.sin(-math.pi / 8))  # -45 deg about the flange z axis
    return (
        f'<body name="hand" pos="0 0 {DH_D[7]}" quat="{_fmt(hand_quat)}">\n'
        '  <site name="ft" size="0.005" group="4"/>\n'
        f'  <site name="ee" pos="0 0 {FLANGE_TO_TCP}" size="0.005" group="4"/>\n'
        f'  <geom mass="{HAND_MASS}" type="box" size="0.025 0.095 0.022" pos="0 0 0.035" material="white"/>\n'
        '  <geom mass="0" type="cylinder" size="0.042 0.006" pos="0 0 0.006" material="joint"/>\n'
        f'  <geom mass="0" type="box" size="0.015 0.02 0.012" pos="{_fmt(cam_pos)}" material="dark" '
        'contype="0" conaffinity="0"/>\n'
        f'  <camera name="wrist" pos="{_fmt(cam_pos + [0, 0, 0.013])}" '
        f'xyaxes="{_camera_xyaxes(cam_forward, [1.0, 0.0, 0.0])}" fovy="80"/>\n'
        + fingers
        + "</body>\n"
    )


def build_scene_xml(task_xml: str, image_width: int, image_height: int) -> str:
    """The full MJCF: robot, table, lights, cameras, with `task_xml` (bodies) inserted into the worldbody."""
    chain = _hand_xml()
    for i in reversed(range(7)):
        chain = _link_xml(i, chain)
    motors = "".join(
        f'<motor name="{act}" joint="{jnt}" ctrlrange="{-lim} {lim}"/>\n'
        for act, jnt, lim in zip(ARM_ACTUATORS, ARM_JOINTS, TORQUE_LIMITS)
    )
    front_xyaxes = _camera_xyaxes(np.subtract(FRONT_CAMERA_LOOKAT, FRONT_CAMERA_POS), [0.0, 0.0, 1.0])
    return f"""<mujoco model="conrft_franka">
<compiler angle="radian" autolimits="true"/>
<!-- implicitfast integrates joint damping and actuator velocity terms implicitly: stable at 2 ms.
     Elliptic friction cones with a high impratio keep grasped objects from creeping in the fingers. -->
<option timestep="0.002" integrator="implicitfast" cone="elliptic" impratio="10"/>
<!-- A fixed extent keeps the near clipping plane (znear x extent = 1.5 cm) from cutting the wrist view. -->
<statistic extent="1.5" center="0.3 0 0.3"/>
<visual>
  <map znear="0.01"/>
  <global offwidth="{max(image_width, 640)}" offheight="{max(image_height, 480)}"/>
  <!-- Coarse primitive tessellation and no floor plane grid: the renderer is software (llvmpipe) here. -->
  <quality shadowsize="0" offsamples="0" numslices="16" numstacks="6" numquads="1"/>
  <headlight ambient="0.35 0.35 0.35" diffuse="0.5 0.5 0.5" specular="0.1 0.1 0.1"/>
</visual>
<asset>
  <material name="white" rgba="0.92 0.92 0.92 1"/>
  <material name="joint" rgba="0.25 0.25 0.28 1"/>
  <material name="dark" rgba="0.1 0.1 0.1 1"/>
  <material name="table" rgba="0.62 0.48 0.34 1"/>
  <material name="floor" rgba="0.3 0.32 0.35 1"/>
</asset>
<default>
  <joint axis="0 0 1" armature="0.1" damping="1.0"/>
  <!-- Robot geoms: contype 2 / conaffinity 1 collide with the world and objects (contype 1) but not with
       each other, so neighbouring links and the two fingers never lock together. -->
  <geom contype="2" conaffinity="1" material="white"/>
  <!-- Stiffer-than-default contacts (timeconst 2 x timestep, high impedance) for the fingers and the objects:
       light objects squeezed at ~50-70 N otherwise sink several mm into the pads. -->
  <default class="finger">
    <geom condim="4" friction="1.5 0.02 0.001" mass="0.05" material="dark"
          solref="0.004 1" solimp="0.95 0.99 0.001"/>
  </default>
  <default class="world">
    <geom contype="1" conaffinity="1" solref="0.004 1" solimp="0.95 0.99 0.001"/>
  </default>
</default>
<worldbody>
  <light name="top" directional="true" pos="0 0 3" dir="0 0 -1" diffuse="0.6 0.6 0.6" castshadow="false"/>
  <geom name="floor" class="world" type="box" size="3 3 0.05" pos="0 0 -0.8" material="floor"/>
  <geom name="table" class="world" type="box" size="0.75 0.8 0.02" pos="0.35 0 -0.02" material="table"/>
  <camera name="front" pos="{_fmt(FRONT_CAMERA_POS)}" xyaxes="{front_xyaxes}" fovy="45"/>
  <body name="link0">
    <geom type="cylinder" size="0.08 0.1" pos="0 0 0.1"/>
    <geom type="box" size="0.12 0.1 0.005" pos="-0.04 0 0.005" material="joint"/>
{chain}  </body>
{task_xml}
</worldbody>
<tendon>
  <fixed name="gripper">
    <joint joint="{FINGER_JOINTS[0]}" coef="1"/>
    <joint joint="{FINGER_JOINTS[1]}" coef="1"/>
  </fixed>
</tendon>
<equality>
  <joint joint1="{FINGER_JOINTS[0]}" joint2="{FINGER_JOINTS[1]}" solref="0.005 1"/>
</equality>
<actuator>
{motors}<position name="gripper" tendon="gripper" kp="2000" kv="40" ctrlrange="0 {GRIPPER_MAX_WIDTH}"
    forcerange="{-GRIPPER_FORCE_LIMIT} {GRIPPER_FORCE_LIMIT}"/>
</actuator>
<sensor>
  <force name="ft_force" site="ft"/>
  <torque name="ft_torque" site="ft"/>
</sensor>
</mujoco>
"""
