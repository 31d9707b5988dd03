"""``ddn`` command line: exit codes, one-line errors, list, train, evaluate, render."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from ddn import config
from ddn.algorithms import algorithm_names
from ddn.checkpoint import list_checkpoints
from ddn.cli import main
from ddn.envs import list_envs
from ddn.logging import read_metrics

TINY = [
    "env.n_agents=3", "env.n_prey=1", "env.height=5", "env.width=5", "env.episode_limit=20",
    "batch_size_run=4", "batch_size=8", "buffer_size=64", "t_max=400", "test_interval=200",
    "test_nepisode=4", "log_interval=100", "save_model_interval=200", "rnn_hidden_dim=16",
    "mixing_embed_dim=8", "hypernet_embed=16", "device=cpu",
]  # fmt: skip
SETS = [x for item in TINY for x in ("--set", item)]
SMALL_ENV = ["--set", "env.n_agents=3", "--set", "env.n_prey=2", "--set", "env.height=5",
             "--set", "env.width=5", "--set", "env.episode_limit=10"]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


def train_args(out: Path, *extra: str, env: str = "predator_prey", algo: str = "qmix"):
    return ["train", "--env", env, "--algo", algo, "--out", str(out), "--no-progress",
            *SETS, *extra]  # fmt: skip


def one_line_error(capsys, code: int) -> str:
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("ddn: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(train_args(run)) == 0
    return run


# ---------------------------------------------------------------- errors
def test_unknown_env(tmp_path, capsys):
    line = one_line_error(capsys, main(train_args(tmp_path / "r", env="predator_pray")))
    assert "unknown environment 'predator_pray'" in line
    assert "Did you mean 'predator_prey'?" in line
    assert not (tmp_path / "r").exists()


def test_unknown_algo_with_suggestion(tmp_path, capsys):
    line = one_line_error(capsys, main(train_args(tmp_path / "r", algo="qmx")))
    assert "unknown algorithm 'qmx'" in line and "Did you mean 'qmix'?" in line


def test_bad_set_key(tmp_path, capsys):
    line = one_line_error(capsys, main(train_args(tmp_path / "r", "--set", "lrr=0.1")))
    assert "unknown config key 'lrr'" in line and "Did you mean 'lr'?" in line
    assert "Valid keys:" in line


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("lr=abc", "lr must be a number"),
        ("batch_size=1.5", "batch_size must be an integer"),
        ("double_q=3", "double_q must be true or false"),
        ("gamma=2", "gamma must be in [0, 1]"),
        ("env.n_pray=2", "unknown environment parameter env.n_pray"),
        ("lr", "--set expects key=value"),
    ],
)
def test_bad_set_values(tmp_path, capsys, item, message):
    line = one_line_error(capsys, main(train_args(tmp_path / "r", "--set", item)))
    assert message in line


def test_bad_env_parameter_value(tmp_path, capsys):
    # Accepted by the config, refused by the environment itself.
    line = one_line_error(capsys, main(train_args(tmp_path / "r", "--set", "env.view=4")))
    assert "view must be odd" in line


def test_map_on_an_env_without_maps(tmp_path, capsys):
    line = one_line_error(capsys, main(train_args(tmp_path / "r", "--map", "3m")))
    assert "has no maps" in line


def test_train_needs_env_and_algo(capsys):
    line = one_line_error(capsys, main(["train", "--env", "matrix"]))
    assert "train needs --env and --algo" in line


def test_resume_of_a_non_run_folder(tmp_path, capsys):
    line = one_line_error(capsys, main(["train", "--resume", str(tmp_path), "--no-progress"]))
    assert "is not a ddn run folder" in line


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--seed", "3"], "--seed"),
        (["--seed", "0"], "--seed"),
        (["--t-max", "0"], "--t-max"),
        (["--env", "matrix"], "--env"),
        (["--set", "lr=0.1"], "--set"),
        (["--out", "elsewhere"], "--out"),
        (["--device", "cpu"], "--device"),
    ],
)
@pytest.mark.slow
def test_resume_refuses_new_settings(trained_run, capsys, extra, flag):
    line = one_line_error(capsys, main(["train", "--resume", str(trained_run), *extra]))
    assert "--resume takes the run's own config.yaml" in line and flag in line


@pytest.mark.slow
def test_resume_can_start_saving_the_buffer(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    first, *later = list_checkpoints(run)
    for t in later:
        shutil.rmtree(run / "checkpoints" / str(t))
    assert not (run / "checkpoints" / str(first) / "buffer.pt").exists()
    assert main(["train", "--resume", str(run), "--save-buffer", "--no-progress"]) == 0
    written = [t for t in list_checkpoints(run) if t > first]
    assert written and all((run / "checkpoints" / str(t) / "buffer.pt").is_file() for t in written)


def test_save_buffer_flag_of_a_new_run(tmp_path):
    args = train_args(tmp_path / "r", "--save-buffer", "--t-max", "0")
    assert main(args) == 0
    assert config.load(tmp_path / "r" / "config.yaml").save_buffer is True


@pytest.mark.slow
def test_resume_with_an_edited_config(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    cfg = config.load(run / "config.yaml")
    cfg.lr = 0.123
    config.save(cfg, run / "config.yaml")
    line = one_line_error(capsys, main(["train", "--resume", str(run), "--no-progress"]))
    assert "another configuration" in line and "'lr'" in line


def test_evaluate_a_run_without_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    config.save(config.resolve("predator_prey", "qmix", overrides=TINY), run / "config.yaml")
    line = one_line_error(capsys, main(["evaluate", "--run", str(run), "--episodes", "4"]))
    assert "no checkpoint in" in line


def test_evaluate_a_non_run_folder(tmp_path, capsys):
    line = one_line_error(capsys, main(["evaluate", "--run", str(tmp_path)]))
    assert "not a ddn run folder" in line


@pytest.mark.slow
def test_evaluate_bad_arguments(trained_run, capsys):
    line = one_line_error(capsys, main(["evaluate", "--run", str(trained_run), "--episodes", "0"]))
    assert "--episodes must be >= 1" in line
    code = main(["evaluate", "--run", str(trained_run), "--checkpoint", "7"])
    line = one_line_error(capsys, code)
    assert "no checkpoint at t_env=7" in line


@pytest.mark.slow
def test_evaluate_a_corrupt_checkpoint(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    for state in (run / "checkpoints").glob("*/state.pt"):
        state.write_bytes(b"not a checkpoint")
    line = one_line_error(capsys, main(["evaluate", "--run", str(run)]))
    assert "fails its checksum" in line


def test_render_rejects_non_env_settings(tmp_path, capsys):
    code = main(["render", "--out", str(tmp_path / "x.gif"), "--set", "lr=0.1"])
    line = one_line_error(capsys, code)
    assert "render --set takes env.PARAM=VALUE" in line


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["evaluate"])  # --run is required
    assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


# ---------------------------------------------------------------- list
def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in list_envs():
        assert name in out
    for algo in algorithm_names():
        assert algo in out
    assert "VDN_DDN" in out  # labels from the registry
    assert "fusion_dim=32" in out and "lr=0.0005" in out  # every key with its default
    assert "n_prey=8" in out  # parameters with their defaults
    assert "envs: " in out and "algs: " in out
    for preset in config.list_presets("algs") + config.list_presets("envs"):
        assert preset in out


# ---------------------------------------------------------------- end to end
@pytest.mark.slow
def test_train_then_evaluate(trained_run, capsys):
    capsys.readouterr()
    assert (trained_run / "config.yaml").is_file()
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["finished"] and summary["t_env"] >= 400

    assert main(["evaluate", "--run", str(trained_run), "--episodes", "4"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 4
    assert result["checkpoint"] == summary["t_env"]
    assert result["run"] == str(trained_run)
    for key in ("test/return_mean", "test/return_std", "test/ep_length_mean"):
        assert isinstance(result[key], float)
    assert 1 <= result["test/ep_length_mean"] <= 20
    # Every episode is appended to the run's episodes.jsonl, after its test records.
    record = read_metrics(trained_run / "episodes.jsonl")[-1]
    assert record["source"] == "evaluate" and record["policy"] == "teacher"
    assert record["t_env"] == summary["t_env"] and len(record["return"]) == 4
    assert sum(record["return"]) / 4 == pytest.approx(result["test/return_mean"], abs=1e-12)
    assert sum(record["length"]) / 4 == result["test/ep_length_mean"]


@pytest.mark.slow
def test_train_prints_run_folder_and_summary(tmp_path, capsys):
    run = tmp_path / "m"
    code = main(
        ["train", "--env", "matrix", "--algo", "vdn", "--out", str(run), "--no-progress",
         "--t-max", "64", "--seed", "3", "--set", "batch_size_run=16", "--set", "batch_size=16",
         "--set", "test_nepisode=4", "--set", "device=cpu"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    first, second, rest = out.split("\n", 2)
    assert first == f"Run folder: {run}"
    assert second.startswith("Threads: ")  # the header line of tests/test_threads.py
    summary = json.loads(rest)
    assert summary["t_env"] == 64 and summary["finished"] is True
    cfg = config.load(run / "config.yaml")
    assert (cfg.seed, cfg.t_max) == (3, 64)
    # Resuming a finished run is fine and prints where it resumes from.
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert "Resuming" in capsys.readouterr().out


def test_render_random_policy(tmp_path, capsys):
    out = tmp_path / "sub" / "x.gif"
    assert main(["render", "--out", str(out), "--seed", "1", *SMALL_ENV]) == 0
    info = json.loads(capsys.readouterr().out)
    assert out.is_file()
    with Image.open(out) as im:
        assert im.format == "GIF"
        assert im.n_frames == info["frames"] == info["steps"] + 1
    assert info["steps"] <= 10


@pytest.mark.slow
def test_render_a_trained_run(trained_run, tmp_path, capsys):
    out = tmp_path / "run.gif"
    assert main(["render", "--out", str(out), "--run", str(trained_run)]) == 0
    info = json.loads(capsys.readouterr().out)
    with Image.open(out) as im:
        assert im.format == "GIF" and im.n_frames == info["frames"]
    assert info["steps"] <= 20  # the run's own env.episode_limit
