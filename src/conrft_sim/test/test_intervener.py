"""Scripted intervener (the simulated human of HIL-ConRFT) and expert takeover from mid-task states."""
import os

os.environ["MUJOCO_GL"] = "egl"  # before mujoco is imported

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from conrft_sim.experts import ExpertNoise, make_expert  # noqa: E402
from conrft_sim.intervener import IntervenerConfig, ScriptedIntervener  # noqa: E402
from conrft_sim.sim import FrankaSim, SimConfig  # noqa: E402

TASKS = ["pick_cube", "peg_insert", "drawer_open"]
PHASES = {"pick_cube": 4, "peg_insert": 2, "drawer_open": 4}


@pytest.fixture(scope="module", params=TASKS)
def sim(request):
    return FrankaSim(SimConfig(task=request.param, cameras=()))


def run_episode(sim, intervener, policy, seed, max_steps=100):
    """(success, intervened flags) of one episode where `intervener` arbitrates `policy(sim)`."""
    sim.reset(seed=seed)
    intervener.reset()
    flags = []
    for _ in range(max_steps):
        action, intervened = intervener.step(sim, policy(sim))
        flags.append(intervened)
        sim.apply_action(action)
        if sim.success():
            return True, flags
    return False, flags


def test_frozen_policy_is_taken_over_after_patience_and_the_human_finishes(sim):
    # Zero motion with the gripper as at reset: open, except on the peg, which starts grasped (opening the
    # gripper would drop it, and the scripted human cannot pick a dropped peg up again).
    gripper = -1.0 if sim.task.name == "peg_insert" else 1.0
    frozen = np.array([0, 0, 0, 0, 0, 0, gripper], np.float32)
    config = IntervenerConfig()
    for seed in (0, 1):
        intervener = ScriptedIntervener(sim.task.name, config, np.random.default_rng(seed))
        success, flags = run_episode(sim, intervener, lambda s: frozen, seed)
        assert flags.index(True) == config.patience, flags
        assert success, (seed, intervener.takeovers, flags)
        assert intervener.rate > 0 and intervener.intervened_steps == sum(flags)
        assert intervener.steps == len(flags) and 1 <= intervener.takeovers <= config.max_takeovers


def test_a_late_human_executes_each_decision_one_step_later():
    """reaction_steps = 1 (the graph's scripted teleop): on the same states, the executed action of step t is
    what the prompt human decided at step t - 1; meanwhile the policy's own action runs."""
    sim = FrankaSim(SimConfig(task="pick_cube", cameras=()))
    frozen = np.array([0, 0, 0, 0, 0, 0, 1], np.float32)
    prompt = ScriptedIntervener("pick_cube", IntervenerConfig(), np.random.default_rng(0))
    late = ScriptedIntervener("pick_cube", IntervenerConfig(reaction_steps=1), np.random.default_rng(0))
    sim.reset(seed=0)
    decided, executed = [], []
    for _ in range(12):  # the arm never moves: both judge identical states
        decided.append(prompt.step(sim, frozen))
        executed.append(late.step(sim, frozen))
    assert [f for _, f in executed] == [False] + [f for _, f in decided[:-1]]
    for (a, f), (b, _) in zip(executed[1:], decided[:-1]):
        np.testing.assert_array_equal(a, b if f else frozen)
    assert late.intervened_steps == sum(f for _, f in executed) == prompt.intervened_steps - 1


def test_zero_noise_expert_policy_is_never_taken_over(sim):
    for seed in (0, 1, 2):
        expert = make_expert(sim.task.name, ExpertNoise.zero(), np.random.default_rng(seed))
        intervener = ScriptedIntervener(sim.task.name, IntervenerConfig(), np.random.default_rng(seed))
        expert.reset()
        success, flags = run_episode(sim, intervener, expert.act, seed)
        assert success and not any(flags) and intervener.rate == 0.0 and intervener.takeovers == 0, seed
    # Past success the expert comes to rest at its final goal: standing still once the task is done is no stall.
    for _ in range(30):
        action, intervened = intervener.step(sim, expert.act(sim))
        sim.apply_action(action)
        assert sim.success() and not intervened


def test_policy_heading_away_is_taken_over_at_most_max_takeovers_times():
    sim = FrankaSim(SimConfig(task="pick_cube", cameras=()))
    up = np.array([0, 0, 1, 0, 0, 0, 1], np.float32)  # straight up, away from the cube on the table
    config = IntervenerConfig(max_takeovers=2)
    intervener = ScriptedIntervener("pick_cube", config, np.random.default_rng(0))
    _, flags = run_episode(sim, intervener, lambda s: up, seed=0)
    # Moving (not stalled) but away: the patience-th bad step is already the human's.
    assert flags.index(True) == config.patience - 1, flags
    starts = [t for t in range(len(flags)) if flags[t] and (t == 0 or not flags[t - 1])]
    assert intervener.takeovers == len(starts) == config.max_takeovers, flags
    runs = [flags[t:].index(False) if False in flags[t:] else len(flags) - t for t in starts]
    assert all(run >= config.takeover_steps for run in runs), runs

    disabled = ScriptedIntervener("pick_cube", IntervenerConfig(enabled=False), np.random.default_rng(0))
    _, flags = run_episode(sim, disabled, lambda s: up, seed=0, max_steps=20)
    assert not any(flags) and disabled.takeovers == 0 and disabled.rate == 0.0


def test_resume_finishes_from_every_phase_of_an_expert_run(sim):
    task = sim.task.name
    # One zero-noise run records the expert's phase at every step.
    expert = make_expert(task, ExpertNoise.zero(), np.random.default_rng(0))
    sim.reset(seed=3)
    expert.reset()
    phases = []
    while not sim.success():
        phases.append(expert.phase)
        sim.apply_action(expert.act(sim))
    # Hand over at the first and the middle step of every phase of that run.
    starts = [k for k in range(len(phases)) if k == 0 or phases[k] != phases[k - 1]]
    ends = starts[1:] + [len(phases)]
    handovers = sorted({k for s, e in zip(starts, ends) for k in (s, (s + e) // 2)})
    inferred = set()
    for k in handovers:
        sim.reset(seed=3)
        expert.reset()
        for _ in range(k):
            sim.apply_action(expert.act(sim))
        state = (expert.phase, expert.phase_steps, expert.rng.bit_generator.state)
        suggestion = expert.suggest(sim)
        assert (expert.phase, expert.phase_steps, expert.rng.bit_generator.state) == state  # changes nothing
        phase = expert.phase
        human = make_expert(task, ExpertNoise.zero(), np.random.default_rng(1))
        human.resume(sim)
        inferred.add(human.phase)
        action = human.act(sim)
        np.testing.assert_allclose(action, suggestion, atol=1e-6)  # zero noise: the suggestion is the first act
        for _ in range(100 - k):
            sim.apply_action(action)
            if sim.success():
                break
            action = human.act(sim)
        assert sim.success(), f"resume after {k} steps (phase {phase}, inferred {human.phase}) did not finish"
    assert inferred == set(range(PHASES[task])), inferred


@pytest.mark.parametrize("field, value", [("patience", 0), ("stall_distance", -0.1), ("away_cosine", 1.5),
                                          ("takeover_steps", 0), ("max_takeovers", -1),
                                          ("expert_noise", "sloppy"), ("enabled", "yes")])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"intervener.{field} must"):
        IntervenerConfig(**{field: value})
