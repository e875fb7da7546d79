"""A simulated HIL-ConRFT training session: sim node, policy node, scripted teleop, learner (and RViz).

    ros2 launch conrft_bringup train_sim.launch.py vla_checkpoint:=out/demo/vla.safetensors \
        demo_bag:=out/demo/pick_cube_demos run_dir:=out/session

The same nodes and parameter files as `conrft session config/sim_pick_cube.yaml` (for machines without
ros2 launch). Every node runs on sim time from the sim node's /clock.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    config = lambda name: PathJoinSubstitution([FindPackageShare("conrft_bringup"), "config", name])  # noqa: E731
    arg = LaunchConfiguration
    sim_time = {"use_sim_time": True}
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
        DeclareLaunchArgument("rviz", default_value="true", description="start RViz with the ConRFT view"),
        Node(package="conrft_sim", executable="sim_node", name="sim", output="screen",
             parameters=[config("sim_node.yaml"), {"task": arg("task"), "image_width": arg("image_size"),
                                                   "image_height": arg("image_size"),
                                                   "real_time_factor": arg("real_time_factor")}]),
        Node(package="conrft_policy", executable="policy_node", name="policy", output="screen",
             parameters=[config("policy_sim.yaml"), sim_time,
                         {"vla_checkpoint": arg("vla_checkpoint"), "instruction": arg("instruction")}]),
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
