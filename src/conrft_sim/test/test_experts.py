"""Scripted experts: zero-noise experts solve every task; human-like noise makes demonstrations inconsistent."""
import os

os.environ["MUJOCO_GL"] = "egl"  # before mujoco is imported

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from conrft_sim.experts import ExpertNoise, make_expert  # noqa: E402
from conrft_sim.sim import FrankaSim, SimConfig  # noqa: E402


def rollout(sim: FrankaSim, expert, seed: int, max_steps: int = 100) -> tuple[bool, int, np.ndarray]:
    """(success, steps, actions) of one expert episode."""
    sim.reset(seed=seed)
    expert.reset()
    actions = []
    for step in range(1, max_steps + 1):
        action = expert.act(sim)
        assert action.shape == (7,) and action.dtype == np.float32 and np.all(np.abs(action) <= 1)
        actions.append(action)
        sim.apply_action(action)
        if sim.success():
            return True, step, np.array(actions)
    return False, max_steps, np.array(actions)


@pytest.mark.parametrize("task", ["pick_cube", "peg_insert", "drawer_open"])
def test_zero_noise_expert_succeeds(task):
    sim = FrankaSim(SimConfig(task=task, cameras=()))
    expert = make_expert(task, ExpertNoise.zero(), np.random.default_rng(0))
    results = [rollout(sim, expert, seed) for seed in (0, 1, 2, 3, 4)]
    assert all(ok for ok, _, _ in results), [(seed, steps) for seed, (ok, steps, _) in enumerate(results) if not ok]


def test_zero_noise_expert_is_deterministic():
    sim = FrankaSim(SimConfig(task="peg_insert", cameras=()))
    runs = [rollout(sim, make_expert("peg_insert", ExpertNoise.zero(), np.random.default_rng(s)), seed=3)
            for s in (0, 1)]
    np.testing.assert_array_equal(runs[0][2], runs[1][2])


def test_human_like_demos_vary_in_length_and_path():
    sim = FrankaSim(SimConfig(task="pick_cube", cameras=()))
    expert = make_expert("pick_cube", ExpertNoise.human_like("pick_cube"), np.random.default_rng(0))
    results = [rollout(sim, expert, seed=0) for _ in range(4)]  # same scene, different human behaviour
    lengths = [steps for _, steps, _ in results]
    assert sum(ok for ok, _, _ in results) >= 3, lengths
    assert len(set(lengths)) > 1, f"human-like demos all took {lengths[0]} steps"
    first = results[0][2]
    assert not all(len(a) == len(first) and np.allclose(a, first) for _, _, a in results[1:])


def test_noise_validation_and_unknown_expert():
    with pytest.raises(ValueError, match="ExpertNoise.hesitation_prob"):
        ExpertNoise(hesitation_prob=1.5)
    with pytest.raises(ValueError, match="ExpertNoise.speed"):
        ExpertNoise(speed=0.0)
    with pytest.raises(ValueError, match="no expert for task 'stack_cups'"):
        make_expert("stack_cups", ExpertNoise.zero(), np.random.default_rng(0))
