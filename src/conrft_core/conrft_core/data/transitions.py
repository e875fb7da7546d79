"""Transition messages <-> episodes: the one place that turns a stream of per-step `Transition`s into `Episode`s.

Used by the bag reader (`conrft_core.data.bags`), the learner node (live `/conrft/transitions`) and the demo recorder.
Messages are duck-typed: rclpy message instances and `rosbags` typestore instances both work, so this module
imports no rclpy. The action and proprio sizes are the robot's (`conrft_core.robot.spaces`): a reader that knows
them passes them (`dims`) and every message is checked against them; without them, every step of an episode must
have the sizes of its first step.
"""
from __future__ import annotations

import numpy as np

from conrft_core.data.episode import Episode, EpisodeKey


class TransitionError(ValueError):
    """A transition cannot belong to a usable episode; the message names the episode, step and field."""


def transition_key(msg) -> EpisodeKey:
    """(robot, episode id) of a message; bags recorded before the robot field: robot ""."""
    return getattr(msg, "robot", ""), int(msg.episode_id)


def _where(msg) -> str:
    robot, eid = transition_key(msg)
    return f"{'robot ' + robot + ' ' if robot else ''}episode {eid} step {msg.step}"


def image_to_array(img) -> np.ndarray:
    """sensor_msgs/Image (rgb8 or bgr8) -> HxWx3 RGB uint8."""
    if img.encoding not in ("rgb8", "bgr8"):
        raise TransitionError(f"image encoding '{img.encoding}' is not supported; publish rgb8 or bgr8 images")
    arr = np.frombuffer(bytes(img.data), np.uint8).reshape(img.height, img.step)[:, : img.width * 3]
    arr = arr.reshape(img.height, img.width, 3)
    return arr[..., ::-1].copy() if img.encoding == "bgr8" else arr.copy()


def check_transition(msg, source: str = "transition", dims: tuple[int, int] | None = None) -> None:
    """One message: its images match its camera names, its action is finite and non-empty and, when `dims` =
    (action size, proprio size) is given, of those sizes. Raises TransitionError naming the field."""
    where = f"{source}: {_where(msg)}"
    if dims is not None and len(msg.action) != dims[0]:
        raise TransitionError(f"{where} has a {len(msg.action)}-D action; this robot's actions are {dims[0]}-D "
                              f"(translation, rotation, gripper)")
    if dims is not None and len(msg.proprio) != dims[1]:
        raise TransitionError(f"{where} has {len(msg.proprio)} proprio values, expected {dims[1]}")
    if len(msg.action) == 0:
        raise TransitionError(f"{where} has an empty action")
    if len(msg.images) != len(msg.camera_names):
        raise TransitionError(f"{where} has {len(msg.images)} images for {len(msg.camera_names)} camera names")
    if not np.all(np.isfinite(np.asarray(msg.action, np.float64))):
        raise TransitionError(f"{where} has a non-finite action")


def episode_from_transitions(msgs: list, source: str = "transitions",
                             dims: tuple[int, int] | None = None) -> Episode | None:
    """The episode made of `msgs` (one per step, any order), or None when it is incomplete: its last step
    (terminated or truncated) is missing or a step in between is. Without `dims`, the first step's sizes are
    the episode's."""
    msgs = sorted(msgs, key=lambda m: m.step)
    last = msgs[-1]
    if not (last.terminated or last.truncated) or [m.step for m in msgs] != list(range(len(msgs))):
        return None
    dims = dims or (len(msgs[0].action), len(msgs[0].proprio))
    for m in msgs:
        check_transition(m, source, dims)
    if len(last.final_proprio) != dims[1]:
        raise TransitionError(f"{source}: {_where(last)} has {len(last.final_proprio)} "
                              f"final proprio values, expected {dims[1]}")
    held = np.array([getattr(m, "held", False) for m in msgs], bool)  # bags recorded before the field: False
    cams = list(last.camera_names)
    images = {
        c: np.stack([image_to_array(m.images[i]) for m in msgs] + [image_to_array(last.final_images[i])])
        for i, c in enumerate(cams)
    }
    return Episode(
        episode_id=int(last.episode_id),
        instruction=last.instruction,
        images=images,
        proprio=np.stack([np.asarray(m.proprio, np.float32) for m in msgs]
                         + [np.asarray(last.final_proprio, np.float32)]),
        actions=np.stack([np.asarray(m.action, np.float32) for m in msgs]),
        rewards=np.array([m.reward for m in msgs], np.float32),
        intervened=np.array([m.intervened for m in msgs], bool),
        held=held if held.any() else None,
        terminated=bool(last.terminated),
        truncated=bool(last.truncated),
        policy_actions=np.stack([np.asarray(m.policy_action, np.float32) for m in msgs]),
        policy_versions=np.array([m.policy_version for m in msgs], np.uint64),
        stamps=np.array([m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in msgs]),
        success=bool(last.success),
        robot=transition_key(last)[0],
    )


class EpisodeAssembler:
    """Collects a live stream of transitions per episode (robot, episode id) and hands out each episode once it is
    complete.

    A step that arrives twice (e.g. replayed from the learner's journal and received live) counts once.
    `collect` is the cheap part (bookkeeping only) for a subscription callback that must keep up with the
    stream; `episode_from_transitions` on its result (the costly image decoding) can run elsewhere.
    """

    def __init__(self, source: str = "/conrft/transitions", dims: tuple[int, int] | None = None):
        self.source, self.dims = source, dims
        self._steps: dict[EpisodeKey, dict[int, object]] = {}
        self._last: dict[EpisodeKey, int] = {}  # episode -> step index of its terminal transition, once seen

    def collect(self, msg) -> list | None:
        """Add one transition; returns every transition of the episode it completes (by step), if any.
        Raises TransitionError on bad data."""
        check_transition(msg, self.source, self.dims)
        key, step = transition_key(msg), int(msg.step)
        steps = self._steps.setdefault(key, {})
        steps[step] = msg
        if msg.terminated or msg.truncated:
            self._last[key] = step
        if key not in self._last or len(steps) != self._last[key] + 1 or max(steps) != self._last[key]:
            return None
        del self._steps[key], self._last[key]
        return [steps[t] for t in range(len(steps))]

    def holds(self, key: EpisodeKey, step: int) -> bool:
        """The step of a still incomplete episode is collected already."""
        return step in self._steps.get(key, ())

    def add(self, msg) -> Episode | None:
        """`collect`, then the complete episode as an Episode."""
        msgs = self.collect(msg)
        return None if msgs is None else episode_from_transitions(msgs, self.source, self.dims)

    @property
    def pending_steps(self) -> int:
        return sum(len(s) for s in self._steps.values())
