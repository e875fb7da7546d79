"""The learning benchmark's bookkeeping: one JSON per run with the exact config, resumable, summary table and
learning-curve plot (tiny runs; the real numbers come from `conrft bench`)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ["MUJOCO_GL"] = "egl"

import pytest  # noqa: E402

from conrft_sim.learning_bench import run_benchmark  # noqa: E402

TINY = {"sim.max_episode_steps": 25, "demos.episodes": 2, "demos.noise": "zero", "train.offline_updates": 5,
        "train.online_env_steps": 25, "train.batch_size": 8, "train.eval_episodes": 1, "train.eval_every_steps": 25,
        "train.device": "cpu", "train.agent.consistency.hidden_dim": 16, "train.agent.critic.hidden_dim": 16,
        "train.sac.hidden_dim": 16}


def test_runs_are_recorded_summarised_and_not_repeated(tmp_path):
    kwargs = dict(tasks=("peg_insert",), methods=("sft", "hil_conrft_chunked"), seeds=(0,), horizon=2,
                  overrides=TINY, progress=False)
    summary = run_benchmark("config/train_sim.yaml", tmp_path, **kwargs)
    runs = sorted((tmp_path / "runs").glob("*.json"))
    assert [p.name for p in runs] == ["peg_insert_hil_conrft_chunked_seed0.json", "peg_insert_sft_seed0.json"]
    chunked = json.loads(runs[0].read_text())
    assert chunked["config"]["agent"]["consistency"]["horizon"] == 2 and chunked["config"]["method"] == "hil_conrft"
    assert chunked["online_env_steps"] >= 25 and len(chunked["curve"]) >= 2 and chunked["wall_time_s"] > 0
    assert set(summary["table"]["peg_insert"]) == {"sft", "hil_conrft_chunked"}
    table = (tmp_path / "summary.md").read_text()
    assert "| peg_insert | sft | 1 |" in table and (tmp_path / "curve_peg_insert.png").stat().st_size > 5_000

    stamp = runs[1].stat().st_mtime_ns
    summary = run_benchmark("config/train_sim.yaml", tmp_path, **{**kwargs, "methods": ("sft",)})
    assert runs[1].stat().st_mtime_ns == stamp  # finished runs are skipped
    assert set(summary["table"]["peg_insert"]) == {"sft", "hil_conrft_chunked"}  # the summary keeps every run

    changed = {**kwargs, "methods": ("sft",), "overrides": {**TINY, "train.offline_updates": 6}}
    with pytest.raises(ValueError, match=r"train\.offline_updates=5, this benchmark asks for 6"):
        run_benchmark("config/train_sim.yaml", tmp_path, **changed)  # an old result is not passed off as new
    assert runs[1].stat().st_mtime_ns == stamp

    with pytest.raises(ValueError, match="unknown benchmark method"):
        run_benchmark("config/train_sim.yaml", tmp_path, methods=("ppo",), overrides=TINY)


def test_parallel_runs_each_in_its_own_process_and_failures_are_named(tmp_path):
    kwargs = dict(tasks=("peg_insert",), methods=("sft",), seeds=(0, 1), overrides=TINY, progress=False, jobs=2)
    summary = run_benchmark("config/train_sim.yaml", tmp_path / "ok", **kwargs)
    runs = [json.loads((tmp_path / "ok" / "runs" / f"peg_insert_sft_seed{s}.json").read_text()) for s in (0, 1)]
    assert [(r["label"], r["seed"], r["config"]["seed"]) for r in runs] == [("sft", 0, 0), ("sft", 1, 1)]
    assert summary["table"]["peg_insert"]["sft"]["seeds"] == [0, 1]
    assert "offline sft" in (tmp_path / "ok" / "logs" / "peg_insert_sft_seed1.log").read_text()  # the run's output

    with pytest.raises(ValueError, match="--jobs must be >= 1"):
        run_benchmark("config/train_sim.yaml", tmp_path / "ok", **{**kwargs, "jobs": 0})
    broken = {**TINY, "features": "vla", "vla_checkpoint": str(tmp_path / "missing.safetensors")}
    with pytest.raises(RuntimeError, match="2 run.s. failed: peg_insert_sft_seed0, peg_insert_sft_seed1"):
        run_benchmark("config/train_sim.yaml", tmp_path / "bad", **{**kwargs, "overrides": broken})
    assert not list((tmp_path / "bad").glob("runs/*.json"))  # nothing a rerun would skip
    assert "missing.safetensors" in (tmp_path / "bad" / "logs" / "peg_insert_sft_seed0.log").read_text()


def _bench_children(marker: str) -> list[int]:
    """PIDs of live `python -m conrft_sim.learning_bench` processes whose command line holds `marker`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")  # arguments split by NUL
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if "\0-m\0conrft_sim.learning_bench\0" in cmd and marker in cmd and state != "Z":
            found.append(int(pid))
    return found


def test_a_killed_parallel_benchmark_stops_its_runs(tmp_path):
    endless = {**TINY, "train.offline_updates": 10**7}
    code = ("from pathlib import Path; from conrft_sim.learning_bench import run_benchmark; "
            f"run_benchmark('config/train_sim.yaml', Path({str(tmp_path)!r}), tasks=('peg_insert',), "
            f"methods=('sft',), seeds=(0, 1), overrides={endless!r}, progress=False, jobs=2)")
    parent = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while len(_bench_children(str(tmp_path))) < 2:
        assert time.monotonic() < deadline and parent.poll() is None, "the two runs never started"
        time.sleep(0.5)
    parent.terminate()  # SIGTERM, as a plain `kill` sends
    assert parent.wait(timeout=60) == 143
    assert _bench_children(str(tmp_path)) == []
    assert not list(tmp_path.glob("runs/*.json"))
