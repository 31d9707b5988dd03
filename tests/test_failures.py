"""Runs that fail loudly and never lose work: divergence, reused run folders, signals,
failed writes, broken environments, damaged files, and crashes at any moment."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from same_run import without_time

from ddn import checkpoint as checkpoint_mod
from ddn import config
from ddn.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from ddn.cli import main
from ddn.config import ConfigError, resolve
from ddn.experiment import Aborted, Experiment, TrainingError
from ddn.logging import read_metrics

TINY = [
    "env.n_agents=3", "env.n_prey=1", "env.height=5", "env.width=5", "env.episode_limit=20",
    "batch_size_run=4", "batch_size=8", "buffer_size=64", "t_max=400", "test_interval=200",
    "test_nepisode=4", "log_interval=100", "save_model_interval=200", "rnn_hidden_dim=16",
    "mixing_embed_dim=8", "hypernet_embed=16", "device=cpu",
]  # fmt: skip
SETS = [x for item in TINY for x in ("--set", item)]
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(*extra: str, algo: str = "qmix") -> config.Config:
    return resolve("predator_prey", algo, overrides=[*TINY, *extra])


def train_args(out: Path, *extra: str) -> list[str]:
    return ["train", "--env", "predator_prey", "--algo", "qmix", "--out", str(out),
            "--no-progress", *SETS, *extra]  # fmt: skip


def one_line_error(capsys, code: int, expected: int = 2) -> str:
    captured = capsys.readouterr()
    assert code == expected, captured
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("ddn: error: ")
    return lines[0]


def outcome(summary: dict) -> dict:
    """A summary without its ``code`` entry: the commit and dirty flag of the tree the run
    imported, which an edit or commit during a long test changes (not the run's result)."""
    return {k: v for k, v in summary.items() if k != "code"}


def at_update(exp: Experiment, k: int, action) -> None:
    """Call ``action()`` right after the k-th learner update of ``exp``."""
    train, calls = exp.learner.train, {"n": 0}

    def wrapped(batch, episode):
        metrics = train(batch, episode)
        calls["n"] += 1
        if calls["n"] == k:
            return action(metrics)
        return metrics

    exp.learner.train = wrapped


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("failures") / "run"
    Experiment(tiny("save_buffer=true"), run, progress=False).run()
    return run


# ---------------------------------------------------------------- 1. divergence
@pytest.mark.parametrize("what", ["loss", "grad_norm", "weights"])
@pytest.mark.slow
def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, what):
    run = tmp_path / "run"
    exp = Experiment(tiny("t_max=1000"), run, progress=False)

    def poison(metrics):
        if what == "weights":  # e.g. a finite but huge step that overflowed
            next(exp.learner.agent.parameters()).data.fill_(float("nan"))
        else:
            metrics[f"train/{what}"] = float("inf")
        return metrics

    at_update(exp, 8, poison)  # after the first checkpoint (t_env 200)
    with pytest.raises(TrainingError) as info:
        exp.run()
    msg = str(info.value)
    assert "\n" not in msg
    assert f"training diverged at t_env={exp.t_env}" in msg
    assert (f"train/{what} is inf" in msg) if what != "weights" else ("agent." in msg)
    assert "lr" in msg and "grad_norm_clip" in msg
    saved = list_checkpoints(run)
    assert saved and saved[-1] < exp.t_env
    assert f"the last good checkpoint is t_env={saved[-1]}" in msg
    _, state, _ = load_checkpoint(run)
    assert not checkpoint_mod.nonfinite_tensors(state["learner"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] is False and summary["reason"] == msg
    assert summary == info.value.summary
    # Nothing after the bad update reached the logs: no test of a NaN network.
    assert max(e["t_env"] for e in read_metrics(run / "metrics.jsonl")) < exp.t_env


@pytest.mark.parametrize("algo", ["ddn", "qmix"])
def test_huge_learning_rate_fails_with_one_line_and_exit_1(tmp_path, capsys, algo):
    run = tmp_path / "nan"
    lrs = ["--set", "lr=1e6"] + (
        ["--set", "student_lr=1e6", "--set", "idm_lr=1e6"] * (algo == "ddn")
    )
    code = main(["train", "--env", "matrix", "--algo", algo, "--t-max", "2048", "--out", str(run),
                 "--no-progress", "--set", "device=cpu", *lrs])  # fmt: skip
    line = one_line_error(capsys, code, expected=1)
    assert "training diverged at t_env=" in line and "Try a smaller lr" in line
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] is False and "diverged" in summary["reason"]
    assert summary["t_env"] < 2048


def test_evaluate_and_export_refuse_non_finite_weights(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    t_env, state, buffer = load_checkpoint(run)
    next(iter(state["learner"]["agent"].values())).view(-1)[0] = float("nan")
    save_checkpoint(run, t_env, state, buffer)  # a valid file holding a NaN
    line = one_line_error(capsys, main(["evaluate", "--run", str(run), "--episodes", "2"]))
    assert "non-finite weights" in line and "--checkpoint" in line
    line = one_line_error(capsys, main(["export", "--run", str(run), "--out", str(tmp_path / "x")]))
    assert "non-finite weights" in line
    earlier = str(list_checkpoints(run)[0])
    assert main(["evaluate", "--run", str(run), "--episodes", "2", "--checkpoint", earlier]) == 0


@pytest.mark.slow
def test_runaway_q_warns_once_in_the_log_and_on_the_console(tmp_path, capsys):
    # A factor this small makes any Q "runaway": the check, not a diverging run, is tested.
    run = tmp_path / "run"
    Experiment(tiny("runaway_q_factor=1e-9"), run, progress=False).run()
    warnings = [e for e in read_metrics(run / "metrics.jsonl") if "warning" in e]
    assert len(warnings) == 1
    assert "train/q_taken_mean" in warnings[0]["warning"]
    assert "runaway_q_factor=0" in warnings[0]["warning"]
    assert capsys.readouterr().err.count("Warning: train/q_taken_mean") == 1
    quiet = tmp_path / "quiet"
    Experiment(tiny("runaway_q_factor=0"), quiet, progress=False).run()
    assert not [e for e in read_metrics(quiet / "metrics.jsonl") if "warning" in e]


def test_runaway_q_stays_silent_on_a_healthy_run(finished_run):
    assert not [e for e in read_metrics(finished_run / "metrics.jsonl") if "warning" in e]


# ---------------------------------------------------------------- 2. run folders
def test_out_into_another_run_is_refused(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    line = one_line_error(capsys, main(train_args(run, "--set", "lr=0.01")))
    assert f"--resume {run}" in line and "--overwrite" in line
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before

    assert main(train_args(run, "--set", "lr=0.01", "--overwrite")) == 0
    assert config.load(run / "config.yaml").lr == 0.01
    t_envs = [e["t_env"] for e in read_metrics(run / "metrics.jsonl") if "train/loss" in e]
    assert t_envs == sorted(t_envs)  # one run, not two appended
    assert load_checkpoint(run)[1]["config"]["lr"] == 0.01


@pytest.mark.slow
def test_a_run_that_ended_without_checkpoints_is_not_replaced(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(run, "--set", "save_model=false")) == 0
    capsys.readouterr()
    line = one_line_error(capsys, main(train_args(run, "--set", "save_model=false")))
    assert "already holds a run that ended" in line and "--overwrite" in line


@pytest.mark.slow
def test_same_command_after_a_kill_before_the_first_checkpoint_starts_cleanly(tmp_path):
    cfg = tiny()
    run = tmp_path / "run"
    exp = Experiment(cfg, run, progress=False)

    def die(metrics):
        raise KeyboardInterrupt  # as a SIGKILL: no checkpoint, logs half written

    at_update(exp, 1, die)
    with pytest.raises(KeyboardInterrupt):
        exp.run()
    assert not list_checkpoints(run) and read_metrics(run / "metrics.jsonl")
    summary = Experiment(cfg, run, progress=False).run()
    assert summary["finished"]
    reference = tmp_path / "reference"
    assert Experiment(cfg, reference, progress=False).run() == summary
    events = without_time(read_metrics(run / "metrics.jsonl"))
    assert events == without_time(read_metrics(reference / "metrics.jsonl"))


# ---------------------------------------------------------------- 3. signals
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.slow
def test_a_signal_checkpoints_prints_the_resume_command_and_exits_128_plus_it(tmp_path, signum):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "ddn.cli", *train_args(run, "--set", "t_max=100000")]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list_checkpoints(run) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert f"Stopping ({signal.Signals(signum).name})" in err
    assert f"Resume with: ddn train --resume {run}" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] is False
    assert summary["reason"] == f"stopped by {signal.Signals(signum).name}"
    assert list_checkpoints(run)[-1] == summary["t_env"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.slow
def test_a_second_signal_aborts_without_saving(tmp_path, signum):
    run = tmp_path / "run"
    exp = Experiment(tiny("t_max=1000"), run, progress=False)

    def twice(metrics):
        os.kill(os.getpid(), signum)
        os.kill(os.getpid(), signum)  # each is handled before the next bytecode
        return metrics

    at_update(exp, 8, twice)
    previous = signal.getsignal(signum)
    with pytest.raises(Aborted) as info:
        exp.run()
    assert info.value.signum == signum and info.value.run_dir == run
    assert signal.getsignal(signum) is previous
    assert list_checkpoints(run)[-1] < exp.t_env  # no checkpoint of the aborted iteration


# ---------------------------------------------------------------- 4. disk
def _fail_writes_after(monkeypatch, budget: int, err: int = errno.ENOSPC) -> None:
    """Checkpoint files refuse writes once ``budget`` more bytes went out, as on a disk
    filling up (or a folder whose permissions changed)."""
    left = {"bytes": budget}

    class Filling:
        def __init__(self, file) -> None:
            self.file = file

        def write(self, data) -> int:
            left["bytes"] -= memoryview(data).nbytes
            if left["bytes"] < 0:
                raise OSError(err, os.strerror(err))
            return self.file.write(data)

        def flush(self) -> None:
            self.file.flush()

    init = checkpoint_mod._HashingWriter.__init__
    monkeypatch.setattr(
        checkpoint_mod._HashingWriter, "__init__", lambda self, f: init(self, Filling(f))
    )


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EACCES])
@pytest.mark.slow
def test_a_failed_checkpoint_write_removes_its_files_and_keeps_the_last_good(
    tmp_path, monkeypatch, capsys, err
):
    run = tmp_path / "run"
    exp = Experiment(tiny("save_buffer=true", "t_max=1000"), run, progress=False)
    at_update(exp, 8, lambda m: (_fail_writes_after(monkeypatch, 50_000, err), m)[1])
    with pytest.raises(TrainingError) as info:
        exp.run()
    msg = str(info.value)
    saved = list_checkpoints(run)
    assert os.strerror(err) in msg and f"last good checkpoint is t_env={saved[-1]}" in msg
    assert f"ddn train --resume {run}" in msg and "partial files removed" in msg
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert load_checkpoint(run)[0] == saved[-1]
    monkeypatch.undo()  # space again: the run resumes from the last good checkpoint
    assert Experiment.resume(run, progress=False).run()["finished"]


def test_a_full_disk_on_resume_is_one_line(finished_run, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", full)
    line = one_line_error(capsys, main(["train", "--resume", str(run), "--no-progress"]))
    assert "No space left on device" in line and "free disk space" in line
    monkeypatch.undo()
    assert list_checkpoints(run) == list_checkpoints(finished_run)
    assert (run / "config.yaml").read_bytes() == (finished_run / "config.yaml").read_bytes()
    assert Experiment.resume(run, progress=False).run()["finished"]


def test_config_yaml_is_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    config.save(tiny(), path)
    before = path.read_bytes()

    def cut(self, text, *args, **kwargs):  # the disk fills up halfway through
        with self.open("w") as f:
            f.write(text[: len(text) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", cut)
    with pytest.raises(OSError):
        config.save(tiny("lr=0.1"), path)
    monkeypatch.undo()
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.slow
def test_file_size_limit_in_a_real_process_fails_cleanly(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse writes past a size (EFBIG), as a full disk."""
    import resource

    run = tmp_path / "run"

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))

    done = subprocess.run(
        [sys.executable, "-m", "ddn.cli", *train_args(run, "--set", "save_buffer=true",
                                                      "--set", "buffer_size=256")],
        env=_env(), capture_output=True, text=True, timeout=300, preexec_fn=limit,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "File too large" in done.stderr and "partial files removed" in done.stderr
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    for t in list_checkpoints(run):
        load_checkpoint(run, t)


@pytest.mark.slow
def test_keep_checkpoints(tmp_path):
    for keep, want in ((2, 2), (0, 5)):
        run = tmp_path / f"keep{keep}"
        Experiment(tiny("t_max=1000", f"keep_checkpoints={keep}"), run, progress=False).run()
        saved = list_checkpoints(run)
        assert len(saved) == want and saved[-1] >= 1000


# ---------------------------------------------------------------- 5. one-line errors
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "env.height=100000", "--set", "buffer_size=5000"],
         "not enough memory for the replay buffer"),
        (["--set", "rnn_hidden_dim=1000000"], "not enough memory for the networks"),
        (["--seed", "99999999999999999999"], "seed must be in [0, 2**62]"),
        (["--set", "batch_size_run=2000", "--set", "buffer_size=1000"],
         "batch_size_run=2000 is larger than buffer_size=1000"),
        (["--set", "batch_size=100", "--set", "buffer_size=64"],
         "batch_size=100 is larger than buffer_size=64"),
    ],
)  # fmt: skip
@pytest.mark.slow
def test_bad_sizes_are_one_line(tmp_path, capsys, args, message):
    line = one_line_error(capsys, main(train_args(tmp_path / "r", *args)))
    assert message in line


@pytest.mark.slow
def test_unwritable_out_is_one_line(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    line = one_line_error(capsys, main(train_args(a_file)))
    assert f"--out {a_file}: {a_file} is a file; choose a folder" in line
    line = one_line_error(capsys, main(train_args(a_file / "run")))
    assert f"{a_file} is a file; choose a folder" in line
    # /sys refuses new entries even to root (chmod cannot, when tests run as root).
    line = one_line_error(capsys, main(train_args(Path("/sys/ddn-run"))))
    assert "cannot write to run folder /sys/ddn-run (" in line and "--out" in line
    line = one_line_error(capsys, main(["render", "--out", "/sys/ddn-episode.gif"]))
    assert "/sys/ddn-episode.gif" in line and "writable" in line


def test_sweep_file_with_bad_threads(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("algos: [qmix]\nenvs: [matrix]\nthreads: abc\n")
    line = one_line_error(capsys, main(["sweep", str(sweep), "--dry-run"]))
    assert "threads must be an integer >= 1, got 'abc'" in line


@pytest.mark.parametrize(
    "bad", [b"\xff\xfe not utf-8\n", b"[1, 2, 3]\n", b'{"no_t_env": 1}\n', b"garbage\n"]
)
@pytest.mark.parametrize("command", ["plot", "report"])
def test_plot_and_report_on_a_damaged_metrics_line(finished_run, tmp_path, capsys, bad, command):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    lines = (run / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    (run / "metrics.jsonl").write_bytes(b"".join([*lines[:2], bad, *lines[2:]]))
    line = one_line_error(capsys, main([command, str(run), "--out", str(tmp_path / "o")]))
    assert "metrics.jsonl line 3 is not a ddn log event" in line


def test_a_cut_last_metrics_line_is_still_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"t_env": 0, "x": 1}\n{"t_env": 5, "trai')
    assert read_metrics(path) == [{"t_env": 0, "x": 1}]


@pytest.mark.slow
def test_worker_error_mid_run_is_one_line(tmp_path, capsys):
    """A PyMARL-interface env (tests/fake_sc2.py) losing its game in the worker process,
    with no restart allowed: the adapter's WorkerError ends the run with one line. (An
    error of the env's own code is an EnvError instead: tests/test_epymarl.py.)"""
    run = tmp_path / "run"
    kwargs = f"env.factory_kwargs={{game_error_at: 2, marker: '{tmp_path / 'm'}'}}"
    code = main(
        ["train", "--env", "pymarl", "--algo", "qmix", "--t-max", "200", "--out", str(run),
         "--no-progress", "--set", "env.factory=fake_sc2:StarCraft2Env", "--set", kwargs,
         "--set", "env.max_restarts=0", "--set", "batch_size_run=2", "--set", "batch_size=2",
         "--set", "buffer_size=16", "--set", "device=cpu", "--set", "rnn_hidden_dim=8"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1, captured
    errors = [line for line in captured.err.splitlines() if line.startswith("ddn: error: ")]
    assert len(errors) == 1 and errors[0] == captured.err.strip().splitlines()[-1]
    assert "the environment failed: gave up after 0 worker restarts" in errors[0]
    assert "connection to the game lost" in errors[0] and "run the same command again" in errors[0]
    assert json.loads((run / "summary.json").read_text())["finished"] is False


# ---------------------------------------------------------------- 6. meaningless input
def test_evaluate_uses_the_checkpoints_config_and_says_so(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    data = yaml.safe_load((run / "config.yaml").read_text())
    data["env"]["n_prey"], data["env"]["episode_limit"] = 3, 5
    (run / "config.yaml").write_text(yaml.safe_dump(data))
    assert main(["evaluate", "--run", str(run), "--episodes", "8"]) == 0
    captured = capsys.readouterr()
    assert "differs from checkpoint" in captured.err and "env" in captured.err
    assert "using the checkpoint's" in captured.err
    result = json.loads(captured.out)
    assert result["test/ep_length_mean"] > 5  # the checkpoint's episode_limit (20) ran


def test_an_empty_config_yaml_is_refused(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "config.yaml").write_text("")
    line = one_line_error(capsys, main(["train", "--resume", str(run), "--no-progress"]))
    assert "holds no run configuration" in line
    with pytest.raises(ConfigError, match="holds no run configuration"):
        config.load(run / "config.yaml")


def test_yaml_12_floats_in_env_parameters_are_numbers():
    cfg = resolve("matrix", "vdn", overrides=["env.payoff=[[1e30, 0], [0, -1E-3]]", "lr=5e-4"])
    assert cfg.env["payoff"] == [[1e30, 0], [0, -1e-3]] and cfg.lr == 5e-4
    cfg = resolve("smax", "qmix", overrides=["env.map_name=3m"])
    assert cfg.env["map_name"] == "3m"  # names stay strings


def test_old_checkpoints_without_new_config_keys_still_resume(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    t_env, state, buffer = load_checkpoint(run)
    del state["config"]["keep_checkpoints"], state["config"]["runaway_q_factor"]
    save_checkpoint(run, t_env, state, buffer)
    assert Experiment.resume(run, progress=False).t_env == t_env


# ---------------------------------------------------------------- 7. integrity
def test_load_student_of_a_pickled_file_gives_no_unsafe_advice(tmp_path):
    from ddn.deploy import load_student

    path = tmp_path / "x.pt"
    torch.save({"obj": Path("anything")}, path)  # needs full unpickling
    with pytest.raises(CheckpointError) as info:
        load_student(path)
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)
    assert "not a tensors-only torch file" in str(info.value)


class Crash(BaseException):
    """A process dying at that instruction (BaseException: no handler cleans up)."""


def _crash_on(monkeypatch, target, name: str, k: int) -> None:
    original, calls = getattr(target, name), {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == k:
            raise Crash
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, crashing)


# Every step of a same-t_env re-save: the file writes, after the manifest, both renames
# and the removal of the old copy.
SAVE_STEPS = [
    ("_fsync_write", 1), ("_fsync_write", 2), ("_fsync_dir", 1), ("rename", 1),
    ("rename", 2), ("rmtree", 1),
]  # fmt: skip


@pytest.mark.parametrize(("step", "k"), SAVE_STEPS)
@pytest.mark.slow
def test_a_crash_at_any_point_of_a_save_leaves_exactly_one_usable_latest(
    finished_run, tmp_path, monkeypatch, step, k
):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    exp = Experiment.resume(run, progress=False)
    t_env = exp.t_env
    exp.episode += 1  # the re-save differs from the saved copy

    def dead(*args, **kwargs) -> None:  # a killed process removes nothing
        if step == "rmtree":
            raise Crash

    monkeypatch.setattr(checkpoint_mod.shutil, "rmtree", dead)
    if step == "rename":
        _crash_on(monkeypatch, Path, "rename", k)
    elif step != "rmtree":
        _crash_on(monkeypatch, checkpoint_mod, step, k)
    with pytest.raises(Crash):
        exp.save()
    monkeypatch.undo()
    assert list_checkpoints(run)[-1] == t_env
    _, state, _ = load_checkpoint(run)
    assert state["counters"]["episode"] in (exp.episode - 1, exp.episode)
    new = state["counters"]["episode"] == exp.episode
    assert new == (step in ("rename", "rmtree") and (k == 2 or step == "rmtree"))
    again = Experiment.resume(run, progress=False)
    assert again.t_env == t_env
    again.save()  # the next save tidies up: one folder per checkpoint, nothing hidden
    assert not _leftovers(run)
    assert load_checkpoint(run)[0] == t_env


def _leftovers(run: Path) -> list[str]:
    return [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------- fault injection
FAULT = ["t_max=960", "save_model_interval=40", "save_buffer=true", "test_interval=160",
         "log_interval=80"]  # fmt: skip


def _child(run: str, values: dict) -> None:
    """A run's process: trains (or resumes) ``run``; exits 128 + the stopping signal."""
    torch.set_num_threads(1)
    run_dir = Path(run)
    exp = (
        Experiment.resume(run_dir, progress=False)
        if list_checkpoints(run_dir)
        else Experiment(config.from_dict(values), run_dir, progress=False)
    )
    exp.run()
    sys.exit(128 + exp.stopped_by if exp.stopped_by is not None else 0)


def _start(run: Path, cfg: config.Config) -> multiprocessing.process.BaseProcess:
    # Forked from a fresh server that has imported ddn once: no second torch import per
    # run, and none of this process's threads (JAX's, if loaded) copied into a fork.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["ddn.experiment", "torch.utils.tensorboard", _child.__module__])
    proc = ctx.Process(target=_child, args=(str(run), cfg.to_dict()))
    proc.start()
    return proc


def _kill_during(proc, run: Path, signum: int, when: float | None) -> tuple[bool, int]:
    """Send ``signum`` after ``when`` seconds, or (None) as soon as a checkpoint write is
    seen; (whether a write was under way then, the exit code)."""
    root = run / "checkpoints"
    in_write = when is None
    deadline = time.monotonic() + (30.0 if in_write else when)
    writing = False
    while time.monotonic() < deadline:
        writing = root.is_dir() and any(p.name.startswith(".tmp-") for p in os.scandir(root))
        if in_write and writing:
            break
        if proc.exitcode is not None:
            return False, proc.exitcode  # finished before the moment came
        time.sleep(0.0005)
    os.kill(proc.pid, signum)
    proc.join()
    return writing, proc.exitcode


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
@pytest.mark.slow
def test_killed_at_random_moments_and_resumed_ends_identical(tmp_path, signum):
    cfg = tiny(*FAULT)
    reference = tmp_path / "reference"
    expected = Experiment(cfg, reference, progress=False).run()
    _start(tmp_path / "warm", cfg).join()  # the server's start and first-use costs
    start = time.monotonic()  # how long a child takes
    child = _start(tmp_path / "child", cfg)
    child.join()
    duration = time.monotonic() - start
    assert child.exitcode == 0
    assert outcome(json.loads((tmp_path / "child" / "summary.json").read_text())) == outcome(
        expected
    )
    run, rng = tmp_path / "run", random.Random(signum)
    stops, in_writes = 0, 0
    for attempt in range(12):
        proc = _start(run, cfg)
        if attempt < 10:  # then let it finish
            when = None if attempt % 2 else rng.uniform(0.0, duration / 2)
            writing, code = _kill_during(proc, run, signum, when)
            in_writes += writing
        else:
            proc.join()
            code = proc.exitcode
        if code == 0:
            break
        stops += 1
        if signum == signal.SIGKILL:
            assert code == -signal.SIGKILL
        else:  # checkpointed and stopped (or still starting up: killed by the default)
            assert code in (128 + signal.SIGTERM, -signal.SIGTERM), code
    assert stops >= 3 and in_writes >= 1
    summary = json.loads((run / "summary.json").read_text())
    reference_summary = json.loads((reference / "summary.json").read_text())
    assert outcome(summary) == outcome(reference_summary) == outcome(expected)
    assert without_time(read_metrics(run / "metrics.jsonl")) == without_time(
        read_metrics(reference / "metrics.jsonl")
    )
    assert list_checkpoints(run) == list_checkpoints(reference)
    mine, theirs = load_checkpoint(run)[1]["learner"], load_checkpoint(reference)[1]["learner"]
    assert torch.equal(
        torch.cat([x.flatten() for _, x in checkpoint_mod._float_tensors(mine)]),
        torch.cat([x.flatten() for _, x in checkpoint_mod._float_tensors(theirs)]),
    )
    assert not _leftovers(run) or all(n.startswith(".tmp-") for n in _leftovers(run))
