import math

import pytest
import torch

from conrft_core.learning.critic import ChunkedCritic, CriticConfig, calql_penalty, chunked_td_target


def test_chunked_td_target_hand_values():
    gamma = 0.5
    rewards = torch.tensor([[1.0, 2.0, 4.0], [1.0, 10.0, 99.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    n = torch.tensor([3, 2, 3])
    done = torch.tensor([0.0, 1.0, 0.0])
    next_value = torch.tensor([8.0, 1000.0, -8.0])
    y = chunked_td_target(rewards, mask, gamma**n.float(), done, next_value, gamma)
    # 1 + .5*2 + .25*4 + .125*8 ; terminal: 1 + .5*10 (reward 99 past the end masked, no bootstrap) ; 1.75 - 1
    torch.testing.assert_close(y, torch.tensor([4.0, 6.0, 0.75]))


def test_horizon_one_is_the_ordinary_td_target():
    r, v, d = torch.tensor([[0.3]]), torch.tensor([2.0]), torch.tensor([0.0])
    y = chunked_td_target(r, torch.ones(1, 1), torch.tensor([0.98]), d, v, 0.98)
    torch.testing.assert_close(y, torch.tensor([0.3 + 0.98 * 2.0]))


def test_calql_penalty_bounds():
    q_data = torch.zeros(2, 3)
    q_sampled = torch.full((2, 3, 4), -5.0)
    mc = torch.tensor([-10.0, 1.0, 0.0])
    pen = calql_penalty(q_data, q_sampled, mc, include_data=False)
    # Per sample: logsumexp(max(q, mc)) - log 4 - 0 = max(-5, mc)
    assert pen.item() == pytest.approx((-5.0 + 1.0 + 0.0) / 3)
    # Gradient flows only to sampled Q-values above the bound: here the ones with mc = -10.
    q_sampled.requires_grad_(True)
    calql_penalty(q_data, q_sampled, mc).backward()
    assert torch.all(q_sampled.grad[:, 0] > 0) and torch.all(q_sampled.grad[:, 1:] == 0)
    equal = calql_penalty(torch.ones(1, 2), torch.ones(1, 2, 5), torch.full((2,), -math.inf))
    assert equal.item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("bounded, include_data, terms", [
    (None, True, [1.0, 1.0, 1.0, 0.5]),  # released ConRFT: every sample bounded, Q(s, a_data) in the logsumexp
    ([False, True, True], True, [-5.0, 1.0, 1.0, 0.5]),  # official Cal-QL: only the policy's samples bounded
    (None, False, [1.0, 1.0, 1.0]),
])
def test_calql_penalty_released_formula(bounded, include_data, terms):
    """logsumexp over the (bounded) sampled Q values and Q(s, a_data), minus log(3N + 1), minus Q(s, a_data)."""
    q_data, q_sampled, mc = torch.full((1, 1), 0.5), torch.full((1, 1, 3), -5.0), torch.tensor([1.0])
    mask = None if bounded is None else torch.tensor(bounded)
    pen = calql_penalty(q_data, q_sampled, mc, mask, include_data)
    expected = math.log(sum(math.exp(t) for t in terms)) - math.log(len(terms)) - 0.5
    assert pen.item() == pytest.approx(expected, rel=1e-6)


def test_ensemble_shapes_and_polyak():
    torch.manual_seed(0)
    critic = ChunkedCritic(state_dim=5, chunk_dim=14, cfg=CriticConfig(hidden_dim=16, tau=0.5))
    s, a = torch.randn(4, 5), torch.randn(4, 2, 7)
    q = critic(s, a)
    assert q.shape == (2, 4)
    torch.testing.assert_close(critic.target_min(s, a), q.min(0).values.detach())
    member = next(critic.members.parameters())
    target = next(critic.targets.parameters())
    before = target.detach().clone()
    with torch.no_grad():
        member.add_(1.0)
    critic.update_targets()
    torch.testing.assert_close(target, before + 0.5)
    assert not target.requires_grad


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="critic.gamma"):
        CriticConfig(gamma=1.5)
