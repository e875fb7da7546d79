"""Camera frames -> policy input images: crop, square resize, BGR -> RGB (no ROS here).

The camera publisher reads BGR frames through OpenCV and publishes what the policy consumes: an RGB square of
`output_size` pixels (128 by default, the VLA's input). The crop is given in pixels of the captured frame as
[x, y, w, h] (top-left corner and size); an empty crop (or all zeros, the ROS parameter default, since ROS
parameters cannot declare an empty integer list) means the largest centred square. A non-square crop is
stretched to the square output, so choose a square crop unless that distortion is wanted.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from conrft_core.config import ConfigError


def resolve_crop(crop: Sequence[int] | None, frame_width: int, frame_height: int) -> tuple[int, int, int, int]:
    """The crop rectangle (x, y, w, h) for a frame of this size; None, [] or [0, 0, 0, 0] = the centred square.

    Raises ConfigError (naming the `crop` parameter) when the rectangle is malformed or leaves the frame.
    """
    if frame_width <= 0 or frame_height <= 0:
        raise ConfigError(f"camera frame has an invalid size {frame_width}x{frame_height}")
    crop = list(crop) if crop is not None else []
    if not crop or crop == [0, 0, 0, 0]:
        side = min(frame_width, frame_height)
        return (frame_width - side) // 2, (frame_height - side) // 2, side, side
    if len(crop) != 4 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in crop):
        raise ConfigError(f"parameter 'crop' must be 4 integers [x, y, w, h] in pixels of the captured frame "
                          f"(or [] for the centred square), got {crop}")
    x, y, w, h = (int(v) for v in crop)
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise ConfigError(f"parameter 'crop' [x, y, w, h] = {crop} needs x, y >= 0 and w, h > 0")
    if x + w > frame_width or y + h > frame_height:
        raise ConfigError(f"parameter 'crop' [x, y, w, h] = {crop} reaches ({x + w}, {y + h}), outside the "
                          f"{frame_width}x{frame_height} frame the camera delivers; shrink the crop or request a "
                          f"larger frame (width/height)")
    return x, y, w, h


def preprocess_frame(frame_bgr: np.ndarray, crop: Sequence[int] | None, output_size: int) -> np.ndarray:
    """BGR HxWx3 uint8 frame (as cv2.VideoCapture reads it) -> RGB (output_size, output_size, 3) uint8."""
    if output_size <= 0:
        raise ConfigError(f"parameter 'output_size' must be > 0 pixels, got {output_size}")
    frame = np.asarray(frame_bgr)
    if frame.ndim == 2:  # some cameras deliver grey frames
        frame = np.repeat(frame[..., None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4) or frame.dtype != np.uint8:
        raise ValueError(f"camera frame must be HxWx3 uint8 (BGR), got shape {frame.shape} {frame.dtype}")
    h_frame, w_frame = frame.shape[:2]
    x, y, w, h = resolve_crop(crop, w_frame, h_frame)
    patch = frame[y:y + h, x:x + w, :3]
    if (w, h) != (output_size, output_size):
        # Area averaging when shrinking (no aliasing), bilinear when enlarging.
        shrink = w > output_size or h > output_size
        patch = cv2.resize(patch, (output_size, output_size),
                           interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.ascontiguousarray(patch[..., ::-1])
