"""The `conrft` command line: one entry point, one subcommand per job.

Subcommands are thin: they parse arguments, call into conrft_core / conrft_sim, and print. Any input error
(bad task name, bad config key, unusable bag) ends with a one-line message on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from conrft_core.config import ConfigError, from_dict, load_yaml
from conrft_core.data.bags import BagError

USER_ERRORS = (ConfigError, BagError, ValueError, FileNotFoundError, FileExistsError, RuntimeError)


def _sim_config(args):
    """SimConfig from --config (YAML, its `sim:` section or the whole file) with CLI overrides."""
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

    from conrft_core.data.bags import EpisodeBagWriter
    from conrft_core.data.stats import episode_summary, format_summary
    from conrft_sim.demos import generate_demos, noise_preset
    from conrft_sim.env import ConRFTSimEnv

    if args.episodes < 1:
        raise ValueError("--episodes must be at least 1")
    sim = _sim_config(args)
    noise = noise_preset(args.noise, sim.task)
    env = ConRFTSimEnv(sim)
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
    from conrft_core.data.bags import read_episodes
    from conrft_core.data.stats import episode_summary, format_summary, plot_episodes

    episodes = read_episodes(args.bag)
    summary = episode_summary(episodes)
    print(f"bag {args.bag}")
    print(format_summary(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    if args.plot:
        print(f"plot: {plot_episodes(episodes, args.plot, title=str(args.bag))}")
    return 0


def _overrides(pairs: list[str]) -> dict:
    """--set key.path=value pairs; values are YAML scalars (numbers, true/false, strings)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key.path=value, got '{pair}'")
        out[key.strip()] = yaml.safe_load(value)
    return out


def cmd_train(args) -> int:
    from conrft_sim.experiment import load_experiment, run_experiment

    cfg = load_experiment(args.config, _overrides(args.set))
    result = run_experiment(cfg, args.run_dir, resume=args.resume, progress=not args.quiet)
    print("online steps | success | mean length   (evaluation, no human)")
    for point in result["curve"]:
        print(f"{point['env_steps']:>12} | {point['success_rate']:>7.0%} | {point['mean_length']:>11.1f}")
    if result["unseen_success_rate"] is not None:
        print(f"unseen object range: success {result['unseen_success_rate']:.0%}")
    print(f"{result['task']} {result['method']}: success {result['success_rate']:.0%}, mean length "
          f"{result['mean_length']:.1f}, online steps {result['online_env_steps']}, intervention rate "
          f"{result['intervention_rate']:.2f}")
    if args.run_dir:
        from conrft_sim.learning_bench import plot_curves

        plot_curves(result["task"], [result], args.run_dir / "curve.png")
        print(f"run directory: {args.run_dir} (checkpoint.safetensors, result.json, curve.png, tensorboard/)")
    return 0


def cmd_eval(args) -> int:
    from conrft_sim.experiment import evaluate_checkpoint

    if args.episodes < 1:
        raise ValueError("--episodes must be at least 1")
    result = evaluate_checkpoint(args.checkpoint, args.episodes, unseen=args.unseen, first_seed=args.seed,
                                 device=args.device)
    where = "unseen" if args.unseen else "training"
    print(f"{result['task']} {result['method']} ({args.episodes} episodes, {where} object range): success "
          f"{result['success_rate']:.0%}, mean length {result['mean_length']:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def cmd_report(args) -> int:
    from conrft_sim.experiment import evaluate_session
    from conrft_sim.learning_bench import plot_curves

    if args.episodes < 1:
        raise ValueError("--episodes must be at least 1")
    result = evaluate_session(args.run_dir, args.episodes, device=args.device, progress=not args.quiet)
    print(f"{result['task']} {result['method']} ROS session: {result['online_env_steps']} online steps in "
          f"{result['online_episodes']} episodes, intervention rate {result['intervention_rate']:.2f}")
    print(f"online steps | success | mean length   (evaluation, no human, {args.episodes} episodes each)")
    for point in result["curve"]:
        print(f"{point['env_steps']:>12} | {point['success_rate']:>7.0%} | {point['mean_length']:>11.1f}")
    plot_curves(result["task"], [result], args.run_dir / "curve.png")
    (args.run_dir / "report.json").write_text(json.dumps(result, indent=2))
    print(f"curve: {args.run_dir / 'curve.png'}; numbers: {args.run_dir / 'report.json'}")
    return 0


def cmd_bench(args) -> int:
    from conrft_core.learning.methods import TrainConfig
    from conrft_sim.learning_bench import METHOD_OVERRIDES, TASKS, run_benchmark

    tasks = args.tasks.split(",") if args.tasks else TASKS
    methods = args.methods.split(",") if args.methods else tuple(METHOD_OVERRIDES)
    overrides = {**_overrides(args.set), "train.split": args.split}
    # The runs take the split's first seeds (train.validation_seeds / test_seeds: the config's, or the defaults);
    # each run's config then checks its seed against the split.
    key = f"{args.split}_seeds"
    seeds = load_yaml(args.config).get("train", {}).get(key, getattr(TrainConfig, key))
    first = overrides.get(f"train.{key}", seeds)[0]
    summary = run_benchmark(args.config, args.out, tasks, methods, range(first, first + args.seeds),
                            horizon=args.horizon, overrides=overrides, progress=not args.quiet, jobs=args.jobs)
    print((args.out / "summary.md").read_text())
    print(f"results: {args.out} ({sum(len(m) for m in summary['table'].values())} task/method rows)")
    return 0


def cmd_pretrain(args) -> int:
    from conrft_core.learning.vla import PretrainConfig
    from conrft_sim.experiment import pretrain_vla
    from conrft_sim.tasks import TASKS

    data = load_yaml(args.config) if args.config else {}
    data = dict(data.get("pretrain", data))
    if args.steps is not None:
        data["steps"] = args.steps
    cfg = from_dict(PretrainConfig, data, "pretrain")
    tasks = args.tasks.split(",") if args.tasks else sorted(TASKS)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown} in --tasks; choose from {', '.join(sorted(TASKS))}")
    if args.episodes < 1:
        raise ValueError("--episodes must be at least 1")
    info = pretrain_vla(cfg, args.out, tasks, args.episodes, noise=args.noise, seed=args.seed, device=args.device,
                        progress=not args.quiet)
    print(f"wrote {info['out']}: {info['parameters']} parameters, pretrained on {info['episodes']} episodes "
          f"({info['steps']} steps) of {', '.join(tasks)}")
    return 0


def cmd_session(args) -> int:
    from conrft_bringup.session import run_session

    overrides = {}
    for item in args.args:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ConfigError(f"session arguments are name:=value (as in ros2 launch), got '{item}'")
        overrides[name] = value
    return run_session(args.config, overrides)


def cmd_detector_train(args) -> int:
    from conrft_core.learning.success import DetectorConfig, format_report, save_detector, train_detector

    if args.out.exists() and not args.force:
        raise FileExistsError(f"output {args.out} already exists; choose another --out or pass --force")
    data = {key: getattr(args, key) for key in ("steps", "validation_fraction", "seed")
            if getattr(args, key) is not None}
    if args.cameras:
        data["cameras"] = args.cameras.split(",")
    cfg = from_dict(DetectorConfig, data, "success-detector")
    detector, report = train_detector(args.bags, cfg, device=args.device, progress=not args.quiet)
    save_detector(args.out, detector)  # only now: a bad input above leaves nothing behind
    print(f"success detector on {', '.join(detector.cameras)} ({detector.image_size[1]}x{detector.image_size[0]}, "
          f"its own CNN) from {len(args.bags)} bag(s)")
    print(format_report(report))
    print(f"wrote {args.out} (threshold {detector.threshold:.3f})")
    return 0


def cmd_detector_eval(args) -> int:
    from conrft_core.learning.success import detection_report, format_detection, load_detector, load_frames

    detector = load_detector(args.model)
    if args.sim_episodes:
        from conrft_sim.success_frames import rollout_frames

        frames = rollout_frames(args.task, detector.cameras, detector.image_size, args.sim_episodes, args.seed,
                                args.after_success, progress=not args.quiet)
        source = (f"{args.sim_episodes} {args.task} operator rollouts (seeds {args.seed}+, {args.after_success} "
                  f"steps past success) against the privileged success")
    elif args.bags:
        frames, source = load_frames(args.bags, detector.cameras)[0], f"bag(s) {', '.join(map(str, args.bags))}"
    else:
        raise ValueError("give held-out bags or --sim-episodes N")
    report = detection_report(detector, frames, args.consecutive_frames)
    print(f"{args.model} on {source}")
    print(format_detection(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
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

    p = sub.add_parser("train", help="a simulated training run in-process: demos, offline and online stages, eval")
    p.add_argument("config", type=Path, help="experiment YAML (e.g. config/train_sim.yaml)")
    p.add_argument("--run-dir", type=Path, help="where checkpoints, TensorBoard logs and result.json go")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. --set train.method=sft (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint's policy in simulation (no human)")
    p.add_argument("checkpoint", type=Path, help="checkpoint.safetensors of a run")
    p.add_argument("--episodes", type=int, default=100, help="evaluation episodes (default 100)")
    p.add_argument("--unseen", action="store_true", help="objects over the wider unseen range")
    p.add_argument("--seed", type=int, help="first evaluation seed (default: the first of the run's split)")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--json", type=Path, help="also write the result as JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("pretrain", help="generalist multi-task imitation pretraining of the built-in VLA")
    p.add_argument("--out", type=Path, required=True, help="output file (vla.safetensors)")
    p.add_argument("--config", type=Path, help="YAML with a `pretrain:` section (backbone, head, steps, ...)")
    p.add_argument("--tasks", help="comma-separated tasks (default: all)")
    p.add_argument("--episodes", type=int, default=50, help="scripted demonstrations per task (default 50)")
    p.add_argument("--noise", default="zero", help="expert setting of those demonstrations: zero or human_like")
    p.add_argument("--steps", type=int, help="gradient steps (overrides the config)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("bench", help="learning benchmark: every method x task x seed, table and learning curves",
                       description="The benchmark protocol by default: 1000 offline updates, 12,000 online steps "
                       "(evaluations every 3000), 100 evaluation episodes on held-out seeds and 100 on the unseen "
                       "range; --set overrides any of it. Finished runs in --out are skipped if their config matches "
                       "and refused (with the differing key named) if not.")
    p.add_argument("--config", type=Path, default=Path("config/train_sim.yaml"),
                   help="experiment YAML the runs start from (default config/train_sim.yaml)")
    p.add_argument("--out", type=Path, default=Path("results/learning_protocol"), help="results folder (default "
                   "results/learning_protocol); finished runs found there are not repeated")
    p.add_argument("--tasks", help="comma-separated subset of pick_cube,peg_insert,drawer_open")
    p.add_argument("--methods", help="comma-separated subset of sft,cal_conrft,co_rft,hil_conrft,"
                   "hil_conrft_chunked,hg_dagger,hil_serl")
    p.add_argument("--seeds", type=int, default=3, help="seeds per task and method (default 3)")
    p.add_argument("--split", choices=("validation", "test"), default="validation",
                   help="seed ranges: validation (where settings are chosen; default) or test (reported numbers)")
    p.add_argument("--horizon", type=int, default=4, help="chunk length H of co_rft and hil_conrft_chunked")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    p.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process with one torch "
                   "thread (default 1: one after another, with progress bars); output in OUT/logs/")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="evaluate a ROS session's policy snapshots in simulation: table and curve")
    p.add_argument("run_dir", type=Path, help="the learner's run_dir")
    p.add_argument("--episodes", type=int, default=20, help="evaluation episodes per snapshot (default 20)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("success-detector", help="a learned success classifier on camera images: train, evaluate")
    det = p.add_subparsers(dest="detector_command", metavar="ACTION", required=True)
    q = det.add_parser("train", help="train from recorded episodes (positives: success frames and key presses)")
    q.add_argument("bags", nargs="+", type=Path, help="rosbag2 folders with /conrft/transitions")
    q.add_argument("--out", required=True, type=Path, help="output file (success_detector.safetensors)")
    q.add_argument("--cameras", help="comma-separated cameras (default: every camera of the bags)")
    q.add_argument("--steps", type=int, help="gradient steps (default 600)")
    q.add_argument("--val-fraction", dest="validation_fraction", type=float,
                   help="share of episodes held out for validation and the threshold (default 0.25)")
    q.add_argument("--seed", type=int)
    q.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    q.add_argument("--force", action="store_true", help="replace --out if it exists")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_detector_train)
    q = det.add_parser("eval", help="precision / recall on held-out bags or simulated rollouts")
    q.add_argument("model", type=Path, help="a file from `conrft success-detector train`")
    q.add_argument("bags", nargs="*", type=Path, help="held-out rosbag2 folders")
    q.add_argument("--sim-episodes", type=int, default=0,
                   help="instead of bags: N operator rollouts in simulation, labelled with the privileged success")
    q.add_argument("--task", default="pick_cube", help="task of the rollouts (default pick_cube)")
    q.add_argument("--seed", type=int, default=5000, help="first rollout seed (default 5000)")
    q.add_argument("--after-success", type=int, default=10, help="rollout steps after the success (default 10)")
    q.add_argument("--consecutive-frames", type=int, default=2,
                   help="frames in a row the rule needs (the node's consecutive_frames; default 2)")
    q.add_argument("--json", type=Path, help="also write the report as JSON")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_detector_eval)

    p = sub.add_parser("session", help="start a session's nodes as processes (where ros2 launch is absent)")
    p.add_argument("config", type=Path, help="session YAML, e.g. config/sim_pick_cube.yaml")
    p.add_argument("args", nargs="*", metavar="NAME:=VALUE", help="session arguments (see the file's args:)")
    p.set_defaults(func=cmd_session)
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
