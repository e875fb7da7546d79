"""Checkpoints and weight payloads in safetensors (never pickle): tensors plus a JSON config.

A checkpoint file holds named tensors (model and optimiser state, flattened with '/' separators) and, in the
safetensors metadata, the configuration that built the model, a format tag and one SHA-256 over all tensor
bytes. Loading is all-or-nothing: a truncated or corrupt file, a digest mismatch, a config that does not
match the model, a missing or extra tensor, or a tensor of the wrong shape raises CheckpointError naming the
tensor, and the target model is left untouched.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

FORMAT = "conrft-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded; the message names the file or tensor at fault."""


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def to_bytes(tensors: dict[str, torch.Tensor], config: dict) -> bytes:
    """Serialize tensors (moved to CPU, contiguous) and config into safetensors bytes."""
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = {"format": FORMAT, "config": json.dumps(config, sort_keys=True), "sha256": _digest(cpu)}
    return save(cpu, metadata=meta)


def from_bytes(data: bytes, source: str = "payload") -> tuple[dict[str, torch.Tensor], dict]:
    """Inverse of `to_bytes`, verifying the format tag and the digest."""
    try:
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + header_len]).get("__metadata__", {})
    except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{source} is truncated or not a safetensors file: {exc}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{source} is not a ConRFT checkpoint (format {meta.get('format')!r}, expected {FORMAT})")
    if _digest(tensors) != meta.get("sha256"):
        raise CheckpointError(f"{source} is corrupt: tensor data does not match its SHA-256")
    return tensors, json.loads(meta["config"])


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], config: dict) -> None:
    """Atomic write: a temporary file renamed into place, so a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(to_bytes(tensors, config))
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return from_bytes(path.read_bytes(), source=f"checkpoint {path}")


def load_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str = "", source: str = "checkpoint"):
    """Copy `prefix`-named tensors into `module`'s state dict after checking every name and shape."""
    state = module.state_dict()
    given = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing, extra = sorted(set(state) - set(given)), sorted(set(given) - set(state))
    if missing:
        raise CheckpointError(f"{source} lacks tensor '{prefix}{missing[0]}' ({len(missing)} missing)")
    if extra:
        raise CheckpointError(f"{source} has unexpected tensor '{prefix}{extra[0]}' ({len(extra)} extra)")
    for name, value in sorted(given.items()):
        if value.shape != state[name].shape:
            raise CheckpointError(f"{source}: tensor '{prefix}{name}' has shape {tuple(value.shape)}, the model "
                                  f"expects {tuple(state[name].shape)}; was it saved with another config?")
    module.load_state_dict(given)


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> dict[str, torch.Tensor]:
    """An optimiser's per-parameter state (Adam: step, exp_avg, exp_avg_sq) as '{prefix}{param}/{key}' tensors;
    the hyperparameters are rebuilt from the config, not stored."""
    return {f"{prefix}{idx}/{key}": value if torch.is_tensor(value) else torch.tensor(value)
            for idx, state in opt.state_dict()["state"].items() for key, value in state.items()}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    """Inverse of `optimizer_tensors`; raises CheckpointError on a parameter the optimiser does not have."""
    sd = opt.state_dict()
    n_params = sum(len(g["params"]) for g in sd["param_groups"])
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith(prefix):
            idx, key = name[len(prefix):].split("/", 1)
            if not idx.isdigit() or int(idx) >= n_params:
                raise CheckpointError(f"optimiser tensor '{name}' does not match this model's parameters")
            state.setdefault(int(idx), {})[key] = value
    sd["state"] = state
    opt.load_state_dict(sd)
