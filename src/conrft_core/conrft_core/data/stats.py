"""Summaries and plots of episode sets (demonstration bags, evaluation rollouts)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from conrft_core.data.episode import Episode


def episode_summary(episodes: list[Episode]) -> dict:
    """Success rate, length statistics and path spread: the numbers that show how consistent demos are."""
    lengths = np.array([ep.length for ep in episodes])
    # Path length of the end effector (proprio[:, :3] is the position relative to the reset frame).
    paths = np.array([np.linalg.norm(np.diff(ep.proprio[:, :3], axis=0), axis=1).sum() for ep in episodes])
    return {
        "episodes": len(episodes),
        "success_rate": float(np.mean([ep.success for ep in episodes])),
        "length_mean": float(lengths.mean()),
        "length_std": float(lengths.std()),
        "length_min": int(lengths.min()),
        "length_max": int(lengths.max()),
        "path_length_mean_m": float(paths.mean()),
        "path_length_std_m": float(paths.std()),
        "return_mean": float(np.mean([ep.episode_return for ep in episodes])),
        "intervened_fraction": float(np.mean(np.concatenate([ep.intervened for ep in episodes]))),
        "cameras": sorted(episodes[0].images),
        "image_shape": list(next(iter(episodes[0].images.values())).shape[1:]),
        "instruction": episodes[0].instruction,
    }


def format_summary(summary: dict) -> str:
    s = summary
    return "\n".join([
        f"instruction      {s['instruction']}",
        f"episodes         {s['episodes']}  (success {100 * s['success_rate']:.0f}%)",
        f"length (steps)   mean {s['length_mean']:.1f}  std {s['length_std']:.1f}  "
        f"min {s['length_min']}  max {s['length_max']}",
        f"EE path (m)      mean {s['path_length_mean_m']:.3f}  std {s['path_length_std_m']:.3f}",
        f"return           mean {s['return_mean']:.2f}",
        f"cameras          {', '.join(s['cameras'])}  {'x'.join(map(str, s['image_shape']))}",
    ])


def plot_episodes(episodes: list[Episode], out: str | Path, title: str = "") -> Path:
    """One PNG: EE paths (top view and height), length histogram, first and last frames of episode 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cams = sorted(episodes[0].images)
    fig, axes = plt.subplots(2, 2 + len(cams), figsize=(4 * (2 + len(cams)), 7.5))
    for ep in episodes:
        p = ep.proprio[:, :3] * 100
        axes[0, 0].plot(p[:, 0], p[:, 1], lw=0.8)
        axes[1, 0].plot(p[:, 2], lw=0.8)
    axes[0, 0].set(title="EE path, top view (cm, reset frame)", xlabel="x", ylabel="y", aspect="equal")
    axes[1, 0].set(title="EE along the reset frame's z (gripper axis, cm)", xlabel="step")
    axes[0, 1].hist([ep.length for ep in episodes], bins=15, color="tab:blue")
    axes[0, 1].set(title="episode length (steps)")
    axes[1, 1].plot(np.concatenate([ep.actions[:, 6] for ep in episodes[:3]]), lw=0.8)
    axes[1, 1].set(title="gripper action, first 3 episodes", xlabel="step")
    for j, cam in enumerate(cams):
        for i, (row, idx) in enumerate(((0, 0), (1, -1))):
            axes[row, 2 + j].imshow(episodes[0].images[cam][idx])
            axes[row, 2 + j].set(title=f"{cam}, {'first' if i == 0 else 'last'} frame of episode 0")
            axes[row, 2 + j].axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
