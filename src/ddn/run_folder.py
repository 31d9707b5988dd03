"""Reading a run folder: the one place that knows its file names and how each is read.

A run folder (``ddn train --out``, a sweep's ``<out>/<run>``) holds:

- ``config.yaml``: the resolved configuration (written once, by the run's start);
- ``metrics.jsonl``: one JSON event per line, each with ``t_env``;
- ``episodes.jsonl``: every evaluation episode, one line per test and network;
- ``summary.json``: written when the run ends (finished, stopped or failed);
- ``provenance.jsonl``: one line per start and resume (the code that ran);
- ``checkpoints/<t_env>/``: see :mod:`ddn.checkpoint`;
- ``tb/``: TensorBoard's events.

Writers (:class:`ddn.logging.RunLogger`, :mod:`ddn.provenance`, the experiment) take the
names from here; every reader (resume, evaluate, plot, report, the exports, sweeps) goes
through :class:`RunFolder`. The logs are read strictly (a damaged line is one
:class:`MetricsError` naming it); ``summary.json`` leniently (a run killed mid-write has
none, and an unreadable one counts as none: the run is then simply not finished).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ddn import config as config_mod
from ddn.checkpoint import CHECKPOINTS_FOLDER, CheckpointError, list_checkpoints, load_checkpoint
from ddn.config import Config, ConfigError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
EPISODES_FILE = "episodes.jsonl"
SUMMARY_FILE = "summary.json"
PROVENANCE_FILE = "provenance.jsonl"
TENSORBOARD_FOLDER = "tb"
# What a run writes; a fresh run never mixes into another run's files, and --overwrite
# deletes exactly these.
RUN_FILES = (
    CONFIG_FILE, METRICS_FILE, EPISODES_FILE, SUMMARY_FILE, TENSORBOARD_FOLDER,
    CHECKPOINTS_FOLDER, PROVENANCE_FILE,
)  # fmt: skip
# Every test event logs the teacher's mean return: it is what marks an event as a test.
TEST_MARKER = "test/return_mean"
# Bytes read from the end of metrics.jsonl to find the latest t_env: a few events' worth
# (an event is a few hundred bytes), so a sweep's progress line stays cheap however long
# the log grows.
TAIL_BYTES = 4096


def unwritable(run_dir: str | Path, exc: OSError) -> ConfigError:
    """The one error for a run folder (or its lock) that cannot be written."""
    where = f"{exc.filename}: " if exc.filename else ""
    return ConfigError(
        f"cannot write to run folder {run_dir} ({where}{exc.strerror}); free disk space or "
        "fix its permissions, or choose another --out"
    )


class MetricsError(ValueError):
    """A ``metrics.jsonl`` line that is not a JSON object; the message names the line."""


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All events of a ``metrics.jsonl``, ``episodes.jsonl`` or ``provenance.jsonl``.

    A last line without its newline is what a crash mid-write leaves: it is skipped.
    Any other line that is not a UTF-8 JSON object with an integer ``t_env`` means the
    file was damaged or is not a ddn log: one :class:`MetricsError` names it.
    """
    # The last piece is b"" when the file ends with a newline, else the cut line.
    lines = Path(path).read_bytes().split(b"\n")[:-1]
    events = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            event = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("t_env"), int):
            raise MetricsError(
                f"{path} line {number} is not a ddn log event (a JSON object with t_env): "
                f"{raw[:60]!r}; delete or repair that line"
            )
        events.append(event)
    return events


def last_test(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``test...`` entries of the latest test event (the last written among equal
    ``t_env``), or {} when no test was logged."""
    tests = [e for e in events if TEST_MARKER in e]
    if not tests:
        return {}
    latest = max(reversed(tests), key=lambda e: e["t_env"])
    return {k: v for k, v in latest.items() if k.startswith("test")}


class RunFolder:
    """Typed access to one run folder's files. Nothing is read until asked for."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ------------------------------------------------------------------ paths
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def episodes_path(self) -> Path:
        return self.path / EPISODES_FILE

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def provenance_path(self) -> Path:
        return self.path / PROVENANCE_FILE

    def present(self) -> list[Path]:
        """The run files that exist here (what a fresh run would have to replace)."""
        return [self.path / name for name in RUN_FILES if (self.path / name).exists()]

    # ------------------------------------------------------------------ config
    def is_run(self) -> bool:
        """A run folder is one with a ``config.yaml`` (the first file a run writes)."""
        return self.config_path.is_file()

    def require(self) -> RunFolder:
        """This folder, or one CheckpointError when it holds no run."""
        if not self.is_run():
            raise CheckpointError(f"{self.path} is not a ddn run folder (no {CONFIG_FILE})")
        return self

    def config(self) -> Config:
        """The run's configuration, validated (ConfigError for an empty or cut file)."""
        return config_mod.load(self.config_path)

    def config_mapping(self) -> dict[str, Any]:
        """``config.yaml`` as written, not validated (the analysis groups runs by its keys,
        including ones an older or newer ddn wrote); one ConfigError if it is no mapping."""
        return config_mod.load_yaml_mapping(self.config_path, "run configuration keys")

    # ------------------------------------------------------------------ logs
    def metrics(self) -> list[dict[str, Any]]:
        """Every ``metrics.jsonl`` event ([] before the first is logged)."""
        return read_metrics(self.metrics_path) if self.metrics_path.is_file() else []

    def episodes(self) -> list[dict[str, Any]] | None:
        """Every ``episodes.jsonl`` record, or None for a run without that file (one
        logged before per-episode values were)."""
        return read_metrics(self.episodes_path) if self.episodes_path.is_file() else None

    def provenance(self) -> list[dict[str, Any]]:
        """One record per start and resume of the run (:mod:`ddn.provenance`)."""
        return read_metrics(self.provenance_path) if self.provenance_path.is_file() else []

    def last_test(self) -> dict[str, Any]:
        """The latest logged test's metrics (a resumed run's summary needs them)."""
        return last_test(self.metrics())

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict[str, Any] | None:
        """``summary.json``, or None while the run has not ended (or when the file is
        unreadable: summaries are written atomically, so that is a copy gone wrong, and
        the run then counts as not finished)."""
        try:
            data = json.loads(self.summary_path.read_text())
        except (OSError, ValueError):  # missing, not UTF-8, not JSON
            return None
        return data if isinstance(data, dict) else None

    def finished(self) -> bool:
        summary = self.summary()
        return bool(summary and summary.get("finished"))

    def latest_t_env(self) -> int:
        """How far the run got, cheaply: a finished run's final ``t_env``, else the last
        ``metrics.jsonl`` event's (read from the file's end), else 0."""
        summary = self.summary()
        if summary and summary.get("finished") and isinstance(summary.get("t_env"), int):
            return summary["t_env"]
        try:
            with self.metrics_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - TAIL_BYTES))
                tail = fh.read().decode(errors="ignore").splitlines()
        except OSError:
            return 0
        for line in reversed(tail):  # the first may be cut by the seek, the last by a crash
            try:
                t_env = json.loads(line)["t_env"]
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(t_env, int):
                return t_env
        return 0

    # ------------------------------------------------------------------ checkpoints
    def checkpoints(self) -> list[int]:
        """``t_env`` of every complete checkpoint, ascending."""
        return list_checkpoints(self.path)

    def load_checkpoint(self, t_env: int | None = None) -> tuple[int, dict, dict | None]:
        """(t_env, state, buffer-or-None) of checkpoint ``t_env`` (default: the latest);
        see :func:`ddn.checkpoint.load_checkpoint`."""
        return load_checkpoint(self.path, t_env)
