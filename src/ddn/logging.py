"""Run logs: one JSON object per event in ``metrics.jsonl``, plus TensorBoard events.

Every event carries ``t_env`` (environment steps so far). On resume the JSONL file is
cut back to the checkpoint's ``t_env`` and TensorBoard purges later steps, so a
resumed run's logs read as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All events of a ``metrics.jsonl`` (a truncated last line from a crash is skipped)."""
    events = []
    for line in Path(path).read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


class RunLogger:
    def __init__(self, run_dir: Path, resume_t_env: int | None = None, tensorboard: bool = True):
        self.path = run_dir / "metrics.jsonl"
        if resume_t_env is not None and self.path.exists():
            kept = [e for e in read_metrics(self.path) if e.get("t_env", 0) <= resume_t_env]
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(e) + "\n" for e in kept))
            os.replace(tmp, self.path)  # atomic: a crash here never loses the log
        self._file = self.path.open("a", buffering=1)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_t_env is None else resume_t_env + 1
            self._tb = SummaryWriter(str(run_dir / "tb"), purge_step=purge)

    def log(self, t_env: int, metrics: dict[str, float], **extra: Any) -> None:
        event = {"t_env": t_env, **extra, **{k: _clean(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(event) + "\n")
        if self._tb is not None:
            for key, value in metrics.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self._tb.add_scalar(key, value, t_env)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    return value
