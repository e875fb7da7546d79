"""Several simulated robots feeding one learner: robot k (k = 1..robots) is a sim node, a policy node and a
scripted teleop in the namespace /robot_k; one learner takes in every robot's transitions and publishes one set
of weights that every policy node adopts.

    ros2 launch conrft_bringup train_fleet.launch.py robots:=4 vla_checkpoint:=out/demo/vla.safetensors \
        demo_bag:=out/demo/pick_cube_demos run_dir:=out/fleet/session

The same nodes and parameter files as `conrft session config/sim_fleet.yaml` (for machines without ros2 launch),
whose `fleet.remap` list (read from there) names what each robot's nodes move under their namespace; the
learner's link (/conrft/transitions, /conrft/transitions_resent, /conrft/episode_acks, /conrft/policy_weights)
stays shared. Every node runs on sim time: a robot's on its own sim's clock, the learner on robot 1's.
"""
from pathlib import Path

import yaml
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, GroupAction, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, PushRosNamespace

from launch import LaunchDescription


def robots_and_learner(context):
    config = Path(get_package_share_directory("conrft_bringup")) / "config"
    arg = lambda name: context.perform_substitution(LaunchConfiguration(name))  # noqa: E731
    fleet = yaml.safe_load((config / "sim_fleet.yaml").read_text())["fleet"]
    count = int(arg("robots"))
    if count < 1:
        raise ValueError(f"robots must be >= 1, got {count}")
    names = [f"robot_{k}" for k in range(1, count + 1)]
    sim_time = {"use_sim_time": True}
    preset = str(config / "controllers" / "sim.yaml")
    actions = []
    for k, robot in enumerate(names, start=1):
        remaps = [(name, f"/{robot}{name}") for name in fleet["remap"]]
        actions.append(GroupAction([
            PushRosNamespace(robot),
            Node(package="conrft_sim", executable="sim_node", name="sim", output="screen", remappings=remaps,
                 parameters=[str(config / "sim_node.yaml"), preset,
                             {"task": "pick_cube", "image_width": int(arg("image_size")),
                              "image_height": int(arg("image_size")),
                              "real_time_factor": float(arg("real_time_factor")),
                              "step_sync": float(arg("step_sync"))}]),
            Node(package="conrft_policy", executable="policy_node", name="policy", output="screen",
                 remappings=remaps,
                 parameters=[str(config / "policy_sim.yaml"), preset, sim_time,
                             {"vla_checkpoint": arg("vla_checkpoint"), "instruction": "pick up the red cube",
                              "robot_name": robot, "seed": k * 100000}]),
            Node(package="conrft_teleop", executable="teleop_node", name="teleop", output="screen",
                 remappings=remaps,
                 parameters=[str(config / "teleop_sim.yaml"), sim_time,
                             {"task": "pick_cube", "robot_name": robot, "seed": k}]),
        ]))
    actions.append(Node(package="conrft_learner", executable="learner_node", name="learner", output="screen",
                        remappings=[("/clock", "/robot_1/clock")],
                        parameters=[str(config / "learner.yaml"), sim_time,
                                    {"vla_checkpoint": arg("vla_checkpoint"), "demo_bags": [arg("demo_bag")],
                                     "run_dir": arg("run_dir"), "config_file": arg("train_config"),
                                     "task": "pick_cube", "robots": names}]))
    return actions


def generate_launch_description():
    share = Path(get_package_share_directory("conrft_bringup")) / "config"
    return LaunchDescription([
        DeclareLaunchArgument("robots", default_value="2", description="how many simulated robots"),
        DeclareLaunchArgument("vla_checkpoint", description="vla.safetensors from `conrft pretrain`"),
        DeclareLaunchArgument("demo_bag", description="rosbag2 folder with demonstrations"),
        DeclareLaunchArgument("run_dir", description="learner checkpoints and logs (resumed if present)"),
        DeclareLaunchArgument("train_config", default_value=str(share / "train_session.yaml"),
                              description="YAML with the `train:` section of the learner"),
        DeclareLaunchArgument("image_size", default_value="64", description="camera images = the VLA input size"),
        DeclareLaunchArgument("real_time_factor", default_value="1.0",
                              description="every sim's speed (below 1.0 when the cores cannot keep up)"),
        DeclareLaunchArgument("step_sync", default_value="0.3",
                              description="s each sim clock waits at each step for its target (0: free-running)"),
        OpaqueFunction(function=robots_and_learner),
    ])
