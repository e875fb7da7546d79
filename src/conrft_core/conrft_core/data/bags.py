"""rosbag2 demonstration bags: write episodes as a live session would record them, read them back.

A bag holds `conrft_interfaces/msg/Transition` messages on /conrft/transitions (one per control step, with
the observation images inside), which is what `ros2 bag record /conrft/transitions` of a live session or the
demo recorder produces; other topics may be present and are ignored by the reader. Bags are written with the
`rosbags` library as MCAP with metadata version 8, which Humble, Jazzy and Kilted all open.

Writing goes to a temporary folder that is renamed into place only when the bag is complete, so an
interrupted run never leaves a half-written bag under the requested name.
"""
from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from conrft_core.data.episode import Episode
from conrft_core.data.transitions import TransitionError, episode_from_transitions, transition_key

TRANSITIONS_TOPIC = "/conrft/transitions"
TRANSITION_TYPE = "conrft_interfaces/msg/Transition"
INTERVENTION_TOPIC = "/conrft/intervention"
INTERVENTION_TYPE = "conrft_interfaces/msg/Intervention"
INTERFACE_MESSAGES = ("ActionChunk", "Intervention", "PolicyWeights", "RobotState", "Transition")
DISTROS = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY, "kilted": Stores.ROS2_KILTED}


class BagError(ValueError):
    """A bag is missing, unreadable or does not hold usable episodes; the message says how to fix it."""


def interface_msg_dir() -> Path:
    """Folder of conrft_interfaces' .msg files in the built workspace (or an installed ROS 2 prefix)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:  # conrft_core installed alone: the learning library works, bags need the interfaces
        raise BagError("bags need conrft_interfaces' message definitions: build the workspace and "
                       "`source ./env.sh` (or source a ROS 2 install that has conrft_interfaces)") from None
    try:
        return Path(get_package_share_directory("conrft_interfaces")) / "msg"
    except PackageNotFoundError:
        raise BagError("conrft_interfaces is not on AMENT_PREFIX_PATH; build the workspace and `source ./env.sh`")


def make_typestore(distro: str = "kilted"):
    """The distro's standard message types plus conrft_interfaces, read from the .msg files."""
    if distro not in DISTROS:
        raise BagError(f"unknown ROS distro '{distro}'; choose one of: {', '.join(DISTROS)}")
    store = get_typestore(DISTROS[distro])
    folder = interface_msg_dir()
    types = {}
    for name in INTERFACE_MESSAGES:
        types.update(get_types_from_msg((folder / f"{name}.msg").read_text(), f"conrft_interfaces/msg/{name}"))
    store.register(types)
    return store


class EpisodeBagWriter:
    """Writes episodes (and optional extra topics) into a new rosbag2 MCAP bag.

    Use as a context manager; the bag appears at `path` only if the block exits without an exception.
    """

    def __init__(self, path: str | Path, distro: str = "kilted", overwrite: bool = False):
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise BagError(f"output {self.path} already exists; choose another --out or pass --force")
        self.store = make_typestore(distro)
        self._tmp = self.path.with_name(f".{self.path.name}.partial")
        self._writer: Writer | None = None
        self._connections: dict[str, object] = {}
        self.messages = 0

    def __enter__(self) -> "EpisodeBagWriter":
        shutil.rmtree(self._tmp, ignore_errors=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = Writer(self._tmp, version=8, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._writer.close()
        if exc_type is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            return
        # The storage file is named after the temporary folder: give it the name `ros2 bag record` writes
        # (NAME_0.mcap) and point the metadata at it, then move the finished bag into place.
        written, final = self._tmp / f"{self._tmp.name}.mcap", f"{self.path.name}_0.mcap"
        written.rename(self._tmp / final)
        metadata = self._tmp / "metadata.yaml"
        metadata.write_text(metadata.read_text().replace(written.name, final))
        shutil.rmtree(self.path, ignore_errors=True)
        self._tmp.rename(self.path)

    def write(self, topic: str, msg, stamp_ns: int) -> None:
        """Serialize one message (a typestore instance) onto `topic` at bag time `stamp_ns`."""
        self.write_serialized(topic, msg.__msgtype__, self.store.serialize_cdr(msg, msg.__msgtype__), stamp_ns)

    def write_serialized(self, topic: str, msgtype: str, data: bytes | memoryview, stamp_ns: int) -> None:
        """Write an already CDR-serialized message (e.g. from a `raw=True` subscription) of type `msgtype`
        (e.g. "conrft_interfaces/msg/Transition") onto `topic` at bag time `stamp_ns`, unchanged. The type's
        definition and RIHS01 hash in the bag come from this writer's typestore."""
        if self._writer is None:
            raise BagError("the bag writer is not open; use it as a context manager (with EpisodeBagWriter(...))")
        conn = self._connections.get(topic)
        if conn is None:
            if msgtype not in self.store.types:
                raise BagError(f"message type '{msgtype}' is unknown to the bag typestore; known conrft types: "
                               f"{', '.join(f'conrft_interfaces/msg/{n}' for n in INTERFACE_MESSAGES)}")
            conn = self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.store)
        elif conn.msgtype != msgtype:
            raise BagError(f"topic {topic} already holds {conn.msgtype} messages in this bag, not {msgtype}")
        self._writer.write(conn, stamp_ns, data)
        self.messages += 1

    def write_episode(self, ep: Episode, frame_id: str = "base") -> None:
        """Write one Transition per step; the last carries the final observation."""
        T = self.store.types
        stamps = ep.stamps if ep.stamps is not None else np.arange(ep.length) * 0.1
        cams = sorted(ep.images)
        policy_actions = ep.policy_actions if ep.policy_actions is not None else np.zeros_like(ep.actions)
        versions = ep.policy_versions if ep.policy_versions is not None else np.zeros(ep.length, np.uint64)
        held = ep.held if ep.held is not None else np.zeros(ep.length, bool)
        for t in range(ep.length):
            last = t == ep.length - 1
            header = self._header(stamps[t], frame_id)
            msg = T[TRANSITION_TYPE](
                header=header,
                robot=ep.robot,
                episode_id=ep.episode_id,
                step=t,
                camera_names=cams,
                images=[self._image(ep.images[c][t], header, c) for c in cams],
                proprio=ep.proprio[t].astype(np.float32),
                instruction=ep.instruction,
                action=ep.actions[t].astype(np.float32),
                policy_action=policy_actions[t].astype(np.float32),
                reward=float(ep.rewards[t]),
                terminated=bool(last and ep.terminated),
                success=bool(last and ep.success),
                truncated=bool(last and ep.truncated),
                intervened=bool(ep.intervened[t]),
                held=bool(held[t]),
                policy_version=int(versions[t]),
                final_images=[self._image(ep.images[c][t + 1], header, c) for c in cams] if last else [],
                final_proprio=ep.proprio[t + 1].astype(np.float32) if last else np.zeros(0, np.float32),
            )
            self.write(TRANSITIONS_TOPIC, msg, int(stamps[t] * 1e9))

    def _header(self, stamp: float, frame_id: str):
        sec = int(stamp)
        time = self.store.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=int(round((stamp - sec) * 1e9)))
        return self.store.types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    def _image(self, frame: np.ndarray, header, camera: str):
        h, w, _ = frame.shape
        cam_header = self.store.types["std_msgs/msg/Header"](stamp=header.stamp, frame_id=f"{camera}_camera")
        return self.store.types["sensor_msgs/msg/Image"](
            header=cam_header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
            data=np.ascontiguousarray(frame).reshape(-1),
        )


def read_episodes(path: str | Path, topic: str = TRANSITIONS_TOPIC,
                  dims: tuple[int, int] | None = None) -> list[Episode]:
    """Load every complete episode from a bag (recorded live or by `conrft sim-demos`).

    Episodes whose last step (terminated or truncated) is missing, e.g. because recording stopped
    mid-episode, are skipped. `dims` = (action size, proprio size) checks every step against a robot's sizes.
    Raises BagError when nothing usable is found.
    """
    path = Path(path)
    if not (path / "metadata.yaml").is_file():
        raise BagError(f"{path} is not a rosbag2 bag (no metadata.yaml); pass the bag folder")
    steps: dict[int, list] = defaultdict(list)
    try:
        with AnyReader([path], default_typestore=make_typestore()) as reader:
            conns = [c for c in reader.connections if c.topic == topic]
            if not conns:
                have = ", ".join(sorted({c.topic for c in reader.connections})) or "none"
                raise BagError(
                    f"bag {path} has no topic {topic} (topics: {have}); record demonstrations with "
                    f"`conrft sim-demos` or `ros2 bag record {topic}`"
                )
            if conns[0].msgtype != TRANSITION_TYPE:
                raise BagError(f"topic {topic} in {path} has type {conns[0].msgtype}, expected {TRANSITION_TYPE}")
            for conn, _, raw in reader.messages(connections=conns):
                msg = reader.deserialize(raw, conn.msgtype)
                steps[transition_key(msg)].append(msg)  # a fleet's recording: robots number alike
    except BagError:
        raise
    except Exception as exc:  # rosbags raises several types for unreadable storage
        raise BagError(f"cannot read bag {path}: {exc}") from None
    try:
        assembled = [episode_from_transitions(msgs, f"bag {path}", dims) for _, msgs in sorted(steps.items())]
    except TransitionError as exc:
        raise BagError(str(exc)) from None
    episodes = [ep for ep in assembled if ep is not None]
    if not episodes:
        raise BagError(f"bag {path} holds no complete episode on {topic}")
    return episodes


def read_success_presses(path: str | Path, topic: str = INTERVENTION_TOPIC) -> np.ndarray:
    """Times (s, header stamps) at which the operator pressed the success key, from the `Intervention` messages
    a bag holds on `topic` (`ros2 bag record /conrft/transitions /conrft/intervention`); empty when it has none.

    The teleop node repeats a keyed outcome in every message for `outcome_hold`, so a press is the first message
    of each run of outcome 1: one labelled moment, not a stretch of them."""
    path = Path(path)
    try:
        with AnyReader([path], default_typestore=make_typestore()) as reader:
            conns = [c for c in reader.connections if c.topic == topic and c.msgtype == INTERVENTION_TYPE]
            presses, before = [], 0
            for conn, _, raw in reader.messages(connections=conns) if conns else ():  # [] would mean every topic
                msg = reader.deserialize(raw, conn.msgtype)
                if msg.outcome > 0 and before <= 0:
                    presses.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
                before = msg.outcome
    except Exception as exc:  # rosbags raises several types for unreadable storage
        raise BagError(f"cannot read bag {path}: {exc}") from None
    return np.asarray(presses, np.float64)
