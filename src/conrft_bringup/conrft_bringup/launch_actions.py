"""What the launch files under launch/ share (they import it; it needs ros2 launch's packages)."""
from __future__ import annotations

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from conrft_core.robot.node_params import file_parameters
from conrft_core.robot.relay import streamer_parameters


def target_streamer(context, policy_file: str, use_sim_time: bool = False) -> list:
    """For OpaqueFunction: the policy node's target streamer where the `controller` preset makes the policy node
    (parameters from config/`policy_file`, then the preset) stream (stream_rate > 0), with the policy node's
    topics, frame, safety box and rates (conrft_core.robot.relay); none otherwise."""
    config = Path(get_package_share_directory("conrft_bringup")) / "config"
    preset = config / "controllers" / f"{context.perform_substitution(LaunchConfiguration('controller'))}.yaml"
    shared = streamer_parameters(file_parameters([config / policy_file, preset], "policy"))
    if shared is None:
        return []
    return [Node(package="conrft_policy", executable="target_streamer", name="target_streamer", output="screen",
                 parameters=[str(config / "target_streamer.yaml"), shared]
                 + ([{"use_sim_time": True}] if use_sim_time else []))]
