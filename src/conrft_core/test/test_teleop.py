"""Teleop device mappings: SpaceMouse takeover/release, buttons, clipping; keyboard keys, toggles, outcomes."""
import numpy as np
import pytest

from conrft_core.robot.teleop import (KEY_AXES, HumanLockstep, Keyboard, SingleSource, SpaceMouse, SpaceMouseConfig,
                                      TeleopHeartbeat)


def mouse(**kw):
    return SpaceMouse(SpaceMouseConfig(**kw))


# ---------------------------------------------------------------------------------------------- SpaceMouse
def test_spacemouse_starts_idle_with_the_gripper_open():
    active, action, outcome = SpaceMouse().command(0.0)
    assert not active and outcome == 0
    np.testing.assert_array_equal(action, [0, 0, 0, 0, 0, 0, 1.0])


def test_spacemouse_deadband_neither_takes_over_nor_moves():
    m = mouse(deadband=0.1)
    m.on_twist([0.05, -0.09, 0.0, 0.08, 0.0, -0.1], now=0.0)  # hand resting on the puck
    active, action, _ = m.command(0.0)
    assert not active
    np.testing.assert_array_equal(action[:6], 0.0)


def test_spacemouse_motion_takes_over_and_small_axes_are_zeroed():
    m = mouse(deadband=0.1)
    m.on_twist([0.5, 0.05, -0.3, 0.0, 0.2, -0.09], now=1.0)
    active, action, outcome = m.command(1.0)
    assert active and outcome == 0
    np.testing.assert_allclose(action, [0.5, 0.0, -0.3, 0.0, 0.2, 0.0, 1.0])


def test_spacemouse_releases_after_release_after_seconds_at_rest():
    m = mouse(deadband=0.05, release_after=0.5)
    m.on_twist([0.4, 0, 0, 0, 0, 0], now=10.0)
    m.on_twist([0.0] * 6, now=10.1)  # at rest from here on
    assert m.command(10.3)[0]
    assert m.command(10.5)[0]  # exactly 0.5 s since the last motion: still held
    active, action, _ = m.command(10.51)
    assert not active
    np.testing.assert_array_equal(action[:6], 0.0)
    # New motion takes over again, and the rest clock restarts from it.
    m.on_twist([0, 0, -0.6, 0, 0, 0], now=11.0)
    assert m.command(11.4)[0]
    m.on_twist([0, 0, -0.6, 0, 0, 0], now=11.4)  # still moving
    assert m.command(11.8)[0]
    assert not m.command(11.95)[0]


def test_spacemouse_gripper_toggles_on_the_rising_edge_only():
    m = mouse(button_gripper=0, button_success=1)
    m.on_buttons([1, 0], now=0.0)
    active, action, _ = m.command(0.0)
    assert action[6] == -1.0 and active  # pressing the gripper button is an intervention too
    m.on_buttons([1, 0], now=0.1)  # held: no new toggle
    m.on_buttons([1, 0], now=0.2)
    assert m.command(0.2)[1][6] == -1.0
    m.on_buttons([0, 0], now=0.3)  # released: no toggle
    assert m.command(0.3)[1][6] == -1.0
    m.on_buttons([1, 0], now=0.4)  # pressed again: opens
    assert m.command(0.4)[1][6] == 1.0


def test_spacemouse_success_and_failure_buttons_give_a_one_shot_outcome():
    m = mouse(button_gripper=0, button_success=1, button_failure=2)
    m.on_buttons([0, 1, 0], now=0.0)
    assert m.command(0.0)[2] == 1
    assert m.command(0.1)[2] == 0  # reported once
    m.on_buttons([0, 1, 0], now=0.2)  # still held: no second verdict
    assert m.command(0.2)[2] == 0
    m.on_buttons([0, 0, 1], now=0.3)
    active, action, outcome = m.command(0.3)
    assert outcome == -1 and m.command(0.4)[2] == 0
    assert not active and action[6] == 1.0  # verdict buttons neither take over nor touch the gripper


def test_spacemouse_without_a_failure_button_never_reports_failure():
    m = mouse(button_gripper=0, button_success=1)  # button_failure -1: none
    m.on_buttons([0, 0, 1, 1], now=0.0)
    _, action, outcome = m.command(0.0)
    assert outcome == 0 and action[6] == 1.0


def test_spacemouse_scale_and_clipping():
    m = mouse(scale=2.0, deadband=0.05)
    m.on_twist([0.3, -0.8, 0.0, 2.0, -0.1, 0.0], now=0.0)
    _, action, _ = m.command(0.0)
    np.testing.assert_allclose(action[:6], [0.6, -1.0, 0.0, 1.0, -0.2, 0.0])
    m.on_twist([np.nan, 0, 0, 0, 0, 0.2], now=0.1)  # a NaN from the driver is no motion, not a NaN command
    _, action, _ = m.command(0.1)
    assert np.all(np.isfinite(action))
    np.testing.assert_allclose(action[:6], [0, 0, 0, 0, 0, 0.4])


@pytest.mark.parametrize("kw", [{"deadband": 1.0}, {"deadband": -0.1}, {"scale": 0.0},
                                {"scale": float("nan")}, {"release_after": -1.0}])
def test_spacemouse_config_validation(kw):
    with pytest.raises(ValueError, match="spacenav"):
        SpaceMouseConfig(**kw)


# ------------------------------------------------------------------------------------------------ Keyboard
def test_keyboard_key_moves_for_key_hold_then_stops():
    kb = Keyboard(speed=0.5, key_hold=0.15)
    assert not kb.command(0.0)[0]
    kb.on_key("w", now=1.0)
    active, action, outcome = kb.command(1.05)
    assert active and outcome == 0
    np.testing.assert_allclose(action, [0.5, 0, 0, 0, 0, 0, 1.0])
    assert kb.command(1.15)[1][0] == 0.5  # key_hold reached, still moving
    active, action, _ = kb.command(1.2)
    assert active  # control stays with the human until space hands it back
    np.testing.assert_array_equal(action[:6], 0.0)
    kb.on_key("w", now=1.3)  # a repeat re-arms it
    assert kb.command(1.4)[1][0] == 0.5


def test_keyboard_each_key_drives_its_own_axis_and_sign():
    for key, (axis, sign) in KEY_AXES.items():
        kb = Keyboard(speed=0.25)
        kb.on_key(key, now=0.0)
        expected = np.zeros(7)
        expected[axis], expected[6] = sign * 0.25, 1.0
        np.testing.assert_allclose(kb.command(0.0)[1], expected, err_msg=key)
    assert sorted(a for a, _ in KEY_AXES.values()) == sorted(list(range(6)) * 2)


def test_keyboard_keys_on_several_axes_combine():
    kb = Keyboard(speed=1.0, key_hold=0.15)
    kb.on_key("d", now=0.0)
    kb.on_key("f", now=0.1)
    np.testing.assert_allclose(kb.command(0.12)[1][:3], [0, -1, -1])
    np.testing.assert_allclose(kb.command(0.2)[1][:3], [0, 0, -1])  # d expired, f still held
    kb.on_key("s", now=0.3)
    kb.on_key("w", now=0.31)  # the later key on an axis wins
    assert kb.command(0.32)[1][0] == 1.0


def test_keyboard_space_toggles_active():
    kb = Keyboard()
    kb.on_key(" ", now=0.0)
    assert kb.command(0.0)[0]
    kb.on_key(" ", now=0.1)
    assert not kb.command(0.1)[0]
    kb.on_key("a", now=0.2)  # a motion key takes over
    assert kb.command(0.2)[0]
    kb.on_key(" ", now=0.3)
    assert not kb.command(0.3)[0]


def test_keyboard_g_toggles_the_gripper():
    kb = Keyboard()
    kb.on_key("g", now=0.0)
    assert kb.command(0.0)[1][6] == -1.0
    assert kb.command(5.0)[1][6] == -1.0  # it stays closed
    kb.on_key("g", now=5.1)
    assert kb.command(5.1)[1][6] == 1.0


def test_keyboard_outcome_is_one_shot():
    kb = Keyboard()
    kb.on_key("y", now=0.0)
    assert kb.command(0.0)[2] == 1
    assert kb.command(0.05)[2] == 0
    kb.on_key("n", now=0.1)
    assert kb.command(0.1)[2] == -1
    assert kb.command(0.2)[2] == 0


def test_keyboard_q_quits_and_unknown_keys_do_nothing():
    kb = Keyboard()
    kb.on_key("z", now=0.0)
    kb.on_key("\x1b", now=0.0)
    active, action, outcome = kb.command(0.0)
    assert not kb.quit and not active and outcome == 0
    np.testing.assert_array_equal(action, [0, 0, 0, 0, 0, 0, 1.0])
    kb.on_key("q", now=0.1)
    assert kb.quit


@pytest.mark.parametrize("speed", [0.0, -0.5, 1.5])
def test_keyboard_invalid_speed_raises(speed):
    with pytest.raises(ValueError, match=r"keyboard speed must be in \(0, 1\]"):
        Keyboard(speed=speed)


def test_single_source_obeys_the_configured_teleop_only():
    guard = SingleSource("teleop")
    publishers = [("teleop", b"\x01"), ("intruder", b"\x02")]
    assert guard.check(b"\x01", publishers) is None  # the configured teleop drives on, whoever else appears
    assert "node 'intruder', not the configured teleop 'teleop'" in guard.check(b"\x02", publishers)
    assert not guard.known(b"\x03", publishers) and "not named yet" in guard.check(b"\x03", publishers)
    early = [("_NODE_NAME_UNKNOWN_", b"\x01")]  # discovery has the endpoint but not its node's name yet
    assert not guard.known(b"\x01", early) and guard.check(b"\x01", early) is not None


def test_single_source_without_a_configured_name_refuses_everyone_once_two_publish():
    guard = SingleSource()
    assert guard.check(b"\x01", [("teleop", b"\x01")]) is None
    reason = guard.check(b"\x01", [("teleop", b"\x01"), ("intruder", b"\x02")])
    assert "2 nodes ('intruder', 'teleop')" in reason


def heartbeat_until(beat, end, period=0.02, start=0.0):
    """A 50 Hz teleop sending from `start` to `end` (s), each message received as it is sent."""
    t = start
    while t <= end + 1e-9:
        beat.message(t, sent=t)
        t += period


def test_a_stalled_receiver_is_not_a_silent_teleop():
    """The node's executor stalls 0.26 s while the teleop sends on: the watchdog's timer runs first (one stale
    look), then the waiting messages come; no hold, and the gaps show the sender was regular."""
    beat = TeleopHeartbeat(timeout=0.1)
    heartbeat_until(beat, 1.0)
    assert not beat.look(1.26, driving=True)  # the first look after the stall: stale, but only once
    for k in range(13):  # the 13 messages sent during the stall, served after the timer
        beat.message(1.26 + 1e-4 * k, sent=1.02 + 0.02 * k)
    assert not beat.look(1.28, driving=True)
    assert beat.holds == 0 and not beat.silent
    assert "max 260.0 ms (sent p50 20.0 / p99 20.0 / max 20.0 ms); 0 teleop-silent hold(s)" in beat.summary()


def test_a_teleop_that_stops_is_held_within_the_timeout_and_two_looks():
    beat = TeleopHeartbeat(timeout=0.1)
    heartbeat_until(beat, 1.0)
    looks = [1.0 + 0.02 * k for k in range(1, 11)]  # the watchdog every 20 ms after the last message
    silent = [beat.look(t, driving=True) for t in looks]
    first = looks[silent.index(True)]
    assert 1.1 < first <= 1.1 + 2 * 0.02 + 1e-9 and all(silent[silent.index(True):])
    assert beat.holds == 1  # one hold, however many looks find it silent
    beat.message(1.3, sent=1.3)  # it comes back
    assert not beat.silent and not beat.look(1.32, driving=True)
    assert beat.summary().endswith("; 1 teleop-silent hold(s)")


def test_silence_counts_only_while_the_teleop_drives():
    beat = TeleopHeartbeat(timeout=0.1)
    assert not beat.look(5.0, driving=True) and beat.summary() is None  # nothing received yet
    beat.message(0.0)
    assert not any(beat.look(t, driving=False) for t in (1.0, 1.02, 1.04))
    assert not beat.look(1.06, driving=True)  # the first look while driving
    assert beat.look(1.08, driving=True) and beat.holds == 1
    assert beat.summary() is None  # one message: no gap yet


def test_a_step_waiting_for_the_human_acts_on_its_answer_and_a_stalled_receiver_still_gets_it():
    wait = HumanLockstep(timeout=0.2)
    wait.wait((5, 0), "step 5", now=1.0)
    assert wait.answer((4, 0), now=1.01) is None  # the answer to another transition
    assert wait.answer((5, 0), now=1.03) == "step 5" and wait.answer((5, 0), now=1.04) is None
    wait.wait((6, 0), "step 6", now=2.0)
    assert wait.look(2.5) is None  # the node stalled 0.5 s: its timer runs before the answer waiting meanwhile
    assert wait.answer((6, 0), now=2.5) == "step 6" and wait.late == 0
    assert wait.summary() == "2 answers, waited p50 265.0 / p99 495.3 / max 500.0 ms; 0 late (acted on the previous " \
                             "command)"


def test_an_unanswered_step_acts_late_after_the_timeout_and_two_looks_or_when_the_next_is_due():
    wait = HumanLockstep(timeout=0.2)
    assert HumanLockstep(0.2).summary() is None and wait.look(9.0) is None and wait.give_up() is None  # none waits
    wait.wait((1, 0), "step 1", now=0.0)
    looks = [0.02 * k for k in range(1, 16)]  # the watchdog every 20 ms
    released = [wait.look(t) for t in looks]
    first = released.index("step 1")
    assert 0.2 < looks[first] <= 0.2 + 2 * 0.02 + 1e-9 and released.count("step 1") == 1
    wait.wait((2, 0), "step 2", now=1.0)
    assert wait.give_up() == "step 2" and wait.answer((2, 0), now=1.01) is None  # it acted: the answer is too late
    assert wait.late == 2 and wait.summary() == "0 answers; 2 late (acted on the previous command)"
