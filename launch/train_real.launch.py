"""HIL-ConRFT training on a real robot: cameras, robot-state publisher, policy node, SpaceMouse teleop, learner.

    ros2 launch conrft_bringup train_real.launch.py vla_checkpoint:=vla.safetensors demo_bag:=demos/pick \
        run_dir:=runs/pick instruction:="pick up the red cube" controller:=franka_ros2

The robot driver and the Cartesian impedance controller are yours: start them first and name its preset with
`controller` (config/controllers/<name>.yaml: franka_ros2, crisp, fzi; `sim` for a sim node started apart):
target topic, frame, stream rate, stiffness interface. Where the preset streams, the target streamer (a process
of its own) streams the policy node's step targets at that rate. The policy node refuses to move while nothing
subscribes to its target topic, and while a node other than home_reset or the target streamer publishes there
(with CRISP, home_reset too: CRISP ignores a target topic with two publishers). Episode resets: home_reset serves
/conrft/reset_episode by driving the arm to the home pose of config/home_reset.yaml (measure yours); objects are
put back by a person. Also yours: a bridge from /conrft/gripper_width (std_msgs/Float64, metres) to the gripper
driver, and robot_state_publisher's topics for a driver other than franka_ros2
(config/robot_state_publisher.yaml). The SpaceMouse needs spacenavd; the spacenav driver node starts here.
Success comes from the human's key; with `success_detector:=true detector_model:=FILE
success_topic:=/conrft/success` also from the learned detector on the camera images
(config/success_detector.yaml; train it on your recorded bags with `conrft success-detector train`).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from conrft_bringup.launch_actions import target_streamer

CONTROLLERS = ["franka_ros2", "crisp", "fzi", "sim"]  # config/controllers/*.yaml


def generate_launch_description():
    config = lambda name: PathJoinSubstitution([FindPackageShare("conrft_bringup"), "config", name])  # noqa: E731
    arg = LaunchConfiguration
    preset = config(["controllers/", arg("controller"), ".yaml"])  # after the nodes' own files: its values win
    return LaunchDescription([
        DeclareLaunchArgument("vla_checkpoint", description="vla.safetensors (your pretrained VLA)"),
        DeclareLaunchArgument("demo_bag", description="rosbag2 folder recorded with record_demos.launch.py"),
        DeclareLaunchArgument("run_dir", description="learner checkpoints and logs (resumed if present)"),
        DeclareLaunchArgument("instruction", description="the task's language instruction"),
        DeclareLaunchArgument("train_config", default_value=config("train_session.yaml")),
        DeclareLaunchArgument("controller", default_value="franka_ros2", choices=CONTROLLERS,
                              description="controller preset: config/controllers/<controller>.yaml"),
        DeclareLaunchArgument("front_device", default_value="/dev/video0"),
        DeclareLaunchArgument("wrist_device", default_value="/dev/video2"),
        DeclareLaunchArgument("success_detector", default_value="false",
                              description="start the learned success detector (needs detector_model)"),
        DeclareLaunchArgument("detector_model", default_value="",
                              description="success_detector.safetensors from `conrft success-detector train`"),
        DeclareLaunchArgument("success_topic", default_value="",
                              description="the policy node's success topic (\"\" = the human's key only); "
                                          "/conrft/success = the detector's"),
        Node(package="conrft_policy", executable="camera_publisher", name="camera", output="screen",
             parameters=[config("camera_publisher.yaml"), {"device": arg("front_device")}]),
        Node(package="conrft_policy", executable="camera_publisher", name="camera_wrist", output="screen",
             parameters=[config("camera_publisher.yaml"), {"device": arg("wrist_device")}]),
        Node(package="conrft_policy", executable="robot_state_publisher", name="robot_state_publisher",
             output="screen", parameters=[config("robot_state_publisher.yaml")]),
        Node(package="conrft_policy", executable="home_reset", name="home_reset", output="screen",
             parameters=[config("home_reset.yaml"), preset]),
        Node(package="conrft_policy", executable="policy_node", name="policy", output="screen",
             parameters=[config("policy_real.yaml"), preset,
                         {"vla_checkpoint": arg("vla_checkpoint"), "instruction": arg("instruction"),
                          "success_topic": arg("success_topic")}]),
        OpaqueFunction(function=target_streamer, args=["policy_real.yaml"]),
        # The learned success detector on the cameras, publishing on /conrft/success (success_detector.yaml).
        Node(package="conrft_policy", executable="success_detector", name="success_detector", output="screen",
             condition=IfCondition(arg("success_detector")),
             parameters=[config("success_detector.yaml"), {"model": arg("detector_model")}]),
        Node(package="spacenav", executable="spacenav_node", name="spacenav", output="screen"),
        Node(package="conrft_teleop", executable="teleop_node", name="teleop", output="screen",
             parameters=[config("teleop_spacenav.yaml")]),
        Node(package="conrft_learner", executable="learner_node", name="learner", output="screen",
             parameters=[config("learner.yaml"),
                         {"vla_checkpoint": arg("vla_checkpoint"), "demo_bags": [arg("demo_bag")],
                          "run_dir": arg("run_dir"), "config_file": arg("train_config")}]),
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
             arguments=["-d", PathJoinSubstitution([FindPackageShare("conrft_bringup"), "rviz", "conrft.rviz"])]),
    ])
