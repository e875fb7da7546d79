"""HIL-SERL baseline: soft actor-critic with RLPD batches, over the same feature vectors, no VLA and no BC term,
with its authors' released settings.

    critic:  L_Q  = E[(Q_i(s, a) - y)^2],  y = r + gamma (1 - d) min_i Qbar_i(s', a'),  a' ~ pi(s')
             (a 2-member LayerNorm ensemble, as RLPD uses; `backup_entropy` adds - alpha log pi(a'|s') to y)
    actor:   L_pi = E[alpha log pi(a|s) - mean_i Q_i(s, a)],  a ~ pi(s)  (tanh-squashed Gaussian)
    alpha:   L_alpha = -log(alpha) * E[log pi(a|s) + target_entropy],  alpha starts at 0.01
    gripper: its own critic over discrete commands (double DQN),  G(s, g),
             y_g = r + gamma (1 - d) Gbar(s', argmax_g' G(s', g')),  executed: argmax_g G(s, g)

The continuous actor and critic then cover the other action dimensions. Our gripper command is an absolute
opening, so the discrete commands are close (-1) and open (+1): HIL-SERL's third command, "stay", is the
current opening, which an absolute command already expresses. `discrete_gripper: false` keeps the gripper a
continuous dimension of the SAC policy.

HIL-SERL's online batches draw half from the demonstration + intervention buffer and half from the online
buffer (RLPD); the run (conrft_core.learning.run) does that mixing.
"""
from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from conrft_core.learning.critic import ChunkedCritic, CriticConfig, chunked_td_target
from conrft_core.learning.nets import gradient_step, mlp, polyak

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
GRIPPER_COMMANDS = (-1.0, 1.0)  # close, open


@dataclass
class SACConfig:
    hidden_dim: int = 256
    num_layers: int = 2
    action_dim: int = 7
    critic: CriticConfig = field(default_factory=lambda: CriticConfig(ensemble_size=2, cql_alpha=0.0, tau=0.005))
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 3e-4
    init_temperature: float = 0.01  # HIL-SERL's temperature_init
    backup_entropy: bool = False  # entropy term in the critic target (HIL-SERL: none)
    discrete_gripper: bool = True  # the last action dimension by its own discrete critic (HIL-SERL)
    target_entropy: float | None = None  # default -(continuous action dims) / 2
    critic_updates_per_actor: int = 2
    grad_clip: float = 10.0

    def __post_init__(self) -> None:
        if min(self.hidden_dim, self.num_layers, self.action_dim, self.critic_updates_per_actor) < 1:
            raise ValueError("sac.hidden_dim, num_layers, action_dim and critic_updates_per_actor must be >= 1")
        if min(self.actor_lr, self.critic_lr, self.temperature_lr, self.init_temperature) <= 0:
            raise ValueError("sac learning rates and sac.init_temperature must be positive")
        if self.discrete_gripper and self.action_dim < 2:
            raise ValueError("sac.discrete_gripper needs at least one continuous action dimension besides it")

    @property
    def continuous_dim(self) -> int:
        return self.action_dim - 1 if self.discrete_gripper else self.action_dim


class TanhGaussianActor(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, cfg: SACConfig):
        super().__init__()
        self.net = mlp(state_dim, cfg.hidden_dim, cfg.num_layers, 2 * action_dim)

    def forward(self, state: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(action in [-1, 1], log-probability) with the tanh change of variables."""
        mean, log_std = self.net(state).chunk(2, dim=-1)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        u = mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)
        log_prob = (-0.5 * ((u - mean) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log(1 - tanh(u)^2) in a numerically stable form.
        log_prob = log_prob - (2 * (math.log(2) - u - nn.functional.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), log_prob


class GripperCritic(nn.Module):
    """Q-values of the discrete gripper commands, G(s, .) (B, len(GRIPPER_COMMANDS)), with a target copy."""

    def __init__(self, state_dim: int, cfg: SACConfig):
        super().__init__()
        self.cfg = cfg
        self.net = mlp(state_dim, cfg.hidden_dim, cfg.num_layers, len(GRIPPER_COMMANDS))
        self.target = copy.deepcopy(self.net).requires_grad_(False)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state)

    @staticmethod
    def command_index(gripper: torch.Tensor) -> torch.Tensor:
        """The discrete command nearest to an executed (continuous) gripper action."""
        return (gripper > 0).long()

    def loss(self, batch: dict, gamma: float) -> tuple[torch.Tensor, dict]:
        """Double DQN on the first step of each sample."""
        s, s2 = batch["state"], batch["next_state"]
        with torch.no_grad():
            best = self.net(s2).argmax(-1, keepdim=True)
            next_value = self.target(s2).gather(-1, best).squeeze(-1)
            y = chunked_td_target(batch["rewards"], batch["reward_mask"], batch["discount"], batch["done"],
                                  next_value, gamma)
        g = self.net(s).gather(-1, self.command_index(batch["actions"][:, 0, -1])[:, None]).squeeze(-1)
        td = (g - y).pow(2).mean()
        return td, {"gripper/td": td.item(), "gripper/q_mean": g.mean().item()}

    def update_target(self) -> None:
        polyak(self.target, self.net, self.cfg.critic.tau)


class SACAgent(nn.Module):
    """Same interface as ConRFTAgent (`act`, `update`); chunks have H = 1."""

    horizon = 1

    def __init__(self, state_dim: int, cfg: SACConfig):
        super().__init__()
        self.cfg = cfg
        n = cfg.continuous_dim
        self.actor = TanhGaussianActor(state_dim, n, cfg)
        self.critic = ChunkedCritic(state_dim, n, cfg.critic)
        self.gripper = GripperCritic(state_dim, cfg) if cfg.discrete_gripper else None
        self.log_alpha = nn.Parameter(torch.tensor(math.log(cfg.init_temperature)))
        self.target_entropy = cfg.target_entropy if cfg.target_entropy is not None else -n / 2
        critic_params = list(self.critic.members.parameters())
        if self.gripper is not None:
            critic_params += list(self.gripper.net.parameters())
        self.critic_params = critic_params

    # Built at their first use, as ConRFTAgent's: an acting-only agent never loads torch's compiler stack.
    @functools.cached_property
    def actor_opt(self) -> torch.optim.Adam:
        return torch.optim.Adam(self.actor.parameters(), lr=self.cfg.actor_lr)

    @functools.cached_property
    def critic_opt(self) -> torch.optim.Adam:
        return torch.optim.Adam(self.critic_params, lr=self.cfg.critic_lr)

    @functools.cached_property
    def alpha_opt(self) -> torch.optim.Adam:
        return torch.optim.Adam([self.log_alpha], lr=self.cfg.temperature_lr)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt, "alpha": self.alpha_opt}

    def acting_modules(self) -> dict[str, nn.Module]:
        """What a policy node needs to act: the actor and, with the discrete gripper, its critic's online net."""
        return {"actor": self.actor, **({"gripper": self.gripper.net} if self.gripper is not None else {})}

    @torch.no_grad()
    def act(self, state: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Action chunks (B, 1, A): sampled while training, the mean action for evaluation; the gripper is the
        command of highest G either way (as HIL-SERL acts)."""
        a = self.actor(state, deterministic)[0]
        if self.gripper is not None:
            commands = torch.tensor(GRIPPER_COMMANDS, device=state.device)
            a = torch.cat([a, commands[self.gripper(state).argmax(-1)][:, None]], dim=-1)
        return a.unsqueeze(1)

    def critic_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        with torch.no_grad():
            a2, logp2 = self.actor(batch["next_state"])
            next_value = self.critic.target_min(batch["next_state"], a2)
            if self.cfg.backup_entropy:
                next_value = next_value - self.log_alpha.exp() * logp2
            y = chunked_td_target(batch["rewards"], batch["reward_mask"], batch["discount"], batch["done"],
                                  next_value, self.cfg.critic.gamma)
        q = self.critic(batch["state"], batch["actions"][:, :1, :self.cfg.continuous_dim])
        td = (q - y).pow(2).mean()
        info = {"critic/td": td.item(), "critic/q_mean": q.mean().item(), "critic/target_mean": y.mean().item()}
        if self.gripper is None:
            return td, info
        gripper_td, gripper_info = self.gripper.loss(batch, self.cfg.critic.gamma)
        return td + gripper_td, {**info, **gripper_info}

    def update(self, sample_batch, offline: bool = False) -> dict:
        """`critic_updates_per_actor` critic steps, then one actor and one temperature step (`offline` unused:
        SAC has one stage)."""
        for _ in range(self.cfg.critic_updates_per_actor):
            batch = sample_batch()
            loss, info = self.critic_loss(batch)
            gradient_step(self.critic_opt, loss, self.critic_params, self.cfg.grad_clip)
            self.critic.update_targets()
            if self.gripper is not None:
                self.gripper.update_target()
        a, logp = self.actor(batch["state"])
        q = self.critic(batch["state"], a).mean(0)
        alpha = self.log_alpha.exp()
        actor_loss = (alpha.detach() * logp - q).mean()
        gradient_step(self.actor_opt, actor_loss, self.actor.parameters(), self.cfg.grad_clip)
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        gradient_step(self.alpha_opt, alpha_loss, [self.log_alpha], self.cfg.grad_clip)
        return {**info, "actor/q_pi": q.mean().item(), "actor/entropy": -logp.mean().item(),
                "actor/alpha": alpha.item()}
