"""ROS graph vs in-process: the same HIL-ConRFT run through the node graph and through `conrft train`.

Both start from the same pretrained VLA, 20 scripted "human-like" demonstrations of pick_cube from the same
expert, noise preset and episode seeds (a bag for the learner node), the same training config
(`config/train_session.yaml`, with its seed replaced by each of `--seeds` on the validation split) and the same
scripted human; every final policy is evaluated by the same code on the same held-out seeds. The target: the
mean gap between the two sides' success over the seeds within 10 points. A session costs 6-12 minutes on a
2-core machine: each finished run is written to `--out` at once and a rerun skips it (delete the file to start
over).

    python -m conrft_bringup.parity_bench --vla out/demo/vla.safetensors --out results/ros_vs_inprocess.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from conrft_bringup.graph_bench import CONFIG
from conrft_bringup.session_runs import BenchError, image_size, load_runs, run_session
from conrft_core.config import from_dict, load_yaml
from conrft_sim.experiment import ExperimentConfig, evaluate_session, run_experiment

TASK = "pick_cube"


def experiment(vla: Path, train_config: Path, steps: int, episodes: int, seed: int) -> ExperimentConfig:
    """The in-process twin of config/sim_pick_cube.yaml; its final evaluation = the session report's."""
    train = {**load_yaml(train_config)["train"], "online_env_steps": steps, "eval_every_steps": steps,
             "eval_episodes": episodes, "unseen_eval_episodes": 0, "seed": seed, "split": "validation"}
    return from_dict(ExperimentConfig, {"features": "vla", "vla_checkpoint": str(vla),
                                        "sim": {"task": TASK, "max_episode_steps": 100}, "train": train})


def run_ros(cfg: ExperimentConfig, vla: Path, train_config: Path, tmp: Path, episodes: int) -> dict:
    bag, run_dir = tmp / "demos", tmp / "ros"
    seeded = tmp / "train.yaml"  # the learner's config with this run's seed and split
    seeded.write_text(yaml.safe_dump({"train": {**load_yaml(train_config)["train"], "seed": cfg.train.seed,
                                                "split": cfg.train.split}}))
    size = image_size(vla)
    subprocess.run(["conrft", "sim-demos", "--task", TASK, "--episodes", str(cfg.demos.episodes), "--noise",
                    cfg.demos.noise, "--seed", str(cfg.demos.seed), "--image-width", size, "--image-height", size,
                    "--out", str(bag), "--quiet"], check=True)
    run_session([str(CONFIG / "sim_pick_cube.yaml"), f"vla_checkpoint:={vla}", f"demo_bag:={bag}",
                 f"run_dir:={run_dir}", f"train_config:={seeded}", f"online_env_steps:={cfg.train.online_env_steps}",
                 f"image_size:={size}"], tmp / "session.log")
    return evaluate_session(run_dir, episodes, progress=False)


def run_inprocess(cfg: ExperimentConfig, tmp: Path) -> dict:
    result = run_experiment(cfg, tmp / "inprocess", progress=False)
    return {k: result[k] for k in ("success_rate", "mean_length", "online_env_steps", "intervention_rate", "curve")}


def table(runs: list[dict], episodes: int) -> str:
    rows = [f"| {r['side']} | {r['seed']} | {r['online_env_steps']} | {r['intervention_rate']:.2f} | "
            f"{r['success_rate']:.0%} | {r['mean_length']:.1f} |" for r in runs]
    md = (f"| run | training seed | online steps | intervention rate | success ({episodes} episodes) | mean length |\n"
          f"| --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n")
    gaps = gap_summary(runs)
    if gaps:
        md += (f"\ngap per seed (ROS - in-process): {', '.join(f'{g * 100:+.0f}' for g in gaps['gaps'])} points; "
               f"mean {gaps['mean_gap'] * 100:+.1f}, spread (std) {gaps['gap_std'] * 100:.1f} (target |mean| <= 10)\n")
    return md


def gap_summary(runs: list[dict]) -> dict | None:
    by = {(r["side"], r["seed"]): r["success_rate"] for r in runs}
    seeds = sorted(s for side, s in by if side == "ROS graph" and ("in-process", s) in by)
    if not seeds:
        return None
    gaps = [by["ROS graph", s] - by["in-process", s] for s in seeds]
    return {"seeds": seeds, "gaps": gaps, "mean_gap": statistics.mean(gaps),
            "gap_std": statistics.stdev(gaps) if len(gaps) > 1 else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vla", type=Path, default=Path("out/demo/vla.safetensors"))
    parser.add_argument("--train-config", type=Path, default=CONFIG / "train_session.yaml")
    parser.add_argument("--steps", type=int, default=2000, help="online steps of each run")
    parser.add_argument("--episodes", type=int, default=40, help="evaluation episodes of each final policy")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds (validation split), one run per side each")
    parser.add_argument("--out", type=Path, default=Path("results/ros_vs_inprocess.json"))
    args = parser.parse_args()
    # The VLA is not part of the settings: `make demo` pretrains the same one (tensor for tensor) on every machine.
    settings = {"task": TASK, "online_env_steps": args.steps, "eval_episodes": args.episodes,
                "train_config": load_yaml(args.train_config)["train"]}
    try:
        done = load_runs(args.out, settings, args.vla)
    except BenchError as exc:
        print(f"parity_bench: error: {exc}", file=sys.stderr)
        return exc.status
    for seed in args.seeds:
        cfg = experiment(args.vla.resolve(), args.train_config.resolve(), args.steps, args.episodes, seed)
        for side in ("ROS graph", "in-process"):
            if any(r["side"] == side and r["seed"] == seed for r in done["runs"]):
                continue
            print(f"{side}, training seed {seed}: {args.steps} online steps ...", flush=True)
            with tempfile.TemporaryDirectory(prefix="conrft-parity-") as tmp:
                try:
                    result = run_ros(cfg, args.vla.resolve(), args.train_config.resolve(), Path(tmp),
                                     args.episodes) if side == "ROS graph" else run_inprocess(cfg, Path(tmp))
                except BenchError as exc:
                    print(f"parity_bench: error: {exc}", file=sys.stderr)
                    return exc.status
            done["runs"].append({"side": side, "seed": seed, **result})
            done["summary"] = gap_summary(done["runs"])
            args.out.write_text(json.dumps(done, indent=2))
    md = table(done["runs"], args.episodes)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
