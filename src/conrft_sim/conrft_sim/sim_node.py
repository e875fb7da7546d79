"""ROS 2 sim node: the MuJoCo Franka behind the interfaces a real robot driver + ros2_control exposes.

It stands in for the Franka driver, a Cartesian impedance controller and the cameras:
- subscribes to a PoseStamped target (default `/cartesian_impedance_controller/target_frame`) and a gripper
  width command (std_msgs/Float64, metres); the controller holds the last valid target when commands stop;
- publishes `/conrft/robot_state`, `/camera/<name>/image_raw` + `camera_info`, and what a real driver's
  broadcasters give (`/joint_states` with the finger joints, `/sim/ee_pose`, `/sim/ee_twist`, `/sim/wrench`:
  robot_state_publisher's `sim` preset builds the same RobotState from them),
  `/sim/success` (privileged success predicate), `/sim/world_state` (privileged full state, for the scripted
  teleop's mirror of the world) and `/clock` (the sim owns time: run the other nodes with
  `use_sim_time:=true`);
- serves `/sim/reset` (conrft_interfaces/srv/ResetEpisode) and `/sim/set_stiffness`.

Physics runs in the main thread (which owns the renderer's GL context) at `real_time_factor` x real time
(0: as fast as possible); ROS callbacks run in an executor thread and touch the simulator under one lock.
Cameras render at multiples of 1/camera_rate of the clock, the instants of the policy node's control ticks.
With `step_sync` the sim stops its clock at each of those instants until a target stamped at it arrives (at
most `step_sync` s of wall time): the policy's command then acts from its step's instant, as in the
in-process loop, instead of after its inference time. Invalid targets (non-finite, wrong frame) are rejected with a logged
reason and the previous target is kept; targets outside the task's safety box are clipped.
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool, Float64, Float64MultiArray

from conrft_core.config import ConfigError, from_dict, load_yaml
from conrft_core.data.episode import first_episode_id
from conrft_core.robot.node_params import declare_all
from conrft_core.robot.signals import interrupt_main_thread, stop_requested
from conrft_interfaces.msg import RobotState
from conrft_interfaces.srv import ResetEpisode, SetStiffness
from conrft_sim.sim import FrankaSim, SimConfig

JOINT_NAMES = [f"panda_joint{i}" for i in range(1, 8)]
FINGER_NAMES = ["panda_finger_joint1", "panda_finger_joint2"]
STIFFNESS_SERVICE = "/sim/set_stiffness"  # the sim controller preset's stiffness interface
PARAMS = {
    "config_file": "",  # YAML with a `sim:` section; task/image/unseen parameters override it
    "task": "pick_cube",
    "image_width": 128,
    "image_height": 128,
    "unseen": False,
    "seed": 0,
    "real_time_factor": 1.0,  # 0: as fast as possible
    "state_rate": 100.0,  # Hz of sim time for /joint_states, /conrft/robot_state, /clock
    "camera_rate": 10.0,  # Hz of sim time for the camera images
    "step_sync": 0.0,  # s of wall time the clock waits at each camera instant for that step's target; 0 = never
    "frame_id": "base",
    "target_topic": "/cartesian_impedance_controller/target_frame",
    "gripper_topic": "/sim/gripper_command",
}


def _stamp(t: float) -> Time:
    # Rounded, not truncated: MuJoCo's accumulated time sits a hair below the tick instants (0.29999999999999993),
    # and a clock one nanosecond short of a tick does not fire the policy node's timer of that tick.
    ns = round(t * 1e9)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class SimNode(Node):
    def __init__(self):
        super().__init__("sim")
        self.params = declare_all(self, PARAMS)
        self.sim = FrankaSim(self._sim_config())
        self.rtf = float(self.params["real_time_factor"])
        if self.rtf < 0 or self.params["state_rate"] <= 0 or self.params["camera_rate"] <= 0:
            raise ConfigError("real_time_factor must be >= 0 (0: as fast as possible); state_rate and "
                              "camera_rate must be > 0")
        self.frame_id = self.params["frame_id"]
        self.lock = threading.Lock()
        self.episode_id = first_episode_id()
        self.sim.reset(seed=int(self.params["seed"]))
        self.clock_offset = 0.0  # sim time restarts at 0 on every reset; /clock must never go backwards
        self.target_stamp = -1.0  # stamp of the last target (step_sync)

        self.pub_clock = self.create_publisher(Clock, "/clock", 10)
        self.pub_joints = self.create_publisher(JointState, "/joint_states", 10)
        self.pub_state = self.create_publisher(RobotState, "/conrft/robot_state", 10)
        self.pub_pose = self.create_publisher(PoseStamped, "/sim/ee_pose", 10)
        self.pub_twist = self.create_publisher(TwistStamped, "/sim/ee_twist", 10)
        self.pub_wrench = self.create_publisher(WrenchStamped, "/sim/wrench", 10)
        self.pub_success = self.create_publisher(Bool, "/sim/success", 10)
        self.pub_world = self.create_publisher(Float64MultiArray, "/sim/world_state", 10)
        reliable = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_images = {
            c: (self.create_publisher(Image, f"/camera/{c}/image_raw", reliable),
                self.create_publisher(CameraInfo, f"/camera/{c}/camera_info", reliable))
            for c in self.sim.config.cameras
        }
        self.create_subscription(PoseStamped, self.params["target_topic"], self._on_target, 10)
        self.create_subscription(Float64, self.params["gripper_topic"], self._on_gripper, 10)
        self.create_service(ResetEpisode, "/sim/reset", self._on_reset)
        self.create_service(SetStiffness, STIFFNESS_SERVICE, self._on_stiffness)
        self.running = True
        self.get_logger().info(
            f"sim ready: task {self.sim.task.name}, cameras {list(self.sim.config.cameras)}, "
            f"real_time_factor {self.rtf or 'max'}, target topic {self.params['target_topic']}"
        )

    def _sim_config(self) -> SimConfig:
        data = {}
        if self.params["config_file"]:
            raw = load_yaml(self.params["config_file"])
            data = dict(raw.get("sim", raw))
        for key in ("task", "image_width", "image_height", "unseen"):
            data[key] = self.params[key]
        return from_dict(SimConfig, data, "sim")

    # --- physics and publishing -------------------------------------------------------------------------
    def run_physics(self) -> None:
        """Physics loop; runs in the thread that created the simulator (its GL context lives there)."""
        cfg = self.sim.config
        substeps = max(1, round(1.0 / (self.params["state_rate"] * cfg.physics_dt)))
        frame = round(self.params["camera_rate"] ** -1 / (substeps * cfg.physics_dt))  # physics ticks a frame
        wall0 = time.monotonic()
        while self.running and rclpy.ok() and not stop_requested():
            with self.lock:
                self.sim.step_physics(substeps)
                now = self._now()
                # On the clock's frame instants (a reset moves sim time, not the clock's phase).
                render = round(now / (substeps * cfg.physics_dt)) % frame == 0
                self._publish_state(render=render)
            if render and self.params["step_sync"] > 0:
                wall0 += self._wait_for_target(now)  # the wait is not sim time: keep real-time pacing after it
            if self.rtf > 0:
                lag = now / self.rtf - (time.monotonic() - wall0)
                if lag > 0:
                    time.sleep(lag)

    def _wait_for_target(self, now: float) -> float:
        """Hold the clock at a step's instant until its target arrives (or step_sync passes); wall s waited."""
        start = time.monotonic()
        while self.running and self.target_stamp < now - 1e-6 and time.monotonic() - start < self.params["step_sync"]:
            time.sleep(0.0005)
        return time.monotonic() - start

    def _now(self) -> float:
        return self.clock_offset + self.sim.sim_time

    def _publish_state(self, render: bool) -> None:
        now = _stamp(self._now())
        self.pub_clock.publish(Clock(clock=now))
        q, qd = self.sim.joint_positions(), self.sim.joint_velocities()
        fingers = self.sim.finger_positions()
        js = JointState(name=JOINT_NAMES + FINGER_NAMES, position=q.tolist() + fingers.tolist(),
                        velocity=qd.tolist() + [0.0, 0.0])
        js.header.stamp = now
        self.pub_joints.publish(js)
        pos, quat = self.sim.ee_pose()
        tw, wr = self.sim.ee_twist(), self.sim.wrench()
        st = RobotState(joint_names=JOINT_NAMES, joint_positions=q.tolist(), joint_velocities=qd.tolist(),
                        gripper_width=float(self.sim.gripper_width()))
        st.header.stamp, st.header.frame_id = now, self.frame_id
        st.ee_pose.position.x, st.ee_pose.position.y, st.ee_pose.position.z = map(float, pos)
        o = st.ee_pose.orientation  # ROS quaternions are xyzw, the simulator's wxyz
        o.w, o.x, o.y, o.z = map(float, quat)
        for vec, vals in ((st.ee_twist.linear, tw[:3]), (st.ee_twist.angular, tw[3:]),
                          (st.wrench.force, wr[:3]), (st.wrench.torque, wr[3:])):
            vec.x, vec.y, vec.z = map(float, vals)
        self.pub_state.publish(st)
        self.pub_pose.publish(PoseStamped(header=st.header, pose=st.ee_pose))
        self.pub_twist.publish(TwistStamped(header=st.header, twist=st.ee_twist))
        self.pub_wrench.publish(WrenchStamped(header=st.header, wrench=st.wrench))
        self.pub_success.publish(Bool(data=bool(self.sim.success())))
        self.pub_world.publish(Float64MultiArray(data=self.sim.snapshot().tolist()))
        if render:
            for cam, frame in self.sim.render().items():
                h, w, _ = frame.shape
                img = Image(height=h, width=w, encoding="rgb8", step=w * 3, data=frame.tobytes())
                img.header.stamp, img.header.frame_id = now, f"{cam}_camera"
                info = CameraInfo(height=h, width=w)
                info.header = img.header
                pub_img, pub_info = self.pub_images[cam]
                pub_img.publish(img)
                pub_info.publish(info)

    # --- commands and services --------------------------------------------------------------------------
    def _on_target(self, msg: PoseStamped) -> None:
        p, o = msg.pose.position, msg.pose.orientation
        pos = np.array([p.x, p.y, p.z])
        quat = np.array([o.w, o.x, o.y, o.z])
        if msg.header.frame_id not in ("", self.frame_id):
            self.get_logger().warning(f"target rejected: frame '{msg.header.frame_id}' is not '{self.frame_id}'",
                                   throttle_duration_sec=1.0)
            return
        if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(quat)) and np.linalg.norm(quat) > 1e-6):
            self.get_logger().warning("target rejected: non-finite position or invalid quaternion; holding the "
                                   "last valid target", throttle_duration_sec=1.0)
            return
        clipped = self.sim.task.safety_box.clip(pos)
        if not np.allclose(clipped, pos):
            self.get_logger().warning(f"target {np.round(pos, 3)} outside the safety box: clipped",
                                   throttle_duration_sec=1.0)
        with self.lock:
            self.sim.set_target(clipped, quat / np.linalg.norm(quat))
            self.target_stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9

    def _on_gripper(self, msg: Float64) -> None:
        width = msg.data
        if not np.isfinite(width):
            self.get_logger().warning("gripper command rejected: non-finite width", throttle_duration_sec=1.0)
            return
        with self.lock:
            self.sim.set_gripper(float(np.clip(width, 0.0, self.sim.config.action_scale.gripper_max_width)))

    def _on_reset(self, req: ResetEpisode.Request, res: ResetEpisode.Response) -> ResetEpisode.Response:
        try:
            options = dict(o.split("=", 1) for o in req.options)
        except ValueError:
            res.success, res.message = False, f"options must be key=value strings, got {list(req.options)}"
            return res
        unknown = set(options) - {"unseen"}
        if unknown:
            res.success, res.message = False, f"unknown reset option(s) {sorted(unknown)}; supported: unseen"
            return res
        unseen = options.get("unseen", str(self.params["unseen"])).lower() == "true"
        seed = int(req.seed) if req.seed >= 0 else None
        with self.lock:
            self.episode_id += 1
            self.clock_offset += self.sim.sim_time
            self.sim.reset(seed=seed, unseen=unseen)
        res.success, res.episode_id = True, self.episode_id
        res.message = f"episode {self.episode_id} reset (seed {seed})"
        return res

    def _on_stiffness(self, req: SetStiffness.Request, res: SetStiffness.Response) -> SetStiffness.Response:
        try:
            with self.lock:
                self.sim.set_stiffness(req.translational, req.rotational)
            res.success, res.message = True, f"stiffness {req.translational} N/m, {req.rotational} Nm/rad"
        except ValueError as exc:
            res.success, res.message = False, str(exc)
        return res


def main(args=None) -> int:
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    interrupt_main_thread()  # Ctrl-C lands in the physics loop; the context stays up until the spinner stopped
    try:
        node = SimNode()
    except (ConfigError, ValueError) as exc:
        print(f"sim_node: error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        node.run_physics()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.running = False
        executor.shutdown()
        spinner.join(timeout=5.0)  # a node destroyed under a spinning thread aborts the process
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
