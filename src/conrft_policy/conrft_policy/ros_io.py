"""Conversions between ROS messages and the numpy conventions of conrft_core (quaternions wxyz there, xyzw in
ROS), shared by the ConRFT nodes. Only conversions: no logic that could be tested without messages."""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from rclpy.time import Time as RclpyTime


def stamp_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def age(node, stamp: Time) -> float:
    """Seconds between the node's clock (sim time with use_sim_time) and a header stamp."""
    return (node.get_clock().now() - RclpyTime.from_msg(stamp, clock_type=node.get_clock().clock_type)).nanoseconds * 1e-9


def pose_arrays(pose) -> tuple[np.ndarray, np.ndarray]:
    """geometry_msgs/Pose -> (position (3,), quaternion wxyz (4,))."""
    p, o = pose.position, pose.orientation
    return np.array([p.x, p.y, p.z]), np.array([o.w, o.x, o.y, o.z])


def pose_stamped(pos, quat_wxyz, frame_id: str, stamp: Time) -> PoseStamped:
    msg = PoseStamped()
    msg.header.frame_id, msg.header.stamp = frame_id, stamp
    p, o = msg.pose.position, msg.pose.orientation
    p.x, p.y, p.z = map(float, pos)
    o.w, o.x, o.y, o.z = map(float, quat_wxyz)
    return msg


def vec3(v) -> np.ndarray:
    return np.array([v.x, v.y, v.z])


def twist_wrench(state) -> tuple[np.ndarray, np.ndarray]:
    """RobotState -> (twist (6,) linear+angular, wrench (6,) force+torque)."""
    return (np.concatenate([vec3(state.ee_twist.linear), vec3(state.ee_twist.angular)]),
            np.concatenate([vec3(state.wrench.force), vec3(state.wrench.torque)]))
