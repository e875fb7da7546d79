"""ROS graph vs in-process: the same HIL-ConRFT run through the node graph and through `conrft train`.

Both start from the same pretrained VLA, 20 scripted "human-like" demonstrations of pick_cube from the same
expert, noise preset and episode seeds (a bag for the learner node), the same training config
(`config/train_session.yaml`) and the same scripted human; both final policies are evaluated by the same code
on the same held-out seeds.
The target: online success through ROS within 10 points of in-process. One seed each: on a 2-core machine a
session costs ~6 minutes, so this measures agreement of one run, not of the run-to-run distributions.

    python -m conrft_bringup.parity_bench --vla out/demo/vla.safetensors --out results/ros_vs_inprocess.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from conrft_bringup.graph_bench import CONFIG
from conrft_core.checkpoint import load_checkpoint
from conrft_core.config import from_dict, load_yaml
from conrft_sim.experiment import ExperimentConfig, evaluate_session, run_experiment

TASK = "pick_cube"


def experiment(vla: Path, train_config: Path, steps: int, episodes: int) -> ExperimentConfig:
    """The in-process twin of config/sim_pick_cube.yaml; its final evaluation = the session report's."""
    train = {**load_yaml(train_config)["train"], "online_env_steps": steps, "eval_every_steps": steps,
             "eval_episodes": episodes, "unseen_eval_episodes": 0}
    return from_dict(ExperimentConfig, {"features": "vla", "vla_checkpoint": str(vla),
                                        "sim": {"task": TASK, "max_episode_steps": 100}, "train": train})


def run_ros(cfg: ExperimentConfig, vla: Path, train_config: Path, tmp: Path, episodes: int) -> dict:
    bag, run_dir, log = tmp / "demos", tmp / "ros", tmp / "session.log"
    size = str(load_checkpoint(vla)[1]["pretrain"]["backbone"]["image_size"])
    subprocess.run(["conrft", "sim-demos", "--task", TASK, "--episodes", str(cfg.demos.episodes), "--noise",
                    cfg.demos.noise, "--seed", str(cfg.demos.seed), "--image-width", size, "--image-height", size,
                    "--out", str(bag), "--quiet"], check=True)
    with open(log, "w") as out:
        code = subprocess.run(["conrft", "session", str(CONFIG / "sim_pick_cube.yaml"), f"vla_checkpoint:={vla}",
                               f"demo_bag:={bag}", f"run_dir:={run_dir}", f"train_config:={train_config}",
                               f"online_env_steps:={cfg.train.online_env_steps}", f"image_size:={size}"],
                              stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:  # the temporary folder goes with the exception: show the log's end now
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise RuntimeError(f"the session exited {code}; the end of its log:\n{tail}")
    return evaluate_session(run_dir, episodes, progress=False)


def run_inprocess(cfg: ExperimentConfig, tmp: Path) -> dict:
    result = run_experiment(cfg, tmp / "inprocess", progress=False)
    return {k: result[k] for k in ("success_rate", "mean_length", "online_env_steps", "intervention_rate", "curve")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vla", type=Path, default=Path("out/demo/vla.safetensors"))
    parser.add_argument("--train-config", type=Path, default=CONFIG / "train_session.yaml")
    parser.add_argument("--steps", type=int, default=2000, help="online steps of each run")
    parser.add_argument("--episodes", type=int, default=40, help="evaluation episodes of each final policy")
    parser.add_argument("--out", type=Path, default=Path("results/ros_vs_inprocess.json"))
    args = parser.parse_args()
    if not args.vla.exists():
        print(f"parity_bench: error: --vla {args.vla} does not exist; `make demo` (or `conrft pretrain`) writes it",
              file=sys.stderr)
        return 2
    cfg = experiment(args.vla.resolve(), args.train_config.resolve(), args.steps, args.episodes)
    with tempfile.TemporaryDirectory(prefix="conrft-parity-") as tmp:
        print(f"ROS session: {args.steps} online steps ...", flush=True)
        try:
            ros = run_ros(cfg, args.vla.resolve(), args.train_config.resolve(), Path(tmp), args.episodes)
        except RuntimeError as exc:
            print(f"parity_bench: error: {exc}", file=sys.stderr)
            return 1
        print(f"in-process: {args.steps} online steps ...", flush=True)
        inproc = run_inprocess(cfg, Path(tmp))
    gap = abs(ros["success_rate"] - inproc["success_rate"])
    result = {"task": TASK, "method": cfg.train.method, "online_env_steps": args.steps,
              "eval_episodes": args.episodes, "ros": ros, "in_process": inproc,
              "success_gap": gap, "within_10_points": gap <= 0.10}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    md = (f"| run | online steps | intervention rate | success ({args.episodes} episodes) | mean length |\n"
          f"| --- | --- | --- | --- | --- |\n"
          f"| ROS graph | {ros['online_env_steps']} | {ros['intervention_rate']:.2f} | "
          f"{ros['success_rate']:.0%} | {ros['mean_length']:.1f} |\n"
          f"| in-process | {inproc['online_env_steps']} | {inproc['intervention_rate']:.2f} | "
          f"{inproc['success_rate']:.0%} | {inproc['mean_length']:.1f} |\n\n"
          f"gap {gap * 100:.0f} points (target <= 10)\n")
    args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
