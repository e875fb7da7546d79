"""Teleop node as its own process over DDS: the spacenav source fed with the spacenav driver's messages, the
keyboard source driven through a real terminal (tmux), and bad parameters."""
import os
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
from geometry_msgs.msg import Twist
from sensor_msgs.msg import Joy

from conrft_interfaces.msg import Intervention

NODE = "conrft_teleop.teleop_node"


def stamp(m: Intervention) -> float:
    return m.header.stamp.sec + m.header.stamp.nanosec * 1e-9


def twist6(m: Intervention) -> list[float]:
    t = m.twist
    return [t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z]


def test_spacenav_drives_interventions_at_50_hz(ros_process, ros_node):
    teleop = ros_process(NODE, "-p", "source:=spacenav", "-p", "release_after:=0.3")
    msgs = []
    ros_node.create_subscription(Intervention, "/conrft/intervention", msgs.append, 100)
    # No driver yet: the node says what to start, and the heartbeat already runs (inactive).
    assert ros_node.spin_until(lambda: "no SpaceMouse: nothing publishes spacenav/twist" in teleop.output(), 15), \
        teleop.output()
    assert msgs and not any(m.active for m in msgs)
    periods = np.diff([stamp(m) for m in msgs[-40:]])
    assert np.median(periods) <= 1 / 50 + 0.002, f"heartbeat period {np.median(periods)} s"

    twist_pub = ros_node.create_publisher(Twist, "spacenav/twist", 10)
    joy_pub = ros_node.create_publisher(Joy, "spacenav/joy", 10)
    push = Twist()
    push.linear.x, push.angular.z = 0.6, -0.3
    msgs.clear()
    assert ros_node.spin_until(lambda: twist_pub.get_subscription_count() > 0, 10)
    twist_pub.publish(push)
    assert ros_node.spin_until(lambda: msgs and msgs[-1].active, 5), "the SpaceMouse did not take over"
    assert twist6(msgs[-1]) == pytest.approx([0.6, 0, 0, 0, 0, -0.3])
    assert msgs[-1].gripper == 1.0 and msgs[-1].source == "spacenav"

    joy_pub.publish(Joy(buttons=[1, 0]))  # gripper button: close
    assert ros_node.spin_until(lambda: msgs[-1].gripper == -1.0, 5)
    joy_pub.publish(Joy(buttons=[0, 1]))  # success button: a one-shot outcome held for outcome_hold
    assert ros_node.spin_until(lambda: msgs[-1].outcome == 1, 5)

    twist_pub.publish(Twist())  # at rest: the human hands back after release_after
    assert ros_node.spin_until(lambda: not msgs[-1].active, 5)
    assert twist6(msgs[-1]) == [0.0] * 6


def test_keyboard_source_in_tmux(ros_node, tmp_path):
    """The keyboard UI in a real terminal: keys take over, move, toggle the gripper; q exits cleanly."""
    socket, session = f"conrft-{uuid.uuid4().hex[:8]}", "teleop"
    log = tmp_path / "teleop.log"
    tmux = ["tmux", "-L", socket]
    command = f"{sys.executable} -m {NODE} --ros-args -p source:=keyboard 2> {log}; echo exit=$? >> {log}"
    subprocess.run([*tmux, "-f", "/dev/null", "new-session", "-d", "-s", session, "-x", "200", "-y", "20", command],
                   check=True, env=os.environ)
    msgs = []
    ros_node.create_subscription(Intervention, "/conrft/intervention", msgs.append, 100)
    try:
        def screen() -> str:
            return subprocess.run([*tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

        assert ros_node.spin_until(lambda: "space: take over" in screen() and msgs, 20), screen() + log.read_text()
        assert not msgs[-1].active
        send = lambda key: subprocess.run([*tmux, "send-keys", "-t", session, "-l", key], check=True)  # noqa: E731
        msgs.clear()
        send("w")  # +x for key_hold seconds, and a motion key takes over
        assert ros_node.spin_until(lambda: any(m.active and m.twist.linear.x == 0.5 for m in msgs), 5)
        assert ros_node.spin_until(lambda: msgs[-1].active and msgs[-1].twist.linear.x == 0.0, 5)  # released key
        send("g")
        assert ros_node.spin_until(lambda: msgs[-1].gripper == -1.0, 5)
        send(" ")  # hand back
        assert ros_node.spin_until(lambda: not msgs[-1].active, 5)
        send("q")
        end = time.monotonic() + 20
        while "exit=" not in log.read_text() and time.monotonic() < end:
            time.sleep(0.1)
        assert "exit=0" in log.read_text(), log.read_text()
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


@pytest.mark.parametrize("args, message", [
    (("-p", "source:=joystick"), "parameter 'source' is 'joystick'; choose one of spacenav, keyboard, scripted"),
    (("-p", "source:=keyboard"), "source 'keyboard' needs a terminal on stdin"),
    (("-p", "rate:=20.0"), "parameter 'rate' must be >= 50 Hz"),
    (("-p", "source:=scripted", "-p", "task:=stack_cups"), "stack_cups"),
    (("-p", "deadband:=two"), "deadband"),
])
def test_bad_parameters_exit_1_naming_the_parameter(ros_process, args, message):
    teleop = ros_process(NODE, *args)
    assert teleop.wait(timeout=30) == 1, teleop.output()
    assert message in teleop.output()
