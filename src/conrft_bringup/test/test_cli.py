"""The `conrft` command line as a user runs it: a real process, real simulator, real bag on disk."""
import json
import shutil
import subprocess

import numpy as np

from conrft_core.data.bags import read_episodes


def conrft(*args, timeout=300):
    exe = shutil.which("conrft")
    assert exe, "conrft is not on PATH: source ./env.sh"
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_help_lists_subcommands():
    res = conrft("--help")
    assert res.returncode == 0
    assert "sim-demos" in res.stdout and "demo-stats" in res.stdout


def test_sim_demos_writes_a_loadable_bag(tmp_path):
    out = tmp_path / "demos"
    res = conrft("sim-demos", "--task", "pick_cube", "--episodes", 2, "--noise", "zero", "--out", out,
                 "--image-width", 48, "--image-height", 40, "--quiet")
    assert res.returncode == 0, res.stderr
    assert "2 episodes" in res.stdout
    episodes = read_episodes(out)
    assert len(episodes) == 2 and all(ep.success and ep.terminated for ep in episodes)
    assert all(ep.intervened.all() for ep in episodes)  # a human (the scripted expert) drove every step
    assert episodes[0].images["front"].shape[1:] == (40, 48, 3)
    assert episodes[0].instruction
    assert np.all(np.abs(episodes[0].actions) <= 1.0)

    stats = conrft("demo-stats", out, "--json", tmp_path / "s.json", "--plot", tmp_path / "s.png")
    assert stats.returncode == 0, stats.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["episodes"] == 2 and summary["success_rate"] == 1.0
    assert (tmp_path / "s.png").stat().st_size > 10_000

    again = conrft("sim-demos", "--episodes", 1, "--out", out, "--quiet")
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    res = conrft("sim-demos", "--task", "stack_blocks", "--out", tmp_path / "x")
    assert res.returncode == 2
    assert "unknown task 'stack_blocks'" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("sim:\n  image_widht: 64\n")
    res = conrft("sim-demos", "--config", cfg, "--out", tmp_path / "y")
    assert res.returncode == 2 and "'sim.image_widht'" in res.stderr
    res = conrft("demo-stats", tmp_path)
    assert res.returncode == 2 and "not a rosbag2 bag" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim.yaml"]


TINY_RUN = ["--set", "sim.task=peg_insert", "--set", "sim.max_episode_steps=25", "--set", "demos.episodes=2",
            "--set", "demos.noise=zero", "--set", "train.offline_updates=10", "--set", "train.online_env_steps=30",
            "--set", "train.batch_size=16", "--set", "train.eval_episodes=1", "--set", "train.unseen_eval_episodes=1",
            "--set", "train.agent.consistency.hidden_dim=32", "--set", "train.agent.critic.hidden_dim=32",
            "--set", "train.device=cpu"]


def test_train_then_eval_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    res = conrft("train", "config/train_sim.yaml", "--run-dir", run, *TINY_RUN, "--quiet")
    assert res.returncode == 0, res.stderr
    assert "peg_insert hil_conrft: success" in res.stdout
    result = json.loads((run / "result.json").read_text())
    assert result["online_env_steps"] >= 30 and result["unseen_success_rate"] is not None
    assert result["config"]["agent"]["consistency"]["hidden_dim"] == 32  # the --set reached the run
    assert any((run / "tensorboard").iterdir())

    again = conrft("train", "config/train_sim.yaml", "--run-dir", run, *TINY_RUN, "--quiet")
    assert again.returncode == 2 and "--resume" in again.stderr  # an existing run is never overwritten

    ev = conrft("eval", run / "checkpoint.safetensors", "--episodes", 2, "--unseen", "--json", tmp_path / "e.json")
    assert ev.returncode == 0, ev.stderr
    assert "2 episodes, unseen object range" in ev.stdout
    assert json.loads((tmp_path / "e.json").read_text())["unseen"] is True


def test_train_rejects_bad_config_and_eval_a_missing_checkpoint(tmp_path):
    res = conrft("train", "config/train_sim.yaml", "--set", "train.agent.critic.hiden_dim=8")
    assert res.returncode == 2 and "train.agent.critic.hiden_dim" in res.stderr
    res = conrft("train", "config/train_sim.yaml", "--set", "train.method=bc")
    assert res.returncode == 2 and "train.method 'bc' is unknown" in res.stderr
    res = conrft("eval", tmp_path / "nope.safetensors")
    assert res.returncode == 2 and "nope.safetensors does not exist" in res.stderr


def test_pretrain_writes_a_vla_and_rejects_unknown_tasks(tmp_path):
    cfg = tmp_path / "pretrain.yaml"
    cfg.write_text("pretrain:\n  backbone: {image_size: 32, patch_grid: 4, d_model: 32, num_layers: 1, num_heads: 2}\n"
                   "  head: {hidden_dim: 32}\n  batch_size: 8\n")
    res = conrft("pretrain", "--out", tmp_path / "vla.safetensors", "--config", cfg, "--tasks", "pick_cube",
                 "--episodes", 1, "--steps", 3, "--device", "cpu", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "pretrained on 1 episodes" in res.stdout and (tmp_path / "vla.safetensors").stat().st_size > 10_000
    res = conrft("pretrain", "--out", tmp_path / "x.safetensors", "--tasks", "pick_cube,stack_blocks")
    assert res.returncode == 2 and "stack_blocks" in res.stderr and not (tmp_path / "x.safetensors").exists()
