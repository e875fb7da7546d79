"""The target streamer's rules (conrft_policy/target_streamer, a process of its own): what the policy node's step
targets, holds and stops become on the controller's topic, and when nothing is streamed there.

While an episode runs the policy node sends one message a control step: its step's target, or a hold at the
measured pose; an episode starts with a hold (the reset moved the arm since the pose streamed last) and ends with
a stop. The relay streams (conrft_core.robot.streaming) from a hold until a stop, and never longer than `timeout`
after the policy node's last message: a policy node that died or hangs leaves the arm at the pose streamed last
and the topic to whoever drives next (home_reset between episodes). A step target with no hold since the last
stop is refused: its segment would start from where the arm was before the reset.

A step target may name its start (`start`, the policy node's `action_deadline` after its tick, on the stream's
clock): it waits until then, and its segment starts at that instant rather than when it came, so that the steps
the controller follows are one control period apart however long each step's inference took. One that comes after
its start begins at once; a hold or a stop drops a target still waiting, a refused message does not.

The streamer takes the policy node's topics, frame, safety box and rates as they are (`FROM_POLICY`, passed on by
the launch files and `conrft session`): the two cannot disagree on them.
"""
from __future__ import annotations

import math

import numpy as np

from conrft_core.config import ConfigError
from conrft_core.robot.spaces import SafetyBox
from conrft_core.robot.streaming import StreamConfig, TargetStreamer

TARGET, HOLD, STOP = 0, 1, 2  # conrft_interfaces/StreamTarget's commands
FROM_POLICY = ("step_target_topic", "target_topic", "frame_id", "reset_node", "control_rate", "stream_rate",
               "safety_box_low", "safety_box_high")
_PARAMETER_OF = {"stream_rate": "stream_rate", "profile": "stream_profile", "max_speed": "stream_max_speed",
                 "max_accel": "stream_max_accel", "max_angular_speed": "stream_max_angular_speed"}


class RelayError(ValueError):
    """A message the relay refuses (nothing of it is streamed); the text says why."""


class StreamRelay:
    """`receive` each message of the policy node, `sample` at every stream tick; both give the pose to publish
    (position (3,), quaternion wxyz (4,)) or None."""

    def __init__(self, cfg: StreamConfig, box: SafetyBox, timeout: float):
        self.cfg, self.box, self.timeout = cfg, box, timeout
        self.streamer: TargetStreamer | None = None  # None: stopped (no pose to start a segment from)
        self.last = -math.inf  # time of the last target or hold
        self.waiting: tuple | None = None  # (position, quaternion, start) of a step target before its start

    def receive(self, command: int, pos, quat_wxyz, now: float, target_at_once: bool = True,
                start: float | None = None):
        """The pose to publish at once for a message received at `now`: a hold's always, a step target's with
        `target_at_once` (a sim waits for a target stamped at its step; a robot's controller wants targets on the
        stream's grid, the next tick starts the segment), else None; None for a stop. A step target whose `start`
        is later than `now` waits for it (None)."""
        self._begin_waiting(now)
        if command == STOP:
            self.streamer = self.waiting = None
            return None
        if command not in (TARGET, HOLD):
            raise RelayError(f"unknown command {command} (TARGET {TARGET}, HOLD {HOLD}, STOP {STOP}): refused")
        pos, quat = np.asarray(pos, np.float64), np.asarray(quat_wxyz, np.float64)
        if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(quat)) and np.linalg.norm(quat) > 1e-6):
            raise RelayError(f"{'hold' if command == HOLD else 'step target'} with a non-finite pose or a zero "
                             f"quaternion: refused")
        self.waiting = None  # a newer message replaces a target still waiting (a refused one leaves it)
        if command == HOLD:
            self.streamer, self.last = TargetStreamer(self.cfg, self.box, pos, quat, now), now
            return self.streamer.pose()
        if self.streamer is None:
            raise RelayError("step target without a hold since the last stop: refused (the stream would start "
                             "from where the arm was before the reset)")
        self.last = now
        if start is not None and start > now:
            self.waiting = (pos, quat, start)
            return None
        self.streamer.set_target(pos, quat, now)
        return self.streamer.sample(now) if target_at_once else None

    def sample(self, now: float):
        """The pose to stream at `now`; None when stopped or the policy node has been silent too long."""
        self._begin_waiting(now)
        return self.streamer.sample(now) if self.streaming(now) else None

    def _begin_waiting(self, now: float) -> None:
        """A waiting step target whose start has come: its segment starts at that instant (not at `now`)."""
        if self.waiting is not None and self.waiting[2] <= now:
            pos, quat, start = self.waiting
            self.waiting = None
            self.streamer.set_target(pos, quat, start)

    def streaming(self, now: float) -> bool:
        return self.streamer is not None and now - self.last <= self.timeout

    def silent(self, now: float) -> bool:
        """Not stopped, but no message for longer than `timeout`: the policy node died or hangs."""
        return self.streamer is not None and not self.streaming(now)


def relay_from_parameters(p: dict) -> StreamRelay:
    """The relay of the target streamer's parameters; ConfigError naming the parameter that is wrong."""
    rate = p["control_rate"]
    if not (math.isfinite(rate) and rate > 0):
        raise ConfigError(f"parameter 'control_rate' must be a positive number of Hz, got {rate!r}")
    try:
        cfg = StreamConfig(p["stream_rate"], 1.0 / rate, p["stream_profile"], p["stream_max_speed"],
                           p["stream_max_accel"], p["stream_max_angular_speed"])
    except ValueError as exc:
        text = str(exc)
        for name, param in _PARAMETER_OF.items():
            text = text.replace(f"stream.{name} ", f"parameter '{param}' ")
        raise ConfigError(text) from None
    try:
        box = SafetyBox(tuple(p["safety_box_low"]), tuple(p["safety_box_high"]))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"parameters 'safety_box_low' / 'safety_box_high': {exc}") from None
    timeout = p["stream_timeout"]
    if not (math.isfinite(timeout) and timeout >= cfg.step_period):
        raise ConfigError(f"parameter 'stream_timeout' must be at least one control period (1 / control_rate = "
                          f"{cfg.step_period:g} s: the policy node sends one message a step), got {timeout!r}")
    if not 0 <= p["stream_priority"] <= 99:
        raise ConfigError(f"parameter 'stream_priority' must be 0 (normal) or a SCHED_FIFO priority 1-99, got "
                          f"{p['stream_priority']!r}")
    return StreamRelay(cfg, box, timeout)


def streamer_parameters(policy: dict) -> dict | None:
    """The target streamer's parameters taken from the policy node's (`policy`: what its parameter files and
    overrides set), or None when the policy node sends one target per step itself (stream_rate 0)."""
    rate = policy.get("stream_rate", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise ConfigError(f"the policy node's parameter 'stream_rate' must be a number of Hz, got {rate!r}")
    if rate <= 0:
        return None
    return {key: policy[key] for key in FROM_POLICY if key in policy}
