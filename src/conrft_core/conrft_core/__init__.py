"""ConRFT learning library: models, losses, agents, replay, rosbag2 datasets, checkpoints, configuration.

Imports no rclpy: everything here is tested without a ROS graph.
"""
