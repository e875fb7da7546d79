"""A running simulated session (real processes over DDS): a learner and then the policy node killed and
restarted, a teleop node killed while it drives the robot, weights held back during the offline stage, and the
observations' timing."""
import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import yaml
from geometry_msgs.msg import PoseStamped
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message

from conrft_core.checkpoint import load_checkpoint
from conrft_core.data.journal import TransitionJournal
from conrft_interfaces.msg import Intervention, PolicyWeights, RobotState, Transition

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "config"
SYNC_TOLERANCE = yaml.safe_load((CONFIG / "policy_sim.yaml").read_text())["policy"]["ros__parameters"]["sync_tolerance"]
KEEP_ALL = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_ALL)


def start_graph(ros_process, assets, run_dir, policy_args=(), teleop_args=(), learner_args=(), sim_args=()):
    size = assets["image_size"]
    sim = ros_process("conrft_sim.sim_node", "--params-file", str(CONFIG / "sim_node.yaml"),
                      "-p", f"image_width:={size}", "-p", f"image_height:={size}", *sim_args)
    policy = start_policy(ros_process, assets, *policy_args)
    teleop = ros_process("conrft_teleop.teleop_node", "--params-file", str(CONFIG / "teleop_sim.yaml"),
                         "-p", "use_sim_time:=true", *teleop_args)
    learner = start_learner(ros_process, assets, run_dir, *learner_args)
    return sim, policy, teleop, learner


def start_policy(ros_process, assets, *args):
    return ros_process("conrft_policy.policy_node", "--params-file", str(CONFIG / "policy_sim.yaml"),
                       "-p", "use_sim_time:=true", "-p", f"vla_checkpoint:={assets['vla_checkpoint']}",
                       "-p", "instruction:=pick up the red cube", "-p", "max_episode_steps:=20", *args)


def ended(policy) -> dict[int, tuple[float, int]]:
    """Episode -> (wall-clock time, steps) of each episode the policy node's log says it ended."""
    return {int(e): (float(t), int(n)) for t, e, n in
            re.findall(r"\[(\d+\.\d+)\] \[policy\]: episode (\d+) ended after (\d+) steps", policy.output())}


def start_learner(ros_process, assets, run_dir, *args):
    return ros_process("conrft_learner.learner_node", "--params-file", str(CONFIG / "learner.yaml"),
                       "-p", "use_sim_time:=true", "-p", f"vla_checkpoint:={assets['vla_checkpoint']}",
                       "-p", f"demo_bags:=[{assets['demo_bag']}]", "-p", f"run_dir:={run_dir}",
                       "-p", f"config_file:={assets['train_config']}", "-p", "task:=pick_cube", *args)


def stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def wait_for(predicate, timeout: float, what: str, poll: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def received_before_kill(run_dir: Path) -> set[int]:
    """Episodes the learner held when it died: learned from (in its checkpoint) or complete in its journal."""
    held = set()
    if (run_dir / "checkpoint.safetensors").exists():
        held |= set(load_checkpoint(run_dir / "checkpoint.safetensors")[1]["meta"]["ingested_episodes"])
    journal = TransitionJournal(run_dir / "journal")
    for eid in journal.episodes():
        msgs = [deserialize_message(r, Transition) for r in journal.records(eid)]
        steps = {m.step for m in msgs}
        if any(m.terminated or m.truncated for m in msgs) and steps == set(range(len(steps))):
            held.add(eid)
    return held


def test_learner_then_policy_killed_and_restarted_lose_nothing(ros_process, ros_node, tmp_path, make_graph_assets):
    """SIGKILL the learner, then (while no learner acknowledges) the policy node; restart both: the learner keeps
    what it had, the restarted policy node resends the whole episodes its predecessor produced meanwhile (its
    outbox), and every episode is learned from once, with exactly its steps."""
    assets = make_graph_assets(tmp_path / "assets", online_env_steps=200)
    run_dir = tmp_path / "run"
    _, policy, _, learner = start_graph(ros_process, assets, run_dir,
                                        learner_args=("-p", "checkpoint_every_episodes:=2"))
    episodes_logged = lambda proc: len(re.findall(r"\]: episode \d+: ", proc.output()))  # noqa: E731
    wait_for(lambda: episodes_logged(learner) >= 3, 180, "three episodes at the learner")
    os.killpg(learner.proc.pid, signal.SIGKILL)
    learner.proc.wait()
    killed = time.time()
    held = received_before_kill(run_dir)
    assert len(held) >= 3

    # The policy node keeps running on its last weights while no learner runs; nobody acknowledges its episodes.
    transitions = []
    ros_node.create_subscription(Transition, "/conrft/transitions", transitions.append, KEEP_ALL)
    assert ros_node.spin_until(lambda: len(transitions) >= 10, timeout=30), policy.output()[-2000:]
    wait_for(lambda: sum(t > killed for t, _ in ended(policy).values()) >= 2, 60, "two episodes without a learner")
    assert "error" not in policy.output().lower()
    os.killpg(policy.proc.pid, signal.SIGKILL)
    policy.proc.wait()
    first = ended(policy)
    unacknowledged = {e for e, (t, _) in first.items() if t > killed}

    second = start_policy(ros_process, assets)
    restarted = start_learner(ros_process, assets, run_dir)
    assert restarted.wait(timeout=240) == 0, restarted.output()[-3000:]
    log = restarted.output()
    assert "journaled transitions replayed" in log
    assert re.search(r"outbox .*: [1-9]\d* unacknowledged episode", second.output()), second.output()[-2000:]
    assert "outbox: resent episode" in second.output()
    _, config = load_checkpoint(run_dir / "checkpoint.safetensors")
    ingested = config["meta"]["ingested_episodes"]
    final = set(ingested)
    assert held | unacknowledged <= final, f"lost episodes {sorted((held | unacknowledged) - final)}"
    assert len(final) == len(ingested)  # none learned from twice
    lengths = {e: n for e, (_, n) in {**first, **ended(second)}.items()}
    assert config["progress"]["env_steps"] == sum(lengths[e] for e in ingested)  # each with exactly its steps
    assert config["progress"]["env_steps"] >= 200


def test_robot_holds_when_teleop_dies_mid_intervention(ros_process, ros_node, tmp_path, graph_assets):
    # Long episodes and takeovers: the kill must land mid-takeover, not as the episode ends (which ends it).
    _, policy, teleop, _ = start_graph(ros_process, graph_assets, tmp_path / "run",
                                       policy_args=("-p", "max_episode_steps:=80"),
                                       teleop_args=("-p", "patience:=2", "-p", "takeover_steps:=40"))
    interventions, states, transitions = [], [], []
    ros_node.create_subscription(Intervention, "/conrft/intervention", interventions.append, 10)
    ros_node.create_subscription(RobotState, "/conrft/robot_state", states.append, 10)
    ros_node.create_subscription(Transition, "/conrft/transitions", transitions.append, KEEP_ALL)
    pattern = r"\[WARN\] \[(\d+\.\d+)\] \[policy\]: teleop silent during an intervention: holding position"
    holds = lambda: [float(t) for t in re.findall(pattern, policy.output())]  # noqa: E731 - wall-clock stamps
    # A hold is logged at most once a second: kill when none was logged in the last 1.2 s (a loaded machine can
    # delay the 50 Hz heartbeat past the 0.1 s timeout now and then), so the kill's hold is the one logged.
    driving = lambda: (len(interventions) >= 5 and all(m.active for m in interventions[-5:])  # noqa: E731
                       and transitions and transitions[-1].step < 60 and transitions[-1].intervened
                       and all(time.time() - t > 1.2 for t in holds()))
    assert ros_node.spin_until(driving, timeout=180), "no intervention"
    os.killpg(teleop.proc.pid, signal.SIGKILL)
    killed = time.time()
    teleop.proc.wait()
    ros_node.spin_until(lambda: any(t > killed for t in holds()), timeout=10)
    after = [t for t in holds() if t > killed - 0.05]
    assert after, policy.output()[-2000:]
    assert after[0] - killed <= 0.2
    # Held: the end effector comes to rest.
    states.clear()
    ros_node.spin_until(lambda: len(states) >= 100, timeout=10)
    speeds = [np.linalg.norm([s.ee_twist.linear.x, s.ee_twist.linear.y, s.ee_twist.linear.z]) for s in states[-20:]]
    assert max(speeds) < 0.01
    # On the way out the node reports the teleop's heartbeat and how often it fell silent (the kill among them).
    policy.stop()
    summary = re.search(r"teleop heartbeat: (\d+) messages, .*; (\d+) teleop-silent hold", policy.output())
    assert summary and int(summary[1]) > 10 and int(summary[2]) >= 1, policy.output()[-1500:]


def test_no_weights_before_the_offline_stage_is_done(ros_process, ros_node, tmp_path, graph_assets):
    """Weights sent during the offline stage would run episodes the online stage then learns from as its own."""
    weights = []
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    ros_node.create_subscription(PolicyWeights, "/conrft/policy_weights", weights.append, qos)
    cfg = yaml.safe_load(Path(graph_assets["train_config"]).read_text())
    cfg["train"]["offline_updates"] = offline = 400  # several seconds: long past discovery
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg))
    learner = start_learner(ros_process, {**graph_assets, "train_config": str(config)}, tmp_path / "run",
                            "-p", "publish_every_updates:=2")
    assert ros_node.spin_until(lambda: weights, timeout=120), learner.output()[-2000:]
    assert weights[0].learner_step >= offline, weights[0].learner_step  # not one every 2 offline updates
    ros_node.spin_until(lambda: False, timeout=2.0)
    assert len(weights) == 1  # nothing more until transitions arrive


def test_each_step_sees_images_of_the_same_instant_as_its_state(ros_process, ros_node, tmp_path, graph_assets):
    """The sim renders on the control tick and its frame arrives a few ms after the tick's clock: a step that
    took the latest image at the tick itself would pair the state with a frame one whole step old, unlike the
    demonstrations. With the sim's step_sync the step's command is also stamped at that instant (the clock
    waits for it), as in-process, where it acts from the step's instant."""
    transitions, targets = [], []
    ros_node.create_subscription(Transition, "/conrft/transitions", transitions.append, KEEP_ALL)
    ros_node.create_subscription(PoseStamped, "/cartesian_impedance_controller/target_frame",
                                 lambda m: targets.append(stamp_seconds(m.header.stamp)), 100)
    start_graph(ros_process, graph_assets, tmp_path / "run", sim_args=("-p", "step_sync:=0.3"))
    assert ros_node.spin_until(lambda: len(transitions) >= 40, timeout=180), "no transitions"
    lags = [stamp_seconds(t.header.stamp) - stamp_seconds(img.header.stamp) for t in transitions for img in t.images]
    assert len(lags) == 2 * len(transitions)  # both cameras
    assert max(abs(lag) for lag in lags) <= SYNC_TOLERANCE, sorted(lags)[-5:]
    stepped = [stamp_seconds(t.header.stamp) for t in transitions if not t.held]
    on_time = sum(any(abs(s - x) < 1e-6 for x in targets) for s in stepped)
    assert on_time >= 0.95 * len(stepped), f"{on_time} of {len(stepped)} commands stamped at their step's instant"


def test_the_scripted_human_acts_on_each_steps_own_state_in_lockstep(ros_process, ros_node, tmp_path, graph_assets):
    """The teleop answers each transition with an Intervention stamped with it; the policy node waits for that
    answer, so a step the human drives executes the command computed on that step's state, as in-process
    (without the wait it executed the answer to the transition before: computed on the previous state)."""
    interventions, transitions = [], []
    ros_node.create_subscription(Intervention, "/conrft/intervention", interventions.append, 100)
    ros_node.create_subscription(Transition, "/conrft/transitions", transitions.append, KEEP_ALL)
    start_graph(ros_process, graph_assets, tmp_path / "run", policy_args=("-p", "max_episode_steps:=80"),
                teleop_args=("-p", "patience:=2", "-p", "takeover_steps:=40"),
                sim_args=("-p", "step_sync:=0.3"))  # as in a session: the clock waits for each step's target
    driven = lambda: [t for t in transitions if t.intervened and t.step > 0]  # noqa: E731
    assert ros_node.spin_until(lambda: len(driven()) >= 30, timeout=240), "no interventions"
    answers = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in interventions}
    before = {(t.episode_id, t.step): t for t in transitions}
    matched = 0
    for t in driven():
        prev = before[t.episode_id, t.step - 1].header.stamp
        answer = answers.get((prev.sec, prev.nanosec))
        assert answer is not None, "a transition without its answer"
        tw = answer.twist
        command = np.array([tw.linear.x, tw.linear.y, tw.linear.z, tw.angular.x, tw.angular.y, tw.angular.z,
                            answer.gripper], np.float32)
        matched += bool(np.allclose(np.asarray(t.action, np.float32), command, atol=1e-6))
    assert matched >= 0.9 * len(driven()), f"{matched} of {len(driven())} driven steps executed their own answer"
