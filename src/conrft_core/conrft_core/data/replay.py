"""Episode-sequence replay for chunked TD learning (CO-RFT "chunked RL" / Q-chunking) and ConRFT.

One `ReplayBuffer` class serves as the demonstration buffer (demos, plus human-intervention steps in HIL-ConRFT)
and as the online buffer; `sample_mixed` draws RLPD 50/50 batches from both.

Storage: every observation is stored ONCE, in a slot of preallocated per-slot arrays. An episode of T actions
occupies T + 1 consecutive slots (modulo capacity): slot k holds o_k and, for k < T, a_k, r_k and the
intervention flag; the last slot holds o_T only. A sample starting at step t reads its history frames, its action
chunk and its bootstrap observation s_{t+n} by index arithmetic, so no frame is ever copied into the buffer twice,
whatever the history length or chunk length H. When the ring is full, whole oldest episodes are evicted.

Chunked TD target built from a sample (Q-chunking, with n = min(H, T - t) real steps in the chunk):
    y = sum_k gamma^k rewards[:, k] * reward_mask[:, k] + discount * (1 - done) * Q(next_obs, pi(next_obs))
Cal-ConRFT lower-bounds its conservative Q values with `mc_return`, the discounted return to the episode end.
"""
from __future__ import annotations

import json
import math
import os
import zlib
from collections import deque
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from conrft_core.data.episode import Episode

FORMAT = "conrft-replay-v1"


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Monte-Carlo returns G_k = r_k + gamma G_{k+1} with G_T = 0, for k = 0..T (T + 1 values, the last 0)."""
    g = np.zeros(len(rewards) + 1)
    for k in range(len(rewards) - 1, -1, -1):
        g[k] = rewards[k] + gamma * g[k + 1]
    return g.astype(np.float32)


class ReplayBuffer:
    """Ring of `capacity` observation slots holding whole episodes.

    `gamma` is the discount used for the per-slot Monte-Carlo returns computed at add time; `sample` must be called
    with the same gamma. `embedding_dim` enables the frozen-backbone mode: one VLA embedding per observation is
    stored next to the frames and returned in the observations.
    """

    def __init__(self, capacity: int, cameras: tuple[str, ...], image_shape: tuple[int, int, int],
                 *, proprio_dim: int, action_dim: int, embedding_dim: int | None = None, history: int = 2,
                 gamma: float = 0.98):
        # No cameras is allowed when an embedding is stored: the feature-only mode (state features or
        # precomputed VLA embeddings) needs no frames.
        if (capacity < 2 or history < 1 or (not cameras and embedding_dim is None) or len(image_shape) != 3
                or image_shape[2] != 3 or proprio_dim < 1 or action_dim < 1):
            raise ValueError(f"bad replay config: capacity={capacity} (>= 2), history={history} (>= 1), "
                             f"cameras={cameras} (at least one unless embedding_dim is set), "
                             f"image_shape={image_shape} (H, W, 3), proprio_dim={proprio_dim} and "
                             f"action_dim={action_dim} (>= 1)")
        self.config = dict(capacity=int(capacity), cameras=list(cameras), image_shape=list(image_shape),
                           proprio_dim=int(proprio_dim), action_dim=int(action_dim),
                           embedding_dim=None if embedding_dim is None else int(embedding_dim),
                           history=int(history), gamma=float(gamma))
        self.capacity, self.cameras, self.history, self.gamma = int(capacity), tuple(cameras), int(history), gamma
        # Per-slot arrays. Slot k of an episode: step = k, ep_len = T; the action/reward/intervened/mc_return
        # entries of the final slot (step == T) are unused.
        self.data = {f"image.{c}": np.zeros((capacity, *image_shape), np.uint8) for c in cameras}
        self.data.update(
            proprio=np.zeros((capacity, proprio_dim), np.float32),
            action=np.zeros((capacity, action_dim), np.float32),
            reward=np.zeros(capacity, np.float32),
            intervened=np.zeros(capacity, bool),
            mc_return=np.zeros(capacity, np.float32),
            step=np.zeros(capacity, np.int32),
            ep_len=np.zeros(capacity, np.int32),
            terminated=np.zeros(capacity, bool),
        )
        if embedding_dim is not None:
            self.data["embedding"] = np.zeros((capacity, embedding_dim), np.float32)
        # Ring pointers: stored episodes oldest first as (first slot, T); slots they use; the next write slot;
        # the high-water mark (slots below it have been written at least once).
        self._episodes: deque[tuple[int, int]] = deque()
        self._used = 0
        self._next = 0
        self._filled = 0
        self._valid: np.ndarray | None = None  # cached start slots of all valid steps, oldest first

    # ----------------------------------------------------------------------------------------------- adding
    def add_episode(self, ep: Episode, embeddings: np.ndarray | None = None) -> None:
        """Store a whole episode (T + 1 slots), evicting the oldest whole episodes if the ring is full."""
        T = ep.length
        if T + 1 > self.capacity:
            raise ValueError(f"episode {ep.episode_id} needs {T + 1} slots but the replay capacity is "
                             f"{self.capacity}; raise the capacity")
        missing = [c for c in self.cameras if c not in ep.images]
        if missing:
            raise ValueError(f"episode {ep.episode_id} lacks camera(s) {missing}; the buffer stores {self.cameras}")
        want = self.config["embedding_dim"]
        if (embeddings is None) != (want is None) or (want is not None and embeddings.shape != (T + 1, want)):
            raise ValueError(f"episode {ep.episode_id}: embeddings must be "
                             f"{'None (no embedding_dim)' if want is None else (T + 1, want)}, got "
                             f"{None if embeddings is None else embeddings.shape}")
        rows = {f"image.{c}": ep.images[c] for c in self.cameras}
        rows.update(proprio=ep.proprio,
                    # Pad the per-action arrays with one unused row for the final observation's slot.
                    action=np.concatenate([ep.actions, np.zeros_like(ep.actions[:1])]),
                    reward=np.append(ep.rewards, 0.0),
                    intervened=np.append(ep.intervened, False),
                    mc_return=discounted_returns(ep.rewards, self.gamma),
                    step=np.arange(T + 1),
                    ep_len=np.full(T + 1, T),
                    terminated=np.full(T + 1, ep.terminated))
        if embeddings is not None:
            rows["embedding"] = embeddings
        for key, value in rows.items():
            if value.shape[1:] != self.data[key].shape[1:]:
                raise ValueError(f"episode {ep.episode_id}: {key} rows have shape {value.shape[1:]}, the buffer "
                                 f"stores {self.data[key].shape[1:]}")

        # Evict the oldest whole episodes until T + 1 free slots follow the write pointer.
        while self._used + T + 1 > self.capacity:
            self._used -= self._episodes.popleft()[1] + 1
        slots = (self._next + np.arange(T + 1)) % self.capacity  # may wrap around the end of the arrays
        for key, value in rows.items():
            self.data[key][slots] = value
        self._episodes.append((self._next, T))
        self._used += T + 1
        self._filled = max(self._filled, min(self._next + T + 1, self.capacity))
        self._next = (self._next + T + 1) % self.capacity
        self._valid = None

    # ----------------------------------------------------------------------------------------------- sizes
    def __len__(self) -> int:
        """Number of valid sample starts: stored steps that have an action."""
        return self._used - len(self._episodes)  # each episode has one slot (its final observation) without action

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    @property
    def nbytes(self) -> int:
        """Bytes allocated by the preallocated slot arrays (independent of history and chunk length)."""
        return sum(a.nbytes for a in self.data.values())

    @property
    def bytes_per_transition(self) -> float:
        return self.nbytes / self.capacity

    # ----------------------------------------------------------------------------------------------- sampling
    def _obs(self, first: np.ndarray, step: np.ndarray) -> dict:
        """Observation history for steps step-history+1..step of the episodes starting at slots `first` (B,).

        Steps before the episode start are clamped to 0, so the first frame repeats.
        """
        steps = np.maximum(step[:, None] - np.arange(self.history - 1, -1, -1), 0)  # (B, history)
        slots = (first[:, None] + steps) % self.capacity
        obs = {"images": {c: self.data[f"image.{c}"][slots] for c in self.cameras},
               "proprio": self.data["proprio"][slots]}
        if "embedding" in self.data:
            obs["embedding"] = self.data["embedding"][slots]
        return obs

    def sample(self, batch_size: int, horizon: int, gamma: float, rng: np.random.Generator) -> dict:
        """Uniform over valid steps t: a chunk of H = `horizon` actions from s_t and its chunked TD quantities.

        Returns obs / next_obs ({"images": {camera: (B, history, H, W, 3)}, "proprio": (B, history, P)[,
        "embedding": (B, history, D)]}), actions (B, H, A), rewards and reward_mask (B, H), n_steps, discount,
        done, mc_return and intervened (B,). See the module docstring for the TD target.
        """
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if not math.isclose(gamma, self.gamma, rel_tol=1e-9):
            raise ValueError(f"sample gamma {gamma} differs from the buffer's gamma {self.gamma} used for mc_return")
        if self._valid is None:  # slots of all valid steps, oldest episode first
            self._valid = np.concatenate([(s + np.arange(n)) % self.capacity for s, n in self._episodes])
        slot = self._valid[rng.integers(len(self._valid), size=batch_size)]  # (B,) slot of s_t
        t = self.data["step"][slot].astype(np.int64)
        T = self.data["ep_len"][slot].astype(np.int64)
        first = slot - t  # slot of the episode's o_0 (may be negative: wrapped, taken modulo capacity below)

        steps = t[:, None] + np.arange(horizon)  # (B, H): t .. t+H-1
        real = steps < T[:, None]  # steps past the episode end are padding
        act_slots = (first[:, None] + np.minimum(steps, T[:, None] - 1)) % self.capacity  # pad: repeat a_{T-1}
        n = np.minimum(horizon, T - t)  # real steps in the chunk; the chunk bootstraps from s_{t+n}
        done = self.data["terminated"][slot] & (t + n == T)  # reached the end of a terminated episode
        return {
            "obs": self._obs(first, t),
            "actions": self.data["action"][act_slots],
            "rewards": self.data["reward"][act_slots] * real,
            "reward_mask": real.astype(np.float32),
            "next_obs": self._obs(first, t + n),
            "n_steps": n,
            "discount": (gamma ** n).astype(np.float32),
            "done": done.astype(np.float32),
            "mc_return": self.data["mc_return"][slot],
            "intervened": self.data["intervened"][slot],
        }

    # ----------------------------------------------------------------------------------------------- files
    def save(self, path: str | Path) -> None:
        """Write the filled slots, episode table and ring pointers as safetensors; config in the metadata."""
        path = Path(path)
        tensors = {k: a[:self._filled] for k, a in self.data.items()}  # contiguous prefixes: no copy
        tensors["episodes"] = np.array(self._episodes, np.int64).reshape(-1, 2)  # (first slot, T), oldest first
        tensors["ring"] = np.array([self._next, self._filled], np.int64)
        header = {"format": FORMAT, "config": self.config, "crc32": {k: _crc32(a) for k, a in tensors.items()}}
        tmp = path.with_name(f".{path.name}.partial")
        save_file(tensors, tmp, metadata={"conrft_replay": json.dumps(header)})
        os.replace(tmp, path)  # never leave a half-written file under the requested name

    @classmethod
    def load(cls, path: str | Path) -> "ReplayBuffer":
        """Read a buffer written by `save`; a truncated or corrupt file raises ValueError naming it."""
        path = Path(path)
        try:
            with safe_open(path, "numpy") as f:
                header = json.loads((f.metadata() or {})["conrft_replay"])
                if header["format"] != FORMAT:
                    raise ValueError(f"format {header['format']!r}, expected {FORMAT!r}")
                buf = cls(**header["config"])
                if set(f.keys()) != set(buf.data) | {"ring", "episodes"}:
                    raise ValueError(f"tensors {sorted(f.keys())} do not match the config")
                for key in ["ring", "episodes", *buf.data]:  # one tensor in memory at a time
                    value = f.get_tensor(key)
                    if _crc32(value) != header["crc32"][key]:
                        raise ValueError(f"checksum mismatch in '{key}'")
                    if key == "ring":
                        buf._next, buf._filled = (int(v) for v in value)
                    elif key == "episodes":
                        buf._episodes = deque((int(s), int(n)) for s, n in value)
                        buf._used = sum(n + 1 for _, n in buf._episodes)
                    elif value.shape != (buf._filled, *buf.data[key].shape[1:]) or value.dtype != buf.data[key].dtype:
                        raise ValueError(f"'{key}' has {value.shape} {value.dtype}, expected "
                                         f"{(buf._filled, *buf.data[key].shape[1:])} {buf.data[key].dtype}")
                    else:
                        buf.data[key][:buf._filled] = value
        except (SafetensorError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"replay file {path} is truncated or corrupt: {e}") from e
        return buf


def _crc32(a: np.ndarray) -> int:
    """Checksum of an array's bytes (safetensors itself only detects a truncated or malformed file)."""
    return zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8))


def _concat(parts: list):
    """Concatenate sample dicts (nested for obs) along the batch axis."""
    if isinstance(parts[0], dict):
        return {k: _concat([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)


def sample_mixed(buffers: list[ReplayBuffer], fractions: list[float], batch_size: int, horizon: int, gamma: float,
                 rng: np.random.Generator) -> dict:
    """RLPD-style mixed batch (HIL-ConRFT: 50/50 demo+intervention buffer and online buffer).

    Buffer i contributes round(cumsum(fractions)[i] * B) - round(cumsum(fractions)[i-1] * B) samples, in order;
    `source` (B,) holds each sample's buffer index. Buffers given a zero share may be empty.
    """
    f = np.asarray(fractions, np.float64)
    if len(f) != len(buffers) or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"need one non-negative fraction per buffer summing to 1, got {fractions} "
                         f"for {len(buffers)} buffers")
    layout = {k: v for k, v in buffers[0].config.items() if k != "capacity"}
    if any({k: v for k, v in b.config.items() if k != "capacity"} != layout for b in buffers):
        raise ValueError("buffers mixed in one batch must share cameras, shapes, history, embedding and gamma")
    bounds = np.round(np.cumsum(f) * batch_size).astype(int)
    counts = np.diff(bounds, prepend=0)
    parts = [b.sample(int(c), horizon, gamma, rng) for b, c in zip(buffers, counts) if c > 0]
    batch = _concat(parts)
    batch["source"] = np.repeat(np.arange(len(buffers)), counts)
    return batch
