"""Camera publisher: one real camera (or a video file) through OpenCV -> the policy's image topics.

Publishes sensor_msgs/Image (rgb8, `output_size` x `output_size`: the crop resized to the policy's input) on
`/camera/<camera_name>/image_raw` and a matching sensor_msgs/CameraInfo on `/camera/<camera_name>/camera_info`,
at most `fps` times a second. `device` is a V4L2 path (/dev/video0), a camera index ("0") or a video file
(played at `fps`, once). Run one node per camera, e.g. `--ros-args -r __node:=camera_wrist -p camera_name:=wrist`.

A camera that stops delivering frames makes the node log an error (throttled) and publish nothing, so the
policy node's staleness check (`max_obs_age`) stops the robot; it never republishes an old frame.
Image processing (crop, resize, BGR -> RGB) lives in conrft_core.robot.images.
"""
from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path

import cv2
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from conrft_core.config import ConfigError
from conrft_core.robot.images import preprocess_frame, resolve_crop
from conrft_core.robot.node_params import declare_all
from conrft_policy.ros_io import run_node

PARAMS = {
    "device": "/dev/video0",  # V4L2 device path, camera index as a string ("0"), or a video file
    "camera_name": "front",  # topics /camera/<camera_name>/image_raw and camera_info
    "width": 640,  # capture size requested from the camera (it may pick the nearest it supports)
    "height": 480,
    "fps": 30.0,  # capture rate requested and the publishing rate limit (video files play at this rate)
    "crop": [0, 0, 0, 0],  # [x, y, w, h] in captured pixels; [] or [0, 0, 0, 0] = the centred square
    "output_size": 128,  # side of the published square image (the policy's input size)
    "frame_id": "",  # "" = <camera_name>_camera
}
IMAGE_QOS = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)  # as the sim node's cameras
FIRST_FRAME_TIMEOUT = 10.0  # s


def open_capture(device: str) -> tuple[cv2.VideoCapture, bool]:
    """(an opened capture, is_file). Raises ConfigError naming `device` when it cannot be opened."""
    is_index = re.fullmatch(r"\d+", device) is not None
    path = Path(device)
    if not device:
        raise ConfigError("parameter 'device' is empty; set a camera path (/dev/video0), index (\"0\") or video file")
    if not is_index and not path.exists():
        raise ConfigError(f"parameter 'device': '{device}' does not exist; set an existing camera device "
                          f"(ls /dev/video*), a camera index such as \"0\", or a video file")
    cap = cv2.VideoCapture(int(device) if is_index else device)
    if not cap.isOpened():
        cap.release()
        raise ConfigError(f"parameter 'device': cannot open '{device}' with OpenCV (busy, no permission - is the "
                          f"user in group 'video'? - or not a camera/video OpenCV can read)")
    return cap, (not is_index and path.is_file())


class CameraPublisher(Node):
    def __init__(self):
        super().__init__("camera")
        p = self.params = declare_all(self, PARAMS)
        name = p["camera_name"]
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise ConfigError(f"parameter 'camera_name' '{name}' must be a valid topic name token "
                              f"(letters, digits, underscores; starting with a letter)")
        for key in ("width", "height", "output_size"):
            if p[key] <= 0:
                raise ConfigError(f"parameter '{key}' must be > 0, got {p[key]}")
        if not p["fps"] > 0:
            raise ConfigError(f"parameter 'fps' must be > 0, got {p['fps']}")
        self.crop = list(p["crop"] or [])
        self.size, self.period = int(p["output_size"]), 1.0 / p["fps"]
        self.frame_id = p["frame_id"] or f"{name}_camera"
        self.cap, self.is_file = open_capture(p["device"])
        try:
            self._configure_capture()
        except Exception:
            self.cap.release()
            raise
        self.pub_image = self.create_publisher(Image, f"/camera/{name}/image_raw", IMAGE_QOS)
        self.pub_info = self.create_publisher(CameraInfo, f"/camera/{name}/camera_info", IMAGE_QOS)
        self.running = True
        self.published = 0
        self.get_logger().info(
            f"camera '{name}' on {p['device']}: {self.frame_w}x{self.frame_h} frames, crop {list(self.rect)} -> "
            f"{self.size}x{self.size} rgb8 on /camera/{name}/image_raw at <= {p['fps']} Hz")
        self.reader = threading.Thread(target=self.capture_loop, daemon=True)
        self.reader.start()

    def _configure_capture(self) -> None:
        p = self.params
        if not self.is_file:  # requests; the driver may choose the nearest supported mode
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, p["width"])
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, p["height"])
            self.cap.set(cv2.CAP_PROP_FPS, p["fps"])
            self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the latest frame, not a queued old one
        ok, frame = self.cap.read()
        deadline = time.monotonic() + FIRST_FRAME_TIMEOUT
        while not ok and not self.is_file and time.monotonic() < deadline:
            time.sleep(0.05)
            ok, frame = self.cap.read()
        if not ok or frame is None:
            raise ConfigError(f"parameter 'device': '{p['device']}' opened but delivered no frame"
                              f"{'' if self.is_file else f' within {FIRST_FRAME_TIMEOUT:.0f} s'}")
        self.frame_h, self.frame_w = frame.shape[:2]
        if not self.is_file and (self.frame_w, self.frame_h) != (p["width"], p["height"]):
            self.get_logger().warning(f"camera delivers {self.frame_w}x{self.frame_h}, not the requested "
                                      f"{p['width']}x{p['height']} (parameters width/height)")
        self.rect = resolve_crop(self.crop, self.frame_w, self.frame_h)  # ConfigError naming 'crop' if it misfits
        self.first_frame = frame

    def capture_loop(self) -> None:
        """Reads frames in its own thread (a blocking read must not stall the executor) and publishes them."""
        frame, next_due, last_ok = self.first_frame, time.monotonic(), time.monotonic()
        while self.running and rclpy.ok():
            if frame is None:
                ok, frame = self.cap.read()
                if not ok:
                    frame = None
                    self.get_logger().error(
                        f"camera '{self.params['camera_name']}' ({self.params['device']}) delivered no frame for "
                        f"{time.monotonic() - last_ok:.1f} s{' (end of the video file)' if self.is_file else ''}; "
                        f"publishing nothing", throttle_duration_sec=2.0)
                    time.sleep(min(self.period, 0.1))
                    continue
            now = time.monotonic()
            last_ok = now
            if now < next_due:
                if self.is_file:  # a file plays at fps: wait for this frame's turn
                    time.sleep(next_due - now)
                else:  # a live camera faster than fps: drop this frame
                    frame = None
                    continue
            self._publish(frame)
            frame = None
            next_due = max(next_due + self.period, time.monotonic() - self.period)

    def _publish(self, frame) -> None:
        stamp = self.get_clock().now().to_msg()
        try:
            rgb = preprocess_frame(frame, self.crop, self.size)
        except ValueError as exc:  # e.g. the camera switched to a frame size the crop does not fit
            self.get_logger().error(f"frame dropped: {exc}", throttle_duration_sec=2.0)
            return
        img = Image(height=self.size, width=self.size, encoding="rgb8", is_bigendian=0, step=self.size * 3,
                    data=rgb.tobytes())
        img.header.stamp, img.header.frame_id = stamp, self.frame_id
        info = CameraInfo(height=self.size, width=self.size)  # uncalibrated: K all zero
        info.header = img.header
        self.pub_image.publish(img)
        self.pub_info.publish(info)
        self.published += 1

    def destroy_node(self) -> None:
        """Stop the reader thread and release the camera before the node goes."""
        self.running = False
        self.reader.join(timeout=2.0)
        self.cap.release()
        super().destroy_node()


def main(args=None) -> int:
    return run_node(CameraPublisher, "camera_publisher", args)


if __name__ == "__main__":
    sys.exit(main())
