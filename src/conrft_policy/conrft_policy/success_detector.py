"""Success detector node: a learned classifier on the camera images publishes the policy node's success flag.

Every `rate` Hz (on the ROS clock: sim time under `use_sim_time`) it takes the newest image of every camera
(the same topics as the policy node), and when a new frame has arrived runs the detector of
`conrft success-detector train` on it, then publishes std_msgs/Bool on `success_topic`: True once
`consecutive_frames` frames in a row reached the probability threshold and met the optional conditions on
/conrft/robot_state (gripper open or closed, end-effector height), False otherwise. Images older than
`max_obs_age` publish False and restart the count. The probability goes to `~/probability` (Float64) for
tuning the threshold. Point the policy node's `success_topic` here instead of the sim's /sim/success.
The model and the decision rule live in conrft_core.learning.success and .success_gate.

    ros2 run conrft_policy success_detector --ros-args --params-file config/success_detector.yaml \\
        -p model:=out/success_detector.safetensors
"""
from __future__ import annotations

import sys

from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Float64

from conrft_core.config import ConfigError, from_dict
from conrft_core.data.transitions import image_to_array
from conrft_core.learning.policy import resolve_device
from conrft_core.learning.success import load_detector
from conrft_core.learning.success_gate import GateConfig, SuccessGate
from conrft_core.robot.node_params import declare_all
from conrft_interfaces.msg import RobotState
from conrft_policy.ros_io import age, run_node

GATE_KEYS = ("threshold", "consecutive_frames", "require_gripper", "gripper_open_width", "ee_height_range")
PARAMS = {
    "model": "",  # required: success_detector.safetensors from `conrft success-detector train`
    "cameras": ["front", "wrist"],  # must be the cameras the model was trained on
    "image_topic_format": "/camera/{}/image_raw",
    "state_topic": "/conrft/robot_state",
    "success_topic": "/conrft/success",  # std_msgs/Bool: the policy node's success_topic
    "rate": 10.0,  # Hz: at least the camera rate, so that no frame is skipped
    "threshold": -1.0,  # probability per frame; < 0 = the threshold chosen on validation, stored in the model
    "consecutive_frames": 2,
    "require_gripper": "",  # "", "open" or "closed"
    "gripper_open_width": 0.04,  # m: open is at least this wide
    "ee_height_range": [0.0, 0.0],  # m, [min, max] end-effector z in the base frame; [0, 0] = no condition
    "max_obs_age": 0.5,  # s
    "device": "cpu",
}


class SuccessDetectorNode(Node):
    def __init__(self):
        super().__init__("success_detector")
        p = self.params = declare_all(self, PARAMS)
        if not p["model"]:
            raise ConfigError("parameter 'model' is required (a file from `conrft success-detector train`)")
        if p["rate"] <= 0 or p["max_obs_age"] <= 0:
            raise ConfigError("parameters 'rate' and 'max_obs_age' must be > 0")
        self.detector = load_detector(p["model"], resolve_device(p["device"]))
        topic = p["image_topic_format"].format
        for cam in p["cameras"]:
            if cam not in self.detector.cameras:
                raise ConfigError(f"camera '{cam}' ({topic(cam)}) is not one the model {p['model']} was trained on "
                                  f"({', '.join(self.detector.cameras)})")
        for cam in self.detector.cameras:
            if cam not in p["cameras"]:
                raise ConfigError(f"the model {p['model']} needs camera '{cam}' ({topic(cam)}); add it to 'cameras'")
        gate = {k: tuple(p[k]) if k == "ee_height_range" else p[k] for k in GATE_KEYS}
        self.gate = SuccessGate(from_dict(GateConfig, gate, "success_detector"), self.detector.threshold)
        self.images: dict[str, Image] = {}
        self.state: RobotState | None = None
        self.last_frame: list | None = None  # the stamps of the frame evaluated last
        self.warned: set[str] = set()
        for cam in self.detector.cameras:
            self.create_subscription(Image, topic(cam), lambda m, c=cam: self.images.__setitem__(c, m), 2)
        self.create_subscription(RobotState, p["state_topic"], lambda m: setattr(self, "state", m), 10)
        self.pub_success = self.create_publisher(Bool, p["success_topic"], 10)
        self.pub_probability = self.create_publisher(Float64, "~/probability", 10)
        self.create_timer(1.0 / p["rate"], self._tick)
        self.get_logger().info(f"success detector ready: {p['model']} on {', '.join(map(topic, self.detector.cameras))}"
                               f", threshold {self.gate.threshold:.3f} for {p['consecutive_frames']} frames -> "
                               f"{p['success_topic']}")

    def _warn(self, text: str) -> None:
        if text not in self.warned:  # once per cause: a wrong camera would otherwise log at camera rate
            self.warned.add(text)
            self.get_logger().error(text)

    def _tick(self) -> None:
        cams, topic = self.detector.cameras, self.params["image_topic_format"].format
        if any(c not in self.images for c in cams):
            return  # cameras not up yet: say nothing rather than "no success"
        stale = [c for c in cams if age(self, self.images[c].header.stamp) > self.params["max_obs_age"]]
        if stale:
            self._warn(f"{topic(stale[0])} is older than max_obs_age: publishing False")
            return self._no_success()
        frame = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in (self.images[c] for c in cams)]
        if self.last_frame is not None and any(new == old for new, old in zip(frame, self.last_frame)):
            return  # the count is in frames: wait until every camera has a new one
        self.last_frame = frame
        try:
            arrays = {c: image_to_array(self.images[c]) for c in cams}
        except ValueError as exc:  # TransitionError: an encoding other than rgb8 / bgr8
            self._warn(f"{exc} ({', '.join(map(topic, cams))}): publishing False")
            return self._no_success()
        (h, w), wrong = self.detector.image_size, [c for c in cams if arrays[c].shape[:2] != self.detector.image_size]
        if wrong:
            self._warn(f"{topic(wrong[0])}: images are {arrays[wrong[0]].shape[1]}x{arrays[wrong[0]].shape[0]}, the "
                       f"model {self.params['model']} was trained on {w}x{h}: publishing False")
            return self._no_success()
        probability = self.detector.probability(arrays)
        self.pub_probability.publish(Float64(data=probability))
        state = self.state
        fresh = state is not None and age(self, state.header.stamp) <= self.params["max_obs_age"]
        width, z = (state.gripper_width, state.ee_pose.position.z) if fresh else (None, None)
        success = self.gate.update(probability, width, z)
        if success and self.gate.run == self.gate.cfg.consecutive_frames:
            self.get_logger().info(f"success detected: probability {probability:.3f}, {self.gate.run} frames")
        self.pub_success.publish(Bool(data=success))

    def _no_success(self) -> None:
        self.gate.reset()
        self.pub_success.publish(Bool(data=False))


def main(args=None) -> int:
    return run_node(SuccessDetectorNode, "success_detector", args)


if __name__ == "__main__":
    sys.exit(main())
