"""ConRFT library, importable without rclpy: everything here is tested without a ROS graph.

    data       episodes, replay buffers, rosbag2 bags, Transition messages <-> episodes, the learner's journal
    learning   models, losses, agents, the VLA, the training stages and the in-process loop
    robot      the contract the ROS nodes rely on: action spaces and safety, chunk execution, weights on the
               wire, teleop mappings, robot-state assembly, homing, node parameters and signals

Shared by all three: `config` (typed configuration from YAML) and `checkpoint` (safetensors files). Imports
point one way only: `robot` may import `learning` and `data`, `learning` may import `data`, `data` neither
(test_layout checks it, and that no import runs in a circle).
"""
