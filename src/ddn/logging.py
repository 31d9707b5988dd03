"""Run logs: one JSON object per event in ``metrics.jsonl``, every evaluation episode in
``episodes.jsonl``, plus the trackers chosen by ``loggers`` (TensorBoard by default; W&B,
MLflow).

Every event carries ``t_env`` (environment steps so far). On resume both JSONL files are
cut back to the checkpoint's ``t_env`` and TensorBoard purges later steps, so a
resumed run's logs read as if it had never stopped (W&B and MLflow keep what they were
sent before the stop: their plots may show the rewound stretch twice).

``episodes.jsonl`` holds one line per evaluated network per test event (``source``
``test``) or ``ddn evaluate`` call (``source`` ``evaluate``, ``t_env`` = the checkpoint's):
``policy`` (``teacher``: the GGN or a non-DDN run's only network; ``student``: DDN's LPN)
and the lists ``return``, ``length`` and, where the environment has a win condition,
``won`` (0/1), one entry per episode. Returns are written at float32 precision (what the
environment summed), so the means in ``metrics.jsonl`` are recomputed from them exactly.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ddn.run_folder import EPISODES_FILE, METRICS_FILE, read_metrics

if TYPE_CHECKING:
    from ddn.evaluate import Episodes


def episode_record(
    t_env: int, source: str, policy: str, episodes: Episodes, **extra: Any
) -> dict[str, Any]:
    """One ``episodes.jsonl`` line (see the module docstring)."""
    # str() of a float32 is its shortest decimal that reads back as the same float32.
    returns = [float(str(v)) for v in episodes.returns.numpy().astype(np.float32)]
    record = {"t_env": t_env, "source": source, "policy": policy, **extra, "return": returns}
    record["length"] = [int(v) for v in episodes.lengths.tolist()]
    if episodes.won is not None:
        record["won"] = [int(v) for v in episodes.won.tolist()]
    return record


def append_episodes(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one record to a run's ``episodes.jsonl`` (``ddn evaluate``)."""
    with (Path(run_dir) / EPISODES_FILE).open("a") as f:
        f.write(json.dumps(record) + "\n")


def _cut_back(path: Path, t_env: int) -> None:
    """Keep only the events at or before ``t_env`` (a resume's checkpoint)."""
    kept = [e for e in read_metrics(path) if e.get("t_env", 0) <= t_env]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(e) + "\n" for e in kept))
    os.replace(tmp, path)  # atomic: a crash here never loses the log


class RunLogger:
    """``metrics.jsonl`` plus the trackers named in ``loggers`` (ddn/trackers.py)."""

    def __init__(
        self,
        run_dir: Path,
        resume_t_env: int | None = None,
        loggers: Sequence[str] = ("tensorboard",),
        config: dict[str, Any] | None = None,
    ):
        from ddn.trackers import open_trackers

        # Trackers first: one that cannot start stops the run before anything is written.
        self._trackers = open_trackers(list(loggers), run_dir, config or {}, resume_t_env)
        self.path = run_dir / METRICS_FILE
        self.episodes_path = run_dir / EPISODES_FILE
        if resume_t_env is not None:
            for path in (self.path, self.episodes_path):
                if path.exists():
                    _cut_back(path, resume_t_env)
        self._file = self.path.open("a", buffering=1)
        self._episodes = self.episodes_path.open("a", buffering=1)

    def log(self, t_env: int, metrics: dict[str, float], **extra: Any) -> None:
        event = {"t_env": t_env, **extra, **{k: json_value(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(event) + "\n")
        for tracker in self._trackers:
            tracker.log(t_env, metrics)

    def log_episodes(self, t_env: int, policy: str, episodes: Episodes, **extra: Any) -> None:
        """Every episode of one test of one network (``policy`` teacher or student)."""
        record = episode_record(t_env, "test", policy, episodes, **extra)
        self._episodes.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self._file.close()
        self._episodes.close()
        for tracker in self._trackers:
            tracker.close()


def json_value(value: Any) -> Any:
    """``value`` as strict JSON can hold it: NaN and inf (an undefined transfer rate, a
    diverged loss) become null, which every JSON reader accepts."""
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    return value
