"""ConRFT / CO-RFT training stages and their baselines, in-process, read top to bottom.

    demonstrations -> demo buffer; the feature normalisation is fixed from them (TrainRun.add_demos)
    offline stage  `offline_updates` updates on the demo buffer:
                     sft, hg_dagger          consistency BC only
                     cal_conrft (H = 1),     Cal-ConRFT: Cal-QL critic + beta * BC - eta * Q actor
                     co_rft (H > 1)          (the same losses on chunks: CO-RFT's chunked TD)
                     hil_conrft              Cal-ConRFT, then the online stage
    online stage   episodes with the policy in control and a human who may take over; every executed step
                   enters the online buffer, human-driven segments also the demo buffer; after each episode
                   `updates_per_env_step` x T updates:
                     hil_conrft              HIL-ConRFT losses on 50/50 demo/online batches (RLPD)
                     hg_dagger               consistency BC on the demo buffer (demos + interventions)
                     hil_serl                SAC on 50/50 batches (conrft_core.learning.sac); no offline stage
    evaluation     success rate and mean length on the split's fixed evaluation seeds, which training never
                   uses, with no human; at the end also on the unseen object range

Every stage resumes from the run's progress counters (offline: at that update; online: after that episode), so
a run restored by `conrft_core.learning.resume.restore_run` continues where its last checkpoint left it.
"""
from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from conrft_core.config import to_dict
from conrft_core.data.episode import Episode
from conrft_core.learning.resume import save_run, write_result
from conrft_core.learning.rollout import Featurizer, Human, ObservationSpec, evaluate, human_segments, rollout
from conrft_core.learning.run import TrainRun


def train(run: TrainRun, env, featurizer: Featurizer, human: Human | None = None) -> dict:
    """Every stage of the method; returns (and writes) the result."""
    spec = ObservationSpec.of(env)
    if (spec.proprio_dim, spec.action_dim) != (run.proprio_dim, run.cfg.action_dim):
        raise ValueError(f"the env has {spec.proprio_dim}-D proprio and {spec.action_dim}-D actions, the run was "
                         f"built for {run.proprio_dim}-D proprio and {run.cfg.action_dim}-D actions (the action "
                         f"size is train.agent.consistency.action_dim, or train.sac.action_dim for hil_serl)")
    if run.method.offline:
        offline_stage(run)
    if not run.curve:
        evaluate_policy(run, env, featurizer)  # the starting point of the online learning curve
    if run.method.online and run.cfg.online_env_steps > 0:
        if human is None:
            raise ValueError(f"method {run.cfg.method} has an online stage and needs a human (or scripted one)")
        online_stage(run, env, featurizer, human)
    result = run_result(run, env, featurizer)
    save_run(run)
    write_result(run, result)
    return result


def offline_stage(run: TrainRun) -> None:
    """Cal-ConRFT / CO-RFT (or BC for sft, hg_dagger) on the demonstration buffer only."""
    sample = run.sampler(mixed=False)
    todo = run.cfg.offline_updates - run.offline_done
    first, start = run.offline_done, time.perf_counter()
    for _ in tqdm(range(todo), desc=f"offline {run.cfg.method}", unit="upd", disable=not run.progress,
                  mininterval=2.0):
        info = run.update(sample, offline=True)
        run.offline_done += 1
        if run.offline_done % 100 == 0:
            run.log.scalars("offline", run.offline_done, {**info, **run.diagnostics()})
            if not run.progress:  # no bar (a learner node): a line per block, so a long stage is seen to move
                rate = (run.offline_done - first) / (time.perf_counter() - start)
                left = run.cfg.offline_updates - run.offline_done
                run.log.info(f"offline {run.cfg.method}: {run.offline_done}/{run.cfg.offline_updates} updates, "
                             f"{rate:.1f} upd/s, ~{left / rate / 60:.0f} min left")
        if run.offline_done % run.cfg.checkpoint_every_updates == 0:
            save_run(run)
    if todo > 0 and run.method.online and not run.method.sac and run.cfg.agent.fresh_online_optimizers:
        run.agent.reset_optimizers()  # HIL-ConRFT starts from the offline weights with new Adam state
        save_run(run)


def online_stage(run: TrainRun, env, featurizer: Featurizer, human: Human) -> None:
    """HIL-ConRFT (or HG-DAgger / HIL-SERL): policy episodes with human takeovers, updates after each."""
    cfg = run.cfg
    next_eval = (run.env_steps // cfg.eval_every_steps + 1) * cfg.eval_every_steps
    next_ckpt = (run.env_steps // cfg.checkpoint_every_steps + 1) * cfg.checkpoint_every_steps
    bar = tqdm(total=cfg.online_env_steps, initial=run.env_steps, desc=f"online {cfg.method}", unit="step",
               disable=not run.progress, mininterval=2.0)
    while run.env_steps < cfg.online_env_steps:
        seed = int(run.rng.integers(cfg.training_seed_limit))  # training seeds stay below the evaluation seeds
        start = time.perf_counter()
        ep, feats = rollout(env, featurizer, run.policy, seed=seed, episode_id=run.episodes, human=human,
                            success_key=cfg.success_key)
        run.rollout_seconds += time.perf_counter() - start
        learn_from_episode(run, ep, feats)
        bar.update(ep.length)
        bar.set_postfix(success=int(ep.success), len=ep.length, interv=f"{ep.intervened.mean():.2f}")
        if run.env_steps >= next_eval:
            evaluate_policy(run, env, featurizer)
            next_eval += cfg.eval_every_steps
        if run.env_steps >= next_ckpt:
            save_run(run)
            next_ckpt += cfg.checkpoint_every_steps
    bar.close()


def learn_from_episode(run: TrainRun, ep: Episode, feats: np.ndarray) -> dict:
    """One online episode (from the in-process rollout, or received over ROS by the learner node): into the
    online buffer, its human-driven segments also into the demo buffer, then UTD x T updates."""
    run.episodes += 1
    run.env_steps += ep.length
    run.intervened_steps += int(ep.intervened.sum())
    run.add(run.online_buffer, ep, feats)
    # Full fine-tuning stores frames, not features: a segment's first step then sees its own frame as the
    # history before it (as every episode's first step does), not the policy's frames before the takeover.
    for seg in human_segments(ep, feats):
        run.add(run.demo_buffer, *seg)
    sample = run.sampler(mixed=run.method.mixed_batches)
    info: dict = {}
    for _ in range(round(ep.length * run.cfg.updates_per_env_step)):
        info = run.update(sample, offline=False)
    run.log.scalars("episode", run.env_steps, {"success": ep.success, "length": ep.length,
                                               "intervention_rate": float(ep.intervened.mean())})
    run.log.scalars("online", run.env_steps, {**info, **run.diagnostics(ep, feats)})
    return info


def evaluate_policy(run: TrainRun, env, featurizer: Featurizer, unseen: bool = False,
                    episodes: int | None = None) -> dict:
    """No human, fixed seeds; appended to the learning curve unless `unseen`."""
    act = lambda feats: run.policy(feats, deterministic=True)  # noqa: E731
    n = run.cfg.eval_episodes if episodes is None else episodes
    result = evaluate(env, featurizer, act, n, run.cfg.evaluation_seed, unseen=unseen,
                      success_key=run.cfg.success_key)
    group = "eval_unseen" if unseen else "eval"
    run.log.scalars(group, run.env_steps, result)
    run.log.info(f"[{group}] online steps {run.env_steps}: success {result['success_rate']:.0%} "
                 f"mean length {result['mean_length']:.1f} ({n} episodes)")
    if not unseen:
        run.curve.append({"env_steps": run.env_steps, **result})
    return result


def run_result(run: TrainRun, env, featurizer: Featurizer) -> dict:
    """The run's summary: final evaluation (the last curve point), unseen range, cost, the exact config."""
    cfg = run.cfg
    final = run.curve[-1] if run.curve and run.curve[-1]["env_steps"] == run.env_steps \
        else evaluate_policy(run, env, featurizer)
    unseen = evaluate_policy(run, env, featurizer, unseen=True, episodes=cfg.unseen_eval_episodes) \
        if cfg.unseen_eval_episodes else None
    return {
        "method": cfg.method, **run.meta,
        "success_rate": final["success_rate"], "mean_length": final["mean_length"],
        "unseen_success_rate": unseen["success_rate"] if unseen else None,
        "online_env_steps": run.env_steps, "online_episodes": run.episodes,
        "intervention_rate": run.intervened_steps / run.env_steps if run.env_steps else 0.0,
        "updates": run.updates, "update_seconds": run.update_seconds, "rollout_seconds": run.rollout_seconds,
        "updates_per_s": run.updates / run.update_seconds if run.update_seconds else None,
        "env_steps_per_s": run.env_steps / run.rollout_seconds if run.rollout_seconds else None,
        "replay_bytes_per_transition": run.online_buffer.bytes_per_transition,
        "device": str(run.device), "curve": run.curve, "config": to_dict(cfg),
    }
