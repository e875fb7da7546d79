"""Generalist pretraining of the built-in VLA and its frozen use in fine-tuning.

Pretraining (stand-in for Octo / RoboVLMs): multi-task imitation of demonstrations from every task, each with
its instruction. The Octo-style backbone and a consistency head over [embedding, proprio] are trained end to
end with the consistency BC loss on windows of `history` observations:

    L = E_{(o_{t-h+1..t}, l, a_t) ~ D_all tasks} [ L_BC(consistency)(a_t | backbone(o, l), proprio_t) ]

The result (`vla.safetensors`: backbone + head + configs) is the "pretrained VLA" the fine-tuning stages start
from. ConRFT fine-tunes with the backbone frozen: `VLAFeaturizer` turns each observation (with the previous
ones of the episode) into [embedding, proprio], computed once per step and stored in the replay buffers.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from conrft_core.checkpoint import CheckpointError, load_checkpoint, load_into, save_checkpoint
from conrft_core.config import ConfigError, from_dict, to_dict
from conrft_core.data.episode import Episode
from conrft_core.learning.backbone import BackboneConfig, OctoStyleBackbone
from conrft_core.learning.consistency import ConsistencyConfig, ConsistencyHead
from conrft_core.learning.nets import gradient_step


@dataclass
class PretrainConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    steps: int = 3000
    batch_size: int = 64
    lr: float = 3e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("pretrain.steps and pretrain.batch_size must be >= 1 and pretrain.lr positive")


class VLA(nn.Module):
    """Backbone + consistency head: the generalist policy. `embed` is what the frozen mode stores."""

    def __init__(self, cfg: PretrainConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = OctoStyleBackbone(cfg.backbone)
        self.feature_dim = self.backbone.embed_dim + cfg.backbone.proprio_dim
        self.head = ConsistencyHead(self.feature_dim, cfg.head)

    def features(self, images: dict[str, torch.Tensor], proprio: torch.Tensor, instructions: list[str]):
        """[embedding, current proprio] (B, feature_dim) from windows images (B, T, H, W, 3), proprio (B, T, P)."""
        return torch.cat([self.backbone(images, proprio, instructions), proprio[:, -1]], dim=-1)


def _windows(episodes: list[Episode], history: int, rng: np.random.Generator, batch: int, cameras):
    """A batch of observation windows ending at a random step of a random episode (the first observation
    repeats before the episode start), with that step's action."""
    ep_idx = rng.integers(len(episodes), size=batch)
    images = {c: [] for c in cameras}
    proprio, actions, instructions = [], [], []
    for i in ep_idx:
        ep = episodes[i]
        t = int(rng.integers(ep.length))
        steps = np.maximum(np.arange(t - history + 1, t + 1), 0)
        for c in cameras:
            images[c].append(ep.images[c][steps])
        proprio.append(ep.proprio[steps])
        actions.append(ep.actions[t])
        instructions.append(ep.instruction)
    return ({c: torch.as_tensor(np.stack(v)) for c, v in images.items()}, torch.as_tensor(np.stack(proprio)),
            torch.as_tensor(np.stack(actions))[:, None], instructions)


def pretrain(episodes: list[Episode], cfg: PretrainConfig, device: torch.device, progress: bool = True,
             log=print) -> VLA:
    """Multi-task imitation pretraining on `episodes` (any mix of tasks; each carries its instruction)."""
    missing = {c for ep in episodes for c in cfg.backbone.cameras if c not in ep.images}
    if not episodes or missing:
        raise ValueError(f"pretraining needs episodes with images from cameras {cfg.backbone.cameras}; "
                         f"missing: {sorted(missing) or 'all (no episodes)'}")
    size = episodes[0].images[cfg.backbone.cameras[0]].shape[1:3]
    if size != (cfg.backbone.image_size, cfg.backbone.image_size):
        raise ValueError(f"episode images are {size[0]}x{size[1]}, pretrain.backbone.image_size is "
                         f"{cfg.backbone.image_size}: record the demos at that size")
    proprio = episodes[0].proprio.shape[1]
    if proprio != cfg.backbone.proprio_dim:
        raise ValueError(f"episode proprio vectors have {proprio} values, pretrain.backbone.proprio_dim is "
                         f"{cfg.backbone.proprio_dim}: set it to the robot's proprio size")
    if cfg.head.horizon != 1:
        raise ValueError("pretrain.head.horizon must be 1 (the pretrained head predicts single actions)")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = VLA(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    tasks = sorted({ep.instruction for ep in episodes})
    log(f"pretraining on {len(episodes)} episodes, {sum(ep.length for ep in episodes)} steps, "
        f"{len(tasks)} instructions")
    bar = tqdm(range(cfg.steps), desc="pretrain", unit="step", disable=not progress, mininterval=2.0)
    for _ in bar:
        images, proprio, actions, instructions = _windows(episodes, cfg.backbone.history, rng, cfg.batch_size,
                                                          cfg.backbone.cameras)
        images = {c: v.to(device) for c, v in images.items()}
        feats = model.features(images, proprio.to(device), instructions)
        loss = model.head.bc_loss(actions.to(device), feats)
        gradient_step(opt, loss, model.parameters(), grad_clip=1.0)
        bar.set_postfix(bc=f"{loss.item():.3f}")
    return model.eval()


def save_vla(path: str | Path, model: VLA) -> None:
    save_checkpoint(path, model.state_dict(), {"pretrain": to_dict(model.cfg)})


def load_vla(path: str | Path, device: torch.device | str = "cpu") -> VLA:
    tensors, config = load_checkpoint(path)
    try:
        cfg = from_dict(PretrainConfig, config["pretrain"], "pretrain")
    except (ConfigError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path} is not a pretrained VLA ({exc})") from None
    model = VLA(cfg)
    load_into(model, tensors, source=f"VLA checkpoint {path}")
    return model.to(device).eval()


class VLAFeaturizer:
    """Frozen-mode features: [backbone embedding of the last `history` observations, proprio], one forward
    pass per control step (the fine-tuning stages store the result, never the backbone's input again)."""

    def __init__(self, model: VLA):
        self.model = model.eval().requires_grad_(False)
        self._setup(model.cfg.backbone, model.feature_dim, next(model.parameters()).device)

    def _setup(self, cfg: BackboneConfig, dim: int, device: torch.device) -> None:
        self.cfg, self.dim, self.device = cfg, dim, device
        self.obs_keys = (*cfg.cameras, "proprio", "instruction")
        self._window: deque = deque(maxlen=cfg.history)

    def _features(self, images: dict[str, torch.Tensor], proprio: torch.Tensor, instructions: list[str]):
        return self.model.features(images, proprio, instructions)

    def reset(self) -> None:
        self._window.clear()

    def __call__(self, obs: dict) -> np.ndarray:
        return self.embed(self.observe(obs))

    def observe(self, obs: dict) -> list[dict]:
        """Add one control step's observation to the history window; returns the window to `embed` (a copy:
        later steps do not change it). Cheap: a robot's node calls it on every step, `embed` only when it acts."""
        if not self._window:  # an episode's first observation fills the whole window
            self._window.extend([obs] * self.cfg.history)
        else:
            self._window.append(obs)
        return list(self._window)

    @torch.no_grad()
    def embed(self, window: list[dict]) -> np.ndarray:
        """The features of a window from `observe`: the backbone's forward pass, which reads nothing but the
        frozen model and `window` (so it may run on another thread than `observe`)."""
        images = {c: torch.as_tensor(np.stack([o[c] for o in window]))[None].to(self.device) for c in self.cfg.cameras}
        proprio = torch.as_tensor(np.stack([o["proprio"] for o in window]))[None].to(self.device)
        return self._features(images, proprio, [window[-1]["instruction"]])[0].cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def episode_features(self, ep: Episode, batch: int = 64) -> np.ndarray:
        """Features (T+1, dim) of every observation of a recorded episode, batched; equal to calling the
        featurizer step by step from `reset()` (the learner uses this on demos and received episodes)."""
        n, h = ep.length + 1, self.cfg.history
        missing = [c for c in self.cfg.cameras if c not in ep.images]
        if missing:
            raise ValueError(f"episode {ep.episode_id} has no images from camera(s) {missing}; the VLA needs "
                             f"{list(self.cfg.cameras)}")
        out = []
        for start in range(0, n, batch):
            steps = np.arange(start, min(n, start + batch))
            window = np.maximum(steps[:, None] + np.arange(-h + 1, 1)[None], 0)  # (B, h)
            images = {c: torch.as_tensor(ep.images[c][window]).to(self.device) for c in self.cfg.cameras}
            proprio = torch.as_tensor(ep.proprio[window]).to(self.device)
            out.append(self._features(images, proprio, [ep.instruction] * len(steps)).cpu().numpy())
        return np.concatenate(out).astype(np.float32)
