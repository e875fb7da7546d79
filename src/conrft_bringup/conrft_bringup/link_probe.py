"""The robot's and the learner's traffic without their computation, for measuring a network link.

    python -m conrft_bringup.link_probe robot   [--rate 10] [--image-size 64] [--episode-steps 20] [--outbox DIR]
    python -m conrft_bringup.link_probe learner [--weights-every 1.0] [--weights-bytes 100000] [--journal DIR]

`robot` publishes a Transition (two camera images) per step on /conrft/transitions and takes PolicyWeights;
`learner` the reverse; both with the QoS of the policy node. Each event is one JSON line on stdout with its
wall-clock time `t`: `matched` (the peer's endpoint discovered, count > 0) and `unmatched` (count back to 0, e.g.
the peer's lease expired), `sent` / `received` per transition, `weights` per version adopted or published
(`publishing` just before the learner publishes it).
With `--outbox` the robot keeps its transitions in the policy node's outbox (conrft_policy.outbox_link; `resent`
per episode); with `--journal` the learner takes them in as the learner node does (journal, acknowledgements,
duplicates dropped; `journaled` per new step).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import rclpy
from rclpy.node import Node
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image

from conrft_core.data.intake import Intake
from conrft_core.data.journal import RobotJournals
from conrft_core.data.outbox import Outbox
from conrft_core.data.transitions import EpisodeAssembler
from conrft_interfaces.msg import EpisodeAck, PolicyWeights, Transition
from conrft_policy.link_qos import ACKS_QOS, TRANSITIONS_QOS, WEIGHTS_QOS
from conrft_policy.outbox_link import ACKS_TOPIC, RESEND_TOPIC, OutboxLink


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
        self.outbox = None if not args.outbox else OutboxLink(self, Outbox(args.outbox, 10**9, args.resend_after),
                                                              on_resend=lambda eid: emit("resent", episode=eid))
        self.create_timer(1.0 / args.rate, self.tick)

    def tick(self) -> None:
        self.matching.check()
        last = self.step == self.args.episode_steps - 1
        msg = Transition(episode_id=self.episode, step=self.step, camera_names=["front", "wrist"], images=self.images,
                         proprio=[0.0] * 19, action=[0.0] * 7, policy_action=[0.0] * 7, truncated=last,
                         final_images=self.images if last else [], final_proprio=[0.0] * 19 if last else [])
        msg.header.stamp = self.get_clock().now().to_msg()
        raw = serialize_message(msg)
        self.pub.publish(raw)
        if self.outbox is not None:
            self.outbox.store(raw, self.episode, last)
        emit("sent", episode=self.episode, step=self.step)
        self.episode, self.step = (self.episode + 1, 0) if last else (self.episode, self.step + 1)


class LearnerProbe(Node):
    def __init__(self, args):
        super().__init__("link_probe_learner")
        self.args, self.version = args, 0
        self.intake = None
        if args.journal:
            self.intake = Intake(RobotJournals(args.journal), EpisodeAssembler())
            self.acks = self.create_publisher(EpisodeAck, ACKS_TOPIC, ACKS_QOS)
        for topic in ("/conrft/transitions", RESEND_TOPIC):
            self.create_subscription(Transition, topic, self.receive, TRANSITIONS_QOS, raw=True)
        self.pub = self.create_publisher(PolicyWeights, "/conrft/policy_weights", WEIGHTS_QOS)
        self.matching = Matching(self.pub.get_subscription_count, "weights")
        self.create_timer(0.1, self.matching.check)
        self.create_timer(args.weights_every, self.publish_weights)

    def receive(self, raw: bytes) -> None:
        m = deserialize_message(raw, Transition)
        emit("received", episode=m.episode_id, step=m.step)
        if self.intake is not None:
            before = self.intake.journaled
            _, ack = self.intake.offer(m, raw)
            if self.intake.journaled > before:
                emit("journaled", episode=m.episode_id, step=m.step)
            if ack is not None:
                self.acks.publish(EpisodeAck(robot=ack[0][0], episode_id=ack[0][1], steps=ack[1]))

    def publish_weights(self) -> None:
        self.version += 1
        payload = bytes(self.args.weights_bytes)
        msg = PolicyWeights(version=self.version, format="safetensors", payload=payload,
                            sha256=hashlib.sha256(payload).hexdigest())
        emit("publishing", version=self.version)  # the latency counts from here: serialising a large one takes time
        self.pub.publish(msg)
        emit("weights", version=self.version)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="link_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=["robot", "learner"])
    parser.add_argument("--rate", type=float, default=10.0, help="transitions per second (robot)")
    parser.add_argument("--image-size", type=int, default=64, help="camera images are SIZE x SIZE RGB (robot)")
    parser.add_argument("--episode-steps", type=int, default=20, help="steps per episode (robot)")
    parser.add_argument("--weights-every", type=float, default=1.0, help="s between weight versions (learner)")
    parser.add_argument("--weights-bytes", type=int, default=100_000, help="payload size of a version (learner)")
    parser.add_argument("--outbox", help="keep transitions in an outbox in this folder until acknowledged (robot)")
    parser.add_argument("--resend-after", type=float, default=10.0, help="s before an unacknowledged episode is "
                        "resent (robot, --outbox)")
    parser.add_argument("--journal", help="journal and acknowledge transitions in this folder (learner)")
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
