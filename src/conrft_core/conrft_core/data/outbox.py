"""The policy node's outbox: every published transition stays on disk until the learner acknowledges its episode.

DDS alone loses data across a long partition: a reliable writer drops a reader whose participant lease expired
(Fast DDS: 20 s) together with its unacknowledged samples, and a writer's history dies with its process. Fast
DDS's PERSISTENT durability (SQLite) survives both but keeps every sample ever written and replays all of them
to every reader that matches again, acknowledged or not: unbounded, and no way to say "this episode is safe".

One file per episode under `folder` (the learner's journal format, conrft_core.data.journal) and an empty
`episode_<id>.complete` marker once its last transition is in. The learner acknowledges each complete episode
it holds (`ack`, with its step count); that episode is deleted. Complete episodes not acknowledged are due for a
resend (`due`) all at once when a learner (re)appears (every one with a step sent before: that step may be
lost), and each `resend_after` s after it was last sent if the
learner acknowledged anything since (it is listening, yet missed this one; while it is silent, e.g. the link is
down, a resend would only pile up in the DDS writer); a policy node restarted on the folder resends what its
predecessor left. An episode left incomplete by a process killed mid-episode can never be completed (the next
one has a new id): it is dropped when the folder is opened.

Bounded: past `max_bytes` on disk the oldest whole episodes are dropped (and counted); the episode being written
is never dropped, so the folder can exceed the limit by at most that one episode.
"""
from __future__ import annotations

import time
from pathlib import Path

from conrft_core.data.journal import RECORD_HEADER, TransitionJournal


class Outbox:
    def __init__(self, folder: str | Path, max_bytes: int, resend_after: float, clock=time.monotonic):
        if max_bytes <= 0 or resend_after <= 0:
            raise ValueError(f"outbox max_bytes and resend_after must be > 0, got {max_bytes}, {resend_after}")
        self.store = TransitionJournal(folder)
        self.max_bytes, self.resend_after, self.clock = max_bytes, resend_after, clock
        self.sizes: dict[int, int] = {}  # episode -> bytes on disk, oldest first
        self.steps: dict[int, int] = {}  # episode -> transitions held
        self.sent: dict[int, float] = {}  # complete episode -> clock of its last (re)send
        self.begun: dict[int, float] = {}  # episode -> clock its last (re)send began (its first step, or the resend)
        self.acked_at = float("-inf")  # clock of the learner's last acknowledgement
        self.dropped = 0  # whole episodes dropped at the size limit
        self.resent = 0  # episodes resent
        self.incomplete: list[int] = []  # episodes a previous process left unfinished, dropped at opening
        for eid in self.store.episodes():
            if not self._marker(eid).exists():
                self.incomplete.append(eid)
                self.store.discard([eid])
                continue
            records = self.store.records(eid)
            self.sizes[eid] = sum(RECORD_HEADER + len(r) for r in records)
            self.steps[eid] = len(records)
            self.sent[eid] = self.begun[eid] = float("-inf")  # a predecessor's: due as soon as a learner listens

    def _marker(self, episode_id: int) -> Path:
        return self.store.folder / f"episode_{episode_id:08d}.complete"

    @property
    def bytes(self) -> int:
        return sum(self.sizes.values())

    def append(self, episode_id: int, record: bytes, last: bool) -> list[tuple[int, int]]:
        """Store one published transition (`last`: it ends its episode); returns the (episode, steps) dropped to
        stay within the limit, oldest first."""
        self.store.append(episode_id, record)
        self.sizes[episode_id] = self.sizes.get(episode_id, 0) + RECORD_HEADER + len(record)
        self.begun.setdefault(episode_id, self.clock())
        self.steps[episode_id] = self.steps.get(episode_id, 0) + 1
        if last:
            self._marker(episode_id).touch()
            self.sent[episode_id] = self.clock()
        dropped = []
        while self.bytes > self.max_bytes and next(iter(self.sizes)) != episode_id:
            eid = next(iter(self.sizes))
            dropped.append((eid, self.steps[eid]))
            self._delete(eid)
        self.dropped += len(dropped)
        return dropped

    def ack(self, episode_id: int, steps: int) -> bool:
        """The learner holds `steps` transitions of the episode: delete it if that is all of a complete one.
        False when it is unknown here (already deleted) or the counts differ (kept, resent later)."""
        self.acked_at = self.clock()
        if episode_id not in self.sent or self.steps[episode_id] != steps:
            return False
        self._delete(episode_id)
        return True

    def due(self, sent_before: float = float("-inf"), budget_bytes: int | None = None) -> list[int]:
        """Complete episodes to resend now, oldest first: those whose last (re)send began before `sent_before` (on
        the clock: e.g. when a learner appeared), or ended `resend_after` s ago or more with an acknowledgement
        since; up to `budget_bytes` (at least one)."""
        now, out, total = self.clock(), [], 0
        for eid, sent in self.sent.items():
            if self.begun[eid] < sent_before or (now - sent >= self.resend_after and self.acked_at > sent):
                if out and budget_bytes is not None and total + self.sizes[eid] > budget_bytes:
                    break
                out.append(eid)
                total += self.sizes[eid]
        return out

    def resend(self, episode_id: int) -> list[bytes]:
        """Every transition of a complete episode, in order; it counts as sent now."""
        self.sent[episode_id] = self.begun[episode_id] = self.clock()
        self.resent += 1
        return self.store.records(episode_id)

    def _delete(self, episode_id: int) -> None:
        self.store.discard([episode_id])
        self._marker(episode_id).unlink(missing_ok=True)
        del self.sizes[episode_id], self.steps[episode_id], self.begun[episode_id]
        self.sent.pop(episode_id, None)

    def close(self) -> None:
        self.store.close()
