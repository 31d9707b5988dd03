"""The thread policy (ddn/threads.py): the automatic choice, ``--threads`` / the config key
for train, evaluate, render and the Python API, its record in config.yaml, and sweeps."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from ddn import config, threads
from ddn.cli import main
from ddn.config import ConfigError, resolve
from ddn.experiment import Experiment
from ddn.sweep import load_sweep

MATRIX = ["t_max=128", "batch_size_run=16", "batch_size=16", "test_nepisode=4",
          "test_interval=64", "log_interval=64", "save_model_interval=64", "device=cpu",
          "rnn_hidden_dim=8"]  # fmt: skip
SETS = [x for item in MATRIX for x in ("--set", item)]


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch):
    """Each test starts without OMP_NUM_THREADS and leaves torch's thread count as found."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


# ---------------------------------------------------------------- the policy
def test_one_thread_unless_told_otherwise(monkeypatch):
    assert threads.auto_threads() == (1, "auto")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own choice, as torch reads it
    assert threads.auto_threads() == (3, "auto: OMP_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "not-a-number")
    assert threads.auto_threads() == (1, "auto")


def test_apply_threads_sets_torch():
    assert threads.apply_threads(2) == (2, "set by --threads or the threads key")
    assert torch.get_num_threads() == 2
    assert threads.apply_threads(None) == (1, "auto")
    assert torch.get_num_threads() == 1


def test_threads_key_is_validated():
    assert resolve("matrix", "vdn").threads is None  # automatic unless set
    assert resolve("matrix", "vdn", overrides=["threads=3"]).threads == 3
    with pytest.raises(ConfigError, match="threads must be >= 1"):
        resolve("matrix", "vdn", overrides=["threads=0"])
    with pytest.raises(ConfigError, match="threads must be an integer"):
        resolve("matrix", "vdn", overrides=["threads=two"])


def test_thread_count_does_not_make_another_experiment():
    a = resolve("matrix", "vdn", overrides=["threads=1"]).to_dict()
    b = resolve("matrix", "vdn", overrides=["threads=4"])
    c = resolve("matrix", "vdn", overrides=["threads=4", "gamma=0.5"])
    assert config.differing_keys(a, b) == []
    assert config.differing_keys(a, c) == ["gamma"]
    old = {k: v for k, v in a.items() if k != "threads"}  # config.yaml of an older ddn
    assert config.differing_keys(old, b) == []


# ---------------------------------------------------------------- Python API and train
@pytest.mark.slow
def test_experiment_applies_and_records_the_count(tmp_path):
    auto = Experiment(resolve("matrix", "vdn", overrides=MATRIX), tmp_path / "a", progress=False)
    assert (auto.threads, auto.threads_reason) == (1, "auto")
    assert torch.get_num_threads() == 1

    cfg = resolve("matrix", "vdn", overrides=[*MATRIX, "threads=2"])
    exp = Experiment(cfg, tmp_path / "b", progress=False)
    assert torch.get_num_threads() == 2 and exp.cfg.threads == 2
    exp.run()
    assert yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())["threads"] == 2

    # A resume uses the recorded count, or the one it is given.
    torch.set_num_threads(1)
    assert Experiment.resume(tmp_path / "b", progress=False).threads == 2
    assert torch.get_num_threads() == 2
    again = Experiment.resume(tmp_path / "b", progress=False, threads=1)
    assert (again.threads, torch.get_num_threads()) == (1, 1)
    with pytest.raises(ConfigError, match="threads must be >= 1"):
        Experiment.resume(tmp_path / "b", progress=False, threads=0)


def test_a_run_made_before_the_threads_key_resumes(tmp_path):
    run = tmp_path / "run"
    Experiment(resolve("matrix", "vdn", overrides=MATRIX), run, progress=False).run()
    path = run / "config.yaml"
    data = yaml.safe_load(path.read_text())
    del data["threads"]
    path.write_text(yaml.safe_dump(data))  # as written by an older ddn
    exp = Experiment.resume(run, progress=False)
    assert exp.t_env == 128 and exp.threads == 1


@pytest.mark.slow
def test_train_prints_and_records_the_threads(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--env", "matrix", "--algo", "vdn", "--out", str(run), "--no-progress"]
    assert main([*args, *SETS, "--threads", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [f"Run folder: {run}", "Threads: 2 (set by --threads or the threads key)"]
    assert config.load(run / "config.yaml").threads == 2
    # --threads goes with --resume (a run moved to another machine); nothing else does.
    assert main(["train", "--resume", str(run), "--no-progress", "--threads", "1"]) == 0
    assert "Threads: 1 (set by --threads or the threads key)" in capsys.readouterr().out
    assert config.load(run / "config.yaml").threads == 2  # a resume never rewrites it

    assert main([*args[:-3], "--out", str(tmp_path / "x"), "--threads", "0", *SETS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ddn: error: threads must be >= 1 (or null for the automatic choice), got 0"]


@pytest.mark.slow
def test_evaluate_and_render_take_threads(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--env", "matrix", "--algo", "vdn", "--out", str(run), "--no-progress"]
    assert main([*args, *SETS, "--threads", "2"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--episodes", "2", "--threads", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["threads"] == 2
    assert torch.get_num_threads() == 2
    assert main(["evaluate", "--run", str(run), "--episodes", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["threads"] == 1  # the policy's, not the run's
    assert main(["evaluate", "--run", str(run), "--threads", "0"]) == 2
    assert capsys.readouterr().err.startswith("ddn: error: --threads must be >= 1")
    gif = tmp_path / "e.gif"
    small = ["--set", "env.n_agents=2", "--set", "env.n_prey=1", "--set", "env.height=4",
             "--set", "env.width=4", "--set", "env.episode_limit=3"]  # fmt: skip
    assert main(["render", "--out", str(gif), "--threads", "2", *small]) == 0
    assert json.loads(capsys.readouterr().out)["threads"] == 2


# ---------------------------------------------------------------- sweeps
def test_sweep_runs_pin_threads_through_the_config_key(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("algos: [vdn]\nenvs: [matrix]\nseeds: 1\nthreads: 3\n")
    (spec,) = load_sweep(path).runs
    assert spec.config().threads == 3
