"""The sim node as a separate process over real DDS: tracking, holding, cameras, clock, services, bad input."""
import time
from pathlib import Path

import numpy as np
from geometry_msgs.msg import PoseStamped
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import Float64

from conrft_interfaces.msg import RobotState
from conrft_interfaces.srv import ResetEpisode, SetStiffness

SIM = "conrft_sim.sim_node"
PARAMS = str(Path(__file__).resolve().parents[3] / "config" / "sim_node.yaml")


def ee_pos(msg):
    p = msg.ee_pose.position
    return np.array([p.x, p.y, p.z])


def test_sim_node_graph(ros_process, ros_node):
    # The shipped parameter file: every key in it must be a parameter the node declares.
    proc = ros_process(SIM, "--params-file", PARAMS, "-p", "real_time_factor:=2.0")
    got = {}
    ros_node.create_subscription(RobotState, "/conrft/robot_state", lambda m: got.__setitem__("state", m), 10)
    ros_node.create_subscription(Clock, "/clock", lambda m: got.__setitem__("clock", m), 10)
    ros_node.create_subscription(Image, "/camera/wrist/image_raw", lambda m: got.__setitem__("wrist", m), 2)
    assert ros_node.spin_until(lambda: {"state", "clock", "wrist"} <= set(got), 40), proc.output()

    img = got["wrist"]
    assert (img.height, img.width, img.encoding) == (128, 128, "rgb8")
    assert np.frombuffer(bytes(img.data), np.uint8).std() > 1.0  # a rendered scene, not a blank frame

    start = ee_pos(got["state"])
    t0 = got["clock"].clock.sec + got["clock"].clock.nanosec * 1e-9
    target = PoseStamped()
    target.header.frame_id = "base"
    goal = start + np.array([0.0, 0.0, 0.03])
    target.pose.position.x, target.pose.position.y, target.pose.position.z = map(float, goal)
    target.pose.orientation = got["state"].ee_pose.orientation
    pub = ros_node.create_publisher(PoseStamped, "/cartesian_impedance_controller/target_frame", 10)
    for _ in range(20):  # 2 s of 10 Hz commands
        pub.publish(target)
        ros_node.spin_until(lambda: False, 0.1)
    assert np.linalg.norm(ee_pos(got["state"]) - goal) < 0.005
    t1 = got["clock"].clock.sec + got["clock"].clock.nanosec * 1e-9
    assert t1 - t0 > 2.0  # sim time runs (at about 2x real time)

    # Commands stop: the controller holds the last valid target.
    held = ee_pos(got["state"])
    ros_node.spin_until(lambda: False, 1.0)
    assert np.linalg.norm(ee_pos(got["state"]) - held) < 0.002

    # A non-finite target is rejected and changes nothing.
    target.pose.position.x = float("nan")
    pub.publish(target)
    ros_node.spin_until(lambda: False, 0.5)
    assert np.linalg.norm(ee_pos(got["state"]) - held) < 0.002

    grip = ros_node.create_publisher(Float64, "/sim/gripper_command", 10)
    for _ in range(10):
        grip.publish(Float64(data=0.0))
        ros_node.spin_until(lambda: False, 0.1)
    assert got["state"].gripper_width < 0.01

    reset = ros_node.create_client(ResetEpisode, "/sim/reset")
    assert reset.wait_for_service(timeout_sec=10)
    future = reset.call_async(ResetEpisode.Request(seed=3, options=["unseen=false"]))
    assert ros_node.spin_until(future.done, 10)
    assert future.result().success
    assert time.time() - 120 < future.result().episode_id <= time.time() + 1  # from the node's start time
    before_reset = t1
    assert ros_node.spin_until(lambda: got["clock"].clock.sec + got["clock"].clock.nanosec * 1e-9 > before_reset + 0.2, 5)
    bad = reset.call_async(ResetEpisode.Request(seed=3, options=["colour=red"]))
    assert ros_node.spin_until(bad.done, 10)
    assert not bad.result().success and "colour" in bad.result().message

    stiff = ros_node.create_client(SetStiffness, "/sim/set_stiffness")
    assert stiff.wait_for_service(timeout_sec=10)
    future = stiff.call_async(SetStiffness.Request(translational=-5.0, rotational=10.0))
    assert ros_node.spin_until(future.done, 10)
    assert not future.result().success
    assert proc.proc.poll() is None
    assert "target rejected: non-finite" in proc.output()

    # Ctrl-C (SIGINT, as `conrft session` stops its nodes): a clean exit, no traceback from any thread.
    proc.stop()
    assert proc.proc.returncode == 0
    assert "Traceback" not in proc.output() and "Exception in thread" not in proc.output(), proc.output()[-2000:]


def test_step_sync_holds_the_clock_at_each_frame_until_its_target_arrives(ros_process, ros_node):
    """step_sync: the clock stops at every camera frame instant (10 Hz) until a target stamped at that instant
    arrives, at most step_sync s; frames are stamped at those instants."""
    proc = ros_process(SIM, "--params-file", PARAMS, "-p", "image_width:=32", "-p", "image_height:=32",
                       "-p", "step_sync:=0.25")
    clock, frames, state = [], [], {}
    ros_node.create_subscription(Clock, "/clock", lambda m: clock.append(m.clock.sec + m.clock.nanosec * 1e-9), 100)
    ros_node.create_subscription(Image, "/camera/front/image_raw",
                                 lambda m: frames.append(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), 10)
    ros_node.create_subscription(RobotState, "/conrft/robot_state", lambda m: state.__setitem__("s", m), 10)
    assert ros_node.spin_until(lambda: len(frames) >= 3 and "s" in state, 40), proc.output()
    # Nobody commands: every frame waits out step_sync, so 2 s of wall time are ~0.8 s of sim time (not 2 s).
    t0 = clock[-1]
    ros_node.spin_until(lambda: False, 2.0)
    assert 0.4 < clock[-1] - t0 < 1.2, clock[-1] - t0
    assert all(abs(f * 10 - round(f * 10)) < 1e-6 for f in frames)  # on the 10 Hz instants of the clock
    # A controller that answers each frame with a target stamped at it: the clock no longer waits.
    pub = ros_node.create_publisher(PoseStamped, "/cartesian_impedance_controller/target_frame", 10)
    target = PoseStamped(pose=state["s"].ee_pose)
    target.header.frame_id = "base"
    answered = []

    def answer(msg):
        target.header.stamp = msg.header.stamp
        pub.publish(target)
        answered.append(msg)

    ros_node.create_subscription(Image, "/camera/wrist/image_raw", answer, 10)
    ros_node.spin_until(lambda: len(answered) >= 3, 10)
    t0 = clock[-1]
    ros_node.spin_until(lambda: False, 2.0)
    assert clock[-1] - t0 > 1.5, clock[-1] - t0  # about real time again


def test_sim_node_rejects_bad_parameters(ros_process):
    bad_task = ros_process(SIM, "-p", "task:=stack_blocks")
    assert bad_task.wait(timeout=30) == 1
    assert "unknown task 'stack_blocks'" in bad_task.output()
    typo = ros_process(SIM, "-p", "real_time_factr:=0.0")
    assert typo.wait(timeout=30) == 1
    assert "unknown parameter 'real_time_factr'" in typo.output()
    wrong_type = ros_process(SIM, "-p", "image_width:=big")
    assert wrong_type.wait(timeout=30) == 1
    assert "parameter 'image_width'" in wrong_type.output()
