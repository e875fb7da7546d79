"""The training library driven by a gymnasium env that is not this project's simulator: other proprio and action
sizes, no cameras, no instruction, success under another info key. Mismatches are reported at the first reset
or step, naming the key."""
import gymnasium as gym
import numpy as np
import pytest

from conrft_core.config import from_dict
from conrft_core.learning.methods import TrainConfig
from conrft_core.learning.rollout import ObservationSpec, StateFeaturizer, collect_demos, rollout
from conrft_core.learning.run import TrainRun
from conrft_core.learning.stages import evaluate_policy, train


class Reach(gym.Env):
    """A point on a plane driven to a goal: proprio = (position, velocity), state = goal, 3-D actions (the third
    is ignored), success in info["is_success"] within 0.1 of the goal, at most 30 steps."""

    observation_space = gym.spaces.Dict({"proprio": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
                                         "state": gym.spaces.Box(-1, 1, (2,), np.float32)})
    action_space = gym.spaces.Box(-1, 1, (3,), np.float32)

    def __init__(self, success_key="is_success", proprio_size=4):
        self.success_key, self.proprio_size = success_key, proprio_size

    def _obs(self):
        proprio = np.concatenate([self.pos, self.vel])[: self.proprio_size].astype(np.float32)
        return {"proprio": proprio, "state": self.goal.astype(np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.goal = self.np_random.uniform(-0.5, 0.5, 2)
        self.pos, self.vel, self.t = np.zeros(2), np.zeros(2), 0
        return self._obs(), {}

    def step(self, action):
        self.vel = 0.1 * np.clip(np.asarray(action[:2], float), -1, 1)
        self.pos, self.t = self.pos + self.vel, self.t + 1
        success = bool(np.linalg.norm(self.pos - self.goal) < 0.1)
        return self._obs(), 10.0 * success - 0.05, success, self.t >= 30 and not success, {self.success_key: success}


class Expert:
    """Always in control: heads straight for the goal at full speed."""

    def reset(self):
        pass

    def step(self, env, policy_action):
        delta = (env.goal - env.pos) / 0.1
        return np.array([*np.clip(delta, -1, 1), 0.0], np.float32), True


def config(**kw):
    small = {"hidden_dim": 64}
    return from_dict(TrainConfig, {"method": "sft", "offline_updates": 1000, "batch_size": 64, "eval_episodes": 10,
                                   "device": "cpu", "success_key": "is_success",
                                   "agent": {"consistency": {**small, "action_dim": 3}, "critic": small}, **kw})


def test_a_foreign_env_trains_with_its_own_sizes_and_success_key():
    env, featurizer, cfg = Reach(), StateFeaturizer(6), config()
    spec = ObservationSpec.of(env)
    assert (spec.cameras, spec.proprio_dim, spec.action_dim) == ((), 4, 3)
    demos = collect_demos(env, featurizer, Expert(), episodes=10, seed=0, success_key=cfg.success_key)
    assert demos[0][0].instruction == "" and demos[0][0].actions.shape[1] == 3
    run = TrainRun(cfg, featurizer.dim, spec.proprio_dim, progress=False)
    untrained = evaluate_policy(TrainRun(cfg, featurizer.dim, spec.proprio_dim, progress=False), env, featurizer)
    run.add_demos(demos)
    result = train(run, env, featurizer)
    assert untrained["success_rate"] <= 0.2 and result["success_rate"] >= 0.6, (untrained, result["curve"])


def test_a_run_built_for_other_action_sizes_is_refused_before_training():
    env, featurizer = Reach(), StateFeaturizer(6)
    run = TrainRun(config(agent={"consistency": {"action_dim": 7}}), featurizer.dim, 4, progress=False)
    with pytest.raises(ValueError, match=r"3-D actions.*train\.agent\.consistency\.action_dim"):
        train(run, env, featurizer)


def test_a_missing_success_key_names_the_config_key():
    with pytest.raises(ValueError, match=r"no 'is_success' entry \(it has \['done'\]\); set train.success_key"):
        rollout(Reach(success_key="done"), StateFeaturizer(6), lambda f: np.zeros((1, 3)), seed=0,
                success_key="is_success")


def test_observation_mismatches_are_named_at_the_first_reset():
    act = lambda f: np.zeros((1, 3))  # noqa: E731
    with pytest.raises(ValueError, match=r"observation 'proprio' has shape \(3,\), the env's observation_space says "
                                         r"\(4,\)"):
        rollout(Reach(proprio_size=3), StateFeaturizer(5), act, seed=0, success_key="is_success")
    vla_like = StateFeaturizer(6)
    vla_like.obs_keys = ("proprio", "instruction")
    with pytest.raises(ValueError, match="observation has no 'instruction' entry .* the featurizer reads it"):
        rollout(Reach(), vla_like, act, seed=0, success_key="is_success")
    with pytest.raises(ValueError, match="must be a gymnasium Dict space with a 'proprio' Box"):
        ObservationSpec.of(gym.make("CartPole-v1"))
