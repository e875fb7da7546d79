"""The robot I/O contract: action scaling, frames, clipping, gripper mapping, validation, proprio layout."""
import math
import re

import numpy as np
import pytest

from conrft_core.robot.spaces import (
    ACTION_DIM,
    PROPRIO_DIM,
    PROPRIO_NAMES,
    ActionScale,
    SafetyBox,
    action_to_target,
    proprio_vector,
)

DOWN = np.array([0.0, 1.0, 0.0, 0.0])  # wxyz, 180 deg about x: tool pointing down
BOX = SafetyBox(low=(0.2, -0.3, 0.0), high=(0.8, 0.3, 0.5))
SCALE = ActionScale()


def _action(**kw):
    a = np.zeros(ACTION_DIM)
    for i, name in enumerate(("dx", "dy", "dz", "rx", "ry", "rz", "grip")):
        a[i] = kw.get(name, 0.0)
    return a


def test_zero_action_keeps_pose_and_half_opens():
    pos, quat, width = action_to_target(_action(), [0.5, 0.0, 0.2], DOWN, SCALE, BOX)
    np.testing.assert_allclose(pos, [0.5, 0.0, 0.2])
    np.testing.assert_allclose(quat, DOWN, atol=1e-12)
    assert width == pytest.approx(0.04)


def test_translation_is_scaled_in_the_base_frame():
    # The tool points down (x flipped), but +dz must still move up in the base frame.
    pos, _, _ = action_to_target(_action(dx=1.0, dy=-0.5, dz=0.25), [0.5, 0.0, 0.2], DOWN, SCALE, BOX)
    np.testing.assert_allclose(pos, [0.51, -0.005, 0.2025])


def test_out_of_range_actions_are_clipped_not_rejected():
    pos, _, width = action_to_target(_action(dx=3.0, grip=-7.0), [0.5, 0.0, 0.2], DOWN, SCALE, BOX)
    np.testing.assert_allclose(pos, [0.51, 0.0, 0.2])
    assert width == 0.0


def test_position_is_clipped_to_the_safety_box():
    pos, _, _ = action_to_target(_action(dx=1.0, dz=-1.0), [0.795, 0.0, 0.004], DOWN, SCALE, BOX)
    np.testing.assert_allclose(pos, [0.8, 0.0, 0.0])


def test_rotation_delta_is_about_base_axes_applied_to_the_current_orientation():
    _, quat, _ = action_to_target(_action(rz=1.0), [0.5, 0.0, 0.2], DOWN, SCALE, BOX)
    # Rz(0.1) * Rx(pi) = (0, cos 0.05, sin 0.05, 0); the tool-frame product Rx(pi) * Rz(0.1) would give
    # (0, cos 0.05, -sin 0.05, 0).
    np.testing.assert_allclose(quat, [0.0, math.cos(0.05), math.sin(0.05), 0.0], atol=1e-12)


def test_gripper_maps_linearly_to_width():
    widths = [action_to_target(_action(grip=g), [0.5, 0, 0.2], DOWN, ActionScale(gripper_max_width=0.1), BOX)[2]
              for g in (-1.0, -0.5, 0.0, 1.0)]
    np.testing.assert_allclose(widths, [0.0, 0.025, 0.05, 0.1])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_raises(bad):
    with pytest.raises(ValueError, match="non-finite.*nothing was applied"):
        action_to_target(_action(dy=bad), [0.5, 0.0, 0.2], DOWN, SCALE, BOX)


@pytest.mark.parametrize("shape", [(6,), (8,), (1, 7), ()])
def test_wrong_shape_raises_with_the_shape(shape):
    with pytest.raises(ValueError, match=re.escape(f"action must have shape (7,), got {shape}")):
        action_to_target(np.zeros(shape), [0.5, 0.0, 0.2], DOWN, SCALE, BOX)


def test_action_scale_and_safety_box_validation_names_the_field():
    with pytest.raises(ValueError, match="max_rotation"):
        ActionScale(max_rotation=0.0)
    with pytest.raises(ValueError, match="gripper_max_width"):
        ActionScale(gripper_max_width=-0.08)
    with pytest.raises(ValueError, match="SafetyBox.low must be below SafetyBox.high"):
        SafetyBox(low=(0, 0, 0.5), high=(1, 1, 0.5))
    np.testing.assert_allclose(BOX.clip([1.0, -1.0, 0.1]), [0.8, -0.3, 0.1])


def test_proprio_identity_case():
    twist = np.arange(6) * 0.1
    wrench = np.arange(6) - 3.0
    p = proprio_vector([0.4, 0.1, 0.3], DOWN, [0.4, 0.1, 0.3], DOWN, 0.05, twist, wrench)
    assert p.dtype == np.float32 and p.shape == (PROPRIO_DIM,)
    np.testing.assert_allclose(p[:6], 0.0, atol=1e-7)
    assert p[6] == pytest.approx(0.05)
    np.testing.assert_allclose(p[7:13], twist, rtol=1e-6)
    np.testing.assert_allclose(p[13:], wrench, rtol=1e-6)


def test_proprio_is_expressed_in_the_reference_frame():
    # Reference yawed +90 deg; the EE is 0.1 m along base +y and rolled 0.2 rad about the reference's own x.
    c45, s45, c1, s1 = math.cos(math.pi / 4), math.sin(math.pi / 4), math.cos(0.1), math.sin(0.1)
    ref_quat = [c45, 0.0, 0.0, s45]
    ee_quat = [c45 * c1, c45 * s1, s45 * s1, s45 * c1]  # Rz(90 deg) * Rx(0.2), multiplied out by hand
    p = proprio_vector([0.5, 0.1, 0.2], ee_quat, [0.5, 0.0, 0.2], ref_quat, 0.0, np.zeros(6), np.zeros(6))
    np.testing.assert_allclose(p[:3], [0.1, 0.0, 0.0], atol=1e-7)  # base +y is the reference's +x
    np.testing.assert_allclose(p[3:6], [0.2, 0.0, 0.0], atol=1e-6)


def test_proprio_names_match_the_layout():
    assert len(PROPRIO_NAMES) == PROPRIO_DIM == 19 and len(set(PROPRIO_NAMES)) == 19
    assert PROPRIO_NAMES[6] == "gripper"
