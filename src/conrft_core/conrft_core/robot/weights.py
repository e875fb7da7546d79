"""Policy weights on the wire: what the learner publishes on `/conrft/policy_weights` and the policy node adopts.

The payload is a safetensors file (the checkpoint format of `conrft_core.checkpoint`, with its tensor digest)
holding the actor and the feature normalisation, and, as metadata, the training config and feature size the
receiver needs to build a matching policy. The message also carries the SHA-256 of the whole payload. The
receiver verifies everything before it keeps anything: a corrupt, truncated or mismatched message leaves the
running policy untouched.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from conrft_core.checkpoint import CheckpointError, from_bytes, to_bytes
from conrft_core.config import ConfigError, from_dict, to_dict
from conrft_core.learning.methods import TrainConfig
from conrft_core.learning.policy import Policy, build_agent, resolve_device


class WeightsError(ValueError):
    """A weights message cannot be adopted; the message says why (the old policy stays in control)."""


def pack(policy: Policy, cfg: TrainConfig) -> tuple[bytes, str, int]:
    """(payload, hex SHA-256 of the payload, number of scalar parameters)."""
    tensors = policy.actor_tensors()
    payload = to_bytes(tensors, {"train": to_dict(cfg), "feature_dim": int(policy.mean.shape[0])})
    return payload, hashlib.sha256(payload).hexdigest(), sum(t.numel() for t in tensors.values())


def unpack(payload: bytes, sha256: str, parameter_count: int | None = None) -> tuple[dict, dict]:
    """Verify and parse a payload: (tensors, config). Raises WeightsError."""
    if hashlib.sha256(payload).hexdigest() != sha256:
        raise WeightsError(f"payload SHA-256 does not match the message's sha256 ({len(payload)} bytes received)")
    try:
        tensors, config = from_bytes(payload, source="weights payload")
    except CheckpointError as exc:
        raise WeightsError(str(exc)) from None
    count = sum(t.numel() for t in tensors.values())
    if parameter_count is not None and count != parameter_count:
        raise WeightsError(f"payload holds {count} parameters, the message says {parameter_count}")
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise WeightsError(f"tensor '{name}' holds NaN or inf values")
    return tensors, config


def build_policy(tensors: dict, config: dict, device: str = "auto") -> Policy:
    """A new policy from unpacked weights (the first weights a policy node receives)."""
    try:
        cfg = from_dict(TrainConfig, {**config["train"], "device": device}, "train")
        feature_dim = int(config["feature_dim"])
    except (ConfigError, ValueError, KeyError, TypeError) as exc:
        raise WeightsError(f"weights carry an unusable config: {exc}") from None
    torch_device = resolve_device(cfg.device)
    policy = Policy(build_agent(cfg, feature_dim).to(torch_device), feature_dim, torch_device)
    adopt(policy, tensors)
    policy.agent.eval()
    return policy


def check_shapes(policy: Policy, tensors: dict) -> None:
    """Raise WeightsError naming the first tensor that the running policy does not have in that shape."""
    current = policy.actor_tensors()
    for name in sorted(set(current) | set(tensors)):
        if name not in tensors or name not in current:
            raise WeightsError(f"tensor '{name}' is {'missing' if name not in tensors else 'unexpected'}")
        if tensors[name].shape != current[name].shape:
            raise WeightsError(f"tensor '{name}' has shape {tuple(tensors[name].shape)}, the model expects "
                               f"{tuple(current[name].shape)}; was it trained with another config?")


def adopt(policy: Policy, tensors: dict) -> None:
    """Load unpacked weights into a running policy, all-or-nothing: shapes are checked first, and weights
    whose actions on a probe input (the mean demonstration features) are not finite are rolled back."""
    check_shapes(policy, tensors)
    previous = {k: v.clone() for k, v in policy.actor_tensors().items()}
    policy.load_actor(tensors, source="weights")
    probe = policy(policy.mean.cpu().numpy(), deterministic=True)
    if not np.all(np.isfinite(probe)):
        policy.load_actor(previous, source="previous weights")
        raise WeightsError("the weights produce non-finite actions (NaN or inf) on a probe input")
