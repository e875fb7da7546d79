"""The robot's and the learner's traffic without their computation, for measuring a network link.

    python -m conrft_bringup.link_probe robot   [--rate 10] [--image-size 64] [--episode-steps 20]
    python -m conrft_bringup.link_probe learner [--weights-every 1.0] [--weights-bytes 100000]

`robot` publishes a Transition (two camera images) per step on /conrft/transitions and takes PolicyWeights;
`learner` the reverse; both with the QoS of the policy node. Each event is one JSON line on stdout with its
wall-clock time `t`: `matched` (the peer's endpoint discovered, count > 0) and `unmatched` (count back to 0, e.g.
the peer's lease expired), `sent` / `received` per transition, `weights` per version adopted or published.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from conrft_interfaces.msg import PolicyWeights, Transition

# The policy node's (conrft_policy.policy_node); not imported from there, which would load torch for a probe.
TRANSITIONS_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_ALL)
WEIGHTS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


class Matching:
    """Logs when an endpoint's peer count goes from 0 to > 0 and back."""

    def __init__(self, count, what: str):
        self.count, self.what, self.matched = count, what, False

    def check(self) -> None:
        now = self.count() > 0
        if now != self.matched:
            emit("matched" if now else "unmatched", endpoint=self.what)
            self.matched = now


class RobotProbe(Node):
    def __init__(self, args):
        super().__init__("link_probe_robot")
        self.args, self.episode, self.step = args, 0, 0
        size = args.image_size
        self.images = [Image(height=size, width=size, encoding="rgb8", step=3 * size, data=bytes(3 * size * size))
                       for _ in ("front", "wrist")]
        self.pub = self.create_publisher(Transition, "/conrft/transitions", TRANSITIONS_QOS)
        self.create_subscription(PolicyWeights, "/conrft/policy_weights",
                                 lambda m: emit("weights", version=m.version), WEIGHTS_QOS)
        self.matching = Matching(self.pub.get_subscription_count, "transitions")
        self.create_timer(1.0 / args.rate, self.tick)

    def tick(self) -> None:
        self.matching.check()
        last = self.step == self.args.episode_steps - 1
        msg = Transition(episode_id=self.episode, step=self.step, camera_names=["front", "wrist"], images=self.images,
                         proprio=[0.0] * 19, action=[0.0] * 7, policy_action=[0.0] * 7, truncated=last,
                         final_images=self.images if last else [], final_proprio=[0.0] * 19 if last else [])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub.publish(msg)
        emit("sent", episode=self.episode, step=self.step)
        self.episode, self.step = (self.episode + 1, 0) if last else (self.episode, self.step + 1)


class LearnerProbe(Node):
    def __init__(self, args):
        super().__init__("link_probe_learner")
        self.args, self.version = args, 0
        self.create_subscription(Transition, "/conrft/transitions",
                                 lambda m: emit("received", episode=m.episode_id, step=m.step), TRANSITIONS_QOS)
        self.pub = self.create_publisher(PolicyWeights, "/conrft/policy_weights", WEIGHTS_QOS)
        self.matching = Matching(self.pub.get_subscription_count, "weights")
        self.create_timer(0.1, self.matching.check)
        self.create_timer(args.weights_every, self.publish_weights)

    def publish_weights(self) -> None:
        self.version += 1
        payload = bytes(self.args.weights_bytes)
        self.pub.publish(PolicyWeights(version=self.version, format="safetensors", payload=payload,
                                       sha256=hashlib.sha256(payload).hexdigest()))
        emit("weights", version=self.version)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="link_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=["robot", "learner"])
    parser.add_argument("--rate", type=float, default=10.0, help="transitions per second (robot)")
    parser.add_argument("--image-size", type=int, default=64, help="camera images are SIZE x SIZE RGB (robot)")
    parser.add_argument("--episode-steps", type=int, default=20, help="steps per episode (robot)")
    parser.add_argument("--weights-every", type=float, default=1.0, help="s between weight versions (learner)")
    parser.add_argument("--weights-bytes", type=int, default=100_000, help="payload size of a version (learner)")
    args, ros_args = parser.parse_known_args(argv)
    rclpy.init(args=[sys.argv[0], *ros_args])
    node = (RobotProbe if args.role == "robot" else LearnerProbe)(args)
    emit("started", role=args.role)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
