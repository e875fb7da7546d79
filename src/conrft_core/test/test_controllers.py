"""Controller presets (config/controllers/): every shipped preset loads, and a bad one is refused naming its key."""
from pathlib import Path

import pytest
import yaml

from conrft_core.config import ConfigError
from conrft_core.robot.controllers import load_preset, preset_names

PRESETS = Path(__file__).resolve().parents[3] / "config" / "controllers"


def test_the_shipped_presets():
    assert preset_names(PRESETS) == ["crisp", "franka_ros2", "fzi", "sim"]
    franka, crisp, fzi, sim = (load_preset(PRESETS / f"{n}.yaml") for n in ("franka_ros2", "crisp", "fzi", "sim"))
    # The controllers' own names (../shared/notes/impedance-controllers.md).
    assert franka.target_topic.endswith("/equilibrium_pose")
    assert (franka.stiffness.interface, franka.stiffness.type) == ("service", "franka_msgs/srv/SetCartesianStiffness")
    assert crisp.target_topic.endswith("/target_pose")
    assert (crisp.stiffness.interface, crisp.stiffness.type) == ("topic", "std_msgs/msg/Float64MultiArray")
    assert fzi.target_topic.endswith("/target_frame") and fzi.stiffness.interface == "parameters"
    assert (sim.stiffness.interface, sim.stiffness.name) == ("service", "/sim/set_stiffness")
    # CRISP ignores a target topic with two publishers: home_reset may not share it.
    assert crisp.nodes["policy"]["reset_node"] == ""
    assert franka.nodes["policy"]["reset_node"] == fzi.nodes["policy"]["reset_node"] == "home_reset"
    for preset in (franka, crisp, fzi):  # home_reset and the target streamer stream at the controller's rate
        assert preset.nodes["home_reset"]["rate"] == preset.nodes["policy"]["stream_rate"] == preset.stream_rate
    assert sim.nodes["policy"]["stream_rate"] == 0.0  # the sim applies one target per step, as in-process


def write(tmp_path, edit) -> Path:
    data = yaml.safe_load((PRESETS / "franka_ros2.yaml").read_text())
    edit(data)
    path = tmp_path / "controllers" / "mine.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def params(block):
    return lambda data: data[block]["ros__parameters"]


@pytest.mark.parametrize("edit, message", [
    (lambda d: params("controller")(d).update(stiffnes=params("controller")(d).pop("stiffness")),
     "unknown config key 'controller.ros__parameters.stiffnes'"),
    (lambda d: params("controller")(d)["stiffness"].update(interface="action"),
     "'controller.ros__parameters.stiffness.interface' must be one of: service, topic, parameters"),
    (lambda d: params("controller")(d).update(stream_rate=0.0), "stream_rate must be a positive number"),
    (lambda d: params("controller")(d)["stiffness"].update(name="set_cartesian_stiffness"),
     "stiffness.name must be an absolute ROS name"),
    (lambda d: d.update(controllers=d.pop("controller")), "unknown block 'controllers'"),
    (lambda d: d.pop("controller"), "the 'controller' block is missing"),
    (lambda d: params("policy")(d).pop("frame_id"), "policy.ros__parameters.frame_id must be set"),
    (lambda d: params("home_reset")(d).update(target_topic="/other"),
     "home_reset.ros__parameters.target_topic is '/other'"),
    (lambda d: params("home_reset")(d).update(rate=50.0), "home_reset.ros__parameters.rate is 50.0"),
    (lambda d: params("policy")(d).update(stream_rate=50.0), "policy.ros__parameters.stream_rate is 50.0"),
    (lambda d: d.update(policy={"target_topic": "/x"}), "block 'policy' must hold exactly one mapping"),
])
def test_a_bad_preset_is_refused_naming_the_key(tmp_path, edit, message):
    path = write(tmp_path, edit)
    with pytest.raises(ConfigError) as exc:
        load_preset(path)
    assert message in str(exc.value)


def test_an_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="unknown controller preset 'crsp'; presets in .*: crisp, franka_ros2, fzi"):
        load_preset(PRESETS / "crsp.yaml")
