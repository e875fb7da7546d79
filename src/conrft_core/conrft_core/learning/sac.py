"""HIL-SERL baseline: soft actor-critic with RLPD batches, over the same feature vectors, no VLA and no BC term.

    critic:  L_Q  = E[(Q_i(s, a) - y)^2],  y = r + gamma (1 - d) (min_i Qbar_i(s', a') - alpha log pi(a'|s')),
             a' ~ pi(s')  (a 2-member LayerNorm ensemble, as RLPD uses)
    actor:   L_pi = E[alpha log pi(a|s) - mean_i Q_i(s, a)],  a ~ pi(s)  (tanh-squashed Gaussian)
    alpha:   L_alpha = -log(alpha) * E[log pi(a|s) + target_entropy]

HIL-SERL's online batches draw half from the demonstration + intervention buffer and half from the online
buffer (RLPD); the run (conrft_core.learning.run) does that mixing. One difference from HIL-SERL: the gripper
is a continuous action dimension here, not a separate DQN critic over {open, stay, close}.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from conrft_core.learning.critic import ChunkedCritic, CriticConfig, chunked_td_target
from conrft_core.learning.nets import gradient_step, mlp

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclass
class SACConfig:
    hidden_dim: int = 256
    num_layers: int = 2
    action_dim: int = 7
    critic: CriticConfig = field(default_factory=lambda: CriticConfig(ensemble_size=2, cql_alpha=0.0))
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 3e-4
    init_temperature: float = 0.1
    target_entropy: float | None = None  # default -action_dim / 2
    critic_updates_per_actor: int = 2
    grad_clip: float = 10.0

    def __post_init__(self) -> None:
        if min(self.hidden_dim, self.num_layers, self.action_dim, self.critic_updates_per_actor) < 1:
            raise ValueError("sac.hidden_dim, num_layers, action_dim and critic_updates_per_actor must be >= 1")
        if min(self.actor_lr, self.critic_lr, self.temperature_lr, self.init_temperature) <= 0:
            raise ValueError("sac learning rates and sac.init_temperature must be positive")


class TanhGaussianActor(nn.Module):
    def __init__(self, state_dim: int, cfg: SACConfig):
        super().__init__()
        self.net = mlp(state_dim, cfg.hidden_dim, cfg.num_layers, 2 * cfg.action_dim)

    def forward(self, state: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(action in [-1, 1], log-probability) with the tanh change of variables."""
        mean, log_std = self.net(state).chunk(2, dim=-1)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        u = mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)
        log_prob = (-0.5 * ((u - mean) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log(1 - tanh(u)^2) in a numerically stable form.
        log_prob = log_prob - (2 * (math.log(2) - u - nn.functional.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), log_prob


class SACAgent(nn.Module):
    """Same interface as ConRFTAgent (`act`, `update`); chunks have H = 1."""

    horizon = 1

    def __init__(self, state_dim: int, cfg: SACConfig):
        super().__init__()
        self.cfg = cfg
        self.actor = TanhGaussianActor(state_dim, cfg)
        self.critic = ChunkedCritic(state_dim, cfg.action_dim, cfg.critic)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(cfg.init_temperature)))
        self.target_entropy = cfg.target_entropy if cfg.target_entropy is not None else -cfg.action_dim / 2
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.members.parameters(), lr=cfg.critic_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.temperature_lr)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt, "alpha": self.alpha_opt}

    @torch.no_grad()
    def act(self, state: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Action chunks (B, 1, 7): sampled while training, the mean action for evaluation."""
        return self.actor(state, deterministic)[0].unsqueeze(1)

    def critic_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            a2, logp2 = self.actor(batch["next_state"])
            next_value = self.critic.target_min(batch["next_state"], a2) - alpha * logp2
            y = chunked_td_target(batch["rewards"], batch["reward_mask"], batch["discount"], batch["done"],
                                  next_value, self.cfg.critic.gamma)
        q = self.critic(batch["state"], batch["actions"][:, :1])
        td = (q - y).pow(2).mean()
        return td, {"critic/td": td.item(), "critic/q_mean": q.mean().item(), "critic/target_mean": y.mean().item()}

    def update(self, sample_batch, offline: bool = False) -> dict:
        """`critic_updates_per_actor` critic steps, then one actor and one temperature step (`offline` unused:
        SAC has one stage)."""
        for _ in range(self.cfg.critic_updates_per_actor):
            batch = sample_batch()
            loss, info = self.critic_loss(batch)
            gradient_step(self.critic_opt, loss, self.critic.members.parameters(), self.cfg.grad_clip)
            self.critic.update_targets()
        a, logp = self.actor(batch["state"])
        q = self.critic(batch["state"], a).mean(0)
        alpha = self.log_alpha.exp()
        actor_loss = (alpha.detach() * logp - q).mean()
        gradient_step(self.actor_opt, actor_loss, self.actor.parameters(), self.cfg.grad_clip)
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        gradient_step(self.alpha_opt, alpha_loss, [self.log_alpha], self.cfg.grad_clip)
        return {**info, "actor/q_pi": q.mean().item(), "actor/entropy": -logp.mean().item(),
                "actor/alpha": alpha.item()}
