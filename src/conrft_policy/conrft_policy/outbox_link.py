"""The ROS side of a robot's outbox (conrft_core.data.outbox), for the policy node and the link probe: stores
each published transition, deletes what the learner acknowledges and resends the rest. No torch."""
from __future__ import annotations

from rclpy.clock import Clock, ClockType
from rclpy.event_handler import PublisherEventCallbacks

from conrft_core.data.outbox import Outbox
from conrft_interfaces.msg import EpisodeAck, Transition
from conrft_policy.link_qos import ACKS_QOS, TRANSITIONS_QOS

RESEND_TOPIC = "/conrft/transitions_resent"  # not the live topic: the scripted human answers each live transition
ACKS_TOPIC = "/conrft/episode_acks"
RESEND_BYTES_PER_S = 10_000_000  # a resend burst shares the link (and the writer's memory) with the live stream


class OutboxLink:
    def __init__(self, node, outbox: Outbox, robot: str = "", on_resend=None):
        self.node, self.outbox, self.on_resend = node, outbox, on_resend
        self.matched_at = float("-inf")  # outbox clock when a reader last matched the resend writer
        self.pub = node.create_publisher(Transition, RESEND_TOPIC, TRANSITIONS_QOS,
                                         event_callbacks=PublisherEventCallbacks(matched=self._on_matched))
        # The learner acknowledges every robot's episodes on one topic: only this robot's, sent by this node (or by
        # a sender the learner did not know), concern its outbox.
        me = node.get_fully_qualified_name()
        node.create_subscription(EpisodeAck, ACKS_TOPIC, lambda m: m.robot == robot and m.sender in ("", me)
                                 and outbox.ack(m.episode_id, m.steps), ACKS_QOS)
        node.create_timer(1.0, self.resend, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _on_matched(self, info) -> None:
        if info.current_count_change > 0:  # a new learner, or one back after its lease expired
            self.matched_at = self.outbox.clock()

    def store(self, raw: bytes, episode_id: int, last: bool) -> None:
        """A transition just published (`last`: it ends its episode)."""
        for eid, steps in self.outbox.append(episode_id, raw, last):
            self.node.get_logger().error(
                f"outbox full ({self.outbox.bytes / 1e6:.1f} MB of {self.outbox.max_bytes / 1e6:.0f}): dropped "
                f"episode {eid} ({steps} steps), never acknowledged by a learner; {self.outbox.dropped} dropped so far")

    def resend(self) -> None:
        """Complete episodes not acknowledged: every one not sent since a learner's reader last matched (from a
        second after the match, so that its transient-local acknowledgements come first), and each again
        resend_after s later if the learner acknowledged others meanwhile (Outbox.due); at most RESEND_BYTES_PER_S
        a tick. None while no reader is matched: they would be dropped."""
        if self.pub.get_subscription_count() == 0 or self.outbox.clock() - self.matched_at < 1.0:
            return
        due = self.outbox.due(self.matched_at, RESEND_BYTES_PER_S)
        for eid in due:
            for raw in self.outbox.resend(eid):
                self.pub.publish(raw)
            if self.on_resend is not None:
                self.on_resend(eid)
        if due:
            self.node.get_logger().info(f"outbox: resent episode(s) {due} (not acknowledged yet)")
