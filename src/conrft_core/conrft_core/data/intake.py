"""The learner's intake when senders resend (the policy node's outbox, conrft_core.data.outbox): each step is
journaled once, each episode handed to learning once, and each complete episode acknowledged, again whenever it
comes again (the first acknowledgement may have been lost with the link).

A resent episode that was partly received fills the gaps: steps already held are dropped, so the journal never
holds a step twice. An episode is acknowledged only once every step is in the journal and synced to disk, and
only a complete episode is ever handed out: a half-received one waits (EpisodeAssembler).
"""
from __future__ import annotations

from collections.abc import Iterable

from conrft_core.data.journal import TransitionJournal
from conrft_core.data.transitions import EpisodeAssembler


class Intake:
    def __init__(self, journal: TransitionJournal, assembler: EpisodeAssembler, done: Iterable[int] = ()):
        self.journal, self.assembler = journal, assembler
        self.done: set[int] = set(done)  # episodes complete here: learned from, or assembled and waiting
        self.journaled = self.duplicates = 0

    def offer(self, msg, raw: bytes | None) -> tuple[list | None, tuple[int, int] | None]:
        """One transition; `raw` its bytes for the journal (None: replayed from the journal). Returns (every
        transition of the episode it completes, or None; (episode, steps) to acknowledge, or None). Raises
        TransitionError on bad data (journaled all the same: the journal holds what was received)."""
        eid, step = int(msg.episode_id), int(msg.step)
        if eid in self.done or self.assembler.holds(eid, step):
            self.duplicates += raw is not None
            last = eid in self.done and (msg.terminated or msg.truncated)
            return None, (eid, step + 1) if last else None
        if raw is not None:
            self.journal.append(eid, raw)
            self.journaled += 1
        msgs = self.assembler.collect(msg)
        if msgs is None:
            return None, None
        self.done.add(eid)
        self.journal.sync(eid)
        return msgs, (eid, len(msgs))
