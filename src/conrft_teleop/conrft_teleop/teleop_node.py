"""Teleop node: publishes the human's intervention state on `/conrft/intervention` at `rate` Hz (>= 50).

Sources (parameter `source`):
- `spacenav`: a SpaceMouse through the ROS 2 spacenav driver (`spacenav/twist`, `spacenav/joy`; start
  `ros2 run spacenav spacenav_node` with spacenavd running);
- `keyboard`: a terminal UI on this node's terminal (works over ssh and in tmux);
- `scripted`: the simulated human of the learning library (conrft_sim.intervener.ScriptedIntervener) for sim
  sessions. It watches a private mirror of the simulated world (`/sim/world_state`) and judges each policy
  step when its transition arrives: its commands act one control step later, like a human's reaction time.
  With `lockstep` it also answers each transition at once with an Intervention stamped with it, so that a
  policy node with `human_lockstep` executes the answer on the step it was computed for (the in-process
  loop's prompt human).

The stream is also the heartbeat: the policy node holds the robot when it goes silent during an intervention.
An outcome key (success / failure) stays in the published messages for `outcome_hold` seconds.
"""
from __future__ import annotations

import select
import sys
import termios
import time
import tty

import numpy as np
from geometry_msgs.msg import Twist
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.subscription_content_filter_options import ContentFilterOptions
from sensor_msgs.msg import Joy
from std_msgs.msg import Float64MultiArray

from conrft_core.config import ConfigError
from conrft_core.data.episode import check_robot_name
from conrft_core.robot.node_params import declare_all
from conrft_core.robot.teleop import KEYBOARD_HELP, Keyboard, SpaceMouse, SpaceMouseConfig
from conrft_interfaces.msg import Intervention, Transition
from conrft_policy.link_qos import TRANSITIONS_QOS
from conrft_policy.ros_io import run_node

SOURCES = ("spacenav", "keyboard", "scripted")
PARAMS = {
    "source": "spacenav",  # spacenav | keyboard | scripted
    "rate": 50.0,  # Hz, >= 50
    "frame_id": "base",
    "outcome_hold": 0.5,  # s
    # spacenav
    "twist_topic": "spacenav/twist",
    "joy_topic": "spacenav/joy",
    "deadband": 0.05,
    "scale": 1.0,
    "release_after": 0.5,
    "button_gripper": 0,
    "button_success": 1,
    "button_failure": -1,
    # keyboard
    "speed": 0.5,
    # scripted (simulation only)
    "task": "pick_cube",
    "seed": 1,
    "patience": 5,
    "stall_distance": 0.003,
    "away_cosine": 0.0,
    "takeover_steps": 8,
    "max_takeovers": 4,
    "expert_noise": "zero",
    "lockstep": False,  # answer each transition at once (stamped with it): see the policy node's human_lockstep
    # The robot this scripted human watches: the policy node's robot_name. Robots of a fleet share the transitions
    # topic (one learner takes them all in), so each scripted human judges its own robot's steps only.
    "robot_name": "",
}


class TeleopNode(Node):
    def __init__(self):
        super().__init__("teleop")
        p = self.params = declare_all(self, PARAMS)
        if p["source"] not in SOURCES:
            raise ConfigError(f"parameter 'source' is '{p['source']}'; choose one of {', '.join(SOURCES)}")
        check_robot_name(p["robot_name"], "parameter 'robot_name'")
        if p["rate"] < 50:
            raise ConfigError(f"parameter 'rate' must be >= 50 Hz (the policy node's heartbeat), got {p['rate']}")
        self.active, self.action, self.outcome, self.outcome_until = False, np.zeros(7), 0, 0.0
        self.action[6] = 1.0
        self.pub = self.create_publisher(Intervention, "/conrft/intervention", 10)
        getattr(self, f"_init_{p['source']}")()
        # The heartbeat runs on wall time: the policy node judges teleop silence by wall time, and a sim
        # running slower than real time must not make a live teleop look silent.
        self.create_timer(1.0 / p["rate"], self._publish, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"teleop ready: source {p['source']}, {p['rate']} Hz on /conrft/intervention")

    # --- sources --------------------------------------------------------------------------------------------
    def _init_spacenav(self) -> None:
        p = self.params
        try:
            self.device = SpaceMouse(SpaceMouseConfig(p["deadband"], p["scale"], p["release_after"],
                                                      p["button_gripper"], p["button_success"], p["button_failure"]))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.create_subscription(Twist, p["twist_topic"], self._on_twist, 10)
        self.create_subscription(Joy, p["joy_topic"], lambda m: self.device.on_buttons(m.buttons, time.monotonic()), 10)
        self._poll = lambda now: self.device.command(now)
        self.create_timer(5.0, self._check_spacenav)

    def _on_twist(self, m: Twist) -> None:
        self.device.on_twist([m.linear.x, m.linear.y, m.linear.z, m.angular.x, m.angular.y, m.angular.z],
                             time.monotonic())

    def _check_spacenav(self) -> None:
        if self.count_publishers(self.resolve_topic_name(self.params["twist_topic"])) == 0:  # remapped as well
            self.get_logger().warning(f"no SpaceMouse: nothing publishes {self.params['twist_topic']}; start spacenavd "
                                   f"and `ros2 run spacenav spacenav_node`", throttle_duration_sec=30.0)

    def _init_keyboard(self) -> None:
        if not sys.stdin.isatty():
            raise ConfigError("source 'keyboard' needs a terminal on stdin; run the node in a terminal (ssh and "
                              "tmux work) or use source 'spacenav' / 'scripted'")
        self.device = Keyboard(self.params["speed"])
        self._tty = termios.tcgetattr(sys.stdin)
        tty.setcbreak(sys.stdin.fileno())
        print(KEYBOARD_HELP, flush=True)
        self._poll = self._poll_keyboard

    def _poll_keyboard(self, now: float):
        while select.select([sys.stdin], [], [], 0)[0]:
            self.device.on_key(sys.stdin.read(1), now)
        if self.device.quit:
            raise SystemExit(0)
        return self.device.command(now)

    def _init_scripted(self) -> None:
        from conrft_sim.intervener import IntervenerConfig, ScriptedIntervener
        from conrft_sim.sim import FrankaSim, SimConfig

        p = self.params
        try:
            cfg = IntervenerConfig(p["patience"], p["stall_distance"], p["away_cosine"], p["takeover_steps"],
                                   p["max_takeovers"], p["expert_noise"])
            self.mirror = FrankaSim(SimConfig(task=p["task"], cameras=[]))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.human = ScriptedIntervener(p["task"], cfg, np.random.default_rng(p["seed"]))
        self.world, self.episode = None, None
        self.create_subscription(Float64MultiArray, "/sim/world_state", lambda m: setattr(self, "world", m.data), 10)
        # Filtered in DDS (a content-filtered topic) where the middleware can, so other robots' images never
        # reach this process; _on_transition checks the name as well.
        sub = self.create_subscription(Transition, "/conrft/transitions", self._on_transition, TRANSITIONS_QOS,
                                       content_filter_options=ContentFilterOptions(
                                           "robot = %0", [f"'{p['robot_name']}'"]))
        if not sub.is_cft_enabled:
            self.get_logger().info("transitions are filtered by robot name here (no content filter in this rmw)")
        self._poll = None

    def _on_transition(self, msg: Transition) -> None:
        """Step t was executed: judge the policy's action of that step (zeros when the human drove it) on the
        mirrored world, now at s_{t+1}; a takeover's commands execute from step t+2 on."""
        if msg.robot != self.params["robot_name"]:
            return
        if msg.episode_id != self.episode:
            self.episode = msg.episode_id
            self.human.reset()
        if msg.terminated or msg.truncated or self.world is None:
            self.active = False
            return
        self.mirror.restore(self.world)
        action, self.active = self.human.step(self.mirror, np.asarray(msg.policy_action, np.float64))
        self.action = np.asarray(action, np.float64)
        if self.params["lockstep"]:
            self.pub.publish(self._message(msg.header.stamp))

    # --- output ---------------------------------------------------------------------------------------------
    def _publish(self) -> None:
        now = time.monotonic()
        if self._poll is not None:
            self.active, self.action, outcome = self._poll(now)
            if outcome:
                self.outcome, self.outcome_until = outcome, now + self.params["outcome_hold"]
        if now > self.outcome_until:
            self.outcome = 0
        self.pub.publish(self._message(self.get_clock().now().to_msg()))

    def _message(self, stamp) -> Intervention:
        msg = Intervention(active=bool(self.active), gripper=float(self.action[6]), outcome=self.outcome,
                           source=self.params["source"])
        msg.header.stamp, msg.header.frame_id = stamp, self.params["frame_id"]
        t = msg.twist
        t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z = map(float, self.action[:6])
        return msg

    def destroy_node(self) -> None:
        """Give the terminal back as it was (keyboard mode puts it in cbreak mode)."""
        if getattr(self, "_tty", None) is not None:
            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, self._tty)
        super().destroy_node()


def main(args=None) -> int:
    return run_node(TeleopNode, "teleop_node", args)


if __name__ == "__main__":
    sys.exit(main())
