"""Target streaming between control steps: the profiles, the limits, the safety box and holds."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from conrft_core.robot.spaces import SafetyBox
from conrft_core.robot.streaming import StreamConfig, TargetStreamer, progress

BOX = SafetyBox((-1.0, -1.0, 0.0), (1.0, 1.0, 1.0))
Q0 = np.array([1.0, 0.0, 0.0, 0.0])


def stream(streamer, t0, t1, rate=100.0):
    times = t0 + np.arange(1, round((t1 - t0) * rate) + 1) / rate
    return times, [streamer.sample(t) for t in times]


def test_profiles_start_and_end_at_rest():
    assert progress(0.5, "linear") == 0.5 and progress(2.0, "linear") == 1.0
    assert progress(0.0, "min_jerk") == 0.0 and progress(1.0, "min_jerk") == pytest.approx(1.0)
    assert progress(0.5, "min_jerk") == pytest.approx(0.5)  # symmetric
    assert progress(0.01, "min_jerk") < 0.01 * 0.01  # starts slower than linear


@pytest.mark.parametrize("profile", ["linear", "min_jerk"])
def test_a_step_target_is_reached_within_the_control_period(profile):
    cfg = StreamConfig(profile=profile, max_accel=100.0)
    s = TargetStreamer(cfg, BOX, [0.5, 0.0, 0.5], Q0, now=0.0)
    goal = Rotation.from_rotvec([0.0, 0.0, 0.1])
    s.set_target([0.51, 0.0, 0.5], goal.as_quat(scalar_first=True), now=0.0)
    times, poses = stream(s, 0.0, 0.1)
    assert len(poses) == 10
    np.testing.assert_allclose(poses[-1][0], [0.51, 0.0, 0.5], atol=1e-9)
    assert Rotation.from_quat(poses[-1][1], scalar_first=True).approx_equal(goal, atol=1e-9)
    xs = [p[0][0] for p in poses]
    assert all(b >= a for a, b in zip(xs, xs[1:]))  # monotone, no overshoot
    if profile == "linear":
        np.testing.assert_allclose(np.diff([0.5, *xs]), 0.001, atol=1e-9)  # 1 mm per 10 ms tick


def test_speed_acceleration_and_angular_speed_limits():
    cfg = StreamConfig(max_speed=0.1, max_accel=2.0, max_angular_speed=1.0)
    s = TargetStreamer(cfg, BOX, [0.0, 0.0, 0.5], Q0, now=0.0)
    s.set_target([0.3, 0.0, 0.5], Rotation.from_rotvec([0.0, 0.0, 1.0]).as_quat(scalar_first=True), now=0.0)
    times, poses = stream(s, 0.0, 3.5)  # 0.3 m at 0.1 m/s
    pos = np.array([[0.0, 0.0, 0.5]] + [p for p, _ in poses])
    vel = np.diff(pos, axis=0) * 100.0
    assert np.linalg.norm(vel, axis=1).max() <= 0.1 + 1e-9
    assert np.linalg.norm(np.diff(vel, axis=0), axis=1).max() * 100.0 <= 2.0 + 1e-6
    rots = [Rotation.identity()] + [Rotation.from_quat(q, scalar_first=True) for _, q in poses]
    steps = [(a.inv() * b).magnitude() for a, b in zip(rots, rots[1:])]
    assert max(steps) <= 1.0 / 100.0 + 1e-9
    assert pos[-1][0] == pytest.approx(0.3, abs=1e-9)  # still arrives, later


def test_every_streamed_pose_stays_in_the_safety_box_and_a_hold_stops_at_once():
    s = TargetStreamer(StreamConfig(max_speed=10.0, max_accel=1000.0), BOX, [0.9, 0.0, 0.5], Q0, now=0.0)
    s.set_target([1.5, 0.0, -0.2], Q0, now=0.0)
    _, poses = stream(s, 0.0, 0.2)
    assert all(BOX.clip(p).tolist() == p.tolist() for p, _ in poses)
    np.testing.assert_allclose(poses[-1][0], [1.0, 0.0, 0.0])
    s.set_target([0.0, 0.0, 0.5], Q0, now=0.2)
    stream(s, 0.2, 0.25)
    s.hold([0.7, 0.1, 0.4], Q0, now=0.25)
    _, held = stream(s, 0.25, 0.35)
    assert all(np.allclose(p, [0.7, 0.1, 0.4]) for p, _ in held)


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="stream.max_speed"):
        StreamConfig(max_speed=0.0)
    with pytest.raises(ValueError, match="stream.profile"):
        StreamConfig(profile="cubic")
    with pytest.raises(ValueError, match="at least one streamed target per control step"):
        StreamConfig(stream_rate=5.0)
