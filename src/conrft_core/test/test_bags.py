"""Demonstration bags: write -> read round trip, independent MCAP decoding, and bad-input errors."""
import glob
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from conrft_core.data.bags import (
    TRANSITIONS_TOPIC,
    BagError,
    EpisodeBagWriter,
    interface_msg_dir,
    make_typestore,
    read_episodes,
)
from conrft_core.data.episode import Episode
from conrft_core.robot.spaces import PROPRIO_DIM, TRANSITION_DIMS


def make_episode(eid, length, rng, success=True):
    return Episode(
        episode_id=eid,
        instruction="pick up the cube",
        images={c: rng.integers(0, 255, (length + 1, 16, 12, 3), dtype=np.uint8) for c in ("front", "wrist")},
        proprio=rng.normal(size=(length + 1, PROPRIO_DIM)).astype(np.float32),
        actions=rng.uniform(-1, 1, (length, 7)).astype(np.float32),
        rewards=np.full(length, -0.05, np.float32),
        intervened=rng.random(length) < 0.5,
        terminated=success,
        truncated=not success,
        stamps=np.arange(length) * 0.1 + 100.0,
        success=success,
    )


def write_bag(path, episodes):
    with EpisodeBagWriter(path) as w:
        for ep in episodes:
            w.write_episode(ep)


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    eps = [make_episode(0, 5, rng), make_episode(1, 3, rng, success=False)]
    eps[0].held = np.array([0, 0, 1, 1, 0], bool)  # steps the node held for safety
    write_bag(tmp_path / "bag", eps)
    meta = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8 and meta["storage_identifier"] == "mcap"
    # Named as `ros2 bag record` names it, visible to a shell glob (which skips dot files).
    assert sorted(p.name for p in (tmp_path / "bag").iterdir()) == ["bag_0.mcap", "metadata.yaml"]
    assert meta["relative_file_paths"] == ["bag_0.mcap"] and [f["path"] for f in meta["files"]] == ["bag_0.mcap"]
    back = read_episodes(tmp_path / "bag")
    assert [e.episode_id for e in back] == [0, 1]
    for a, b in zip(eps, back):
        assert b.length == a.length and b.success == a.success and b.terminated == a.terminated
        for cam in a.images:
            np.testing.assert_array_equal(b.images[cam], a.images[cam])
        np.testing.assert_array_equal(b.proprio, a.proprio)
        np.testing.assert_array_equal(b.actions, a.actions)
        np.testing.assert_array_equal(b.intervened, a.intervened)
        np.testing.assert_array_equal(b.demonstrated, a.demonstrated)
        assert (b.held is None) == (a.held is None)  # no held step: nothing stored
        np.testing.assert_allclose(b.stamps, a.stamps)
        assert b.instruction == a.instruction


def test_independent_mcap_decoder_and_type_hash(tmp_path):
    rng = np.random.default_rng(1)
    ep = make_episode(7, 4, rng)
    write_bag(tmp_path / "bag", [ep])
    (mcap,) = map(Path, glob.glob(str(tmp_path / "bag" / "*.mcap")))  # as a tool globbing the folder finds it
    with open(mcap, "rb") as f:  # decoded by mcap-ros2-support from the schemas in the file, not by rosbags
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        msgs = [m for _, _, _, m in reader.iter_decoded_messages(topics=[TRANSITIONS_TOPIC])]
    assert [m.step for m in msgs] == [0, 1, 2, 3]
    assert msgs[-1].terminated and msgs[-1].success and not msgs[0].terminated
    assert len(msgs[-1].final_images) == 2 and len(msgs[0].final_images) == 0
    img = msgs[2].images[0]
    assert (img.height, img.width, img.encoding) == (16, 12, "rgb8")
    np.testing.assert_array_equal(np.frombuffer(bytes(img.data), np.uint8).reshape(16, 12, 3), ep.images["front"][2])
    # The bag's type hash equals the one rosidl generated for the live graph.
    built = json.loads((interface_msg_dir() / "Transition.json").read_text())["type_hashes"][0]["hash_string"]
    assert make_typestore().hash_rihs01("conrft_interfaces/msg/Transition") == built


def test_failed_write_leaves_nothing(tmp_path):
    rng = np.random.default_rng(2)
    with pytest.raises(RuntimeError):
        with EpisodeBagWriter(tmp_path / "bag") as w:
            w.write_episode(make_episode(0, 3, rng))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_refused(tmp_path):
    (tmp_path / "bag").mkdir()
    with pytest.raises(BagError, match="already exists"):
        EpisodeBagWriter(tmp_path / "bag")


def test_bad_bags(tmp_path):
    with pytest.raises(BagError, match="not a rosbag2 bag"):
        read_episodes(tmp_path)
    store = make_typestore()
    with EpisodeBagWriter(tmp_path / "other", overwrite=True) as w:
        w.write("/chatter", store.types["std_msgs/msg/String"](data="hi"), 1)
    with pytest.raises(BagError, match=r"no topic /conrft/transitions \(topics: /chatter\)"):
        read_episodes(tmp_path / "other")


def test_incomplete_episode_skipped_and_wrong_action_dim(tmp_path):
    rng = np.random.default_rng(3)
    cut = make_episode(1, 4, rng, success=False)
    cut.truncated = False  # recording stopped mid-episode: no end marker
    write_bag(tmp_path / "cut", [make_episode(0, 3, rng), cut])
    assert [e.episode_id for e in read_episodes(tmp_path / "cut")] == [0]
    write_bag(tmp_path / "none", [cut])
    with pytest.raises(BagError, match="no complete episode"):
        read_episodes(tmp_path / "none")
    store = make_typestore()
    bad = make_episode(0, 2, rng)
    with EpisodeBagWriter(tmp_path / "dims") as w:
        T = store.types
        for t in range(2):
            hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=t, nanosec=0), frame_id="base")
            w.write(TRANSITIONS_TOPIC, T["conrft_interfaces/msg/Transition"](
                header=hdr, robot="", episode_id=0, step=t, camera_names=[], images=[], proprio=bad.proprio[t],
                instruction="", action=np.zeros(6, np.float32), policy_action=np.zeros(6, np.float32), reward=0.0,
                terminated=t == 1, success=False, truncated=False, intervened=True, held=False, policy_version=0,
                final_images=[], final_proprio=bad.proprio[t + 1] if t == 1 else np.zeros(0, np.float32)), t)
    assert read_episodes(tmp_path / "dims")[0].actions.shape == (2, 6)  # a reader that does not know the robot
    with pytest.raises(BagError, match="6-D action; this robot's actions are 7-D"):
        read_episodes(tmp_path / "dims", dims=TRANSITION_DIMS)
