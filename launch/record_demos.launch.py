"""Record demonstrations: the human drives (SpaceMouse or keyboard), the demo recorder keeps successful
episodes in a rosbag2 bag the learner loads (`demo_bags`).

    ros2 launch conrft_bringup record_demos.launch.py output:=demos/pick_cube_1 sim:=true
    ros2 launch conrft_bringup record_demos.launch.py output:=demos/pick_1 sim:=false \
        instruction:="pick up the red cube" controller:=franka_ros2

The policy node runs in teleop_only mode: it runs episodes (reset, time limit, success key), executes the
human's commands through the same safety checks as in training and publishes the transitions; the robot holds
whenever the human does not drive. sim:=false starts the cameras and the robot-state publisher for a real
robot (its driver, controller, reset service and gripper bridge are yours, as in train_real.launch.py; the
controller's preset, config/controllers/<name>.yaml, is `controller`: sim by default with sim:=true, else
franka_ros2; where it streams, the target streamer streams the policy node's step targets).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from conrft_bringup.launch_actions import target_streamer


def streamer(context):
    """The target streamer of the policy node below (its parameter file as `sim` picks it)."""
    sim = context.perform_substitution(LaunchConfiguration("sim")) == "true"
    return target_streamer(context, "policy_sim.yaml" if sim else "policy_real.yaml", use_sim_time=sim)


def generate_launch_description():
    config = lambda name: PathJoinSubstitution([FindPackageShare("conrft_bringup"), "config", name])  # noqa: E731
    arg = LaunchConfiguration
    sim, real = IfCondition(arg("sim")), UnlessCondition(arg("sim"))
    preset = config(["controllers/", arg("controller"), ".yaml"])  # as in train_real.launch.py
    policy_params = PythonExpression(["'policy_sim.yaml' if '", arg("sim"), "' == 'true' else 'policy_real.yaml'"])
    return LaunchDescription([
        DeclareLaunchArgument("output", description="bag folder to create"),
        DeclareLaunchArgument("sim", default_value="true", description="true: the MuJoCo sim node as the robot"),
        DeclareLaunchArgument("task", default_value="pick_cube", description="sim task"),
        DeclareLaunchArgument("instruction", default_value="pick up the red cube"),
        DeclareLaunchArgument("vla_checkpoint", default_value="",
                              description="VLA of the later training (its cameras are recorded)"),
        DeclareLaunchArgument("teleop_config", default_value=config("teleop_spacenav.yaml"),
                              description="teleop parameters (source: spacenav or keyboard)"),
        DeclareLaunchArgument("controller", default_value=PythonExpression(
            ["'sim' if '", arg("sim"), "' == 'true' else 'franka_ros2'"]), description="controller preset"),
        DeclareLaunchArgument("image_size", default_value="128"),
        Node(package="conrft_sim", executable="sim_node", name="sim", output="screen", condition=sim,
             parameters=[config("sim_node.yaml"), preset,
                         {"task": arg("task"), "image_width": arg("image_size"), "image_height": arg("image_size")}]),
        Node(package="conrft_policy", executable="camera_publisher", name="camera", output="screen", condition=real,
             parameters=[config("camera_publisher.yaml")]),
        Node(package="conrft_policy", executable="camera_publisher", name="camera_wrist", output="screen",
             condition=real, parameters=[config("camera_publisher.yaml")]),
        Node(package="conrft_policy", executable="robot_state_publisher", name="robot_state_publisher",
             output="screen", condition=real, parameters=[config("robot_state_publisher.yaml")]),
        Node(package="conrft_policy", executable="policy_node", name="policy", output="screen",
             parameters=[PathJoinSubstitution([FindPackageShare("conrft_bringup"), "config", policy_params]), preset,
                         {"teleop_only": True, "vla_checkpoint": arg("vla_checkpoint"),
                          "instruction": arg("instruction")}]),
        OpaqueFunction(function=streamer),
        Node(package="spacenav", executable="spacenav_node", name="spacenav", output="screen"),
        Node(package="conrft_teleop", executable="teleop_node", name="teleop", output="screen",
             parameters=[arg("teleop_config")]),
        Node(package="conrft_bringup", executable="demo_recorder", name="demo_recorder", output="screen",
             parameters=[config("demo_recorder.yaml"), {"output": arg("output")}]),
    ])
