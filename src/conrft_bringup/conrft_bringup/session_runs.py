"""What the benchmarks that run whole `conrft session`s share: a results file that resumes (runs of other settings
are refused), the VLA's image size, and a session run whose log's end is shown when it fails."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conrft_core.checkpoint import load_checkpoint


class BenchError(RuntimeError):
    """A benchmark cannot go on; the message says why and what to do. `status`: 2 for bad input, 1 for a failed run."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def load_runs(out: Path, settings: dict, vla: Path) -> dict:
    """The finished runs in `out` (empty when it does not exist); BenchError when they were made with other settings
    or `vla` is missing."""
    if not vla.exists():
        raise BenchError(f"--vla {vla} does not exist; `make demo` (or `conrft pretrain`) writes it", status=2)
    done = json.loads(out.read_text()) if out.exists() else {"settings": settings, "runs": []}
    if done.get("settings") != settings:
        raise BenchError(f"{out} holds runs of other settings; give another --out or delete it", status=2)
    out.parent.mkdir(parents=True, exist_ok=True)
    return done


def image_size(vla: Path) -> str:
    return str(load_checkpoint(vla)[1]["pretrain"]["backbone"]["image_size"])


def run_session(args: list[str], log: Path) -> None:
    """`conrft session ARGS`, its output into `log`; BenchError with the log's end when it exits non-zero."""
    with open(log, "w") as out:
        code = subprocess.run(["conrft", "session", *args], stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:  # a temporary folder goes with the exception: show the log's end now
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise BenchError(f"the session exited {code}; the end of its log:\n{tail}")
