"""The policy: the agent with the feature normalisation fixed from the demonstrations (features in, action
chunks out), how it is built for a method, and how it is loaded from a run's checkpoint for evaluation and the
policy node."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from conrft_core.checkpoint import CheckpointError, load_checkpoint, load_into
from conrft_core.config import ConfigError, from_dict
from conrft_core.learning.agent import ConRFTAgent
from conrft_core.learning.finetune import FinetuneEncoders
from conrft_core.learning.methods import METHODS, TrainConfig
from conrft_core.learning.sac import SACAgent
from conrft_core.learning.vla import VLA, PretrainConfig


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_agent(cfg: TrainConfig, feature_dim: int,
                encoders: FinetuneEncoders | None = None) -> ConRFTAgent | SACAgent:
    if not METHODS[cfg.method].sac:
        return ConRFTAgent(feature_dim, cfg.agent, encoders)
    if encoders is not None:
        raise ValueError("train.method hil_serl has no VLA to fine-tune; use features: state or vla with it")
    return SACAgent(feature_dim, cfg.sac)


class Policy:
    """The agent with the feature normalisation fixed from the demonstrations: features in, chunks out.

    Raw features mix metres, newtons and radians, and task-relevant ones (object offsets of a few cm) would
    otherwise be invisible to the networks."""

    def __init__(self, agent: ConRFTAgent | SACAgent, feature_dim: int, device: torch.device):
        self.agent, self.device = agent, device
        self.mean = torch.zeros(feature_dim, device=device)
        self.std = torch.ones(feature_dim, device=device)

    def fit_normalization(self, feats: np.ndarray) -> None:
        x = torch.as_tensor(feats, device=self.device, dtype=torch.float32)
        self.mean, self.std = x.mean(0), x.std(0).clamp_min(1e-3)

    def normalize(self, feats) -> torch.Tensor:
        x = torch.as_tensor(feats, device=self.device, dtype=torch.float32)
        return ((x - self.mean) / self.std).clamp(-10.0, 10.0)

    def __call__(self, feats: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """(H, 7) action chunk for one feature vector."""
        return self.agent.act(self.normalize(feats).unsqueeze(0), deterministic)[0].cpu().numpy()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {**{f"agent/{k}": v for k, v in self.agent.state_dict().items()},
                "features/mean": self.mean, "features/std": self.std}

    def _acting(self) -> nn.ModuleDict:
        return nn.ModuleDict(self.agent.acting_modules())

    def actor_tensors(self) -> dict[str, torch.Tensor]:
        """What acting needs (the learner broadcasts these to the policy node): the agent's acting modules
        ('actor/...', and HIL-SERL's 'gripper/...') and the normalisation."""
        return {**{k.replace(".", "/", 1): v for k, v in self._acting().state_dict().items()},
                "features/mean": self.mean, "features/std": self.std}

    def load_actor(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """Inverse of `actor_tensors`, all-or-nothing like `load`."""
        self._check_normalization(tensors, source)
        acting = {k.replace("/", ".", 1): v for k, v in tensors.items() if not k.startswith("features/")}
        load_into(self._acting(), acting, source=source)
        self.mean, self.std = tensors["features/mean"].to(self.device), tensors["features/std"].to(self.device)

    def _check_normalization(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        for key in ("features/mean", "features/std"):
            if key not in tensors or tensors[key].shape != self.mean.shape:
                raise CheckpointError(f"{source}: tensor '{key}' is missing or not of shape {tuple(self.mean.shape)}")

    def load(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """All-or-nothing: the agent's tensors are checked before anything is copied."""
        self._check_normalization(tensors, source)
        load_into(self.agent, tensors, prefix="agent/", source=source)
        self.mean, self.std = tensors["features/mean"].to(self.device), tensors["features/std"].to(self.device)



def load_policy(path: str | Path, device: str = "auto") -> tuple[Policy, dict]:
    """The policy of a checkpoint (agent and normalisation) and the checkpoint's config, for evaluation
    (`conrft eval`) and the policy node; the config's `meta` says how to rebuild env and featurizer."""
    tensors, config = load_checkpoint(path)
    try:
        cfg = from_dict(TrainConfig, {**config["train"], "device": device}, "train")
    except (ConfigError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} carries an unusable config: {exc}") from None
    torch_device = resolve_device(cfg.device)
    encoders = None
    if "finetune" in config:  # full fine-tuning: the checkpoint holds its own backbone and critic encoder
        try:
            vla = VLA(from_dict(PretrainConfig, config["finetune"]["vla"], "pretrain"))
        except (ConfigError, ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {path} carries an unusable backbone config: {exc}") from None
        encoders = FinetuneEncoders(vla, cfg.encoder, config["finetune"]["instruction"])
    policy = Policy(build_agent(cfg, int(config["feature_dim"]), encoders).to(torch_device),
                    int(config["feature_dim"]), torch_device)
    policy.load(tensors, source=f"checkpoint {path}")
    policy.agent.eval()
    return policy, config
