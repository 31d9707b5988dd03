"""``ddn.run_folder``: every accessor of a run folder, on files written by hand, and the
one-line errors for missing or damaged files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from ddn.checkpoint import CheckpointError, save_checkpoint
from ddn.config import Config, ConfigError
from ddn.run_folder import (
    RUN_FILES,
    TAIL_BYTES,
    MetricsError,
    RunFolder,
    last_test,
    read_metrics,
)


def _jsonl(path: Path, events: list[dict]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


@pytest.fixture
def run(tmp_path: Path) -> RunFolder:
    """A run folder as a run that tested twice and ended writes it."""
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    cfg = Config(env_name="matrix", algo="vdn", seed=3)
    folder.config_path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    _jsonl(
        folder.metrics_path,
        [
            {"t_env": 0, "test/return_mean": 1.0, "test/win_rate": 0.0},
            {"t_env": 10, "train/return_mean": 2.0},
            {"t_env": 20, "test/return_mean": 3.0, "test/win_rate": 0.5, "episode": 4},
            {"t_env": 30, "train/return_mean": 4.0},
        ],
    )
    _jsonl(folder.episodes_path, [{"t_env": 20, "source": "test", "return": [3.0]}])
    _jsonl(folder.provenance_path, [{"t_env": 0, "commit": "abc"}])
    folder.summary_path.write_text(json.dumps({"t_env": 30, "finished": True}))
    return folder


def test_paths_and_the_files_a_run_writes(run):
    assert run.config_path == run.path / "config.yaml"
    assert run.metrics_path.name == "metrics.jsonl"
    assert run.episodes_path.name == "episodes.jsonl"
    assert run.summary_path.name == "summary.json"
    assert run.provenance_path.name == "provenance.jsonl"
    assert {"checkpoints", "tb"} <= set(RUN_FILES)
    assert {p.name for p in run.present()} == {
        "config.yaml", "metrics.jsonl", "episodes.jsonl", "provenance.jsonl", "summary.json",
    }  # fmt: skip
    assert RunFolder(str(run.path)).path == run.path  # a str is accepted


def test_config_typed_and_as_written(run):
    assert run.is_run() and run.require() is run
    cfg = run.config()
    assert (cfg.env_name, cfg.algo, cfg.seed) == ("matrix", "vdn", 3)
    mapping = run.config_mapping()
    assert mapping["seed"] == 3 and mapping == cfg.to_dict()


def test_not_a_run_folder_is_one_error(tmp_path):
    folder = RunFolder(tmp_path)
    assert not folder.is_run()
    with pytest.raises(CheckpointError, match=r"is not a ddn run folder \(no config.yaml\)"):
        folder.require()


def test_corrupt_config_yaml(run):
    run.config_path.write_text("seed: [1\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        run.config_mapping()
    run.config_path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        run.config_mapping()
    run.config_path.write_text("")
    with pytest.raises(ConfigError, match="holds no run configuration"):
        run.config()


def test_logs(run, tmp_path):
    assert [e["t_env"] for e in run.metrics()] == [0, 10, 20, 30]
    assert run.episodes() == [{"t_env": 20, "source": "test", "return": [3.0]}]
    assert run.provenance() == [{"t_env": 0, "commit": "abc"}]
    empty = RunFolder(tmp_path)
    assert empty.metrics() == [] and empty.episodes() is None and empty.provenance() == []


def test_a_damaged_log_line_is_one_error_and_a_cut_last_line_is_skipped(run):
    lines = run.metrics_path.read_bytes().splitlines(keepends=True)
    run.metrics_path.write_bytes(b"".join([*lines, b'{"t_env": 40, "tra']))  # crash mid-write
    assert [e["t_env"] for e in run.metrics()] == [0, 10, 20, 30]
    run.metrics_path.write_bytes(b"".join([lines[0], b"\xff\xfe\n", *lines[1:]]))
    with pytest.raises(MetricsError, match=r"metrics.jsonl line 2 is not a ddn log event"):
        run.metrics()
    run.episodes_path.write_text('{"source": "test"}\n')  # no t_env
    with pytest.raises(MetricsError, match=r"episodes.jsonl line 1 .*delete or repair"):
        run.episodes()


def test_last_test(run):
    assert run.last_test() == {"test/return_mean": 3.0, "test/win_rate": 0.5}
    # Equal t_env (never written by one run, but by hand): the last written counts.
    events = [{"t_env": 5, "test/return_mean": 1.0}, {"t_env": 5, "test/return_mean": 2.0}]
    assert last_test(events) == {"test/return_mean": 2.0}
    assert last_test([{"t_env": 1, "train/return_mean": 0.0}]) == {}


def test_summary_missing_or_corrupt_counts_as_not_ended(run):
    assert run.summary() == {"t_env": 30, "finished": True} and run.finished()
    for text in ('{"t_env": 30, "fini', "[1, 2]", ""):
        run.summary_path.write_text(text)
        assert run.summary() is None and not run.finished()
    run.summary_path.write_bytes(b"\xff\xfe")
    assert run.summary() is None
    run.summary_path.write_text(json.dumps({"t_env": 30, "finished": False}))
    assert run.summary() is not None and not run.finished()
    run.summary_path.unlink()
    assert run.summary() is None


def test_latest_t_env(run, tmp_path):
    assert run.latest_t_env() == 30  # the finished summary's
    run.summary_path.unlink()
    with run.metrics_path.open("a") as f:
        f.write('{"t_env": 40, "tr')  # a crash mid-line: the line before counts
    assert run.latest_t_env() == 30
    # A long log: only its tail is read, and it still finds the last event.
    _jsonl(run.metrics_path, [{"t_env": t, "pad": "x" * 100} for t in range(0, 10_000, 10)])
    assert run.metrics_path.stat().st_size > 10 * TAIL_BYTES
    assert run.latest_t_env() == 9990
    assert RunFolder(tmp_path / "none").latest_t_env() == 0


def test_checkpoints(run):
    assert run.checkpoints() == []
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        run.load_checkpoint()
    for t in (100, 200):
        save_checkpoint(run.path, t, {"w": torch.full((2,), float(t))})
    assert run.checkpoints() == [100, 200]
    t_env, state, buffer = run.load_checkpoint()
    assert t_env == 200 and state["w"].tolist() == [200.0, 200.0] and buffer is None
    assert run.load_checkpoint(100)[1]["w"].tolist() == [100.0, 100.0]
    (run.path / "checkpoints" / "200" / "state.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="fails its checksum"):
        run.load_checkpoint()


def test_read_metrics_is_the_one_reader(tmp_path):
    """``ddn.logging`` (the writer) reads back through the same function."""
    from ddn import logging as run_logging

    assert run_logging.read_metrics is read_metrics
