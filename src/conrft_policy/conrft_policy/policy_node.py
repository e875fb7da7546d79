"""Policy node: runs episodes on the robot (or the sim node) with the current policy and the human's takeovers.

Per control tick (`control_rate`, on the ROS clock: sim time under `use_sim_time`):
1. the observation: the step waits for every camera's image stamped at the tick (within `sync_tolerance`) and
   pairs it with the RobotState of the images' instant, so that both describe one instant as in the
   demonstrations (a sim camera renders on the tick and its frame arrives a few ms after the tick's clock: the
   latest image at the tick itself is a whole step old). A step whose images have not come by the next tick
   runs on the latest ones and counts as late (`/diagnostics`); any source older than `max_obs_age`
   stops the robot (hold at the measured pose) and ends the episode (truncated);
2. the previous step's `Transition` (reward from the success source, terminal flags) is published; at the
   end of an episode the robot holds and the next episode is reset through `reset_service`;
3. the action: the teleop command while an intervention is active (a teleop silent for longer than
   `intervention_timeout` on two watchdog looks in a row means "hold position": `TeleopHeartbeat`), else the
   next action of the current chunk; a new chunk is predicted (and published as ActionChunk) when the chunk is
   used up; pending weights are adopted only then.
   The VLA's forward pass, the expensive part, runs in a worker thread, only for a step that may need a chunk,
   on the history window of its observation (which takes every step's), so the node's callbacks (the teleop
   watchdog's hold, interventions, the rival check) are served meanwhile and a human's step never waits for it;
   the step acts when its features come (the head, ~1 ms, runs here, where weights are adopted), or at the next
   tick if they have not come by then (with `action_deadline`: held).
   With `human_lockstep` (simulation) and a teleop that answers transitions (the scripted one with `lockstep`:
   an Intervention stamped with the transition), the step first waits, up to that long (`HumanLockstep`), for
   the answer to the transition just published: the simulated human then acts on the step's own state, as in
   the in-process loop, instead of one step late. A teleop that never answers (a SpaceMouse) is never waited for;
4. the action becomes a pose target (clipped to the safety box) on `target_topic` plus a gripper width on
   `gripper_topic`. Every action and chunk is checked first (shape, NaN, range): a bad one is refused with
   the reason logged and the robot holds. With `stream_rate` > 0 the step's target is not sent as one jump,
   and not by this process: it goes to the target streamer (conrft_policy/target_streamer, a process of its
   own, so that inference and this node's callbacks never share an interpreter lock with the stream) on
   `step_target_topic` as a StreamTarget, which streams targets at `stream_rate` from the last streamed pose to
   it over one control period; a hold is streamed at once, an episode starts with a hold at the measured pose
   and ends with a stop (conrft_core.robot.relay). A step whose action comes later than one control period
   after its tick (the stream has then reached the last target and stays there) counts as `slow_steps` in
   /diagnostics. On a robot `action_deadline` takes inference off the command's timing: each step's target is
   stamped with its tick (on the timer's grid) plus the deadline and the streamer starts it then, so the steps
   reach the controller one control period apart; a step not ready by its deadline is not sent (the stream
   stays at the last step's target), counts as `slow_steps` and is published as held, never as the human's.
   The control step keeps its meaning: transitions, chunks and rewards are per step as without streaming.

Every published transition also goes into an on-disk outbox (`outbox_dir`, conrft_core.data.outbox) until the
learner acknowledges its episode on /conrft/episode_acks: a partition longer than a DDS lease, a learner restart
or this node's own restart loses nothing; unacknowledged episodes are resent on /conrft/transitions_resent (not
the live topic: the scripted human and the demo recorder act on each live transition) when a learner appears
and `outbox_resend_after` s later when the learner acknowledges others but not it. Its size is bounded by
`outbox_max_mb` (the oldest whole episodes dropped).

The node never moves the robot before it has a policy (weights from the learner on `/conrft/policy_weights`,
or `policy_checkpoint`), never while `target_topic` has no subscriber (no controller to obey it) or, streaming,
`step_target_topic` none (no target streamer), and never while another node than `reset_node` or its target
streamer publishes on `target_topic` (two drivers fight over the arm; CRISP ignores both). With
`teleop_only` (demonstration recording) it runs no policy: the human drives, and the robot holds otherwise.
Logic lives in conrft_core (control, weights, spaces, the VLA featurizer); this is I/O, timing and safety.
"""
from __future__ import annotations

import os
import re
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PoseStamped
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.serialization import serialize_message
from rclpy.time import Time
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Float64
from visualization_msgs.msg import Marker, MarkerArray

from conrft_core.config import ConfigError
from conrft_core.data.episode import check_robot_name
from conrft_core.data.outbox import Outbox
from conrft_core.data.transitions import image_to_array
from conrft_core.learning.policy import load_policy, resolve_device
from conrft_core.learning.vla import VLAFeaturizer, load_vla
from conrft_core.robot.control import ActionError, ChunkExecutor, check_action, check_chunk
from conrft_core.robot.node_params import declare_all
from conrft_core.robot.spaces import ActionScale, SafetyBox, action_to_target, proprio_vector, step_reward
from conrft_core.robot.teleop import HumanLockstep, SingleSource, TeleopHeartbeat
from conrft_core.robot.weights import WeightsError, adopt, build_policy, check_shapes, unpack
from conrft_interfaces.msg import ActionChunk, Intervention, PolicyWeights, RobotState, StreamTarget, Transition
from conrft_interfaces.srv import ResetEpisode
from conrft_policy.link_qos import TRANSITIONS_QOS, WEIGHTS_QOS
from conrft_policy.outbox_link import OutboxLink
from conrft_policy.ros_io import age, pose_arrays, pose_stamped, run_node, stamp_seconds, twist_wrench

PARAMS = {
    "vla_checkpoint": "",  # required (unless teleop_only): the frozen backbone (vla.safetensors of `conrft pretrain`)
    "policy_checkpoint": "",  # optional: a `conrft train` checkpoint (features: vla) instead of waiting for weights
    "instruction": "",  # required: the task's language instruction
    "cameras": ["front", "wrist"],
    "image_topic_format": "/camera/{}/image_raw",
    "state_topic": "/conrft/robot_state",
    "target_topic": "/cartesian_impedance_controller/target_frame",
    "gripper_topic": "/sim/gripper_command",
    "intervention_topic": "/conrft/intervention",
    "teleop_node": "teleop",  # interventions are obeyed from this node only ("" = from the only publisher)
    "reset_node": "",  # the node that may also publish on target_topic, between episodes (home_reset); "" = none
    "success_topic": "/sim/success",  # std_msgs/Bool; "" = success only from the human's outcome key
    "reset_service": "/sim/reset",
    "weights_topic": "/conrft/policy_weights",
    # This robot's name in every transition (Transition.robot), unique among the robots feeding one learner; ""
    # on a single robot. The learner's `robots` lists the names it takes in.
    "robot_name": "",
    "frame_id": "base",
    "control_rate": 10.0,
    "max_episode_steps": 100,
    "episodes": 0,  # stop (exit 0) after this many episodes; 0 = until stopped
    "seed": 0,  # reset seeds seed, seed + 1, ... (negative: the sim picks)
    "unseen": False,  # reset option: objects over the unseen range
    "deterministic": False,
    "max_obs_age": 0.5,  # s
    "sync_tolerance": 0.05,  # s: a step waits for images stamped no earlier than its tick minus this
    "intervention_timeout": 0.1,  # s of teleop silence during an intervention before holding (5 missed 50 Hz messages)
    "human_lockstep": 0.0,  # s to wait for the scripted human's answer to each transition (sim); 0 = never wait
    "safety_box_low": [0.3, -0.2, 0.01],
    "safety_box_high": [0.7, 0.2, 0.35],
    "max_translation": 0.01,
    "max_rotation": 0.1,
    "gripper_max_width": 0.08,
    # Hz the target streamer streams step targets at (the controller preset's); 0 = one target per step, sent here
    "stream_rate": 0.0,
    "step_target_topic": "/conrft/step_target",  # StreamTarget to the target streamer (stream_rate > 0)
    # s after its tick at which a step's target starts streaming on a robot (stream_rate > 0, wall clock; the sim
    # waits for each target instead): steps reach the controller one control period apart whatever inference
    # took, and a step not ready by then holds (slow_steps). 0 = each target starts when it is ready.
    "action_deadline": 0.0,
    "success_reward": 10.0,
    "step_penalty": 0.05,
    "device": "auto",
    "teleop_only": False,  # demonstration recording: the human drives, no policy is needed or run
    # Unacknowledged transitions on disk, in a folder per node (its namespace and name); "" = none. Not used with
    # teleop_only (the recorder is on this host, no learner acknowledges).
    "outbox_dir": "$ROS_HOME/conrft/outbox",
    "outbox_max_mb": 2000.0,  # past this the oldest whole episodes are dropped (logged, counted on /diagnostics)
    "outbox_resend_after": 10.0,  # s before an unacknowledged episode is resent (if the learner acks others)
}


class PolicyNode(Node):
    def __init__(self):
        super().__init__("policy")
        p = self.params = declare_all(self, PARAMS)
        for key in ("instruction",) if p["teleop_only"] else ("vla_checkpoint", "instruction"):
            if not p[key]:
                raise ConfigError(f"parameter '{key}' is required (set it in the policy node's parameter file)")
        check_robot_name(p["robot_name"], "parameter 'robot_name'")
        if p["control_rate"] <= 0 or p["max_episode_steps"] < 1 or p["max_obs_age"] <= 0:
            raise ConfigError("control_rate and max_obs_age must be > 0 and max_episode_steps >= 1")
        if not 0 <= p["sync_tolerance"] < 1.0 / p["control_rate"]:
            raise ConfigError(f"parameter 'sync_tolerance' must be in [0, 1 / control_rate) s, "
                              f"got {p['sync_tolerance']}")
        try:
            self.box = SafetyBox(tuple(p["safety_box_low"]), tuple(p["safety_box_high"]))
            self.scale = ActionScale(p["max_translation"], p["max_rotation"], p["gripper_max_width"])
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"safety_box_low/high or action scale parameters: {exc}") from None
        if not p["stream_rate"] >= 0:
            raise ConfigError(f"parameter 'stream_rate' must be >= 0 Hz (0: one target per step), "
                              f"got {p['stream_rate']}")
        self.streaming = p["stream_rate"] > 0  # the target streamer streams this node's step targets
        self.period = 1.0 / p["control_rate"]
        if not 0 <= p["action_deadline"] <= self.period:
            raise ConfigError(f"parameter 'action_deadline' must be in [0, 1 / control_rate = {self.period:g}] s, "
                              f"got {p['action_deadline']}")
        sim_time = self.get_parameter("use_sim_time").value
        self.deadline = p["action_deadline"] if self.streaming and not sim_time else 0.0  # see PARAMS
        self.cameras = list(p["cameras"])
        self.featurizer = None  # teleop_only: no policy runs
        if not p["teleop_only"]:
            self.featurizer = VLAFeaturizer(load_vla(p["vla_checkpoint"], resolve_device(p["device"])))
        if self.featurizer is not None and sorted(self.cameras) != sorted(self.featurizer.cfg.cameras):
            raise ConfigError(f"parameter 'cameras' {self.cameras} must match the VLA's cameras "
                              f"{list(self.featurizer.cfg.cameras)}")
        self.policy, self.version, self.pending = None, 0, None
        if p["policy_checkpoint"]:
            self.policy, config = load_policy(p["policy_checkpoint"], p["device"])
            if "finetune" in config:  # its backbone is not the frozen one this node embeds observations with
                raise ConfigError(f"policy_checkpoint {p['policy_checkpoint']} was trained with features: "
                                  f"vla_finetune (its own fine-tuned backbone); the policy node runs the frozen-"
                                  f"backbone mode: use a checkpoint trained with features: vla, or `conrft eval`")
            if int(config["feature_dim"]) != self.featurizer.dim:
                raise ConfigError(f"policy_checkpoint expects {config['feature_dim']} features, the VLA gives "
                                  f"{self.featurizer.dim}")
        self.outbox = None if p["teleop_only"] or not p["outbox_dir"] else self._open_outbox()
        self.chunk = ChunkExecutor()
        self.images: dict[str, Image] = {}
        self.state: RobotState | None = None  # the latest (holds); steps take the one of their images' instant
        self.states: deque[RobotState] = deque(maxlen=200)
        self.success = False
        self.intervention: Intervention | None = None
        self.heartbeat = TeleopHeartbeat(self.params["intervention_timeout"])
        self.phase, self.episode_id, self.episodes_done, self.t = "wait_policy", 0, 0, 0
        self.reset_future, self.reset_requested_at = None, None
        self.prev: dict | None = None
        self.last_reason, self.path = "", []
        self.refused_at: dict[str, float] = {}  # refusal kind (numbers masked) -> monotonic time last logged
        self.gripper_cmd = 1.0
        self.due: float | None = None  # tick time of the step waiting for its images
        self.late_steps = 0
        self.lockstep = HumanLockstep(self.params["human_lockstep"])
        self.published_key, self.answering = None, False  # the last transition's stamp; the teleop answers them
        self.slow_steps = 0
        # The VLA's forward pass off the executor, in one worker thread (torch releases the interpreter lock while
        # it computes): `features` is the latest asked for, for the step of observation `features_for`; `acting`
        # the observation of a step waiting for them.
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vla")
        self.features: Future | None = None
        self.features_for: dict | None = None
        self.acting: dict | None = None
        self.features_done = self.create_guard_condition(self._on_features)

        for cam in self.cameras:
            self.create_subscription(Image, p["image_topic_format"].format(cam),
                                     lambda msg, c=cam: self._on_image(c, msg), 2)
        self.create_subscription(RobotState, p["state_topic"], self._on_state, 10)
        self.create_subscription(Intervention, p["intervention_topic"], self._on_intervention, 10)
        self.source, self.intervention_publishers = SingleSource(p["teleop_node"]), []
        self.target_rivals: list[str] = []  # other nodes publishing on target_topic: the arm holds meanwhile
        self.create_timer(1.0, self._list_target_rivals, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_timer(1.0, self._list_intervention_publishers, clock=Clock(clock_type=ClockType.STEADY_TIME))
        if p["success_topic"]:
            self.create_subscription(Bool, p["success_topic"], lambda m: setattr(self, "success", m.data), 10)
        self.create_subscription(PolicyWeights, p["weights_topic"], self._on_weights, WEIGHTS_QOS)
        # The controller's PoseStamped on target_topic, or streaming, the target streamer's StreamTarget.
        self.pub_target = (self.create_publisher(StreamTarget, p["step_target_topic"], 10) if self.streaming
                           else self.create_publisher(PoseStamped, p["target_topic"], 10))
        self.pub_gripper = self.create_publisher(Float64, p["gripper_topic"], 10)
        self.pub_chunk = self.create_publisher(ActionChunk, "/conrft/action_chunk", 10)
        self.pub_transition = self.create_publisher(Transition, "/conrft/transitions", TRANSITIONS_QOS)
        self.outbox_link = None if self.outbox is None else OutboxLink(self, self.outbox, p["robot_name"])
        self.pub_markers = self.create_publisher(MarkerArray, "/conrft/markers", 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.reset_client = self.create_client(ResetEpisode, p["reset_service"])
        self.control_timer = self.create_timer(self.period, self._tick)
        # The teleop watchdog runs on wall time at 50 Hz: waiting for the next control tick could add a whole
        # control period to the hold after a teleop dies.
        self.create_timer(0.02, self._teleop_watchdog, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_timer(1.0, self._diagnostics)
        self.get_logger().info(
            f"policy node ready: {'checkpoint ' + p['policy_checkpoint'] if self.policy else 'waiting for weights'}"
            f" on {p['weights_topic']}; commanding {p['target_topic']} at {p['control_rate']} Hz"
            + (f", streamed at {p['stream_rate']} Hz by the target streamer on {p['step_target_topic']}"
               if self.streaming else "")
            + (f", each step's target starting {self.deadline * 1e3:.0f} ms after its tick" if self.deadline else ""))

    # --- the outbox -----------------------------------------------------------------------------------------
    def _open_outbox(self) -> Outbox:
        p = self.params
        for key in ("outbox_max_mb", "outbox_resend_after"):
            if p[key] <= 0:
                raise ConfigError(f"parameter '{key}' must be > 0, got {p[key]} (outbox_dir:='' for no outbox)")
        ros_home = os.environ.get("ROS_HOME") or str(Path.home() / ".ros")
        folder = Path(p["outbox_dir"].replace("$ROS_HOME", ros_home)) / self.get_fully_qualified_name().lstrip("/")
        outbox = Outbox(folder, int(p["outbox_max_mb"] * 1e6), p["outbox_resend_after"])
        if outbox.incomplete:
            self.get_logger().warning(f"outbox {folder}: dropped episode(s) {outbox.incomplete} left unfinished by "
                                      f"a previous run (never learned from: an episode counts only whole)")
        self.get_logger().info(f"outbox {folder}: {len(outbox.sent)} unacknowledged episode(s) to resend, "
                               f"{outbox.bytes / 1e6:.1f} of {p['outbox_max_mb']} MB")
        return outbox

    # --- inputs ---------------------------------------------------------------------------------------------
    def _graph_name(self, param: str) -> str:
        """A topic parameter as the graph knows it: graph queries take names as given, not remapped (a fleet's
        robot in a namespace has its topics remapped under it)."""
        return self.resolve_topic_name(self.params[param])

    def _list_target_rivals(self) -> None:
        """Re-read target_topic's publishers: a second driver appearing mid-episode stops the arm (hold). Streaming,
        this node's target streamer (a subscriber of step_target_topic) is the topic's publisher, not a rival."""
        own = {(self.get_namespace(), self.get_name())}
        if self.streaming:
            own |= {(e.node_namespace, e.node_name)
                    for e in self.get_subscriptions_info_by_topic(self._graph_name("step_target_topic"))}
        rivals = sorted({e.node_name for e in self.get_publishers_info_by_topic(self._graph_name("target_topic"))
                         if (e.node_namespace, e.node_name) not in own and e.node_name != self.params["reset_node"]})
        if rivals and rivals != self.target_rivals:  # logged once per set of nodes
            self._refuse(f"node(s) {', '.join(repr(n) for n in rivals)} also publish on "
                         f"{self.params['target_topic']}: not moving the robot (one publisher per target topic); "
                         f"stop them, or set reset_node", once=True)
        elif self.target_rivals and not rivals:
            self.get_logger().info(f"no other node publishes on {self.params['target_topic']}: moving again")
        self.target_rivals = rivals
        if rivals and self.phase == "running":
            self._hold()

    def _list_intervention_publishers(self) -> None:
        self.intervention_publishers = [(e.node_name, bytes(e.endpoint_gid))
                                        for e in self.get_publishers_info_by_topic(
                                            self._graph_name("intervention_topic"))]

    def _on_state(self, msg: RobotState) -> None:
        self.state = msg
        self.states.append(msg)
        if self.due is not None:
            self._advance()

    def _on_image(self, camera: str, msg: Image) -> None:
        self.images[camera] = msg
        if self.due is not None:
            self._advance()

    def _on_intervention(self, msg: Intervention, info: dict) -> None:
        """Only the one configured source may drive (conrft_core.robot.teleop.SingleSource)."""
        gid = bytes((info.get("publisher_gid") or {}).get("data", b""))
        if not self.source.known(gid, self.intervention_publishers):  # a new publisher: look at the graph again
            self._list_intervention_publishers()
            if not self.source.known(gid, self.intervention_publishers):
                return  # discovery has not named it yet (the first moments of a node): neither obey nor report
        reason = self.source.check(gid, self.intervention_publishers)
        if reason is not None:
            self._refuse(f"{reason} on {self.params['intervention_topic']}: refused (stop that node, or set "
                         f"teleop_node)")
            return
        sent = info.get("source_timestamp")
        self.heartbeat.message(time.monotonic(), sent * 1e-9 if sent else None)
        self.intervention = msg
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        self.answering = self.answering or key == self.published_key
        if (obs := self.lockstep.answer(key, time.monotonic())) is not None:
            self._act(obs)

    def _on_weights(self, msg: PolicyWeights) -> None:
        if msg.version <= self.version or self.featurizer is None:
            return
        try:
            if msg.format != "safetensors":
                raise WeightsError(f"format '{msg.format}' is not supported (only safetensors)")
            if msg.uri:
                raise WeightsError("weights by uri are not supported by this node; send the payload")
            tensors, config = unpack(bytes(msg.payload), msg.sha256, int(msg.parameter_count))
            if int(config.get("feature_dim", -1)) != self.featurizer.dim:
                raise WeightsError(f"weights expect {config.get('feature_dim')} features, this node's VLA gives "
                                   f"{self.featurizer.dim}")
            if self.policy is not None:  # refuse a mismatch now rather than at the end of the chunk
                check_shapes(self.policy, tensors)
        except WeightsError as exc:
            self._refuse(f"weights version {msg.version} rejected: {exc}; keeping version {self.version}", once=True)
            return
        self.pending = (msg.version, tensors, config, time.monotonic())
        if self.chunk.empty:  # between chunks already
            self._adopt_pending()

    def _adopt_pending(self) -> None:
        """Between chunks only: one chunk never mixes two policies."""
        if self.pending is None:
            return
        version, tensors, config, received = self.pending
        self.pending = None
        try:
            if self.policy is None:
                self.policy = build_policy(tensors, config, self.params["device"])
            else:
                adopt(self.policy, tensors)
        except WeightsError as exc:
            self._refuse(f"weights version {version} rejected: {exc}; keeping version {self.version}", once=True)
            return
        self.version = version
        self._diagnostics()  # monitors (and the hot-swap benchmark) see the new version at once
        self.get_logger().info(f"adopted policy weights version {version} "
                               f"({(time.monotonic() - received) * 1e3:.0f} ms after receipt)")

    def _refuse(self, reason: str, once: bool = False) -> None:
        """Log a refusal; repeating ones (`once` False: per control tick) each kind at most once a second: one
        throttle for all (rclpy's is per call site, and every refusal comes through here) would swallow a new
        reason raised during a repeating one. One-off events (a weights message) are always logged."""
        self.last_reason = reason
        kind, now = re.sub(r"\[[^\]]*\]|\d+(\.\d+)?", "#", reason), time.monotonic()
        if once or now - self.refused_at.get(kind, -1.0) >= 1.0:
            self.refused_at[kind] = now
            self.get_logger().warning(reason)

    # --- the control tick -----------------------------------------------------------------------------------
    def _tick(self) -> None:
        if self.phase == "wait_policy":
            self._adopt_pending()
            if self.policy is not None or self.params["teleop_only"]:
                self._request_reset()
        elif self.phase == "resetting":
            self._check_reset()
        elif self.phase in ("wait_obs", "running"):
            late = self.due is not None  # the last tick's images never came: this step takes the latest ones
            self.late_steps += late and self.phase == "running"
            self.due = self.get_clock().now().nanoseconds * 1e-9
            if self.deadline:  # the tick's own instant on the timer's grid, however late this callback runs
                self.due -= self.period - self.control_timer.time_until_next_call() * 1e-9
            self._advance(force=late)

    def _advance(self, force: bool = False) -> None:
        """The due step, once every camera's image is stamped at its tick and the state of the images' instant
        has come in (`force`: at once, on the latest)."""
        if not force and not self._synced():
            return
        tick, self.due = self.due, None
        if (obs := self.lockstep.give_up()) is not None:  # no answer to the last step: the latest command acts
            self._act(obs)
        if self.acting is not None:  # the last step's features have not come within a control period
            self._act_overdue()
        if self.phase == "wait_obs":
            obs = self._observation(tick, quiet=True)
            if obs is not None and obs["stamp"] >= self.reset_requested_at:
                self._start_episode(obs)
                self._step(obs)
        elif self.phase == "running":
            obs = self._observation(tick, quiet=False)
            if obs is None:
                self._hold()
                self._end_episode(None, truncated=True)
            else:
                self._step(obs)

    def _request_reset(self) -> None:
        target = self._graph_name("target_topic")
        if self.count_subscribers(target) == 0:
            self._refuse(f"no controller subscribes to {target}: not moving the robot; start the controller or "
                         f"remap target_topic")
            return
        if self.streaming and self.count_subscribers(self._graph_name("step_target_topic")) == 0:
            self._refuse(f"no target streamer subscribes to {self.params['step_target_topic']}: not moving the "
                         f"robot; start conrft_policy's target_streamer (stream_rate > 0) or set stream_rate 0")
            return
        self._list_target_rivals()
        if self.target_rivals:
            return
        if not self.reset_client.service_is_ready():
            self._refuse(f"reset service {self.params['reset_service']} is not available; waiting")
            return
        seed = self.params["seed"] + self.episodes_done if self.params["seed"] >= 0 else -1
        req = ResetEpisode.Request(seed=seed, options=[f"unseen={str(self.params['unseen']).lower()}"])
        self.reset_future = self.reset_client.call_async(req)
        self.phase = "resetting"

    def _check_reset(self) -> None:
        if not self.reset_future.done():
            return
        res = self.reset_future.result()
        if res is None or not res.success:
            self._refuse(f"reset failed: {res.message if res else 'no response'}; retrying")
            self.phase = "wait_policy"
            return
        self.episode_id = res.episode_id
        self.reset_requested_at = self.get_clock().now().nanoseconds * 1e-9
        self.phase = "wait_obs"

    def _synced(self) -> bool:
        if any(c not in self.images for c in self.cameras) or self.state is None:
            return False
        frames = min(stamp_seconds(self.images[c].header.stamp) for c in self.cameras)
        return frames >= self.due - self.params["sync_tolerance"] and stamp_seconds(self.state.header.stamp) >= frames

    def _observation(self, tick: float, quiet: bool) -> dict | None:
        """Latest images + the state nearest their instant, for the step of control tick `tick`, if all are
        fresh, else None (the reason is logged unless `quiet`). Under load the state callbacks (100 Hz) run ahead
        of a frame's: the latest state could be several ms newer than the images it is paired with."""
        max_age = self.params["max_obs_age"]
        sources = {f"camera '{c}'": self.images.get(c) for c in self.cameras}
        frames = [stamp_seconds(m.header.stamp) for m in sources.values() if m is not None]
        if frames:
            instant = min(frames)
            sources["robot state"] = min(self.states, key=lambda m: abs(stamp_seconds(m.header.stamp) - instant),
                                         default=None)
        else:
            sources["robot state"] = self.state
        for name, msg in sources.items():
            a = age(self, msg.header.stamp) if msg is not None else float("inf")
            if a > max_age:
                if not quiet:
                    self._refuse(f"{name} is stale ({a:.2f} s > max_obs_age {max_age} s): stopping the robot")
                return None
        state = sources["robot state"]
        pos, quat = pose_arrays(state.ee_pose)
        return {"images": {c: self.images[c] for c in self.cameras}, "state": state, "pos": pos, "quat": quat,
                "tick": tick, "stamp": min(stamp_seconds(m.header.stamp) for m in sources.values())}

    def _start_episode(self, obs: dict) -> None:
        self.reference = (obs["pos"], obs["quat"])
        self.started_at = self.get_clock().now().nanoseconds * 1e-9
        if self.featurizer is not None:
            self.featurizer.reset()
        self.chunk.clear()
        self.t, self.prev, self.path = 0, None, []
        if self.streaming:  # the reset moved the arm: the stream starts again from where it is
            self._send_target(self.box.clip(obs["pos"]), obs["quat"], hold=True)
        self.phase = "running"
        self.get_logger().info(f"episode {self.episode_id} started (policy version {self.version})")

    def _proprio(self, obs: dict) -> np.ndarray:
        twist, wrench = twist_wrench(obs["state"])
        return proprio_vector(obs["pos"], obs["quat"], *self.reference, obs["state"].gripper_width, twist, wrench)

    def _step(self, obs: dict) -> None:
        obs["proprio"] = self._proprio(obs)
        if self.prev is not None and self._close_step(obs):
            return
        self._observe(obs)
        if self.lockstep.timeout > 0 and self.answering and self.prev is not None:  # just published
            self.lockstep.wait(self.published_key, obs, time.monotonic())
            return
        self._act(obs)

    def _observe(self, obs: dict) -> None:
        """The VLA's history window takes the step's observation; if the step may need a chunk, the worker starts
        on its features now (while the human is waited for, too)."""
        if self.featurizer is None:
            return
        obs["window"] = self.featurizer.observe({**{c: image_to_array(m) for c, m in obs["images"].items()},
                                                 "proprio": obs["proprio"], "instruction": self.params["instruction"]})
        if self.chunk.empty:
            self._embed_async(obs)

    def _embed_async(self, obs: dict) -> None:
        if self.features is not None:
            self.features.cancel()  # an earlier step's, if still queued: no step waits for it any more
        self.features, self.features_for = self.worker.submit(self._embed, obs["window"]), obs
        self.features.add_done_callback(lambda _: self.features_done.trigger())

    def _embed(self, window: list[dict]) -> tuple[np.ndarray, float]:
        """(features, seconds), on the worker thread."""
        start = time.perf_counter()
        return self.featurizer.embed(window), time.perf_counter() - start

    def _on_features(self) -> None:
        if self.acting is not None:
            obs, self.acting = self.acting, None
            self._act(obs)

    def _act_overdue(self) -> None:
        """The next step is due and this one's features have not come: with a deadline it has missed it (held),
        else it waits for them, as it would with the VLA forward in the tick. A human who took over meanwhile needs
        none: waiting would block the executor, and with it the teleop's messages, into a false "teleop silent"."""
        obs, self.acting = self.acting, None
        if not self.deadline and not self._human_drives():
            self.features.result()
        self._act(obs, overdue=True)

    def _act(self, obs: dict, overdue: bool = False) -> None:
        if self.target_rivals:  # another driver on the target topic: hold, re-plan once it is gone
            self.chunk.clear()
            choice = None, np.zeros(7), False
        else:
            choice = self._choose(obs)
        if choice is None:  # the policy drives and this step's features are being computed
            if not overdue:
                self.acting = obs
                return
            choice = None, np.zeros(7), False
        action, policy_action, intervened = choice
        late = overdue or action is not None and \
            self.get_clock().now().nanoseconds * 1e-9 - obs["tick"] > (self.deadline or self.period)
        self.slow_steps += self.streaming and late
        missed = late and self.deadline > 0
        if missed:  # not ready by its deadline: the stream stays at the last step's target; re-plan next step
            self.chunk.clear()
            action = None
        held = action is None
        if held:
            if not missed:
                self._hold()
            action = np.array([0, 0, 0, 0, 0, 0, self.gripper_cmd])
        else:
            target_pos, target_quat, width = action_to_target(action, obs["pos"], obs["quat"], self.scale, self.box)
            self._send_target(target_pos, target_quat, start=obs["tick"] + self.deadline if self.deadline else None)
            self.pub_gripper.publish(Float64(data=width))
            self.gripper_cmd = float(action[6])
        self.prev = {"obs": obs, "action": action, "policy_action": policy_action, "intervened": intervened,
                     "held": held, "version": self.version}
        self.path.append(obs["pos"])
        self._markers(obs, intervened)
        self.t += 1

    def _human_drives(self) -> bool:
        """The teleop's latest message says it has taken over."""
        return self.intervention is not None and self.intervention.active

    def _teleop_watchdog(self) -> None:
        if (obs := self.lockstep.look(time.monotonic())) is not None:
            self._act(obs)
        if self.heartbeat.look(time.monotonic(), self.phase == "running" and self._human_drives()):
            self._refuse("teleop silent during an intervention: holding position")
            self._hold()

    def _choose(self, obs: dict) -> tuple[np.ndarray | None, np.ndarray, bool] | None:
        """(action to execute or None to hold, the policy's action (zeros if it did not run), intervened); None
        while the features the policy needs for this step are being computed."""
        zeros = np.zeros(7)
        if self._human_drives():
            iv = self.intervention
            self.chunk.clear()  # re-plan from the state the human leaves
            if self.heartbeat.silent:  # as the watchdog last found it
                self._refuse("teleop silent during an intervention: holding position")
                return None, zeros, True
            try:
                tw = iv.twist
                return check_action([tw.linear.x, tw.linear.y, tw.linear.z, tw.angular.x, tw.angular.y,
                                     tw.angular.z, iv.gripper], "teleop command"), zeros, True
            except ActionError as exc:
                self._refuse(f"{exc}: refused, holding")
                return None, zeros, True
        if self.params["teleop_only"]:
            return None, zeros, True  # nobody drives: hold
        if self.chunk.empty:
            if self.features_for is not obs:  # the chunk ran out since the step began (it does not, today)
                self._embed_async(obs)
            if not self.features.done():
                return None
            feats, latency = self.features.result()
            self._adopt_pending()
            start = time.perf_counter()
            chunk = self.policy(feats, deterministic=self.params["deterministic"])
            latency += time.perf_counter() - start  # VLA forward + head
            try:
                chunk = check_chunk(chunk, self.policy.agent.horizon, f"policy chunk (version {self.version})")
            except ActionError as exc:
                self._refuse(f"{exc}: refused, holding")
                return None, zeros, False
            self.chunk.load(chunk)
            self._publish_chunk(chunk, latency)
        action = self.chunk.pop()
        return action, action, False

    def _close_step(self, obs: dict) -> bool:
        """Publish the previous step's transition now that its outcome is observed; True if the episode ended."""
        success = bool(self.success)
        iv = self.intervention  # an outcome key counts only if pressed during this episode
        outcome = iv.outcome if iv is not None and stamp_seconds(iv.header.stamp) >= self.started_at else 0
        terminated = success or outcome != 0
        success = success or outcome > 0
        truncated = not terminated and self.t >= self.params["max_episode_steps"]
        self._publish_transition(obs, success, terminated, truncated)
        if terminated or truncated:
            self._hold()
            self._finish(success)
            return True
        return False

    def _end_episode(self, obs, truncated: bool) -> None:
        """Stop mid-episode (stale data): the last step is closed without its next observation when needed."""
        if self.prev is not None:
            obs = obs or self.prev["obs"]
            self._publish_transition(obs, False, False, truncated)
        self._finish(False)

    def _finish(self, success: bool) -> None:
        self._stop_stream()
        self.get_logger().info(f"episode {self.episode_id} ended after {self.t} steps: "
                               f"{'success' if success else 'no success'}")
        self.episodes_done += 1
        self.prev = None
        if self.params["episodes"] and self.episodes_done >= self.params["episodes"]:
            self.phase = "done"
            self.get_logger().info(f"{self.episodes_done} episodes done; stopping")
            raise SystemExit(0)
        self.phase = "wait_policy"

    def _publish_transition(self, obs: dict, success: bool, terminated: bool, truncated: bool) -> None:
        prev = self.prev
        msg = Transition(robot=self.params["robot_name"], episode_id=self.episode_id, step=self.t - 1,
                         camera_names=self.cameras,
                         images=[prev["obs"]["images"][c] for c in self.cameras],
                         proprio=prev["obs"]["proprio"].astype(np.float32).tolist(),
                         instruction=self.params["instruction"],
                         action=np.asarray(prev["action"], np.float32).tolist(),
                         policy_action=np.asarray(prev["policy_action"], np.float32).tolist(),
                         reward=step_reward(success, self.params["success_reward"], self.params["step_penalty"]),
                         terminated=terminated, success=success, truncated=truncated,
                         intervened=prev["intervened"], held=prev["held"], policy_version=prev["version"])
        msg.header.stamp = prev["obs"]["state"].header.stamp
        self.published_key = (msg.header.stamp.sec, msg.header.stamp.nanosec)  # what a lockstep teleop answers
        msg.header.frame_id = self.params["frame_id"]
        if terminated or truncated:
            msg.final_images = [obs["images"][c] for c in self.cameras]
            msg.final_proprio = obs["proprio"].astype(np.float32).tolist()
        raw = serialize_message(msg)  # the outbox keeps the very bytes sent
        self.pub_transition.publish(raw)
        if self.outbox_link is not None:
            self.outbox_link.store(raw, self.episode_id, terminated or truncated)

    def destroy_node(self) -> None:
        """Hold on the way out (Ctrl-C, SIGTERM, end of the session): the arm stops where it is. Waits (1 s at
        most) for the controller to acknowledge it: a message still queued when the process exits is lost."""
        if (summary := self.heartbeat.summary()) is not None:
            self.get_logger().info(f"teleop heartbeat: {summary}")
        if (summary := self.lockstep.summary()) is not None:
            self.get_logger().info(f"human lockstep: {summary}")
        held = self._hold()
        self._stop_stream()  # streaming: the hold is the last target streamed
        if held:
            self.get_logger().info("stopping: holding the arm at its measured pose")
        if held or self.streaming:
            self.pub_target.wait_for_all_acked(Duration(seconds=1.0))
        if self.outbox is not None:
            self.outbox.close()
        self.worker.shutdown(cancel_futures=True)  # before the guard condition it triggers is destroyed
        super().destroy_node()

    def _hold(self) -> bool:
        """Target = measured pose: the impedance controller stops the arm where it is. False (nothing sent)
        without a fresh measured pose."""
        if self.state is None or age(self, self.state.header.stamp) > self.params["max_obs_age"]:
            return False
        pos, quat = pose_arrays(self.state.ee_pose)
        self._send_target(self.box.clip(pos), quat, hold=True)
        return True

    # --- targets --------------------------------------------------------------------------------------------
    def _send_target(self, pos, quat, hold: bool = False, start: float | None = None) -> None:
        """A step's target, or a hold at the measured pose: one target now; streaming, to the target streamer,
        which streams from there (conrft_policy/target_streamer: holds at once, step targets from the next tick on
        a robot, or from `start`, the stamp, when that is later)."""
        stamp = (self.get_clock().now() if start is None else Time(nanoseconds=round(start * 1e9))).to_msg()
        msg = pose_stamped(pos, quat, self.params["frame_id"], stamp)
        if self.streaming:
            msg = StreamTarget(header=msg.header, pose=msg.pose,
                               command=StreamTarget.HOLD if hold else StreamTarget.TARGET)
        self.pub_target.publish(msg)

    def _stop_stream(self) -> None:
        """Streaming: the episode is over; the target streamer stops streaming (the reset, or nobody, drives)."""
        if self.streaming:
            msg = StreamTarget(command=StreamTarget.STOP)
            msg.header.stamp, msg.header.frame_id = self.get_clock().now().to_msg(), self.params["frame_id"]
            self.pub_target.publish(msg)

    # --- monitoring -----------------------------------------------------------------------------------------
    def _publish_chunk(self, chunk: np.ndarray, latency: float) -> None:
        msg = ActionChunk(episode_id=self.episode_id, step=self.t, horizon=len(chunk), action_dim=chunk.shape[1],
                          actions=chunk.astype(np.float32).ravel().tolist(), policy_version=self.version,
                          inference_latency=float(latency))
        msg.header.stamp, msg.header.frame_id = self.get_clock().now().to_msg(), self.params["frame_id"]
        self.pub_chunk.publish(msg)

    def _markers(self, obs: dict, intervened: bool) -> None:
        frame, stamp = self.params["frame_id"], self.get_clock().now().to_msg()

        def marker(mid, kind, points, rgba, width=0.004):
            m = Marker(ns="conrft", id=mid, type=kind, action=Marker.ADD)
            m.header.frame_id, m.header.stamp = frame, stamp
            m.scale.x = m.scale.y = m.scale.z = width
            m.color.r, m.color.g, m.color.b, m.color.a = rgba
            m.pose.orientation.w = 1.0
            m.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in points]
            return m

        ahead = obs["pos"] + np.cumsum(self.chunk.remaining[:, :3] * self.scale.max_translation, axis=0)
        lo, hi = np.array(self.box.low), np.array(self.box.high)
        corners = [np.where([i & 1, i & 2, i & 4], hi, lo) for i in range(8)]
        edges = [corners[a] for i in range(8) for b in (1, 2, 4) if not i & b for a in (i, i | b)]
        colour = (1.0, 0.2, 0.1, 1.0) if intervened else (0.1, 0.8, 0.2, 1.0)
        self.pub_markers.publish(MarkerArray(markers=[
            marker(0, Marker.LINE_STRIP, [obs["pos"], *ahead], (0.2, 0.4, 1.0, 1.0)),
            marker(1, Marker.LINE_STRIP, self.path + [obs["pos"]], (0.6, 0.6, 0.6, 1.0)),
            marker(2, Marker.LINE_LIST, edges, (1.0, 0.8, 0.0, 0.8), 0.002),
            marker(3, Marker.SPHERE_LIST, [obs["pos"]], colour, 0.02),
        ]))

    def _diagnostics(self) -> None:
        level = DiagnosticStatus.OK if self.phase == "running" else DiagnosticStatus.WARN
        values = {"phase": self.phase, "episode": self.episode_id, "step": self.t, "policy_version": self.version,
                  "episodes_done": self.episodes_done, "late_steps": self.late_steps,
                  "slow_steps": self.slow_steps,
                  "human_late": self.lockstep.late, "teleop_silent_holds": self.heartbeat.holds,
                  "last_refusal": self.last_reason,
                  "intervention": self._human_drives()}
        if self.outbox is not None:
            values.update(outbox_episodes=len(self.outbox.steps), outbox_mb=round(self.outbox.bytes / 1e6, 1),
                          outbox_dropped=self.outbox.dropped, outbox_resent=self.outbox.resent)
        status = DiagnosticStatus(level=level, name="conrft/policy", hardware_id="conrft",
                                  message=self.last_reason or self.phase,
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(msg)


def main(args=None) -> int:
    return run_node(PolicyNode, "policy_node", args)


if __name__ == "__main__":
    sys.exit(main())
