"""A simulated HIL-ConRFT training session: sim node, policy node, scripted teleop, learner (and RViz).

    ros2 launch conrft_bringup train_sim.launch.py vla_checkpoint:=out/demo/vla.safetensors \
        demo_bag:=out/demo/pick_cube_demos run_dir:=out/session

The same nodes and parameter files as `conrft session config/sim_pick_cube.yaml` (for machines without
ros2 launch). Every node runs on sim time from the sim node's /clock. Success comes from the sim's privileged
/sim/success; with `success_detector:=true detector_model:=FILE success_topic:=/conrft/success` from the
learned detector on the camera images instead (config/success_detector.yaml).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from conrft_bringup.launch_actions import target_streamer


def generate_launch_description():
    config = lambda name: PathJoinSubstitution([FindPackageShare("conrft_bringup"), "config", name])  # noqa: E731
    arg = LaunchConfiguration
    sim_time = {"use_sim_time": True}
    preset = config(["controllers/", arg("controller"), ".yaml"])  # as in train_real.launch.py
    return LaunchDescription([
        DeclareLaunchArgument("task", default_value="pick_cube", description="pick_cube | peg_insert | drawer_open"),
        DeclareLaunchArgument("instruction", default_value="pick up the red cube",
                              description="the task's language instruction"),
        DeclareLaunchArgument("vla_checkpoint", description="vla.safetensors from `conrft pretrain`"),
        DeclareLaunchArgument("demo_bag", description="rosbag2 folder with demonstrations"),
        DeclareLaunchArgument("run_dir", description="learner checkpoints and logs (resumed if present)"),
        DeclareLaunchArgument("train_config", default_value=config("train_session.yaml"),
                              description="YAML with the `train:` section of the learner"),
        DeclareLaunchArgument("image_size", default_value="64", description="camera images = the VLA input size"),
        DeclareLaunchArgument("real_time_factor", default_value="1.0", description="simulation speed"),
        DeclareLaunchArgument("step_sync", default_value="0.3",
                              description="s the sim clock waits at each step for its target (0: free-running)"),
        DeclareLaunchArgument("rviz", default_value="true", description="start RViz with the ConRFT view"),
        DeclareLaunchArgument("success_detector", default_value="false",
                              description="start the learned success detector (needs detector_model)"),
        DeclareLaunchArgument("detector_model", default_value="",
                              description="success_detector.safetensors from `conrft success-detector train`"),
        DeclareLaunchArgument("success_topic", default_value="/sim/success",
                              description="the policy node's success source; /conrft/success = the detector's"),
        DeclareLaunchArgument("controller", default_value="sim",
                              description="controller preset (config/controllers/): the sim node is the sim's"),
        Node(package="conrft_sim", executable="sim_node", name="sim", output="screen",
             parameters=[config("sim_node.yaml"), preset,
                         {"task": arg("task"), "image_width": arg("image_size"), "image_height": arg("image_size"),
                          "real_time_factor": arg("real_time_factor"), "step_sync": arg("step_sync")}]),
        Node(package="conrft_policy", executable="policy_node", name="policy", output="screen",
             parameters=[config("policy_sim.yaml"), preset, sim_time,
                         {"vla_checkpoint": arg("vla_checkpoint"), "instruction": arg("instruction"),
                          "success_topic": arg("success_topic")}]),
        OpaqueFunction(function=target_streamer, args=["policy_sim.yaml", True]),  # none with the `sim` preset: one target per step
        # The learned success detector on the cameras, publishing on /conrft/success (success_detector.yaml).
        Node(package="conrft_policy", executable="success_detector", name="success_detector", output="screen",
             condition=IfCondition(arg("success_detector")),
             parameters=[config("success_detector.yaml"), sim_time, {"model": arg("detector_model")}]),
        Node(package="conrft_teleop", executable="teleop_node", name="teleop", output="screen",
             parameters=[config("teleop_sim.yaml"), sim_time, {"task": arg("task")}]),
        Node(package="conrft_learner", executable="learner_node", name="learner", output="screen",
             parameters=[config("learner.yaml"), sim_time,
                         {"vla_checkpoint": arg("vla_checkpoint"), "demo_bags": [arg("demo_bag")],
                          "run_dir": arg("run_dir"), "config_file": arg("train_config"), "task": arg("task")}]),
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen", condition=IfCondition(arg("rviz")),
             arguments=["-d", PathJoinSubstitution([FindPackageShare("conrft_bringup"), "rviz", "conrft.rviz"])],
             parameters=[sim_time]),
    ])
