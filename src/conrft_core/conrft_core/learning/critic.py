"""Chunked critic ensemble: Q(s, a_{t:t+H}) with chunked TD targets (CO-RFT) and the Cal-QL regulariser.

Chunked TD target for a chunk of H actions starting at t, of which n <= H are real steps of the episode:

    y = sum_{k<H} gamma^k r_{t+k} m_k + gamma^n (1 - d) min_i Qbar_i(s_{t+n}, pi(s_{t+n}))

(m_k masks rewards past the episode end, d = 1 when the chunk reaches a terminal step). With H = 1 this is the
ordinary one-step target of ConRFT.

Cal-ConRFT's critic loss adds alpha times the calibrated conservative term of Cal-QL, as the released ConRFT
code computes it:

    E_s[ logsumexp({max(Q(s, a_j), V_mc(s))}_j U {Q(s, a_data)}) - log(3N + 1) - Q(s, a_data) ],

where the a_j are N chunks drawn from each of uniform, pi(s) and pi(s'), and V_mc is the Monte-Carlo return of
the data: Q-values below it are not pushed down further, so the critic stays calibrated to the data. Switches:
`calql_bound: policy` bounds only pi(s) and pi(s') samples (the official Cal-QL code), `cql_include_data: false`
leaves Q(s, a_data) out of the logsumexp.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from conrft_core.learning.nets import mlp, polyak


@dataclass
class CriticConfig:
    ensemble_size: int = 2
    hidden_dim: int = 256
    num_layers: int = 2
    gamma: float = 0.98  # per control step
    tau: float = 0.05  # Polyak rate of the target networks (released 0.005: too slow for a short offline stage)
    cql_alpha: float = 0.1  # weight of the Cal-QL term (released ConRFT: 0.1)
    # ConRFT drops the Cal-QL term online; Cal-QL itself keeps it while fine-tuning online. Against the H = 1
    # collapse after the offline -> online switch it was measured to be no cure (results/README.md).
    cql_online: bool = False
    cql_num_samples: int = 10  # sampled chunks per source (uniform, pi(s), pi(s')) in the logsumexp
    calql_bound: Literal["all", "policy"] = "all"  # which samples the MC return bounds (ConRFT: all)
    cql_include_data: bool = True  # Q(s, a_data) inside the logsumexp (ConRFT, CQL)
    # Offline stage: the TD target lower-bounded by the data's Monte-Carlo return, y = max(y, V_mc) (as MCAC,
    # Wilcox et al. 2022): values reach the demonstrations' returns in hundreds of updates instead of waiting for
    # the target network to carry the success reward back step by step. Not in the released code.
    mc_target: bool = False

    def __post_init__(self) -> None:
        if self.ensemble_size < 1 or self.hidden_dim < 1 or self.num_layers < 1 or self.cql_num_samples < 1:
            raise ValueError("critic.ensemble_size, hidden_dim, num_layers and cql_num_samples must be >= 1")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"critic.gamma must be in (0, 1], got {self.gamma}")
        if not 0 < self.tau <= 1:
            raise ValueError(f"critic.tau must be in (0, 1], got {self.tau}")
        if self.cql_alpha < 0:
            raise ValueError(f"critic.cql_alpha must be >= 0, got {self.cql_alpha}")


class ChunkedCritic(nn.Module):
    """An ensemble of MLPs over [state features, flattened action chunk] -> Q, with target copies."""

    def __init__(self, state_dim: int, chunk_dim: int, cfg: CriticConfig):
        super().__init__()
        self.cfg = cfg
        self.chunk_dim = chunk_dim
        self.members = nn.ModuleList(
            mlp(state_dim + chunk_dim, cfg.hidden_dim, cfg.num_layers, 1) for _ in range(cfg.ensemble_size)
        )
        self.targets = copy.deepcopy(self.members).requires_grad_(False)

    @staticmethod
    def _q(nets: nn.ModuleList, state: torch.Tensor, chunk: torch.Tensor) -> torch.Tensor:
        x = torch.cat([state, chunk.flatten(1)], dim=-1)
        return torch.stack([net(x).squeeze(-1) for net in nets])  # (E, B)

    def forward(self, state: torch.Tensor, chunk: torch.Tensor) -> torch.Tensor:
        """Q-values of every member, (E, B)."""
        return self._q(self.members, state, chunk)

    @torch.no_grad()
    def target_min(self, state: torch.Tensor, chunk: torch.Tensor) -> torch.Tensor:
        """min_i Qbar_i(s, a), (B,): the clipped double-Q bootstrap value."""
        return self._q(self.targets, state, chunk).min(0).values

    def update_targets(self) -> None:
        """Polyak averaging: Qbar <- (1 - tau) Qbar + tau Q."""
        polyak(self.targets, self.members, self.cfg.tau)


def chunked_td_target(rewards, reward_mask, discount, done, next_value, gamma: float) -> torch.Tensor:
    """y = sum_k gamma^k r_k m_k + discount * (1 - done) * next_value, with discount = gamma^n.

    rewards, reward_mask: (B, H); discount, done, next_value: (B,).
    """
    powers = gamma ** torch.arange(rewards.shape[1], dtype=rewards.dtype, device=rewards.device)
    return (rewards * reward_mask * powers).sum(-1) + discount * (1.0 - done) * next_value


def calql_penalty(q_data: torch.Tensor, q_sampled: torch.Tensor, mc_return: torch.Tensor,
                  bounded: torch.Tensor | None = None, include_data: bool = True) -> torch.Tensor:
    """Cal-QL conservative term, averaged over ensemble and batch.

    q_data: (E, B) Q at the dataset chunk; q_sampled: (E, B, N) Q at N sampled chunks; mc_return: (B,);
    bounded: (N,) bool, the samples lower-bounded by the Monte-Carlo return before the logsumexp (None: all).
    log of the number of terms is subtracted (a constant: gradients are unchanged) so the term is 0 when every
    Q equals Q_data.
    """
    lower = torch.maximum(q_sampled, mc_return[None, :, None])
    q = lower if bounded is None else torch.where(bounded, lower, q_sampled)
    if include_data:
        q = torch.cat([q, q_data[..., None]], dim=-1)
    return (torch.logsumexp(q, dim=-1) - math.log(q.shape[-1]) - q_data).mean()
