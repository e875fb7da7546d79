"""The demo recorder as a process: live Transition messages in, a rosbag2 bag of whole episodes out."""
from pathlib import Path

import numpy as np
import pytest
import yaml
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_srvs.srv import SetBool

from conrft_core.data.bags import read_episodes
from conrft_core.robot.spaces import PROPRIO_DIM
from conrft_interfaces.msg import Transition

NODE = "conrft_bringup.demo_recorder"
PARAMS = Path(__file__).resolve().parents[3] / "config" / "demo_recorder.yaml"
QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_ALL)
CAMS = ["front", "wrist"]


class FakeEpisode:
    """An episode of random 8x8 images, proprio and actions, as the policy node would publish it."""

    def __init__(self, eid: int, length: int, success: bool, seed: int):
        rng = np.random.default_rng(seed)
        self.eid, self.length, self.success = eid, length, success
        self.images = {c: rng.integers(0, 255, (length + 1, 8, 8, 3), dtype=np.uint8) for c in CAMS}
        self.proprio = rng.normal(size=(length + 1, PROPRIO_DIM)).astype(np.float32)
        self.actions = rng.uniform(-1, 1, (length, 7)).astype(np.float32)

    @staticmethod
    def _image(frame):
        return Image(height=8, width=8, encoding="rgb8", step=24, data=frame.tobytes())

    def message(self, t: int) -> Transition:
        last = t == self.length - 1
        msg = Transition(episode_id=self.eid, step=t, camera_names=CAMS,
                         images=[self._image(self.images[c][t]) for c in CAMS], proprio=self.proprio[t].tolist(),
                         instruction="pick up the cube", action=self.actions[t].tolist(),
                         policy_action=np.zeros(7, np.float32).tolist(),
                         reward=10.0 if last and self.success else -0.05, terminated=last,
                         success=last and self.success,
                         truncated=False, intervened=t % 2 == 0, policy_version=3)
        msg.header.stamp.sec, msg.header.stamp.nanosec = 100 + self.eid, t * 100_000_000
        msg.header.frame_id = "base"
        if last:
            msg.final_images = [self._image(self.images[c][t + 1]) for c in CAMS]
            msg.final_proprio = self.proprio[t + 1].tolist()
        return msg

    def assert_equal(self, ep):
        assert ep.episode_id == self.eid and ep.length == self.length and ep.success == self.success
        assert ep.terminated and ep.instruction == "pick up the cube"
        np.testing.assert_array_equal(ep.actions, self.actions)
        np.testing.assert_array_equal(ep.proprio, self.proprio)
        for c in CAMS:
            np.testing.assert_array_equal(ep.images[c], self.images[c])
        np.testing.assert_array_equal(ep.intervened, np.arange(self.length) % 2 == 0)
        assert list(ep.policy_versions) == [3] * self.length


@pytest.fixture
def transitions(ros_node):
    pub = ros_node.create_publisher(Transition, "/conrft/transitions", QOS)

    def send(episode: FakeEpisode, steps=None):
        for t in steps if steps is not None else range(episode.length):
            pub.publish(episode.message(t))

    send.connected = lambda: ros_node.spin_until(lambda: pub.get_subscription_count() > 0, 20)
    return send


def final_log(proc) -> str:
    """The process's whole output after stop() (which closes the fixture's handle on the log)."""
    return Path(proc.log_path).read_text()


def wait_log(ros_node, proc, text, timeout=20.0):
    assert ros_node.spin_until(lambda: text in proc.output(), timeout), f"'{text}' not logged:\n{proc.output()}"


def test_keeps_only_successful_episodes(ros_process, ros_node, transitions, tmp_path):
    out = tmp_path / "demos"
    proc = ros_process(NODE, "--params-file", str(PARAMS), "-p", f"output:={out}")
    assert transitions.connected(), proc.output()
    good, failed, partial = FakeEpisode(1, 5, True, 0), FakeEpisode(2, 3, False, 1), FakeEpisode(3, 4, True, 2)
    transitions(good)
    transitions(partial, steps=range(2))  # no end: still in progress when the recorder stops
    transitions(failed)
    wait_log(ros_node, proc, "episode 2 (3 steps) did not succeed: discarded")
    assert "episode 1 kept (5 steps, success): 1 episode(s)" in proc.output()
    assert not out.exists()  # written to a hidden partial folder until closed
    proc.stop()  # SIGINT
    assert proc.proc.returncode == 0, final_log(proc)
    assert "1 episode(s) in progress dropped: [3]" in final_log(proc)
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8 and meta["storage_identifier"] == "mcap" and meta["message_count"] == 5
    episodes = read_episodes(out)
    assert len(episodes) == 1
    good.assert_equal(episodes[0])


def test_keep_all_and_max_episodes(ros_process, ros_node, transitions, tmp_path):
    out = tmp_path / "all"
    proc = ros_process(NODE, "-p", f"output:={out}", "-p", "keep:=all", "-p", "max_episodes:=2")
    assert transitions.connected(), proc.output()
    good, failed = FakeEpisode(7, 4, True, 3), FakeEpisode(8, 2, False, 4)
    transitions(good)
    transitions(failed)
    assert proc.wait(timeout=20) == 0, proc.output()  # finishes by itself after max_episodes
    assert "max_episodes (2) reached" in proc.output()
    episodes = read_episodes(out)
    assert [e.episode_id for e in episodes] == [7, 8]
    good.assert_equal(episodes[0])
    failed.assert_equal(episodes[1])
    assert not episodes[1].success and episodes[1].terminated


def test_record_service_stops_and_starts(ros_process, ros_node, transitions, tmp_path):
    out = tmp_path / "service"
    proc = ros_process(NODE, "-p", f"output:={out}")
    record = ros_node.create_client(SetBool, "/demo_recorder/record")
    assert record.wait_for_service(timeout_sec=20), proc.output()
    assert transitions.connected(), proc.output()

    def call(on: bool) -> str:
        future = record.call_async(SetBool.Request(data=on))
        assert ros_node.spin_until(future.done, 10)
        assert future.result().success
        return future.result().message

    cut = FakeEpisode(4, 5, True, 5)
    transitions(cut, steps=range(3))
    wait_log(ros_node, proc, "episode 4: recording from step 0")
    assert call(False) == "recording stopped; 1 episode(s) in progress dropped [4]"
    assert call(False) == "already stopped"
    ignored = FakeEpisode(5, 3, True, 6)
    transitions(ignored)
    wait_log(ros_node, proc, "episode 5: not recording, ignored")
    assert call(True) == "recording started"
    transitions(cut, steps=range(3, 5))  # the end of an episode whose start was dropped
    wait_log(ros_node, proc, "episode 4 incomplete (steps [3, 4]")
    kept = FakeEpisode(6, 3, True, 7)
    transitions(kept)
    wait_log(ros_node, proc, "episode 6 kept")
    proc.stop()
    assert proc.proc.returncode == 0, final_log(proc)
    episodes = read_episodes(out)
    assert [e.episode_id for e in episodes] == [6]
    kept.assert_equal(episodes[0])


def test_nothing_kept_writes_no_bag_and_bad_parameters(ros_process, ros_node, tmp_path):
    out = tmp_path / "empty"
    proc = ros_process(NODE, "-p", f"output:={out}", "-p", "autostart:=false")
    wait_log(ros_node, proc, "waiting: call ~/record with true")
    proc.stop()
    assert proc.proc.returncode == 0, final_log(proc)
    assert "no episode kept; no bag written" in final_log(proc)
    assert not out.exists() and not (tmp_path / ".empty.partial").exists()

    missing = ros_process(NODE)
    assert missing.wait(timeout=30) == 1
    assert "demo_recorder: error: parameter 'output' is required" in missing.output()
    (tmp_path / "exists").mkdir()
    exists = ros_process(NODE, "-p", f"output:={tmp_path / 'exists'}")
    assert exists.wait(timeout=30) == 1
    assert "parameter 'output'" in exists.output() and "already exists" in exists.output()
    keep = ros_process(NODE, "-p", f"output:={out}", "-p", "keep:=failures")
    assert keep.wait(timeout=30) == 1
    assert "parameter 'keep' is 'failures'" in keep.output()
    (tmp_path / "a_file").write_text("")
    unwritable = ros_process(NODE, "-p", f"output:={tmp_path / 'a_file' / 'bag'}")
    assert unwritable.wait(timeout=30) == 1
    assert "cannot create the bag (parameter 'output')" in unwritable.output()


def test_parameter_file_lists_every_parameter():
    from conrft_bringup.demo_recorder import PARAMS as DECLARED

    assert set(yaml.safe_load(PARAMS.read_text())["demo_recorder"]["ros__parameters"]) == set(DECLARED)


def test_keys_in_a_terminal(ros_node, transitions, tmp_path):
    """`r` toggles recording and `q` finishes, when the recorder runs in the foreground of a terminal (a pty
    here); the terminal's settings are restored on exit."""
    import fcntl
    import os
    import pty
    import signal
    import subprocess
    import sys
    import termios

    out = tmp_path / "keys"
    master, slave = pty.openpty()
    saved = termios.tcgetattr(slave)
    log_path = tmp_path / "recorder_keys.log"

    def controlling_terminal():  # in the child: new session with the pty as its terminal, in the foreground
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", NODE, "--ros-args", "-p", f"output:={out}"], stdin=slave,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=controlling_terminal)
    try:
        def wait(text):
            assert ros_node.spin_until(lambda: text in log_path.read_text(), 20), log_path.read_text()

        wait("keys: r = start/stop recording, q = finish and exit")
        assert transitions.connected()
        os.write(master, b"r")
        wait("recording stopped")
        transitions(FakeEpisode(1, 2, True, 8))
        wait("episode 1: not recording, ignored")
        os.write(master, b"r")
        wait("recording started")
        kept = FakeEpisode(2, 3, True, 9)
        transitions(kept)
        wait("episode 2 kept")
        os.write(master, b"q")
        assert proc.wait(timeout=20) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        restored = termios.tcgetattr(slave)
        os.close(master)
        os.close(slave)
    assert restored[3] == saved[3]  # lflag: canonical mode and echo back on
    assert [e.episode_id for e in read_episodes(out)] == [2]
    kept.assert_equal(read_episodes(out)[0])


def test_bag_writer_serialized_messages(tmp_path):
    """EpisodeBagWriter.write_serialized, as the recorder uses it: rclpy's CDR bytes go in unchanged."""
    from rclpy.serialization import serialize_message

    from conrft_core.data.bags import TRANSITION_TYPE, TRANSITIONS_TOPIC, BagError, EpisodeBagWriter

    ep = FakeEpisode(3, 2, True, 10)
    with EpisodeBagWriter(tmp_path / "bag") as writer:
        for t in range(ep.length):
            writer.write_serialized(TRANSITIONS_TOPIC, TRANSITION_TYPE, serialize_message(ep.message(t)), t)
        with pytest.raises(BagError, match="already holds conrft_interfaces/msg/Transition messages"):
            writer.write_serialized(TRANSITIONS_TOPIC, "std_msgs/msg/String", b"", 5)
        with pytest.raises(BagError, match="'my_pkg/msg/Thing' is unknown to the bag typestore"):
            writer.write_serialized("/thing", "my_pkg/msg/Thing", b"", 5)
    ep.assert_equal(read_episodes(tmp_path / "bag")[0])
    with pytest.raises(BagError, match="not open"):
        EpisodeBagWriter(tmp_path / "closed").write_serialized(TRANSITIONS_TOPIC, TRANSITION_TYPE, b"", 0)
