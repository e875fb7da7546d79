"""End to end, tiny and state-only: demonstrations in the simulator -> training -> evaluation on held-out
seeds. The policy must go from failing to clearly succeeding (the benchmark measures the full methods)."""
import os

os.environ["MUJOCO_GL"] = "egl"

from conrft_core.config import from_dict  # noqa: E402
from conrft_core.learning.rollout import ObservationSpec  # noqa: E402
from conrft_core.learning.run import TrainRun  # noqa: E402
from conrft_core.learning.stages import evaluate_policy  # noqa: E402
from conrft_sim.experiment import ExperimentConfig, make_env, run_experiment  # noqa: E402


def test_success_rises_clearly_above_the_untrained_policy():
    cfg = from_dict(ExperimentConfig, {
        "sim": {"task": "peg_insert"}, "demos": {"episodes": 20, "noise": "human_like"},
        "train": {"method": "sft", "offline_updates": 2000, "batch_size": 256, "eval_episodes": 20, "device": "cpu",
                  }})
    env, featurizer = make_env(cfg)
    untrained = evaluate_policy(TrainRun(cfg.train, featurizer.dim, ObservationSpec.of(env).proprio_dim,
                                         progress=False), env, featurizer)
    result = run_experiment(cfg, run_dir=None, progress=False)
    assert untrained["success_rate"] <= 0.1, untrained
    assert result["success_rate"] >= 0.4, result["curve"]
    assert result["mean_length"] < untrained["mean_length"] - 20
