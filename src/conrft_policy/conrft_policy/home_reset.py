"""Home reset: the ResetEpisode service of a real robot (the policy node calls it between episodes).

On a request it opens the gripper, drives the controller's target from the measured end-effector pose up,
across and down to the home pose (shifted on x/y by the request's seed when `random_xy` > 0), at most `speed`
m/s, every target inside the safety box, and answers success once the measured pose is within tolerance of
home, or failure (with the distance left) after `settle_timeout`. It refuses to move on a stale or missing
robot state. Objects are not reset: on a real cell a person (or your own script behind this service) puts them
back. The path logic lives in conrft_core.robot.homing.

    ros2 run conrft_policy home_reset --ros-args --params-file config/home_reset.yaml
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import Float64

from conrft_core.config import ConfigError
from conrft_core.data.episode import first_episode_id
from conrft_core.robot.homing import HomingConfig, arrived, home_for_seed, pose_error, waypoints
from conrft_core.robot.node_params import declare_all
from conrft_core.robot.spaces import SafetyBox
from conrft_interfaces.msg import RobotState
from conrft_interfaces.srv import ResetEpisode
from conrft_policy.ros_io import age, pose_arrays, pose_stamped, run_node

PARAMS = {
    "service": "/conrft/reset_episode",
    "state_topic": "/conrft/robot_state",
    "target_topic": "/cartesian_impedance_controller/target_frame",  # geometry_msgs/PoseStamped
    "gripper_topic": "/conrft/gripper_width",  # std_msgs/Float64, metres
    "frame_id": "base",
    "home_position": [0.5, 0.0, 0.25],  # m, base frame: MEASURE YOURS
    "home_orientation": [0.0, 1.0, 0.0, 0.0],  # w, x, y, z (gripper pointing down)
    "random_xy": 0.0,  # m: home shifted on x/y per episode seed
    "lift": 0.05,  # m raised before moving across
    "speed": 0.05,  # m/s of the target
    "angular_speed": 0.5,  # rad/s of the target
    "rate": 50.0,  # Hz of targets while moving
    "position_tolerance": 0.01,  # m
    "angle_tolerance": 0.05,  # rad
    "settle_timeout": 5.0,  # s after the last waypoint to come within tolerance
    "gripper_open_width": 0.08,  # m
    "max_state_age": 0.5,  # s: an older robot state refuses the reset
    "safety_box_low": [0.35, -0.15, 0.05],  # m, base frame: the policy node's box
    "safety_box_high": [0.65, 0.15, 0.35],
}


class HomeReset(Node):
    def __init__(self):
        super().__init__("home_reset")
        p = self.params = declare_all(self, PARAMS)
        try:
            self.box = SafetyBox(tuple(p["safety_box_low"]), tuple(p["safety_box_high"]))
            self.cfg = HomingConfig(tuple(p["home_position"]), tuple(p["home_orientation"]), p["random_xy"],
                                    p["lift"], p["speed"], p["angular_speed"], p["position_tolerance"],
                                    p["angle_tolerance"])
            self.cfg.check_inside(self.box)
        except ValueError as exc:
            raise ConfigError(f"{exc} (parameters of home_reset)") from None
        for name in ("rate", "settle_timeout", "gripper_open_width", "max_state_age"):
            if not p[name] > 0:
                raise ConfigError(f"parameter '{name}' must be > 0, got {p[name]}")
        self.state: RobotState | None = None
        self.episode_id = first_episode_id()
        self.busy = threading.Lock()
        self.create_subscription(RobotState, p["state_topic"], self._on_state, 10)
        self.pub_target = self.create_publisher(PoseStamped, p["target_topic"], 10)
        self.pub_gripper = self.create_publisher(Float64, p["gripper_topic"], 10)
        self.create_service(ResetEpisode, p["service"], self._on_reset, callback_group=ReentrantCallbackGroup())
        self.get_logger().info(f"home reset ready on {p['service']}: home {p['home_position']}, "
                               f"targets on {p['target_topic']}")

    def _on_state(self, msg: RobotState) -> None:
        if self.state is None:
            self.get_logger().info(f"robot state received on {self.params['state_topic']}")
        self.state = msg

    def _measured(self) -> tuple[np.ndarray, np.ndarray] | None:
        s = self.state
        if s is None or age(self, s.header.stamp) > self.params["max_state_age"]:
            return None
        return pose_arrays(s.ee_pose)

    def _pace(self, tick: float) -> float:
        """Sleep until one period after `tick` (deadlines, not sleeps, so a late wake-up does not slow the path)."""
        tick += 1.0 / self.params["rate"]
        time.sleep(max(0.0, tick - time.monotonic()))
        return tick

    def _send(self, pos, quat) -> None:
        self.pub_target.publish(pose_stamped(pos, quat, self.params["frame_id"], self.get_clock().now().to_msg()))

    def _on_reset(self, req: ResetEpisode.Request, res: ResetEpisode.Response) -> ResetEpisode.Response:
        if not self.busy.acquire(blocking=False):
            res.success, res.message = False, "a reset is already running"
        else:
            try:
                self._home(req, res)
            finally:
                self.busy.release()
        if res.success:  # rclpy: one severity per call site
            self.get_logger().info(f"reset done: {res.message}")
        else:
            self.get_logger().warning(f"reset failed: {res.message}")
        return res

    def _home(self, req: ResetEpisode.Request, res: ResetEpisode.Response) -> None:
        p = self.params
        measured = self._measured()
        if measured is None:
            last = "none received" if self.state is None else \
                f"the last is {age(self, self.state.header.stamp):.2f} s old"
            res.success, res.message = False, (f"no robot state on {p['state_topic']} newer than "
                                               f"{p['max_state_age']} s ({last}): not moving")
            return
        if self.pub_target.get_subscription_count() == 0:
            res.success, res.message = False, f"nothing subscribes to {p['target_topic']}: not moving"
            return
        if req.options:
            self.get_logger().info(f"reset options {list(req.options)} have no meaning on a real robot; ignored")
        goal_pos, goal_quat = home_for_seed(self.cfg, int(req.seed))
        self.pub_gripper.publish(Float64(data=float(p["gripper_open_width"])))
        start = tick = time.monotonic()
        for pos, quat in zip(*waypoints(*measured, goal_pos, goal_quat, self.cfg, self.box, 1.0 / p["rate"])):
            if self._measured() is None:  # the controller holds the last target
                res.success, res.message = False, f"robot state on {p['state_topic']} went stale: stopped"
                return
            self._send(pos, quat)
            tick = self._pace(tick)
        deadline = time.monotonic() + p["settle_timeout"]
        while time.monotonic() < deadline:
            measured = self._measured()
            if measured is not None and arrived(*measured, goal_pos, goal_quat, self.cfg):
                self.episode_id += 1
                res.success, res.episode_id = True, self.episode_id
                res.message = f"home {np.round(goal_pos, 3).tolist()} in {time.monotonic() - start:.1f} s"
                return
            self._send(goal_pos, goal_quat)
            tick = self._pace(tick)
        left = "no fresh robot state" if measured is None else \
            "%.3f m, %.3f rad away" % pose_error(*measured, goal_pos, goal_quat)
        res.success, res.message = False, f"home not reached within settle_timeout {p['settle_timeout']} s: {left}"


def main(args=None) -> int:
    # Two threads: the state keeps arriving while a reset runs in the service callback.
    return run_node(HomeReset, "home_reset", args, lambda: MultiThreadedExecutor(num_threads=2))


if __name__ == "__main__":
    sys.exit(main())
