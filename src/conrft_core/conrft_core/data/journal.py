"""The learner's transition journal: every received transition is on disk before it counts as received.

One append-only file per episode under `folder`: records of (4-byte little-endian length, bytes), written and
flushed one by one, so a learner killed at any moment loses nothing it had received (a record cut by the kill
is dropped on replay, it was never complete). After a checkpoint that holds an episode, its file is
discarded. The records are opaque bytes (the learner node stores serialized ROS messages, CDR).

A learner fed by several robots keeps one journal per robot (`RobotJournals`): a robot's episode ids are its own.
"""
from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

from conrft_core.data.episode import EpisodeKey, check_robot_name

_LEN = struct.Struct("<I")
RECORD_HEADER = _LEN.size  # bytes a record takes on disk beyond its own


class TransitionJournal:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._files: dict[int, object] = {}
        self._lock = threading.Lock()  # the learner appends from its executor and discards from its trainer

    def _path(self, episode_id: int) -> Path:
        return self.folder / f"episode_{episode_id:08d}.bin"

    def append(self, episode_id: int, record: bytes) -> None:
        with self._lock:
            f = self._files.get(episode_id)
            if f is None:
                path = self._path(episode_id)
                if path.exists():  # after a restart: cut a record torn by the kill, or new ones would be lost
                    os.truncate(path, self._parse(path.read_bytes())[1])
                f = self._files[episode_id] = open(path, "ab")
            f.write(_LEN.pack(len(record)) + record)
            f.flush()

    def sync(self, episode_id: int) -> None:
        """Make the episode's records survive a power loss too (fsync), e.g. before promising them to a sender."""
        with self._lock:
            f = self._files.get(episode_id)
            if f is not None:
                os.fsync(f.fileno())

    def episodes(self) -> list[int]:
        return sorted(int(p.stem.split("_")[1]) for p in self.folder.glob("episode_*.bin"))

    def records(self, episode_id: int) -> list[bytes]:
        return self._parse(self._path(episode_id).read_bytes())[0]

    @staticmethod
    def _parse(data: bytes) -> tuple[list[bytes], int]:
        """(complete records, byte length they span)."""
        out, pos = [], 0
        while pos + _LEN.size <= len(data):
            (n,) = _LEN.unpack_from(data, pos)
            if pos + _LEN.size + n > len(data):
                break  # cut short by a kill mid-write
            out.append(data[pos + _LEN.size:pos + _LEN.size + n])
            pos += _LEN.size + n
        return out, pos

    def discard(self, episode_ids) -> None:
        with self._lock:
            for eid in episode_ids:
                f = self._files.pop(eid, None)
                if f is not None:
                    f.close()
                self._path(eid).unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            for f in self._files.values():
                f.close()
            self._files.clear()


class RobotJournals:
    """The journals of the robots feeding one learner: robot ""'s (a single robot) in `folder` itself, the
    layout of a single-robot session, robot R's in `folder/R`. Keys are (robot, episode id)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._journals: dict[str, TransitionJournal] = {"": TransitionJournal(self.folder)}
        for sub in sorted(p for p in self.folder.iterdir() if p.is_dir()):
            self.journal(sub.name)

    def journal(self, robot: str) -> TransitionJournal:
        if robot not in self._journals:
            self._journals[robot] = TransitionJournal(self.folder / check_robot_name(robot, "journal"))
        return self._journals[robot]

    def append(self, key: EpisodeKey, record: bytes) -> None:
        self.journal(key[0]).append(key[1], record)

    def sync(self, key: EpisodeKey) -> None:
        self.journal(key[0]).sync(key[1])

    def episodes(self) -> list[EpisodeKey]:
        return [(robot, eid) for robot, j in sorted(self._journals.items()) for eid in j.episodes()]

    def records(self, key: EpisodeKey) -> list[bytes]:
        return self.journal(key[0]).records(key[1])

    def discard(self, keys) -> None:
        for robot, eid in keys:
            self.journal(robot).discard([eid])

    def close(self) -> None:
        for j in self._journals.values():
            j.close()
