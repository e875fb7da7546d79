"""Simulator benchmark (`make bench`): throughput, impedance tracking, expert quality.

Throughput is single-process (MuJoCo steps on one core; llvmpipe may use the other for rendering).

Writes a JSON file with every number and a Markdown table beside it (the README quotes the table).
Run: `python -m conrft_sim.bench --out results/sim_bench.json [--seeds 100]`.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from conrft_sim.demos import collect_episode, noise_preset
from conrft_sim.env import ConRFTSimEnv
from conrft_sim.experts import make_expert
from conrft_sim.sim import FrankaSim, SimConfig
from conrft_sim.tasks import TASKS


def throughput(task: str, render: bool, steps: int = 200, repeats: int = 3) -> float:
    """Control steps per second (10 Hz steps of 50 physics substeps each), best of `repeats` runs: the
    machine is shared, and the best run is the least disturbed one."""
    env = ConRFTSimEnv(SimConfig(task=task, cameras=("front", "wrist") if render else ()))
    rng = np.random.default_rng(0)
    best = 0.0
    for r in range(repeats):
        env.reset(seed=r)
        start = time.perf_counter()
        for i in range(steps):
            _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 7).astype(np.float32))
            if terminated or truncated:
                env.reset(seed=i)
        best = max(best, steps / (time.perf_counter() - start))
    return best


def tracking(step_m: float = 0.02) -> dict:
    """Free-space step response of the impedance controller: settling time to 2 mm and final error."""
    sim = FrankaSim(SimConfig(task="pick_cube", cameras=()))
    sim.reset(seed=0)
    pos0, quat0 = sim.ee_pose()
    goal = pos0 + np.array([step_m, 0.0, 0.0])
    sim.set_target(goal, quat0)
    dt = sim.config.physics_dt
    errors, along = [], []
    for _ in range(int(1.0 / dt)):
        sim.step_physics(1)
        errors.append(np.linalg.norm(sim.ee_pose()[0] - goal))
        along.append(sim.ee_pose()[0][0] - pos0[0])
    errors = np.array(errors)
    outside = np.nonzero(errors >= 0.002)[0]
    settle = (outside[-1] + 1) * dt if len(outside) else 0.0
    return {"step_m": step_m, "settling_time_2mm_s": float(settle), "error_at_0.3s_m": float(errors[int(0.3 / dt) - 1]),
            "final_error_m": float(errors[-1]), "overshoot_m": float(max(0.0, max(along) - step_m))}


def experts(task: str, setting: str, seeds: int) -> dict:
    env = ConRFTSimEnv(SimConfig(task=task, cameras=()))
    expert = make_expert(task, noise_preset(setting, task), np.random.default_rng(1))
    eps = [collect_episode(env, expert, i, seed=10_000 + i) for i in tqdm(range(seeds), desc=f"{task}/{setting}",
                                                                          leave=False)]
    ok = [e.length for e in eps if e.success]
    return {"task": task, "setting": setting, "episodes": seeds, "success_rate": len(ok) / seeds,
            "length_mean": float(np.mean(ok)) if ok else None, "length_std": float(np.std(ok)) if ok else None,
            "length_min": int(min(ok)) if ok else None, "length_max": int(max(ok)) if ok else None}


def markdown(res: dict) -> str:
    lines = ["| measure | value |", "| --- | --- |"]
    for task, r in res["throughput"].items():
        lines.append(f"| {task}: control steps/s, 2 cameras 128x128 | {r['render']:.0f} |")
        lines.append(f"| {task}: control steps/s, no rendering | {r['no_render']:.0f} |")
    t = res["tracking"]
    lines += [f"| impedance 2 cm step: settling time to 2 mm | {t['settling_time_2mm_s'] * 1000:.0f} ms |",
              f"| impedance 2 cm step: error at 0.3 s | {t['error_at_0.3s_m'] * 1000:.2f} mm |",
              f"| impedance 2 cm step: overshoot | {t['overshoot_m'] * 1000:.2f} mm |"]
    lines += ["", "| task | expert setting | success | length mean ± std (min-max) |", "| --- | --- | --- | --- |"]
    for e in res["experts"]:
        spread = (f"{e['length_mean']:.1f} ± {e['length_std']:.1f} ({e['length_min']}-{e['length_max']})"
                  if e["length_mean"] is not None else "-")
        lines.append(f"| {e['task']} | {e['setting']} | {100 * e['success_rate']:.0f}% of {e['episodes']} | {spread} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/sim_bench.json"))
    parser.add_argument("--seeds", type=int, default=100, help="expert episodes per task and setting")
    args = parser.parse_args()
    res = {"machine": platform.processor() or platform.machine(), "throughput": {}, "experts": []}
    for task in sorted(TASKS):
        res["throughput"][task] = {"render": throughput(task, True), "no_render": throughput(task, False)}
        print(f"{task}: {res['throughput'][task]['render']:.0f} steps/s with cameras, "
              f"{res['throughput'][task]['no_render']:.0f} without")
    res["tracking"] = tracking()
    for task in sorted(TASKS):
        for setting in ("zero", "human_like"):
            res["experts"].append(experts(task, setting, args.seeds))
            print(res["experts"][-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    args.out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
