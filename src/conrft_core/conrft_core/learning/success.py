"""A learned success detector: a binary classifier on camera images that says when the task is achieved.

On a real robot the simulator's privileged success flag does not exist; without a classifier a person keys the
end of every episode. `conrft success-detector train` fits one from recorded episodes and the `success_detector`
node (conrft_policy) runs it on the live cameras (its decision rule: `conrft_core.learning.success_gate`).

Model: a small CNN of its own per camera (three strided 3x3 convolutions, a 4x4 average pool), the cameras'
features concatenated into an MLP with one logit. Not the frozen VLA's embedding: that embedding is trained to
predict actions, mixes in proprio, the instruction and a two-frame history that restarts with every episode (a
node that only watches the cameras does not know where episodes start), and would tie the detector to one VLA
checkpoint. Success is a visual fact (the cube is up, the drawer is out) that ~95k parameters learn from a few
hundred frames in under a minute on a CPU and evaluate at camera rate.

Labels: positive are the final observation of every successful episode (the frame in which the success source,
simulator, classifier or human key, declared it) and the frame nearest to each operator success-key press the
bag recorded (`conrft_core.data.bags.read_success_presses`); every other frame is negative. Positives are a few
per cent of the frames, so each batch is half positives, half negatives (drawn with replacement), with random
shifts (DrQ) so that the few positives are not memorised pixel for pixel. The validation split is by episode
(consecutive frames are nearly identical: a frame split would measure memory), and the threshold stored in the
file is the one with the best F1 on the validation frames.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from conrft_core.checkpoint import CheckpointError, load_checkpoint, load_into, save_checkpoint
from conrft_core.config import ConfigError
from conrft_core.data.bags import read_episodes, read_success_presses
from conrft_core.data.episode import Episode
from conrft_core.learning.finetune import random_shift
from conrft_core.learning.nets import mlp
from conrft_core.learning.success_gate import GateConfig, SuccessGate

KIND = "success_detector"
FEATURES = "cnn"  # the model's input, stored in the file: its own CNN on camera images
EVAL_BATCH = 256


@dataclass
class DetectorConfig:
    cameras: tuple[str, ...] = ()  # () = every camera the bags hold
    steps: int = 600  # gradient steps
    batch_size: int = 64  # half positives, half negatives
    lr: float = 1e-3
    channels: int = 16  # conv width of the first layer (the others: twice that)
    hidden: int = 64  # MLP width
    shift_pad: int = 4  # random shift of up to +-shift_pad pixels in training (DrQ's); 0 disables it
    validation_fraction: float = 0.25  # share of the episodes (of those with and of those without a positive)
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("steps", "channels", "hidden"):
            if getattr(self, key) < 1:
                raise ConfigError(f"'{key}' must be >= 1, got {getattr(self, key)}")
        if self.batch_size < 2:
            raise ConfigError(f"'batch_size' must be >= 2 (half positives, half negatives), got {self.batch_size}")
        if self.lr <= 0 or self.shift_pad < 0:
            raise ConfigError(f"'lr' must be > 0 and 'shift_pad' >= 0, got {self.lr} and {self.shift_pad}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(f"'validation_fraction' must be in (0, 1), got {self.validation_fraction}")


class SuccessNet(nn.Module):
    def __init__(self, cameras: tuple[str, ...], channels: int, hidden: int):
        super().__init__()
        self.cameras, c = tuple(cameras), channels
        self.encoders = nn.ModuleDict({cam: nn.Sequential(
            nn.Conv2d(3, c, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
            nn.ReLU(), nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),  # keeps a coarse layout: where the object is matters
        ) for cam in self.cameras})
        self.head = mlp(len(self.cameras) * 32 * c, hidden, 1, 1)

    def forward(self, images: dict[str, torch.Tensor], shift_pad: int = 0) -> torch.Tensor:
        """images {camera: (B, H, W, 3) uint8} -> logits (B,)."""
        feats = [self.encoders[cam](random_shift(images[cam].permute(0, 3, 1, 2).float() / 127.5 - 1.0, shift_pad))
                 for cam in self.cameras]
        return self.head(torch.cat(feats, dim=-1)).squeeze(-1)


@dataclass
class LabelledFrames:
    """Every frame of some episodes, with its label; `episode` and `step` say where each frame comes from."""

    images: dict[str, np.ndarray]  # camera -> (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) bool
    episode: np.ndarray  # (N,) int, index into the episode list the frames were built from
    step: np.ndarray  # (N,) int, frame index within its episode (T = the final observation)
    success: np.ndarray  # (N,) bool, the frame's episode ended in success

    def subset(self, mask: np.ndarray) -> LabelledFrames:
        return LabelledFrames({c: v[mask] for c, v in self.images.items()}, self.labels[mask], self.episode[mask],
                              self.step[mask], self.success[mask])


def frame_labels(ep: Episode, presses: np.ndarray) -> np.ndarray:
    """(T + 1,) bool: the final frame of a successful episode, and the frame nearest to each success-key press
    that falls within the episode (its frames' stamps, the final one a step period after the last step's)."""
    labels = np.zeros(ep.length + 1, bool)
    labels[-1] = ep.success
    if ep.stamps is not None and len(presses):
        period = float(np.median(np.diff(ep.stamps))) if ep.length > 1 else 0.1
        stamps = np.append(ep.stamps, ep.stamps[-1] + period)
        inside = presses[(presses >= stamps[0] - period / 2) & (presses <= stamps[-1] + period / 2)]
        labels[[int(np.argmin(np.abs(stamps - t))) for t in inside]] = True
    return labels


def load_frames(bags: list[str | Path], cameras: tuple[str, ...] = ()) -> tuple[LabelledFrames, tuple[str, ...]]:
    """Every frame of every complete episode in `bags`, labelled; `cameras` () = those of the first episode.
    Raises ValueError naming the bag when a camera is missing or its image size differs from the first bag's."""
    episodes, labels, size = [], [], None
    for bag in bags:
        presses = read_success_presses(bag)
        for ep in read_episodes(bag):
            cameras = cameras or tuple(sorted(ep.images))
            missing = [c for c in cameras if c not in ep.images]
            if missing:
                raise ValueError(f"bag {bag} episode {ep.episode_id} has no camera '{missing[0]}' (it has "
                                 f"{', '.join(sorted(ep.images))})")
            for cam in cameras:
                shape = ep.images[cam].shape[1:3]
                size = size or shape
                if shape != size:
                    raise ValueError(f"bag {bag} episode {ep.episode_id}: camera '{cam}' is {shape[1]}x{shape[0]}, "
                                     f"the first episode's images are {size[1]}x{size[0]}")
            episodes.append(ep)
            labels.append(frame_labels(ep, presses))
    counts = [ep.length + 1 for ep in episodes]
    frames = LabelledFrames(
        images={c: np.concatenate([ep.images[c] for ep in episodes]) for c in cameras},
        labels=np.concatenate(labels), episode=np.repeat(np.arange(len(episodes)), counts),
        step=np.concatenate([np.arange(n) for n in counts]), success=np.repeat([ep.success for ep in episodes], counts))
    return frames, cameras


def split_episodes(frames: LabelledFrames, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """(N,) bool, True for validation frames: `fraction` of the episodes with a positive frame and of those
    without, at least one of each kind on each side where there are two."""
    episodes = np.unique(frames.episode)
    positive = np.isin(episodes, frames.episode[frames.labels])
    val = []
    for group in (episodes[positive], episodes[~positive]):
        n = min(max(round(fraction * len(group)), 1), len(group) - 1) if len(group) >= 2 else 0
        val.extend(rng.permutation(group)[:n])
    return np.isin(frames.episode, val)


def precision_recall(probs: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """Precision (0 when nothing is predicted positive) and recall of `probs >= threshold`."""
    predicted = probs >= threshold
    tp = int((predicted & labels).sum())
    return tp / max(int(predicted.sum()), 1), tp / max(int(labels.sum()), 1)


def best_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The threshold with the best F1 (ties: the higher one, fewer false alarms), halfway between the lowest
    probability it accepts and the next lower one, so it is not at the edge of what validation saw."""
    order = np.argsort(-probs, kind="stable")
    p, y = probs[order], labels[order]
    tp = np.cumsum(y)
    f1 = 2 * tp / (np.arange(1, len(p) + 1) + y.sum())
    last = np.flatnonzero(np.diff(p, append=-1.0) != 0)  # cut after the last of each run of equal probabilities
    k = last[np.argmax(f1[last])]
    return float(p[k] if k + 1 == len(p) else (p[k] + p[k + 1]) / 2)


class SuccessDetector:
    """A trained detector: `probabilities` of success for frames, the cameras and image size it was trained on
    and the threshold chosen on validation."""

    def __init__(self, net: SuccessNet, meta: dict, device: str | torch.device = "cpu"):
        self.net, self.meta, self.device = net.to(device).eval(), meta, torch.device(device)
        self.cameras: tuple[str, ...] = tuple(meta["cameras"])
        self.image_size: tuple[int, int] = tuple(meta["image_size"])  # (height, width)
        self.threshold: float = float(meta["threshold"])

    def check(self, images: dict[str, np.ndarray], source: str = "input") -> None:
        """Every camera of the model, at its image size ((..., H, W, 3) uint8); ValueError naming the camera."""
        for cam in self.cameras:
            if cam not in images:
                raise ValueError(f"{source} has no camera '{cam}'; the detector needs {', '.join(self.cameras)}")
            shape = tuple(images[cam].shape[-3:])
            if shape != (*self.image_size, 3):
                raise ValueError(f"{source}: camera '{cam}' images are {shape}, the detector was trained on "
                                 f"{(*self.image_size, 3)}")

    @torch.no_grad()
    def probabilities(self, images: dict[str, np.ndarray]) -> np.ndarray:
        """{camera: (N, H, W, 3) uint8} -> (N,) probabilities of success."""
        n = len(images[self.cameras[0]])
        out = [torch.sigmoid(self.net({c: torch.as_tensor(images[c][i:i + EVAL_BATCH], device=self.device)
                                       for c in self.cameras})).cpu().numpy() for i in range(0, n, EVAL_BATCH)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def probability(self, images: dict[str, np.ndarray]) -> float:
        """One observation {camera: (H, W, 3) uint8}."""
        return float(self.probabilities({c: images[c][None] for c in self.cameras})[0])


def train_detector(bags: list[str | Path], cfg: DetectorConfig, device: str = "cpu",
                   progress: bool = True) -> tuple[SuccessDetector, dict]:
    """Fit a detector on the episodes of `bags`; returns it and its validation report (`format_report`).
    Raises ValueError naming the bag(s) when there is no positive frame, or too few episodes to split."""
    frames, cameras = load_frames(bags, cfg.cameras)
    names = ", ".join(map(str, bags))
    if not frames.labels.any():
        raise ValueError(f"{'bag' if len(bags) == 1 else 'bags'} {names}: no positive frame (no successful episode "
                         f"and no success-key press); record successful episodes to train a success detector")
    rng = np.random.default_rng(cfg.seed)
    val_mask = split_episodes(frames, cfg.validation_fraction, rng)
    train, val = frames.subset(~val_mask), frames.subset(val_mask)
    if not val.labels.any():
        raise ValueError(f"bags {names}: only one episode has a positive frame; the validation split needs "
                         f"another one (record more successful episodes)")
    torch.manual_seed(cfg.seed)
    net = SuccessNet(cameras, cfg.channels, cfg.hidden).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    pos, neg = np.flatnonzero(train.labels), np.flatnonzero(~train.labels)
    half = cfg.batch_size // 2
    target = torch.cat([torch.ones(half), torch.zeros(half)]).to(device)
    bar = tqdm(range(cfg.steps), desc="success detector", unit="step", disable=not progress)
    for _ in bar:
        idx = np.concatenate([rng.choice(pos, half), rng.choice(neg, half)])
        logits = net({c: torch.as_tensor(train.images[c][idx], device=device) for c in cameras}, cfg.shift_pad)
        loss = F.binary_cross_entropy_with_logits(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    meta = {"kind": KIND, "features": FEATURES, "cameras": list(cameras),
            "image_size": list(frames.images[cameras[0]].shape[1:3]), "channels": cfg.channels, "hidden": cfg.hidden,
            "threshold": 0.5, "bags": [str(b) for b in bags], "train_config": asdict(cfg)}
    detector = SuccessDetector(net, meta, device)
    probs = detector.probabilities(val.images)
    detector.threshold = meta["threshold"] = best_threshold(probs, val.labels)
    meta["validation"] = report = {
        **split_counts(train, "train"), **split_counts(val, "validation"), "threshold": detector.threshold,
        "table": [[t, *precision_recall(probs, val.labels, t)] for t in (0.1, 0.3, 0.5, 0.7, 0.9, detector.threshold)]}
    return detector, report


def split_counts(frames: LabelledFrames, name: str) -> dict:
    return {f"{name}_episodes": int(len(np.unique(frames.episode))), f"{name}_frames": int(len(frames.labels)),
            f"{name}_positives": int(frames.labels.sum())}


def format_report(report: dict) -> str:
    lines = [f"train: {report['train_episodes']} episodes, {report['train_frames']} frames "
             f"({report['train_positives']} positive); validation: {report['validation_episodes']} episodes, "
             f"{report['validation_frames']} frames ({report['validation_positives']} positive)",
             "threshold | precision | recall   (validation frames)"]
    for t, p, r in report["table"][:-1]:
        lines.append(f"{t:>9.2f} | {p:>9.2f} | {r:>6.2f}")
    t, p, r = report["table"][-1]
    lines.append(f"{t:>9.3f} | {p:>9.2f} | {r:>6.2f}   <- chosen (best F1), stored in the file")
    return "\n".join(lines)


def save_detector(path: str | Path, detector: SuccessDetector) -> None:
    """safetensors (conrft_core.checkpoint: atomic, never pickle), the metadata in its config."""
    save_checkpoint(path, {f"net/{k}": v for k, v in detector.net.state_dict().items()}, detector.meta)


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> SuccessDetector:
    """Raises CheckpointError naming the file: missing, corrupt, not a success detector, or tensors that do not
    fit the model its metadata describes."""
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") != KIND:
        raise CheckpointError(f"{path} is not a success detector (no kind '{KIND}' in its metadata); train one with "
                              f"`conrft success-detector train`")
    try:
        net = SuccessNet(tuple(meta["cameras"]), int(meta["channels"]), int(meta["hidden"]))
        size = tuple(int(v) for v in meta["image_size"])
        float(meta["threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"success detector {path} has unusable metadata ({exc!r})") from None
    if len(size) != 2 or not net.cameras:
        raise CheckpointError(f"success detector {path} has unusable metadata (cameras {net.cameras}, size {size})")
    load_into(net, tensors, "net/", source=f"success detector {path}")
    return SuccessDetector(net, meta, device)


def detection_report(detector: SuccessDetector, frames: LabelledFrames, consecutive_frames: int = 1) -> dict:
    """The detector on held-out frames at its threshold: frame precision / recall against their labels (in
    simulation: the privileged success), and per episode when the node's rule (`consecutive_frames` in a row at
    the threshold) first fires, against the first positive frame: `early` (a false alarm that would have ended
    the episode before the task was done), at or after it (`detected`, `mean_delay` frames later), `missed`;
    in episodes without a positive frame, a `false_alarm` or not."""
    detector.check(frames.images, "held-out frames")
    probs = detector.probabilities(frames.images)
    precision, recall = precision_recall(probs, frames.labels, detector.threshold)
    counts, delays = {"detected": 0, "early": 0, "missed": 0, "false_alarm": 0, "negative_episodes": 0}, []
    for e in np.unique(frames.episode):
        mine = frames.episode == e
        gate = SuccessGate(GateConfig(consecutive_frames=consecutive_frames), detector.threshold)
        fired = next((i for i, p in enumerate(probs[mine]) if gate.update(float(p))), None)
        positives = np.flatnonzero(frames.labels[mine])
        if len(positives) == 0:
            counts["negative_episodes"] += 1
            counts["false_alarm"] += fired is not None
        elif fired is None:
            counts["missed"] += 1
        elif fired < positives[0]:
            counts["early"] += 1
        else:
            counts["detected"] += 1
            delays.append(int(fired - positives[0]))
    return {"threshold": detector.threshold, "consecutive_frames": consecutive_frames, "frames": int(len(probs)),
            "positives": int(frames.labels.sum()), "precision": precision, "recall": recall,
            "episodes": int(len(np.unique(frames.episode))), **counts,
            "mean_delay": float(np.mean(delays)) if delays else 0.0}


def format_detection(report: dict) -> str:
    return (f"frames: {report['frames']} ({report['positives']} positive); at threshold {report['threshold']:.3f}: "
            f"precision {report['precision']:.2f}, recall {report['recall']:.2f}\n"
            f"episodes: {report['episodes']}; with {report['consecutive_frames']} consecutive frames the detector "
            f"fires on {report['detected']} at or after the success (mean delay {report['mean_delay']:.1f} frames), "
            f"before it on {report['early']}, never on {report['missed']}; false alarms in "
            f"{report['false_alarm']} of {report['negative_episodes']} episodes without success")
