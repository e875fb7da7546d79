"""Training stages of every method against the real simulator (state features, tiny networks): what each
method runs, determinism under a seed, checkpoints with resume after a crash, policy loading."""
import json
import os

os.environ["MUJOCO_GL"] = "egl"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from conrft_core.checkpoint import CheckpointError  # noqa: E402
from conrft_core.config import from_dict  # noqa: E402
from conrft_core.learning import stages  # noqa: E402
from conrft_core.learning.methods import METHODS  # noqa: E402
from conrft_core.learning.policy import load_policy  # noqa: E402
from conrft_core.learning.resume import CHECKPOINT, restore_run  # noqa: E402
from conrft_core.learning.rollout import ObservationSpec  # noqa: E402
from conrft_core.learning.run import TrainRun  # noqa: E402
from conrft_sim import experiment  # noqa: E402
from conrft_sim.experiment import ExperimentConfig, make_env, run_experiment  # noqa: E402

TINY = {"hidden_dim": 32}


def tiny(method="hil_conrft", **train):
    """Experiment config small enough for seconds: peg_insert (short episodes), 3 demos, tiny nets."""
    horizon = 3 if method == "co_rft" else 1
    data = {"sim": {"task": "peg_insert", "max_episode_steps": 25}, "demos": {"episodes": 3, "noise": "zero"},
            "train": {"method": method, "offline_updates": 20, "online_env_steps": 60, "batch_size": 16,
                      "eval_episodes": 2, "eval_every_steps": 30, "device": "cpu",
                      "agent": {"consistency": {**TINY, "horizon": horizon, "num_levels": 10},
                                "critic": {**TINY, "cql_num_samples": 2},
                                # a few dozen updates: an average that keeps up, and no anchor (the anchored
                                # policy already follows 3 demos closely enough that nobody takes over)
                                "actor_ema": 0.2, "action_anchor": 0.0},
                      "sac": TINY, **train}}
    return from_dict(ExperimentConfig, data)


def policy_tensors(run_dir):
    policy, _ = load_policy(run_dir / CHECKPOINT, device="cpu")
    return policy.tensors()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_runs_its_stages(method, tmp_path):
    result = run_experiment(tiny(method), tmp_path, progress=False)
    spec = METHODS[method]
    assert json.loads((tmp_path / "result.json").read_text())["method"] == method
    assert (tmp_path / "tensorboard").is_dir() and (tmp_path / "metrics.jsonl").stat().st_size > 0
    if spec.online:
        assert result["online_env_steps"] >= 60 and result["online_episodes"] >= 3
        assert 0 < result["intervention_rate"] <= 1  # an untrained policy gets taken over
        assert result["updates"] >= (20 if spec.offline else 0) + result["online_env_steps"]
        assert [p["env_steps"] for p in result["curve"]][:2] == [0, result["curve"][1]["env_steps"]]
    else:
        assert result["online_env_steps"] == 0 and result["updates"] == 20 and len(result["curve"]) == 1
    assert 0 <= result["success_rate"] <= 1 and result["config"]["method"] == method


def test_same_seed_gives_the_same_policy(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        run_experiment(tiny("sft", seed=seed), tmp_path / name, progress=False)
    a, b, c = (policy_tensors(tmp_path / n) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if k.startswith("agent/"))


def test_resume_after_a_crash_loses_no_episode(tmp_path, monkeypatch):
    cfg = tiny("hil_conrft", online_env_steps=100, checkpoint_every_steps=1)  # a checkpoint after every episode
    real_rollout, calls = stages.rollout, []

    def crashing_rollout(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the learner is killed during its third online episode
        return real_rollout(*args, **kwargs)

    monkeypatch.setattr(stages, "rollout", crashing_rollout)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path, progress=False)
    monkeypatch.undo()
    env, featurizer = make_env(cfg)
    proprio_dim = ObservationSpec.of(env).proprio_dim
    saved = TrainRun(cfg.train, featurizer.dim, proprio_dim, run_dir=tmp_path, progress=False)
    assert restore_run(saved)
    assert saved.episodes == 2 and saved.online_buffer.num_episodes == 2 and saved.offline_done == 20
    assert len(saved.online_buffer) == saved.env_steps
    with pytest.raises(FileExistsError, match="--resume"):
        run_experiment(cfg, tmp_path, progress=False)
    result = run_experiment(cfg, tmp_path, resume=True, progress=False)
    assert result["online_env_steps"] >= 100 and result["updates"] >= 20 + result["online_env_steps"]
    resumed = TrainRun(cfg.train, featurizer.dim, proprio_dim, run_dir=tmp_path, progress=False)
    restore_run(resumed)
    assert resumed.online_buffer.num_episodes == resumed.episodes > 2  # the two before the crash are kept

    other = tiny("hil_conrft", online_env_steps=100, checkpoint_every_steps=1,
                 agent={"critic": {"hidden_dim": 64}, "actor_ema": 0.2, "action_anchor": 0.0})
    with pytest.raises(CheckpointError, match=r"train\.agent\.\w+\.hidden_dim differs"):
        restore_run(TrainRun(other.train, featurizer.dim, proprio_dim, run_dir=tmp_path, progress=False))


def test_loaded_policy_acts_like_the_trained_one(tmp_path):
    cfg = tiny("sft")
    run_experiment(cfg, tmp_path, progress=False)
    policy, config = load_policy(tmp_path / CHECKPOINT, device="cpu")
    assert config["meta"]["task"] == "peg_insert" and policy.agent.horizon == 1
    env, featurizer = make_env(cfg)
    obs, _ = env.reset(seed=0)
    torch.manual_seed(0)
    chunk = policy(featurizer(obs))
    assert chunk.shape == (1, 7) and np.all(np.abs(chunk) <= 1)
    result = experiment.evaluate_checkpoint(tmp_path / CHECKPOINT, episodes=2, device="cpu")
    assert result["task"] == "peg_insert" and result["episodes"] == 2 and 0 <= result["success_rate"] <= 1

    data = bytearray((tmp_path / CHECKPOINT).read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / "corrupt.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_policy(tmp_path / "corrupt.safetensors", device="cpu")


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="train.method 'dagger' is unknown"):
        tiny("dagger")
    with pytest.raises(ValueError, match="co_rft trains action chunks: set train.agent.consistency.horizon"):
        from_dict(ExperimentConfig, {"train": {"method": "co_rft"}})
    with pytest.raises(ValueError, match="features 'vla_remote'"):
        from_dict(ExperimentConfig, {"features": "vla_remote"})


def synthetic_episode(eid, intervened, rng, dim, success=True):
    """An episode with state features only (no cameras), as the learner node hands to learn_from_episode."""
    from conrft_core.data.episode import Episode
    from conrft_core.robot.spaces import PROPRIO_DIM

    T = len(intervened)
    ep = Episode(episode_id=eid, instruction="insert the peg into the hole", images={},
                 proprio=rng.normal(size=(T + 1, PROPRIO_DIM)).astype(np.float32),
                 actions=rng.uniform(-1, 1, (T, 7)).astype(np.float32), rewards=np.full(T, -0.05, np.float32),
                 intervened=np.array(intervened, bool), terminated=success, truncated=not success, success=success)
    return ep, rng.normal(size=(T + 1, dim)).astype(np.float32)


def test_learn_from_episode_fills_the_buffers_and_runs_utd_updates():
    from conrft_core.robot.spaces import PROPRIO_DIM

    cfg = tiny("hil_conrft", updates_per_env_step=0.6).train
    dim = 6
    run = TrainRun(cfg, dim, PROPRIO_DIM, progress=False)
    rng = np.random.default_rng(0)
    run.add_demos([synthetic_episode(0, [True] * 5, rng, dim)])
    calls = []
    run.on_update = calls.append
    ep, feats = synthetic_episode(1, [False, True, True, False, False, True, True], rng, dim)
    stages.learn_from_episode(run, ep, feats)
    assert (run.episodes, run.env_steps, run.intervened_steps) == (1, 7, 4)
    assert calls == [1, 2, 3, 4] and run.updates == 4  # round(7 x 0.6)
    assert run.online_buffer.num_episodes == 1 and len(run.online_buffer) == 7
    # The two human-driven segments (steps 1-2 and 5-6) join the demo buffer as episodes of their own.
    assert run.demo_buffer.num_episodes == 3 and len(run.demo_buffer) == 5 + 4
    stored = run.demo_buffer.data["action"]
    for t in range(ep.length):
        found = any(np.array_equal(row, ep.actions[t]) for row in stored)
        assert found == bool(ep.intervened[t]), t

    # A second episode without takeovers: online buffer only; counters and update ids keep counting.
    ep2, feats2 = synthetic_episode(2, [False] * 5, rng, dim, success=False)
    stages.learn_from_episode(run, ep2, feats2)
    assert (run.episodes, run.env_steps, run.intervened_steps) == (2, 12, 4)
    assert calls == [1, 2, 3, 4, 5, 6, 7]  # round(5 x 0.6) = 3 more
    assert run.online_buffer.num_episodes == 2 and len(run.online_buffer) == 12
    assert run.demo_buffer.num_episodes == 3 and len(run.demo_buffer) == 9
