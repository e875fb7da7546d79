import math

import pytest
import torch

from conrft_core.learning.consistency import ConsistencyConfig, ConsistencyHead, boundary_scalings, karras_sigmas


def test_karras_schedule_hand_values():
    cfg = ConsistencyConfig(num_levels=3, sigma_min=0.002, sigma_max=80.0, rho=7.0)
    s = karras_sigmas(cfg)
    mid = ((0.002 ** (1 / 7) + 80.0 ** (1 / 7)) / 2) ** 7
    torch.testing.assert_close(s, torch.tensor([0.002, mid, 80.0]), rtol=1e-5, atol=1e-7)
    full = karras_sigmas(ConsistencyConfig())
    assert len(full) == 40 and torch.all(full[1:] > full[:-1])


def test_boundary_conditions():
    cfg = ConsistencyConfig()
    c_skip, c_out = boundary_scalings(torch.tensor([cfg.sigma_min, 1.0]), cfg)
    assert c_skip[0].item() == 1.0 and c_out[0].item() == 0.0
    # hand values at k = 1: sd^2 / ((1 - kmin)^2 + sd^2), (1 - kmin) sd / sqrt(1 + sd^2)
    assert c_skip[1].item() == pytest.approx(0.25 / ((1 - 0.002) ** 2 + 0.25), rel=1e-6)
    assert c_out[1].item() == pytest.approx(0.998 * 0.5 / math.sqrt(1.25), rel=1e-6)
    head = ConsistencyHead(embed_dim=3, cfg=ConsistencyConfig(horizon=2))
    a = torch.rand(4, 2, 7) * 2 - 1
    out = head.denoise(a, torch.full((4,), cfg.sigma_min), torch.randn(4, 3))
    torch.testing.assert_close(out, a)  # f(a, kmin) = a whatever the network


@pytest.mark.parametrize("reduction, clip", [("mean", True), ("sum", False), ("mean", False)])
def test_bc_loss_matches_the_released_formula(reduction, clip):
    """Released ConRFT: w(k) * mean over dimensions of (clip(f(a_m, k), -1, 1) - a)^2; the paper's reading sums
    over dimensions without the clip. Padding steps (mask 0) count in neither."""
    cfg = ConsistencyConfig(horizon=2, num_levels=5, bc_reduction=reduction, bc_clip=clip)
    head = ConsistencyHead(embed_dim=3, cfg=cfg)
    torch.nn.init.zeros_(head.net[-1].weight)
    torch.nn.init.constant_(head.net[-1].bias, 3.0)  # F = 3, so f(a_m, k) = c_skip(k) a_m + 3 c_out(k): often > 1
    a, emb = torch.rand(6, 2, 7) * 2 - 1, torch.randn(6, 3)
    mask = torch.tensor([[1.0, 1.0]] * 4 + [[1.0, 0.0]] * 2)
    torch.manual_seed(0)
    loss = head.bc_loss(a, emb, mask)
    torch.manual_seed(0)
    m = torch.randint(1, 5, (6,))
    k = karras_sigmas(cfg)[m]
    z = torch.randn_like(a)
    c_skip, c_out = boundary_scalings(k, cfg)
    raw = c_skip[:, None, None] * (a + k[:, None, None] * z) + 3.0 * c_out[:, None, None]
    f = raw.clamp(-1, 1) if clip else raw
    sq = ((f - a) ** 2) * mask[..., None]
    per = sq.sum((1, 2)) / (mask.sum(1) * 7) if reduction == "mean" else sq.sum((1, 2))
    expected = ((1 / k**2 + 1 / 0.25) * per).mean()
    torch.testing.assert_close(loss, expected)
    assert (raw.abs() > 1).any()  # the clip is exercised


def test_two_step_sampling_differs_from_one_step():
    """The second pass re-noises to a middle level (not the bottom one, where f is the identity)."""
    torch.manual_seed(0)
    head = ConsistencyHead(embed_dim=3, cfg=ConsistencyConfig(hidden_dim=32))
    assert head.levels(1) == [] and head.levels(2) == [20] and head.levels(3) == [26, 13]
    emb = torch.randn(8, 3)
    torch.manual_seed(1)
    one = head.sample(emb, steps=1)
    torch.manual_seed(1)
    two = head.sample(emb, steps=2)
    assert (one - two).abs().max() > 1e-2
    with pytest.raises(ValueError, match="sample_steps"):
        ConsistencyConfig(sample_steps=40)


def test_sampling_shapes_range_and_learning():
    torch.manual_seed(0)
    cfg = ConsistencyConfig(horizon=3, hidden_dim=64)
    head = ConsistencyHead(embed_dim=2, cfg=cfg)
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    target = torch.stack([torch.full((3, 7), 0.6), torch.full((3, 7), -0.4)])
    before = (head.sample(emb) - target).abs().mean().item()
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    for _ in range(2000):
        idx = torch.randint(0, 2, (128,))
        loss = head.bc_loss(target[idx], emb[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    # One-step sampling learns from the top noise levels only, so it converges slower than multi-step.
    for steps, tol in ((1, 0.15), (3, 0.1)):
        out = head.sample(emb.repeat(50, 1), steps=steps)
        assert out.shape == (100, 3, 7) and out.abs().max() <= 1.0
        err = (out - target.repeat(50, 1, 1)).abs().mean().item()
        assert err < tol < before, (steps, err, before)


def test_config_validation_names_field():
    with pytest.raises(ValueError, match="consistency.num_levels"):
        ConsistencyConfig(num_levels=1)
