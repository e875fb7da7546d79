"""`conrft session`: the whole simulated training graph as separate processes over DDS (sim, policy node,
scripted teleop, learner, demo recorder), and the session's handling of bad input and crashing nodes."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conrft_core.checkpoint import load_checkpoint
from conrft_core.data.bags import read_episodes

ROOT = Path(__file__).resolve().parents[3]
SESSION = ROOT / "config" / "sim_pick_cube.yaml"
pytestmark = pytest.mark.realtime  # every test runs a session's nodes (some without the run_session fixture)


def with_recorder(tmp_path, bag, session_variant) -> Path:
    """The shipped session plus a demo recorder keeping every episode."""
    def add(cfg):
        cfg["nodes"]["recorder"] = {"package": "conrft_bringup", "executable": "demo_recorder",
                                    "parameters": {"output": str(bag), "keep": "all"}}
    return session_variant(SESSION, tmp_path / "session.yaml", add)


def test_training_session_over_dds(tmp_path, graph_assets, run_session, session_variant):
    run_dir, bag = tmp_path / "run", tmp_path / "recorded"
    res = run_session(with_recorder(tmp_path, bag, session_variant),
                      {**graph_assets, "run_dir": run_dir, "max_episode_steps": 30}, timeout=240)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "[session] learner finished: stopping the session" in out

    # Transitions arrived at the learner and it learned from them.
    _, config = load_checkpoint(run_dir / "checkpoint.safetensors")
    progress, ingested = config["progress"], config["meta"]["ingested_episodes"]
    assert progress["env_steps"] >= 100 and len(ingested) >= 4
    # Weights were published and adopted: the policy ran more than one version.
    adopted = [line for line in out.splitlines() if "[policy]" in line and "adopted policy weights version" in line]
    assert len({line.split("version ")[1].split()[0] for line in adopted}) >= 2, out[-4000:]
    # The scripted human intervened (the untrained policy stalls), and the steps say so.
    assert progress["intervened_steps"] > 0
    # The recorder's bag loads back into the episodes the learner received.
    episodes = {ep.episode_id: ep for ep in read_episodes(bag)}
    assert set(ingested) <= set(episodes)
    assert sum(episodes[i].length for i in ingested) == progress["env_steps"]
    assert sum(int(episodes[i].intervened.sum()) for i in ingested) == progress["intervened_steps"]
    assert all(episodes[i].length <= 30 for i in ingested)


def test_session_stops_everything_when_a_node_crashes(tmp_path, graph_assets, run_session):
    res = run_session(SESSION, {**graph_assets, "demo_bag": tmp_path / "no_such_bag", "run_dir": tmp_path / "r"},
                      timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    assert "no_such_bag" in out and "learner crashed (exit status 1)" in out
    pids = [int(part.split("pid ")[1].rstrip(")")) for part in out.split("[session] started ")[1].splitlines()[0]
            .split(", ")]
    for pid in pids:  # every node was stopped
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_session_rejects_unknown_argument(run_session):
    res = run_session(SESSION, {"vla_chekpoint": "x"}, timeout=60)
    assert res.returncode == 2
    assert "unknown session argument 'vla_chekpoint'" in res.stderr


def test_success_detector_is_a_session_switch(tmp_path):
    from conrft_bringup.session import load_session
    from conrft_core.config import ConfigError

    _, nodes = load_session(SESSION, {})
    assert "success_detector" not in nodes and nodes["policy"].parameters["success_topic"] == "/sim/success"
    _, nodes = load_session(SESSION, {"success_detector": "true", "detector_model": "d.safetensors",
                                      "success_topic": "/conrft/success"})
    detector = yaml.safe_load((ROOT / "config" / "success_detector.yaml").read_text())
    assert nodes["success_detector"].parameters == {"model": "d.safetensors"}
    assert nodes["success_detector"].params == [str(SESSION.parent / "success_detector.yaml")]
    # The policy node listens where the detector publishes.
    assert nodes["policy"].parameters["success_topic"] == \
        detector["success_detector"]["ros__parameters"]["success_topic"] == "/conrft/success"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"args": {"on": "maybe"}, "nodes": {"a": {
        "package": "conrft_policy", "executable": "success_detector", "enabled": "$(arg on)"}}}))
    with pytest.raises(ConfigError, match="nodes.a.enabled must be true or false, got 'maybe'"):
        load_session(bad, {})


def test_controller_preset_is_one_session_argument():
    from conrft_bringup.session import load_session
    from conrft_core.config import ConfigError

    _, nodes = load_session(SESSION, {})
    preset = str(SESSION.parent / "controllers" / "sim.yaml")
    assert nodes["policy"].params[-1] == nodes["sim"].params[-1] == preset  # after their own files: it wins
    _, nodes = load_session(SESSION, {"controller": "crisp"})
    assert nodes["policy"].params[-1] == str(SESSION.parent / "controllers" / "crisp.yaml")
    with pytest.raises(ConfigError, match="unknown controller preset 'crsp'; presets in .*: crisp, franka_ros2, fzi"):
        load_session(SESSION, {"controller": "crsp"})


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGKILL, -9)])
def test_no_node_outlives_its_session(tmp_path, sig, status):
    """SIGTERM stops the session as Ctrl-C does; a session killed outright takes its nodes with it."""
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump({"nodes": {"recorder": {
        "package": "conrft_bringup", "executable": "demo_recorder", "parameters": {"output": str(tmp_path / "b")}}}}))
    proc = subprocess.Popen([sys.executable, "-m", "conrft_bringup.cli", "session", str(path)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    first = proc.stdout.readline()
    assert first.startswith("[session] started recorder (pid "), first
    pid = int(first.split("pid ")[1].rstrip(")\n"))
    time.sleep(2.0)  # the node is up
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == status
    deadline = time.monotonic() + 15
    while Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower():
        assert time.monotonic() < deadline, f"node {pid} outlived its session ({sig.name})"
        time.sleep(0.2)
