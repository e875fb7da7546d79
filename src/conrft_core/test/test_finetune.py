"""Full fine-tuning mode (CO-RFT): which loss trains which encoder, and the critic's random-shift augmentation."""
import pytest
import torch

from conrft_core.learning.agent import AgentConfig, ConRFTAgent
from conrft_core.learning.backbone import BackboneConfig
from conrft_core.learning.consistency import ConsistencyConfig
from conrft_core.learning.critic import CriticConfig
from conrft_core.learning.finetune import EncoderConfig, FinetuneEncoders, random_shift
from conrft_core.learning.vla import VLA, PretrainConfig
from conrft_core.robot.spaces import PROPRIO_DIM

B, H, SIZE = 6, 2, 32


def make_agent(seed=0, **encoder):
    torch.manual_seed(seed)
    vla = VLA(PretrainConfig(backbone=BackboneConfig(image_size=SIZE, patch_grid=4, d_model=32, num_layers=1,
                                                     num_heads=2)))
    enc = FinetuneEncoders(vla, EncoderConfig(critic_channels=8, critic_dim=16, **encoder),
                           "insert the peg into the hole")
    cfg = AgentConfig(consistency=ConsistencyConfig(horizon=H, hidden_dim=16, num_levels=10),
                      critic=CriticConfig(hidden_dim=16, cql_num_samples=2))
    return ConRFTAgent(enc.actor_dim, cfg, enc)


def make_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    def obs():
        return {"images": {c: torch.randint(0, 256, (B, 2, SIZE, SIZE, 3), generator=g, dtype=torch.uint8)
                           for c in ("front", "wrist")}, "proprio": torch.randn(B, 2, PROPRIO_DIM, generator=g)}
    return {"obs": obs(), "next_obs": obs(), "actions": torch.rand(B, H, 7, generator=g) * 2 - 1,
            "rewards": torch.randn(B, H, generator=g), "reward_mask": torch.ones(B, H),
            "discount": torch.full((B,), 0.96), "done": torch.zeros(B), "mc_return": torch.randn(B, generator=g)}


def grad_norm(module):
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return sum(float(g.abs().sum()) for g in grads)


def test_actor_losses_train_the_backbone_and_the_critic_loss_its_own_encoder():
    agent = make_agent()
    loss, _ = agent.actor_loss(make_batch(), offline=False)  # the online stage: both BC and Q terms weigh
    loss.backward()
    assert grad_norm(agent.encoders.backbone) > 0 and grad_norm(agent.actor) > 0
    assert grad_norm(agent.encoders.critic) == 0 and grad_norm(agent.critic.members) > 0  # Q term: critic detached

    agent.zero_grad(set_to_none=True)
    loss, info = agent.critic_loss(make_batch(), offline=True)
    loss.backward()
    assert "critic/calql" in info
    assert grad_norm(agent.encoders.critic) > 0 and grad_norm(agent.critic.members) > 0
    assert grad_norm(agent.encoders.backbone) == 0 and grad_norm(agent.actor) == 0


def test_update_moves_both_encoders_and_checkpoints_carry_them():
    agent = make_agent()
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    agent.update(lambda: make_batch(), offline=True)
    changed = {k for k, v in agent.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("encoders.backbone.") for k in changed)
    assert any(k.startswith("encoders.critic.") for k in changed)

    clone = make_agent(seed=1)
    clone.load_state_dict(agent.state_dict())
    batch = make_batch(3)
    torch.testing.assert_close(clone.encoders.actor_state(batch["obs"]), agent.encoders.actor_state(batch["obs"]))


@pytest.mark.parametrize("target_encoder", [True, False])
def test_the_bootstrap_encodes_next_observations_with_the_target_encoder(target_encoder):
    """A step of the live critic encoder leaves the TD target alone unless the target copy is switched off; the
    copy follows by Polyak averaging at the critic's rate."""
    agent = make_agent(target_encoder=target_encoder)
    batch = make_batch()

    def target_mean():
        torch.manual_seed(5)
        return agent.critic_loss(batch, offline=False)[1]["critic/target_mean"]

    before = target_mean()
    with torch.no_grad():
        for p in agent.encoders.critic.parameters():
            p.add_(0.5)
    assert (target_mean() == before) == target_encoder
    live, copy = next(agent.encoders.critic.parameters()), next(agent.encoders.critic_target.parameters())
    gap = (live - copy).detach().clone()
    agent.encoders.update_critic_target(0.25)
    torch.testing.assert_close(live - copy, 0.75 * gap)


def test_random_shift_crops_the_edge_padded_image():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    assert torch.equal(random_shift(x, 0), x)
    torch.manual_seed(0)
    y = random_shift(x, 2)
    assert y.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    for i in range(2):  # each image is one 8x8 window of its padded copy
        offsets = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(padded[i, :, dy:dy + 8, dx:dx + 8], y[i])]
        assert offsets, f"image {i} is not a crop of its padded copy"


def test_encoder_config_is_validated():
    with pytest.raises(ValueError, match="backbone_lr"):
        EncoderConfig(backbone_lr=0)
    with pytest.raises(ValueError, match="shift_pad"):
        EncoderConfig(shift_pad=-1)
