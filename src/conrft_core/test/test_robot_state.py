"""RobotState assembly without ROS: presets, joint selection, gripper width, twist estimation, staleness."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from conrft_core.config import ConfigError
from conrft_core.robot.robot_state import (
    PRESETS,
    JointCache,
    RobotStateError,
    TwistEstimator,
    resolve_config,
    stale_inputs,
    twist_between,
)

DECLARED = {  # what the node declares: placeholders that the preset fills unless set explicitly
    "preset": "franka", "joint_states_topic": "/joint_states", "pose_topic": "", "twist_topic": "",
    "wrench_topic": "", "gripper_joints": [""], "arm_joints": [""],
}


def wxyz(rot: Rotation) -> np.ndarray:
    return rot.as_quat(scalar_first=True)


def test_franka_preset_fills_everything_not_set():
    cfg = resolve_config(DECLARED, explicit=[])
    franka = PRESETS["franka"]
    assert cfg.pose_topic == franka["pose_topic"] == "/franka_robot_state_broadcaster/current_pose"
    assert cfg.wrench_topic == "/franka_robot_state_broadcaster/external_wrench_in_base_frame"
    assert cfg.twist_topic == "" and cfg.joint_states_topic == "/joint_states"
    assert cfg.arm_joints == [f"fr3_joint{i}" for i in range(1, 8)]
    assert cfg.gripper_joints == ["fr3_finger_joint1", "fr3_finger_joint2"]


def test_explicit_parameters_override_the_preset():
    params = {**DECLARED, "wrench_topic": "", "pose_topic": "/my/pose", "gripper_joints": [""]}
    cfg = resolve_config(params, explicit=["wrench_topic", "pose_topic", "gripper_joints"])
    assert cfg.wrench_topic == "" and cfg.pose_topic == "/my/pose" and cfg.gripper_joints == []
    assert cfg.arm_joints == PRESETS["franka"]["arm_joints"]  # not set: still the preset's


def test_custom_preset_requires_names():
    with pytest.raises(ConfigError, match="parameter 'pose_topic' is required with preset 'custom'"):
        resolve_config({**DECLARED, "preset": "custom"}, explicit=["preset"])
    with pytest.raises(ConfigError, match="parameter 'arm_joints' is required"):
        resolve_config({**DECLARED, "preset": "custom", "pose_topic": "/p"}, explicit=["preset", "pose_topic"])
    cfg = resolve_config({**DECLARED, "preset": "custom", "pose_topic": "/p", "arm_joints": ["a", "b"]},
                         explicit=["preset", "pose_topic", "arm_joints"])
    assert cfg.arm_joints == ["a", "b"] and cfg.gripper_joints == [] and cfg.wrench_topic == ""


def test_bad_preset_and_duplicate_joints():
    with pytest.raises(ConfigError, match="parameter 'preset' is 'ur5'; choose one of: franka, sim, custom"):
        resolve_config({**DECLARED, "preset": "ur5"}, explicit=["preset"])
    with pytest.raises(ConfigError, match=r"name joint\(s\) \['j1'\] more than once"):
        resolve_config({**DECLARED, "arm_joints": ["j1", "j2"], "gripper_joints": ["j1"]},
                       explicit=["arm_joints", "gripper_joints"])


def test_joint_cache_orders_merges_and_sums_gripper():
    cache = JointCache()
    arm = [f"fr3_joint{i}" for i in range(1, 8)]
    shuffled = arm[::-1]
    cache.update(shuffled, [float(n[-1]) for n in shuffled], [0.1 * float(n[-1]) for n in shuffled], 10.0)
    cache.update(["fr3_finger_joint1", "fr3_finger_joint2"], [0.02, 0.015], [], 10.5)  # a separate message
    pos, vel, stamp = cache.arm(arm)
    np.testing.assert_allclose(pos, np.arange(1, 8))
    np.testing.assert_allclose(vel, 0.1 * np.arange(1, 8))
    assert stamp == 10.0
    width, gstamp = cache.gripper_width(["fr3_finger_joint1", "fr3_finger_joint2"])
    assert width == pytest.approx(0.035) and gstamp == 10.5
    assert cache.missing_velocities(arm) == []
    assert cache.missing_velocities(["fr3_finger_joint1"]) == ["fr3_finger_joint1"]
    assert cache.gripper_width([]) == (0.0, None)
    cache.update(["fr3_joint3"], [3.5], [], 11.0)  # newer reading of one joint: oldest stamp is reported
    pos, vel, stamp = cache.arm(arm)
    assert pos[2] == 3.5 and vel[2] == 0.0 and stamp == 10.0


def test_joint_cache_errors_name_missing_joints():
    cache = JointCache()
    cache.update(["fr3_joint1", "fr3_joint2"], [0.0, 0.0], [0.0, 0.0], 1.0)
    with pytest.raises(RobotStateError, match=r"arm joint\(s\) \['fr3_joint3'\] not in the joint states \(joints "
                                               r"received: fr3_joint1, fr3_joint2\); fix parameter 'arm_joints'"):
        cache.arm(["fr3_joint1", "fr3_joint2", "fr3_joint3"])
    with pytest.raises(RobotStateError, match="gripper joint.*'gripper_joints'"):
        cache.gripper_width(["finger"])
    with pytest.raises(RobotStateError, match="equal lengths"):
        cache.update(["a", "b"], [0.0], [], 1.0)


def test_twist_between_signs_and_frame():
    r0 = Rotation.from_euler("xyz", [0.1, -0.2, 0.3])
    w = np.array([0.0, 0.0, 0.5])  # rad/s about the base z axis
    dt = 0.02
    r1 = Rotation.from_rotvec(w * dt) * r0
    p0 = np.array([0.4, 0.0, 0.3])
    p1 = p0 + np.array([0.1, -0.05, 0.0]) * dt
    tw = twist_between(p0, wxyz(r0), 5.0, p1, wxyz(r1), 5.0 + dt)
    np.testing.assert_allclose(tw[:3], [0.1, -0.05, 0.0], atol=1e-9)
    np.testing.assert_allclose(tw[3:], w, atol=1e-9)
    # q and -q are the same orientation: no spurious 2*pi rotation.
    tw = twist_between(p0, wxyz(r0), 5.0, p1, -wxyz(r1), 5.0 + dt)
    np.testing.assert_allclose(tw[3:], w, atol=1e-9)
    # Backwards in time is refused.
    with pytest.raises(RobotStateError, match="increasing stamps"):
        twist_between(p0, wxyz(r0), 5.0, p1, wxyz(r1), 5.0)


def test_twist_estimator_streams_and_ignores_old_poses():
    est = TwistEstimator()
    q = wxyz(Rotation.identity())
    est.update([0, 0, 0], q, 1.0)
    assert not est.ready and np.all(est.twist == 0)
    tw = est.update([0.0, 0.0, -0.01], q, 1.1)
    assert est.ready
    np.testing.assert_allclose(tw, [0, 0, -0.1, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(est.update([5.0, 5.0, 5.0], q, 1.05), tw)  # an older pose changes nothing
    with pytest.raises(RobotStateError, match="non-finite"):
        est.update([np.nan, 0, 0], q, 2.0)


def test_stale_inputs():
    assert stale_inputs({"joint states": 0.01, "pose": 0.05}, 0.1) == []
    reasons = stale_inputs({"joint states": None, "pose": 0.25, "wrench": -3.0}, 0.1)
    assert reasons == ["no joint states received yet", "pose is 0.250 s old (max_age 0.1 s)",
                       "wrench is stamped 3.000 s in the future (clock mismatch: use_sim_time?)"]
