"""Transition messages -> episodes: live assembly (order, duplicates, interleaving), field checks, images."""
from types import SimpleNamespace

import numpy as np
import pytest

from conrft_core.data.bags import make_typestore
from conrft_core.data.transitions import (
    EpisodeAssembler,
    TransitionError,
    check_transition,
    episode_from_transitions,
    image_to_array,
)
from conrft_core.robot.spaces import PROPRIO_DIM, TRANSITION_DIMS

H, W = 4, 5


def image(frame, encoding="rgb8", pad=0):
    """A sensor_msgs/Image-like object holding `frame` (H, W, 3), rows padded by `pad` bytes."""
    h, w, _ = frame.shape
    rows = np.concatenate([frame.reshape(h, w * 3), np.full((h, pad), 77, np.uint8)], axis=1)
    return SimpleNamespace(encoding=encoding, height=h, width=w, step=w * 3 + pad, data=rows.reshape(-1).tobytes())


def frame(eid, step):
    """A distinct, recognisable frame per (episode, step)."""
    return np.full((H, W, 3), (eid * 50 + step * 7) % 256, np.uint8)


def transition(eid, step, length, *, terminated=True, success=True, cams=("front",), action=None, proprio=None):
    """Step `step` of an episode of `length` steps, values derived from (eid, step) so order can be checked."""
    last = step == length - 1
    stamp = SimpleNamespace(sec=100 + step, nanosec=500_000_000)
    return SimpleNamespace(
        header=SimpleNamespace(stamp=stamp, frame_id="base"),
        episode_id=eid, step=step, camera_names=list(cams),
        images=[image(frame(eid, step)) for _ in cams],
        proprio=np.full(PROPRIO_DIM, eid + step, np.float32) if proprio is None else proprio,
        instruction="insert the peg",
        action=np.full(7, step / 10, np.float32) if action is None else action,
        policy_action=np.full(7, -step / 10, np.float32),
        reward=float(step), terminated=last and terminated, truncated=last and not terminated,
        success=last and success, intervened=step % 2 == 1, policy_version=step + 3,
        final_images=[image(frame(eid, step + 1)) for _ in cams] if last else [],
        final_proprio=np.full(PROPRIO_DIM, eid + step + 1, np.float32) if last else np.zeros(0, np.float32),
    )


def test_episode_completes_only_when_terminal_and_all_earlier_steps_arrived():
    asm = EpisodeAssembler()
    msgs = [transition(3, t, 4) for t in range(4)]
    assert asm.add(msgs[0]) is None
    assert asm.add(msgs[3]) is None  # terminal step, but steps 1 and 2 are missing
    assert asm.add(msgs[1]) is None
    assert asm.pending_steps == 3
    ep = asm.add(msgs[2])
    assert ep is not None and asm.pending_steps == 0
    assert ep.episode_id == 3 and ep.length == 4 and ep.instruction == "insert the peg"
    assert ep.terminated and not ep.truncated and ep.success
    np.testing.assert_allclose(ep.actions[:, 0], [0.0, 0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_array_equal(ep.rewards, [0, 1, 2, 3])
    np.testing.assert_array_equal(ep.intervened, [False, True, False, True])
    np.testing.assert_array_equal(ep.policy_versions, [3, 4, 5, 6])
    np.testing.assert_allclose(ep.stamps, [100.5, 101.5, 102.5, 103.5])
    # T + 1 observations: the last one from the terminal step's final observation.
    np.testing.assert_array_equal(ep.proprio[:, 0], [3, 4, 5, 6, 7])
    assert ep.images["front"].shape == (5, H, W, 3)
    for t in range(5):
        np.testing.assert_array_equal(ep.images["front"][t], frame(3, t))


def test_out_of_order_arrival_gives_the_same_episode():
    in_order, shuffled = EpisodeAssembler(), EpisodeAssembler()
    msgs = [transition(1, t, 5) for t in range(5)]
    a = [in_order.add(m) for m in msgs][-1]
    order = [4, 2, 0, 3, 1]
    results = [shuffled.add(msgs[i]) for i in order]
    assert results[:-1] == [None] * 4
    b = results[-1]
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.proprio, b.proprio)
    np.testing.assert_array_equal(a.images["front"], b.images["front"])
    np.testing.assert_array_equal(b.rewards, [0, 1, 2, 3, 4])


def test_duplicate_steps_count_once():
    asm = EpisodeAssembler()
    msgs = [transition(2, t, 3) for t in range(3)]
    assert asm.add(msgs[0]) is None
    assert asm.add(msgs[0]) is None  # replayed from the journal and received live
    assert asm.pending_steps == 1
    assert asm.add(msgs[2]) is None
    assert asm.add(msgs[2]) is None  # the terminal step twice does not complete the episode either
    assert asm.pending_steps == 2
    ep = asm.add(msgs[1])
    assert ep is not None and ep.length == 3 and asm.pending_steps == 0


def test_two_interleaved_episodes_are_kept_apart():
    asm = EpisodeAssembler()
    a = [transition(10, t, 3) for t in range(3)]
    b = [transition(11, t, 2, terminated=False, success=False) for t in range(2)]
    assert asm.add(a[0]) is None
    assert asm.add(b[1]) is None
    assert asm.add(a[2]) is None
    assert asm.pending_steps == 3
    done_b = asm.add(b[0])
    assert done_b is not None and done_b.episode_id == 11 and done_b.length == 2
    assert done_b.truncated and not done_b.terminated and not done_b.success
    assert asm.pending_steps == 2  # episode 10 still waits for its step 1
    done_a = asm.add(a[1])
    assert done_a.episode_id == 10 and done_a.length == 3 and asm.pending_steps == 0
    np.testing.assert_array_equal(done_a.images["front"][1], frame(10, 1))
    np.testing.assert_array_equal(done_b.images["front"][1], frame(11, 1))


def test_typestore_messages_assemble_too():
    """Messages are duck-typed: rosbags typestore instances (as read from bags) work like rclpy ones."""
    T = make_typestore().types
    img = lambda f: T["sensor_msgs/msg/Image"](  # noqa: E731
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id="c"),
        height=H, width=W, encoding="rgb8", is_bigendian=0, step=W * 3, data=f.reshape(-1))
    asm = EpisodeAssembler()
    out = None
    for t in (1, 0):
        hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=t, nanosec=0), frame_id="base")
        out = asm.add(T["conrft_interfaces/msg/Transition"](
            header=hdr, robot="", episode_id=5, step=t, camera_names=["wrist"], images=[img(frame(5, t))],
            proprio=np.full(PROPRIO_DIM, t, np.float32), instruction="x", action=np.full(7, 0.5 * t, np.float32),
            policy_action=np.zeros(7, np.float32), reward=-0.05, terminated=t == 1, success=t == 1,
            truncated=False, intervened=False, held=False, policy_version=0,
            final_images=[img(frame(5, 2))] if t == 1 else [],
            final_proprio=np.full(PROPRIO_DIM, 2, np.float32) if t == 1 else np.zeros(0, np.float32)))
    assert out is not None and out.episode_id == 5 and out.success
    np.testing.assert_array_equal(out.actions[:, 0], [0.0, 0.5])
    np.testing.assert_array_equal(out.images["wrist"][2], frame(5, 2))


@pytest.mark.parametrize("field, value, expected", [
    ("action", np.zeros(6, np.float32), r"episode 4 step 1 has a 6-D action"),
    ("proprio", np.zeros(PROPRIO_DIM - 1, np.float32), rf"episode 4 step 1 has {PROPRIO_DIM - 1} proprio values"),
    ("action", np.array([0, 0, np.nan, 0, 0, 0, 1], np.float32), r"episode 4 step 1 has a non-finite action"),
])
def test_check_transition_names_the_field(field, value, expected):
    dims = TRANSITION_DIMS
    msg = transition(4, 1, 3)
    check_transition(msg, "test", dims)  # the unmodified message is fine
    setattr(msg, field, value)
    with pytest.raises(TransitionError, match=expected):
        check_transition(msg, "test", dims)
    asm = EpisodeAssembler(dims=dims)
    with pytest.raises(TransitionError, match=expected):
        asm.add(msg)
    assert asm.pending_steps == 0  # a bad step is not kept


def test_without_dims_every_step_must_match_the_first():
    """A reader that does not know the robot's sizes (bags) takes them from the episode's first step."""
    msgs = [transition(6, t, 3) for t in range(3)]
    assert episode_from_transitions(msgs).proprio.shape == (4, PROPRIO_DIM)
    msgs[2].proprio = np.zeros(PROPRIO_DIM + 2, np.float32)
    with pytest.raises(TransitionError, match=rf"episode 6 step 2 has {PROPRIO_DIM + 2} proprio values, expected "
                                              rf"{PROPRIO_DIM}"):
        episode_from_transitions(msgs)


def test_check_transition_images_must_match_camera_names():
    msg = transition(4, 0, 3, cams=("front", "wrist"))
    msg.images = msg.images[:1]
    with pytest.raises(TransitionError, match="1 images for 2 camera names"):
        check_transition(msg)


def test_image_to_array_rgb8_and_bgr8_with_row_padding():
    rgb = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    out = image_to_array(image(rgb, "rgb8", pad=3))
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    np.testing.assert_array_equal(image_to_array(image(bgr, "bgr8")), rgb)
    out.fill(0)  # a copy, not a view of the message buffer


@pytest.mark.parametrize("encoding", ["mono8", "rgba8", "16UC1"])
def test_image_to_array_refuses_other_encodings(encoding):
    with pytest.raises(TransitionError, match=f"encoding '{encoding}' is not supported"):
        image_to_array(image(np.zeros((H, W, 3), np.uint8), encoding))
