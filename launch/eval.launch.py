"""Evaluate a trained policy in simulation over ROS: sim node + policy node, no human, no learning.

    ros2 launch conrft_bringup eval.launch.py vla_checkpoint:=out/demo/vla.safetensors \
        policy_checkpoint:=out/demo/session/checkpoint.safetensors episodes:=20

The policy node runs `episodes` episodes with the deterministic policy (reset seeds from 1000000, the
evaluation range training never uses) and exits; their outcomes are in its log and on /conrft/transitions.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    config = lambda name: PathJoinSubstitution([FindPackageShare("conrft_bringup"), "config", name])  # noqa: E731
    arg = LaunchConfiguration
    return LaunchDescription([
        DeclareLaunchArgument("task", default_value="pick_cube"),
        DeclareLaunchArgument("instruction", default_value="pick up the red cube"),
        DeclareLaunchArgument("vla_checkpoint"),
        DeclareLaunchArgument("policy_checkpoint", description="checkpoint.safetensors of a learner or `conrft train`"),
        DeclareLaunchArgument("episodes", default_value="20"),
        DeclareLaunchArgument("image_size", default_value="64"),
        DeclareLaunchArgument("unseen", default_value="false", description="objects over the unseen range"),
        Node(package="conrft_sim", executable="sim_node", name="sim", output="screen",
             parameters=[config("sim_node.yaml"), {"task": arg("task"), "image_width": arg("image_size"),
                                                   "image_height": arg("image_size")}]),
        Node(package="conrft_policy", executable="policy_node", name="policy", output="screen",
             parameters=[config("policy_sim.yaml"), {"use_sim_time": True},
                         {"vla_checkpoint": arg("vla_checkpoint"), "policy_checkpoint": arg("policy_checkpoint"),
                          "instruction": arg("instruction"), "episodes": arg("episodes"), "deterministic": True,
                          "seed": 1000000, "unseen": arg("unseen")}]),
    ])
