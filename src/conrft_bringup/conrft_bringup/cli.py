"""The `conrft` command line: one entry point, one subcommand per job.

Subcommands are thin: they parse arguments, call into conrft_core / conrft_sim, and print. Any input error
(bad task name, bad config key, unusable bag) ends with a one-line message on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from conrft_core.bags import BagError
from conrft_core.config import ConfigError

USER_ERRORS = (ConfigError, BagError, ValueError, FileNotFoundError, RuntimeError)


def _sim_config(args):
    """SimConfig from --config (YAML, its `sim:` section or the whole file) with CLI overrides."""
    from conrft_core.config import from_dict, load_yaml
    from conrft_sim.sim import SimConfig

    data = load_yaml(args.config) if args.config else {}
    data = dict(data.get("sim", data))
    for key in ("task", "image_width", "image_height"):
        if getattr(args, key, None) is not None:
            data[key] = getattr(args, key)
    if getattr(args, "unseen", False):
        data["unseen"] = True
    return from_dict(SimConfig, data, "sim")


def cmd_sim_demos(args) -> int:
    from tqdm import tqdm

    from conrft_core.bags import EpisodeBagWriter
    from conrft_core.stats import episode_summary, format_summary
    from conrft_sim.demos import generate_demos, noise_preset
    from conrft_sim.env import ConRFTSimEnv

    if args.episodes < 1:
        raise ValueError("--episodes must be at least 1")
    noise = noise_preset(args.noise)
    env = ConRFTSimEnv(_sim_config(args))
    kept, attempts = [], 0
    with EpisodeBagWriter(args.out, distro=args.distro, overwrite=args.force) as writer:
        bar = tqdm(total=args.episodes, desc=f"{env.sim.task.name} demos", unit="ep", disable=args.quiet)
        for ep, attempts in generate_demos(
            env, noise, args.episodes, seed=args.seed, unseen=env.sim.config.unseen, keep_failures=args.keep_failures
        ):
            writer.write_episode(ep)
            kept.append(ep)
            bar.update(1)
            bar.set_postfix(attempts=attempts, length=ep.length)
        bar.close()
    summary = episode_summary(kept)
    print(f"wrote {args.out} ({writer.messages} messages, {len(kept)} episodes from {attempts} attempts, "
          f"noise '{args.noise}')")
    print(format_summary(summary))
    return 0


def cmd_demo_stats(args) -> int:
    from conrft_core.bags import read_episodes
    from conrft_core.stats import episode_summary, format_summary, plot_episodes

    episodes = read_episodes(args.bag)
    summary = episode_summary(episodes)
    print(f"bag {args.bag}")
    print(format_summary(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    if args.plot:
        print(f"plot: {plot_episodes(episodes, args.plot, title=str(args.bag))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conrft",
        description="ConRFT / CO-RFT reinforced fine-tuning of VLA policies on ROS 2 robots and in MuJoCo.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("sim-demos", help="record scripted-expert demonstrations in simulation into a rosbag2 bag")
    p.add_argument("--task", help="pick_cube, peg_insert or drawer_open (default: from --config, else pick_cube)")
    p.add_argument("--episodes", type=int, default=20, help="number of demonstrations to keep (default 20)")
    p.add_argument("--out", required=True, type=Path, help="output bag folder (must not exist unless --force)")
    p.add_argument("--noise", default="human_like", help="expert setting: human_like (default) or zero")
    p.add_argument("--seed", type=int, default=0, help="first episode seed (default 0)")
    p.add_argument("--unseen", action="store_true", help="randomise objects over the wider 'unseen' range")
    p.add_argument("--config", type=Path, help="YAML file with simulator settings (a `sim:` section)")
    p.add_argument("--image-width", dest="image_width", type=int)
    p.add_argument("--image-height", dest="image_height", type=int)
    p.add_argument("--keep-failures", action="store_true", help="also keep episodes that did not succeed")
    p.add_argument("--distro", default="kilted", help="typestore for the bag: humble, jazzy or kilted")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sim_demos)

    p = sub.add_parser("demo-stats", help="summarise (and plot) the episodes in a demonstration bag")
    p.add_argument("bag", type=Path, help="rosbag2 folder with /conrft/transitions")
    p.add_argument("--plot", type=Path, help="write a PNG with paths, lengths and frames")
    p.add_argument("--json", type=Path, help="write the summary as JSON")
    p.set_defaults(func=cmd_demo_stats)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"conrft {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"conrft {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
