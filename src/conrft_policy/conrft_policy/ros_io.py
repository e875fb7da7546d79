"""Conversions between ROS messages and the numpy conventions of conrft_core (quaternions wxyz there, xyzw in
ROS), and the process shell of a node, shared by the ConRFT nodes. No logic that could be tested without
messages."""
from __future__ import annotations

import sys

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions
from rclpy.time import Time as RclpyTime

from conrft_core.robot.signals import SPIN_PERIOD, interrupt_main_thread, stop_requested


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


def run_node(make_node, name: str, args=None, make_executor=SingleThreadedExecutor, spin_once=None) -> int:
    """A node's process: init, build (a bad parameter or missing file is one line on stderr and exit 1), spin
    until Ctrl-C, SIGTERM, shutdown or a callback's SystemExit (its code is returned), then destroy the node
    (which stops the threads it owns) while the context is still up, and shut down (conrft_core.robot.signals).
    `make_executor` is called after init (executors need the context); `spin_once(node, executor)`, if given,
    is one turn of the loop instead of the executor's spin_once (it must return within SPIN_PERIOD or so)."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    interrupt_main_thread()
    executor = make_executor()  # before the node, so a Ctrl-C from its first log line on reaches the loop below
    try:
        node = make_node()
    except (ValueError, FileNotFoundError) as exc:  # ConfigError, CheckpointError, ... are ValueErrors
        print(f"{name}: error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    code = 0
    try:
        executor.add_node(node)
        while rclpy.ok() and not stop_requested():
            if spin_once is None:
                executor.spin_once(timeout_sec=SPIN_PERIOD)
            else:
                spin_once(node, executor)
    except SystemExit as exc:
        code = int(exc.code or 0)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return code
