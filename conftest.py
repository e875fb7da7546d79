"""Workspace-wide test isolation: each pytest run gets its own ROS domain, ROS_HOME and headless GL.

Concurrent runs on one machine must not see each other's DDS traffic, so the domain id is derived from
the process id (Linux: ids 1-101 are safe for the default port mapping).
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_HOME"] = tempfile.mkdtemp(prefix="conrft-test-ros-home-")
os.environ.setdefault("MUJOCO_GL", "egl")


REALTIME_FIXTURES = {"ros_process", "ros_node", "run_session"}


def pytest_collection_modifyitems(config, items):
    """A test that runs ROS nodes against the wall clock is `realtime`: `make test` runs those one at a time, after
    the others have run two at a time (a second job on the cores delays callbacks past the nodes' deadlines)."""
    for item in items:
        if REALTIME_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.realtime)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(os.environ["ROS_HOME"], ignore_errors=True)


class RosProcess:
    """A node started as its own OS process (real DDS between processes), stopped at teardown."""

    def __init__(self, module: str, *ros_args: str, log_path, env=None):
        self.log_path = log_path
        self._log = open(log_path, "w")
        cmd = [sys.executable, "-m", module, "--ros-args", *ros_args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, env=env)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return open(self.log_path).read()

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


@pytest.fixture
def ros_process(tmp_path):
    """Factory: ros_process("conrft_sim.sim_node", "-p", "task:=pick_cube") -> RosProcess. The processes of a test
    share a ROS_HOME of their own: a policy node's outbox there is not resent into another test's learner."""
    procs = []
    env = {**os.environ, "ROS_HOME": str(tmp_path / "ros_home")}

    def start(module: str, *ros_args: str) -> RosProcess:
        p = RosProcess(module, *ros_args, log_path=tmp_path / f"{module}.{len(procs)}.log", env=env)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


@pytest.fixture
def ros_node():
    """An rclpy node in this test process, in its own context, plus a spin helper."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node(f"test_{os.getpid()}", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)

    def spin_until(predicate, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
            if predicate():
                return True
        return False

    node.spin_until = spin_until
    yield node
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=ctx)
