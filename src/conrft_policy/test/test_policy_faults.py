"""Fault injection on the policy node, a real process over DDS. This test process plays the robot (RobotState
at 50 Hz, two 32x32 cameras at 10 Hz, /sim/success, /sim/reset, the controller and gripper topics), the learner
(PolicyWeights) and the teleop (Intervention); streaming, the node's target streamer runs as a process of its own
too. Whatever is injected, every target the node publishes must be finite and inside the safety box, and the log
must name the reason for every refusal."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Float64

from conrft_core.config import from_dict
from conrft_core.learning.methods import TrainConfig
from conrft_core.learning.policy import Policy, build_agent
from conrft_core.robot.node_params import file_parameters
from conrft_core.robot.relay import streamer_parameters
from conrft_core.robot.weights import pack
from conrft_interfaces.msg import ActionChunk, Intervention, PolicyWeights, RobotState, StreamTarget, Transition
from conrft_interfaces.srv import ResetEpisode

ROOT = Path(__file__).resolve().parents[3]
PARAMS_FILE = ROOT / "config" / "policy_sim.yaml"
STREAMER_FILE = ROOT / "config" / "target_streamer.yaml"
_PARAMS = yaml.safe_load(PARAMS_FILE.read_text())["policy"]["ros__parameters"]
BOX_LOW, BOX_HIGH = np.array(_PARAMS["safety_box_low"]), np.array(_PARAMS["safety_box_high"])
MAX_OBS_AGE = float(_PARAMS["max_obs_age"])
TARGET = _PARAMS["target_topic"]
MEASURED = np.array([0.5, 0.0, 0.2])  # the fake robot never moves: a hold target is exactly this pose
MAX_STEPS = 30
IMAGE_SIZE = 32
INSTRUCTION = "pick up the red cube"
WEIGHTS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
KEEP_ALL = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_ALL)
CAMERA_QOS = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # inherited by the node process; shared 2-core machines


@pytest.fixture(scope="module")
def vla(tmp_path_factory):
    """(path, feature dim) of a tiny untrained VLA with 32x32 images (as graph_assets' vla_checkpoint)."""
    from conrft_core.learning.backbone import BackboneConfig
    from conrft_core.learning.vla import VLA, PretrainConfig, VLAFeaturizer, load_vla, save_vla

    path = tmp_path_factory.mktemp("policy_faults") / "vla.safetensors"
    save_vla(path, VLA(PretrainConfig(backbone=BackboneConfig(image_size=IMAGE_SIZE, patch_grid=4, d_model=32,
                                                              num_layers=1, num_heads=2))))
    return str(path), VLAFeaturizer(load_vla(path)).dim


def weights(version: int, feature_dim: int, seed: int, hidden: int = 32, corrupt=False, overflow=False):
    """A PolicyWeights message as the learner sends it (pack of a fresh policy). corrupt: one payload byte
    flipped after hashing; overflow: the actor's first Linear scaled to ~3e38 (finite weights, NaN actions)."""
    torch.manual_seed(seed)
    cfg = from_dict(TrainConfig, {"agent": {"consistency": {"hidden_dim": hidden}, "critic": {"hidden_dim": hidden}}})
    policy = Policy(build_agent(cfg, feature_dim), feature_dim, torch.device("cpu"))
    if overflow:
        with torch.no_grad():
            first = policy.agent.acting_actor.net[0].weight  # what acts and is sent
            first.div_(first.abs().max()).mul_(3e38)  # the largest entry is 3e38 < float32 max: still finite
        assert all(torch.isfinite(t).all() for t in policy.actor_tensors().values())
    payload, sha, count = pack(policy, cfg)
    if corrupt:
        payload = bytearray(payload)
        payload[len(payload) // 2] ^= 0xFF
        payload = bytes(payload)
    return PolicyWeights(version=version, learner_step=version, format="safetensors", sha256=sha, payload=payload,
                         parameter_count=count)


def stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def target_pose(msg: PoseStamped) -> tuple[np.ndarray, np.ndarray]:
    p, o = msg.pose.position, msg.pose.orientation
    return np.array([p.x, p.y, p.z]), np.array([o.x, o.y, o.z, o.w])


def is_hold(msg: PoseStamped) -> bool:
    pos, quat = target_pose(msg)
    return bool(np.all(np.abs(pos - MEASURED) <= 1e-6) and np.all(np.abs(quat - [0, 0, 0, 1]) <= 1e-6))


class FakeRobot:
    """What the sim node (and the learner and teleop) provide the policy node, on the test node's executor."""

    def __init__(self, node, controller: bool = True):
        self.node = node
        self.targets: list[PoseStamped] = []
        self.chunks: list[ActionChunk] = []
        self.transitions: list[Transition] = []
        self.phases: list[str] = []  # the policy node's phase, from its 1 Hz diagnostics
        self.diagnostics: dict[str, str] = {}  # the policy node's latest
        self.gripper: list[float] = []
        self.resets = 0
        self.cameras_on = {"front": True, "wrist": True}
        self.last_image_stamp: dict[str, float] = {}
        self.intervention: Intervention | None = None  # published at 50 Hz while set
        self.target_sub = None

        self.pub_state = node.create_publisher(RobotState, "/conrft/robot_state", 10)
        self.pub_images = {c: node.create_publisher(Image, f"/camera/{c}/image_raw", CAMERA_QOS)
                           for c in self.cameras_on}
        self.pub_success = node.create_publisher(Bool, "/sim/success", 10)
        self.pub_weights = node.create_publisher(PolicyWeights, "/conrft/policy_weights", WEIGHTS_QOS)
        self.pub_intervention = node.create_publisher(Intervention, "/conrft/intervention", 10)
        node.create_service(ResetEpisode, "/sim/reset", self._on_reset)
        node.create_subscription(Float64, "/sim/gripper_command", lambda m: self.gripper.append(m.data), 10)
        node.create_subscription(ActionChunk, "/conrft/action_chunk", self.chunks.append, 10)
        node.create_subscription(Transition, "/conrft/transitions", self.transitions.append, KEEP_ALL)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        node.create_timer(0.02, self._publish_state)
        node.create_timer(0.02, self._publish_intervention)
        node.create_timer(0.1, self._publish_images)
        if controller:
            self.add_controller()

        rng = np.random.default_rng(0)
        self.pixels = {c: rng.integers(0, 256, IMAGE_SIZE * IMAGE_SIZE * 3, dtype=np.uint8).tobytes()
                       for c in self.cameras_on}

    def add_controller(self) -> None:
        self.target_sub = self.node.create_subscription(PoseStamped, TARGET, self.targets.append, 10)

    def remove_controller(self) -> None:
        self.node.destroy_subscription(self.target_sub)
        self.target_sub = None

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _publish_state(self) -> None:
        msg = RobotState()
        msg.header.stamp, msg.header.frame_id = self.node.get_clock().now().to_msg(), "base"
        msg.ee_pose.position.x, msg.ee_pose.position.y, msg.ee_pose.position.z = map(float, MEASURED)
        msg.ee_pose.orientation.w = 1.0
        msg.gripper_width = 0.08
        self.pub_state.publish(msg)

    def _publish_images(self) -> None:
        stamp = self.node.get_clock().now().to_msg()
        for cam, on in self.cameras_on.items():
            if on:
                img = Image(height=IMAGE_SIZE, width=IMAGE_SIZE, encoding="rgb8", step=IMAGE_SIZE * 3,
                            data=self.pixels[cam])
                img.header.stamp, img.header.frame_id = stamp, f"{cam}_camera"
                self.pub_images[cam].publish(img)
                self.last_image_stamp[cam] = stamp_s(stamp)
        self.pub_success.publish(Bool(data=False))

    def _publish_intervention(self) -> None:
        if self.intervention is not None:
            self.intervention.header.stamp = self.node.get_clock().now().to_msg()
            self.pub_intervention.publish(self.intervention)

    def _on_reset(self, request, response):
        self.resets += 1
        response.success, response.message, response.episode_id = True, "reset", self.resets
        return response

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "conrft/policy":
                self.diagnostics = {kv.key: kv.value for kv in status.values}
                self.phases.append(self.diagnostics["phase"])

    def send(self, msg: PolicyWeights) -> None:
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub_weights.publish(msg)

    def moving(self, since: float = 0.0) -> list[PoseStamped]:
        return [m for m in self.targets if stamp_s(m.header.stamp) > since and not is_hold(m)]

    def after(self, since: float) -> list[PoseStamped]:
        return [m for m in self.targets if stamp_s(m.header.stamp) > since]

    def assert_safe(self) -> None:
        """The safety property of every scenario: each target ever published is finite and inside the box."""
        for m in self.targets:
            pos, quat = target_pose(m)
            assert np.all(np.isfinite(pos)) and np.all(np.isfinite(quat)), f"non-finite target {m}"
            assert np.all(pos >= BOX_LOW - 1e-9) and np.all(pos <= BOX_HIGH + 1e-9), f"target outside the box: {pos}"
            assert abs(np.linalg.norm(quat) - 1.0) < 1e-6, f"target orientation not a unit quaternion: {quat}"
        for w in self.gripper:
            assert math.isfinite(w) and 0.0 <= w <= _PARAMS["gripper_max_width"] + 1e-9
        for t in self.transitions:
            a = np.asarray(t.action)
            assert np.all(np.isfinite(a)) and np.all(np.abs(a) <= 1.0), f"transition action {a}"


def start_policy(ros_process, teleop_node: str = "teleop"):
    """The policy node; `teleop_node`: the node whose interventions it obeys (this test's node plays the teleop)."""
    def start(vla_path, *params):
        return ros_process("conrft_policy.policy_node", "--params-file", str(PARAMS_FILE),
                           "-p", f"vla_checkpoint:={vla_path}", "-p", f"instruction:={INSTRUCTION}",
                           "-p", f"max_episode_steps:={MAX_STEPS}", "-p", "device:=cpu",
                           "-p", f"teleop_node:={teleop_node}", *(a for k in params for a in ("-p", k)))
    return start


class Waiter:
    """spin_until on the test node, failing with the node's log when the condition never holds or it died."""

    def __init__(self, node, proc):
        self.node, self.proc = node, proc

    def __call__(self, predicate, what: str, timeout: float = 30.0) -> None:
        died = []

        def check():
            if self.proc.proc.poll() is not None:
                died.append(self.proc.proc.returncode)
                return True
            return predicate()

        ok = self.node.spin_until(check, timeout)
        assert not died, f"policy node exited ({died[0]}) while waiting for {what}:\n{self.proc.output()[-4000:]}"
        assert ok, f"timed out after {timeout} s waiting for {what}:\n{self.proc.output()[-4000:]}"

    def log(self, pattern: str, timeout: float = 30.0) -> str:
        """Wait for a log line matching the regex; return it."""
        found = []

        def match():
            found[:] = [line for line in self.proc.output().splitlines() if re.search(pattern, line)]
            return bool(found)

        self(match, f"a log line matching {pattern!r}", timeout)
        return found[0]

    def seconds(self, seconds: float) -> None:
        """Keep the fake robot running for a while (a duration to observe, not a wait for discovery)."""
        self.node.spin_until(lambda: False, seconds)


def test_no_motion_without_policy_or_controller_and_corrupt_weights(ros_process, ros_node, vla):
    vla_path, dim = vla
    corrupt, valid = weights(1, dim, seed=1, corrupt=True), weights(2, dim, seed=1)
    robot = FakeRobot(ros_node, controller=True)
    proc = start_policy(ros_process)(vla_path)
    wait = Waiter(ros_node, proc)

    # Fresh data, a controller listening, but no policy yet: the robot is not moved and no episode starts.
    wait(lambda: ros_node.count_publishers(TARGET) >= 1, "the policy node's target publisher", 90)
    wait(lambda: len(robot.phases) >= 3, "3 s of diagnostics with fresh data")
    assert set(robot.phases) == {"wait_policy"}
    assert "waiting for weights" in proc.output()
    assert robot.targets == [] and robot.gripper == [] and robot.resets == 0

    # Corrupt weights (a byte flipped in transit): rejected on the checksum, nothing adopted, no motion.
    robot.send(corrupt)
    line = wait.log(r"weights version 1 rejected")
    assert "SHA-256" in line and "keeping version 0" in line, line
    seen = len(robot.phases)
    wait(lambda: len(robot.phases) >= seen + 1, "a diagnostics period after the corrupt weights")
    assert robot.targets == [] and robot.resets == 0 and set(robot.phases) == {"wait_policy"}

    # The controller goes away (a diagnostics period for the node to see it go), then valid weights arrive:
    # adopted, but no reset and no motion, and the log says why.
    robot.remove_controller()
    seen = len(robot.phases)
    wait(lambda: len(robot.phases) >= seen + 1, "a diagnostics period after the controller left")
    robot.send(valid)
    wait.log(r"adopted policy weights version 2")
    line = wait.log(r"no controller subscribes to " + re.escape(TARGET))
    assert "not moving the robot" in line
    seen = len(robot.phases)
    wait(lambda: len(robot.phases) >= seen + 2, "2 more seconds with a policy but no controller")
    assert robot.resets == 0 and set(robot.phases) == {"wait_policy"}
    assert "adopted policy weights version 1" not in proc.output()

    # The controller comes (back): reset, then targets flow from the valid weights.
    robot.add_controller()
    wait(lambda: len(robot.moving()) >= 5 and any(c.policy_version == 2 for c in robot.chunks),
         "targets from policy version 2")
    assert robot.resets >= 1
    assert "episode 1 started (policy version 2)" in proc.output()
    assert {c.policy_version for c in robot.chunks} == {2}

    # Ctrl-C while it drives the robot: a clean exit, and its last target is a hold (the arm stops where it is).
    since = robot.now()
    proc.stop()
    assert proc.proc.returncode == 0 and "Traceback" not in proc.output(), proc.output()[-2000:]
    assert ros_node.spin_until(lambda: robot.after(since) and is_hold(robot.targets[-1]), 5), \
        [target_pose(m) for m in robot.after(since)]
    robot.assert_safe()


def test_bad_weights_never_reach_the_robot(ros_process, ros_node, vla):
    vla_path, dim = vla
    msgs = {1: weights(1, dim, seed=1), 2: weights(2, dim, seed=2, hidden=64),
            3: weights(3, dim, seed=3, overflow=True), 4: weights(4, dim, seed=4, hidden=64), 5: weights(5, dim, seed=5)}
    robot = FakeRobot(ros_node)
    proc = start_policy(ros_process)(vla_path)
    wait = Waiter(ros_node, proc)
    robot.send(msgs[1])
    wait(lambda: len(robot.moving()) >= 3, "targets from policy version 1", 90)

    # Another hidden size: rejected naming the tensor; the chunks keep coming from version 1.
    robot.send(msgs[2])
    line = wait.log(r"weights version 2 rejected")
    assert re.search(r"tensor 'actor/net\.\S+' has shape \(64", line) and "keeping version 1" in line, line
    seen = len(robot.chunks)
    wait(lambda: len(robot.chunks) >= seen + 2, "the next action chunks")
    assert {c.policy_version for c in robot.chunks} == {1}

    # Finite weights whose forward pass overflows: unpack accepts them (every tensor is finite), the probe run
    # before adoption does not; version 1 stays in control and keeps moving the robot.
    robot.send(msgs[3])
    line = wait.log(r"weights version 3 rejected")
    assert "non-finite actions" in line and "keeping version 1" in line, line
    seen = len(robot.chunks)
    wait(lambda: len(robot.chunks) >= seen + 2, "the next action chunks")
    assert {c.policy_version for c in robot.chunks} == {1}

    # Another mismatched update is refused and logged as well (reasons are throttled separately).
    robot.send(msgs[4])
    line = wait.log(r"weights version 4 rejected", 10)
    assert re.search(r"tensor 'actor/net\.\S+' has shape \(64", line) and "keeping version 1" in line, line

    # Valid weights recover.
    robot.send(msgs[5])
    wait.log(r"adopted policy weights version 5")
    wait(lambda: any(c.policy_version == 5 for c in robot.chunks), "a chunk from version 5")
    since = robot.now()
    wait(lambda: len(robot.moving(since)) >= 3, "targets from version 5")
    assert {c.policy_version for c in robot.chunks} == {1, 5}
    robot.assert_safe()


def test_bad_teleop_commands_and_stale_camera_hold_the_robot(ros_process, ros_node, vla):
    vla_path, dim = vla
    robot = FakeRobot(ros_node)
    proc = start_policy(ros_process, teleop_node=ros_node.get_name())(vla_path)
    wait = Waiter(ros_node, proc)
    robot.send(weights(1, dim, seed=1))
    wait(lambda: len(robot.moving()) >= 3, "targets from policy version 1", 90)

    # Teleop commands with a NaN component, then with one out of range: refused, the robot holds.
    for component, value, reason in ((("linear", "x"), float("nan"), r"teleop command contains NaN"),
                                     (("angular", "y"), 5.0, r"teleop command is out of range")):
        iv = Intervention(active=True, gripper=0.0, source="scripted")
        iv.header.frame_id = "base"
        setattr(getattr(iv.twist, component[0]), component[1], value)
        robot.intervention = iv
        line = wait.log(reason)
        assert "refused, holding" in line
        since = robot.now()
        wait(lambda: len(robot.after(since)) >= 8, f"targets while '{reason}'")
        assert all(is_hold(m) for m in robot.after(since)), [target_pose(m) for m in robot.after(since)]
    taken_over = [t for t in robot.transitions if t.intervened]
    assert taken_over and all(t.held for t in taken_over), "refused teleop steps must be published as held"
    robot.intervention = Intervention(active=False, source="scripted")  # the human lets go: the policy drives
    since = robot.now()
    wait(lambda: len(robot.moving(since)) >= 3, "policy targets after the intervention ends")

    # The front camera stops early in an episode.
    start = len(robot.transitions)
    wait(lambda: any(t.step == 2 and not t.intervened for t in robot.transitions[start:]), "an episode's step 2")
    episode = next(t.episode_id for t in robot.transitions[start:] if t.step == 2)
    resets = robot.resets
    robot.cameras_on["front"] = False
    last_front = robot.last_image_stamp["front"]
    line = wait.log(r"camera 'front' is stale", 10)
    assert "stopping the robot" in line
    wait(lambda: any(t.episode_id == episode and t.truncated for t in robot.transitions),
         f"the truncated last transition of episode {episode}")
    seen = len(robot.phases)
    wait(lambda: len(robot.phases) >= seen + 2, "2 s with a stale camera")

    holds = [m for m in robot.after(last_front) if is_hold(m)]
    assert holds, "no hold target after the camera went stale"
    stopped = stamp_s(holds[0].header.stamp)
    assert stopped - last_front <= MAX_OBS_AGE + 0.3, f"held {stopped - last_front:.2f} s after the last frame"
    assert all(is_hold(m) for m in robot.after(stopped)), "moving targets after the camera went stale"
    assert robot.resets == resets + 1  # the next episode is reset, but waits for fresh images: no motion
    steps = sorted((t.step, t.truncated, t.terminated) for t in robot.transitions if t.episode_id == episode)
    last = steps[-1]
    assert [s for s, _, _ in steps] == list(range(len(steps))), steps
    assert last[1] and not last[2] and last[0] < MAX_STEPS - 1, f"the interrupted episode ended {last}"
    assert not any(tr for _, tr, _ in steps[:-1])
    truncated = next(t for t in robot.transitions if t.episode_id == episode and t.truncated)
    assert len(truncated.final_images) == 2 and len(truncated.final_proprio) == 19
    assert re.search(rf"episode {episode} ended after {last[0] + 1} steps", proc.output())
    robot.assert_safe()


def test_interventions_from_another_node_than_the_configured_teleop_are_refused(ros_process, ros_node, vla):
    vla_path, dim = vla
    robot = FakeRobot(ros_node)
    proc = start_policy(ros_process)(vla_path)  # obeys node 'teleop' only; this test's node is another
    wait = Waiter(ros_node, proc)
    robot.send(weights(1, dim, seed=1))
    wait(lambda: len(robot.moving()) >= 3, "targets from policy version 1", 90)
    iv = Intervention(active=True, gripper=-1.0, source="scripted")
    iv.header.frame_id = "base"
    iv.twist.linear.z = 1.0
    since = len(robot.transitions)
    robot.intervention = iv
    line = wait.log(rf"an intervention from node '{ros_node.get_name()}', not the configured teleop 'teleop'")
    assert "refused (stop that node, or set teleop_node)" in line
    wait(lambda: len(robot.transitions) >= since + 20, "20 more steps")
    assert not any(t.intervened for t in robot.transitions[since:])  # the policy kept driving
    robot.assert_safe()


def test_another_publisher_on_the_target_topic_stops_the_robot(ros_process, ros_node, vla):
    """Two drivers fight over one arm (and CRISP ignores a target topic with two publishers): while another node
    publishes on target_topic the policy node does not move the robot, naming that node once, and holds when
    one appears mid-episode; it moves again once that publisher is gone."""
    vla_path, dim = vla
    robot = FakeRobot(ros_node)
    rival = ros_node.create_publisher(PoseStamped, TARGET, 10)  # this test's node plays the other driver
    proc = start_policy(ros_process)(vla_path)
    wait = Waiter(ros_node, proc)
    refusal = f"node(s) '{ros_node.get_name()}' also publish on {TARGET}: not moving the robot"
    wait(lambda: refusal in proc.output(), "the refusal naming the other publisher", 90)
    robot.send(weights(1, dim, seed=1))
    wait.log(r"adopted policy weights version 1")
    seen = len(robot.phases)
    wait(lambda: len(robot.phases) >= seen + 3, "3 s with a policy and another publisher")
    assert robot.resets == 0 and robot.targets == [] and set(robot.phases) == {"wait_policy"}
    assert proc.output().count(refusal) == 1, "the same reason must be logged once"

    ros_node.destroy_publisher(rival)
    wait.log(rf"no other node publishes on {re.escape(TARGET)}: moving again")
    wait(lambda: len(robot.moving()) >= 3, "targets once the other publisher is gone")

    # A second publisher appears mid-episode: the arm holds within the 1 s re-check and stays held.
    since = robot.now()
    rival = ros_node.create_publisher(PoseStamped, TARGET, 10)
    wait(lambda: proc.output().count(refusal) == 2, "the refusal mid-episode", 10)
    refused = robot.now()  # the node logged it before this: every later target must be a hold
    assert refused - since <= 2.5, f"refused {refused - since:.2f} s after the other publisher appeared"
    seen = len(robot.phases)
    wait(lambda: len(robot.phases) >= seen + 2, "2 s with the other publisher")
    assert any(is_hold(m) for m in robot.after(since)), "no hold after another node began to publish"
    assert all(is_hold(m) for m in robot.after(refused)), "moving targets while another node publishes"
    assert all(t.held for t in robot.transitions if stamp_s(t.header.stamp) > refused)

    ros_node.destroy_publisher(rival)
    resumed = robot.now()
    wait(lambda: len(robot.moving(resumed)) >= 3, "targets again once the other publisher is gone")
    robot.assert_safe()


def test_a_fully_fine_tuned_checkpoint_is_refused(ros_process, vla, tmp_path):
    """Its backbone differs from the frozen VLA the node embeds observations with: exit 1, naming the mode."""
    from conrft_core.learning.finetune import EncoderConfig, FinetuneEncoders, FinetuneFeaturizer
    from conrft_core.learning.resume import CHECKPOINT, save_run
    from conrft_core.learning.run import TrainRun
    from conrft_core.learning.vla import load_vla
    from conrft_core.robot.spaces import PROPRIO_DIM

    encoders = FinetuneEncoders(load_vla(vla[0]), EncoderConfig(), INSTRUCTION)
    cfg = from_dict(TrainConfig, {"method": "co_rft", "device": "cpu", "agent": {"consistency": {"horizon": 2}}})
    save_run(TrainRun(cfg, FinetuneFeaturizer(encoders).dim, PROPRIO_DIM, run_dir=tmp_path, progress=False,
                      encoders=encoders))
    node = ros_process("conrft_policy.policy_node", "--params-file", str(PARAMS_FILE),
                       "-p", f"vla_checkpoint:={vla[0]}", "-p", f"instruction:={INSTRUCTION}", "-p", "device:=cpu",
                       "-p", f"policy_checkpoint:={tmp_path / CHECKPOINT}")
    assert node.wait(timeout=60) == 1, node.output()
    assert "was trained with features: vla_finetune" in node.output()


def start_streamer(ros_process, tmp_path, *params):
    """The target streamer with the policy node's parameters (stream_rate 100 Hz), as the launchers start it."""
    shared = streamer_parameters({**file_parameters([PARAMS_FILE], "policy"), "stream_rate": 100.0})
    streamer_file = tmp_path / "target_streamer.yaml"
    streamer_file.write_text(yaml.safe_dump({"target_streamer": {"ros__parameters": shared}}))
    return ros_process("conrft_policy.target_streamer", "--params-file", str(STREAMER_FILE), "--params-file",
                       str(streamer_file), *(a for k in params for a in ("-p", k)))


def test_streamed_targets_move_within_the_speed_limit_between_steps(ros_process, ros_node, vla, tmp_path):
    """stream_rate 100 Hz: the policy node sends its step targets to the target streamer, a process of its own
    (and does not move before one listens), which streams several targets per 10 Hz step, each within the speed
    limit of the one before (a jump of up to 1 cm per step otherwise), every one in the box, and nothing between
    episodes; the policy node does not take its streamer for a rival on the target topic. A hold is still sent at
    once, and the last target on Ctrl-C is a hold. A bad stream_rate is refused naming it."""
    vla_path, dim = vla
    max_speed = 0.05  # m/s: slower than the random policy's steps (1 cm / 0.1 s), so the stream is always moving
    robot = FakeRobot(ros_node)
    proc = start_policy(ros_process)(vla_path, "stream_rate:=100.0")
    wait = Waiter(ros_node, proc)
    wait.log(r"streamed at 100.0 Hz by the target streamer on /conrft/step_target", 90)
    robot.send(weights(1, dim, seed=1))
    wait.log(r"no target streamer subscribes to /conrft/step_target: not moving the robot")
    assert robot.targets == [] and robot.resets == 0

    streamer = start_streamer(ros_process, tmp_path, f"stream_max_speed:={max_speed}")
    wait(lambda: len(robot.transitions) >= 2 * MAX_STEPS, "two episodes of streamed targets", 90)
    since = len(robot.transitions)
    stopped = robot.now()
    proc.stop()
    ros_node.spin_until(lambda: False, 1.0)  # what was queued meanwhile, and the policy node's last hold and stop
    assert robot.after(stopped) and is_hold(robot.targets[-1]), [target_pose(m) for m in robot.after(stopped)]
    last = len(robot.targets)
    ros_node.spin_until(lambda: False, 0.5)
    assert len(robot.targets) == last, "streamed after the policy node's last hold and stop"
    assert "also publish on" not in proc.output() + streamer.output()

    steps = sum(not t.held for t in robot.transitions[:since])
    moving = robot.moving()
    assert len(moving) >= 4 * steps, f"{len(moving)} moving targets for {steps} steps: not streamed"
    assert len({tuple(target_pose(m)[0].round(7)) for m in moving}) >= 2 * steps  # poses between step targets
    for a, b in zip(robot.targets, robot.targets[1:]):
        if is_hold(a) or is_hold(b):  # a hold goes to the measured pose at once, and a new episode starts there
            continue
        dt = max(stamp_s(b.header.stamp) - stamp_s(a.header.stamp), 0.01) + 0.003  # stamps taken after the pose
        moved = np.linalg.norm(target_pose(b)[0] - target_pose(a)[0])
        assert moved <= max_speed * dt, f"streamed target moved {moved * 1e3:.2f} mm in {dt * 1e3:.1f} ms"
    gaps = np.diff([stamp_s(m.header.stamp) for m in robot.targets])
    assert np.sum(gaps > 0.15) >= 1, "no pause in the stream between the episodes (reset, then fresh images)"
    robot.assert_safe()

    bad = ros_process("conrft_policy.policy_node", "--params-file", str(PARAMS_FILE), "-p",
                      f"vla_checkpoint:={vla_path}", "-p", f"instruction:={INSTRUCTION}", "-p", "device:=cpu",
                      "-p", "stream_rate:=-1.0")
    assert bad.wait(timeout=60) == 1, bad.output()
    assert "parameter 'stream_rate' must be >= 0 Hz" in bad.output()


def test_an_action_deadline_puts_every_step_on_the_grid_and_holds_a_step_that_misses_it(ros_process, ros_node, vla,
                                                                                      tmp_path):
    """On a robot (wall clock, streaming) with action_deadline D each step target is stamped with its tick on the
    timer's grid plus D and reaches the streamer before that: the steps start one control period apart however
    long inference took. With a deadline no inference meets, no step target is sent: every step is held (the
    stream stays where it is), published as held, and counted as slow. A deadline past a control period is
    refused naming it."""
    vla_path, dim = vla
    robot = FakeRobot(ros_node)
    steps: list[tuple[float, float]] = []  # (stamp, arrival) of each step target
    ros_node.create_subscription(StreamTarget, "/conrft/step_target", lambda m: steps.append(
        (stamp_s(m.header.stamp), robot.now())) if m.command == StreamTarget.TARGET else None, 100)
    streamer = start_streamer(ros_process, tmp_path)
    # sync_tolerance 0.09: the latest of the fake robot's 10 Hz frames serves the tick (a real camera runs at 30 Hz)
    proc = start_policy(ros_process)(vla_path, "stream_rate:=100.0", "action_deadline:=0.08", "sync_tolerance:=0.09")
    wait = Waiter(ros_node, proc)
    wait.log(r"each step's target starting 80 ms after its tick", 90)
    robot.send(weights(1, dim, seed=1))
    wait(lambda: len(robot.transitions) >= MAX_STEPS, "an episode of deadline steps", 90)
    episode = [t for t in robot.transitions if t.episode_id == robot.transitions[0].episode_id]
    held = sum(t.held for t in episode)
    assert held <= 0.1 * len(episode), [t.held for t in episode]
    stamps, arrivals = np.array(steps[:len(episode) - held]).T  # this episode's: a held step sends no target
    periods = np.diff(stamps)
    assert np.all(np.abs(periods / 0.1 - np.round(periods / 0.1)) < 0.01), periods  # on the 100 ms grid
    assert np.sum(np.round(periods / 0.1) - 1) <= held, (periods, held)  # one period apart but for a held step
    assert np.all(arrivals <= stamps + 0.005), arrivals - stamps  # sent before its deadline
    proc.stop()
    streamer.stop()

    steps.clear()
    held_from = len(robot.transitions)
    streamer = start_streamer(ros_process, tmp_path)
    proc = start_policy(ros_process, teleop_node=ros_node.get_name())(vla_path, "stream_rate:=100.0",
                                                                      "action_deadline:=0.0001", "episodes:=1")
    robot.intervention = Intervention(active=True, gripper=1.0)  # even the human's steps: held, not demonstrations
    robot.intervention.twist.linear.x = 0.5
    assert ros_node.spin_until(lambda: proc.proc.poll() is not None, 120), proc.output()[-4000:]
    assert proc.proc.returncode == 0, proc.output()[-4000:]
    held = robot.transitions[held_from:]
    assert len(held) == MAX_STEPS and all(t.held for t in held) and sum(t.intervened for t in held) >= MAX_STEPS - 2
    assert steps == [], "a step target sent past its deadline"
    assert int(robot.diagnostics["slow_steps"]) >= MAX_STEPS // 2, robot.diagnostics  # its last 1 Hz report
    robot.assert_safe()
    streamer.stop()

    bad = ros_process("conrft_policy.policy_node", "--params-file", str(PARAMS_FILE), "-p",
                      f"vla_checkpoint:={vla_path}", "-p", f"instruction:={INSTRUCTION}", "-p", "device:=cpu",
                      "-p", "stream_rate:=100.0", "-p", "action_deadline:=0.2")
    assert bad.wait(timeout=60) == 1, bad.output()
    assert "parameter 'action_deadline' must be in [0, 1 / control_rate = 0.1] s, got 0.2" in bad.output()


def test_the_first_weights_do_not_stall_the_teleops_messages(ros_process, ros_node, vla):
    """Building the first policy on the executor: torch's first Adam in a process loads its compiler stack
    (seconds, the teleop's 50 Hz messages stalled as long); an acting-only agent builds no optimiser."""
    vla_path, dim = vla
    robot = FakeRobot(ros_node)
    robot.intervention = Intervention(active=False, gripper=1.0, source="scripted")  # the idle heartbeat
    robot.intervention.header.frame_id = "base"
    proc = start_policy(ros_process, teleop_node=ros_node.get_name())(vla_path)
    wait = Waiter(ros_node, proc)
    wait(lambda: robot.pub_intervention.get_subscription_count() > 0, "the policy node on the teleop's topic", 90)
    ros_node.spin_until(lambda: False, timeout=2.0)  # it has taken the teleop's messages for a while
    robot.send(weights(1, dim, seed=1))
    wait(lambda: len(robot.chunks) >= 3, "chunks from policy version 1", 90)
    proc.stop()
    gaps = re.search(r"teleop heartbeat: (\d+) messages, inter-arrival p50 [\d.]+ / p99 [\d.]+ / max ([\d.]+) ms",
                     proc.output())
    assert gaps and int(gaps[1]) > 50, proc.output()[-3000:]
    assert float(gaps[2]) < 1000, f"the teleop's messages stalled {gaps[2]} ms\n{proc.output()[-3000:]}"


def test_the_vla_forward_runs_off_the_executor_so_the_human_never_waits_for_it(ros_process, ros_node, tmp_path):
    """A VLA whose forward pass takes longer than a control period (the node's worker thread computes it): the
    human's steps still come one control period apart (they need no features), and a teleop that dies during
    the takeover is held within 200 ms, whatever the forward is doing meanwhile."""
    from conrft_core.learning.backbone import BackboneConfig
    from conrft_core.learning.vla import VLA, PretrainConfig, VLAFeaturizer, load_vla, save_vla

    vla_path = tmp_path / "slow_vla.safetensors"  # ~180 ms a forward on a fast core (8 layers took 89 ms there)
    save_vla(vla_path, VLA(PretrainConfig(backbone=BackboneConfig(image_size=IMAGE_SIZE, patch_grid=8, d_model=384,
                                                                  num_layers=16, num_heads=4))))
    dim = VLAFeaturizer(load_vla(vla_path)).dim
    robot = FakeRobot(ros_node)
    proc = start_policy(ros_process, teleop_node=ros_node.get_name())(str(vla_path))
    wait = Waiter(ros_node, proc)
    robot.send(weights(1, dim, seed=1))
    wait(lambda: len(robot.chunks) >= 3, "chunks from policy version 1", 90)
    forward = float(np.median([c.inference_latency for c in robot.chunks]))
    assert forward > 0.1, f"the VLA's forward took {forward * 1e3:.0f} ms: not slower than a control period"

    iv = Intervention(active=True, gripper=1.0, source="scripted")
    iv.header.frame_id = "base"
    iv.twist.linear.x = 0.5
    since = len(robot.transitions)
    robot.intervention = iv
    wait(lambda: sum(t.intervened for t in robot.transitions[since:]) >= 25, "25 steps of the human's")
    human = [t for t in robot.transitions[since:] if t.intervened and t.episode_id == robot.transitions[-1].episode_id]
    periods = np.diff([stamp_s(t.header.stamp) for t in human])
    assert len(periods) >= 10 and np.median(periods) < 0.11, \
        f"the human's steps came {np.round(periods, 3).tolist()} s apart (VLA forward {forward * 1e3:.0f} ms)"
    assert not any(t.held for t in human), ([t.held for t in human], proc.output()[-3000:])

    robot.intervention = None  # the teleop dies mid-takeover: its last message says "active"
    died = stamp_s(iv.header.stamp)
    wait(lambda: any(is_hold(m) for m in robot.after(died)), "a hold after the teleop died", 10)
    held = min(stamp_s(m.header.stamp) for m in robot.after(died) if is_hold(m))
    assert held - died <= 0.2, f"held {(held - died) * 1e3:.0f} ms after the teleop's last message"
    robot.assert_safe()
