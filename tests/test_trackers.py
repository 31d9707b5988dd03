"""Experiment trackers (``--set loggers=[...]``): configuration, missing extras, and W&B
(offline mode) and MLflow (file store) receiving the run folder's metrics, config and
name, with every outbound connection of this process refused."""

from __future__ import annotations

import json
import math
import socket
import sys
import time
from pathlib import Path

import pytest
import yaml

from ddn.cli import main
from ddn.config import ConfigError, resolve
from ddn.experiment import Experiment
from ddn.logging import read_metrics
from ddn.trackers import flat_config, open_trackers

pytestmark = pytest.mark.usefixtures("one_thread", "no_network")

# A short matrix run with several train and test events.
SHORT = [
    "device=cpu", "t_max=512", "test_interval=128", "log_interval=128",
    "test_nepisode=8", "save_model=false",
]  # fmt: skip


@pytest.fixture
def no_network(monkeypatch):
    """Refuse every connection that leaves the machine (local IPC stays allowed: W&B's
    client talks to its own service process over a loopback or Unix socket)."""
    real = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"test tried to reach the network: {address}")
        return real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def _train(tmp_path: Path, loggers: str, *extra: str) -> Path:
    cfg = resolve("matrix", "iql", overrides=[*SHORT, f"loggers={loggers}", *extra], seed=0)
    run = tmp_path / "matrix-iql-run"
    Experiment(cfg, run, progress=False).run()
    return run


def _jsonl_points(run: Path) -> set[tuple[int, str, float]]:
    """Every finite metric of metrics.jsonl as (t_env, key, value)."""
    return {
        (e["t_env"], k, float(v))
        for e in read_metrics(run / "metrics.jsonl")
        for k, v in e.items()
        if k not in ("t_env", "episode") and v is not None and math.isfinite(v)
    }


# ---------------------------------------------------------------- configuration
def test_loggers_key_is_checked():
    cfg = resolve("matrix", "iql", overrides=["loggers=[tensorboard,wandb,mlflow]"])
    assert cfg.loggers == ["tensorboard", "wandb", "mlflow"]
    assert resolve("matrix", "iql").loggers == ["tensorboard"]
    with pytest.raises(ConfigError, match="Did you mean 'tensorboard'"):
        resolve("matrix", "iql", overrides=["loggers=[tensorbord]"])
    with pytest.raises(ConfigError, match="must be a list"):
        resolve("matrix", "iql", overrides=["loggers=wandb"])
    with pytest.raises(ConfigError, match="twice"):
        resolve("matrix", "iql", overrides=["loggers=[wandb,wandb]"])


def test_no_loggers_writes_only_the_jsonl(tmp_path):
    run = _train(tmp_path, "[]")
    assert (run / "metrics.jsonl").exists()
    assert not (run / "tb").exists() and not (run / "trackers.json").exists()


@pytest.mark.parametrize(("module", "extra"), [("wandb", "wandb"), ("mlflow", "mlflow")])
def test_a_missing_extra_is_one_line_before_training(module, extra, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    run = tmp_path / "run"
    argv = ["train", "--env", "matrix", "--algo", "iql", "--out", str(run), "--no-progress"]
    assert main([*argv, *(f"--set={s}" for s in SHORT), f"--set=loggers=[{module}]"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert f"pip install 'ddn[{extra}]'" in err
    assert not (run / "metrics.jsonl").exists()  # stopped before the first step


def test_flat_config_nests_with_dots():
    assert flat_config({"lr": 0.1, "env": {"n_prey": 2, "payoff": [[1, 0]]}}) == {
        "lr": "0.1",
        "env.n_prey": "2",
        "env.payoff": "[[1, 0]]",
    }


# ---------------------------------------------------------------- W&B, offline
def _wandb_records(path: Path) -> list:
    """The records of a W&B transaction log (``run-<id>.wandb``): a 7-byte header
    (":W&B", magic, version), then LevelDB-log blocks of 32 KiB whose chunks (4-byte
    checksum, 2-byte length, 1-byte type: 1 full, 2 first, 3 middle, 4 last) carry
    protobuf ``Record`` messages."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, pending, records = 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@pytest.mark.slow
def test_wandb_offline_gets_the_runs_metrics_config_and_name(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_PROJECT", "ddn-tests")
    run = _train(tmp_path, "[wandb]")
    run_id = json.loads((run / "trackers.json").read_text())["wandb"]
    (log,) = (run / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    # W&B's service process writes the log; under load it may still be flushing when
    # finish() returns: wait for its closing "exit" record.
    deadline = time.monotonic() + 60
    while True:
        records = _wandb_records(log)
        kinds = [r.WhichOneof("record_type") for r in records]
        if "exit" in kinds or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    headers = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert len(headers) == 1, kinds
    (header,) = headers
    assert header.display_name == run.name and header.project == "ddn-tests"
    logged_config = {i.key: json.loads(i.value_json) for i in header.config.update}
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert {k: logged_config[k] for k in config} == config
    points = set()
    for r in records:
        if r.WhichOneof("record_type") == "history":
            row = {
                i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item
            }
            points |= {
                (row["t_env"], k, float(v)) for k, v in row.items()
                if not k.startswith("_") and k != "t_env"
            }  # fmt: skip
    assert points == _jsonl_points(run)
    assert len({t for t, _, _ in points}) >= 4


# ---------------------------------------------------------------- MLflow, file store
@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "ddn-tests")
    return mlflow.tracking.MlflowClient()


@pytest.mark.slow
def test_mlflow_file_store_gets_the_runs_metrics_config_and_name(tmp_path, mlflow_store):
    run = _train(tmp_path, "[tensorboard,mlflow]")
    run_id = json.loads((run / "trackers.json").read_text())["mlflow"]
    logged = mlflow_store.get_run(run_id)
    assert logged.info.run_name == run.name and logged.info.status == "FINISHED"
    assert mlflow_store.get_experiment(logged.info.experiment_id).name == "ddn-tests"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert logged.data.params == flat_config(config)
    points = {
        (m.step, key, m.value)
        for key in logged.data.metrics
        for m in mlflow_store.get_metric_history(run_id, key)
    }
    assert points == _jsonl_points(run)
    assert (run / "tb").is_dir()  # beside TensorBoard


def test_mlflow_resume_continues_the_same_run(tmp_path, mlflow_store):
    run = tmp_path / "run"
    run.mkdir()
    (first,) = open_trackers(["mlflow"], run, {"lr": 0.1}, None)
    first.log(10, {"train/loss": 2.0, "test/transfer_rate": float("nan")})
    first.close()
    (again,) = open_trackers(["mlflow"], run, {"lr": 0.1}, 10)
    assert again.run_id == first.run_id
    again.log(20, {"train/loss": 1.0})
    again.close()
    history = mlflow_store.get_metric_history(first.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(10, 2.0), (20, 1.0)]
    assert "test/transfer_rate" not in mlflow_store.get_run(first.run_id).data.metrics  # NaN
    assert (
        len(mlflow_store.search_runs([mlflow_store.get_run(first.run_id).info.experiment_id])) == 1
    )


def test_mlflow_store_that_cannot_open_is_one_config_error(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # MLflow 3 refuses then
    import mlflow

    run = tmp_path / "run"
    run.mkdir()
    try:
        (tracker,) = open_trackers(["mlflow"], run, {}, None)
    except ConfigError as exc:
        assert "MLFLOW_TRACKING_URI" in str(exc) and "\n" not in str(exc)
    else:  # MLflow 2 still opens file stores without the opt-in
        assert mlflow.__version__.startswith("2.")
        tracker.close()
