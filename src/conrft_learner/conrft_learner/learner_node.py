"""Learner node: the offline stage on demonstration bags, then the online stage on `/conrft/transitions`.

1. Demonstrations: every complete, successful episode of the rosbag2 bags in `demo_bags` (recorded by the
   demo recorder, `ros2 bag record /conrft/transitions`, or `conrft sim-demos`). Features come from the
   frozen VLA (`vla_checkpoint`), computed once per observation (ConRFT's frozen-backbone mode).
2. Offline stage of `train.method` (Cal-ConRFT, or CO-RFT with H > 1; config in `config_file`).
3. Online stage (HIL-ConRFT): each episode received from the policy node(s) enters the online buffer (its
   intervention segments also the demo buffer), then UTD x T updates; it ends after `train.online_env_steps`
   received steps, with a final checkpoint and `result.json`, and the node exits 0.

Several robots may feed one learner (a fleet, `conrft session config/sim_fleet.yaml`): each policy node names its
robot in every transition (`robot_name`), episodes are keyed by (robot, episode id), and `robots` lists the
names this learner takes in (empty: any); an unknown name, or a name two live senders use, is refused and logged
(conrft_core.data.intake.RobotRegistry): nothing of it is journaled or acknowledged, so it waits in that robot's
outbox.

`run_dir/snapshots/policy_<online steps>.safetensors` keep the policy every `snapshot_every_steps` steps:
`conrft report RUN_DIR` evaluates them in simulation (success vs online steps, no human).

Weights go out on `/conrft/policy_weights` (transient-local: a policy node started later gets the latest)
after the offline stage and every `publish_every_updates` updates of the online stage (none before: the robot
waits for the offline stage's policy). Everything is resumable: `run_dir` holds the
checkpoint (model, optimisers, buffers, progress; written every `checkpoint_every_episodes` episodes) and a
journal of every received transition, flushed as it arrives, so a learner killed at any moment and
restarted on the same `run_dir` continues with nothing it received lost. Each complete episode is acknowledged on
`acks_topic` once it is on disk (and again whenever it is resent): the policy node's outbox resends, on
`resend_topic`, what a partition or a restart kept from the learner; steps and episodes it already holds are
dropped (conrft_core.data.intake).
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
from pathlib import Path

import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from rclpy.signals import SignalHandlerOptions

from conrft_core.checkpoint import CheckpointError
from conrft_core.config import ConfigError, from_dict, load_yaml, to_dict
from conrft_core.data.bags import BagError, read_episodes
from conrft_core.data.episode import check_robot_name, key_from_meta, key_to_meta
from conrft_core.data.intake import Intake, RobotRegistry
from conrft_core.data.journal import RobotJournals
from conrft_core.data.transitions import EpisodeAssembler, TransitionError, episode_from_transitions
from conrft_core.learning.methods import TrainConfig
from conrft_core.learning.policy import resolve_device
from conrft_core.learning.resume import restore_run, save_run, write_result
from conrft_core.learning.run import TrainRun
from conrft_core.learning.runlog import RunLog
from conrft_core.learning.stages import learn_from_episode, offline_stage
from conrft_core.learning.vla import VLAFeaturizer, load_vla
from conrft_core.robot.node_params import declare_all
from conrft_core.robot.signals import SPIN_PERIOD, interrupt_main_thread, stop_requested
from conrft_core.robot.spaces import PROPRIO_DIM, TRANSITION_DIMS
from conrft_core.robot.teleop import SingleSource
from conrft_core.robot.weights import pack
from conrft_interfaces.msg import EpisodeAck, PolicyWeights, Transition
from conrft_policy.link_qos import ACKS_QOS, TRANSITIONS_QOS, WEIGHTS_QOS

PARAMS = {
    "vla_checkpoint": "",  # required
    "config_file": "",  # YAML with a `train:` section (conrft_core.learning.methods.TrainConfig); "" = defaults
    "demo_bags": [""],  # required: rosbag2 folders with demonstrations
    "run_dir": "",  # required: checkpoints, journal, logs; an existing run is resumed
    "task": "",  # recorded in the checkpoint so `conrft eval` can rebuild the sim task
    "online_env_steps": 0,  # > 0 overrides train.online_env_steps of config_file
    "snapshot_every_steps": 500,  # policy snapshots for `conrft report` (success vs online steps); 0 = none
    "publish_every_updates": 50,
    "checkpoint_every_episodes": 5,
    "transitions_topic": "/conrft/transitions",
    "resend_topic": "/conrft/transitions_resent",  # the policy node's outbox resends here
    "acks_topic": "/conrft/episode_acks",
    "weights_topic": "/conrft/policy_weights",
    "device": "auto",
    "robots": [""],  # robot names (Transition.robot) taken in; [""] or [] = any
}


class Stopped(Exception):
    """Raised in the training thread when the process is asked to stop."""


class LearnerNode(Node):
    def __init__(self):
        super().__init__("learner")
        p = self.params = declare_all(self, PARAMS)
        bags = [b for b in p["demo_bags"] if b]
        for key, missing in (("vla_checkpoint", not p["vla_checkpoint"]), ("demo_bags", not bags),
                             ("run_dir", not p["run_dir"])):
            if missing:
                raise ConfigError(f"parameter '{key}' is required (set it in the learner's parameter file)")
        data = load_yaml(p["config_file"]) if p["config_file"] else {}
        train = {**data.get("train", {}), "device": p["device"]}
        if p["online_env_steps"] > 0:
            train["online_env_steps"] = p["online_env_steps"]
        cfg = from_dict(TrainConfig, train, "train")
        self.cfg, self.run_dir = cfg, Path(p["run_dir"])
        # Leave a core to the executor: on a small CPU machine, featurizing and training on every core would
        # starve the subscription that takes in the live transitions.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))
        self.featurizer = VLAFeaturizer(load_vla(p["vla_checkpoint"], resolve_device(p["device"])))
        meta = {"task": p["task"], "features": "vla", "ingested_episodes": [],
                "experiment": {"features": "vla", "vla_checkpoint": p["vla_checkpoint"],
                               "sim": {"task": p["task"] or "pick_cube"}, "train": to_dict(cfg)}}
        self.log = RunLog(self.run_dir, emit=self.get_logger().info)
        self.run = TrainRun(cfg, self.featurizer.dim, PROPRIO_DIM, run_dir=self.run_dir, log=self.log, meta=meta,
                            progress=False)
        robots = [r for r in p["robots"] if r]
        for r in robots:
            check_robot_name(r, "parameter 'robots'")
        if len(set(robots)) != len(robots):
            raise ConfigError(f"parameter 'robots' names a robot twice: {robots}")
        self.registry = RobotRegistry(robots)
        self.writers: dict[bytes, str] = {}  # writer gid -> its node's name (conrft_core.data.intake.RobotRegistry)
        self.journal = RobotJournals(self.run_dir / "journal")
        self.assembler = EpisodeAssembler(p["transitions_topic"], dims=TRANSITION_DIMS)
        self.episodes: queue.Queue = queue.Queue()
        self.version = 0
        self.done = self.failed = False
        restored = restore_run(self.run)
        self.intake = Intake(self.journal, self.assembler, map(key_from_meta, self.run.meta["ingested_episodes"]))
        self.pub_acks = self.create_publisher(EpisodeAck, p["acks_topic"], ACKS_QOS)
        if restored:
            self._replay_journal()
        else:
            self._load_demos(bags)
        self.pub_weights = self.create_publisher(PolicyWeights, p["weights_topic"], WEIGHTS_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        for topic in (p["transitions_topic"], p["resend_topic"]):
            self.create_subscription(Transition, topic, lambda raw, info, t=topic: self._on_transition(t, raw, info),
                                     TRANSITIONS_QOS, raw=True)
        self.create_timer(1.0, self._diagnostics)
        self.run.on_update = self._maybe_publish
        self.worker = threading.Thread(target=self._train, daemon=True)
        self.stopping = threading.Event()  # set by the process on Ctrl-C / SIGTERM; the worker leaves at once

    # --- data -----------------------------------------------------------------------------------------------
    def _load_demos(self, bags: list[str]) -> None:
        demos = []
        for bag in bags:
            episodes = read_episodes(bag, dims=TRANSITION_DIMS)
            good = [ep for ep in episodes if ep.success]
            if not good:
                raise BagError(f"bag {bag} holds {len(episodes)} episodes but no successful one; record "
                               f"successful demonstrations (the recorder keeps successes by default)")
            demos += [(ep, self.featurizer.episode_features(ep)) for ep in good]
        self.run.add_demos(demos)
        self.get_logger().info(f"{len(demos)} demonstrations from {len(bags)} bag(s), "
                               f"{sum(ep.length for ep, _ in demos)} steps")

    def _replay_journal(self) -> None:
        """After a restart: transitions received since the last checkpoint, from the journal."""
        done = set(map(key_from_meta, self.run.meta["ingested_episodes"]))
        replayed = 0
        for key in self.journal.episodes():
            if key in done:
                self.journal.discard([key])
                continue
            for record in self.journal.records(key):
                self._assemble(deserialize_message(record, Transition), None)
                replayed += 1
        self.get_logger().info(f"resumed: {replayed} journaled transitions replayed")

    def _on_transition(self, topic: str, raw: bytes, info) -> None:
        msg = deserialize_message(raw, Transition)
        sender = self._sender(topic, info)
        why = self.registry.admit(msg.robot, sender, self._sender_alive)
        if why is not None:
            if self.registry.refused.get(msg.robot) != why:
                self.registry.refused[msg.robot] = why
                self.get_logger().error(why)
            return
        self._assemble(msg, raw, sender)  # on disk before it counts as received

    def _sender(self, topic: str, info) -> str | None:
        """The node that published a message (its writer's gid looked up in the graph): a robot's live and resend
        writers are one sender, and a restarted policy node is the same sender again. A writer whose node discovery
        has not named yet is no one (None), looked up again at its next message: cached under the placeholder name,
        its episodes' acknowledgements would name no node and never be taken."""
        gid = info.get("publisher_gid")
        if not gid:
            return None
        gid = bytes(gid["data"])
        if gid not in self.writers:
            self.writers.update({bytes(e.endpoint_gid): f"{e.node_namespace.rstrip('/')}/{e.node_name}"
                                 for e in self.get_publishers_info_by_topic(self.resolve_topic_name(topic))
                                 if e.node_name != SingleSource.UNKNOWN})
        return self.writers.get(gid)

    def _sender_alive(self, node: str) -> bool:
        return any(f"{ns.rstrip('/')}/{name}" == node for name, ns in self.get_node_names_and_namespaces())

    def _assemble(self, msg: Transition, raw: bytes | None, sender: str | None = None) -> None:
        try:
            msgs, ack = self.intake.offer(msg, raw)
        except TransitionError as exc:
            self.get_logger().warning(f"transition dropped: {exc}")
            return
        if msgs is not None:
            self.episodes.put(msgs)  # decoded into an Episode by the training thread
        if ack is not None:
            (robot, eid), steps = ack
            self.pub_acks.publish(EpisodeAck(robot=robot, episode_id=eid, steps=steps, sender=sender or ""))

    # --- training -------------------------------------------------------------------------------------------
    def _train(self) -> None:
        # Learning yields the CPU to ingestion (executor and DDS threads): a transition not taken in is lost
        # data, a late update is not. Linux nice values are per thread; torch threads started here inherit it.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        try:
            tr = self.run
            offline_stage(tr)
            self._publish_weights()
            self._snapshot()
            pending_ckpt = []
            while tr.env_steps < self.cfg.online_env_steps:
                self._check_stop()
                try:
                    ep = episode_from_transitions(self.episodes.get(timeout=0.5), self.params["transitions_topic"],
                                                  TRANSITION_DIMS)
                except queue.Empty:
                    continue
                learn_from_episode(tr, ep, self.featurizer.episode_features(ep))
                tr.meta["ingested_episodes"].append(key_to_meta(ep.key))
                pending_ckpt.append(ep.key)
                every = self.params["snapshot_every_steps"]
                if every and tr.env_steps // every > (tr.env_steps - ep.length) // every:
                    self._snapshot()
                self.get_logger().info(
                    f"episode {ep.robot + '/' if ep.robot else ''}{ep.episode_id}: "
                    f"{'success' if ep.success else 'failure'} in {ep.length} steps, "
                    f"intervention {ep.intervened.mean():.2f}; online steps {tr.env_steps}/"
                    f"{self.cfg.online_env_steps}, updates {tr.updates}")
                if len(pending_ckpt) >= self.params["checkpoint_every_episodes"]:
                    self._checkpoint(pending_ckpt)
                    pending_ckpt = []
            self._checkpoint(pending_ckpt)
            self._publish_weights()
            self._snapshot()
            write_result(tr, {"method": self.cfg.method, **{k: v for k, v in tr.meta.items() if k != "experiment"},
                              "online_env_steps": tr.env_steps, "online_episodes": tr.episodes,
                              "intervention_rate": tr.intervened_steps / max(tr.env_steps, 1), "updates": tr.updates,
                              "updates_per_s": tr.updates / tr.update_seconds if tr.update_seconds else None})
            self.get_logger().info(f"online stage complete: {tr.env_steps} steps; checkpoint in {self.run_dir}")
        except Stopped:
            pass
        except Exception as exc:  # reported, and the node exits non-zero
            self.get_logger().error(f"training failed: {type(exc).__name__}: {exc}")
            self.failed = True
        self.done = True

    def _check_stop(self) -> None:
        if self.stopping.is_set():
            raise Stopped

    def _checkpoint(self, keys: list) -> None:
        save_run(self.run)
        self.journal.discard(keys)

    def _snapshot(self) -> None:
        """The current policy as a weights file named by online steps, for `conrft report`."""
        if self.params["snapshot_every_steps"]:
            path = self.run_dir / "snapshots" / f"policy_{self.run.env_steps:07d}.safetensors"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(pack(self.run.policy, self.cfg)[0])

    def _maybe_publish(self, updates: int) -> None:
        self._check_stop()  # called after every update, also in the offline stage
        # Online stage only: the robot waits for the offline stage's result. Weights sent earlier would run
        # episodes that the online stage then learns from as its own, spending its budget on data of policies
        # it never was (through the graph, ~20 offline-stage episodes of make demo's 2000 online steps).
        if self.run.offline_done >= self.cfg.offline_updates and updates % self.params["publish_every_updates"] == 0:
            self._publish_weights()

    def _publish_weights(self) -> None:
        payload, sha, count = pack(self.run.policy, self.cfg)
        # Wall-clock milliseconds: versions keep increasing across learner restarts.
        self.version = max(self.version + 1, int(time.time() * 1000))
        msg = PolicyWeights(version=self.version, learner_step=self.run.updates, format="safetensors",
                            sha256=sha, payload=payload, parameter_count=count)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_weights.publish(msg)

    def _diagnostics(self) -> None:
        tr = self.run
        values = {"offline_updates": tr.offline_done, "updates": tr.updates, "online_steps": tr.env_steps,
                  "episodes": tr.episodes, "received_transitions": self.intake.journaled,
                  "duplicate_transitions": self.intake.duplicates, "weights_version": self.version,
                  "demo_buffer": len(tr.demo_buffer), "online_buffer": len(tr.online_buffer),
                  "pending_steps": self.assembler.pending_steps}
        status = DiagnosticStatus(level=DiagnosticStatus.OK, name="conrft/learner", hardware_id="conrft",
                                  message="offline" if tr.offline_done < self.cfg.offline_updates else "online",
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(msg)


def main(args=None) -> int:
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    interrupt_main_thread()
    try:
        node = LearnerNode()
    except (ConfigError, CheckpointError, BagError, ValueError, FileNotFoundError) as exc:
        print(f"learner_node: error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    node.worker.start()
    try:
        while rclpy.ok() and not node.done and not stop_requested():
            executor.spin_once(timeout_sec=SPIN_PERIOD)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.stopping.set()
        node.worker.join(timeout=10.0)  # mid-update at worst: the worker publishes nothing on a dead context
        node.journal.close()
        node.log.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 1 if node.failed else 0


if __name__ == "__main__":
    sys.exit(main())
