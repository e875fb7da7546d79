"""The success detector node as a process over real DDS: camera frames in, std_msgs/Bool out, after N frames
in a row, with the gripper condition from RobotState; stale and wrong-size images; bad start-up input. The
model is trained here on synthetic frames (a bright square = success) so that what each frame should give is
known; learning on simulated camera images is tested in conrft_bringup/test/test_success_detector_cli.py."""
from pathlib import Path

import numpy as np
import pytest
import torch
from rclpy.duration import Duration
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Float64

from conrft_core.checkpoint import load_checkpoint, save_checkpoint
from conrft_core.data.bags import EpisodeBagWriter
from conrft_core.data.episode import Episode
from conrft_core.learning.success import DetectorConfig, save_detector, train_detector
from conrft_core.robot.spaces import PROPRIO_DIM
from conrft_interfaces.msg import RobotState

NODE = "conrft_policy.success_detector"
PARAMS = Path(__file__).resolve().parents[3] / "config" / "success_detector.yaml"
SIZE = 16
CAMERAS = ("front", "wrist")


def frames(n, rng, square, size=SIZE):
    img = rng.integers(0, 120, (n, size, size, 3), dtype=np.uint8)
    if square:
        img[:, 2:8, 2:8] = 250
    return img


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp, rng = tmp_path_factory.mktemp("detector_node"), np.random.default_rng(0)
    with EpisodeBagWriter(tmp / "bag") as w:
        for i in range(8):
            images = {c: np.concatenate([frames(6, rng, False), frames(1, rng, True)]) for c in CAMERAS}
            w.write_episode(Episode(
                episode_id=i, instruction="pick", images=images,
                proprio=np.zeros((7, PROPRIO_DIM), np.float32), actions=np.zeros((6, 7), np.float32),
                rewards=np.zeros(6, np.float32), intervened=np.ones(6, bool), terminated=True, truncated=False,
                stamps=100.0 * i + 0.1 * np.arange(6), success=True))
    torch.set_num_threads(1)
    detector, _ = train_detector([tmp / "bag"], DetectorConfig(steps=150), progress=False)
    save_detector(tmp / "detector.safetensors", detector)
    return tmp / "detector.safetensors"


class Camera:
    """Publishes one frame (both cameras, one stamp) at a time and waits until the node has judged it."""

    def __init__(self, node):
        self.node, self.rng = node, np.random.default_rng(1)
        self.pubs = {c: node.create_publisher(Image, f"/camera/{c}/image_raw", 10) for c in CAMERAS}
        self.state_pub = node.create_publisher(RobotState, "/conrft/robot_state", 10)
        self.success, self.probability = [], []
        node.create_subscription(Bool, "/conrft/success", lambda m: self.success.append(m.data), 10)
        node.create_subscription(Float64, "/success_detector/probability", lambda m: self.probability.append(m.data),
                                 10)

    def publish(self, square: bool, size=SIZE, age=0.0, gripper_width=None):
        stamp = (self.node.get_clock().now() - Duration(nanoseconds=int(age * 1e9))).to_msg()
        if gripper_width is not None:
            state = RobotState(gripper_width=gripper_width)
            state.header.stamp = stamp
            self.state_pub.publish(state)
        for c, pub in self.pubs.items():
            img = frames(1, self.rng, square, size)[0]
            msg = Image(height=size, width=size, encoding="rgb8", step=3 * size, data=img.tobytes())
            msg.header.stamp = stamp
            pub.publish(msg)

    def judge(self, square: bool, **kw) -> bool:
        """The node's verdict on one new frame (re-sent until it answers: the first ones may precede discovery)."""
        count = len(self.success)
        for _ in range(50):
            self.publish(square, **kw)
            if self.node.spin_until(lambda: len(self.success) > count, 0.5):
                return self.success[-1]
        raise AssertionError("the success detector published nothing")


def test_success_after_consecutive_frames(ros_process, ros_node, model):
    proc = ros_process(NODE, "--params-file", str(PARAMS), "-p", f"model:={model}", "-p", "consecutive_frames:=3",
                       "-p", "rate:=50.0")
    cam = Camera(ros_node)
    assert cam.judge(False) is False, proc.output()
    assert [cam.judge(False) for _ in range(2)] == [False, False]
    assert [cam.judge(True) for _ in range(4)] == [False, False, True, True]  # the 3rd success frame in a row
    assert cam.judge(False) is False and cam.judge(True) is False  # a failing frame starts the count again
    assert ros_node.spin_until(lambda: len(cam.probability) == len(cam.success), 5)  # one per judged frame
    assert all(p >= 0.5 for p in cam.probability[-6:-2]) and cam.probability[-2] < 0.5, cam.probability
    assert "success detected: probability" in proc.output()

    # Stale images (older than max_obs_age) and images of another size: False, named once in the log.
    assert [cam.judge(True, age=2.0) for _ in range(3)] == [False] * 3
    assert [cam.judge(True, size=8) for _ in range(3)] == [False] * 3
    out = proc.output()
    assert "/camera/front/image_raw is older than max_obs_age: publishing False" in out
    assert out.count("/camera/front/image_raw: images are 8x8, the model") == 1, out
    assert proc.proc.poll() is None
    proc.stop()
    assert proc.proc.returncode == 0 and "Traceback" not in proc.output()


def test_gripper_condition_from_robot_state(ros_process, ros_node, model):
    proc = ros_process(NODE, "--params-file", str(PARAMS), "-p", f"model:={model}", "-p", "consecutive_frames:=1",
                       "-p", "require_gripper:=open", "-p", "rate:=50.0")
    cam = Camera(ros_node)
    assert cam.judge(True, gripper_width=0.01) is False, proc.output()  # closed: not a success, however it looks
    assert cam.judge(True, gripper_width=0.08) is True
    assert cam.judge(False, gripper_width=0.08) is False


def test_bad_start_up_input_is_one_line_and_exit_1(ros_process, model, tmp_path):
    side = ros_process(NODE, "-p", f"model:={model}", "-p", "cameras:=[front,side]")
    assert side.wait(timeout=60) == 1
    assert f"camera 'side' (/camera/side/image_raw) is not one the model {model} was trained on" in side.output()

    tensors, meta = load_checkpoint(model)
    wrong = tmp_path / "wrong.safetensors"
    save_checkpoint(wrong, {k: v[:1] if k.endswith("head.0.weight") else v for k, v in tensors.items()}, meta)
    bad = ros_process(NODE, "-p", f"model:={wrong}")
    assert bad.wait(timeout=60) == 1
    lines = [line for line in bad.output().splitlines() if line.strip()]
    assert lines == [f"success_detector: error: success detector {wrong}: tensor 'net/head.0.weight' has shape "
                     f"(1, 1024), the model expects (64, 1024); was it saved with another config?"], lines

    for args, text in ((["-p", "consecutive_frames:=0"], "'consecutive_frames' must be >= 1"),
                       ([], "parameter 'model' is required")):
        proc = ros_process(NODE, *(["-p", f"model:={model}"] if args else []), *args)
        assert proc.wait(timeout=60) == 1 and text in proc.output(), proc.output()
