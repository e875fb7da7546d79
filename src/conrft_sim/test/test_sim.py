"""Scene, impedance control, rendering, API safety and the gymnasium contract of the Franka simulator."""
import os
from pathlib import Path

os.environ["MUJOCO_GL"] = "egl"  # before mujoco is imported: offscreen rendering on a headless machine

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402

from conrft_core.config import from_dict, load_yaml  # noqa: E402
from conrft_sim.env import ConRFTSimEnv  # noqa: E402
from conrft_sim.model import build_scene_xml  # noqa: E402
from conrft_sim.sim import FrankaSim, SimConfig  # noqa: E402
from conrft_sim.tasks import TRAIN_RANGE, UNSEEN_RANGE, make_task, sample_offset  # noqa: E402

# Published Franka Panda values (Franka documentation), restated here so a wrong model constant fails.
PANDA_LIMITS = [(-2.8973, 2.8973), (-1.7628, 1.7628), (-2.8973, 2.8973), (-3.0718, -0.0698),
                (-2.8973, 2.8973), (-0.0175, 3.7525), (-2.8973, 2.8973)]
PANDA_TORQUES = [87, 87, 87, 87, 12, 12, 12]
HOME = [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785]
UNKNOWN_TASK = "unknown task 'stack_cups'; choose one of: drawer_open, peg_insert, pick_cube"


@pytest.fixture(scope="module")
def sim():
    """A rendering pick_cube simulator shared by the tests below (each test resets it)."""
    s = FrankaSim(SimConfig(task="pick_cube"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def blind_sim():
    return FrankaSim(SimConfig(task="pick_cube", cameras=()))


def test_model_compiles_with_panda_limits():
    model = mujoco.MjModel.from_xml_string(build_scene_xml("", 128, 128))
    for i, (lo, hi) in enumerate(PANDA_LIMITS):
        np.testing.assert_allclose(model.jnt_range[model.joint(f"joint{i + 1}").id], [lo, hi])
        np.testing.assert_allclose(model.actuator_ctrlrange[model.actuator(f"torque{i + 1}").id],
                                   [-PANDA_TORQUES[i], PANDA_TORQUES[i]])
    finger = model.jnt_range[model.joint("finger_left").id]
    assert 2 * finger[1] == pytest.approx(0.08)


def test_home_posture_points_down_in_front_of_the_base():
    model = mujoco.MjModel.from_xml_string(build_scene_xml("", 128, 128))
    data = mujoco.MjData(model)
    data.qpos[:7] = HOME
    mujoco.mj_forward(model, data)
    ee = model.site("ee").id
    # The Franka's documented home pose puts the fingertip centre at ~(0.307, 0, 0.487) m.
    np.testing.assert_allclose(data.site_xpos[ee], [0.307, 0.0, 0.487], atol=0.005)
    np.testing.assert_allclose(data.site_xmat[ee].reshape(3, 3)[:, 2], [0, 0, -1], atol=1e-3)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_impedance_step_settles_within_0_3_s(blind_sim, axis):
    blind_sim.reset(seed=0)
    pos, quat = blind_sim.ee_pose()
    goal = pos.copy()
    goal[axis] += 0.02
    blind_sim.set_target(goal, quat)
    blind_sim.step_physics(150)  # 0.3 s
    errors = [np.linalg.norm(blind_sim.ee_pose()[0] - goal)]
    for _ in range(20):  # and it stays there for another 0.2 s (settled, not passing through)
        blind_sim.step_physics(5)
        errors.append(np.linalg.norm(blind_sim.ee_pose()[0] - goal))
    assert max(errors) < 0.002, f"errors (mm) after 0.3 s: {np.round(np.array(errors) * 1e3, 2)}"


def test_pushing_the_target_into_the_table_stays_bounded(blind_sim):
    blind_sim.reset(seed=0)
    _, quat = blind_sim.ee_pose()
    blind_sim.set_target([0.4, 0.12, 0.05], quat)  # beside the cube
    blind_sim.step_physics(500)
    blind_sim.set_target([0.4, 0.12, -0.03], quat)  # 3 cm into the table top (z = 0)
    forces = []
    for _ in range(100):
        blind_sim.step_physics(10)
        forces.append(np.linalg.norm(blind_sim.wrench()[:3]))
    d = blind_sim.data
    assert np.all(np.isfinite(d.qpos)) and np.all(np.isfinite(d.qvel))
    z = blind_sim.ee_pose()[0][2]
    assert -0.005 < z < 0.01, f"EE should rest on the table surface, z = {z}"
    # Steady force = stiffness x clipped error (1000 N/m x 3 cm), the table pushing up on the hand; the
    # impact transient stays modest.
    assert blind_sim.wrench()[2] == pytest.approx(30.0, rel=0.15)
    assert max(forces) < 150.0


def test_getters_reflect_the_current_state(blind_sim):
    blind_sim.reset(seed=0)
    blind_sim.apply_action(np.array([1.0, 0, -1.0, 0, 0, 0, 1.0]))
    fresh = mujoco.MjData(blind_sim.model)
    fresh.qpos[:] = blind_sim.data.qpos
    mujoco.mj_kinematics(blind_sim.model, fresh)
    np.testing.assert_array_equal(blind_sim.ee_pose()[0], fresh.site_xpos[blind_sim.model.site("ee").id])
    np.testing.assert_allclose(blind_sim.joint_positions(), blind_sim.data.qpos[:7])
    assert blind_sim.gripper_width() == pytest.approx(0.08, abs=1e-3)
    # Free space: the hand's own weight is compensated, so the external wrench is ~0.
    np.testing.assert_allclose(blind_sim.wrench(), 0.0, atol=0.5)
    # Moved forward and down, seen from the reset frame (tool pointing down: its x is base x, its z base -z).
    rel = blind_sim.proprio()[:3]
    assert rel[0] > 0.002 and rel[2] > 0.002 and abs(rel[1]) < 1e-3


def test_gripper_closes_and_opens_fully_without_chatter(blind_sim):
    blind_sim.reset(seed=0)  # pick_cube: nothing between the fingers at the start pose
    blind_sim.set_gripper(0.0)
    blind_sim.step_physics(150)  # 0.3 s
    widths = []
    for _ in range(20):
        blind_sim.step_physics(1)
        widths.append(blind_sim.gripper_width())
    assert max(widths) < 0.001 and np.ptp(widths) < 1e-4
    blind_sim.set_gripper(0.08)
    blind_sim.step_physics(150)
    assert blind_sim.gripper_width() == pytest.approx(0.08, abs=1e-3)


def test_render_gives_distinct_uint8_images(sim):
    sim.reset(seed=0)
    images = sim.render()
    assert set(images) == {"front", "wrist"}
    for name, img in images.items():
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8, name
        assert img.std() > 10, f"{name} image is (nearly) constant"
    assert not np.array_equal(images["front"], images["wrist"])


@pytest.mark.parametrize("action", [np.array([0, 0, np.nan, 0, 0, 0, 1.0]), np.zeros(6), np.full(7, np.inf)])
def test_invalid_action_raises_and_changes_nothing(blind_sim, action):
    blind_sim.reset(seed=0)
    blind_sim.apply_action(np.array([0.5, 0, 0, 0, 0, 0, 1.0]))  # some motion in progress
    state = (blind_sim.data.qpos.copy(), blind_sim.data.qvel.copy(), blind_sim.data.ctrl.copy(),
             blind_sim.sim_time, *blind_sim.target)
    with pytest.raises(ValueError, match="non-finite|shape"):
        blind_sim.apply_action(action)
    after = (blind_sim.data.qpos, blind_sim.data.qvel, blind_sim.data.ctrl, blind_sim.sim_time, *blind_sim.target)
    for before_value, after_value in zip(state, after):
        np.testing.assert_array_equal(before_value, after_value)


def test_without_new_commands_the_last_target_is_held(blind_sim):
    blind_sim.reset(seed=0)
    for _ in range(3):
        blind_sim.apply_action(np.array([1.0, 1.0, 0, 0, 0, 0.5, 1.0]))
    target_pos, _ = blind_sim.target
    blind_sim.step_physics(500)  # 1 s with no command: the last motion finishes on the held target
    settled = blind_sim.ee_pose()[0]
    blind_sim.step_physics(500)  # and another second: still
    assert np.linalg.norm(blind_sim.ee_pose()[0] - settled) < 1e-4
    assert np.linalg.norm(blind_sim.ee_pose()[0] - target_pos) < 1e-4
    assert np.linalg.norm(blind_sim.ee_twist()) < 1e-3


def test_unknown_task_is_reported_with_the_choices():
    with pytest.raises(ValueError, match=UNKNOWN_TASK):
        make_task("stack_cups")
    with pytest.raises(ValueError, match=UNKNOWN_TASK):
        SimConfig(task="stack_cups")


def test_config_validation_names_field_and_fix():
    with pytest.raises(ValueError, match=r"SimConfig.control_dt .* whole multiple of physics_dt"):
        SimConfig(control_dt=0.1, physics_dt=0.003)
    with pytest.raises(ValueError, match="SimConfig.cameras"):
        SimConfig(cameras=("front", "top"))
    with pytest.raises(ValueError, match="SimConfig.image_width"):
        SimConfig(image_width=0)


@pytest.mark.filterwarnings("ignore:.*Box observation space (minimum|maximum) value")  # proprio is unbounded
def test_env_passes_the_gymnasium_checker_and_rewards():
    env = ConRFTSimEnv(SimConfig(task="drawer_open", max_episode_steps=2), render_mode="rgb_array")
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=1)
    assert obs["instruction"] == "open the drawer" and info == {"success": False, "step": 0}
    assert env.render() is obs["front"]
    _, reward, terminated, truncated, info = env.step(np.zeros(7, np.float32))
    assert (reward, terminated, truncated, info) == (pytest.approx(-0.05), False, False, {"success": False, "step": 1})
    _, _, terminated, truncated, _ = env.step(np.zeros(7, np.float32))
    assert (terminated, truncated) == (False, True)
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"unseen": True, "hard": 1})
    env.close()


def test_seeded_reset_is_deterministic(sim):
    sim.reset(seed=7)
    cube, images = sim.privileged()["cube_pos"], sim.render()
    sim.reset(seed=8)
    assert not np.allclose(sim.privileged()["cube_pos"], cube)
    sim.reset(seed=7)
    np.testing.assert_array_equal(sim.privileged()["cube_pos"], cube)
    for name, img in sim.render().items():
        np.testing.assert_array_equal(img, images[name])


def test_unseen_positions_lie_outside_the_training_range():
    rng = np.random.default_rng(0)
    train = np.array([sample_offset(rng, unseen=False) for _ in range(500)])
    unseen = np.array([sample_offset(rng, unseen=True) for _ in range(500)])
    assert np.abs(train).max() <= TRAIN_RANGE
    assert np.all(np.abs(unseen).max(axis=1) > TRAIN_RANGE) and np.abs(unseen).max() <= UNSEEN_RANGE


def test_shipped_config_file_is_the_default_config():
    path = Path(__file__).resolve().parents[3] / "config" / "sim.yaml"
    assert from_dict(SimConfig, load_yaml(path)["sim"], "sim") == SimConfig()


def assert_same_world(a, b):
    for x, y in zip(a.ee_pose(), b.ee_pose()):
        np.testing.assert_array_equal(y, x)
    assert b.gripper_width() == a.gripper_width()
    assert b.sim_time == a.sim_time
    np.testing.assert_array_equal(b.joint_positions(), a.joint_positions())
    np.testing.assert_array_equal(b.joint_velocities(), a.joint_velocities())
    priv_a, priv_b = a.privileged(), b.privileged()
    assert set(priv_b) == set(priv_a)
    for key in priv_a:
        np.testing.assert_array_equal(priv_b[key], priv_a[key], err_msg=key)
    assert b.success() == a.success()


@pytest.mark.parametrize("task", ["pick_cube", "peg_insert", "drawer_open"])
def test_snapshot_restore_mirrors_another_sim(task):
    source = FrankaSim(SimConfig(task=task, cameras=()))
    mirror = FrankaSim(SimConfig(task=task, cameras=()))
    source.reset(seed=3)
    mirror.reset(seed=4)  # objects elsewhere
    for action in ([1.0, -0.5, -1.0, 0, 0, 0.3, -1.0], [0.2, 0.8, 0.0, 0.5, 0, 0, 0.5]):
        source.apply_action(np.array(action))
    assert not np.allclose(mirror.ee_pose()[0], source.ee_pose()[0])
    mirror.restore(source.snapshot())
    assert_same_world(source, mirror)
    # The snapshot is a plain float vector (it travels as Float64MultiArray): a list restores the same.
    mirror.reset(seed=5)
    mirror.restore(source.snapshot().tolist())
    assert_same_world(source, mirror)


def test_snapshot_restore_carries_the_hole_moved_at_reset_and_success():
    source = FrankaSim(SimConfig(task="peg_insert", cameras=()))
    mirror = FrankaSim(SimConfig(task="peg_insert", cameras=()))
    source.reset(seed=1)
    mirror.reset(seed=2)
    hole = source.privileged()["hole_top"]
    assert not np.allclose(mirror.privileged()["hole_top"][:2], hole[:2])
    # Place the grasped peg inside the hole in the source world: a success the mirror must see too.
    peg = source.model.body("peg")
    adr = source.model.jnt_qposadr[peg.jntadr[0]]
    source.data.qpos[adr:adr + 3] = [hole[0], hole[1], source.task.peg_half_len + 0.005]
    source.data.qpos[adr + 3:adr + 7] = [1.0, 0.0, 0.0, 0.0]
    mujoco.mj_forward(source.model, source.data)
    assert source.success() and not mirror.success()
    mirror.restore(source.snapshot())
    np.testing.assert_array_equal(mirror.privileged()["hole_top"], hole)
    assert mirror.success()
    assert_same_world(source, mirror)


def test_snapshot_of_another_task_is_refused(blind_sim):
    blind_sim.reset(seed=0)
    peg = FrankaSim(SimConfig(task="peg_insert", cameras=()))
    before = peg.snapshot()
    with pytest.raises(ValueError, match="peg_insert scene needs .* another task"):
        peg.restore(blind_sim.snapshot())
    with pytest.raises(ValueError, match="pick_cube scene needs"):
        blind_sim.restore(peg.snapshot())
    np.testing.assert_array_equal(peg.snapshot(), before)  # nothing of it was applied
