"""How a node process takes Ctrl-C: an interrupt that Python swallows inside a destructor still stops the loop
(a policy node once ignored Ctrl-C that way and was killed, its last hold unsent). In a child process: the
handlers are process-wide."""
import subprocess
import sys

CHILD = """
import os, signal, time
from conrft_core.robot.signals import interrupt_main_thread, stop_requested

interrupt_main_thread()


class Finalised:
    def __del__(self):  # the signal's KeyboardInterrupt is raised here, where Python ignores it
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)


assert not stop_requested()
Finalised()
print("swallowed" if stop_requested() else "lost", flush=True)
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(1.0)
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted")
"""


def test_an_interrupt_swallowed_by_a_destructor_still_stops_the_node():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["swallowed", "interrupted"], out.stdout + out.stderr
    assert "Exception ignored in" in out.stderr and "KeyboardInterrupt" in out.stderr  # what Python did with it
