"""Workspace-wide test isolation: each pytest run gets its own ROS domain, ROS_HOME and headless GL.

Concurrent runs on one machine must not see each other's DDS traffic, so the domain id is derived from
the process id (Linux: ids 1-101 are safe for the default port mapping).
"""
import os
import tempfile

os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_HOME"] = tempfile.mkdtemp(prefix="conrft-test-ros-home-")
os.environ.setdefault("MUJOCO_GL", "egl")
