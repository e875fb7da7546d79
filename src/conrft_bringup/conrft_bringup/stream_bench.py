"""Target streaming in the node graph (part of the graph bench, results/graph_bench.{json,md}), two measurements:

- timing, the real robot's path: the policy node and its target streamer (a process of its own, streaming on the
  steady clock as on a robot) on wall time with policy_real.yaml's action_deadline, driving a robot that this
  process plays (RobotState at 100 Hz, two 128x128 cameras at 30 Hz, camera_publisher's rate), the default VLA
  running a policy, while a `conrft train` process trains on the same cores as a learner would. Streamed target
  period p50 / p99 and |period - 1 / stream_rate| p99 as this process receives them (its own scheduling counts
  too) and as the streamer stamped them (on the steady clock step targets wait for the next tick; an episode's
  holds are sent at once); the 10 Hz step period's |deviation| p99 as the controller gets the steps (each step
  target's segment starts at its stamp, or at its arrival when that is later: the streamer's rule) and, for
  comparison, when each step's action was ready (ActionChunks: one a step with H = 1); late and slow steps per
  1000 from the policy node's /diagnostics (slow: not ready by the deadline, held);
- smoothness, the sim arm: the sim node (physics, real time) driven by the policy node with one target per step
  and, through the target streamer, streamed at 100 Hz, the same random policy: the end effector's peak
  acceleration (from RobotState twists).

    python -m conrft_bringup.stream_bench [--seconds 20] [--out results/stream_bench.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from conrft_bringup.graph_bench import CONFIG, _Graph, _policy, _vla, _weights_msg
from conrft_core.robot.node_params import file_parameters
from conrft_policy.ros_io import stamp_seconds

INSTRUCTION = "pick up the red cube"
SIZE = 128
DEADLINE = file_parameters([CONFIG / "policy_real.yaml"], "policy")["action_deadline"]  # the robot's setting


def _policy_params(vla: Path, **extra) -> dict:
    return {"package": "conrft_policy", "executable": "policy_node", "params": [str(CONFIG / "policy_sim.yaml")],
            "parameters": {"vla_checkpoint": str(vla), "instruction": INSTRUCTION,
                           "outbox_dir": str(vla.parent / "outbox"), **extra}}  # no learner: not in ROS_HOME


def _streamer_params(**extra) -> dict:
    """The policy node's target streamer, started as `conrft session` starts it: only if the policy streams."""
    return {"package": "conrft_policy", "executable": "target_streamer",
            "params": [str(CONFIG / "target_streamer.yaml")], "parameters": extra, "stream_of": "policy"}


def _training_load(tmp: Path, nice: int) -> subprocess.Popen:
    """A learner's load on the same cores: `conrft train` (state features, one torch thread) until stopped, at
    niceness `nice` (what the robot's PC could give a learner sharing it)."""
    cmd = [sys.executable, "-m", "conrft_bringup.cli", "train", str(CONFIG / "train_sim.yaml"), "--run-dir",
           str(tmp / f"load_run_{nice}"), "--set", "train.offline_updates=100000", "--set", "train.device=cpu",
           "--quiet"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, preexec_fn=lambda: os.nice(nice),
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


class _Robot:
    """RobotState at 100 Hz and two cameras at 30 Hz on wall time, /sim/reset; records what the node sends."""

    def __init__(self, node):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import Bool

        from conrft_interfaces.msg import ActionChunk, RobotState, StreamTarget
        from conrft_interfaces.srv import ResetEpisode

        self.node, self.targets, self.chunks, self.diag = node, [], [], {}
        self.target_stamps, self.chunk_stamps = [], []  # the nodes' own stamps: their timing, not this one's
        self.step_starts = []  # (stamp, arrival) of each step target, both on the ROS clock
        self.RobotState, self.Image, self.Bool = RobotState, Image, Bool
        self.pub_state = node.create_publisher(RobotState, "/conrft/robot_state", 10)
        self.pub_images = [node.create_publisher(Image, f"/camera/{c}/image_raw",
                                                 QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE))
                           for c in ("front", "wrist")]
        self.pub_success = node.create_publisher(Bool, "/sim/success", 10)
        node.create_service(ResetEpisode, "/sim/reset", self._reset)
        node.create_subscription(PoseStamped, "/cartesian_impedance_controller/target_frame",
                                 lambda m: self._on(m, self.targets, self.target_stamps), 100)
        node.create_subscription(ActionChunk, "/conrft/action_chunk",
                                 lambda m: self._on(m, self.chunks, self.chunk_stamps), 10)
        node.create_subscription(StreamTarget, "/conrft/step_target", self._on_step_target, 10)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        node.create_timer(0.01, self._state)
        node.create_timer(1.0 / 30.0, self._images)
        self.pixels = np.random.default_rng(0).integers(0, 256, SIZE * SIZE * 3, np.uint8).tobytes()
        self.episodes = 0

    @staticmethod
    def _on(msg, arrivals: list, stamps: list) -> None:
        arrivals.append(time.monotonic())
        stamps.append(stamp_seconds(msg.header.stamp))

    def _on_step_target(self, msg) -> None:
        if msg.command == msg.TARGET:
            self.step_starts.append((stamp_seconds(msg.header.stamp), self.node.get_clock().now().nanoseconds * 1e-9))

    def _reset(self, request, response):
        self.episodes += 1
        response.success, response.message, response.episode_id = True, "reset", self.episodes
        return response

    def _state(self):
        msg = self.RobotState()
        msg.header.stamp, msg.header.frame_id = self.node.get_clock().now().to_msg(), "base"
        msg.ee_pose.position.x, msg.ee_pose.position.z, msg.ee_pose.orientation.w = 0.5, 0.2, 1.0
        msg.gripper_width = 0.08
        self.pub_state.publish(msg)

    def _images(self):
        stamp = self.node.get_clock().now().to_msg()
        for pub, cam in zip(self.pub_images, ("front", "wrist")):
            img = self.Image(height=SIZE, width=SIZE, encoding="rgb8", step=SIZE * 3, data=self.pixels)
            img.header.stamp, img.header.frame_id = stamp, f"{cam}_camera"
            pub.publish(img)
        self.pub_success.publish(self.Bool(data=False))

    def _on_diag(self, msg):
        for status in msg.status:
            if status.name == "conrft/policy":
                self.diag = {kv.key: kv.value for kv in status.values}


def _weights(graph, feature_dim: int) -> None:
    from conrft_interfaces.msg import PolicyWeights
    from conrft_policy.link_qos import WEIGHTS_QOS

    graph.weights_pub = graph.node.create_publisher(PolicyWeights, "/conrft/policy_weights", WEIGHTS_QOS)
    policy, cfg = _policy(feature_dim)
    graph.weights_pub.publish(_weights_msg(policy, cfg, 1))


def bench_timing(tmp: Path, seconds: float, load_nice: int, priority: int = 0, stream_rate: float = 100.0,
                 deadline: float = DEADLINE) -> dict:
    vla = tmp / "stream_vla.safetensors"
    feature_dim = _vla(vla, SIZE, 128, 3).feature_dim
    load = _training_load(tmp, load_nice)
    log = tmp / f"stream_timing_{load_nice}_{priority}.log"
    graph = _Graph({"policy": _policy_params(vla, stream_rate=stream_rate, max_episode_steps=100000,
                                             action_deadline=deadline),
                    "target_streamer": _streamer_params(stream_priority=priority)}, log, use_sim_time=False)
    try:
        robot = _Robot(graph.node)
        _weights(graph, feature_dim)
        if not graph.spin_for(120, until=lambda: len(robot.chunks) > 20):
            raise RuntimeError(f"the policy node never ran a step; see {log}")
        graph.spin_for(1.5)  # a diagnostics message with the counters before the window
        before = {k: int(robot.diag.get(k, 0)) for k in ("late_steps", "slow_steps", "step")}
        for series in (robot.targets, robot.chunks, robot.target_stamps, robot.chunk_stamps, robot.step_starts):
            series.clear()
        graph.spin_for(seconds)
        graph.spin_for(1.5)
        after = {k: int(robot.diag.get(k, 0)) for k in ("late_steps", "slow_steps", "step")}
        targets, chunks = np.diff(robot.targets), np.diff(robot.chunks)
        sent_targets, sent_chunks = np.diff(robot.target_stamps), np.diff(robot.chunk_stamps)
        steps_started = np.diff([max(stamp, arrival) for stamp, arrival in robot.step_starts])
        episodes = robot.episodes  # > 1: stale data ended an episode (the log says which source)
    finally:
        graph.close()
        load.terminate()
        load.wait()
    steps = max(after["step"] - before["step"], 1)
    period = 1.0 / stream_rate
    return {"stream_rate": stream_rate, "streamed_targets": len(targets) + 1, "steps": len(chunks) + 1,
            "stream_period_ms_p50": 1e3 * float(np.percentile(targets, 50)),
            "stream_period_ms_p99": 1e3 * float(np.percentile(targets, 99)),
            "stream_period_deviation_ms_p99": 1e3 * float(np.percentile(np.abs(targets - period), 99)),
            "step_period_deviation_ms_p99": 1e3 * float(np.percentile(np.abs(steps_started - 0.1), 99)),
            "ready_step_period_deviation_ms_p99": 1e3 * float(np.percentile(np.abs(chunks - 0.1), 99)),
            "sent_stream_period_deviation_ms_p99": 1e3 * float(np.percentile(np.abs(sent_targets - period), 99)),
            "sent_ready_step_period_deviation_ms_p99": 1e3 * float(np.percentile(np.abs(sent_chunks - 0.1), 99)),
            "late_steps_per_1000": 1e3 * (after["late_steps"] - before["late_steps"]) / steps,
            "slow_steps_per_1000": 1e3 * (after["slow_steps"] - before["slow_steps"]) / steps,
            "episodes": episodes, "stream_priority": priority, "action_deadline_s": deadline,
            "load": f"conrft train (state features, 1 torch thread) at nice {load_nice}"}


def bench_smoothness(tmp: Path, seconds: float) -> dict:
    """Peak end-effector acceleration of the sim arm, one target per step against streamed at 100 Hz."""
    from conrft_interfaces.msg import RobotState

    vla = tmp / "smooth_vla.safetensors"
    feature_dim = _vla(vla, 64, 64, 2).feature_dim
    out = {}
    for name, rate in (("stepped", 0.0), ("streamed_100hz", 100.0)):
        graph = _Graph({
            "sim": {"package": "conrft_sim", "executable": "sim_node", "params": [str(CONFIG / "sim_node.yaml")],
                    "parameters": {"image_width": 64, "image_height": 64}},
            "policy": _policy_params(vla, stream_rate=rate), "target_streamer": _streamer_params()},
            tmp / f"smooth_{name}.log", use_sim_time=True)
        try:
            states = []
            graph.node.create_subscription(RobotState, "/conrft/robot_state", states.append, 100)
            _weights(graph, feature_dim)
            if not graph.spin_for(120, until=lambda: len(states) > 300):
                raise RuntimeError(f"no robot state from the sim; see {tmp / f'smooth_{name}.log'}")
            states.clear()
            graph.spin_for(seconds)
        finally:
            graph.close()
        t = np.array([stamp_seconds(s.header.stamp) for s in states])
        v = np.array([[s.ee_twist.linear.x, s.ee_twist.linear.y, s.ee_twist.linear.z] for s in states])
        ok = np.diff(t) > 1e-4  # resets restart sim time: differences across them are not accelerations
        acc = np.linalg.norm(np.diff(v, axis=0)[ok] / np.diff(t)[ok, None], axis=1)
        acc = acc[acc < 50.0]  # a reset teleports the arm (its twist jumps): not the controller's doing
        out[name] = {"states": len(states), "peak_accel_m_s2": float(acc.max()),
                     "accel_m_s2_p99": float(np.percentile(acc, 99))}
    return out


def _timing_rows(t: dict) -> list[str]:
    load = f"training load at nice {t['load'].split()[-1]}" + (
        f", streamer SCHED_FIFO {t['stream_priority']}" if t["stream_priority"] else "") + (
        f", action_deadline {1e3 * t['action_deadline_s']:.0f} ms" if t["action_deadline_s"] else ", no action_deadline")
    return [
        f"| streamed targets at {t['stream_rate']:.0f} Hz, wall clock, inference and a {load} on the same cores "
        f"({t['streamed_targets']} targets) | period p50 {t['stream_period_ms_p50']:.1f} ms, p99 "
        f"{t['stream_period_ms_p99']:.1f} ms; abs(period - {1e3 / t['stream_rate']:.0f} ms) p99 "
        f"{t['stream_period_deviation_ms_p99']:.1f} ms as received, {t['sent_stream_period_deviation_ms_p99']:.1f} "
        f"ms as stamped by the streamer | <= 2 ms |",
        f"| 10 Hz step period with streaming, {load} ({t['steps']} steps, {t['episodes']} episode(s)) | "
        f"abs(period - 100 ms) p99 {t['step_period_deviation_ms_p99']:.1f} ms as the controller gets the steps; "
        f"actions ready: {t['ready_step_period_deviation_ms_p99']:.1f} ms as received, "
        f"{t['sent_ready_step_period_deviation_ms_p99']:.1f} ms as stamped | <= 5 ms |",
        f"| late / slow steps with streaming, {load} | {t['late_steps_per_1000']:.1f} / "
        f"{t['slow_steps_per_1000']:.1f} per 1000 | 0 |",
    ]


def markdown(r: dict) -> list[str]:
    stepped, streamed = (r["smoothness"][k] for k in ("stepped", "streamed_100hz"))
    return [
        *(row for key in ("timing", "timing_load_nice10", "timing_fifo", "timing_no_deadline")
          for row in _timing_rows(r[key])),
        f"| sim arm end-effector acceleration, stepped vs streamed at 100 Hz | peak {stepped['peak_accel_m_s2']:.2f} "
        f"vs {streamed['peak_accel_m_s2']:.2f} m/s^2, p99 {stepped['accel_m_s2_p99']:.2f} vs "
        f"{streamed['accel_m_s2_p99']:.2f} m/s^2 | lower streamed |",
    ]


def run(tmp: Path, seconds: float) -> dict:
    os.environ["OMP_NUM_THREADS"] = "1"  # the nodes too: on 2 cores a second torch thread per process oversubscribes
    return {"timing": bench_timing(tmp, seconds, 0), "timing_load_nice10": bench_timing(tmp, seconds, 10),
            "timing_fifo": bench_timing(tmp, seconds, 0, priority=50),
            "timing_no_deadline": bench_timing(tmp, seconds, 0, deadline=0.0),
            "smoothness": bench_smoothness(tmp, seconds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window of each part")
    parser.add_argument("--out", type=Path, help="write the results here (JSON, and a Markdown table next to it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="conrft-stream-bench-") as tmp:
        result = run(Path(tmp), args.seconds)
    rows = "\n".join(["| measurement | result | target |", "| --- | --- | --- |", *markdown(result)]) + "\n"
    if args.out:
        args.out.write_text(json.dumps({**result, "machine": {"cpus": os.cpu_count()}}, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(rows)
    print(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
