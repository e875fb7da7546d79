"""The robot-state publisher as a process: fake franka_ros2 driver topics in, RobotState out."""
from pathlib import Path

import numpy as np
import pytest
import yaml
from geometry_msgs.msg import PoseStamped, WrenchStamped
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import JointState

from conrft_interfaces.msg import RobotState
from conrft_policy.ros_io import pose_arrays, twist_wrench

NODE = "conrft_policy.robot_state_publisher"
PARAMS = Path(__file__).resolve().parents[3] / "config" / "robot_state_publisher.yaml"
ARM = [f"fr3_joint{i}" for i in range(1, 8)]
POSE_TOPIC = "/franka_robot_state_broadcaster/current_pose"
VEL = np.array([0.1, -0.05, 0.02])  # m/s of the fake end effector
OMEGA = 0.5  # rad/s about the base z axis


class FakeFranka:
    """Publishes what franka_ros2 would: joint states (arm shuffled, fingers in a separate message), EE pose
    moving at VEL and turning at OMEGA, external wrench; every message stamped with the test node's clock."""

    def __init__(self, node, arm=ARM, wrench_topic="/franka_robot_state_broadcaster/external_wrench_in_base_frame"):
        self.node, self.arm = node, list(arm)
        self.joints = node.create_publisher(JointState, "/joint_states", 10)
        self.pose = node.create_publisher(PoseStamped, POSE_TOPIC, 10)
        self.wrench = node.create_publisher(WrenchStamped, wrench_topic, 10)
        self.t0 = None
        self.timer = node.create_timer(0.01, self.publish)

    def publish(self):
        now = self.node.get_clock().now()
        t = now.nanoseconds * 1e-9
        self.t0 = t if self.t0 is None else self.t0
        stamp = now.to_msg()
        order = self.arm[::-1]  # the driver's order is not the output order
        js = JointState(name=order, position=[0.1 * int(n[-1]) for n in order],
                        velocity=[0.01 * int(n[-1]) for n in order])
        js.header.stamp = stamp
        self.joints.publish(js)
        fingers = JointState(name=["fr3_finger_joint1", "fr3_finger_joint2"], position=[0.02, 0.015],
                             velocity=[0.0, 0.0])
        fingers.header.stamp = stamp
        self.joints.publish(fingers)
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = stamp, "fr3_link0"
        p = np.array([0.4, 0.0, 0.3]) + VEL * (t - self.t0)
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = map(float, p)
        x, y, z, w = Rotation.from_euler("xyz", [np.pi, 0.0, OMEGA * (t - self.t0)]).as_quat()
        o = pose.pose.orientation
        o.x, o.y, o.z, o.w = float(x), float(y), float(z), float(w)
        self.pose.publish(pose)
        wr = WrenchStamped()
        wr.header.stamp = stamp
        wr.wrench.force.z, wr.wrench.torque.x = -3.0, 0.25
        self.wrench.publish(wr)


def test_franka_driver_topics_to_robot_state(ros_process, ros_node):
    proc = ros_process(NODE, "--params-file", str(PARAMS))
    states = []
    ros_node.create_subscription(RobotState, "/conrft/robot_state", states.append, 50)
    fake = FakeFranka(ros_node)
    assert ros_node.spin_until(lambda: len(states) >= 30, 30), proc.output()

    st = states[-1]
    assert list(st.joint_names) == ARM  # the arm_joints order, not the driver's
    np.testing.assert_allclose(st.joint_positions, 0.1 * np.arange(1, 8))
    np.testing.assert_allclose(st.joint_velocities, 0.01 * np.arange(1, 8))
    assert abs(st.gripper_width - 0.035) < 1e-9  # fr3_finger_joint1 + fr3_finger_joint2
    assert st.header.frame_id == "fr3_link0"  # frame_id "" = the pose's frame
    assert (st.wrench.force.z, st.wrench.torque.x) == (-3.0, 0.25)
    # The pose passes through unchanged: one the fake published at some time t since it started.
    pos = st.ee_pose.position
    t = (pos.x - 0.4) / VEL[0]
    np.testing.assert_allclose([pos.y, pos.z], [VEL[1] * t, 0.3 + VEL[2] * t], atol=1e-9)
    o = st.ee_pose.orientation
    yaw = Rotation.from_quat([o.x, o.y, o.z, o.w]).as_euler("xyz")[2]
    assert abs(np.angle(np.exp(1j * (yaw - OMEGA * t)))) < 1e-6
    # Twist estimated from consecutive poses: signs and magnitudes of the fake motion.
    lin = np.array([[s.ee_twist.linear.x, s.ee_twist.linear.y, s.ee_twist.linear.z] for s in states[-20:]])
    ang = np.array([[s.ee_twist.angular.x, s.ee_twist.angular.y, s.ee_twist.angular.z] for s in states[-20:]])
    np.testing.assert_allclose(np.median(lin, axis=0), VEL, atol=0.01)
    np.testing.assert_allclose(np.median(ang, axis=0), [0.0, 0.0, OMEGA], atol=0.05)
    assert np.all(lin[:, 0] > 0) and np.all(lin[:, 1] < 0) and np.all(ang[:, 2] > 0)

    # Driver goes silent: inputs exceed max_age, nothing more is published and the log says why.
    fake.timer.cancel()
    ros_node.spin_until(lambda: False, 0.5)
    count = len(states)
    assert ros_node.spin_until(lambda: "s old (max_age 0.1 s)" in proc.output(), 10), proc.output()
    ros_node.spin_until(lambda: False, 0.5)
    assert len(states) == count
    assert proc.proc.poll() is None


def test_missing_arm_joint_is_reported(ros_process, ros_node):
    # Explicit parameters override the preset: wrench on another topic, no gripper.
    proc = ros_process(NODE, "-p", "wrench_topic:=/test/wrench", "-p", "gripper_joints:=['']")
    states = []
    ros_node.create_subscription(RobotState, "/conrft/robot_state", states.append, 10)
    FakeFranka(ros_node, arm=ARM[:6], wrench_topic="/test/wrench")  # fr3_joint7 never published
    assert ros_node.spin_until(lambda: "['fr3_joint7'] not in the joint states" in proc.output(), 30), proc.output()
    assert "fix parameter 'arm_joints'" in proc.output()
    assert "wrench /test/wrench" in proc.output() and "gripper none" in proc.output()
    assert states == []


def test_bad_parameters_exit_1(ros_process):
    custom = ros_process(NODE, "-p", "preset:=custom")
    assert custom.wait(timeout=30) == 1
    assert "robot_state_publisher: error: parameter 'pose_topic' is required with preset 'custom'" in custom.output()
    typo = ros_process(NODE, "-p", "max_agee:=0.2")
    assert typo.wait(timeout=30) == 1
    assert "unknown parameter 'max_agee'" in typo.output()


def test_parameter_file_keys_are_declared():
    from conrft_policy.robot_state_publisher import PARAMS as DECLARED

    params = yaml.safe_load(PARAMS.read_text())["robot_state_publisher"]["ros__parameters"]
    assert set(params) <= set(DECLARED)
    text = PARAMS.read_text()
    assert all(name in text for name in DECLARED)  # every parameter documented (preset-filled ones commented out)


def vector(st: RobotState) -> np.ndarray:
    """EE pose, twist and wrench as one array."""
    return np.concatenate([*pose_arrays(st.ee_pose), *twist_wrench(st)])


def test_sim_preset_rebuilds_the_simulators_robot_state(ros_process, ros_node):
    """The sim node publishes what a driver's broadcasters would; from them, preset sim must give the
    RobotState the simulator publishes itself (paired by the joints' stamp; the pose, twist and wrench are the
    latest of their own topics, so at most one state period apart: the arm is at rest)."""
    sim = ros_process("conrft_sim.sim_node", "--params-file", str(PARAMS.parent / "sim_node.yaml"),
                      "-p", "image_width:=32", "-p", "image_height:=32")
    proc = ros_process(NODE, "-p", "preset:=sim", "-p", "output_topic:=/rebuilt/robot_state",
                       "-p", "use_sim_time:=true", "-p", "max_age:=0.5")
    truth, rebuilt = {}, []
    ros_node.create_subscription(RobotState, "/conrft/robot_state",
                                 lambda m: truth.__setitem__((m.header.stamp.sec, m.header.stamp.nanosec), m), 100)
    ros_node.create_subscription(RobotState, "/rebuilt/robot_state", rebuilt.append, 100)
    key = lambda m: (m.header.stamp.sec, m.header.stamp.nanosec)  # noqa: E731
    assert ros_node.spin_until(lambda: sum(key(m) in truth for m in rebuilt) >= 20, 40), proc.output() + sim.output()
    pairs = [(truth[key(m)], m) for m in rebuilt if key(m) in truth]
    for want, got in pairs:
        assert list(got.joint_names) == list(want.joint_names)
        np.testing.assert_allclose(got.joint_positions, want.joint_positions, atol=1e-12)
        assert got.gripper_width == pytest.approx(want.gripper_width, abs=1e-12)
        np.testing.assert_allclose(vector(got), vector(want), atol=1e-4)
    assert pairs[-1][1].gripper_width > 0.01  # the gripper starts open: a real width, not zeros
