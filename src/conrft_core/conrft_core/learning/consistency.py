"""Consistency-policy action head (ConRFT), emitting action chunks (CO-RFT).

The head maps a noisy action chunk a_k at noise level k, conditioned on the backbone embedding, straight to
a clean chunk:

    f(a_k, k | emb) = c_skip(k) * a_k + c_out(k) * F(c_in(k) * a_k, k, emb)
    c_skip(k) = sd^2 / ((k - kmin)^2 + sd^2)          -> 1 at k = kmin (boundary condition f(a, kmin) = a)
    c_out(k)  = (k - kmin) * sd / sqrt(k^2 + sd^2)    -> 0 at k = kmin

c_in(k) = 1 / sqrt(k^2 + sd^2) scales the network input to unit variance (as in EDM and consistency models;
without it the noise at k = 80 drowns the embedding), with the Karras noise schedule of M levels between
kmin = 0.002 and kmax = 80 (rho = 7), sd = sigma_data = 0.5. Sampling is one step from pure noise
a_K ~ N(0, kmax^2 I) (optionally multi-step), clipped to [-1, 1]. The behaviour-cloning term of the
Cal-ConRFT / HIL-ConRFT actor loss is the consistency BC loss

    L_BC = E_{m ~ U{1..M-1}, z ~ N(0, I)} [ w(k_m) * mean_d (clip(f(a + k_m z, k_m), -1, 1) - a)_d^2 ],
    w(k) = 1/k^2 + 1/sd^2,

as the released ConRFT code computes it (mean over the action dimensions, the denoised output clipped inside the
loss); `bc_reduction: sum` and `bc_clip: false` give the paper's ||f - a||^2. In a chunk, steps past the episode
end (padding, `mask` 0) do not count, as in Q-chunking. A chunk is H x 7 (H = 1 reproduces ConRFT exactly); the
network sees it flattened.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from conrft_core.learning.nets import mlp


@dataclass
class ConsistencyConfig:
    """Hyperparameters of the consistency head (ConRFT paper values as defaults)."""

    horizon: int = 1  # H, actions per chunk
    action_dim: int = 7
    num_levels: int = 40  # M, noise levels of the Karras schedule
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    rho: float = 7.0
    hidden_dim: int = 256
    num_layers: int = 2
    time_embed_dim: int = 16
    sample_steps: int = 1  # 1: one-step sampling; >1: multi-step consistency sampling
    bc_reduction: str = "mean"  # over the chunk's dimensions: mean (released code) or sum (the paper's norm)
    bc_clip: bool = True  # the denoised chunk clipped to [-1, 1] inside the BC loss (released code)

    def __post_init__(self) -> None:
        for name in ("horizon", "action_dim", "hidden_dim", "num_layers", "time_embed_dim", "sample_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"consistency.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_levels < 2:
            raise ValueError(f"consistency.num_levels must be >= 2, got {self.num_levels}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError("consistency.sigma_min must be positive and below sigma_max")
        if self.sigma_data <= 0 or self.rho <= 0:
            raise ValueError("consistency.sigma_data and consistency.rho must be positive")
        if self.bc_reduction not in ("mean", "sum"):
            raise ValueError(f"consistency.bc_reduction must be mean or sum, got {self.bc_reduction!r}")
        if self.sample_steps > self.num_levels - 1:
            raise ValueError(f"consistency.sample_steps ({self.sample_steps}) must be below num_levels "
                             f"({self.num_levels})")


def karras_sigmas(cfg: ConsistencyConfig) -> torch.Tensor:
    """M noise levels, increasing from sigma_min to sigma_max (Karras et al. 2022, eq. 5)."""
    i = torch.arange(cfg.num_levels, dtype=torch.float64) / (cfg.num_levels - 1)
    lo, hi = cfg.sigma_min ** (1 / cfg.rho), cfg.sigma_max ** (1 / cfg.rho)
    return ((lo + i * (hi - lo)) ** cfg.rho).float()


def boundary_scalings(k: torch.Tensor, cfg: ConsistencyConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_skip(k), c_out(k)); they make f(a, kmin) = a exactly."""
    sd, kmin = cfg.sigma_data, cfg.sigma_min
    c_skip = sd**2 / ((k - kmin) ** 2 + sd**2)
    c_out = (k - kmin) * sd / torch.sqrt(k**2 + sd**2)
    return c_skip, c_out


class SinusoidalTimeEmbedding(nn.Module):
    """Embeds log(k) with fixed sinusoids, so noise levels spanning 5 decades get comparable features."""

    def __init__(self, dim: int):
        super().__init__()
        half = max(1, dim // 2)
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(100.0), half)), persistent=False)

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        x = 0.25 * torch.log(k).unsqueeze(-1) * self.freqs
        return torch.cat([torch.sin(x), torch.cos(x)], dim=-1)


class ConsistencyHead(nn.Module):
    """f(a_k, k | embedding) over flattened H x action_dim chunks."""

    def __init__(self, embed_dim: int, cfg: ConsistencyConfig):
        super().__init__()
        self.cfg = cfg
        self.chunk_dim = cfg.horizon * cfg.action_dim
        self.time_embed = SinusoidalTimeEmbedding(cfg.time_embed_dim)
        time_dim = 2 * self.time_embed.freqs.numel()
        self.net = mlp(self.chunk_dim + time_dim + embed_dim, cfg.hidden_dim, cfg.num_layers, self.chunk_dim)
        self.register_buffer("sigmas", karras_sigmas(cfg), persistent=False)

    def denoise(self, a_k: torch.Tensor, k: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """f(a_k, k): a_k (B, H, A), k (B,), emb (B, E) -> clean chunk estimate (B, H, A), unclipped."""
        flat = a_k.reshape(len(a_k), self.chunk_dim)
        c_in = 1.0 / torch.sqrt(k**2 + self.cfg.sigma_data**2)
        out = self.net(torch.cat([c_in[:, None] * flat, self.time_embed(k), emb], dim=-1))
        c_skip, c_out = boundary_scalings(k, self.cfg)
        return (c_skip[:, None] * flat + c_out[:, None] * out).reshape(a_k.shape)

    def bc_loss(self, actions: torch.Tensor, emb: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Consistency BC loss, averaged over the batch; actions (B, H, A) from the data, mask (B, H) 1 for the
        chunk's real steps (None: all)."""
        m = torch.randint(1, self.cfg.num_levels, (len(actions),), device=actions.device)
        k = self.sigmas[m]
        a_m = actions + k[:, None, None] * torch.randn_like(actions)
        weight = 1.0 / k**2 + 1.0 / self.cfg.sigma_data**2
        denoised = self.denoise(a_m, k, emb)
        if self.cfg.bc_clip:
            denoised = denoised.clamp(-1.0, 1.0)
        return (weight * self._masked_error(denoised, actions, mask)).mean()

    def anchor_loss(self, pi: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """||pi(s) - a||^2 of the executed (top-level, one-step) chunk pi, reduced as the BC loss."""
        return self._masked_error(pi, actions, mask).mean()

    def _masked_error(self, pred: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Per-sample squared error (B,) over the chunk's real steps, summed or averaged per bc_reduction."""
        err = (pred - actions).pow(2)  # (B, H, A)
        mask = torch.ones(err.shape[:2], device=err.device) if mask is None else mask.to(err.dtype)
        per_sample = (err * mask[..., None]).sum((1, 2))
        if self.cfg.bc_reduction == "mean":
            per_sample = per_sample / (mask.sum(1).clamp_min(1.0) * err.shape[2])
        return per_sample

    def levels(self, steps: int) -> list[int]:
        """Schedule indices of the re-noising passes after the first (at the top level) in `steps`-step sampling:
        evenly spaced strictly between the top level M-1 and the bottom level 0 (where f is the identity)."""
        top = self.cfg.num_levels - 1
        return sorted({min(top - 1, max(1, round(x))) for x in torch.linspace(top, 0, steps + 1)[1:-1].tolist()},
                      reverse=True)

    def sample(self, emb: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Action chunks (B, H, A) in [-1, 1]: one step from N(0, kmax^2 I), or multi-step if steps > 1."""
        steps = steps or self.cfg.sample_steps
        shape = (len(emb), self.cfg.horizon, self.cfg.action_dim)
        k = torch.full((len(emb),), self.cfg.sigma_max, device=emb.device)
        a = self.denoise(self.cfg.sigma_max * torch.randn(shape, device=emb.device), k, emb)
        # Multi-step: re-noise to decreasing levels and denoise again (consistency-model sampling).
        for idx in self.levels(steps):
            level = float(self.sigmas[idx])
            noise = math.sqrt(max(level**2 - self.cfg.sigma_min**2, 0.0)) * torch.randn(shape, device=emb.device)
            a = self.denoise(a.clamp(-1, 1) + noise, torch.full_like(k, level), emb)
        return a.clamp(-1.0, 1.0)
