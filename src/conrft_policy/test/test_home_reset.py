"""home_reset as its own process, driving the simulated arm through the impedance controller topic: the
simulator stands in for the robot driver (same RobotState and target topics a real cell uses)."""
import time
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from std_msgs.msg import Float64

from conrft_interfaces.msg import RobotState
from conrft_interfaces.srv import ResetEpisode
from conrft_policy.ros_io import pose_arrays

CONFIG = Path(__file__).resolve().parents[3] / "config"
NODE = "conrft_policy.home_reset"
BOX = ("-p", "safety_box_low:=[0.3, -0.2, 0.01]", "-p", "safety_box_high:=[0.7, 0.2, 0.35]")


def pose(msg: RobotState) -> tuple[np.ndarray, np.ndarray]:
    return pose_arrays(msg.ee_pose)


def call(node, client, seed: int):
    assert client.wait_for_service(timeout_sec=20)
    future = client.call_async(ResetEpisode.Request(seed=seed))
    assert node.spin_until(future.done, 60)
    return future.result()


def test_reset_drives_the_arm_home_and_refuses_without_a_state(ros_process, ros_node):
    sim = ros_process("conrft_sim.sim_node", "--params-file", str(CONFIG / "sim_node.yaml"),
                      "-p", "image_width:=32", "-p", "image_height:=32")
    states = []
    ros_node.create_subscription(RobotState, "/conrft/robot_state", states.append, 10)
    assert ros_node.spin_until(lambda: states, 40), sim.output()
    home_pos, home_quat = pose(states[-1])
    reset = ros_process(NODE, "--params-file", str(CONFIG / "home_reset.yaml"), "-p", "use_sim_time:=true",
                        "-p", "gripper_topic:=/sim/gripper_command", "-p", "random_xy:=0.0", "-p", "speed:=0.1",
                        "-p", f"home_position:={home_pos.tolist()}", "-p", f"home_orientation:={home_quat.tolist()}",
                        *BOX)
    # Move the arm away and close the gripper, as at the end of an episode.
    target = ros_node.create_publisher(PoseStamped, "/cartesian_impedance_controller/target_frame", 10)
    gripper = ros_node.create_publisher(Float64, "/sim/gripper_command", 10)
    away = PoseStamped()
    away.header.frame_id = "base"
    away.pose.position.x, away.pose.position.y, away.pose.position.z = map(float, home_pos + [0.08, 0.06, -0.1])
    away.pose.orientation = states[-1].ee_pose.orientation
    for _ in range(30):
        target.publish(away)
        gripper.publish(Float64(data=0.0))
        ros_node.spin_until(lambda: False, 0.1)
    assert np.linalg.norm(pose(states[-1])[0] - home_pos) > 0.1 and states[-1].gripper_width < 0.01

    assert ros_node.spin_until(lambda: "robot state received on /conrft/robot_state" in reset.output(), 20)
    client = ros_node.create_client(ResetEpisode, "/conrft/reset_episode")
    result = call(ros_node, client, seed=0)
    assert result.success, result.message + reset.output()
    assert time.time() - 120 < result.episode_id <= time.time() + 1  # continues from the server's start time
    ros_node.spin_until(lambda: False, 0.5)
    pos, quat = pose(states[-1])
    assert np.linalg.norm(pos - home_pos) < 0.01
    assert abs(abs(float(np.dot(quat, home_quat))) - 1.0) < 1e-3
    assert states[-1].gripper_width > 0.07  # opened
    assert "reset done: home" in reset.output()

    # The robot gone (driver and controller): no motion, a failure that says why. (With sim time the clock
    # stops with the sim, so the last state never ages: the missing controller is what refuses here.)
    sim.stop()
    result = call(ros_node, client, seed=1)
    assert not result.success and "nothing subscribes to /cartesian_impedance_controller/target_frame: not moving" \
        in result.message
    assert "reset failed" in reset.output()


@pytest.mark.parametrize("args, message", [
    (("-p", "home_position:=[0.5, 0.0, 0.6]"), "leaves the safety box"),
    (("-p", "home_orientation:=[1.0, 1.0, 0.0, 0.0]"), "unit quaternion"),
    (("-p", "speed:=0.0"), "speed must be > 0"),
    (("-p", "settle_timeout:=0.0"), "parameter 'settle_timeout' must be > 0"),
])
def test_bad_parameters_exit_1(ros_process, args, message):
    node = ros_process(NODE, "--params-file", str(CONFIG / "home_reset.yaml"), *args)
    assert node.wait(timeout=30) == 1, node.output()
    assert message in node.output()


def test_a_stale_state_refuses_the_reset(ros_process, ros_node):
    """Stamps far behind the node's clock (here: sim-time stamps read on a wall clock) are stale: no motion."""
    ros_process("conrft_sim.sim_node", "--params-file", str(CONFIG / "sim_node.yaml"),
                "-p", "image_width:=32", "-p", "image_height:=32")
    reset = ros_process(NODE, "--params-file", str(CONFIG / "home_reset.yaml"),
                        "-p", "home_position:=[0.45, 0.0, 0.14]", *BOX)
    targets = []
    ros_node.create_subscription(PoseStamped, "/cartesian_impedance_controller/target_frame", targets.append, 10)
    assert ros_node.spin_until(lambda: "robot state received" in reset.output(), 30), reset.output()
    result = call(ros_node, ros_node.create_client(ResetEpisode, "/conrft/reset_episode"), seed=0)
    assert not result.success
    assert "no robot state on /conrft/robot_state newer than 0.5 s (the last is" in result.message
    assert not targets
