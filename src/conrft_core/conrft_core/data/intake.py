"""The learner's intake when senders resend (the policy node's outbox, conrft_core.data.outbox): each step is
journaled once, each episode handed to learning once, and each complete episode acknowledged, again whenever it
comes again (the first acknowledgement may have been lost with the link).

A resent episode that was partly received fills the gaps: steps already held are dropped, so the journal never
holds a step twice. An episode is acknowledged only once every step is in the journal and synced to disk, and
only a complete episode is ever handed out: a half-received one waits (EpisodeAssembler). Episodes are keyed by
(robot, episode id): several robots may feed one learner, each numbering its own episodes.
"""
from __future__ import annotations

from collections.abc import Iterable

from conrft_core.data.episode import EpisodeKey
from conrft_core.data.journal import RobotJournals
from conrft_core.data.transitions import EpisodeAssembler, transition_key


class Intake:
    def __init__(self, journal: RobotJournals, assembler: EpisodeAssembler, done: Iterable[EpisodeKey] = ()):
        self.journal, self.assembler = journal, assembler
        self.done: set[EpisodeKey] = set(done)  # episodes complete here: learned from, or assembled and waiting
        self.journaled = self.duplicates = 0

    def offer(self, msg, raw: bytes | None) -> tuple[list | None, tuple[EpisodeKey, int] | None]:
        """One transition; `raw` its bytes for the journal (None: replayed from the journal). Returns (every
        transition of the episode it completes, or None; ((robot, episode), steps) to acknowledge, or None).
        Raises TransitionError on bad data (journaled all the same: the journal holds what was received)."""
        key, step = transition_key(msg), int(msg.step)
        if key in self.done or self.assembler.holds(key, step):
            self.duplicates += raw is not None
            last = key in self.done and (msg.terminated or msg.truncated)
            return None, (key, step + 1) if last else None
        if raw is not None:
            self.journal.append(key, raw)
            self.journaled += 1
        msgs = self.assembler.collect(msg)
        if msgs is None:
            return None, None
        self.done.add(key)
        self.journal.sync(key)
        return msgs, (key, len(msgs))


class RobotRegistry:
    """Which robots may feed a learner, and which sender (a policy node) speaks for each: transitions of a robot
    not in `allowed` (empty: any), or of a second live sender under a robot name already taken (two robots
    configured with one name, whose episode ids would mix), are refused: neither journaled nor acknowledged, so
    they stay in that robot's outbox. A sender that replaces one no longer alive takes the name over; a restarted
    policy node is the same sender (same node name) and simply goes on."""

    def __init__(self, allowed: Iterable[str] = ()):
        self.allowed = set(allowed)
        self.senders: dict[str, object] = {}  # robot -> the sender it was last taken from
        self.refused: dict[str, str] = {}  # robot -> why, once per robot and reason (for the log)

    def admit(self, robot: str, sender, alive) -> str | None:
        """None when a transition of `robot` from `sender` may be taken in; else why not (`alive(s)`: sender s
        still runs). A sender of None (unknown) is never taken for a second one."""
        if self.allowed and robot not in self.allowed:
            return (f"robot {robot or '(unnamed)'} is not one of this learner's robots "
                    f"({', '.join(sorted(self.allowed))}); add it to the learner's `robots` parameter or set the "
                    f"policy node's `robot_name`")
        bound = self.senders.get(robot)
        if None not in (bound, sender) and bound != sender and alive(bound):
            return (f"two senders publish as robot {robot or '(unnamed)'}: {bound} and {sender}; give every policy "
                    f"node its own `robot_name`; {sender}'s transitions are refused")
        if sender is not None:
            self.senders[robot] = sender
        return None
