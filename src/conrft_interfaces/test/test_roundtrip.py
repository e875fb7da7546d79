"""Every conrft_interfaces message crosses a process boundary over DDS and comes back field for field."""
import subprocess
import sys
import textwrap

import numpy as np
from geometry_msgs.msg import Twist
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from conrft_interfaces.msg import (ActionChunk, EpisodeAck, Intervention, PolicyWeights, RobotState, StreamTarget,
                                   Transition)

TYPES = (ActionChunk, EpisodeAck, Intervention, PolicyWeights, RobotState, StreamTarget, Transition)

# A separate process that republishes whatever arrives on /rt/<Type> to /echo/<Type>.
ECHO = textwrap.dedent("""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from conrft_interfaces.msg import (ActionChunk, EpisodeAck, Intervention, PolicyWeights, RobotState,
                                       StreamTarget, Transition)
    rclpy.init()
    node = rclpy.create_node("echo")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    keep = []
    for t in (ActionChunk, EpisodeAck, Intervention, PolicyWeights, RobotState, StreamTarget, Transition):
        pub = node.create_publisher(t, "/echo/" + t.__name__, qos)
        keep.append(node.create_subscription(t, "/rt/" + t.__name__, pub.publish, qos))
    rclpy.spin(node)
""")


def filled():
    img = Image(height=2, width=3, encoding="rgb8", step=9, data=bytes(range(18)))
    img.header.frame_id = "front_camera"
    chunk = ActionChunk(episode_id=3, step=7, horizon=2, action_dim=7, actions=np.linspace(-1, 1, 14, dtype=np.float32),
                        policy_version=12, inference_latency=0.125)  # float32-exact values: equality is exact
    chunk.header.frame_id = "base"
    iv = Intervention(active=True, twist=Twist(), gripper=-1.0, outcome=1, source="spacenav")
    iv.twist.linear.x, iv.twist.angular.z = 0.5, -0.25
    weights = PolicyWeights(version=5, learner_step=250, format="safetensors", sha256="ab" * 32,
                            payload=bytes(range(256)) * 4, uri="", parameter_count=99)
    state = RobotState(joint_names=[f"panda_joint{i}" for i in range(1, 8)], joint_positions=[0.1] * 7,
                       joint_velocities=[-0.2] * 7, gripper_width=0.04)
    state.ee_pose.position.z, state.ee_pose.orientation.w = 0.3, 1.0
    state.wrench.force.z = -2.5
    tr = Transition(episode_id=3, step=99, camera_names=["front", "wrist"], images=[img, img],
                    proprio=np.arange(19, dtype=np.float32), instruction="pick up the red cube",
                    action=np.full(7, 0.5, np.float32), policy_action=np.full(7, -0.5, np.float32), reward=10.0,
                    terminated=True, success=True, truncated=False, intervened=True, policy_version=4,
                    final_images=[img], final_proprio=np.ones(19, np.float32))
    target = StreamTarget(command=StreamTarget.HOLD)
    target.header.frame_id, target.pose.position.x, target.pose.orientation.z = "base", 0.5, 1.0
    return {ActionChunk: chunk, EpisodeAck: EpisodeAck(episode_id=3, steps=100), Intervention: iv,
            PolicyWeights: weights, RobotState: state, StreamTarget: target, Transition: tr}


def test_every_message_round_trips_between_processes(ros_node, tmp_path):
    log = open(tmp_path / "echo.log", "w")
    echo = subprocess.Popen([sys.executable, "-c", ECHO], stdout=log, stderr=subprocess.STDOUT)
    try:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        received = {}
        for t in TYPES:
            ros_node.create_subscription(t, "/echo/" + t.__name__, lambda m, t=t: received.__setitem__(t, m), qos)
        pubs = {t: ros_node.create_publisher(t, "/rt/" + t.__name__, qos) for t in TYPES}
        sent = filled()

        def publish_until_all_back():
            for t, msg in sent.items():
                if t not in received:
                    pubs[t].publish(msg)
            return len(received) == len(TYPES)

        assert ros_node.spin_until(publish_until_all_back, 60), open(tmp_path / "echo.log").read()
        for t, msg in sent.items():
            assert received[t] == msg, t.__name__
    finally:
        echo.terminate()
        echo.wait(timeout=10)
        log.close()
