"""Where a training run reports: TensorBoard scalars and a metrics.jsonl file in the run directory, and short
progress lines on stdout or a node's logger (progress bars come from tqdm in the stages).

TensorBoard tags: `offline/...` and `online/...` (losses and Q values per update block), `episode/...`
(success, length, intervention rate per online episode), `eval/...` (success rate, mean length).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable


class RunLog:
    def __init__(self, directory: str | Path | None, quiet: bool = False, emit: Callable[[str], None] | None = None):
        self.quiet = quiet
        self._emit = emit or (lambda line: print(line, flush=True))
        self._writer = self._jsonl = None
        if directory is not None:
            from torch.utils.tensorboard import SummaryWriter

            directory = Path(directory)
            directory.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(str(directory / "tensorboard"))
            self._jsonl = (directory / "metrics.jsonl").open("a")

    def scalars(self, group: str, step: int, values: dict) -> None:
        """Numeric entries of `values` as `{group}/{key}` at `step` (non-numeric ones go to the JSONL only)."""
        if self._writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float, bool)):
                    self._writer.add_scalar(f"{group}/{key}", float(value), step)
        if self._jsonl is not None:
            self._jsonl.write(json.dumps({"group": group, "step": step, **values}) + "\n")
            self._jsonl.flush()

    def info(self, line: str) -> None:
        if not self.quiet:
            self._emit(line)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._jsonl.close()
            self._writer = self._jsonl = None
