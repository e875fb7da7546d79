"""Benchmarks of the node graph (`make bench`; results/graph_bench.{json,md}).

- inference: policy latency per chunk in-process (frozen VLA forward + consistency head, one-step sampling)
  for the default VLA (128x128 images) and the CPU demo VLA (64x64), p50 / p99;
- control: sim node + policy node over DDS at 10 Hz on sim time: jitter of the controller commands as the
  controller receives them, and the in-graph inference latency from the ActionChunk messages;
- hot swap: weights of the default model published to the running policy node, time until the node reports
  the new version (its /diagnostics are published on adoption), p50 / max;
- ingestion: a learner node receiving transitions with two 128x128 images each, published as fast as one
  Python publisher can, counted from the learner's journal (every received transition is written there).
- streaming: the target streamer's targets and the policy node's step timing on wall time under a training load,
  and the sim arm's acceleration stepped vs streamed (conrft_bringup.stream_bench).

    python -m conrft_bringup.graph_bench --out results/graph_bench.json [--seconds 20]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve()
while not (ROOT / "config").is_dir() and ROOT.parent != ROOT:  # the workspace root, from src/ or build/
    ROOT = ROOT.parent
CONFIG = ROOT / "config"


def _vla(path: Path, size: int, d_model: int, layers: int):
    from conrft_core.learning.backbone import BackboneConfig
    from conrft_core.learning.vla import VLA, PretrainConfig, save_vla

    model = VLA(PretrainConfig(backbone=BackboneConfig(image_size=size, d_model=d_model, num_layers=layers)))
    save_vla(path, model)
    return model


def _policy(feature_dim: int):
    import torch

    from conrft_core.config import from_dict
    from conrft_core.learning.methods import TrainConfig
    from conrft_core.learning.policy import Policy, build_agent

    cfg = from_dict(TrainConfig, {"device": "cpu"})
    return Policy(build_agent(cfg, feature_dim), feature_dim, torch.device("cpu")), cfg


def bench_inference(tmp: Path, iterations: int = 200) -> dict:
    from conrft_core.learning.vla import VLAFeaturizer

    out = {}
    for name, size, d, layers in (("default_vla_128px", 128, 128, 3), ("demo_vla_64px", 64, 64, 2)):
        featurizer = VLAFeaturizer(_vla(tmp / f"{name}.safetensors", size, d, layers))
        policy, _ = _policy(featurizer.dim)
        rng = np.random.default_rng(0)
        obs = {"front": rng.integers(0, 255, (size, size, 3), np.uint8),
               "wrist": rng.integers(0, 255, (size, size, 3), np.uint8),
               "proprio": rng.normal(size=19).astype(np.float32), "instruction": "pick up the red cube"}
        times = []
        for i in range(iterations + 10):
            start = time.perf_counter()
            policy(featurizer(obs))
            if i >= 10:  # warm-up
                times.append(time.perf_counter() - start)
        out[name] = {"p50_ms": 1e3 * float(np.percentile(times, 50)), "p99_ms": 1e3 * float(np.percentile(times, 99)),
                     "iterations": iterations}
    return out


class _Graph:
    """Nodes as processes (the session machinery) plus an rclpy node in this process to measure them."""

    def __init__(self, nodes: dict, log: Path, use_sim_time: bool):
        import rclpy

        from conrft_bringup.session import NodeSpec, Session, SessionConfig, SessionOptions, resolve_streamers

        cfg = SessionConfig(session=SessionOptions(use_sim_time=use_sim_time), nodes={})
        specs = resolve_streamers({name: NodeSpec(**spec) for name, spec in nodes.items()})  # as a session does
        self.log = open(log, "w")
        self.session = Session(cfg, specs, out=self.log)
        self.session.start()
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("graph_bench", context=self.ctx)
        from rclpy.executors import SingleThreadedExecutor

        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)

    def spin_for(self, seconds: float, until=None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)
            if until is not None and until():
                return True
        return until is None

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)
        self.session.stop(0)
        self.log.close()


def _weights_msg(policy, cfg, version: int):
    from conrft_core.robot.weights import pack
    from conrft_interfaces.msg import PolicyWeights

    payload, sha, count = pack(policy, cfg)
    return PolicyWeights(version=version, learner_step=version, format="safetensors", sha256=sha, payload=payload,
                         parameter_count=count)


def bench_control_and_swap(tmp: Path, seconds: float, swaps: int = 10) -> dict:
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped

    from conrft_core.learning.vla import load_vla
    from conrft_interfaces.msg import ActionChunk, PolicyWeights
    from conrft_policy.link_qos import WEIGHTS_QOS

    vla = tmp / "default_vla_128px.safetensors"
    feature_dim = load_vla(vla).feature_dim
    graph = _Graph({
        "sim": {"package": "conrft_sim", "executable": "sim_node", "params": [str(CONFIG / "sim_node.yaml")],
                "parameters": {"image_width": 128, "image_height": 128}},
        "policy": {"package": "conrft_policy", "executable": "policy_node",
                   "params": [str(CONFIG / "policy_sim.yaml")],
                   # No learner acknowledges here: its outbox must not wait in ROS_HOME for a later session's.
                   "parameters": {"vla_checkpoint": str(vla), "instruction": "pick up the red cube",
                                  "outbox_dir": str(tmp / "outbox")}},
    }, tmp / "control.log", use_sim_time=True)
    try:
        node = graph.node
        targets, chunks, versions = [], [], {}
        stamps = []  # sim time at which the policy node sent each command

        def on_target(msg):
            targets.append(time.monotonic())
            stamps.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)

        node.create_subscription(PoseStamped, "/cartesian_impedance_controller/target_frame", on_target, 10)
        node.create_subscription(ActionChunk, "/conrft/action_chunk", chunks.append, 10)

        def on_diag(msg):
            for status in msg.status:
                if status.name == "conrft/policy":
                    v = int({kv.key: kv.value for kv in status.values}["policy_version"])
                    versions.setdefault(v, time.monotonic())

        node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
        pub = node.create_publisher(PolicyWeights, "/conrft/policy_weights", WEIGHTS_QOS)
        policy, cfg = _policy(feature_dim)
        pub.publish(_weights_msg(policy, cfg, 1))
        if not graph.spin_for(120, until=lambda: len(targets) > 20):
            raise RuntimeError(f"the policy node never commanded the controller; see {tmp / 'control.log'}")
        targets.clear()
        stamps.clear()
        chunks.clear()
        graph.spin_for(seconds)
        dt, dt_sim = np.diff(targets), np.diff(stamps)
        latencies = [c.inference_latency for c in chunks]
        swap_ms, payload = [], 0
        for k in range(swaps):
            msg = _weights_msg(policy, cfg, 100 + k)
            payload = len(msg.payload)
            sent = time.monotonic()
            pub.publish(msg)
            if graph.spin_for(5, until=lambda v=100 + k: v in versions):
                swap_ms.append(1e3 * (versions[100 + k] - sent))
            graph.spin_for(1.0)
    finally:
        graph.close()
    return {
        "control": {"commands": len(targets), "period_ms_mean": 1e3 * float(dt.mean()),
                    "jitter_ms_std": 1e3 * float(dt.std()),
                    "jitter_ms_p99_abs": 1e3 * float(np.percentile(np.abs(dt - 0.1), 99)),
                    "sim_time_period_ms_std": 1e3 * float(dt_sim.std()),
                    "inference_in_graph_ms_p50": 1e3 * float(np.percentile(latencies, 50)),
                    "inference_in_graph_ms_p99": 1e3 * float(np.percentile(latencies, 99))},
        "hot_swap": {"payload_bytes": payload, "swaps": swaps, "adopted": len(swap_ms),
                     "p50_ms": float(np.percentile(swap_ms, 50)) if swap_ms else None,
                     "max_ms": float(max(swap_ms)) if swap_ms else None},
    }


def bench_ingestion(tmp: Path, episodes: int = 30, steps: int = 100) -> dict:
    """Transitions/s the learner node journals. The messages are serialized before the clock starts: the
    measurement is the learner's (DDS receive, deserialize, journal, episode assembly, with the frozen VLA
    featurizing received episodes at the same time), not this process's serialization (~0.4 ms a message)."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    from conrft_bringup.cli import main as conrft
    from conrft_core.data.journal import TransitionJournal
    from conrft_interfaces.msg import Transition
    from conrft_policy.link_qos import TRANSITIONS_QOS

    bag, run_dir, train = tmp / "ingest_demos", tmp / "ingest_run", tmp / "ingest_train.yaml"
    conrft(["sim-demos", "--task", "pick_cube", "--episodes", "1", "--out", str(bag), "--quiet", "--force"])
    train.write_text(json.dumps({"train": {"offline_updates": 1, "updates_per_env_step": 0.0,
                                           "online_env_steps": 10 ** 9}}))
    graph = _Graph({"learner": {
        "package": "conrft_learner", "executable": "learner_node", "params": [str(CONFIG / "learner.yaml")],
        "parameters": {"vla_checkpoint": str(tmp / "default_vla_128px.safetensors"), "demo_bags": [str(bag)],
                       "run_dir": str(run_dir), "config_file": str(train), "checkpoint_every_episodes": 10 ** 6,
                       "snapshot_every_steps": 0}}}, tmp / "ingest.log", use_sim_time=False)
    try:
        pub = graph.node.create_publisher(Transition, "/conrft/transitions", TRANSITIONS_QOS)
        if not graph.spin_for(120, until=lambda: pub.get_subscription_count() > 0):
            raise RuntimeError(f"the learner never subscribed; see {tmp / 'ingest.log'}")
        rng = np.random.default_rng(0)
        image = lambda: Image(height=128, width=128, encoding="rgb8", step=384,  # noqa: E731
                              data=rng.integers(0, 255, 128 * 128 * 3, np.uint8).tobytes())
        cams = [image(), image()]
        journal = TransitionJournal(run_dir / "journal")
        raw = [serialize_message(Transition(
            episode_id=1000 + e, step=t, camera_names=["front", "wrist"], images=cams, proprio=[0.0] * 19,
            instruction="pick up the red cube", action=[0.0] * 7, policy_action=[0.0] * 7, reward=-0.05,
            truncated=t == steps - 1, final_images=cams if t == steps - 1 else [],
            final_proprio=[0.0] * 19 if t == steps - 1 else [])) for e in range(episodes) for t in range(steps)]
        start = time.monotonic()
        for msg in raw:
            pub.publish(msg)
        published = time.monotonic() - start
        # Done when the journal holds every record (4-byte length + message): a stat per poll, since parsing
        # hundreds of MB every 10 ms would take the CPU the learner is being measured on.
        expected = sum(4 + len(r) for r in raw)
        size = lambda: sum(f.stat().st_size for f in (run_dir / "journal").glob("episode_*.bin"))  # noqa: E731
        graph.spin_for(60, until=lambda: size() >= expected)
        elapsed = time.monotonic() - start
        received = sum(len(journal.records(e)) for e in journal.episodes())
    finally:
        graph.close()
    return {"transitions": len(raw), "received": received, "image_bytes_per_transition": 2 * 128 * 128 * 3,
            "publish_seconds": published, "seconds": elapsed, "rate_per_s": received / elapsed}


def markdown(r: dict) -> str:
    inf, ctl, swap, ing = r["inference"], r["control"], r["hot_swap"], r["ingestion"]
    rows = [
        "| measurement | result | target |", "| --- | --- | --- |",
        *(f"| policy inference per chunk, {k} (in-process) | p50 {v['p50_ms']:.1f} ms, p99 {v['p99_ms']:.1f} ms | "
          f"< 100 ms (10 Hz) |" for k, v in inf.items()),
        f"| policy inference per chunk in the graph (default VLA) | p50 {ctl['inference_in_graph_ms_p50']:.1f} ms, "
        f"p99 {ctl['inference_in_graph_ms_p99']:.1f} ms | < 100 ms |",
        f"| control commands over DDS ({ctl['commands']} at 10 Hz) | period {ctl['period_ms_mean']:.1f} ms, "
        f"wall-clock jitter std {ctl['jitter_ms_std']:.1f} ms, p99 abs {ctl['jitter_ms_p99_abs']:.1f} ms; "
        f"sim-time period std {ctl['sim_time_period_ms_std']:.1f} ms | |",
        f"| weight hot swap, publish -> adopted ({swap['payload_bytes'] / 1e6:.2f} MB, {swap['adopted']}/"
        f"{swap['swaps']}) | p50 {swap['p50_ms'] or float('nan'):.0f} ms, max {swap['max_ms'] or float('nan'):.0f} ms"
        f" | <= 100 ms |",
        f"| learner ingestion, 2 x 128x128 images per transition ({ing['received']}/{ing['transitions']}) | "
        f"{ing['rate_per_s']:.0f} transitions/s | >= 1000/s |",
    ]
    if "streaming" in r:
        from conrft_bringup.stream_bench import markdown as stream_rows

        rows += stream_rows(r["streaming"])
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/graph_bench.json"))
    parser.add_argument("--seconds", type=float, default=20.0, help="control-jitter measurement window")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="conrft-graph-bench-") as tmp:
        tmp = Path(tmp)
        result = {"inference": bench_inference(tmp)}
        print(json.dumps(result["inference"]), flush=True)
        result.update(bench_control_and_swap(tmp, args.seconds))
        print(json.dumps({k: result[k] for k in ("control", "hot_swap")}), flush=True)
        result["ingestion"] = bench_ingestion(tmp)
        from conrft_bringup import stream_bench  # it builds on this module's helpers

        result["streaming"] = stream_bench.run(tmp, args.seconds)
    result["machine"] = {"cpus": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
