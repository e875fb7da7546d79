"""How a ConRFT node process takes Ctrl-C and SIGTERM (imports no rclpy).

rclpy's own signal handlers shut the ROS context down the moment a signal arrives. Threads a node owns (the
camera reader, the learner's trainer, the simulator's spin thread) may then still publish on a dead context
(RCLError tracebacks), and a node's last words (the policy node's hold target) can no longer be sent. So node
processes call `rclpy.init(..., signal_handler_options=SignalHandlerOptions.NO)` and `interrupt_main_thread()`:
both signals raise KeyboardInterrupt in the main thread, whose spin loop returns every SPIN_PERIOD to take it;
the process then stops the node, threads first, and only then shuts the context down. An interrupt that lands
while the main thread runs a destructor (rclpy's Future.__del__, a garbage collection) is swallowed by Python
("Exception ignored in ..."): the loops also stop on `stop_requested()`, which the handler sets first.
"""
from __future__ import annotations

import signal

SPIN_PERIOD = 0.1  # s: longest the main thread blocks in the executor before a pending interrupt is seen


_requested = False


def _interrupt(signum, frame) -> None:
    global _requested
    _requested = True
    raise KeyboardInterrupt


def interrupt_main_thread() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread (Python's Ctrl-C behaviour for both)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)


def stop_requested() -> bool:
    """True once SIGINT or SIGTERM came, even if its KeyboardInterrupt was swallowed."""
    return _requested
