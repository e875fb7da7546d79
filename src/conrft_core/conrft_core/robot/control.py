"""Chunk execution and the action checks every command passes before it can reach the controller.

CO-RFT action chunking: the policy predicts H actions from one observation; they execute open-loop, one per
control step, and the policy re-plans when the chunk is used up or a human intervention ends (then the rest
of the chunk is dropped: it was planned for a state the human has changed). Weights hot-swap only between
chunks, so one chunk never mixes two policies.
"""
from __future__ import annotations

import numpy as np

from conrft_core.robot.spaces import ACTION_DIM

TOLERANCE = 1e-3  # actions are in [-1, 1]; rounding may overshoot a little, anything beyond is a fault


class ActionError(ValueError):
    """An action or chunk is unusable (wrong shape, NaN/inf, out of range); nothing of it is executed."""


def check_action(action, source: str = "action") -> np.ndarray:
    """A 7-D action in [-1, 1] (tiny overshoot clipped) or ActionError naming what is wrong."""
    a = np.asarray(action, dtype=np.float64)
    if a.shape != (ACTION_DIM,):
        raise ActionError(f"{source} has shape {a.shape}, expected ({ACTION_DIM},)")
    if not np.all(np.isfinite(a)):
        raise ActionError(f"{source} contains NaN or inf: {np.round(a, 3).tolist()}")
    if np.any(np.abs(a) > 1 + TOLERANCE):
        raise ActionError(f"{source} is out of range [-1, 1]: {np.round(a, 3).tolist()}")
    return np.clip(a, -1.0, 1.0)


def check_chunk(chunk, horizon: int, source: str = "chunk") -> np.ndarray:
    """An (H, 7) chunk whose every action passes `check_action`."""
    c = np.asarray(chunk, dtype=np.float64)
    if c.shape != (horizon, ACTION_DIM):
        raise ActionError(f"{source} has shape {c.shape}, expected ({horizon}, {ACTION_DIM})")
    return np.stack([check_action(a, f"{source} action {i}") for i, a in enumerate(c)])


class ChunkExecutor:
    """The chunk being executed: `load` a checked chunk, `pop` one action per control step."""

    def __init__(self):
        self._chunk = np.zeros((0, ACTION_DIM))
        self._next = 0

    def load(self, chunk: np.ndarray) -> None:
        self._chunk, self._next = np.asarray(chunk, dtype=np.float64), 0

    def pop(self) -> np.ndarray:
        if self.empty:
            raise IndexError("the chunk is used up; re-plan first")
        self._next += 1
        return self._chunk[self._next - 1]

    def clear(self) -> None:
        self._next = len(self._chunk)

    @property
    def empty(self) -> bool:
        return self._next >= len(self._chunk)

    @property
    def remaining(self) -> np.ndarray:
        """Actions not executed yet (for the predicted-path markers)."""
        return self._chunk[self._next:]
