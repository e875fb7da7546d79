"""The in-process training loop (conrft_core.learning.rollout) against the real simulator, state-only and small."""
import os

os.environ["MUJOCO_GL"] = "egl"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from conrft_core.data.episode import Episode  # noqa: E402
from conrft_core.learning.methods import TrainConfig  # noqa: E402
from conrft_core.learning.rollout import StateFeaturizer, human_segments, rollout  # noqa: E402
from conrft_sim.env import ConRFTSimEnv  # noqa: E402
from conrft_sim.sim import SimConfig  # noqa: E402


@pytest.fixture(scope="module")
def env():
    return ConRFTSimEnv(SimConfig(task="peg_insert", cameras=(), max_episode_steps=12), privileged_state=True)


def featurizer(env):
    obs, _ = env.reset(seed=0)
    return StateFeaturizer(19 + obs["state"].shape[0])


class CountingPolicy:
    """Returns H-step chunks whose first component encodes the query index."""

    def __init__(self, horizon):
        self.horizon, self.calls = horizon, 0

    def __call__(self, feats):
        self.calls += 1
        chunk = np.zeros((self.horizon, 7), np.float32)
        chunk[:, 6] = 1.0
        chunk[:, 0] = 0.1 * self.calls
        return chunk


class EveryFifthStep:
    """A human who drives steps 4 and 5 of every 5 (in 1-based counting)."""

    def reset(self):
        self.t = 0

    def step(self, env, policy_action):
        self.t += 1
        if self.t % 5 in (4, 0):
            return np.zeros(7, np.float32), True
        return policy_action, False


def test_chunks_execute_open_loop_and_replan_after_takeover(env):
    policy = CountingPolicy(horizon=3)
    ep, feats = rollout(env, featurizer(env), policy, seed=1, human=EveryFifthStep())
    assert ep.length == 12 and ep.truncated and feats.shape == (13, featurizer(env).dim)
    np.testing.assert_array_equal(ep.intervened, [t % 5 in (3, 4) for t in range(12)])
    # Steps 0-2: chunk 1; step 3 human (chunk 2 drawn, its rest dropped); step 4 human again (chunk 3
    # drawn, dropped); steps 5-7 chunk 4; 8, 9 human; 10-11 chunk 7.
    queries = np.round(ep.policy_actions[:, 0] / 0.1).astype(int).tolist()
    assert queries == [1, 1, 1, 2, 3, 4, 4, 4, 5, 6, 7, 7]
    assert np.all(ep.actions[ep.intervened] == 0.0)
    np.testing.assert_array_equal(ep.actions[~ep.intervened], ep.policy_actions[~ep.intervened])


def test_human_segments_become_their_own_episodes():
    T = 8
    ep = Episode(episode_id=3, instruction="x", images={}, proprio=np.arange((T + 1) * 19, dtype=np.float32).reshape(T + 1, 19),
                 actions=np.zeros((T, 7), np.float32), rewards=np.arange(T, dtype=np.float32),
                 intervened=np.array([0, 1, 1, 0, 0, 0, 1, 1], bool), terminated=True, truncated=False, success=True)
    feats = np.arange(T + 1, dtype=np.float32)[:, None]
    segs = human_segments(ep, feats)
    assert [(s.length, s.truncated, s.terminated, s.success) for s, _ in segs] == [(2, True, False, False),
                                                                                  (2, False, True, True)]
    np.testing.assert_array_equal(segs[0][1][:, 0], [1, 2, 3])  # features of o_1..o_3
    np.testing.assert_array_equal(segs[1][0].rewards, [6, 7])
    np.testing.assert_array_equal(segs[1][0].proprio, ep.proprio[6:9])


def test_steps_held_for_safety_never_enter_the_demo_buffer():
    """A teleop that fell silent mid-takeover: the node held the arm (held, still under the human's control).
    The held steps split the takeover and belong to no segment."""
    T = 7
    ep = Episode(episode_id=4, instruction="x", images={}, proprio=np.zeros((T + 1, 19), np.float32),
                 actions=np.arange(T * 7, dtype=np.float32).reshape(T, 7), rewards=np.zeros(T, np.float32),
                 intervened=np.array([0, 1, 1, 1, 1, 1, 0], bool), held=np.array([0, 0, 1, 1, 0, 0, 0], bool),
                 terminated=False, truncated=True)
    segs = human_segments(ep, np.zeros((T + 1, 1), np.float32))
    assert [len(s.actions) for s, _ in segs] == [1, 2]
    kept = np.concatenate([s.actions for s, _ in segs])
    np.testing.assert_array_equal(kept, ep.actions[[1, 4, 5]])
    np.testing.assert_array_equal(ep.demonstrated, [0, 1, 0, 0, 1, 1, 0])


def test_train_config_validation():
    with pytest.raises(ValueError, match="train.demo_fraction"):
        TrainConfig(demo_fraction=1.5)
