"""Start the MuJoCo sim node alone: a simulated Franka + Cartesian impedance controller + cameras.

    ros2 launch conrft_bringup sim.launch.py task:=peg_insert real_time_factor:=0.0
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    params = PathJoinSubstitution([FindPackageShare("conrft_bringup"), "config", "sim_node.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument("task", default_value="pick_cube",
                              description="pick_cube | peg_insert | drawer_open"),
        DeclareLaunchArgument("real_time_factor", default_value="1.0",
                              description="simulation speed relative to wall time; 0.0 runs as fast as possible"),
        Node(
            package="conrft_sim",
            executable="sim_node",
            name="sim",
            output="screen",
            parameters=[params, {
                "task": LaunchConfiguration("task"),
                "real_time_factor": LaunchConfiguration("real_time_factor"),
            }],
        ),
    ])
