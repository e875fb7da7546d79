"""The agents' losses: ConRFT on a toy problem whose answer is known (the Q term must improve on imitation),
and the HIL-SERL baseline (SAC): squashed-Gaussian log-probability, soft TD target, the same toy problem."""
import math

import pytest
import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from conrft_core.learning.agent import AgentConfig, ConRFTAgent, StageWeights
from conrft_core.learning.consistency import ConsistencyConfig
from conrft_core.learning.critic import CriticConfig
from conrft_core.learning.sac import SACAgent, SACConfig


def toy_batch(n, generator):
    """One-step episodes: reward 1 when action[0] has the sign of the state. Demos are right 60% of the time
    with small actions and wrong 40% of the time with large ones, so even their mean has the wrong sign."""
    sign = torch.randint(0, 2, (n,), generator=generator).float() * 2 - 1
    right = torch.rand(n, generator=generator) < 0.6
    a = torch.rand(n, 1, 7, generator=generator) * 0.2
    magnitude = torch.where(right, 0.2, 0.7) + 0.2 * torch.rand(n, generator=generator)
    a[:, 0, 0] = torch.where(right, sign, -sign) * magnitude
    r = (torch.sign(a[:, 0, 0]) == sign).float()
    state = torch.stack([sign, torch.ones(n)], dim=1)
    return {"state": state, "next_state": state, "actions": a, "rewards": r[:, None],
            "reward_mask": torch.ones(n, 1), "discount": torch.full((n,), 0.98), "done": torch.ones(n),
            "mc_return": r}


def accuracy(agent, n=400):
    sign = torch.randint(0, 2, (n,)).float() * 2 - 1
    a = agent.act(torch.stack([sign, torch.ones(n)], dim=1))
    return (torch.sign(a[:, 0, 0]) == sign).float().mean().item()


def train(offline_weights, steps=200):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    cfg = AgentConfig(consistency=ConsistencyConfig(hidden_dim=64), critic=CriticConfig(hidden_dim=64, cql_num_samples=2),
                      offline=offline_weights, actor_lr=1e-3, critic_lr=1e-3, critic_updates_per_actor=1,
                      action_anchor=0.0)  # the released loss: the anchor would hold the actor on the demos
    agent = ConRFTAgent(state_dim=2, cfg=cfg)
    for _ in range(steps):
        info = agent.update(lambda: toy_batch(64, g), offline=True)
    return agent, info


def test_q_term_beats_imitation_of_inconsistent_demos():
    bc_only, _ = train(StageWeights(beta=1.0, eta=0.0))
    calconrft, info = train(StageWeights(beta=1.0, eta=1.0))
    assert "critic/calql" in info and info["critic/td"] < 0.1
    acc_bc, acc_rl = accuracy(bc_only), accuracy(calconrft)
    assert acc_bc < 0.5  # one-step consistency BC follows the demos' (wrong-signed) bulk
    assert acc_rl > 0.9, (acc_bc, acc_rl)


def test_calql_term_online_only_when_configured():
    g = torch.Generator().manual_seed(2)
    batch = toy_batch(16, g)
    for cql_online in (False, True):
        torch.manual_seed(0)
        agent = ConRFTAgent(state_dim=2, cfg=AgentConfig(consistency=ConsistencyConfig(hidden_dim=16),
                                                         critic=CriticConfig(hidden_dim=16, cql_alpha=1.0,
                                                                             cql_online=cql_online)))
        td_only, info = agent.critic_loss(batch, offline=False)
        assert ("critic/calql" in info) == cql_online
        if cql_online:  # the same TD term plus alpha (1) times the penalty
            assert torch.isclose(td_only, torch.tensor(info["critic/td"] + info["critic/calql"]))
    _, info = agent.critic_loss(batch, offline=True)
    assert "critic/calql" in info


def test_losses_touch_only_their_own_parameters():
    agent = ConRFTAgent(state_dim=2, cfg=AgentConfig(consistency=ConsistencyConfig(hidden_dim=16, horizon=3),
                                                     critic=CriticConfig(hidden_dim=16)))
    g = torch.Generator().manual_seed(1)
    batch = toy_batch(8, g)
    batch["actions"] = batch["actions"].repeat(1, 3, 1)
    batch["rewards"], batch["reward_mask"] = batch["rewards"].repeat(1, 3), batch["reward_mask"].repeat(1, 3)
    loss, _ = agent.critic_loss(batch, offline=True)
    loss.backward()
    assert all(p.grad is None for p in agent.actor.parameters())
    assert all(p.grad is None for p in agent.critic.targets.parameters())
    agent.zero_grad(set_to_none=True)
    loss, _ = agent.actor_loss(batch, offline=False)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.actor.parameters())
    assert agent.act(batch["state"]).shape == (8, 3, 7)


def test_log_prob_matches_torch_tanh_gaussian():
    torch.manual_seed(0)
    agent = SACAgent(3, SACConfig(hidden_dim=16, action_dim=2))
    state = torch.randn(5, 3)
    torch.manual_seed(1)
    action, log_prob = agent.actor(state)
    mean, log_std = agent.actor.net(state).chunk(2, dim=-1)
    dist = TransformedDistribution(Normal(mean, log_std.clamp(-5, 2).exp()), [TanhTransform()])
    expected = dist.log_prob(action.clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1)
    torch.testing.assert_close(log_prob, expected, atol=2e-3, rtol=1e-4)
    det, _ = agent.actor(state, deterministic=True)
    torch.testing.assert_close(det, torch.tanh(mean))


@pytest.mark.parametrize("backup_entropy", [True, False])
def test_soft_td_target_by_hand(backup_entropy):
    torch.manual_seed(0)
    cfg = SACConfig(hidden_dim=8, action_dim=1, init_temperature=0.5, backup_entropy=backup_entropy,
                    discrete_gripper=False)
    agent = SACAgent(1, cfg)
    batch = {"state": torch.zeros(2, 1), "next_state": torch.ones(2, 1), "actions": torch.zeros(2, 1, 1),
             "rewards": torch.tensor([[1.0], [2.0]]), "reward_mask": torch.ones(2, 1),
             "discount": torch.full((2,), cfg.critic.gamma), "done": torch.tensor([0.0, 1.0])}
    torch.manual_seed(5)
    loss, info = agent.critic_loss(batch)
    torch.manual_seed(5)
    a2, logp2 = agent.actor(batch["next_state"])
    v = agent.critic.target_min(batch["next_state"], a2) - (0.5 * logp2 if backup_entropy else 0.0)
    y = torch.tensor([1.0 + cfg.critic.gamma * v[0].item(), 2.0])  # the terminal sample does not bootstrap
    q = agent.critic(batch["state"], batch["actions"])
    assert math.isclose(loss.item(), (q - y).pow(2).mean().item(), rel_tol=1e-5)
    assert math.isclose(info["critic/target_mean"], y.mean().item(), rel_tol=1e-5)


def test_sac_learns_the_toy_task_and_tunes_its_temperature():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    agent = SACAgent(2, SACConfig(hidden_dim=64, actor_lr=1e-3, critic_lr=1e-3, critic_updates_per_actor=1))
    for _ in range(300):
        info = agent.update(lambda: toy_batch(64, g))
    sign = torch.randint(0, 2, (400,)).float() * 2 - 1
    a = agent.act(torch.stack([sign, torch.ones(400)], dim=1), deterministic=True)
    assert a.shape == (400, 1, 7)
    assert (torch.sign(a[:, 0, 0]) == sign).float().mean() > 0.95
    assert info["actor/alpha"] != 0.01  # the temperature moved from its initial value (HIL-SERL's 0.01)


def test_the_discrete_gripper_critic_learns_which_command_pays():
    """Reward 1 when the gripper command is 'open' for positive states and 'close' for negative ones; the
    continuous part gets nothing to learn. G's argmax must pick the paying command (double DQN)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    agent = SACAgent(2, SACConfig(hidden_dim=32, critic_lr=1e-3, critic_updates_per_actor=1))
    assert agent.cfg.discrete_gripper and set(agent.acting_modules()) == {"actor", "gripper"}

    def batch(n=64):
        sign = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
        a = torch.rand(n, 1, 7, generator=g) * 2 - 1
        a[:, 0, 6] = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0)
        r = (torch.sign(a[:, 0, 6]) == sign).float()
        state = torch.stack([sign, torch.ones(n)], dim=1)
        return {"state": state, "next_state": state, "actions": a, "rewards": r[:, None],
                "reward_mask": torch.ones(n, 1), "discount": torch.full((n,), 0.98), "done": torch.ones(n)}

    for _ in range(300):
        info = agent.update(batch)
    assert "gripper/td" in info and info["gripper/td"] < 0.1
    acted = agent.act(torch.tensor([[1.0, 1.0], [-1.0, 1.0]]), deterministic=True)
    assert acted.shape == (2, 1, 7) and acted[:, 0, 6].tolist() == [1.0, -1.0]


def test_action_anchor_adds_the_executed_chunks_error_to_the_bc_term():
    """L_pi = beta * (L_BC + action_anchor * mean_d ||pi(s) - a||^2) - eta * Q: the anchor pulls the one-step
    chunk the policy executes; with the same random draws the loss grows by exactly beta * anchor * error."""
    batch = toy_batch(16, torch.Generator().manual_seed(3))
    losses = {}
    for anchor in (0.0, 5.0):
        torch.manual_seed(0)
        cfg = AgentConfig(consistency=ConsistencyConfig(hidden_dim=16), critic=CriticConfig(hidden_dim=16),
                          online=StageWeights(beta=0.5, eta=1.0), action_anchor=anchor)
        agent = ConRFTAgent(state_dim=2, cfg=cfg)
        torch.manual_seed(1)
        losses[anchor], _ = agent.actor_loss(batch, offline=False)
    torch.manual_seed(1)
    agent.actor.bc_loss(batch["actions"], batch["state"], batch["reward_mask"])  # the same draws, in order
    pi = agent.actor.sample(batch["state"])
    error = (pi - batch["actions"]).pow(2).mean((1, 2)).mean()
    torch.testing.assert_close(losses[5.0] - losses[0.0], 0.5 * 5.0 * error)
    with pytest.raises(ValueError, match="action_anchor"):
        AgentConfig(action_anchor=-1.0)


def test_mc_target_lower_bounds_the_offline_td_target_only():
    batch = toy_batch(16, torch.Generator().manual_seed(4))
    batch["mc_return"] = torch.full((16,), 50.0)  # above any one-step target of the toy task
    torch.manual_seed(0)
    agent = ConRFTAgent(state_dim=2, cfg=AgentConfig(consistency=ConsistencyConfig(hidden_dim=16),
                                                     critic=CriticConfig(hidden_dim=16, mc_target=True)))
    _, offline = agent.critic_loss(batch, offline=True)
    _, online = agent.critic_loss(batch, offline=False)
    assert offline["critic/target_mean"] == pytest.approx(50.0)
    assert online["critic/target_mean"] < 2.0  # r + 0 (one-step episodes end): the TD target itself


def test_actor_ema_acts_with_a_polyak_average_of_the_actor():
    g = torch.Generator().manual_seed(5)
    plain = ConRFTAgent(2, AgentConfig(consistency=ConsistencyConfig(hidden_dim=16), critic=CriticConfig(hidden_dim=16),
                                       actor_ema=0.0))
    assert plain.acting_modules()["actor"] is plain.actor
    assert not any(k.startswith("actor_average") for k in plain.state_dict())  # checkpoints as before
    agent = ConRFTAgent(2, AgentConfig(consistency=ConsistencyConfig(hidden_dim=16), critic=CriticConfig(hidden_dim=16),
                                       actor_ema=0.25))
    before = {k: v.clone() for k, v in agent.actor.state_dict().items()}
    agent.update_bc(lambda: toy_batch(16, g))
    acting = agent.acting_modules()["actor"]
    assert acting is agent.actor_average
    for k, v in acting.state_dict().items():  # theta_bar = 0.75 theta_bar + 0.25 theta, from the same start
        torch.testing.assert_close(v, 0.75 * before[k] + 0.25 * agent.actor.state_dict()[k])
    with pytest.raises(ValueError, match="actor_ema"):
        AgentConfig(actor_ema=1.5)


def test_q_gripper_false_keeps_the_q_term_off_the_gripper_command():
    """Only the imitation terms reach the gripper command: with beta = 0 its output gets no gradient at all,
    while the arm's dimensions still do; with q_gripper the gripper gets the Q term's gradient as well."""
    batch = toy_batch(16, torch.Generator().manual_seed(6))
    grads = {}
    for q_gripper in (True, False):
        torch.manual_seed(0)
        cfg = AgentConfig(consistency=ConsistencyConfig(hidden_dim=16), critic=CriticConfig(hidden_dim=16),
                          online=StageWeights(beta=0.0, eta=1.0), q_gripper=q_gripper)
        agent = ConRFTAgent(state_dim=2, cfg=cfg)
        loss, _ = agent.actor_loss(batch, offline=False)
        loss.backward()
        w = agent.actor.net[-1].weight.grad  # the output layer: one row per (step, dimension) of the chunk
        grads[q_gripper] = w.view(1, 7, -1).abs().sum(-1)[0]
    assert grads[True][6] > 0 and grads[False][6] == 0
    torch.testing.assert_close(grads[False][:6], grads[True][:6])


def test_online_ramp_moves_the_stage_weights_from_offline_to_online():
    """online_ramp_updates: the online actor loss starts as the offline one and becomes the online one after the
    ramp; without it the weights switch at once."""
    cfg = dict(consistency=ConsistencyConfig(hidden_dim=16), critic=CriticConfig(hidden_dim=16),
               offline=StageWeights(beta=1.0, eta=0.0), online=StageWeights(beta=0.1, eta=1.0))
    agent = ConRFTAgent(2, AgentConfig(**cfg, online_ramp_updates=100))
    assert agent.stage_weights(offline=False, online_updates=0) == StageWeights(1.0, 0.0)
    half = agent.stage_weights(offline=False, online_updates=50)
    assert math.isclose(half.beta, 0.55) and math.isclose(half.eta, 0.5)
    assert agent.stage_weights(offline=False, online_updates=100) == StageWeights(0.1, 1.0)
    assert agent.stage_weights(offline=True, online_updates=50) == StageWeights(1.0, 0.0)
    assert ConRFTAgent(2, AgentConfig(**cfg)).stage_weights(offline=False, online_updates=0) == StageWeights(0.1, 1.0)
    batch = toy_batch(16, torch.Generator().manual_seed(7))
    losses = {}
    for offline, done in ((True, 0), (False, 0), (False, 100), (False, 10**6)):
        torch.manual_seed(0)  # the same consistency noise for each loss
        losses[offline, done] = agent.actor_loss(batch, offline, online_updates=done)[0].item()
    assert losses[False, 0] == losses[True, 0]
    assert losses[False, 100] == losses[False, 10**6] != losses[True, 0]
    with pytest.raises(ValueError, match="online_ramp_updates"):
        AgentConfig(online_ramp_updates=-1)
