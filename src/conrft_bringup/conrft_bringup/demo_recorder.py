"""Demo recorder: `/conrft/transitions` -> a rosbag2 bag of whole episodes, for the learner's `demo_bags`.

Transitions are received as CDR bytes (`raw=True`) and written to the bag unchanged; each is also deserialized
so that conrft_core.data.transitions.EpisodeAssembler can tell when its episode is complete. Only complete episodes
are written, and with `keep: success` (the default) only successful ones: failed and truncated episodes are
discarded. The bag (MCAP, rosbag2 metadata version 8: opens on Humble, Jazzy and Kilted) is written through
conrft_core.data.bags.EpisodeBagWriter into a hidden `.partial` folder and appears at `output` when the recorder
closes it: on Ctrl-C / SIGINT, on `q`, or after `max_episodes` kept episodes. It loads back with
conrft_core.data.bags.read_episodes.

Control: the service `~/record` (std_srvs/srv/SetBool: true = start, false = stop; episodes in progress when
recording stops are dropped) and, when run in a terminal, the keys `r` (toggle recording) and `q` (finish).
Recording starts at once unless `autostart` is false. An episode seen from its middle (recording started
during it) is incomplete and is not written.
"""
from __future__ import annotations

import os
import select
import sys
import termios
import threading
import tty

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from rclpy.signals import SignalHandlerOptions
from std_srvs.srv import SetBool

from conrft_core.config import ConfigError
from conrft_core.data.bags import DISTROS, TRANSITION_TYPE, TRANSITIONS_TOPIC, BagError, EpisodeBagWriter
from conrft_core.data.transitions import EpisodeAssembler, TransitionError
from conrft_core.robot.node_params import declare_all
from conrft_core.robot.signals import SPIN_PERIOD, interrupt_main_thread, stop_requested
from conrft_core.robot.spaces import TRANSITION_DIMS
from conrft_interfaces.msg import Transition
from conrft_policy.link_qos import TRANSITIONS_QOS  # the policy node's: no step of an episode is lost

PARAMS = {
    "output": "",  # required: bag folder to create (must not exist yet)
    "keep": "success",  # success: only successful episodes | all: every complete episode
    "max_episodes": 0,  # finish after this many kept episodes; 0 = until stopped
    "autostart": True,  # record from the start; false = wait for ~/record or the `r` key
    "distro": "kilted",  # message definitions for the bag: humble | jazzy | kilted
}


class DemoRecorder(Node):
    def __init__(self):
        super().__init__("demo_recorder")
        p = self.params = declare_all(self, PARAMS)
        if not p["output"]:
            raise ConfigError("parameter 'output' is required: the bag folder to create (e.g. demos/pick_cube_1)")
        if p["keep"] not in ("success", "all"):
            raise ConfigError(f"parameter 'keep' is '{p['keep']}'; choose success (only successful episodes) or all")
        if p["max_episodes"] < 0:
            raise ConfigError(f"parameter 'max_episodes' must be >= 0 (0 = unlimited), got {p['max_episodes']}")
        if p["distro"] not in DISTROS:
            raise ConfigError(f"parameter 'distro' is '{p['distro']}'; choose one of: {', '.join(DISTROS)}")
        if os.path.exists(p["output"]):
            raise ConfigError(f"parameter 'output': {p['output']} already exists; the recorder never overwrites a "
                              f"bag, choose a new folder")
        try:
            self.writer = EpisodeBagWriter(p["output"], distro=p["distro"])
            self.writer.__enter__()  # opened now, so an unwritable output fails at start, not at the first episode
        except (BagError, OSError) as exc:
            raise ConfigError(f"cannot create the bag (parameter 'output'): {exc}") from None
        self.lock = threading.Lock()
        self.recording = bool(p["autostart"])
        self.pending: dict[int, tuple[EpisodeAssembler, dict[int, tuple[bytes, int]]]] = {}
        self.written_ids: set[int] = set()
        self.ignored_episode: int | None = None
        self.finished = self.done = False
        self.kept = self.discarded = 0
        self.create_subscription(Transition, TRANSITIONS_TOPIC, self._on_transition, TRANSITIONS_QOS, raw=True)
        self.create_service(SetBool, "~/record", self._on_record)
        limit = f", up to {p['max_episodes']} episodes" if p["max_episodes"] else ""
        self.get_logger().info(
            f"demo recorder: {TRANSITIONS_TOPIC} -> {p['output']} (keep {p['keep']}{limit}); "
            f"{'recording' if self.recording else 'waiting: call ~/record with true'}")

    # --- recording ------------------------------------------------------------------------------------------
    def _on_transition(self, raw: bytes) -> None:
        msg = deserialize_message(raw, Transition)
        eid = int(msg.episode_id)
        with self.lock:
            if self.finished:
                return
            if not self.recording:
                if self.ignored_episode != eid:
                    self.ignored_episode = eid
                    self.get_logger().info(f"episode {eid}: not recording, ignored")
                return
            if eid not in self.pending:
                self.get_logger().info(f"episode {eid}: recording from step {msg.step}")
                self.pending[eid] = (EpisodeAssembler(TRANSITIONS_TOPIC, dims=TRANSITION_DIMS), {})
            asm, steps = self.pending[eid]
            steps[int(msg.step)] = (bytes(raw), msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
            try:
                ep = asm.add(msg)
            except TransitionError as exc:
                del self.pending[eid]
                self.get_logger().error(f"episode {eid} not recorded: {exc}")
                return
            if ep is None:
                if msg.terminated or msg.truncated:  # the end arrived but earlier steps are missing
                    del self.pending[eid]
                    self.get_logger().warning(f"episode {eid} incomplete (steps {sorted(steps)}; recording "
                                              f"started during it or messages were lost): not recorded")
                return
            del self.pending[eid]
            if self.params["keep"] == "success" and not ep.success:
                self.discarded += 1
                self.get_logger().info(f"episode {eid} ({ep.length} steps) did not succeed: discarded (keep: success)")
                return
            if eid in self.written_ids:
                self.get_logger().error(f"episode id {eid} is already in this bag (did the episode source restart?): "
                                        f"not recorded; use a new recorder output per session")
                return
            self._write(steps)
            self.written_ids.add(eid)
            self.kept += 1
            limit = self.params["max_episodes"]
            outcome = "success" if ep.success else "no success"
            count = f"{self.kept}/{limit}" if limit else f"{self.kept}"
            self.get_logger().info(f"episode {eid} kept ({ep.length} steps, {outcome}): {count} episode(s) in "
                                   f"{self.params['output']}")
            if limit and self.kept >= limit:
                self.get_logger().info(f"max_episodes ({limit}) reached")
                self.done = True

    def _write(self, steps: dict[int, tuple[bytes, int]]) -> None:
        for step in sorted(steps):
            raw, stamp_ns = steps[step]
            self.writer.write_serialized(TRANSITIONS_TOPIC, TRANSITION_TYPE, raw, stamp_ns)

    def set_recording(self, on: bool) -> str:
        with self.lock:
            if on == self.recording:
                return f"already {'recording' if on else 'stopped'}"
            self.recording = on
            if on:
                self.ignored_episode = None
                message = "recording started"
            else:
                dropped = sorted(self.pending)
                self.pending.clear()
                message = f"recording stopped; {len(dropped)} episode(s) in progress dropped"
                message += f" {dropped}" if dropped else ""
        self.get_logger().info(message)
        return message

    def _on_record(self, req: SetBool.Request, res: SetBool.Response) -> SetBool.Response:
        res.message = self.set_recording(bool(req.data))
        res.success = True
        return res

    def finish(self) -> None:
        """Close the bag (it appears at `output`); episodes still in progress are dropped. Idempotent."""
        with self.lock:
            if self.finished:
                return
            self.finished = True
            if self.pending:
                print(f"demo_recorder: {len(self.pending)} episode(s) in progress dropped: {sorted(self.pending)}",
                      file=sys.stderr)
            if self.kept:
                self.writer.__exit__(None, None, None)  # closes the bag and moves it into place
                print(f"demo_recorder: bag {self.params['output']} closed: {self.kept} episode(s), "
                      f"{self.writer.messages} transitions ({self.discarded} failed episode(s) discarded)",
                      file=sys.stderr)
            else:  # exiting "with an exception" makes the writer delete its partial folder
                self.writer.__exit__(BagError, BagError("no episode kept"), None)
                print(f"demo_recorder: no episode kept; no bag written at {self.params['output']}", file=sys.stderr)


def interactive_stdin() -> bool:
    """stdin is a terminal and this process is in its foreground (reading it from the background would stop us)."""
    try:
        return sys.stdin.isatty() and os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


def key_loop(node: DemoRecorder, stop: threading.Event) -> None:
    """`r` toggles recording, `q` finishes. The terminal is in cbreak mode (Ctrl-C still works) until `stop`."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        while not stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            key = os.read(fd, 1).decode(errors="ignore").lower()
            if key == "r":
                node.set_recording(not node.recording)
            elif key == "q":
                node.get_logger().info("q pressed: finishing")
                node.done = True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def main(args=None) -> int:
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    interrupt_main_thread()
    # Made before the node: a Ctrl-C from the node's first log line on must reach the loop below, which finishes
    # the bag (setting up there left a window in which the interrupt skipped `finish`).
    executor = SingleThreadedExecutor()
    try:
        node = DemoRecorder()
    except (ConfigError, ValueError) as exc:
        print(f"demo_recorder: error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    stop = threading.Event()
    keys = None
    try:
        executor.add_node(node)
        if interactive_stdin():
            keys = threading.Thread(target=key_loop, args=(node, stop), daemon=True)
            keys.start()
            node.get_logger().info("keys: r = start/stop recording, q = finish and exit")
        while rclpy.ok() and not node.done and not stop_requested():
            executor.spin_once(timeout_sec=SPIN_PERIOD)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        stop.set()
        if keys is not None:
            keys.join(timeout=1.0)
        node.finish()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
