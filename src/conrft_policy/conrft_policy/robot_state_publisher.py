"""Robot-state publisher: a real robot driver's topics -> conrft_interfaces/RobotState at `rate` Hz.

Inputs (names from `preset`, each overridable): sensor_msgs/JointState on `joint_states_topic` (arm and gripper
finger joints, in one message or several), the end-effector geometry_msgs/PoseStamped on `pose_topic`,
optionally geometry_msgs/TwistStamped on `twist_topic` ("" = estimated from consecutive poses) and
geometry_msgs/WrenchStamped on `wrench_topic` ("" = zeros). Output: RobotState on `output_topic` with the arm
joints in `arm_joints` order and the gripper width = sum of the `gripper_joints` positions.

Nothing is published while an input is missing or older than `max_age` (the reason is logged, throttled): the
policy node then sees a stale state and stops the robot. The simulator publishes RobotState itself; this node is
for real robots. Assembly logic (presets, joint selection, twist estimation) lives in conrft_core.robot.robot_state.
"""
from __future__ import annotations

import sys

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState

from conrft_core.config import ConfigError
from conrft_core.robot.node_params import declare_all
from conrft_core.robot.robot_state import JointCache, RobotStateError, TwistEstimator, resolve_config, stale_inputs
from conrft_interfaces.msg import RobotState
from conrft_policy.ros_io import age, pose_arrays, run_node, stamp_seconds

PARAMS = {
    "preset": "franka",  # franka (franka_ros2 names) | sim (conrft_sim) | custom; set parameters override it
    "joint_states_topic": "/joint_states",  # sensor_msgs/JointState
    "pose_topic": "",  # geometry_msgs/PoseStamped, EE pose in the base frame
    "twist_topic": "",  # geometry_msgs/TwistStamped; "" = estimate from consecutive poses
    "wrench_topic": "",  # geometry_msgs/WrenchStamped; "" = zeros
    "gripper_joints": [""],  # finger joint names whose positions sum to the opening width; [] = no gripper
    "arm_joints": [""],  # the arm's joint names, in output order
    "frame_id": "",  # base frame; "" = the pose's frame. Poses in another frame are refused (no tf here)
    "rate": 100.0,  # Hz
    "output_topic": "/conrft/robot_state",
    "max_age": 0.1,  # s: an input older than this stops publishing
}


class RobotStatePublisher(Node):
    def __init__(self):
        super().__init__("robot_state_publisher")
        p = self.params = declare_all(self, PARAMS)
        self.cfg = resolve_config(p, explicit=getattr(self, "_parameter_overrides", {}).keys())
        if not p["rate"] > 0 or not p["max_age"] > 0:
            raise ConfigError(f"parameters 'rate' ({p['rate']}) and 'max_age' ({p['max_age']}) must be > 0")
        self.joints = JointCache()
        self.estimator = TwistEstimator() if not self.cfg.twist_topic else None
        self.pose: PoseStamped | None = None
        self.twist: TwistStamped | None = None
        self.wrench: WrenchStamped | None = None
        self.warned_velocity = False
        c = self.cfg
        self.create_subscription(JointState, c.joint_states_topic, self._on_joints, 10)
        self.create_subscription(PoseStamped, c.pose_topic, self._on_pose, 10)
        if c.twist_topic:
            self.create_subscription(TwistStamped, c.twist_topic, lambda m: setattr(self, "twist", m), 10)
        if c.wrench_topic:
            self.create_subscription(WrenchStamped, c.wrench_topic, lambda m: setattr(self, "wrench", m), 10)
        self.pub = self.create_publisher(RobotState, p["output_topic"], 10)
        self.create_timer(1.0 / p["rate"], self._tick)
        self.get_logger().info(
            f"robot state ({p['preset']} preset): joints {c.joint_states_topic} (arm {c.arm_joints}, gripper "
            f"{c.gripper_joints or 'none'}), pose {c.pose_topic}, twist {c.twist_topic or 'estimated from poses'}, "
            f"wrench {c.wrench_topic or 'zeros'} -> {p['output_topic']} at {p['rate']} Hz")

    # --- inputs ---------------------------------------------------------------------------------------------
    def _on_joints(self, msg: JointState) -> None:
        try:
            self.joints.update(list(msg.name), list(msg.position), list(msg.velocity), stamp_seconds(msg.header.stamp))
        except RobotStateError as exc:
            self.get_logger().warning(f"joint state dropped: {exc}", throttle_duration_sec=1.0)

    def _on_pose(self, msg: PoseStamped) -> None:
        frame = self.params["frame_id"]
        if frame and msg.header.frame_id and msg.header.frame_id != frame:
            self.get_logger().warning(f"pose on {self.cfg.pose_topic} is in frame '{msg.header.frame_id}', not "
                                      f"'{frame}' (parameter frame_id): refused", throttle_duration_sec=1.0)
            return
        if self.estimator is not None:
            try:
                self.estimator.update(*pose_arrays(msg.pose), stamp_seconds(msg.header.stamp))
            except RobotStateError as exc:
                self.get_logger().warning(f"pose refused: {exc}", throttle_duration_sec=1.0)
                return
        self.pose = msg

    # --- output ---------------------------------------------------------------------------------------------
    def _tick(self) -> None:
        c = self.cfg
        try:
            q, qd, joint_stamp = self.joints.arm(c.arm_joints)
            width, gripper_stamp = self.joints.gripper_width(c.gripper_joints)
        except RobotStateError as exc:
            if self.joints.position:  # joint states arrive, but not with the joints we need
                self.get_logger().warning(f"not publishing: {exc}", throttle_duration_sec=1.0)
            else:
                self.get_logger().warning(f"not publishing: no joint states received yet on {c.joint_states_topic}",
                                          throttle_duration_sec=1.0)
            return
        now = self.get_clock().now().nanoseconds * 1e-9
        ages = {"arm joint states": now - joint_stamp,
                "end-effector pose": age(self, self.pose.header.stamp) if self.pose else None}
        if gripper_stamp is not None:
            ages["gripper joint states"] = now - gripper_stamp
        if c.twist_topic:
            ages[f"twist ({c.twist_topic})"] = age(self, self.twist.header.stamp) if self.twist else None
        elif not self.estimator.ready:
            ages["twist estimate (needs two poses)"] = None
        if c.wrench_topic:
            ages[f"wrench ({c.wrench_topic})"] = age(self, self.wrench.header.stamp) if self.wrench else None
        reasons = stale_inputs(ages, self.params["max_age"])
        if reasons:
            self.get_logger().warning(f"not publishing {self.params['output_topic']}: {'; '.join(reasons)}",
                                      throttle_duration_sec=1.0)
            return
        if not self.warned_velocity and self.joints.missing_velocities(c.arm_joints):
            self.warned_velocity = True
            self.get_logger().warning("joint states carry no velocities; publishing zero joint velocities")
        self.pub.publish(self._state(q, qd, width, joint_stamp))

    def _state(self, q: np.ndarray, qd: np.ndarray, width: float, joint_stamp: float) -> RobotState:
        msg = RobotState(joint_names=list(self.cfg.arm_joints), joint_positions=q.tolist(),
                         joint_velocities=qd.tolist(), gripper_width=float(width))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(round(joint_stamp * 1e9)), 1_000_000_000)
        msg.header.frame_id = self.params["frame_id"] or self.pose.header.frame_id
        msg.ee_pose = self.pose.pose
        if self.estimator is not None:
            tw = self.estimator.twist
            for vec, vals in ((msg.ee_twist.linear, tw[:3]), (msg.ee_twist.angular, tw[3:])):
                vec.x, vec.y, vec.z = map(float, vals)
        else:
            msg.ee_twist = self.twist.twist
        if self.wrench is not None:
            msg.wrench = self.wrench.wrench
        return msg


def main(args=None) -> int:
    return run_node(RobotStatePublisher, "robot_state_publisher", args)


if __name__ == "__main__":
    sys.exit(main())
