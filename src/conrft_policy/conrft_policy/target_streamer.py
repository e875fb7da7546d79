"""Target streamer: the policy node's 10 Hz step targets as a stream at `stream_rate` on the controller's target
topic, in a process of its own: no inference, image callback or interpreter lock of the policy node delays it.

It takes StreamTarget messages on `step_target_topic` (a step target, a hold or a stop; what each becomes is
conrft_core.robot.relay's) and publishes PoseStamped on `target_topic`, each clipped to the safety box and stamped
with its own instant, at every period: on a robot one thread takes messages until the next deadline of the steady
clock and publishes at it (SCHED_FIFO with `stream_priority`), under use_sim_time a timer on sim time (sim time
only moves between callbacks). A hold is published at once as well; a step target only under use_sim_time (a sim
waiting for a target stamped at its step goes on), so a robot's controller gets targets on the stream's grid; on a
robot a step target stamped later than its arrival (the policy node's `action_deadline`) starts at its stamp.
Nothing is published after a stop (the episode is over), `stream_timeout` after the
policy node's last message, or while a node other than `reset_node` publishes on `target_topic` (two drivers fight
over one arm; CRISP ignores both), which the log names. Its topics, frame, safety box and rates are the policy
node's (conrft_core.robot.relay.FROM_POLICY, passed on by the launch files and `conrft session`).

    ros2 run conrft_policy target_streamer --ros-args --params-file config/target_streamer.yaml -p ...
"""
from __future__ import annotations

import os
import sys
import time

from geometry_msgs.msg import PoseStamped
from rclpy.clock import Clock, ClockType
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from conrft_core.robot.node_params import declare_all
from conrft_core.robot.relay import RelayError, relay_from_parameters
from conrft_core.robot.signals import SPIN_PERIOD
from conrft_interfaces.msg import StreamTarget
from conrft_policy.ros_io import pose_arrays, pose_stamped, run_node, stamp_seconds

PARAMS = {
    # The policy node's (same names, same defaults; the launchers pass its values on):
    "step_target_topic": "/conrft/step_target",  # conrft_interfaces/StreamTarget from the policy node
    "target_topic": "/cartesian_impedance_controller/target_frame",  # geometry_msgs/PoseStamped to the controller
    "frame_id": "base",
    "reset_node": "",  # the node that may also publish on target_topic, between episodes (home_reset); "" = none
    "control_rate": 10.0,  # Hz of the policy node's steps: a step target is streamed to over one period
    "stream_rate": 100.0,  # Hz (the controller preset's)
    "safety_box_low": [0.3, -0.2, 0.01],
    "safety_box_high": [0.7, 0.2, 0.35],
    # The streamer's own (config/target_streamer.yaml):
    "stream_profile": "linear",  # linear | min_jerk (stops at every step's target)
    "stream_max_speed": 0.25,  # m/s of the streamed position
    "stream_max_accel": 5.0,  # m/s^2
    "stream_max_angular_speed": 2.0,  # rad/s
    "stream_priority": 0,  # SCHED_FIFO priority of the stream loop on a robot (1-99; needs rtprio); 0 = normal
    "stream_timeout": 0.5,  # s after the policy node's last message before the stream falls silent
}
DRAIN = 1.0  # s a streamer stopped mid-episode waits for the policy node's last hold and stop


class TargetStreamerNode(Node):
    def __init__(self):
        super().__init__("target_streamer")
        p = self.params = declare_all(self, PARAMS)
        self.relay = relay_from_parameters(p)  # ConfigError naming the parameter
        self.sim_time = self.get_parameter("use_sim_time").value
        self.period = 1.0 / p["stream_rate"]
        self.rivals: list[str] = []  # other nodes publishing on target_topic: nothing is published meanwhile
        self.warned_silent = False
        self.pub_target = self.create_publisher(PoseStamped, p["target_topic"], 10)
        self.create_subscription(StreamTarget, p["step_target_topic"], self._on_step_target, 10)
        if self.sim_time:
            self.create_timer(self.period, self._tick)
            self.create_timer(1.0, self._list_rivals, clock=Clock(clock_type=ClockType.STEADY_TIME))
        else:
            self._set_priority(p["stream_priority"])
            self.deadline = self.graph_due = time.monotonic()
        self.get_logger().info(f"target streamer ready: {p['step_target_topic']} -> {p['target_topic']} at "
                               f"{p['stream_rate']} Hz on {'sim time' if self.sim_time else 'the steady clock'}")

    def _set_priority(self, priority: int) -> None:
        """SCHED_FIFO for this thread, the one that streams (DDS's own threads keep theirs)."""
        if not priority:
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0: the calling thread (Linux)
            self.get_logger().info(f"streaming at SCHED_FIFO priority {priority}")
        except (OSError, ValueError) as exc:
            self.get_logger().warning(f"stream_priority {priority}: SCHED_FIFO refused ({exc}); streaming at normal "
                                      f"priority (give the user rtprio, as libfranka needs)")

    def spin_once(self, executor) -> None:
        """One turn of the process's loop. On a robot: messages until the next deadline of the steady clock, the
        stream's pose at it (missed deadlines are skipped), then the graph check when due, right after a tick
        where it is furthest from the next deadline. On sim time the timer streams."""
        if self.sim_time:
            executor.spin_once(timeout_sec=SPIN_PERIOD)
            return
        while (left := self.deadline - time.monotonic()) > 0:
            executor.spin_once(timeout_sec=min(left, SPIN_PERIOD))
        self._tick()
        now = time.monotonic()
        self.deadline = max(self.deadline + self.period, now)
        if now >= self.graph_due:
            self._list_rivals()
            self.graph_due = now + 1.0

    def _now(self):
        """(ROS time for the stamp, stream clock seconds) read together: a target is stamped with its instant."""
        stamp = self.get_clock().now()
        return stamp, stamp.nanoseconds * 1e-9 if self.sim_time else time.monotonic()

    def _on_step_target(self, msg: StreamTarget) -> None:
        if msg.command != StreamTarget.STOP and msg.header.frame_id != self.params["frame_id"]:
            self.get_logger().warning(f"step target in frame '{msg.header.frame_id}', not frame_id "
                                      f"'{self.params['frame_id']}': refused", throttle_duration_sec=1.0)
            return
        stamp, now = self._now()
        # On a robot a step target stamped ahead (the policy node's action_deadline) starts at its stamp: the
        # steady clock's instant of it, from the two clocks read together (the policy node is on this host).
        start = None if self.sim_time else now + (stamp_seconds(msg.header.stamp) - stamp.nanoseconds * 1e-9)
        try:
            pose = self.relay.receive(msg.command, *pose_arrays(msg.pose), now, target_at_once=self.sim_time,
                                      start=start)
        except RelayError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=1.0)
            return
        self.warned_silent = False
        if pose is not None:
            self._publish(pose, stamp)

    def _tick(self) -> None:
        stamp, now = self._now()
        if self.relay.silent(now) and not self.warned_silent:
            self.warned_silent = True
            self.get_logger().warning(f"no step target from the policy node for {self.params['stream_timeout']} s: "
                                      f"not streaming (the arm stays at the pose streamed last)")
        pose = self.relay.sample(now)  # sampled even while not published: no jump when publishing resumes
        if pose is not None:
            self._publish(pose, stamp)

    def _publish(self, pose, stamp) -> None:
        if not self.rivals:
            self.pub_target.publish(pose_stamped(*pose, self.params["frame_id"], stamp.to_msg()))

    def _list_rivals(self) -> None:
        """Re-read target_topic's publishers: while another driver is there nothing is published."""
        p, me = self.params, (self.get_namespace(), self.get_name())
        rivals = sorted({e.node_name for e in self.get_publishers_info_by_topic(self.resolve_topic_name(
            p["target_topic"])) if (e.node_namespace, e.node_name) != me and e.node_name != p["reset_node"]})
        if rivals and rivals != self.rivals:  # logged once per set of nodes
            self.get_logger().warning(f"node(s) {', '.join(repr(n) for n in rivals)} also publish on "
                                      f"{p['target_topic']}: not streaming (one publisher per target topic); stop "
                                      f"them, or set reset_node")
        elif self.rivals and not rivals:
            self.get_logger().info(f"no other node publishes on {p['target_topic']}: streaming again")
        self.rivals = rivals

    def destroy_node(self) -> None:
        """Stopped mid-episode (a session or ros2 launch stops every node at once): still relay the policy node's
        last hold, waiting (DRAIN s at most) for the stop that follows it: the arm's last target is a hold."""
        end = time.monotonic() + DRAIN
        if self.context.ok() and self.relay.streaming(self._now()[1]):
            executor = SingleThreadedExecutor(context=self.context)
            executor.add_node(self)
            try:
                while time.monotonic() < end and self.relay.streaming(self._now()[1]):
                    executor.spin_once(timeout_sec=0.05)
            except KeyboardInterrupt:  # a second Ctrl-C: now
                pass
            executor.shutdown()
        super().destroy_node()


def main(args=None) -> int:
    return run_node(TargetStreamerNode, "target_streamer", args, spin_once=TargetStreamerNode.spin_once)


if __name__ == "__main__":
    sys.exit(main())
