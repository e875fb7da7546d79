"""The outbox's ROS side: which of the learner's acknowledgements delete an episode from a robot's outbox."""
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor

from conrft_core.data.outbox import Outbox
from conrft_interfaces.msg import EpisodeAck
from conrft_policy.link_qos import ACKS_QOS
from conrft_policy.outbox_link import ACKS_TOPIC, OutboxLink


def test_only_acks_for_this_node_or_an_unknown_sender_delete_its_episodes(tmp_path):
    """Two robots configured with one name can number their episodes alike: an acknowledgement of the other
    node's episode 7 (same robot name, same id, same length) must not delete this node's episode 7."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        node = rclpy.create_node("policy", namespace="robot_2", context=ctx)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        outbox = Outbox(tmp_path / "outbox", 10**9, 10.0)
        for eid in (7, 8, 9):
            for step in range(3):
                outbox.append(eid, b"transition", last=step == 2)
        OutboxLink(node, outbox, robot="robot_1")
        acks = node.create_publisher(EpisodeAck, ACKS_TOPIC, ACKS_QOS)
        for eid, sender in ((7, "/robot_1/policy"), (8, "/robot_2/policy"), (9, "")):
            acks.publish(EpisodeAck(robot="robot_1", episode_id=eid, steps=3, sender=sender))
        end = time.monotonic() + 10
        while 9 in outbox.steps and time.monotonic() < end:  # the acks come in order: 9 is the last
            executor.spin_once(timeout_sec=0.05)
        assert outbox.steps == {7: 3}  # the other node's acknowledgement left episode 7; its own and "" deleted
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
