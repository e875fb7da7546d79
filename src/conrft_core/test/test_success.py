"""The learned success detector without a simulator: labels (terminal success frames, success-key presses in
the bag), the split by episode, the threshold, training on synthetic frames, the file and its errors, and the
node's decision rule (threshold, consecutive frames, gripper and height conditions)."""
import numpy as np
import pytest
import torch

from conrft_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from conrft_core.config import ConfigError, from_dict
from conrft_core.data.bags import INTERVENTION_TOPIC, EpisodeBagWriter, read_success_presses
from conrft_core.data.episode import Episode
from conrft_core.learning.success import (
    DetectorConfig,
    best_threshold,
    detection_report,
    frame_labels,
    load_detector,
    load_frames,
    precision_recall,
    save_detector,
    split_episodes,
    train_detector,
)
from conrft_core.learning.success_gate import GateConfig, SuccessGate
from conrft_core.robot.spaces import PROPRIO_DIM

SIZE = 16


def frames(n, rng, square):
    """Noise images; `square` puts a bright 6x6 patch in the top-left corner (the synthetic 'task done')."""
    img = rng.integers(0, 120, (n, SIZE, SIZE, 3), dtype=np.uint8)
    if square:
        img[:, 2:8, 2:8] = 250
    return img


def episode(eid, length, rng, success=True, start=100.0):
    images = {c: np.concatenate([frames(length, rng, False), frames(1, rng, success)]) for c in ("front", "wrist")}
    return Episode(episode_id=eid, instruction="pick", images=images,
                   proprio=np.zeros((length + 1, PROPRIO_DIM), np.float32), actions=np.zeros((length, 7), np.float32),
                   rewards=np.zeros(length, np.float32), intervened=np.ones(length, bool), terminated=success,
                   truncated=not success, stamps=start + 0.1 * np.arange(length), success=success)


def write_bag(path, episodes, presses=()):
    """Episodes, plus Intervention messages with outcome 1 at each press time (held for 3 messages, as the
    teleop node repeats a key for outcome_hold), outcome 0 before and after."""
    with EpisodeBagWriter(path) as w:
        for ep in episodes:
            w.write_episode(ep)
        iv, store = w.store.types["conrft_interfaces/msg/Intervention"], w.store
        stamp = store.types["builtin_interfaces/msg/Time"]
        times = sorted([(t + 0.02 * k, 1) for t in presses for k in range(3)] + [(t + 0.06, 0) for t in presses]
                       + [(50.0, 0)])
        for t, outcome in times:
            header = store.types["std_msgs/msg/Header"](stamp=stamp(sec=int(t), nanosec=int(round(t % 1 * 1e9))),
                                                        frame_id="base")
            zero = store.types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)
            twist = store.types["geometry_msgs/msg/Twist"](linear=zero, angular=zero)
            w.write(INTERVENTION_TOPIC, iv(header=header, active=False, twist=twist, gripper=1.0, outcome=outcome,
                                           source="keyboard"), int(t * 1e9))
    return path


def test_labels_are_success_frames_and_key_presses(tmp_path):
    rng = np.random.default_rng(0)
    ep = episode(0, 5, rng)  # frames at 100.0 .. 100.4, the final one at ~100.5
    assert frame_labels(ep, np.array([])).tolist() == [False] * 5 + [True]
    # A press nearest to frame 2 labels it; presses outside the episode's frames label nothing.
    assert frame_labels(ep, np.array([100.21, 99.0, 101.0])).tolist() == [False, False, True, False, False, True]
    failed = episode(1, 4, rng, success=False, start=200.0)
    assert not frame_labels(failed, np.array([])).any()

    bag = write_bag(tmp_path / "bag", [ep, failed], presses=[100.21, 200.1])
    # One press per run of outcome 1 (the key is repeated in every message while it is held).
    np.testing.assert_allclose(read_success_presses(bag), [100.21, 200.1])
    labelled, cameras = load_frames([bag])
    assert cameras == ("front", "wrist") and labelled.images["front"].shape == (11, SIZE, SIZE, 3)
    assert labelled.labels.tolist() == [False, False, True, False, False, True, False, True, False, False, False]
    assert labelled.episode.tolist() == [0] * 6 + [1] * 5 and labelled.step.tolist() == [*range(6), *range(5)]


def test_bag_without_intervention_topic_has_no_presses(tmp_path):
    bag = tmp_path / "plain"
    with EpisodeBagWriter(bag) as w:
        w.write_episode(episode(0, 3, np.random.default_rng(0)))
    assert read_success_presses(bag).size == 0


def test_split_is_by_episode_with_positives_on_both_sides(tmp_path):
    rng = np.random.default_rng(1)
    eps = [episode(i, 4, rng, success=i % 3 != 0) for i in range(12)]
    labelled, _ = load_frames([write_bag(tmp_path / "bag", eps)])
    for seed in range(5):
        val = split_episodes(labelled, 0.25, np.random.default_rng(seed))
        assert not set(labelled.episode[val]) & set(labelled.episode[~val])  # no episode on both sides
        assert labelled.labels[val].any() and labelled.labels[~val].any()
        assert len(set(labelled.episode[val])) == 3  # a quarter of the 8 successes and of the 4 failures


def test_threshold_and_precision_recall():
    probs = np.array([0.95, 0.9, 0.8, 0.6, 0.3, 0.1])
    labels = np.array([True, True, False, True, False, False])
    assert precision_recall(probs, labels, 0.85) == (1.0, 2 / 3)
    assert precision_recall(probs, labels, 0.99) == (0.0, 0.0)
    # F1: top 2 -> 0.8, top 4 -> 0.857: the cut below 0.6, halfway to the next lower probability.
    assert best_threshold(probs, labels) == pytest.approx(0.45)
    assert best_threshold(np.array([0.9, 0.2]), np.array([True, False])) == pytest.approx(0.55)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("detector")
    rng = np.random.default_rng(2)
    bag = write_bag(tmp / "bag", [episode(i, 6, rng, success=i % 4 != 3) for i in range(12)])
    torch.set_num_threads(1)
    detector, report = train_detector([bag], DetectorConfig(steps=150, seed=0), progress=False)
    path = tmp / "detector.safetensors"
    save_detector(path, detector)
    return detector, report, path, bag


def test_training_separates_the_synthetic_success_frames(trained):
    detector, report, _, bag = trained
    assert report["validation_episodes"] == 3 and report["train_episodes"] == 9
    assert report["validation_positives"] == 2 and report["train_positives"] == 7
    t, precision, recall = report["table"][-1]
    assert t == detector.threshold and precision == 1.0 and recall == 1.0
    rng = np.random.default_rng(3)
    probs = detector.probabilities({c: np.concatenate([frames(20, rng, False), frames(20, rng, True)])
                                    for c in ("front", "wrist")})
    assert (probs[:20] < detector.threshold).all() and (probs[20:] >= detector.threshold).all()


def test_file_round_trip_and_metadata(trained):
    detector, _, path, bag = trained
    back = load_detector(path)
    tensors, meta = load_checkpoint(path)
    assert all(name.startswith("net/") for name in tensors)
    assert meta["kind"] == "success_detector" and meta["features"] == "cnn"
    assert meta["cameras"] == ["front", "wrist"] and meta["image_size"] == [SIZE, SIZE]
    assert meta["threshold"] == detector.threshold == back.threshold and meta["bags"] == [str(bag)]
    rng = np.random.default_rng(4)
    imgs = {c: frames(5, rng, True) for c in ("front", "wrist")}
    np.testing.assert_array_equal(back.probabilities(imgs), detector.probabilities(imgs))
    assert back.probability({c: v[0] for c, v in imgs.items()}) == pytest.approx(float(back.probabilities(imgs)[0]))


def test_wrong_files_are_named(trained, tmp_path):
    _, _, path, _ = trained
    tensors, meta = load_checkpoint(path)
    save_checkpoint(tmp_path / "wide.safetensors", tensors, {**meta, "channels": 8})  # tensors of 16 channels
    with pytest.raises(CheckpointError, match=r"success detector .*wide.safetensors: tensor 'net/encoders.front.0"):
        load_detector(tmp_path / "wide.safetensors")
    save_checkpoint(tmp_path / "vla.safetensors", {"w": torch.zeros(2)}, {"backbone": {}})
    with pytest.raises(CheckpointError, match=r"vla.safetensors is not a success detector"):
        load_detector(tmp_path / "vla.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_detector(tmp_path / "missing.safetensors")


def test_bad_images_are_named(trained):
    detector, *_ = trained
    with pytest.raises(ValueError, match="has no camera 'wrist'"):
        detector.check({"front": np.zeros((1, SIZE, SIZE, 3), np.uint8)}, "frames")
    with pytest.raises(ValueError, match=r"camera 'front' images are \(32, 32, 3\)"):
        detector.check({"front": np.zeros((1, 32, 32, 3), np.uint8), "wrist": np.zeros((1, SIZE, SIZE, 3))})


def test_bags_without_a_positive_frame_are_refused(tmp_path):
    rng = np.random.default_rng(5)
    bag = write_bag(tmp_path / "failures", [episode(i, 4, rng, success=False) for i in range(3)])
    with pytest.raises(ValueError, match=r"^bag .*failures: no positive frame"):
        train_detector([bag], DetectorConfig(steps=1), progress=False)
    one = write_bag(tmp_path / "one", [episode(0, 4, rng), episode(1, 4, rng, success=False)])
    with pytest.raises(ValueError, match="only one episode has a positive frame"):
        train_detector([one], DetectorConfig(steps=1), progress=False)
    with pytest.raises(ValueError, match="episode 0 has no camera 'side'"):
        train_detector([one], DetectorConfig(steps=1, cameras=("front", "side")), progress=False)


def test_detection_report_counts_early_late_and_false_alarms(trained, tmp_path):
    detector, *_ = trained
    rng = np.random.default_rng(6)
    ep_ok, ep_fail = episode(0, 6, rng), episode(1, 6, rng, success=False)
    ep_early = episode(2, 6, rng)
    ep_early.images = {c: np.concatenate([frames(3, rng, False), frames(4, rng, True)]) for c in ("front", "wrist")}
    labelled, _ = load_frames([write_bag(tmp_path / "bag", [ep_ok, ep_fail, ep_early])])
    one = detection_report(detector, labelled, consecutive_frames=1)
    assert (one["detected"], one["early"], one["missed"], one["false_alarm"]) == (1, 1, 0, 0)
    assert one["recall"] == 1.0 and one["precision"] == pytest.approx(2 / 5)  # 4 square frames in ep_early
    # Two frames in a row: a single success frame at the very end can no longer fire.
    two = detection_report(detector, labelled, consecutive_frames=2)
    assert (two["detected"], two["early"], two["missed"]) == (0, 1, 1)


def test_gate_needs_consecutive_frames_and_conditions():
    gate = SuccessGate(GateConfig(consecutive_frames=3), model_threshold=0.7)
    assert gate.threshold == 0.7
    assert [gate.update(p) for p in (0.9, 0.8, 0.1, 0.9, 0.9, 0.95, 0.99)] == [False] * 5 + [True, True]
    gate.reset()
    assert not gate.update(0.99)
    assert SuccessGate(GateConfig(threshold=0.2), 0.7).threshold == 0.2

    gripper = SuccessGate(GateConfig(consecutive_frames=1, require_gripper="open"), 0.5)
    assert gripper.update(0.9, gripper_width=0.06) and not gripper.update(0.9, gripper_width=0.01)
    assert not gripper.update(0.9)  # no state to check the condition on: no success
    closed = SuccessGate(GateConfig(consecutive_frames=1, require_gripper="closed"), 0.5)
    assert closed.update(0.9, gripper_width=0.01) and not closed.update(0.9, gripper_width=0.06)
    height = SuccessGate(GateConfig(consecutive_frames=1, ee_height_range=(0.1, 0.3)), 0.5)
    assert height.update(0.9, ee_z=0.2) and not height.update(0.9, ee_z=0.05) and not height.update(0.9)
    assert not height.update(0.4, ee_z=0.2)
    assert not GateConfig().needs_state and GateConfig(require_gripper="open").needs_state


@pytest.mark.parametrize("data, key", [
    ({"consecutive_frames": 0}, "'consecutive_frames' must be >= 1"),
    ({"threshold": 1.5}, "'threshold' must be a probability"),
    ({"require_gripper": "half"}, "config key 'gate.require_gripper' must be one of"),
    ({"ee_height_range": [0.3, 0.1]}, "'ee_height_range' [min, max] must have min <= max"),
    ({"gripper_open_width": 0.0}, "'gripper_open_width' must be > 0"),
])
def test_gate_config_errors_name_the_key(data, key):
    with pytest.raises(ConfigError) as err:
        from_dict(GateConfig, data, "gate")
    assert key in str(err.value)


@pytest.mark.parametrize("data, key", [
    ({"steps": 0}, "'steps' must be >= 1"), ({"batch_size": 1}, "'batch_size' must be >= 2"),
    ({"validation_fraction": 1.0}, "'validation_fraction' must be in (0, 1)"), ({"lr": 0.0}, "'lr' must be > 0"),
    ({"epochs": 3}, "unknown config key 'detector.epochs'"),
])
def test_detector_config_errors_name_the_key(data, key):
    with pytest.raises(ConfigError) as err:
        from_dict(DetectorConfig, data, "detector")
    assert key in str(err.value)
