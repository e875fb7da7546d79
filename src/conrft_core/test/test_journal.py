"""The learner's transition journal: per-episode round trip, torn records after a kill, discard, restart."""
import struct

from conrft_core.data.journal import TransitionJournal


def records_of(n, eid):
    """Distinct records of varying length (including an empty one)."""
    return [bytes([eid % 256, i]) * i for i in range(n)]


def test_records_round_trip_per_episode(tmp_path):
    j = TransitionJournal(tmp_path / "journal")
    a, b = records_of(5, 1), records_of(3, 2)
    for i in range(5):  # interleaved appends of two episodes
        j.append(1, a[i])
        if i < 3:
            j.append(2, b[i])
    assert j.episodes() == [1, 2]
    # Readable while the files are still open for appending (flushed record by record).
    assert j.records(1) == a
    assert j.records(2) == b
    j.close()
    assert j.records(1) == a and j.records(2) == b


def test_binary_records_keep_their_bytes(tmp_path):
    j = TransitionJournal(tmp_path)
    rec = bytes(range(256)) + struct.pack("<I", 10**6)  # looks like a length header inside
    j.append(7, rec)
    j.append(7, b"\x00\x00\x00\x00")
    assert j.records(7) == [rec, b"\x00\x00\x00\x00"]


def test_a_record_cut_short_is_dropped_and_earlier_ones_survive(tmp_path):
    j = TransitionJournal(tmp_path)
    recs = [b"first record", b"second", b"third, cut by the kill"]
    for r in recs:
        j.append(3, r)
    j.close()
    path = next(tmp_path.glob("episode_*.bin"))
    data = path.read_bytes()
    for cut in (1, 5, len(recs[-1]) + 2):  # inside the payload, and inside the length header
        path.write_bytes(data[:-cut])
        assert TransitionJournal(tmp_path).records(3) == recs[:2], cut


def test_appending_after_a_torn_record_keeps_the_new_records(tmp_path):
    """Killed mid-write, restarted, the same episode goes on: the new records must not be lost."""
    j = TransitionJournal(tmp_path)
    for r in (b"aaaa", b"bbbbbbbb"):
        j.append(1, r)
    j.close()
    path = next(tmp_path.glob("episode_*.bin"))
    path.write_bytes(path.read_bytes()[:-3])
    restarted = TransitionJournal(tmp_path)
    assert restarted.records(1) == [b"aaaa"]
    restarted.append(1, b"cccc")
    restarted.append(1, b"dddd")
    restarted.close()
    assert TransitionJournal(tmp_path).records(1) == [b"aaaa", b"cccc", b"dddd"]


def test_discard_removes_the_files(tmp_path):
    j = TransitionJournal(tmp_path)
    for eid in (1, 2, 3):
        j.append(eid, b"x%d" % eid)
    j.discard([1, 3, 99])  # an id without a file is fine
    assert j.episodes() == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episode_00000002.bin"]
    assert j.records(2) == [b"x2"]
    j.append(1, b"again")  # a discarded episode's file is started afresh
    assert j.records(1) == [b"again"]


def test_a_new_journal_on_the_same_folder_sees_the_episodes(tmp_path):
    folder = tmp_path / "run" / "journal"
    j = TransitionJournal(folder)
    j.append(12, b"a")
    j.append(4, b"b")
    j.append(12, b"c")
    j.close()
    restarted = TransitionJournal(folder)
    assert restarted.episodes() == [4, 12]
    assert restarted.records(12) == [b"a", b"c"] and restarted.records(4) == [b"b"]
    restarted.append(12, b"d")  # appends continue the episode's file
    assert restarted.records(12) == [b"a", b"c", b"d"]
