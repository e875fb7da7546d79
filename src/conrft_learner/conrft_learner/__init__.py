"""Learner node: offline and online ConRFT / CO-RFT stages over ROS topics, weight publishing, checkpoints, resume."""
