"""The VLA backbone: a pluggable interface and the built-in small Octo-style transformer.

A backbone turns an observation window (camera images, proprio, instruction; `history` steps) into one
embedding vector. ConRFT keeps the backbone frozen and stores the embedding per step (frozen mode); CO-RFT
fine-tunes it with the head (full fine-tuning mode). Users with their own VLA implement `Backbone`.

The built-in model, per time step of the window: a conv stem per camera cuts each image into patch tokens, a
linear layer makes one proprio token; the instruction becomes word tokens (hashed vocabulary, so it works
offline with no tokenizer files); learned readout tokens join them, a transformer encoder mixes everything,
and the embedding is the mean of the readout tokens' outputs (as Octo's readout heads do).
"""
from __future__ import annotations

import re
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class BackboneConfig:
    cameras: tuple[str, ...] = ("front", "wrist")
    image_size: int = 128  # square input; other sizes are resized by the caller
    history: int = 2
    proprio_dim: int = 19  # this stack's robots (conrft_core.robot.spaces); pretraining checks the data's
    d_model: int = 128
    num_layers: int = 3
    num_heads: int = 4
    patch_grid: int = 8  # each image becomes patch_grid^2 tokens
    num_readouts: int = 4
    vocab_size: int = 2048
    max_words: int = 16
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ValueError("backbone.cameras must name at least one camera")
        if self.image_size % self.patch_grid:
            raise ValueError(f"backbone.image_size ({self.image_size}) must be a multiple of backbone.patch_grid "
                             f"({self.patch_grid})")
        if self.d_model % self.num_heads:
            raise ValueError("backbone.d_model must be divisible by backbone.num_heads")
        for name in ("history", "proprio_dim", "num_layers", "num_readouts", "vocab_size", "max_words"):
            if getattr(self, name) < 1:
                raise ValueError(f"backbone.{name} must be >= 1")


def tokenize(instructions: list[str], vocab_size: int, max_words: int) -> torch.Tensor:
    """Lower-cased words hashed (crc32) into [1, vocab_size); 0 pads. Deterministic across processes."""
    out = torch.zeros(len(instructions), max_words, dtype=torch.long)
    for i, text in enumerate(instructions):
        words = re.findall(r"[a-z0-9]+", text.lower())[:max_words]
        out[i, : len(words)] = torch.tensor([1 + zlib.crc32(w.encode()) % (vocab_size - 1) for w in words],
                                            dtype=torch.long)
    return out


class Backbone(nn.Module, ABC):
    """Observation window -> embedding (B, embed_dim). Images are uint8 (B, T, H, W, 3) per camera."""

    embed_dim: int

    @abstractmethod
    def forward(self, images: dict[str, torch.Tensor], proprio: torch.Tensor, instructions: list[str]) -> torch.Tensor:
        ...


class OctoStyleBackbone(Backbone):
    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.cfg = cfg
        d, g = cfg.d_model, cfg.patch_grid
        stride = cfg.image_size // g
        self.stems = nn.ModuleDict({
            cam: nn.Sequential(
                nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.GroupNorm(8, 32), nn.GELU(),
                nn.Conv2d(32, d, stride // 2, stride=stride // 2),
            )
            for cam in cfg.cameras
        })
        self.proprio_proj = nn.Linear(cfg.proprio_dim, d)
        self.words = nn.Embedding(cfg.vocab_size, d, padding_idx=0)
        tokens_per_step = len(cfg.cameras) * g * g + 1
        self.obs_pos = nn.Parameter(torch.zeros(cfg.history, tokens_per_step, d))
        self.word_pos = nn.Parameter(torch.zeros(cfg.max_words, d))
        self.readouts = nn.Parameter(torch.randn(cfg.num_readouts, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, cfg.num_heads, 4 * d, cfg.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.embed_dim = d
        nn.init.normal_(self.obs_pos, std=0.02)
        nn.init.normal_(self.word_pos, std=0.02)

    def forward(self, images, proprio, instructions):
        cfg = self.cfg
        b, t = proprio.shape[:2]
        if t != cfg.history:
            raise ValueError(f"observation window has {t} steps, backbone.history is {cfg.history}")
        step_tokens = []
        for cam in cfg.cameras:
            x = images[cam].flatten(0, 1).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (B*T, 3, H, W) in [-1, 1]
            step_tokens.append(self.stems[cam](x).flatten(2).transpose(1, 2))  # (B*T, g*g, d)
        step_tokens.append(self.proprio_proj(proprio.flatten(0, 1)).unsqueeze(1))
        obs = torch.cat(step_tokens, dim=1).unflatten(0, (b, t)) + self.obs_pos  # (B, T, N, d)
        ids = tokenize(instructions, cfg.vocab_size, cfg.max_words).to(proprio.device)
        words = self.words(ids) + self.word_pos
        tokens = torch.cat([words, obs.flatten(1, 2), self.readouts.expand(b, -1, -1)], dim=1)
        pad = torch.cat([ids == 0, torch.zeros(b, tokens.shape[1] - ids.shape[1], dtype=torch.bool,
                                                device=ids.device)], dim=1)
        out = self.encoder(tokens, src_key_padding_mask=pad)
        return self.norm(out[:, -cfg.num_readouts:].mean(1))
