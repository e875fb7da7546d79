"""The target streamer's rules without ROS: holds, step targets, stops, the policy node's silence, the parameters it
takes from the policy node and the errors naming a bad one."""
from pathlib import Path

import numpy as np
import pytest

from conrft_core.config import ConfigError
from conrft_core.robot.node_params import file_parameters
from conrft_core.robot.relay import (FROM_POLICY, HOLD, STOP, TARGET, RelayError, relay_from_parameters,
                                     streamer_parameters)

CONFIG = Path(__file__).resolve().parents[3] / "config"
Q0 = np.array([1.0, 0.0, 0.0, 0.0])
PARAMS = {"control_rate": 10.0, "stream_rate": 100.0, "stream_profile": "linear", "stream_max_speed": 0.25,
          "stream_max_accel": 5.0, "stream_max_angular_speed": 2.0, "stream_priority": 0, "stream_timeout": 0.5,
          "safety_box_low": [0.3, -0.2, 0.01], "safety_box_high": [0.7, 0.2, 0.35]}


def relay(**changes):
    return relay_from_parameters({**PARAMS, **changes})


def ticks(r, t0, t1, rate=100.0):
    return [r.sample(t) for t in t0 + np.arange(1, round((t1 - t0) * rate) + 1) / rate]


def test_a_hold_is_streamed_at_once_and_a_step_target_over_one_control_period():
    r = relay(stream_max_accel=100.0)
    pos, _ = r.receive(HOLD, [0.5, 0.0, 0.2], Q0, now=0.0)
    np.testing.assert_allclose(pos, [0.5, 0.0, 0.2])
    assert all(np.allclose(p, [0.5, 0.0, 0.2]) for p, _ in ticks(r, 0.0, 0.05))  # held until told otherwise
    first, _ = r.receive(TARGET, [0.51, 0.0, 0.2], Q0, now=0.05)
    np.testing.assert_allclose(first, [0.5, 0.0, 0.2])  # the segment starts where the stream is
    xs = [p[0] for p, _ in ticks(r, 0.05, 0.15)]
    np.testing.assert_allclose(np.diff([0.5, *xs]), 0.001, atol=1e-9)  # 1 mm per 10 ms tick, then there
    r.receive(HOLD, [0.505, 0.0, 0.2], Q0, now=0.15)  # a hold mid-episode: at the measured pose at once
    assert all(np.allclose(p, [0.505, 0.0, 0.2]) for p, _ in ticks(r, 0.15, 0.25))


def test_on_a_robot_a_step_target_waits_for_the_next_tick():
    """Wall clock: the controller gets poses on the stream's grid only; the segment still starts at receipt."""
    r = relay(stream_max_accel=100.0)
    r.receive(HOLD, [0.5, 0.0, 0.2], Q0, now=0.0)
    assert r.receive(TARGET, [0.51, 0.0, 0.2], Q0, now=0.005, target_at_once=False) is None
    xs = [p[0] for p, _ in ticks(r, 0.005, 0.105)]
    np.testing.assert_allclose(np.diff([0.5, *xs]), 0.001, atol=1e-9)  # 1 mm a tick from the first one on
    assert r.receive(HOLD, [0.505, 0.0, 0.2], Q0, now=0.2, target_at_once=False) is not None  # holds: at once


def test_a_step_target_stamped_ahead_starts_at_its_stamp_and_a_hold_drops_it():
    """action_deadline: a target that came early waits; its segment starts at its start, not at receipt or at the
    tick that found it due: however long a step's inference took, the stream is the same."""
    def stream(received: float) -> list:
        r = relay(stream_max_accel=100.0)
        r.receive(HOLD, [0.5, 0.0, 0.2], Q0, now=0.0)
        split = np.floor(received * 100) / 100  # the stream's last tick before the target came
        poses = ticks(r, 0.0, split)
        assert r.receive(TARGET, [0.51, 0.0, 0.2], Q0, now=received, target_at_once=False, start=0.045) is None
        return poses + ticks(r, split, 0.2)

    fast, slow = stream(received=0.013), stream(received=0.042)
    np.testing.assert_allclose([p for p, _ in fast], [p for p, _ in slow], atol=1e-12)
    xs = [p[0] for p, _ in fast]  # ticks at 0.01, 0.02, ...: 0.05 is the first after the start, half a tick in
    np.testing.assert_allclose(np.diff([0.5, *xs])[:6], [0, 0, 0, 0, 0.0005, 0.001], atol=1e-9)
    np.testing.assert_allclose(xs[14:], 0.51, atol=1e-9)  # there from 0.145 on

    r = relay(stream_max_accel=100.0)
    r.receive(HOLD, [0.5, 0.0, 0.2], Q0, now=0.0)
    r.receive(TARGET, [0.55, 0.0, 0.2], Q0, now=0.01, target_at_once=False, start=0.05)
    r.receive(HOLD, [0.505, 0.0, 0.2], Q0, now=0.02)  # a hold drops the target still waiting
    assert all(np.allclose(p, [0.505, 0.0, 0.2]) for p, _ in ticks(r, 0.02, 0.2))
    r.receive(TARGET, [0.515, 0.0, 0.2], Q0, now=0.2, target_at_once=False, start=0.15)  # after its start
    np.testing.assert_allclose(r.sample(0.21)[0], [0.506, 0.0, 0.2], atol=1e-9)  # begins at receipt


def test_nothing_is_streamed_after_a_stop_until_the_next_hold():
    r = relay()
    assert r.sample(0.0) is None  # nothing before the first hold
    with pytest.raises(RelayError, match="step target without a hold since the last stop"):
        r.receive(TARGET, [0.5, 0.0, 0.2], Q0, now=0.0)
    r.receive(HOLD, [0.5, 0.0, 0.2], Q0, now=0.0)
    r.receive(TARGET, [0.51, 0.0, 0.2], Q0, now=0.1)
    assert r.receive(STOP, [0.0, 0.0, 0.0], Q0, now=0.15) is None
    assert ticks(r, 0.15, 0.5) == [None] * 35
    with pytest.raises(RelayError, match="without a hold"):  # the reset moved the arm since: not from there
        r.receive(TARGET, [0.51, 0.0, 0.2], Q0, now=0.5)
    pos, _ = r.receive(HOLD, [0.4, 0.1, 0.3], Q0, now=0.6)  # the next episode starts where the arm is
    np.testing.assert_allclose(pos, [0.4, 0.1, 0.3])


def test_the_stream_falls_silent_when_the_policy_node_does_and_resumes_where_it_was():
    r = relay(stream_timeout=0.3)
    r.receive(HOLD, [0.5, 0.0, 0.2], Q0, now=0.0)
    r.receive(TARGET, [0.51, 0.0, 0.2], Q0, now=0.0)
    poses = ticks(r, 0.0, 0.6)
    assert all(p is not None for p in poses[:30]) and poses[30:] == [None] * 30
    assert r.silent(0.31) and not r.streaming(0.31)
    resumed, _ = r.receive(TARGET, [0.52, 0.0, 0.2], Q0, now=0.6)  # a late step: no hold needed
    np.testing.assert_allclose(resumed, [0.51, 0.0, 0.2])
    assert not r.silent(0.65) and r.sample(0.65) is not None


def test_bad_messages_are_refused_and_every_pose_stays_in_the_box():
    r = relay()
    with pytest.raises(RelayError, match="non-finite pose"):
        r.receive(HOLD, [np.nan, 0.0, 0.2], Q0, now=0.0)
    with pytest.raises(RelayError, match="zero quaternion"):
        r.receive(HOLD, [0.5, 0.0, 0.2], [0.0, 0.0, 0.0, 0.0], now=0.0)
    with pytest.raises(RelayError, match="unknown command 7"):
        r.receive(7, [0.5, 0.0, 0.2], Q0, now=0.0)
    r.receive(HOLD, [0.5, 0.0, 0.2], Q0, now=0.0)
    r.receive(TARGET, [0.51, 0.0, 0.2], Q0, now=0.01, target_at_once=False, start=0.05)
    with pytest.raises(RelayError, match="non-finite pose"):
        r.receive(TARGET, [0.5, np.inf, 0.2], Q0, now=0.02)
    np.testing.assert_allclose(r.sample(0.15)[0], [0.51, 0.0, 0.2], atol=1e-9)  # the waiting target still went
    pos, _ = r.receive(HOLD, [0.9, 0.0, -0.1], Q0, now=0.0)  # measured outside the box: clipped
    np.testing.assert_allclose(pos, [0.7, 0.0, 0.01])
    r.receive(TARGET, [0.9, 0.5, 0.5], Q0, now=0.0)
    for p, _ in ticks(r, 0.0, 0.3):
        assert np.all(p >= [0.3, -0.2, 0.01]) and np.all(p <= [0.7, 0.2, 0.35])


@pytest.mark.parametrize("changes, message", [
    ({"control_rate": 0.0}, "parameter 'control_rate' must be a positive number"),
    ({"stream_rate": 5.0}, "parameter 'stream_rate' must give at least one streamed target per control step"),
    ({"stream_rate": 0.0}, "parameter 'stream_rate' must be a positive finite number"),
    ({"stream_profile": "cubic"}, "parameter 'stream_profile' must be linear or min_jerk"),
    ({"stream_max_speed": -1.0}, "parameter 'stream_max_speed' must be a positive finite number"),
    ({"stream_max_angular_speed": float("inf")}, "parameter 'stream_max_angular_speed'"),
    ({"stream_timeout": 0.05}, "parameter 'stream_timeout' must be at least one control period"),
    ({"stream_priority": 100}, "parameter 'stream_priority' must be 0 (normal) or a SCHED_FIFO priority 1-99"),
    ({"safety_box_low": [0.3, -0.2]}, "parameters 'safety_box_low' / 'safety_box_high'"),
])
def test_bad_parameters_are_refused_naming_them(changes, message):
    with pytest.raises(ConfigError) as exc:
        relay(**changes)
    assert message in str(exc.value)


def test_the_streamer_takes_the_policy_nodes_parameters_where_it_streams():
    real = file_parameters([CONFIG / "policy_real.yaml", CONFIG / "controllers" / "franka_ros2.yaml"], "policy")
    shared = streamer_parameters(real)
    assert set(shared) == set(FROM_POLICY)
    assert shared["target_topic"] == "/cartesian_impedance_example_controller/equilibrium_pose"  # the preset wins
    assert shared["safety_box_low"] == real["safety_box_low"] and shared["stream_rate"] == 100.0
    assert shared["reset_node"] == "home_reset" and shared["frame_id"] == "fr3_link0"
    # The sim preset sends one target per step: no streamer; neither does the sim's own file.
    assert streamer_parameters(file_parameters([CONFIG / "policy_real.yaml", CONFIG / "controllers" / "sim.yaml"],
                                               "policy")) is None
    assert streamer_parameters(file_parameters([CONFIG / "policy_sim.yaml"], "policy")) is None
    assert streamer_parameters({}) is None
    with pytest.raises(ConfigError, match="'stream_rate' must be a number of Hz, got '100'"):
        streamer_parameters({"stream_rate": "100"})


def test_file_parameters_merge_a_nodes_blocks_in_order(tmp_path):
    a, b, bad = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "bad.yaml"
    a.write_text("policy:\n  ros__parameters: {stream_rate: 0.0, frame_id: base}\nsim:\n  ros__parameters: {}\n")
    b.write_text("policy:\n  ros__parameters: {stream_rate: 50.0}\n")
    bad.write_text("policy: {stream_rate: 50.0}\n")
    assert file_parameters([a, b], "policy") == {"stream_rate": 50.0, "frame_id": "base"}
    assert file_parameters([b], "sim") == {}
    with pytest.raises(ConfigError, match="block 'policy' must hold one mapping, 'ros__parameters'"):
        file_parameters([bad], "policy")
