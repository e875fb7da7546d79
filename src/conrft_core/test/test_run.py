"""The run state and the stages without a simulator: the offline -> online switch, diagnostics that never change
what is trained, and the actor's Q term and BC padding as the released code has them."""
import numpy as np
import pytest
import torch

from conrft_core.config import ConfigError, from_dict
from conrft_core.data.episode import Episode
from conrft_core.learning.agent import AgentConfig, ConRFTAgent, StageWeights
from conrft_core.learning.consistency import ConsistencyConfig
from conrft_core.learning.critic import CriticConfig
from conrft_core.learning.methods import TrainConfig
from conrft_core.learning.run import TrainRun
from conrft_core.learning.runlog import RunLog
from conrft_core.learning.stages import learn_from_episode, offline_stage

P, D = 5, 8  # proprio and feature sizes of the synthetic episodes


def episode(eid, length, rng, intervened=None, success=True):
    return Episode(episode_id=eid, instruction="", images={},
                   proprio=rng.normal(size=(length + 1, P)).astype(np.float32),
                   actions=rng.uniform(-1, 1, (length, 7)).astype(np.float32),
                   rewards=np.full(length, -0.05, np.float32),
                   intervened=np.zeros(length, bool) if intervened is None else np.asarray(intervened, bool),
                   terminated=success, truncated=not success, success=success)


def make_run(**train):
    small = {"hidden_dim": 16}
    cfg = from_dict(TrainConfig, {"method": "hil_conrft", "offline_updates": 5, "batch_size": 8, "device": "cpu",
                                  "agent": {"consistency": {**small, "num_levels": 10},
                                            "critic": {**small, "cql_num_samples": 2}}, **train})
    run = TrainRun(cfg, D, P, progress=False)
    rng = np.random.default_rng(0)
    run.add_demos([(ep, rng.normal(size=(ep.length + 1, D)).astype(np.float32))
                   for ep in (episode(i, 6, rng) for i in range(3))])
    return run


def adam_steps(opt):
    return [int(s["step"]) for s in opt.state.values()]


@pytest.mark.parametrize("fresh", [True, False])
def test_the_online_stage_starts_with_fresh_optimiser_state(fresh):
    run = make_run(agent={"fresh_online_optimizers": fresh, "consistency": {"hidden_dim": 16}})
    offline_stage(run)
    assert run.offline_done == 5
    steps = adam_steps(run.agent.actor_opt) + adam_steps(run.agent.critic_opt)
    assert (steps == []) == fresh and (fresh or set(steps) == {5, 10})
    offline_stage(run)  # resumed after the offline stage: nothing more is reset
    rng = np.random.default_rng(1)
    learn_from_episode(run, episode(9, 4, rng), rng.normal(size=(5, D)).astype(np.float32))
    assert set(adam_steps(run.agent.actor_opt)) == {4 if fresh else 9}


def test_an_offline_stage_without_a_bar_reports_every_100_updates():
    """A learner node shows no tqdm bar: its log gets a line per 100-update block, counted across a resume."""
    run = make_run(offline_updates=300)
    lines = []
    run.log = RunLog(None, emit=lines.append)
    run.offline_done = 100  # resumed from a checkpoint at update 100
    offline_stage(run)
    assert [line.split(",")[0] for line in lines] == ["offline hil_conrft: 200/300 updates",
                                                      "offline hil_conrft: 300/300 updates"]
    assert lines[-1].endswith("~0 min left")


def test_the_online_ramp_counts_online_updates_only():
    """The ramp of the stage weights starts at the first online update, after however many offline ones."""
    run = make_run(agent={"online_ramp_updates": 4, "consistency": {"hidden_dim": 16}})
    offline_stage(run)
    seen = []
    weights = run.agent.stage_weights
    run.agent.stage_weights = lambda offline, online_updates: seen.append(online_updates) or weights(offline, online_updates)
    rng = np.random.default_rng(1)
    learn_from_episode(run, episode(9, 6, rng), rng.normal(size=(7, D)).astype(np.float32))
    assert seen == [0, 1, 2, 3, 4, 5]


def test_diagnostics_do_not_change_what_is_trained():
    plain = make_run()  # each run seeds torch when it is made: train one, then the other
    sample = plain.sampler(mixed=False)
    for _ in range(3):
        plain.update(sample, offline=True)
    watched = make_run()
    sample = watched.sampler(mixed=False)
    for _ in range(3):
        info = watched.diagnostics()
        watched.update(sample, offline=True)
    for k, v in plain.agent.state_dict().items():
        assert torch.equal(v, watched.agent.state_dict()[k]), k
    assert info["diag/mse"] > 0 and all(0 <= info[f"diag/saturated_{d}"] <= 1 for d in range(7))
    assert {f"diag/dq_da_{d}" for d in range(7)} <= set(info)
    rng = np.random.default_rng(2)
    ep = episode(7, 3, rng)
    ep.rewards = np.array([-0.05, -0.05, 9.95], np.float32)
    info = watched.diagnostics(ep, rng.normal(size=(4, D)).astype(np.float32))
    g = watched.cfg.gamma
    returns = [-0.05 - 0.05 * g + 9.95 * g**2, -0.05 + 9.95 * g, 9.95]
    assert info["diag/return_episode"] == pytest.approx(np.mean(returns)) and "diag/q_pi_episode" in info


def q_agent(**cfg):
    torch.manual_seed(0)
    cfg = {"online": StageWeights(0.0, 1.0), **cfg}
    return ConRFTAgent(3, AgentConfig(consistency=ConsistencyConfig(hidden_dim=16, horizon=2),
                                      critic=CriticConfig(hidden_dim=16), **cfg))


def batch(n=6):
    g = torch.Generator().manual_seed(0)
    return {"state": torch.randn(n, 3, generator=g), "actions": torch.rand(n, 2, 7, generator=g) * 2 - 1,
            "reward_mask": torch.tensor([[1.0, 1.0]] * (n - 2) + [[1.0, 0.0]] * 2)}


@pytest.mark.parametrize("normalize", [False, True])
def test_the_actor_q_term_is_minus_the_mean_q(normalize):
    agent, b = q_agent(q_normalize=normalize), batch()
    torch.manual_seed(3)
    loss, _ = agent.actor_loss(b, offline=False)
    torch.manual_seed(3)
    agent.actor.bc_loss(b["actions"], b["state"], b["reward_mask"])  # the same random draws as the loss
    q = agent.critic(b["state"], agent.actor.sample(b["state"])).mean(0)
    expected = -q.mean() / (q.abs().mean() if normalize else 1.0)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("mask_padding", [True, False])
def test_bc_is_told_which_chunk_steps_are_padding(mask_padding):
    """The BC loss's mask (conrft_core.learning.consistency pins its formula) is the batch's reward_mask."""
    agent, b = q_agent(bc_mask_padding=mask_padding), batch()
    masks, bc_loss = [], agent.actor.bc_loss
    agent.actor.bc_loss = lambda actions, emb, mask=None: masks.append(mask) or bc_loss(actions, emb, mask)
    agent.actor_loss(b, offline=False)
    agent.update_bc(lambda: b)
    assert len(masks) == 2 and all((m is b["reward_mask"]) if mask_padding else m is None for m in masks)


@pytest.mark.parametrize("bc_data", ["all", "demos"])
def test_bc_imitates_the_demo_half_of_a_batch_only_when_told(bc_data):
    agent, b = q_agent(bc_data=bc_data, action_anchor=1.0), batch()
    b["from_demos"] = torch.tensor([True, False, True, False, True, False])
    seen, bc_loss, anchor_loss = [], agent.actor.bc_loss, agent.actor.anchor_loss
    agent.actor.bc_loss = lambda actions, emb, mask=None: seen.append(actions) or bc_loss(actions, emb, mask)
    agent.actor.anchor_loss = lambda pi, actions, mask=None: seen.append(actions) or anchor_loss(pi, actions, mask)
    agent.actor_loss(b, offline=False)
    expected = b["actions"][b["from_demos"]] if bc_data == "demos" else b["actions"]
    assert len(seen) == 2 and all(torch.equal(a, expected) for a in seen)


def test_stage_weights_come_from_the_recipe():
    released, paper = AgentConfig(), AgentConfig(recipe="paper")
    assert (released.offline, released.online) == (StageWeights(1.0, 0.0), StageWeights(0.1, 1.0))
    assert (paper.offline, paper.online) == (StageWeights(1.0, 0.1), StageWeights(0.5, 1.0))
    mixed = from_dict(AgentConfig, {"recipe": "paper", "online": {"beta": 0.2, "eta": 1.0}})
    assert (mixed.offline, mixed.online) == (StageWeights(1.0, 0.1), StageWeights(0.2, 1.0))
    with pytest.raises(ConfigError, match="'agent.recipe' must be one of: released, paper"):
        from_dict(AgentConfig, {"recipe": "blog"}, "agent")


def test_held_steps_of_a_recorded_demonstration_are_left_out():
    run = make_run()
    rng = np.random.default_rng(3)
    ep = episode(5, 6, rng, intervened=[1] * 6)
    ep.held = np.array([1, 1, 0, 0, 0, 0], bool)  # the recorder held the arm until the human moved the puck
    before = len(run.demo_buffer)
    run.add_demos([(ep, rng.normal(size=(7, D)).astype(np.float32))])
    assert len(run.demo_buffer) == before + 4


def test_seed_splits_never_overlap_and_runs_stay_in_theirs():
    cfg = from_dict(TrainConfig, {"split": "test", "seed": 200, "eval_episodes": 100})
    assert cfg.evaluation_seed == 3_000_000 and cfg.training_seed_limit == 1_000_000
    assert from_dict(TrainConfig, {"seed": 3}).evaluation_seed == 1_000_000  # validation, the default split
    with pytest.raises(ConfigError, match=r"train.seed 3 is not a test seed \(train.test_seeds: \[200, 299\]\)"):
        from_dict(TrainConfig, {"split": "test", "seed": 3})
    with pytest.raises(ConfigError, match=r"train.validation_seeds \[0, 250\] and train.test_seeds \[200, 299\] "
                                          r"overlap"):
        from_dict(TrainConfig, {"validation_seeds": [0, 250]})
    with pytest.raises(ConfigError, match="evaluation episodes of the two splits overlap"):
        from_dict(TrainConfig, {"test_eval_seed": 1_000_050, "eval_episodes": 100})
    # Training episodes draw below both evaluation ranges, whichever comes first.
    assert from_dict(TrainConfig, {"eval_seed": 3_000_000, "test_eval_seed": 500_000}).training_seed_limit == 500_000
