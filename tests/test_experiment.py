"""The training loop end to end: run folder, resume, crashes, Ctrl-C, checkpoints."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
import yaml
from same_run import without_time

from ddn.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from ddn.config import resolve
from ddn.experiment import Experiment
from ddn.logging import read_metrics

TINY = [
    "env.n_agents=3", "env.n_prey=1", "env.height=5", "env.width=5", "env.episode_limit=20",
    "batch_size_run=4", "batch_size=8", "buffer_size=64", "t_max=400", "test_interval=200",
    "test_nepisode=4", "log_interval=100", "save_model_interval=200", "rnn_hidden_dim=16",
    "mixing_embed_dim=8", "hypernet_embed=16", "device=cpu",
]  # fmt: skip
REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(*extra: str, algo: str = "qmix"):
    return resolve("predator_prey", algo, overrides=[*TINY, *extra])


def kind(event: dict) -> str:
    keys = [k for k in event if "/" in k]
    return keys[0].split("/")[0] if keys else "?"


def assert_monotonic_per_kind(events: list[dict]) -> None:
    last: dict[str, int] = {}
    for e in events:
        k = kind(e)
        assert e["t_env"] > last.get(k, -1), f"duplicate or backwards t_env in {k}: {e}"
        last[k] = e["t_env"]


def assert_episodes_match_metrics(run: Path, policies: tuple[str, ...] = ("teacher",)) -> None:
    """episodes.jsonl holds, per test event and network, exactly the episodes whose means
    metrics.jsonl logged."""
    tests = [e for e in read_metrics(run / "metrics.jsonl") if "test/return_mean" in e]
    records = read_metrics(run / "episodes.jsonl")
    assert [r["t_env"] for r in records] == [e["t_env"] for e in tests for _ in policies]
    for event, i in zip(tests, range(0, len(records), len(policies)), strict=True):
        for record, policy in zip(records[i : i + len(policies)], policies, strict=True):
            prefix = "test" if policy == "teacher" else "test_student"
            assert record["source"] == "test" and record["policy"] == policy
            assert record["episode"] == event["episode"]
            returns = torch.tensor(record["return"], dtype=torch.float32).double()
            assert len(returns) == len(record["length"])
            assert float(returns.mean()) == event[f"{prefix}/return_mean"]
            assert float(returns.std(unbiased=False)) == event[f"{prefix}/return_std"]
            lengths = torch.tensor(record["length"], dtype=torch.float64)
            assert float(lengths.mean()) == event[f"{prefix}/ep_length_mean"]
            if f"{prefix}/win_rate" in event:
                assert set(record["won"]) <= {0, 1}
                assert sum(record["won"]) / len(record["won"]) == event[f"{prefix}/win_rate"]
            else:
                assert "won" not in record


# ---------------------------------------------------------------- one run
def test_tiny_run_writes_a_complete_run_folder(tmp_path):
    cfg = tiny()
    run = tmp_path / "run"
    summary = Experiment(cfg, run, progress=False).run()

    assert summary["finished"] is True
    assert summary["t_env"] >= cfg.t_max
    assert summary["episode"] > 0 and summary["episode"] % cfg.batch_size_run == 0
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk == summary
    assert {"test/return_mean", "test/return_std", "test/ep_length_mean"} <= set(summary)

    # config.yaml: the resolved config.
    # config.yaml is the configuration with the thread count the policy chose, recorded.
    assert yaml.safe_load((run / "config.yaml").read_text()) == {**cfg.to_dict(), "threads": 1}

    # metrics.jsonl: every event has t_env; train, test and speed metrics appear.
    events = read_metrics(run / "metrics.jsonl")
    assert events and all(isinstance(e["t_env"], int) for e in events)
    keys = set().union(*events)
    for key in ("train/return_mean", "train/loss", "test/return_mean", "time/env_steps_per_s"):
        assert key in keys, key
    assert_monotonic_per_kind(events)
    tests = [e for e in events if "test/return_mean" in e]
    assert tests[0]["t_env"] == 0  # PyMARL tests before training
    assert tests[-1]["t_env"] == summary["t_env"]
    assert tests[-1]["test/return_mean"] == summary["test/return_mean"]
    assert_episodes_match_metrics(run)
    assert len(read_metrics(run / "episodes.jsonl")[0]["return"]) == cfg.test_nepisode

    # TensorBoard event files.
    assert list((run / "tb").glob("events.out.tfevents.*"))

    # Checkpoints: one per save interval and the final one.
    saved = list_checkpoints(run)
    assert saved[-1] == summary["t_env"]
    assert len(saved) >= 2
    for t in saved:
        assert (run / "checkpoints" / str(t) / "state.pt").is_file()
        assert not (run / "checkpoints" / str(t) / "buffer.pt").exists()  # save_buffer=false
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    t_env, state, buffer = load_checkpoint(run)
    assert t_env == summary["t_env"] and buffer is None
    assert state["counters"]["t_env"] == t_env
    assert state["config"] == {**cfg.to_dict(), "threads": 1}


def test_run_records_the_code_that_produced_it(tmp_path):
    """Each start and resume appends a provenance line; the summary names the code."""
    from ddn.provenance import code_version

    cfg = tiny("t_max=200", "save_model_interval=100")
    run = tmp_path / "run"
    Experiment(cfg, run, progress=False).run()
    shutil.rmtree(run / "checkpoints" / str(list_checkpoints(run)[-1]))
    summary = Experiment.resume(run, progress=False).run()
    lines = [json.loads(x) for x in (run / "provenance.jsonl").read_text().splitlines()]
    assert [e["t_env"] for e in lines] == [0, list_checkpoints(run)[-2]]
    here = code_version()
    for e in lines:
        assert {k: e[k] for k in here} == here
        assert {"time", "torch", "python", "host"} <= set(e)
    assert summary["code"] == here
    # This suite runs from ddn's git checkout (CI's clone too): the commit is known.
    assert here["commit"] is not None and len(here["commit"]) == 40
    assert isinstance(here["dirty"], bool)


def test_matrix_run_reports_win_rate(tmp_path):
    cfg = resolve(
        "matrix", "vdn",
        overrides=["t_max=256", "batch_size_run=16", "batch_size=16", "test_interval=128",
                   "log_interval=64", "save_model=false", "device=cpu", "rnn_hidden_dim=8"],
    )  # fmt: skip
    summary = Experiment(cfg, tmp_path / "m", progress=False).run()
    assert summary["t_env"] == 256 and "test/win_rate" in summary
    assert not (tmp_path / "m" / "checkpoints").exists()  # save_model=false
    events = read_metrics(tmp_path / "m" / "metrics.jsonl")
    assert any("train/win_rate" in e for e in events)
    assert_episodes_match_metrics(tmp_path / "m")


def test_ddn_run_keeps_teacher_and_student_episodes(tmp_path):
    cfg = tiny("t_max=200", "test_interval=100", "save_model=false", algo="ddn_vdn")
    Experiment(cfg, tmp_path / "d", progress=False).run()
    assert_episodes_match_metrics(tmp_path / "d", ("teacher", "student"))


@pytest.mark.parametrize("k", [1, 3])
def test_updates_per_iteration_counts_updates_and_target_syncs(tmp_path, k):
    cfg = tiny(f"updates_per_iteration={k}", "target_update_interval=8", "save_model=false")
    exp = Experiment(cfg, tmp_path / "run", progress=False)
    episodes: list[int] = []
    train = exp.learner.train

    def counted(batch, episode):
        episodes.append(episode)
        return train(batch, episode)

    exp.learner.train = counted
    exp.run()
    iterations = exp.episode // cfg.batch_size_run
    learning = iterations - (cfg.batch_size // cfg.batch_size_run) + 1  # once a batch fits
    assert len(episodes) == k * learning
    # All updates of an iteration see its episode count.
    assert episodes == sorted(episodes) and len(set(episodes)) == learning
    # Target networks still sync every target_update_interval episodes, however many
    # updates an iteration makes.
    assert exp.learner.last_target_update_episode == exp.episode - exp.episode % 8


@pytest.mark.slow
def test_resume_with_several_updates_per_iteration_is_exact(tmp_path):
    cfg = tiny("save_buffer=true", "t_max=600", "updates_per_iteration=2")
    a = Experiment(cfg, tmp_path / "a", progress=False).run()
    b_dir = tmp_path / "b"
    Experiment(cfg, b_dir, progress=False).run()
    saved = list_checkpoints(b_dir)
    for t in saved[1:]:
        shutil.rmtree(b_dir / "checkpoints" / str(t))
    assert Experiment.resume(b_dir, progress=False).run() == a
    events_a = read_metrics(tmp_path / "a" / "metrics.jsonl")
    assert without_time(read_metrics(b_dir / "metrics.jsonl")) == without_time(events_a)


# ---------------------------------------------------------------- resume
@pytest.mark.parametrize("keep", [0, 1, 2])
@pytest.mark.slow
def test_resume_is_equivalent_to_an_uninterrupted_run(tmp_path, keep):
    cfg = tiny("save_buffer=true", "t_max=1000", "keep_checkpoints=0")
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a = Experiment(cfg, a_dir, progress=False).run()
    b = Experiment(cfg, b_dir, progress=False).run()
    assert a == b  # deterministic on CPU

    # Pretend run B died after its keep-th checkpoint: later checkpoints never happened
    # (metrics.jsonl still holds the later events, as after a crash).
    saved = list_checkpoints(b_dir)
    assert len(saved) >= 4
    resume_at = saved[keep]
    for t in saved[keep + 1 :]:
        shutil.rmtree(b_dir / "checkpoints" / str(t))
    assert (b_dir / "checkpoints" / str(resume_at) / "buffer.pt").is_file()

    exp = Experiment.resume(b_dir, progress=False)
    assert exp.t_env == resume_at
    assert exp.buffer.size > 0
    summary = exp.run()
    assert summary == a

    events_a = read_metrics(a_dir / "metrics.jsonl")
    events_b = read_metrics(b_dir / "metrics.jsonl")
    assert without_time(events_b) == without_time(events_a)
    # The per-episode file is cut back with metrics.jsonl: no test is kept twice.
    assert read_metrics(b_dir / "episodes.jsonl") == read_metrics(a_dir / "episodes.jsonl")
    assert_episodes_match_metrics(b_dir)
    assert list_checkpoints(b_dir) == list_checkpoints(a_dir)


class Crash(Exception):
    pass


def _interrupt_at_update(exp: Experiment, k: int, action) -> None:
    """Call ``action()`` inside the k-th learner update of ``exp``."""
    train = exp.learner.train
    calls = {"n": 0}

    def wrapped(batch, episode):
        calls["n"] += 1
        if calls["n"] == k:
            action()
        return train(batch, episode)

    exp.learner.train = wrapped


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted run (config, summary, events) the interrupted ones must match."""
    cfg = tiny("save_buffer=true", "t_max=1000")
    run = tmp_path_factory.mktemp("reference") / "run"
    summary = Experiment(cfg, run, progress=False).run()
    return cfg, summary, read_metrics(run / "metrics.jsonl"), read_metrics(run / "episodes.jsonl")


@pytest.mark.parametrize("k", [6, 11])
@pytest.mark.slow
def test_resume_after_a_crash_mid_iteration(tmp_path, reference_run, k):
    cfg, summary_a, events_a, episodes_a = reference_run
    run = tmp_path / "run"
    exp = Experiment(cfg, run, progress=False)

    def crash():
        raise Crash

    _interrupt_at_update(exp, k, crash)
    with pytest.raises(Crash):
        exp.run()
    # The crash may also leave half a line at the end of the log.
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"t_env": 99999, "train/ret')
    with (run / "episodes.jsonl").open("a") as f:
        f.write('{"t_env": 99999, "source": "test", "return": [1.0, ')
    resumed = Experiment.resume(run, progress=False)
    assert resumed.t_env < exp.t_env
    assert resumed.run() == summary_a
    assert without_time(read_metrics(run / "metrics.jsonl")) == without_time(events_a)
    assert read_metrics(run / "episodes.jsonl") == episodes_a


@pytest.mark.slow
def test_ctrl_c_in_process_then_resume_matches(tmp_path, reference_run):
    cfg, summary_a, events_a, episodes_a = reference_run
    run = tmp_path / "run"
    exp = Experiment(cfg, run, progress=False)
    _interrupt_at_update(exp, 11, lambda: os.kill(os.getpid(), signal.SIGINT))
    previous = signal.getsignal(signal.SIGINT)
    stopped = exp.run()
    assert signal.getsignal(signal.SIGINT) is previous  # the handler is restored
    assert stopped["finished"] is False and stopped["t_env"] < cfg.t_max
    assert list_checkpoints(run)[-1] == stopped["t_env"]
    assert json.loads((run / "summary.json").read_text()) == stopped

    resumed = Experiment.resume(run, progress=False)
    assert resumed.t_env == stopped["t_env"]
    assert resumed.run() == summary_a
    assert without_time(read_metrics(run / "metrics.jsonl")) == without_time(events_a)
    assert read_metrics(run / "episodes.jsonl") == episodes_a


@pytest.mark.slow
def test_resume_without_saved_buffer_refills_it(tmp_path):
    cfg = tiny("t_max=600")
    run = tmp_path / "run"
    Experiment(cfg, run, progress=False).run()
    first = list_checkpoints(run)[0]
    for t in list_checkpoints(run)[1:]:
        shutil.rmtree(run / "checkpoints" / str(t))
    # A campaign turns save_buffer on for a run that outlives its machine: not another
    # configuration, and every later checkpoint holds the buffer.
    exp = Experiment.resume(run, progress=False, save_buffer=True)
    assert exp.t_env == first and exp.buffer.size == 0
    summary = exp.run()
    assert summary["finished"] and summary["t_env"] >= cfg.t_max
    assert_monotonic_per_kind(read_metrics(run / "metrics.jsonl"))
    later = [t for t in list_checkpoints(run) if t > first]
    assert later and all((run / "checkpoints" / str(t) / "buffer.pt").is_file() for t in later)
    assert not (run / "checkpoints" / str(first) / "buffer.pt").exists()
    assert Experiment.resume(run, progress=False, save_buffer=True).buffer.size > 0


def test_a_resumed_runs_throughput_counts_only_its_own_steps(tmp_path, monkeypatch):
    run = tmp_path / "run"
    Experiment(tiny(), run, progress=False).run()
    first = list_checkpoints(run)[0]
    for t in list_checkpoints(run)[1:]:
        shutil.rmtree(run / "checkpoints" / str(t))
    # A clock that advances one second per reading: each window (from the resume or the
    # last log to this log) lasts one second, so its throughput is its number of steps.
    ticks = itertools.count()
    clock = types.SimpleNamespace(perf_counter=lambda: float(next(ticks)))
    monkeypatch.setattr("ddn.experiment.time", clock)
    Experiment.resume(run, progress=False).run()
    logs = [
        e for e in read_metrics(run / "metrics.jsonl")
        if "time/env_steps_per_s" in e and e["t_env"] > first
    ]  # fmt: skip
    assert logs
    starts = [first] + [e["t_env"] for e in logs[:-1]]
    assert [e["time/env_steps_per_s"] for e in logs] == [
        e["t_env"] - start for e, start in zip(logs, starts, strict=True)
    ]


def test_resume_of_a_finished_run_does_nothing_new(tmp_path):
    run = tmp_path / "run"
    first = Experiment(tiny(), run, progress=False).run()
    before = read_metrics(run / "metrics.jsonl")
    again = Experiment.resume(run, progress=False).run()
    assert again["t_env"] == first["t_env"] and again["finished"]
    after = read_metrics(run / "metrics.jsonl")
    assert without_time(after) == without_time(before)


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_from_another_config_is_refused(tmp_path):
    run = tmp_path / "run"
    Experiment(tiny(), run, progress=False).run()
    cfg_path = run / "config.yaml"
    data = yaml.safe_load(cfg_path.read_text())
    data["lr"] = 0.123
    cfg_path.write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointError, match=r"another configuration.*\['lr'\]"):
        Experiment.resume(run, progress=False)


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(CheckpointError, match="not a ddn run folder"):
        Experiment.resume(tmp_path, progress=False)


def test_resume_without_checkpoints(tmp_path):
    from ddn import config

    run = tmp_path / "run"
    run.mkdir()
    config.save(tiny(), run / "config.yaml")
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        Experiment.resume(run, progress=False)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    Experiment(tiny("save_buffer=true"), run, progress=False).run()
    return run


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_leftover_tmp_folder_is_ignored(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path / "run")
    latest = list_checkpoints(run)[-1]
    half = run / "checkpoints" / f".tmp-{latest + 50}-12345"
    half.mkdir()
    (half / "state.pt").write_bytes(b"\x00garbage")
    assert list_checkpoints(run)[-1] == latest
    t_env, state, _ = load_checkpoint(run)
    assert t_env == latest and state["counters"]["t_env"] == latest
    assert Experiment.resume(run, progress=False).t_env == latest


def test_checkpoint_folder_without_state_is_ignored(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path / "run")
    latest = list_checkpoints(run)[-1]
    (run / "checkpoints" / str(latest + 100)).mkdir()  # e.g. an emptied folder
    assert load_checkpoint(run)[0] == latest


class Foreign:
    """An arbitrary pickled object: weights_only loading must refuse it."""


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "not_a_dict", "foreign"])
def test_corrupt_newest_checkpoint_raises_a_checkpoint_error(
    finished_run, tmp_path, damage, legacy
):
    run = _copy_run(finished_run, tmp_path / "run")
    saved = list_checkpoints(run)
    state_file = run / "checkpoints" / str(saved[-1]) / "state.pt"
    if legacy:  # written before checkpoints had a manifest: torch.load's checks alone
        (state_file.parent / "manifest.json").unlink()
    data = state_file.read_bytes()
    if damage == "truncate":
        state_file.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        state_file.write_bytes(b"this is not a torch file" * 10)
    elif damage == "empty":
        state_file.write_bytes(b"")
    elif damage == "not_a_dict":
        torch.save([1, 2, 3], state_file)
    else:
        torch.save({"counters": Foreign()}, state_file)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(run)
    msg = str(info.value)
    assert str(state_file) in msg
    assert "\n" not in msg and "weights_only" not in msg  # one line, no unsafe advice
    if not legacy:
        assert "fails its checksum" in msg and "Delete that checkpoint folder" in msg
    elif damage != "not_a_dict":
        assert "corrupt or unreadable" in msg and "Delete that checkpoint folder" in msg
    with pytest.raises(CheckpointError):
        Experiment.resume(run, progress=False)
    # An explicit earlier checkpoint still loads; so does the run once the bad one goes.
    assert load_checkpoint(run, saved[0])[0] == saved[0]
    shutil.rmtree(state_file.parent)
    assert Experiment.resume(run, progress=False).t_env == saved[-2]


def test_a_flipped_tensor_byte_is_refused(finished_run, tmp_path):
    """The file stays a valid torch file: only the checksum can tell."""
    run = _copy_run(finished_run, tmp_path / "run")
    state_file = run / "checkpoints" / str(list_checkpoints(run)[-1]) / "state.pt"
    data = bytearray(state_file.read_bytes())
    raw = torch.load(state_file, weights_only=True)  # loads before and after the flip
    weight = next(iter(raw["learner"]["agent"].values()))
    needle = weight.flatten()[:4].numpy().tobytes()
    at = bytes(data).index(needle)
    data[at] ^= 0x01
    state_file.write_bytes(bytes(data))
    assert torch.load(state_file, weights_only=True)["counters"] == raw["counters"]
    with pytest.raises(CheckpointError, match=r"state\.pt fails its checksum"):
        load_checkpoint(run)


def test_corrupt_buffer_file_raises_a_checkpoint_error(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path / "run")
    latest = list_checkpoints(run)[-1]
    buf = run / "checkpoints" / str(latest) / "buffer.pt"
    buf.write_bytes(buf.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"buffer\.pt fails its checksum"):
        load_checkpoint(run)
    (buf.parent / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match=r"buffer\.pt is corrupt"):
        load_checkpoint(run)


def test_missing_buffer_file_is_reported(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path / "run")
    latest = list_checkpoints(run)[-1]
    (run / "checkpoints" / str(latest) / "buffer.pt").unlink()
    with pytest.raises(CheckpointError, match=r"buffer\.pt is missing"):
        Experiment.resume(run, progress=False)


def test_load_checkpoint_unknown_t_env(finished_run):
    saved = list_checkpoints(finished_run)
    with pytest.raises(CheckpointError, match=r"no checkpoint at t_env=7 .*available"):
        load_checkpoint(finished_run, 7)
    assert load_checkpoint(finished_run, saved[0])[0] == saved[0]


def test_saving_the_same_t_env_twice_replaces_it(tmp_path):
    exp = Experiment(tiny(), tmp_path / "run", progress=False)
    exp.t_env = 50
    first = exp.save()
    exp.episode = 3
    second = exp.save()
    assert first == second
    assert list_checkpoints(tmp_path / "run") == [50]
    assert load_checkpoint(tmp_path / "run")[1]["counters"]["episode"] == 3
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["50"]


# ---------------------------------------------------------------- subprocesses
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _ddn(*args: str) -> list[str]:
    return [sys.executable, "-m", "ddn.cli", *args]


def _start_train(run: Path, *extra: str) -> subprocess.Popen:
    sets = [x for item in [*TINY, *extra] for x in ("--set", item)]
    cmd = _ddn("train", "--env", "predator_prey", "--algo", "qmix", "--out", str(run),
               "--no-progress", *sets)  # fmt: skip
    return subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_checkpoint(proc: subprocess.Popen, run: Path, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        saved = list_checkpoints(run)
        if saved:
            return saved[-1]
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"training exited early ({proc.returncode}):\n{out}\n{err}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("no checkpoint appeared")


LONG = ("t_max=8000", "save_model_interval=300", "test_interval=500", "log_interval=200")


@pytest.mark.slow
def test_sigkill_between_checkpoints_then_resume(tmp_path):
    run = tmp_path / "run"
    proc = _start_train(run, *LONG)
    _wait_for_checkpoint(proc, run)
    time.sleep(0.15)  # somewhere between checkpoints
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "summary.json").exists()
    killed_at = list_checkpoints(run)[-1]
    assert killed_at < 8000

    done = subprocess.run(
        _ddn("train", "--resume", str(run), "--no-progress"),
        env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"from t_env={killed_at}" in done.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] is True and summary["t_env"] >= 8000
    events = read_metrics(run / "metrics.jsonl")
    assert_monotonic_per_kind(events)
    assert events[-1]["t_env"] == summary["t_env"]
    assert list_checkpoints(run)[-1] == summary["t_env"]
    # Only a save cut short by the kill may leave a hidden folder behind.
    hidden = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert all(name.endswith(f"-{proc.pid}") for name in hidden), hidden


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_resumes(tmp_path):
    run = tmp_path / "run"
    proc = _start_train(run, *LONG)
    _wait_for_checkpoint(proc, run)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] is False
    assert 0 < summary["t_env"] < 8000
    assert list_checkpoints(run)[-1] == summary["t_env"]
    assert f"--resume {run}" in out + err

    exp = Experiment.resume(run, progress=False)
    assert exp.t_env == summary["t_env"]
    final = exp.run()
    assert final["finished"] is True and final["t_env"] >= 8000
    assert_monotonic_per_kind(read_metrics(run / "metrics.jsonl"))


def test_summary_json_is_strict_json(tmp_path):
    """An undefined transfer rate (NaN) is written as null: NaN is not JSON, and strict
    readers (jq, JavaScript, marl-eval's tools) refuse the whole file."""
    from ddn.experiment import _atomic_write_json

    path = tmp_path / "summary.json"
    _atomic_write_json(path, {"t_env": 5, "test/transfer_rate": float("nan"), "x": 1.5})

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} written into summary.json")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "t_env": 5, "test/transfer_rate": None, "x": 1.5,
    }  # fmt: skip


# ---------------------------------------------------------------- checkpoint formats
def _rewrite_latest(run: Path, edit) -> int:
    """Rewrite the latest checkpoint's state through ``edit`` (checksums renewed)."""
    t_env, state, buffer = load_checkpoint(run)
    edit(state)
    save_checkpoint(run, t_env, state, buffer)
    return t_env


def test_a_format_1_checkpoint_resumes_with_fresh_random_streams(tmp_path, capsys):
    """Checkpoints written before the separate random streams (format 1: no exploration
    or replay generator, DDN's learner without its IDM-mask generator) still resume, and
    say that the continuation restarts those streams from their seeds."""
    cfg = tiny("save_buffer=true", "t_max=600", algo="ddn")
    run = tmp_path / "run"
    Experiment(cfg, run, progress=False).run()
    for t in list_checkpoints(run)[1:]:
        shutil.rmtree(run / "checkpoints" / str(t))

    def to_format_1(state: dict) -> None:
        state["format"] = 1
        del state["rng"]["exploration"], state["rng"]["replay"]
        del state["learner"]["idm_generator"]

    t_env = _rewrite_latest(run, to_format_1)
    exp = Experiment.resume(run, progress=False)
    assert "predates separate random streams (format 1)" in capsys.readouterr().err
    assert exp.t_env == t_env
    summary = exp.run()
    assert summary["finished"] and summary["t_env"] >= 600


def test_a_checkpoint_of_an_unknown_format_is_refused_with_the_reason(tmp_path):
    run = tmp_path / "run"
    Experiment(tiny(), run, progress=False).run()
    _rewrite_latest(run, lambda state: state.update(format=99))
    with pytest.raises(CheckpointError, match=r"format 99, which this ddn version cannot read"):
        Experiment.resume(run, progress=False)
    # The command line says it in one line.
    proc = subprocess.run(
        _ddn("train", "--resume", str(run)), capture_output=True, text=True, env=_env()
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "format 99" in lines[0] and "Traceback" not in proc.stderr
