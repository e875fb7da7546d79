"""Camera frame preprocessing: crop rectangles, square resize, BGR -> RGB, and errors that name `crop`."""
import numpy as np
import pytest

from conrft_core.config import ConfigError
from conrft_core.robot.images import preprocess_frame, resolve_crop


def quadrant_frame(w=160, h=120):
    """BGR frame: left half pure blue, right half pure red; a green 2-px border marks the frame's edge."""
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:, : w // 2] = (255, 0, 0)  # BGR blue
    frame[:, w // 2:] = (0, 0, 255)  # BGR red
    return frame


@pytest.mark.parametrize("crop", [None, [], [0, 0, 0, 0]])
def test_default_crop_is_centred_square(crop):
    assert resolve_crop(crop, 640, 480) == (80, 0, 480, 480)
    assert resolve_crop(crop, 480, 640) == (0, 80, 480, 480)
    assert resolve_crop(crop, 101, 100) == (0, 0, 100, 100)


def test_explicit_crop_kept():
    assert resolve_crop([10, 20, 300, 200], 640, 480) == (10, 20, 300, 200)
    assert resolve_crop(np.array([0, 0, 640, 480]), 640, 480) == (0, 0, 640, 480)


@pytest.mark.parametrize("crop, match", [
    ([1, 2, 3], "must be 4 integers"),
    ([0, 0, 10.5, 10], "must be 4 integers"),
    ([-1, 0, 10, 10], "x, y >= 0"),
    ([0, 0, 0, 10], "w, h > 0"),
    ([600, 0, 100, 100], r"reaches \(700, 100\), outside the 640x480 frame"),
    ([0, 400, 100, 100], "outside the 640x480 frame"),
])
def test_bad_crops_name_the_parameter(crop, match):
    with pytest.raises(ConfigError, match=match) as info:
        resolve_crop(crop, 640, 480)
    assert "parameter 'crop'" in str(info.value)


def test_preprocess_centre_crop_resize_and_rgb():
    out = preprocess_frame(quadrant_frame(), [], 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    # Centre square of a 160x120 frame spans x in [20, 140): half blue, half red, now in RGB order.
    np.testing.assert_array_equal(out[:, :30], np.broadcast_to([0, 0, 255], (64, 30, 3)))
    np.testing.assert_array_equal(out[:, 34:], np.broadcast_to([255, 0, 0], (64, 30, 3)))


def test_preprocess_explicit_crop_selects_the_region():
    frame = quadrant_frame()
    out = preprocess_frame(frame, [100, 10, 40, 40], 20)  # entirely in the red half
    np.testing.assert_array_equal(out, np.broadcast_to([255, 0, 0], (20, 20, 3)))
    # A crop already at the output size is passed through (only the channel order changes).
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(preprocess_frame(frame, [8, 4, 32, 32], 32), frame[4:36, 8:40, ::-1])


def test_preprocess_upscales_and_handles_grey_and_bgra():
    grey = np.full((10, 10), 77, np.uint8)
    np.testing.assert_array_equal(preprocess_frame(grey, [], 16), np.full((16, 16, 3), 77, np.uint8))
    bgra = np.zeros((8, 8, 4), np.uint8)
    bgra[..., 0] = 200
    out = preprocess_frame(bgra, [], 8)
    assert out.shape == (8, 8, 3) and (out[..., 2] == 200).all() and (out[..., :2] == 0).all()


def test_preprocess_rejects_bad_input():
    with pytest.raises(ConfigError, match="output_size"):
        preprocess_frame(quadrant_frame(), [], 0)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        preprocess_frame(np.zeros((10, 10, 3), np.float32), [], 8)
    with pytest.raises(ConfigError, match="outside the 160x120 frame"):
        preprocess_frame(quadrant_frame(), [0, 0, 200, 100], 8)
