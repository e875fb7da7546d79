"""The camera publisher as a process, reading a real video file (MJPG .avi written here with cv2.VideoWriter)."""
from pathlib import Path

import cv2
import numpy as np
import yaml
from sensor_msgs.msg import CameraInfo, Image

NODE = "conrft_policy.camera_publisher"
PARAMS = Path(__file__).resolve().parents[3] / "config" / "camera_publisher.yaml"


def write_video(path: Path, frames: int, width=160, height=120, fps=30.0) -> Path:
    """Left half blue, right half red (BGR, as a camera delivers), plus a moving bright bar so frames differ."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for i in range(frames):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:, : width // 2] = (255, 0, 0)
        frame[:, width // 2:] = (0, 0, 255)
        frame[: height // 8, (4 * i) % width: (4 * i) % width + 4] = 255
        writer.write(frame)
    writer.release()
    return path


def test_video_file_to_policy_images(ros_process, ros_node, tmp_path):
    video = write_video(tmp_path / "front.avi", frames=300)  # 15 s at the node's 20 Hz: outlasts discovery
    proc = ros_process(NODE, "--params-file", str(PARAMS), "-p", f"device:={video}", "-p", "fps:=20.0",
                       "-p", "output_size:=64", "-p", "camera_name:=test_cam")
    images, infos = [], []
    ros_node.create_subscription(Image, "/camera/test_cam/image_raw", images.append, 10)
    ros_node.create_subscription(CameraInfo, "/camera/test_cam/camera_info", infos.append, 10)
    assert ros_node.spin_until(lambda: len(images) >= 10 and infos, 30), proc.output()

    img = images[-1]
    assert (img.height, img.width, img.encoding, img.step) == (64, 64, "rgb8", 64 * 3)
    assert img.header.frame_id == "test_cam_camera"
    arr = np.frombuffer(bytes(img.data), np.uint8).reshape(64, 64, 3).astype(int)
    # Centred square crop of a 160x120 frame (x in [20, 140)): left half blue, right half red, in RGB order.
    lower = arr[20:, :]  # below the moving bar
    np.testing.assert_allclose(lower[:, :24].mean(axis=(0, 1)), [0, 0, 255], atol=20)
    np.testing.assert_allclose(lower[:, 40:].mean(axis=(0, 1)), [255, 0, 0], atol=20)
    assert (infos[-1].height, infos[-1].width) == (64, 64) and infos[-1].header.frame_id == "test_cam_camera"
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in images[-10:]]
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert 12.0 < rate < 30.0, rate  # paced at fps (20 Hz), not as fast as the file decodes
    assert proc.proc.poll() is None

    # Ctrl-C while the reader thread publishes: it is stopped before the context goes, so a clean exit.
    proc.stop()
    assert proc.proc.returncode == 0
    assert "Traceback" not in proc.output() and "Exception in thread" not in proc.output(), proc.output()[-2000:]


def test_end_of_frames_publishes_nothing_and_logs(ros_process, ros_node, tmp_path):
    video = write_video(tmp_path / "short.avi", frames=5)  # runs out of frames at once
    proc = ros_process(NODE, "-p", f"device:={video}", "-p", "fps:=30.0", "-p", "camera_name:=short")
    images = []
    ros_node.create_subscription(Image, "/camera/short/image_raw", images.append, 10)
    assert ros_node.spin_until(lambda: "delivered no frame" in proc.output(), 20), proc.output()
    assert "end of the video file" in proc.output() and "publishing nothing" in proc.output()
    count = len(images)
    ros_node.spin_until(lambda: False, 1.0)
    assert len(images) == count  # nothing more, never a repeated old frame
    assert proc.proc.poll() is None  # still alive: the policy node's staleness check stops the robot


def test_missing_device_and_bad_crop_exit_1(ros_process, tmp_path):
    missing = ros_process(NODE, "-p", f"device:={tmp_path / 'no_such_video0'}")
    assert missing.wait(timeout=30) == 1
    out = missing.output()
    assert "camera_publisher: error: parameter 'device'" in out and "does not exist" in out
    not_video = tmp_path / "notes.txt"
    not_video.write_text("not a video")
    unreadable = ros_process(NODE, "-p", f"device:={not_video}")
    assert unreadable.wait(timeout=30) == 1
    assert "parameter 'device'" in unreadable.output()
    video = write_video(tmp_path / "small.avi", frames=3)
    bad_crop = ros_process(NODE, "-p", f"device:={video}", "-p", "crop:=[100,0,100,100]")
    assert bad_crop.wait(timeout=30) == 1
    assert "parameter 'crop' [x, y, w, h] = [100, 0, 100, 100] reaches (200, 100), outside the 160x120" \
        in bad_crop.output()


def test_parameter_file_lists_every_camera_parameter():
    from conrft_policy.camera_publisher import PARAMS as DECLARED

    data = yaml.safe_load(PARAMS.read_text())
    for node in ("camera", "camera_wrist"):
        assert set(data[node]["ros__parameters"]) == set(DECLARED), node
