"""Human teleoperation devices -> intervention commands (the HIL part of HIL-ConRFT), without ROS.

A command is (active, 7-D action in [-1, 1], outcome): while `active` the policy node executes the action
instead of the policy's; `outcome` is the episode verdict the human keyed (1 success, -1 failure, 0 none).

- `SpaceMouse`: the 6-D twist of a SpaceMouse (the ROS 2 spacenav driver's `spacenav/twist`) and its buttons
  (`spacenav/joy`). Moving the puck beyond `deadband` takes over; the human keeps control until the puck has
  rested for `release_after` seconds. One button toggles the gripper, others key success / failure.
- `Keyboard`: a terminal UI for sessions over ssh: space takes over / hands back, w/s a/d r/f move along
  x/y/z, i/k j/l u/o rotate, g toggles the gripper, y / n key success / failure.

On the robot side, `SingleSource` decides whose interventions are obeyed, `TeleopHeartbeat` when the teleop
counts as silent and `HumanLockstep` how long a step waits for the scripted human's answer (simulation).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

IDLE = (False, np.zeros(7), 0)


@dataclass
class SpaceMouseConfig:
    deadband: float = 0.05  # normalised twist below this is the hand resting on the puck
    scale: float = 1.0  # spacenav twist units -> normalised action (clipped to [-1, 1])
    release_after: float = 0.5  # s at rest before control returns to the policy
    button_gripper: int = 0
    button_success: int = 1
    button_failure: int = -1  # -1: no button

    def __post_init__(self) -> None:
        if not (math.isfinite(self.deadband) and 0 <= self.deadband < 1):
            raise ValueError(f"spacenav deadband must be in [0, 1), got {self.deadband}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"spacenav scale must be > 0, got {self.scale}")
        if self.release_after < 0:
            raise ValueError(f"spacenav release_after must be >= 0 s, got {self.release_after}")


class SpaceMouse:
    def __init__(self, cfg: SpaceMouseConfig | None = None):
        self.cfg = cfg or SpaceMouseConfig()
        self.gripper = 1.0  # open
        self.twist = np.zeros(6)
        self.active = False
        self._last_motion = -math.inf
        self._buttons: list[int] = []
        self._outcome = 0

    def on_twist(self, twist6, now: float) -> None:
        self.twist = np.clip(np.nan_to_num(np.asarray(twist6, float)) * self.cfg.scale, -1.0, 1.0)
        if np.max(np.abs(self.twist)) > self.cfg.deadband:
            self.active, self._last_motion = True, now

    def on_buttons(self, buttons, now: float) -> None:
        """Rising edges only: a held button acts once."""
        buttons = list(buttons)
        pressed = [i for i, b in enumerate(buttons) if b and (i >= len(self._buttons) or not self._buttons[i])]
        self._buttons = buttons
        if self.cfg.button_gripper in pressed:
            self.gripper = -self.gripper
            self.active, self._last_motion = True, now
        if self.cfg.button_success in pressed:
            self._outcome = 1
        if self.cfg.button_failure in pressed:
            self._outcome = -1

    def command(self, now: float) -> tuple[bool, np.ndarray, int]:
        if self.active and now - self._last_motion > self.cfg.release_after:
            self.active = False
        twist = np.where(np.abs(self.twist) > self.cfg.deadband, self.twist, 0.0)
        outcome, self._outcome = self._outcome, 0
        return self.active, np.concatenate([twist, [self.gripper]]), outcome


KEY_AXES = {"w": (0, 1), "s": (0, -1), "a": (1, 1), "d": (1, -1), "r": (2, 1), "f": (2, -1),
            "i": (3, 1), "k": (3, -1), "j": (4, 1), "l": (4, -1), "u": (5, 1), "o": (5, -1)}
KEYBOARD_HELP = ("space: take over / hand back   w/s a/d r/f: move x/y/z   i/k j/l u/o: rotate   "
                 "g: gripper   y: success   n: failure   q: quit")


class Keyboard:
    """A key moves for `key_hold` seconds (terminals repeat held keys every ~30-50 ms)."""

    def __init__(self, speed: float = 0.5, key_hold: float = 0.15):
        if not 0 < speed <= 1:
            raise ValueError(f"keyboard speed must be in (0, 1], got {speed}")
        self.speed, self.key_hold = speed, key_hold
        self.active, self.gripper = False, 1.0
        self._axes: dict[int, tuple[float, float]] = {}  # axis -> (sign, time pressed)
        self._outcome = 0
        self.quit = False

    def on_key(self, key: str, now: float) -> None:
        if key == " ":
            self.active = not self.active
        elif key in KEY_AXES:
            axis, sign = KEY_AXES[key]
            self._axes[axis] = (sign, now)
            self.active = True
        elif key == "g":
            self.gripper = -self.gripper
        elif key == "y":
            self._outcome = 1
        elif key == "n":
            self._outcome = -1
        elif key == "q":
            self.quit = True

    def command(self, now: float) -> tuple[bool, np.ndarray, int]:
        action = np.zeros(7)
        for axis, (sign, pressed) in list(self._axes.items()):
            if now - pressed <= self.key_hold:
                action[axis] = sign * self.speed
            else:
                del self._axes[axis]
        action[6] = self.gripper
        outcome, self._outcome = self._outcome, 0
        return self.active, action, outcome


class SingleSource:
    """Interventions are obeyed from one publisher only: any node on the ROS domain could otherwise take over the
    arm. `node_name` is the configured teleop's node name ("" = whichever node is the only publisher).

    `check(gid, publishers)` gets the message's publisher GID and the topic's publishers as (node name, GID)
    pairs, and returns None to obey or the reason for refusing, naming the other nodes. A sender that discovery
    has not named yet (`known` False) is neither obeyed nor reported.
    """

    UNKNOWN = "_NODE_NAME_UNKNOWN_"  # what the ROS graph calls a node whose name discovery has not brought yet

    def __init__(self, node_name: str = ""):
        self.node_name = node_name

    def known(self, gid: bytes, publishers: list[tuple[str, bytes]]) -> bool:
        return any(g == gid and name != self.UNKNOWN for name, g in publishers)

    def check(self, gid: bytes, publishers: list[tuple[str, bytes]]) -> str | None:
        sender = next((name for name, g in publishers if g == gid), None)
        if sender is None or sender == self.UNKNOWN:
            return "an intervention from a publisher discovery has not named yet"
        if self.node_name:
            if sender != self.node_name:
                return f"an intervention from node '{sender}', not the configured teleop '{self.node_name}'"
            return None
        if len(publishers) > 1:
            names = ", ".join(sorted(f"'{name}'" for name, _ in publishers))
            return f"interventions from {len(publishers)} nodes ({names}); only one may drive"
        return None


class TwoLooks:
    """A condition a watchdog timer confirms only on two looks in a row. When the node has stalled (a long callback,
    a descheduled process), rclpy serves its due timers before the callbacks of the messages that waited meanwhile,
    so the first look after a stall can find a condition those messages are about to clear."""

    def __init__(self):
        self.suspect = False  # the last look found the condition

    def look(self, condition: bool) -> bool:
        confirmed, self.suspect = condition and self.suspect, condition
        return confirmed


class TeleopHeartbeat:
    """When a driving teleop counts as silent (the policy node then holds the arm), and whose a gap was.

    `message(now, sent)` at each intervention message (receipt time on a steady clock, the sender's source
    timestamp in s); `look(now, driving)` from the node's watchdog timer, True while the teleop is silent.
    Silence needs two looks in a row that find no message for longer than `timeout` (`TwoLooks`: one look would
    hold the arm on a teleop that never stopped whenever the node itself stalled). A teleop that really stops is
    held after at most `timeout` + two watchdog periods.

    The gaps between receipts and between the sender's own stamps tell the two apart afterwards: a stalled
    receiver shows long receipt gaps over regular send gaps.
    """

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.rx: float | None = None  # receipt time of the latest message
        self.sent: float | None = None  # its source timestamp
        self.gaps: deque[float] = deque(maxlen=100_000)  # s between receipts (~30 min at 50 Hz)
        self.send_gaps: deque[float] = deque(maxlen=100_000)  # s between the sender's stamps
        self.looks, self.silent = TwoLooks(), False  # silent: two looks in a row found no message
        self.holds = 0  # times it fell silent during an intervention

    def message(self, now: float, sent: float | None = None) -> None:
        if self.rx is not None:
            self.gaps.append(now - self.rx)
        if self.sent is not None and sent is not None:
            self.send_gaps.append(sent - self.sent)
        self.rx, self.sent = now, sent
        self.looks.suspect = self.silent = False

    def look(self, now: float, driving: bool) -> bool:
        silent = self.looks.look(driving and self.rx is not None and now - self.rx > self.timeout)
        self.holds += silent and not self.silent
        self.silent = silent
        return silent

    def summary(self) -> str | None:
        """One line for the log: message count, gap percentiles (ms) and holds; None before two messages."""
        if not self.gaps:
            return None
        line = f"{len(self.gaps) + 1} messages, inter-arrival {_percentiles(self.gaps)}"
        if self.send_gaps:
            line += f" (sent {_percentiles(self.send_gaps)})"
        return f"{line}; {self.holds} teleop-silent hold(s)"


def _percentiles(gaps) -> str:
    ms = 1e3 * np.asarray(gaps)
    return f"p50 {np.percentile(ms, 50):.1f} / p99 {np.percentile(ms, 99):.1f} / max {ms.max():.1f} ms"


class HumanLockstep:
    """A step waiting for the scripted human's answer to the transition just published (the policy node's
    `human_lockstep`, simulation only), so that the simulated human acts on the step's own state.

    `wait(key, step, now)` parks the step; `answer(key, now)` returns it when the answer stamped `key` comes;
    `look(now)`, from the watchdog timer, returns it once the wait is over `timeout` on two looks in a row (late:
    it acts on the human's previous command: `TwoLooks`); `give_up()` returns it
    at once (the next step is due). `summary()` gives the answers' wait times, which tell a slow teleop from a
    timeout set too short.
    """

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.key = self.step = None
        self.since = 0.0
        self.looks = TwoLooks()
        self.waits: deque[float] = deque(maxlen=100_000)  # s from a step's wait to its answer
        self.late = 0

    def wait(self, key, step, now: float) -> None:
        self.key, self.step, self.since = key, step, now
        self.looks.suspect = False

    def answer(self, key, now: float):
        if self.step is None or key != self.key:
            return None
        self.waits.append(now - self.since)
        return self._release()

    def look(self, now: float):
        if self.step is None:
            return None
        return self.give_up() if self.looks.look(now - self.since > self.timeout) else None

    def give_up(self):
        if self.step is None:
            return None
        self.late += 1
        return self._release()

    def _release(self):
        step, self.key, self.step = self.step, None, None
        return step

    def summary(self) -> str | None:
        """One line for the log; None if no step waited."""
        if not self.waits and not self.late:
            return None
        waits = f", waited {_percentiles(self.waits)}" if self.waits else ""
        return f"{len(self.waits)} answers{waits}; {self.late} late (acted on the previous command)"
