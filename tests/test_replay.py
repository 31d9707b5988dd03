"""``ddn evaluate --save-replay``: SMAC's ``save_replay`` (against the fake game) and the
GIF that stands in for it on SMAX and Predator-Prey."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import ddn.envs.adapters.smac as smac_mod
from ddn import config as config_mod
from ddn.cli import main
from ddn.config import resolve
from ddn.experiment import Experiment

sys.path.insert(0, str(Path(__file__).parent))  # fake_sc2, here and (via sys.path) in workers

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [
    "batch_size_run=2", "updates_per_iteration=1", "batch_size=2", "buffer_size=16",
    "test_nepisode=2", "test_interval=1000", "log_interval=1000", "save_model_interval=1000",
    "rnn_hidden_dim=8", "mixing_embed_dim=4", "hypernet_embed=8", "device=cpu",
]  # fmt: skip


def _evaluate(run: Path, *extra: str) -> list[str]:
    return ["evaluate", "--run", str(run), *extra]


def _untrained_run(cfg, tmp_path: Path) -> Path:
    """A run folder with its t_env = 0 checkpoint (no training loop: what is evaluated
    does not matter here, and worker processes / SMAX compilations are slow)."""
    run = tmp_path / "run"
    exp = Experiment(cfg, run, progress=False)
    run.mkdir()
    config_mod.save(cfg, run / "config.yaml")
    exp.save()
    exp.env.close()
    exp.test_env.close()
    return run


@pytest.mark.slow
def test_smac_save_replay_calls_the_games_save_replay_once_into_the_run(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(smac_mod, "SMAC_TARGET", "fake_sc2:StarCraft2Env")
    monkeypatch.setattr(smac_mod, "_preflight", lambda map_name: None)
    cfg = resolve(
        "smac", "qmix", "3m", [*TINY, "batch_size_run=1", "env.smac_kwargs={episode_limit: 6}"]
    )
    run = _untrained_run(cfg, tmp_path)

    assert main(_evaluate(run, "--episodes", "3", "--save-replay")) == 0
    out = json.loads(capsys.readouterr().out)
    folder = (run / "replays").resolve()
    (replay,) = folder.iterdir()  # one call, in the run's folder
    assert out["replay_dir"] == str(folder) and out["replays"] == [str(replay)]
    assert replay.name.startswith("3m_") and replay.name.endswith("_1.SC2Replay")
    # One game played the evaluation's three episodes before saving.
    assert replay.read_text() == "episodes=3\n"
    assert out["episodes"] == 3 and "test/win_rate" in out and "note" not in out

    assert main(_evaluate(run, "--episodes", "2")) == 0
    assert list(folder.iterdir()) == [replay]  # no call without --save-replay


def test_predator_prey_save_replay_writes_a_gif_and_says_so(tmp_path, capsys):
    overrides = [*TINY, "env.n_agents=2", "env.n_prey=1", "env.height=4", "env.width=4",
                 "env.episode_limit=5"]  # fmt: skip
    cfg = resolve("predator_prey", "vdn", overrides=overrides, t_max=20)
    run = tmp_path / "run"
    Experiment(cfg, run, progress=False).run()
    assert main(_evaluate(run, "--episodes", "2", "--save-replay")) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    (gif,) = (run / "replays").iterdir()
    assert gif.suffix == ".gif" and out["replays"] == [str(gif.resolve())]
    assert "no StarCraft II replay" in captured.err and "GIF" in captured.err


@pytest.mark.slow
def test_smax_save_replay_writes_a_gif_and_says_so(tmp_path, capfd):
    """3m's default parameters, as in test_render_smax.py, whose compiled step it reuses.
    capfd, not capsys: importing jaxmarl for the first time rebinds sys.stdout."""
    pytest.importorskip("jaxmarl")
    run = _untrained_run(resolve("smax", "qmix", "3m", [*TINY, "batch_size_run=1"]), tmp_path)
    assert main(_evaluate(run, "--episodes", "1", "--save-replay")) == 0
    captured = capfd.readouterr()
    (gif,) = (run / "replays").iterdir()
    assert gif.name == "3m-0-teacher.gif"
    out = json.loads(captured.out[captured.out.index("{\n") :])  # after JAX's notices
    assert out["replays"] == [str(gif.resolve())]
    assert "smax has no StarCraft II replay" in captured.err


def test_save_replay_refuses_other_environments(tmp_path, capsys):
    cfg = resolve("matrix", "vdn", overrides=["device=cpu", "test_nepisode=1"], t_max=64)
    run = tmp_path / "run"
    Experiment(cfg, run, progress=False).run()
    assert main(_evaluate(run, "--save-replay")) == 2
    err = capsys.readouterr().err
    assert "--save-replay needs a smac run" in err and err.count("\n") == 1
