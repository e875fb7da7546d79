"""The policy node's outbox (acknowledged episodes deleted, the rest resent, restart, size limit) and the learner's
intake of what it resends (each step journaled once, each episode handed out once, acknowledgements)."""
from types import SimpleNamespace

import pytest

from conrft_core.data.intake import Intake, RobotRegistry
from conrft_core.data.journal import RECORD_HEADER, RobotJournals, TransitionJournal
from conrft_core.data.outbox import Outbox
from conrft_core.data.transitions import EpisodeAssembler


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def publish(box, eid, steps, size=10, last=True):
    """`steps` records of `size` bytes for episode `eid` (the last one ends it if `last`); returns them."""
    recs = [bytes([eid % 256, i]) * (size // 2) for i in range(steps)]
    dropped = []
    for i, r in enumerate(recs):
        dropped += box.append(eid, r, last and i == steps - 1)
    return recs, dropped


def test_acknowledged_episodes_are_deleted_and_only_whole_ones(tmp_path):
    box = Outbox(tmp_path, 10**6, resend_after=5.0)
    publish(box, 1, 3)
    publish(box, 2, 2, last=False)  # still running
    assert not box.ack(1, 2)  # not what is held: kept
    assert not box.ack(2, 2)  # not complete
    assert box.ack(1, 3)
    assert not box.ack(1, 3)  # again (a resend's acknowledgement): nothing to do
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episode_00000002.bin"]


def test_unacknowledged_episodes_are_resent_when_a_learner_appears_or_missed_them_oldest_first(tmp_path):
    clock = Clock()
    box = Outbox(tmp_path, 10**6, resend_after=5.0, clock=clock)
    recs1, _ = publish(box, 1, 3)
    clock.t = 2.0
    recs2 = [b"a", b"b"]
    box.append(2, recs2[0], last=False)
    clock.t = 2.5
    box.append(2, recs2[1], last=True)
    publish(box, 3, 2, last=False)  # incomplete: never due
    assert box.due() == []
    assert box.due(sent_before=3.0) == [1, 2]  # a learner appeared at 3.0
    assert box.due(sent_before=2.2) == [1, 2]  # 2 had begun then: its first step may be lost
    assert box.due(sent_before=1.0) == [1]
    clock.t = 6.0
    assert box.due() == []  # no acknowledgement since: the learner is silent (the link is down)
    publish(box, 4, 1)
    box.ack(4, 1)  # it listens again, yet 1 and 2 were not acknowledged
    assert box.due() == [1]  # 2 was sent less than resend_after ago
    assert box.resend(1) == recs1  # every transition, in order
    assert box.due() == []
    clock.t = 7.5
    assert box.due() == [2]
    assert box.resend(2) == recs2 and box.resent == 2
    assert box.due(sent_before=9.0, budget_bytes=1) == [1]  # at least one episode per call


def test_a_restarted_node_resends_what_its_predecessor_left(tmp_path):
    box = Outbox(tmp_path, 10**6, resend_after=5.0)
    recs1, _ = publish(box, 1, 3)
    publish(box, 2, 2)
    box.ack(2, 2)
    publish(box, 3, 2, last=False)  # killed mid-episode
    box.store.close()
    again = Outbox(tmp_path, 10**6, resend_after=5.0, clock=Clock())
    assert again.incomplete == [3]  # can never complete: dropped, named
    assert again.due(sent_before=0.0) == [1]  # to the first learner that appears
    assert again.resend(1) == recs1
    assert again.ack(1, 3)
    assert list(tmp_path.iterdir()) == []


def test_the_size_limit_drops_the_oldest_whole_episodes_never_the_one_being_written(tmp_path):
    per_episode = 4 * (RECORD_HEADER + 10)
    box = Outbox(tmp_path, 2 * per_episode, resend_after=5.0)
    publish(box, 1, 4)
    publish(box, 2, 4)
    _, dropped = publish(box, 3, 4)
    assert dropped == [(1, 4)] and box.dropped == 1
    assert sorted(box.steps) == [2, 3] and box.bytes == 2 * per_episode
    _, dropped = publish(box, 4, 12, last=False)  # one long episode: everything older goes, not it
    assert dropped == [(2, 4), (3, 4)] and box.dropped == 3
    assert list(box.steps) == [4] and box.bytes == 3 * per_episode
    assert Outbox(tmp_path / "x", 1, 1.0).bytes == 0
    with pytest.raises(ValueError, match="max_bytes"):
        Outbox(tmp_path / "y", 0, 1.0)


def transition(eid, step, steps, robot=""):
    """The fields the intake and the assembler's bookkeeping read."""
    return SimpleNamespace(robot=robot, episode_id=eid, step=step, terminated=False, truncated=step == steps - 1,
                           action=[0.0], images=[], camera_names=[])


def test_intake_journals_each_step_once_and_acknowledges_every_complete_arrival(tmp_path):
    journals = RobotJournals(tmp_path)
    intake = Intake(journals, EpisodeAssembler(), done=[("", 7)])
    offer = lambda eid, step, steps=3: intake.offer(transition(eid, step, steps), bytes([eid, step]))  # noqa: E731
    assert offer(1, 0) == (None, None)
    assert offer(1, 1) == (None, None)  # then the link went down: step 2 lost
    assert offer(1, 0) == (None, None)  # the resend: steps held already are dropped
    assert offer(1, 1) == (None, None)
    msgs, ack = offer(1, 2)
    assert [m.step for m in msgs] == [0, 1, 2] and ack == (("", 1), 3)
    journal = TransitionJournal(tmp_path)  # a single robot's journal: the layout before fleets
    assert journal.records(1) == [bytes([1, 0]), bytes([1, 1]), bytes([1, 2])]  # no step twice
    for step in range(3):  # resent again (its acknowledgement was lost): acknowledged again, not handed out
        assert offer(1, step) == (None, (("", 1), 3) if step == 2 else None)
    assert offer(7, 4, steps=5) == (None, (("", 7), 5))  # learned from before a restart
    assert 7 not in journal.episodes()
    assert (intake.journaled, intake.duplicates) == (3, 6)
    assert intake.offer(transition(2, 0, 1), None)[1] == (("", 2), 1)  # replayed from the journal: not journaled
    assert 2 not in journal.episodes()


def test_intake_keeps_the_episodes_of_robots_with_the_same_ids_apart(tmp_path):
    intake = Intake(RobotJournals(tmp_path), EpisodeAssembler())
    offer = lambda robot, step: intake.offer(transition(5, step, 2, robot), robot.encode() + bytes([step]))  # noqa: E731
    assert offer("robot_1", 0) == (None, None)
    assert offer("robot_2", 0) == (None, None)  # the same episode id from another robot: not a duplicate
    msgs, ack = offer("robot_2", 1)
    assert [m.robot for m in msgs] == ["robot_2"] * 2 and ack == (("robot_2", 5), 2)
    assert offer("robot_1", 1)[1] == (("robot_1", 5), 2)
    assert intake.duplicates == 0
    restarted = RobotJournals(tmp_path)  # each robot's journal in a folder of its own, found again on a restart
    assert restarted.episodes() == [("robot_1", 5), ("robot_2", 5)]
    assert restarted.records(("robot_2", 5)) == [b"robot_2\x00", b"robot_2\x01"]
    with pytest.raises(ValueError, match="robot name '../x'"):
        restarted.journal("../x")


def test_registry_refuses_unknown_robots_and_a_second_live_sender_under_one_name():
    reg = RobotRegistry(["robot_1", "robot_2"])
    alive = {"/robot_1/policy", "/robot_2/policy"}
    admit = lambda robot, sender: reg.admit(robot, sender, alive.__contains__)  # noqa: E731
    assert "robot robot_9 is not one of this learner's robots (robot_1, robot_2)" in admit("robot_9", "/x/policy")
    assert "robot (unnamed)" in admit("", "/x/policy")  # a policy node left without robot_name
    assert admit("robot_1", "/robot_1/policy") is None
    assert admit("robot_1", "/robot_1/policy") is None  # its resend writer, or the node restarted: one sender
    assert "two senders publish as robot robot_1: /robot_1/policy and /robot_2/policy" in \
        admit("robot_1", "/robot_2/policy")
    alive.discard("/robot_1/policy")  # the first one stopped: the other takes the name over
    assert admit("robot_1", "/robot_2/policy") is None
    assert RobotRegistry().admit("anything", "/a/policy", alive.__contains__) is None  # no list: any robot
