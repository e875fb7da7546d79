"""Full fine-tuning mode (CO-RFT): the pretrained VLA backbone trains together with the head and the critic.

In the frozen mode (ConRFT) each observation's embedding is computed once and stored; here the buffers store
the camera frames instead (each once, see `conrft_core.data.replay`) and every update encodes its batch again:

    actor state   s_pi = normalise([backbone(o_{t-h+1..t}, l), proprio_t])   backbone trained by the actor losses
    critic state  s_Q  = [CNN_Q(shift(o_t)), normalise(proprio_t)]            the critic's own image encoder

The critic's encoder is a small CNN of its own with random-shift augmentation (DrQ), trained by the critic
loss only; the actor's Q term reaches the backbone through pi(s_pi), never the critic's encoder. The TD
bootstrap encodes s' with a Polyak-averaged target copy of that encoder (as DrQ does), following the critic's
own target networks (`target_encoder: false` bootstraps through the live encoder instead). The
normalisation is fixed from the demonstrations' features under the pretrained weights, as in frozen mode.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from conrft_core.data.episode import Episode
from conrft_core.learning.nets import polyak
from conrft_core.learning.vla import VLA, VLAFeaturizer


@dataclass
class EncoderConfig:
    backbone_lr: float = 1e-4  # the pretrained backbone moves slower than the freshly initialised head
    critic_channels: int = 32  # conv width of the critic's CNN
    critic_dim: int = 64  # per-camera feature size of the critic's CNN
    shift_pad: int = 4  # random shift of up to +-shift_pad pixels (DrQ); 0 disables it
    target_encoder: bool = True  # the bootstrap encodes s' with a target copy of the critic's encoder

    def __post_init__(self) -> None:
        if self.backbone_lr <= 0 or self.critic_channels < 1 or self.critic_dim < 1 or self.shift_pad < 0:
            raise ValueError("encoder.backbone_lr must be positive, encoder.critic_channels and critic_dim >= 1, "
                             "encoder.shift_pad >= 0")


def random_shift(images: torch.Tensor, pad: int) -> torch.Tensor:
    """Each image (B, C, H, W) padded by `pad` (edge pixels repeated) and cropped back at a random offset."""
    if pad == 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b), device=images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].squeeze(1).permute(0, 3, 1, 2)


class CriticImageEncoder(nn.Module):
    """The critic's own encoder: per camera a small CNN over the newest frame, plus the proprio vector."""

    def __init__(self, cameras: tuple[str, ...], proprio_dim: int, cfg: EncoderConfig):
        super().__init__()
        self.cameras, self.pad = cameras, cfg.shift_pad
        c = cfg.critic_channels
        self.nets = nn.ModuleDict({cam: nn.Sequential(
            nn.Conv2d(3, c, 3, stride=2), nn.ReLU(), nn.Conv2d(c, c, 3, stride=2), nn.ReLU(),
            nn.Conv2d(c, c, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(16 * c, cfg.critic_dim), nn.LayerNorm(cfg.critic_dim), nn.Tanh(),
        ) for cam in cameras})
        self.dim = len(cameras) * cfg.critic_dim + proprio_dim

    def forward(self, images: dict[str, torch.Tensor], proprio: torch.Tensor) -> torch.Tensor:
        """images {camera: (B, T, H, W, 3) uint8}, proprio (B, P) already normalised -> (B, dim)."""
        feats = [self.nets[cam](random_shift(images[cam][:, -1].permute(0, 3, 1, 2).float() / 127.5 - 1.0,
                                             self.pad)) for cam in self.cameras]
        return torch.cat([*feats, proprio], dim=-1)


class FinetuneEncoders(nn.Module):
    """Both encoders of the full fine-tuning mode; `actor_state` and `critic_state` take observation windows
    as the replay buffer returns them ({"images": {camera: (B, T, H, W, 3)}, "proprio": (B, T, P)})."""

    def __init__(self, vla: VLA, cfg: EncoderConfig, instruction: str):
        super().__init__()
        self.cfg, self.vla_cfg, self.instruction = cfg, vla.cfg, instruction
        self.backbone = vla.backbone.train().requires_grad_(True)
        self.actor_dim = vla.feature_dim
        bb = vla.cfg.backbone
        self.critic = CriticImageEncoder(bb.cameras, bb.proprio_dim, cfg)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.register_buffer("actor_mean", torch.zeros(self.actor_dim))
        self.register_buffer("actor_std", torch.ones(self.actor_dim))
        self.register_buffer("proprio_mean", torch.zeros(bb.proprio_dim))
        self.register_buffer("proprio_std", torch.ones(bb.proprio_dim))

    def raw_actor(self, obs: dict) -> torch.Tensor:
        proprio = obs["proprio"]
        emb = self.backbone(obs["images"], proprio, [self.instruction] * len(proprio))
        return torch.cat([emb, proprio[:, -1]], dim=-1)

    def actor_state(self, obs: dict) -> torch.Tensor:
        return ((self.raw_actor(obs) - self.actor_mean) / self.actor_std).clamp(-10.0, 10.0)

    def critic_state(self, obs: dict, target: bool = False) -> torch.Tensor:
        proprio = ((obs["proprio"][:, -1] - self.proprio_mean) / self.proprio_std).clamp(-10.0, 10.0)
        encoder = self.critic_target if target and self.cfg.target_encoder else self.critic
        return encoder(obs["images"], proprio)

    def update_critic_target(self, tau: float) -> None:
        """Polyak averaging of the critic encoder's target copy, at the critic's rate."""
        polyak(self.critic_target, self.critic, tau)

    @torch.no_grad()
    def fit_normalization(self, episodes: list[Episode]) -> None:
        """Mean and std of the demonstrations' actor features (current backbone) and proprio."""
        raw = FinetuneFeaturizer(self, raw=True)
        x = torch.as_tensor(np.concatenate([raw.episode_features(ep) for ep in episodes]))
        p = torch.as_tensor(np.concatenate([ep.proprio for ep in episodes]))
        for name, value in (("actor_mean", x.mean(0)), ("actor_std", x.std(0).clamp_min(1e-3)),
                            ("proprio_mean", p.mean(0)), ("proprio_std", p.std(0).clamp_min(1e-3))):
            getattr(self, name).copy_(value)


class FinetuneFeaturizer(VLAFeaturizer):
    """Rollout features in full fine-tuning mode: the actor state of the observation window under the
    backbone's current weights, already normalised (the policy's own normalisation stays the identity);
    `raw` gives the features before normalisation (what `fit_normalization` measures)."""

    def __init__(self, encoders: FinetuneEncoders, raw: bool = False):
        self.encoders, self.raw = encoders, raw
        self._setup(encoders.vla_cfg.backbone, encoders.actor_dim, encoders.actor_mean.device)

    def _features(self, images, proprio, instructions):
        obs = {"images": images, "proprio": proprio}
        return self.encoders.raw_actor(obs) if self.raw else self.encoders.actor_state(obs)
