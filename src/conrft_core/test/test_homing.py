"""Homing path for real-robot resets: lift, across, down; speed limits; the safety box; seeded homes."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from conrft_core.robot.homing import HomingConfig, arrived, home_for_seed, pose_error, waypoints
from conrft_core.robot.spaces import SafetyBox

BOX = SafetyBox((0.3, -0.2, 0.02), (0.7, 0.2, 0.35))
DOWN = (0.0, 1.0, 0.0, 0.0)
CFG = HomingConfig(home_position=(0.5, 0.0, 0.25), home_orientation=DOWN, lift=0.05, speed=0.1,
                   angular_speed=0.5)


def tilted(deg: float) -> np.ndarray:
    return (Rotation.from_euler("y", deg, degrees=True) * Rotation.from_quat(DOWN, scalar_first=True)).as_quat(
        scalar_first=True)


def test_path_lifts_moves_across_and_lands_on_home_within_the_speed_limits():
    start, dt = np.array([0.6, 0.1, 0.05]), 0.02
    pos, quat = waypoints(start, tilted(20), np.array(CFG.home_position), np.array(DOWN), CFG, BOX, dt)
    np.testing.assert_allclose(pos[-1], CFG.home_position)
    np.testing.assert_allclose(np.abs(quat[-1]), np.abs(DOWN), atol=1e-9)
    steps = np.linalg.norm(np.diff(np.vstack([start, pos]), axis=0), axis=1)
    assert steps.max() <= CFG.speed * dt + 1e-9
    rot = Rotation.from_quat(np.vstack([tilted(20), quat]), scalar_first=True)
    assert max((rot[i + 1] * rot[i].inv()).magnitude() for i in range(len(quat))) <= CFG.angular_speed * dt + 1e-9
    # Up first: no x/y motion until the target has risen by the lift height.
    rising = pos[:, 2] < start[2] + CFG.lift - 1e-9
    np.testing.assert_allclose(pos[rising][:, :2], np.tile(start[:2], (rising.sum(), 1)))
    assert pos[:, 2].max() == pytest.approx(max(start[2] + CFG.lift, CFG.home_position[2]))


def test_every_target_is_inside_the_box_even_from_outside_it():
    pos, _ = waypoints(np.array([0.9, -0.5, 0.5]), np.array(DOWN), np.array(CFG.home_position), np.array(DOWN),
                       CFG, BOX, 0.02)
    assert np.all(pos >= np.array(BOX.low) - 1e-12) and np.all(pos <= np.array(BOX.high) + 1e-12)


def test_already_home_is_one_target():
    pos, quat = waypoints(np.array(CFG.home_position), np.array(DOWN), np.array(CFG.home_position),
                          np.array(DOWN), HomingConfig(CFG.home_position, DOWN, lift=0.0), BOX, 0.02)
    assert len(pos) == 1 and arrived(pos[0], quat[0], np.array(CFG.home_position), np.array(DOWN), CFG)


def test_seeded_homes_are_reproducible_and_within_random_xy():
    cfg = HomingConfig(CFG.home_position, DOWN, random_xy=0.03)
    homes = [home_for_seed(cfg, s)[0] for s in range(20)]
    np.testing.assert_array_equal(home_for_seed(cfg, 7)[0], homes[7])
    offsets = np.array(homes) - np.array(CFG.home_position)
    assert np.abs(offsets[:, :2]).max() <= 0.03 and np.all(offsets[:, 2] == 0)
    assert len({tuple(h) for h in homes}) == 20
    np.testing.assert_array_equal(home_for_seed(CFG, 3)[0], CFG.home_position)  # random_xy 0: always home


def test_arrival_tolerances():
    home = np.array(CFG.home_position)
    assert arrived(home + [0.009, 0, 0], np.array(DOWN), home, np.array(DOWN), CFG)
    assert not arrived(home + [0.011, 0, 0], np.array(DOWN), home, np.array(DOWN), CFG)
    assert not arrived(home, tilted(5), home, np.array(DOWN), CFG)  # 0.087 rad > 0.05
    assert pose_error(home, tilted(2), home, np.array(DOWN))[1] == pytest.approx(np.radians(2))


@pytest.mark.parametrize("kw, message", [
    ({"home_orientation": (1.0, 1.0, 0.0, 0.0)}, "unit quaternion"),
    ({"home_position": (0.5, float("nan"), 0.2)}, "home_position"),
    ({"speed": 0.0}, "speed must be > 0"),
    ({"lift": -0.01}, "lift must be >= 0"),
])
def test_config_validation_names_the_field(kw, message):
    with pytest.raises(ValueError, match=message):
        HomingConfig(**{"home_position": (0.5, 0.0, 0.25), "home_orientation": DOWN, **kw})


def test_home_must_stay_inside_the_box_with_its_random_shift():
    HomingConfig((0.5, 0.0, 0.25), DOWN, random_xy=0.1).check_inside(BOX)
    with pytest.raises(ValueError, match="leaves the safety box"):
        HomingConfig((0.5, 0.15, 0.25), DOWN, random_xy=0.1).check_inside(BOX)
