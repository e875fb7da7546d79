"""Several robots, one learner: robot time until a learner snapshot reaches the target success, for 1, 2, 4 robots.

Each run is `conrft session config/sim_fleet.yaml robots:=N` with the same VLA, demonstration bag, training config
(`--train-config`, default `config/train_session.yaml`: test seeds) and scripted human. Every robot's sim runs N
times slower than real time (`--no-slowdown`: real time), as 2 cores cannot render several robots at real time,
so robot time is what is compared: a snapshot taken after S online steps (all robots together) stands for S / N
control steps of each robot, S / N x 0.1 s. Every snapshot is evaluated in simulation on the evaluation seeds
with no human (`conrft report`'s evaluation). Target: 4 robots reach it in <= 1/3 of one robot's robot time. Each
finished run is written to `--out` at once and a rerun skips it.

    python -m conrft_bringup.fleet_bench --vla out/demo/vla.safetensors --out results/fleet_bench.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conrft_bringup.graph_bench import CONFIG
from conrft_bringup.session_runs import BenchError, image_size, load_runs, run_session
from conrft_core.config import load_yaml
from conrft_sim.experiment import evaluate_session

CONTROL_DT = 0.1  # s per control step (policy_sim.yaml's 10 Hz)


def run_fleet(robots: int, args, bag: Path, tmp: Path) -> dict:
    run_dir = tmp / "run"
    rtf = 1.0 / robots if args.slowdown else 1.0
    start = time.monotonic()
    run_session([str(CONFIG / "sim_fleet.yaml"), f"robots:={robots}", f"vla_checkpoint:={args.vla}",
                 f"demo_bag:={bag}", f"run_dir:={run_dir}", f"train_config:={args.train_config}",
                 f"online_env_steps:={args.steps}", f"image_size:={image_size(args.vla)}", f"real_time_factor:={rtf}",
                 f"snapshot_every_steps:={args.snapshot_every}"], tmp / "session.log")
    wall = time.monotonic() - start
    report = evaluate_session(run_dir, args.episodes, progress=False)
    curve = [{**p, "robot_time_s": p["env_steps"] / robots * CONTROL_DT} for p in report["curve"]]
    reached = next((p for p in curve if p["success_rate"] >= args.target), None)
    return {"robots": robots, "real_time_factor": rtf, "wall_s": wall, "online_env_steps": report["online_env_steps"],
            "intervention_rate": report["intervention_rate"], "curve": curve,
            "robot_time_to_target_s": None if reached is None else reached["robot_time_s"]}


def table(done: dict) -> str:
    s = done["settings"]
    rows = []
    for r in sorted(done["runs"], key=lambda r: r["robots"]):
        t = r["robot_time_to_target_s"]
        curve = " / ".join(f"{p['success_rate']:.0%}" for p in r["curve"])
        rows.append(f"| {r['robots']} | {r['real_time_factor']:.2f} | {'not reached' if t is None else f'{t:.0f} s'} "
                    f"| {curve} | {r['wall_s'] / 60:.1f} min |")
    split = s["train_config"].get("split", "validation")
    md = (f"Robot time until a snapshot reaches {s['target']:.0%} on {s['episodes']} evaluation episodes ({split} "
          f"seeds; camera images, frozen VLA; snapshots every {s['snapshot_every']} online steps of all robots "
          f"together):\n\n"
          "| robots | sim speed | robot time to target | success per snapshot | wall time |\n"
          "| --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n")
    by = {r["robots"]: r["robot_time_to_target_s"] for r in done["runs"]}
    if by.get(1) and by.get(4):
        md += f"\n4 robots / 1 robot: {by[4] / by[1]:.2f} (target <= 0.33)\n"
    return md


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vla", type=Path, default=Path("out/demo/vla.safetensors"))
    parser.add_argument("--train-config", type=Path, default=CONFIG / "train_session.yaml")
    parser.add_argument("--robots", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=2000, help="online steps of each run, all robots together")
    parser.add_argument("--snapshot-every", type=int, default=250, help="online steps between learner snapshots")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes of each snapshot")
    parser.add_argument("--target", type=float, default=0.9, help="success a snapshot must reach")
    parser.add_argument("--no-slowdown", dest="slowdown", action="store_false",
                        help="run every sim at real time whatever the number of robots")
    parser.add_argument("--out", type=Path, default=Path("results/fleet_bench.json"))
    args = parser.parse_args()
    if any(n < 1 for n in args.robots):
        print("fleet_bench: error: --robots must be >= 1", file=sys.stderr)
        return 2
    args.vla, args.train_config = args.vla.resolve(), args.train_config.resolve()
    settings = {"steps": args.steps, "snapshot_every": args.snapshot_every, "episodes": args.episodes,
                "target": args.target, "slowdown": args.slowdown,
                "train_config": load_yaml(args.train_config)["train"]}
    try:
        done = load_runs(args.out, settings, args.vla)
        todo = [n for n in args.robots if not any(r["robots"] == n for r in done["runs"])]
        with tempfile.TemporaryDirectory(prefix="conrft-fleet-") as tmp:
            bag, size = Path(tmp) / "demos", image_size(args.vla)
            if todo:
                subprocess.run(["conrft", "sim-demos", "--task", "pick_cube", "--episodes", "20", "--image-width",
                                size, "--image-height", size, "--out", str(bag), "--quiet"], check=True)
            for robots in todo:
                print(f"{robots} robot(s): {args.steps} online steps ...", flush=True)
                with tempfile.TemporaryDirectory(prefix=f"conrft-fleet-{robots}-") as run_tmp:
                    done["runs"].append(run_fleet(robots, args, bag, Path(run_tmp)))
                args.out.write_text(json.dumps(done, indent=2))
    except BenchError as exc:
        print(f"fleet_bench: error: {exc}", file=sys.stderr)
        return exc.status
    md = table(done)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
