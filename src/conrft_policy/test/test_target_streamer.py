"""The target streamer, a real process over DDS. This test process plays the policy node (StreamTarget on the step
target topic, /clock for sim time) and the controller (the PoseStamped targets). Between two step targets the
stream moves at its rate; a hold is streamed at once; nothing is streamed after a stop, a step target without a
hold, or the policy node's silence; nothing while another node publishes on the controller's topic; a bad
parameter is refused naming it."""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from rosgraph_msgs.msg import Clock

from conrft_core.robot.relay import FROM_POLICY, HOLD, STOP, TARGET
from conrft_interfaces.msg import StreamTarget

TARGET_TOPIC = "/cartesian_impedance_controller/target_frame"
STEP_TOPIC = "/conrft/step_target"
P0 = np.array([0.5, 0.0, 0.2])
X = np.array([0.001, 0.0, 0.0])  # 1 mm


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # shared 2-core machines


def position(msg: PoseStamped) -> np.ndarray:
    p = msg.pose.position
    return np.array([p.x, p.y, p.z])


def stamp_s(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


class PolicyAndController:
    """What the policy node sends the streamer, and what the controller receives from it (with receive times)."""

    def __init__(self, node):
        self.node = node
        self.pub = node.create_publisher(StreamTarget, STEP_TOPIC, 10)
        self.targets: list[tuple[float, PoseStamped]] = []
        self.sub = node.create_subscription(PoseStamped, TARGET_TOPIC,
                                            lambda m: self.targets.append((time.monotonic(), m)), 100)

    def send(self, command: int, pos=P0, frame: str = "base") -> float:
        msg = StreamTarget(command=command)
        msg.header.stamp, msg.header.frame_id = self.node.get_clock().now().to_msg(), frame
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = map(float, pos)
        msg.pose.orientation.w = 1.0
        self.pub.publish(msg)
        return time.monotonic()

    def after(self, since: float) -> list[PoseStamped]:
        return [m for rx, m in self.targets if rx > since]

    def connect(self, proc) -> None:
        """Until the streamer is up and both topics are matched both ways."""
        ok = self.node.spin_until(lambda: "target streamer ready" in proc.output() and self.pub.get_subscription_count()
                                  >= 1 and self.sub.get_publisher_count() >= 1, 60)
        assert ok, proc.output()


def start_streamer(ros_process, *params):
    return ros_process("conrft_policy.target_streamer", *(a for p in params for a in ("-p", p)))


def test_streams_between_step_targets_at_its_rate_and_stops_when_told_or_left(ros_process, ros_node):
    io = PolicyAndController(ros_node)
    proc = start_streamer(ros_process, "stream_timeout:=0.3", "stream_priority:=1")
    io.connect(proc)
    assert ("streaming at SCHED_FIFO priority 1" in proc.output()  # granted (root, rtprio), or refused: a warning
            or "stream_priority 1: SCHED_FIFO refused" in proc.output()), proc.output()
    spin = lambda s: ros_node.spin_until(lambda: False, s)  # noqa: E731

    # A hold at the measured pose, then ten 10 Hz step targets 1 mm apart: ~10 targets per step, each a bit further.
    io.send(StreamTarget.HOLD)
    start = time.monotonic()
    for k in range(1, 11):
        io.send(StreamTarget.TARGET, P0 + k * X)
        ros_node.spin_until(lambda: False, start + 0.1 * k - time.monotonic())
    stop = io.send(StreamTarget.STOP)
    spin(0.5)
    streamed = [m for rx, m in io.targets if start <= rx <= stop]
    xs = np.array([position(m)[0] for m in streamed])
    assert len(streamed) >= 60, f"{len(streamed)} targets in ten 100 ms steps at 100 Hz"
    assert np.all(np.diff(xs) >= -1e-12) and xs[-1] > P0[0] + 0.008, xs  # along the steps, no overshoot
    assert len(np.unique(xs.round(7))) >= 40  # poses between the step targets, not a jump per step
    assert np.median(np.diff([stamp_s(m) for m in streamed])) == pytest.approx(0.01, abs=0.002)
    assert not io.after(stop + 0.05), "targets after the stop"

    # A step target without a hold since the stop is refused; one in another frame too.
    sent = io.send(StreamTarget.TARGET, P0 + 20 * X)
    assert ros_node.spin_until(lambda: "step target without a hold since the last stop" in proc.output(), 10)
    io.send(StreamTarget.HOLD, frame="world")
    assert ros_node.spin_until(lambda: "step target in frame 'world', not frame_id 'base'" in proc.output(), 10)
    spin(0.3)
    assert not io.after(sent), "streamed without a hold"

    # The policy node falls silent: the hold is streamed for stream_timeout, then nothing, and the log says why.
    held = io.send(StreamTarget.HOLD, P0 + 5 * X)
    assert ros_node.spin_until(lambda: "no step target from the policy node for 0.3 s" in proc.output(), 10)
    spin(0.3)
    last = io.targets[-1][0]
    assert 0.2 <= last - held <= 0.45 and len(io.after(held)) >= 15, (last - held, len(io.after(held)))
    assert all(np.allclose(position(m), P0 + 5 * X) for m in io.after(held))

    # Ctrl-C mid-episode (a session stops every node at once): the policy node's last hold still goes through.
    io.send(StreamTarget.HOLD, P0)
    spin(0.1)
    os.killpg(proc.proc.pid, signal.SIGINT)
    spin(0.05)
    last_hold = io.send(StreamTarget.HOLD, P0 + 3 * X)
    io.send(StreamTarget.STOP)
    assert ros_node.spin_until(lambda: proc.proc.poll() is not None, 10), proc.output()
    assert proc.proc.returncode == 0 and "Traceback" not in proc.output(), proc.output()[-2000:]
    assert np.allclose(position(io.after(last_hold)[-1]), P0 + 3 * X)


def test_on_sim_time_a_hold_is_streamed_at_once_and_the_stream_follows_the_clock(ros_process, ros_node):
    io = PolicyAndController(ros_node)
    clock = ros_node.create_publisher(Clock, "/clock", 10)
    now = [100_000_000_000]  # ns of sim time

    def tick(ns: int = 0) -> None:
        now[0] += ns
        clock.publish(Clock(clock=Time(sec=now[0] // 10**9, nanosec=now[0] % 10**9)))

    proc = start_streamer(ros_process, "use_sim_time:=true", "stream_max_accel:=100.0")
    ros_node.create_timer(0.05, lambda: tick())  # the clock stands still unless a test step moves it
    io.connect(proc)
    assert "at 100.0 Hz on sim time" in proc.output()
    ros_node.spin_until(lambda: False, 0.5)  # the streamer has the clock

    # The clock stands still: no tick, yet the hold is streamed at once, stamped with its instant.
    io.send(StreamTarget.HOLD)
    assert ros_node.spin_until(lambda: len(io.targets) == 1, 5), proc.output()
    assert np.allclose(position(io.targets[0][1]), P0) and stamp_s(io.targets[0][1]) == pytest.approx(100.0)
    io.send(StreamTarget.TARGET, P0 + 10 * X)  # 1 cm in one 100 ms step: 1 mm a tick
    assert ros_node.spin_until(lambda: len(io.targets) == 2, 5)
    ros_node.spin_until(lambda: False, 0.3)
    assert len(io.targets) == 2, "targets while sim time stood still"

    # Each 10 ms of sim time one target, 1 mm further, stamped at its sim instant.
    for k in range(1, 11):
        tick(10_000_000)
        assert ros_node.spin_until(lambda: len(io.targets) == 2 + k, 5), f"no target at tick {k}"
        msg = io.targets[-1][1]
        assert stamp_s(msg) == pytest.approx(100.0 + 0.01 * k, abs=1e-6)
        np.testing.assert_allclose(position(msg), P0 + k * X, atol=1e-9)

    # Stopped: sim time goes on, nothing is streamed.
    io.send(StreamTarget.STOP)
    ros_node.spin_until(lambda: False, 0.2)
    seen = len(io.targets)
    for _ in range(20):
        tick(10_000_000)
        ros_node.spin_until(lambda: False, 0.02)
    assert len(io.targets) == seen, "targets after the stop"


def test_another_publisher_on_the_target_topic_stops_the_stream(ros_process, ros_node):
    io = PolicyAndController(ros_node)
    rival = ros_node.create_publisher(PoseStamped, TARGET_TOPIC, 10)  # this test's node plays another driver
    proc = start_streamer(ros_process)
    io.connect(proc)
    refusal = f"node(s) '{ros_node.get_name()}' also publish on {TARGET_TOPIC}: not streaming"
    assert ros_node.spin_until(lambda: refusal in proc.output(), 10), proc.output()
    sent = io.send(StreamTarget.HOLD)
    for k in range(1, 6):
        io.send(StreamTarget.TARGET, P0 + k * X)
        ros_node.spin_until(lambda: False, 0.1)
    assert not io.after(sent), "streamed while another node publishes on the target topic"

    ros_node.destroy_publisher(rival)
    assert ros_node.spin_until(lambda: "no other node publishes" in proc.output(), 10), proc.output()
    assert "streaming again" in proc.output() and proc.output().count(refusal) == 1
    sent = io.send(StreamTarget.HOLD)
    assert ros_node.spin_until(lambda: len(io.after(sent)) >= 5, 5)
    assert all(np.allclose(position(m), P0) for m in io.after(sent))


@pytest.mark.parametrize("param, message", [
    ("stream_profile:=cubic", "parameter 'stream_profile' must be linear or min_jerk"),
    ("stream_timeout:=0.01", "parameter 'stream_timeout' must be at least one control period"),
    ("control_rate:=fast", "parameter 'control_rate' of node 'target_streamer' must be of type float"),
    ("stream_rat:=100.0", "unknown parameter 'stream_rat' for node 'target_streamer'"),
])
def test_a_bad_parameter_is_refused_naming_it(ros_process, param, message):
    proc = start_streamer(ros_process, param)
    assert proc.wait(timeout=60) == 1, proc.output()
    assert message in proc.output(), proc.output()


def test_the_parameters_it_shares_with_the_policy_node_have_the_policy_nodes_defaults():
    """What a launcher passes on only where the policy node's files set it: unset, both nodes agree anyway. And the
    relay's commands are the message's."""
    from conrft_policy import policy_node, target_streamer  # the policy node imports torch: here only

    assert (StreamTarget.TARGET, StreamTarget.HOLD, StreamTarget.STOP) == (TARGET, HOLD, STOP)
    assert set(FROM_POLICY) <= set(target_streamer.PARAMS) and set(FROM_POLICY) <= set(policy_node.PARAMS)
    for key in set(FROM_POLICY) - {"stream_rate"}:  # the policy node's 0 means "no streamer"
        assert target_streamer.PARAMS[key] == policy_node.PARAMS[key], key
