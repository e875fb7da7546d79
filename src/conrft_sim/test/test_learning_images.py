"""End to end on camera images, tiny: a 32x32 VLA pretrained here (150 steps on 5 episodes), 20 human-like
demonstrations rendered from both cameras, HIL-ConRFT's offline and online stages on its frozen embedding with the
scripted human, evaluation on held-out seeds. The policy must go from failing to clearly succeeding (about 5
minutes on one core; the camera-image benchmark measures the full method)."""
import os

os.environ["MUJOCO_GL"] = "egl"

from conrft_core.config import from_dict  # noqa: E402
from conrft_core.learning.rollout import ObservationSpec  # noqa: E402
from conrft_core.learning.run import TrainRun  # noqa: E402
from conrft_core.learning.stages import evaluate_policy  # noqa: E402
from conrft_core.learning.vla import PretrainConfig  # noqa: E402
from conrft_sim.experiment import ExperimentConfig, make_env, pretrain_vla, run_experiment  # noqa: E402


def test_hil_conrft_on_tiny_camera_images_rises_clearly_above_its_start(tmp_path):
    vla = tmp_path / "vla.safetensors"
    pretrain_vla(from_dict(PretrainConfig, {
        "backbone": {"image_size": 32, "patch_grid": 4, "d_model": 32, "num_layers": 1, "num_heads": 2},
        "head": {"hidden_dim": 64, "num_levels": 10}, "steps": 150, "batch_size": 16}, "pretrain"),
        vla, ["pick_cube"], episodes_per_task=5, device="cpu", progress=False)
    cfg = from_dict(ExperimentConfig, {
        "features": "vla", "vla_checkpoint": str(vla), "sim": {"task": "pick_cube"},
        "demos": {"episodes": 20, "noise": "human_like"},
        "train": {"method": "hil_conrft", "offline_updates": 500, "online_env_steps": 600, "batch_size": 128,
                  "updates_per_env_step": 0.5, "eval_episodes": 20, "eval_every_steps": 600,
                  "unseen_eval_episodes": 0, "device": "cpu",
                  "agent": {"consistency": {"hidden_dim": 128}, "critic": {"hidden_dim": 128}}}})
    env, featurizer = make_env(cfg, "cpu")
    assert env.config.cameras and env.config.image_width == 32  # rendered images, not privileged state
    untrained = evaluate_policy(TrainRun(cfg.train, featurizer.dim, ObservationSpec.of(env).proprio_dim,
                                         progress=False), env, featurizer, episodes=10)
    result = run_experiment(cfg, run_dir=None, progress=False)
    assert result["features"] == "vla" and result["online_env_steps"] >= 600
    assert untrained["success_rate"] <= 0.1, untrained
    assert result["success_rate"] >= 0.6, result["curve"]
    assert result["mean_length"] < untrained["mean_length"] - 20, result["curve"]
