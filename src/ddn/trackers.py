"""Experiment trackers fed the same events as ``metrics.jsonl``: TensorBoard, Weights &
Biases, MLflow (``--set loggers=[tensorboard,wandb,mlflow]``).

Each tracker gets the run folder's name as its run name, the resolved configuration,
and every logged event with ``t_env`` as its step. ``metrics.jsonl`` stays the record
the analysis tools read; a tracker is a view of it for the tools users already watch.

W&B and MLflow are optional extras (``pip install 'ddn[wandb]'``, ``'ddn[mlflow]'``);
a missing one, or a tracker that cannot start (no W&B login, an MLflow store that
cannot be opened), is one :class:`~ddn.config.ConfigError` naming the fix, raised
before any training. Their run ids are kept in the run folder's ``trackers.json``, so
``ddn train --resume`` continues the same tracker run.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import secrets
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import yaml

from ddn.config import ConfigError

IDS_FILE = "trackers.json"


class Tracker(Protocol):
    def log(self, t_env: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    """Numbers a tracker can plot (JSONL keeps NaN as null; trackers skip it)."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def _require(module: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"loggers: {module} is not installed; pip install 'ddn[{extra}]' "
            f"(or drop {module} from loggers)"
        ) from None


def flat_config(config: dict[str, Any]) -> dict[str, str]:
    """``{"env": {"n_prey": 2}}`` -> ``{"env.n_prey": "2"}``: trackers' flat parameters."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": str(v) for k, v in flat_config(value).items()})
        else:
            flat[key] = str(value)
    return flat


class TensorBoardTracker:
    """Scalars under ``tb/``; on resume TensorBoard purges the steps after the checkpoint."""

    def __init__(self, run_dir: Path, config: dict[str, Any], resume_t_env: int | None):
        from torch.utils.tensorboard import SummaryWriter

        purge = None if resume_t_env is None else resume_t_env + 1
        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=purge)
        if resume_t_env is None:
            text = yaml.safe_dump(config, sort_keys=False)
            self.writer.add_text("config", "```\n" + text + "```", 0)

    def log(self, t_env: int, metrics: dict[str, float]) -> None:
        for key, value in _finite(metrics).items():
            self.writer.add_scalar(key, value, t_env)

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A W&B run named after the run folder, its files under ``<run>/wandb/``.

    The project is ``$WANDB_PROJECT`` (default ``ddn``); ``WANDB_MODE=offline`` logs
    without a network (``wandb sync <run>/wandb/offline-run-*`` uploads later). Every
    metric is plotted against ``t_env``, so a resumed run's events (which start again
    at the checkpoint's ``t_env``) are accepted, not dropped as out-of-order steps.
    """

    def __init__(self, run_dir: Path, name: str, config: dict[str, Any], ids: dict[str, str]):
        wandb = _require("wandb", "wandb")
        ids.setdefault("wandb", secrets.token_hex(8))  # W&B ids: [a-z0-9]
        try:
            self.run = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "ddn"),
                name=name,
                id=ids["wandb"],
                resume="allow",
                config=config,
                dir=str(run_dir),
                settings=wandb.Settings(console="off"),
            )
        except wandb.errors.Error as exc:
            raise ConfigError(
                f"loggers: wandb could not start a run ({exc}); run `wandb login`, or set "
                "WANDB_MODE=offline and `wandb sync` later"
            ) from None
        self.run.define_metric("t_env")
        self.run.define_metric("*", step_metric="t_env")

    def log(self, t_env: int, metrics: dict[str, float]) -> None:
        self.run.log({"t_env": t_env, **_finite(metrics)})

    def close(self) -> None:
        self.run.finish()


class MlflowTracker:
    """An MLflow run named after the run folder, in experiment ``$MLFLOW_EXPERIMENT_NAME``
    (default ``ddn``) of the store ``$MLFLOW_TRACKING_URI`` names (MLflow's default
    otherwise). The configuration goes in as flat parameters (``env.n_prey``).

    Uses MLflow's client API, not its process-global "active run", so several runs in
    one process (tests, a sweep's threads) never log into each other.
    """

    _BATCH = 100  # MLflow accepts at most 100 parameters per log_batch call

    def __init__(self, name: str, config: dict[str, Any], ids: dict[str, str]):
        mlflow = _require("mlflow", "mlflow")
        from mlflow.entities import Metric, Param

        self._metric = Metric
        try:
            self.client = mlflow.tracking.MlflowClient()
            experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "ddn")
            found = self.client.get_experiment_by_name(experiment)
            exp_id = found.experiment_id if found else self.client.create_experiment(experiment)
            if "mlflow" in ids:  # resume: the same tracker run
                self.run_id = ids["mlflow"]
                self.client.update_run(self.run_id, status="RUNNING")
                return
            self.run_id = self.client.create_run(exp_id, run_name=name).info.run_id
        except (mlflow.exceptions.MlflowException, ImportError, OSError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(
                f"loggers: mlflow could not open its tracking store "
                f"{mlflow.get_tracking_uri()!r} ({first}); set MLFLOW_TRACKING_URI to a "
                "server, or to file:./mlruns with MLFLOW_ALLOW_FILE_STORE=true"
            ) from None
        ids["mlflow"] = self.run_id
        params = [Param(k, v) for k, v in flat_config(config).items()]
        for i in range(0, len(params), self._BATCH):
            self.client.log_batch(self.run_id, params=params[i : i + self._BATCH])

    def log(self, t_env: int, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        batch = [self._metric(k, v, now, t_env) for k, v in _finite(metrics).items()]
        for i in range(0, len(batch), self._BATCH):
            self.client.log_batch(self.run_id, metrics=batch[i : i + self._BATCH])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def open_trackers(
    names: list[str], run_dir: Path, config: dict[str, Any], resume_t_env: int | None
) -> list[Tracker]:
    """Start the trackers ``names`` for the run folder ``run_dir`` (created already)."""
    ids_path = run_dir / IDS_FILE
    ids: dict[str, str] = json.loads(ids_path.read_text()) if ids_path.exists() else {}
    before = dict(ids)
    trackers: list[Tracker] = []
    try:
        for name in names:
            if name == "tensorboard":
                trackers.append(TensorBoardTracker(run_dir, config, resume_t_env))
            elif name == "wandb":
                trackers.append(WandbTracker(run_dir, run_dir.name, config, ids))
            elif name == "mlflow":
                trackers.append(MlflowTracker(run_dir.name, config, ids))
            else:  # config.from_dict rejects unknown names first
                raise ConfigError(f"unknown logger {name!r}")
    except BaseException:
        for tracker in trackers:
            tracker.close()
        raise
    if ids != before:
        tmp = ids_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(ids) + "\n")
        os.replace(tmp, ids_path)
    return trackers
