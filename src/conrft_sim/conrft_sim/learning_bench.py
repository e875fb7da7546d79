"""Learning benchmark (`conrft bench`): every method on every task, several seeds, the same demonstrations.

Protocol (issue: "conrft_core: the learning library and the evidence that it works"): per task, 20
demonstrations in the human-like setting, SFT / Cal-ConRFT / CO-RFT offline, HIL-ConRFT with H = 1 and with
a chunk H > 1, HG-DAgger and HIL-SERL at the same online step budget, evaluation on fixed seeds distinct from
training seeds (training range and unseen range). Each run writes its own JSON (result + exact config) under
`out/runs/`; `summary.json`, `summary.md` (the README table) and one learning-curve PNG per task sit in `out/`.
Runs already finished (their JSON exists and holds the same config) are skipped, so an interrupted benchmark
continues where it stopped; `jobs` > 1 runs several at once, each in its own process.
"""
from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from conrft_core.config import first_difference, from_dict, to_dict, value_at
from conrft_sim.experiment import ExperimentConfig, load_experiment, run_experiment

# label -> config overrides; `{H}` stands for the chunk length of the chunked variants.
METHOD_OVERRIDES = {
    "sft": {"train.method": "sft"},
    "cal_conrft": {"train.method": "cal_conrft"},
    "co_rft": {"train.method": "co_rft", "train.agent.consistency.horizon": "{H}"},
    "hil_conrft": {"train.method": "hil_conrft"},
    "hil_conrft_chunked": {"train.method": "hil_conrft", "train.agent.consistency.horizon": "{H}"},
    "hg_dagger": {"train.method": "hg_dagger"},
    "hil_serl": {"train.method": "hil_serl"},
}
# The benchmark protocol: it overrides these keys of the config file, and --set overrides it (the reduced runs of
# results/README.md).
PROTOCOL = {"train.offline_updates": 1000, "train.online_env_steps": 12000, "train.eval_every_steps": 3000,
            "train.eval_episodes": 100, "train.unseen_eval_episodes": 100}
TASKS = ("pick_cube", "peg_insert", "drawer_open")
FIELDS = ("success_rate", "mean_length", "unseen_success_rate", "online_env_steps", "intervention_rate",
          "wall_time_s", "updates_per_s", "env_steps_per_s")


def run_benchmark(config: Path, out: Path, tasks=TASKS, methods=tuple(METHOD_OVERRIDES), seeds=(0, 1, 2),
                  horizon: int = 4, overrides: dict | None = None, progress: bool = True, jobs: int = 1) -> dict:
    """Every (task, method, seed) not finished in `out`; `jobs` > 1 runs that many at once, each in its own
    process (`out/logs/` holds their output). Raises RuntimeError naming the failed runs, after the summary."""
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    out.mkdir(parents=True, exist_ok=True)
    unknown = [m for m in methods if m not in METHOD_OVERRIDES]
    if unknown:
        raise ValueError(f"unknown benchmark method(s) {unknown}; choose from {', '.join(METHOD_OVERRIDES)}")
    pending = []
    for task in tasks:
        for method in methods:
            for seed in seeds:
                path = out / "runs" / f"{task}_{method}_seed{seed}.json"
                sets = {k: (horizon if v == "{H}" else v) for k, v in METHOD_OVERRIDES[method].items()}
                cfg = load_experiment(config, {**PROTOCOL, **(overrides or {}), **sets, "sim.task": task,
                                               "train.seed": seed, "demos.seed": seed * 1000})
                if path.exists():
                    _check_same_config(path, cfg)
                else:
                    pending.append((path, cfg, method, seed))
    failed = []
    if jobs == 1:
        for path, cfg, method, seed in pending:
            print(f"== {cfg.sim.task} {method} seed {seed}", flush=True)
            run_one(path, cfg, method, seed, progress)
    else:
        failed = _run_parallel(pending, jobs, out / "logs")
    summary = summarize(out)
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed: {', '.join(failed)}; their output is in {out / 'logs'}")
    return summary


def run_one(path: Path, cfg: ExperimentConfig, label: str, seed: int, progress: bool = True) -> None:
    """One run; its JSON appears only when it is complete (an interrupted run leaves nothing to skip)."""
    start = time.perf_counter()
    result = run_experiment(cfg, run_dir=None, progress=progress)
    result.update(label=label, seed=seed, wall_time_s=time.perf_counter() - start)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, path)


def _run_parallel(pending: list, jobs: int, logs: Path) -> list[str]:
    """`jobs` runs at a time, each `python -m conrft_sim.learning_bench` with its resolved config as JSON and
    one torch thread unless OMP_NUM_THREADS says otherwise; returns the names of the runs that failed, in
    protocol order (completion order varies from one machine to the next)."""
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    queue, running, failed = list(pending), [], set()
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a plain `kill` also stops the runs
    try:
        while queue or running:
            while queue and len(running) < jobs:
                path, cfg, label, seed = queue.pop(0)
                log = (logs / f"{path.stem}.log").open("w")
                cmd = [sys.executable, "-m", "conrft_sim.learning_bench", str(path), label, str(seed),
                       json.dumps(to_dict(cfg))]
                # tracked at once, so that an interrupt from here on stops this run too
                running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), path, log))
                print(f"== {path.stem} started (output: {log.name})", flush=True)
            time.sleep(0.2)
            for item in [r for r in running if r[0].poll() is not None]:
                running.remove(item)
                proc, path, log = item
                log.close()
                if proc.returncode:
                    failed.add(path.stem)
                print(f"== {path.stem} " + (f"FAILED (exit {proc.returncode}, see {log.name})" if proc.returncode
                                             else "finished"), flush=True)
    finally:  # interrupted: stop the runs still going (their JSON never appears); a second kill waits for that
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for proc, _, log in running:
            proc.terminate()
            proc.wait()
            log.close()
        signal.signal(signal.SIGTERM, previous)
    return [path.stem for path, *_ in pending if path.stem in failed]


def _check_same_config(path: Path, cfg: ExperimentConfig) -> None:
    """A finished run is skipped only if it was made with this configuration: otherwise a changed --set would
    leave old numbers in the table under the new settings. The stored config is read by the current code, so
    keys added since (with their defaults) do not count as a change."""
    stored = to_dict(from_dict(ExperimentConfig, json.loads(path.read_text())["experiment"]))
    wanted = to_dict(cfg)
    key = first_difference(stored, wanted)
    if key:
        old, new = value_at(stored, key), value_at(wanted, key)
        raise ValueError(f"{path} was run with {key}={old!r}, this benchmark asks for {new!r}; "
                         f"pass another --out (or --set {key}={old}), or delete the file to run it again")


def summarize(out: Path) -> dict:
    """Mean and spread over seeds per (task, method), the Markdown table and the learning-curve plots, over
    every finished run in `out` (a call for some methods or tasks keeps the others' rows)."""
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    table: dict = {}
    for task in TASKS:
        for method in METHOD_OVERRIDES:
            mine = [r for r in runs if r["task"] == task and r["label"] == method]
            if not mine:
                continue
            entry = {"seeds": [r["seed"] for r in mine]}
            for key in FIELDS:
                values = [r[key] for r in mine if r.get(key) is not None]
                entry[key] = {"mean": float(np.mean(values)), "std": float(np.std(values))} if values else None
            table.setdefault(task, {})[method] = entry
    summary = {"machine": f"{platform.machine()}, {platform.node()}", "table": table}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(markdown(table))
    for task in table:
        plot_curves(task, [r for r in runs if r["task"] == task], out / f"curve_{task}.png")
    return summary


def _fmt(entry, key, pct=False):
    v = entry.get(key)
    if v is None:
        return "-"
    if pct:
        return f"{100 * v['mean']:.0f}% ± {100 * v['std']:.0f}"
    return f"{v['mean']:.1f}" if v["mean"] < 1000 else f"{v['mean']:.0f}"


def markdown(table: dict) -> str:
    lines = ["| task | method | seeds | success | mean length | unseen success | online steps | intervention rate "
             "| wall time (s) | updates/s | env steps/s |", "|" + " --- |" * 11]
    for task, methods in table.items():
        for method, e in methods.items():
            lines.append(f"| {task} | {method} | {len(e['seeds'])} | {_fmt(e, 'success_rate', True)} | "
                         f"{_fmt(e, 'mean_length')} | {_fmt(e, 'unseen_success_rate', True)} | "
                         f"{_fmt(e, 'online_env_steps')} | {_fmt(e, 'intervention_rate')} | "
                         f"{_fmt(e, 'wall_time_s')} | {_fmt(e, 'updates_per_s')} | {_fmt(e, 'env_steps_per_s')} |")
    return "\n".join(lines) + "\n"


def plot_curves(task: str, runs: list[dict], path: Path) -> None:
    """Success vs online steps (mean over seeds) for online methods; offline ones as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    label = lambda r: r.get("label", r["method"])  # noqa: E731 - a `conrft train` result has no bench label
    labels = sorted({label(r) for r in runs})
    budget = max([r["online_env_steps"] for r in runs] + [1])
    for i, name in enumerate(labels):  # one colour per method (hlines do not advance the colour cycle)
        mine = [r for r in runs if label(r) == name]
        if len(mine[0]["curve"]) > 1:
            steps = [p["env_steps"] for p in mine[0]["curve"]]
            n = min(len(r["curve"]) for r in mine)
            success = np.mean([[p["success_rate"] for p in r["curve"][:n]] for r in mine], axis=0)
            ax.plot(steps[:n], 100 * success, marker="o", ms=3, label=name, color=f"C{i}")
        else:
            ax.hlines(100 * np.mean([r["success_rate"] for r in mine]), 0, budget, linestyles="--", label=name,
                      color=f"C{i}")
    ax.set(xlabel="online env steps", ylabel="success rate (%)", ylim=(-2, 102), title=f"{task}: evaluation success")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":  # one run of a parallel benchmark: PATH LABEL SEED CONFIG_JSON (see _run_parallel)
    run_one(Path(sys.argv[1]), from_dict(ExperimentConfig, json.loads(sys.argv[4])), sys.argv[2], int(sys.argv[3]))
