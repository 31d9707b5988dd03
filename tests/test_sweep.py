"""``ddn sweep``: expansion, the local pool, resume after a kill, retry of failures, Ray."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ddn.checkpoint import list_checkpoints
from ddn.cli import main
from ddn.logging import read_metrics
from ddn.run_folder import RunFolder
from ddn.sweep import load_sweep, packaged_sweeps
from ddn.sweep.spec import with_threads

TINY = """
algos: [vdn, qmix]
envs: [matrix]
seeds: [0, 1]
t_max: 1024
overrides: [test_interval=256, log_interval=256, save_model_interval=256]
threads: 1
device: cpu
"""
NAMES = {f"matrix-default-{a}-{s}" for a in ("vdn", "qmix") for s in (0, 1)}


def _write(tmp: Path, text: str = TINY, name: str = "tiny.yaml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def _status(out: Path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads((out / "sweep_status.json").read_text())["runs"]}


def _layout(out: Path) -> dict[str, set[str]]:
    return {
        d.name: {p.name for p in d.iterdir()} - {"tb"}
        for d in out.iterdir()
        if d.is_dir() and d.name != "logs"
    }


def _summaries(out: Path) -> dict[str, dict]:
    return {n: json.loads((out / n / "summary.json").read_text()) for n in NAMES}


def _stopped_at_512(sweep_out: Path, out: Path, name: str) -> Path:
    """A copy of a finished sweep in ``out`` whose run ``name`` stopped after its
    checkpoint at 512 steps (no summary, no later checkpoint)."""
    shutil.copytree(sweep_out, out)
    victim = out / name
    (victim / "summary.json").unlink()
    for t in list_checkpoints(victim):
        if t > 512:
            shutil.rmtree(victim / "checkpoints" / str(t))
    return victim


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("sweep")
    out = tmp / "out"
    assert main(["sweep", str(_write(tmp)), "--out", str(out), "--workers", "2"]) == 0
    return out


def test_expansion_names_and_packaged_files(tmp_path):
    sweep = load_sweep(_write(tmp_path))
    assert [r.name for r in sweep.runs] == [
        "matrix-default-vdn-0", "matrix-default-qmix-0",
        "matrix-default-vdn-1", "matrix-default-qmix-1",
    ]  # fmt: skip
    assert sweep.runs[0].config().t_max == 1024
    names = packaged_sweeps()
    assert {"tiny_matrix", "paper/table2", "paper/predator_prey"} <= set(names)
    table5 = load_sweep("paper/table5")
    assert {r.variant for r in table5.runs} >= {"no_idm", "mu0.75"}
    assert len(load_sweep("tiny_matrix").runs) == 4


def test_packaged_smax_paper_sweeps_run_3s_vs_5z_at_smacs_limit():
    # At SMAX's 101 steps the limit decides 3s_vs_5z's battles (docs/smax.md#episode-limit),
    # so every paper sweep on SMAX gives that map SMAC's 250 and leaves the others alone.
    with_3s_vs_5z = set()
    for name in (n for n in packaged_sweeps() if n.startswith("paper/")):
        for run in load_sweep(name).runs:
            if run.env != "smax" or run.seed != 0:
                continue
            limit = run.config().env["episode_limit"]
            if run.map_name == "3s_vs_5z":
                assert limit == 250, name
                with_3s_vs_5z.add(name)
            else:
                assert limit != 250, (name, run.map_name)
    assert with_3s_vs_5z == {"paper/smac", "paper/table2_rivals"} | {
        f"paper/table{k}" for k in range(1, 6)
    }


def test_bad_sweep_file_is_one_error(tmp_path, capsys):
    bad = _write(tmp_path, TINY.replace("test_interval", "test_intervall"), "bad.yaml")
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ddn: error:") and "test_interval" in err
    assert main(["sweep", "no/such/sweep"]) == 2


def test_runs_selects_by_pattern_and_a_pattern_matching_nothing_is_one_error(tmp_path, capsys):
    path = _write(tmp_path)
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--dry-run",
                 "--runs", "*-vdn-1", "matrix-default-qmix-0"]) == 0  # fmt: skip
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["matrix-default-qmix-0", "matrix-default-vdn-1"]  # the file's order
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--runs", "*-iql-*"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ddn: error: --runs '*-iql-*' matches no run")
    assert set(err.split("its runs: ")[1].split(", ")) == NAMES
    assert not (tmp_path / "o").exists()


def test_threads_option_sets_every_runs_threads_and_a_bad_count_is_one_error(tmp_path, capsys):
    path = _write(tmp_path)
    sweep = with_threads(load_sweep(path), 2)
    assert sweep.threads == 2 and [r.config().threads for r in sweep.runs] == [2] * 4
    for bad in ("0", "-1"):
        assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--threads", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"ddn: error: --threads must be an integer >= 1, got {bad}"
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_run_resumes_at_the_thread_count_the_sweep_is_given(local_sweep, tmp_path, capsys):
    """``--threads N`` says how runs execute, not what they compute: a run started at the
    file's 1 thread carries on at N (e.g. alone on the machine, with all its cores)."""
    out = tmp_path / "copy"
    victim = _stopped_at_512(local_sweep, out, "matrix-default-qmix-1")
    path = str(_write(tmp_path))
    assert main(["sweep", path, "--out", str(out), "--runs", "*-qmix-1", "--threads", "2"]) == 0
    assert "2 thread(s) per run" in capsys.readouterr().err
    assert _status(out)[victim.name]["status"] == "finished"
    assert _status(out)[victim.name]["resumed_from"] == 512
    _, state, _ = RunFolder(victim).load_checkpoint()
    assert state["config"]["threads"] == 2


@pytest.mark.slow
def test_two_sweeps_share_a_folder_each_with_its_runs(local_sweep, tmp_path):
    """Each core its own `ddn sweep --runs` on one results folder: each trains its runs,
    the sweep file copied is the whole file, and the status keeps every run's entry."""
    out = tmp_path / "copy"
    shutil.copytree(local_sweep, out)
    for name in ("matrix-default-vdn-1", "matrix-default-qmix-1"):
        shutil.rmtree(out / name)
    path = _write(tmp_path)
    for name in ("matrix-default-vdn-1", "matrix-default-qmix-1"):
        assert main(["sweep", str(path), "--out", str(out), "--runs", name]) == 0
        assert _status(out)[name] == {**_status(out)[name], "status": "finished", "attempts": 1}
    assert set(_layout(out)) == NAMES
    assert set(_status(out)) == NAMES
    assert {r["status"] for r in _status(out).values()} == {"finished"}
    assert (out / "sweep.yaml").read_text() == TINY


@pytest.mark.slow
def test_a_run_another_process_trains_is_left_to_it(local_sweep, tmp_path):
    from ddn.run_lock import lock_path
    from ddn.sweep.state import IN_USE

    out = tmp_path / "copy"
    shutil.copytree(local_sweep, out)
    busy = out / "matrix-default-vdn-0"
    (busy / "summary.json").unlink()  # unfinished: this sweep would resume it
    before = sorted(p.name for p in busy.rglob("*"))
    hold = (
        "import fcntl, os, sys, time\nfh = open(sys.argv[1], 'a+')\n"
        "fcntl.flock(fh, fcntl.LOCK_EX)\nfh.truncate(0); fh.write(f'{os.getpid()}\\n')\n"
        "fh.flush()\n"
        "print('held', flush=True)\ntime.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", hold, str(lock_path(busy))],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        assert main(["sweep", str(out / "sweep.yaml"), "--out", str(out)]) == 0
        status = _status(out)
        assert status[busy.name]["status"] == IN_USE
        assert status[busy.name]["error"] == f"pid {proc.pid}"
        assert {status[n]["status"] for n in NAMES - {busy.name}} == {"skipped"}
        assert sorted(p.name for p in busy.rglob("*")) == before  # untouched
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_local_pool_runs_every_run(local_sweep):
    out = local_sweep
    layout = _layout(out)
    assert set(layout) == NAMES
    for files in layout.values():
        assert {"config.yaml", "metrics.jsonl", "summary.json", "checkpoints"} <= files
    assert all(s["finished"] and s["t_env"] == 1024 for s in _summaries(out).values())
    assert {r["status"] for r in _status(out).values()} == {"finished"}
    assert (out / "sweep.yaml").is_file()
    assert all((out / "logs" / f"{n}.log").is_file() for n in NAMES)


@pytest.mark.slow
def test_rerun_skips_finished_and_resumes_unfinished(local_sweep, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(local_sweep, out)
    before = _summaries(out)
    # Make one run look killed after its checkpoint at t_env=512.
    victim = out / "matrix-default-qmix-1"
    (victim / "summary.json").unlink()
    for t in list_checkpoints(victim):
        if t > 512:
            shutil.rmtree(victim / "checkpoints" / str(t))
    assert main(["sweep", str(out / "sweep.yaml"), "--out", str(out)]) == 0
    status = _status(out)
    assert status["matrix-default-qmix-1"]["status"] == "finished"
    assert status["matrix-default-qmix-1"]["resumed_from"] == 512
    assert {status[n]["status"] for n in NAMES - {victim.name}} == {"skipped"}
    after = _summaries(out)
    assert after == before  # the resumed run ends where the uninterrupted one did
    t_envs = [e["t_env"] for e in read_metrics(victim / "metrics.jsonl") if "test/win_rate" in e]
    assert t_envs == sorted(set(t_envs)) and t_envs[-1] == 1024


@pytest.mark.slow
def test_a_sweep_that_turns_on_save_buffer_resumes_its_runs_with_it(local_sweep, tmp_path):
    """save_buffer says how a run executes, not what it computes: a campaign adds it to
    the sweep of runs that outlive their machine, and they resume with it."""
    out = tmp_path / "copy"
    victim = _stopped_at_512(local_sweep, out, "matrix-default-vdn-0")
    text = TINY.replace("save_model_interval=256]", "save_model_interval=256, save_buffer=true]")
    assert main(["sweep", str(_write(tmp_path, text, "buffer.yaml")), "--out", str(out)]) == 0
    status = _status(out)
    assert status[victim.name]["status"] == "finished"
    assert status[victim.name]["resumed_from"] == 512
    assert {status[n]["status"] for n in NAMES - {victim.name}} == {"skipped"}
    later = [t for t in list_checkpoints(victim) if t > 512]
    assert later and all((victim / "checkpoints" / str(t) / "buffer.pt").is_file() for t in later)


@pytest.mark.slow
def test_runs_of_an_older_ddn_carry_on_and_changed_ones_are_refused(local_sweep, tmp_path, capsys):
    """A campaign spans ddn versions: config keys added since count as their defaults.
    A key whose value differs is another configuration, refused with one line."""
    out = tmp_path / "copy"
    shutil.copytree(local_sweep, out)
    for name in NAMES:
        cfg_path = out / name / "config.yaml"
        old = yaml.safe_load(cfg_path.read_text())
        del old["keep_checkpoints"], old["loggers"]  # as written before these keys existed
        cfg_path.write_text(yaml.safe_dump(old))
    assert main(["sweep", str(out / "sweep.yaml"), "--out", str(out)]) == 0
    assert {r["status"] for r in _status(out).values()} == {"skipped"}

    changed = out / "matrix-default-vdn-0" / "config.yaml"
    changed.write_text(changed.read_text().replace("gamma: 0.99", "gamma: 0.9"))
    capsys.readouterr()
    assert main(["sweep", str(out / "sweep.yaml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "keys differ: ['gamma']" in err[0]


@pytest.mark.slow
def test_killed_sweep_finishes_only_missing_runs(tmp_path):
    sweep_file = _write(tmp_path)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ddn.cli", "sweep", str(sweep_file), "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    first = out / "matrix-default-vdn-0" / "summary.json"
    deadline = time.monotonic() + 60
    while not first.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up: runs die with the sweep
    proc.wait()
    assert first.is_file()
    finished = {n for n in NAMES if (out / n / "summary.json").is_file()}
    assert finished and finished != NAMES
    stamp = {n: (out / n / "summary.json").stat().st_mtime_ns for n in finished}

    assert main(["sweep", str(sweep_file), "--out", str(out)]) == 0
    status = _status(out)
    assert {n for n, r in status.items() if r["status"] == "skipped"} == finished
    assert {n for n, r in status.items() if r["status"] == "finished"} == NAMES - finished
    assert all((out / n / "summary.json").stat().st_mtime_ns == stamp[n] for n in finished)
    assert all(s["finished"] for s in _summaries(out).values())


@pytest.mark.slow
def test_failing_run_is_retried_once_and_reported(tmp_path, capsys):
    text = """
algos: [vdn]
envs: [matrix]
seeds: [0]
t_max: 256
overrides: [test_interval=256, log_interval=256, save_model_interval=256, device=cpu]
variants:
  good: []
  bad: ["env.payoff=[1, 2]"]
"""
    out = tmp_path / "out"
    assert main(["sweep", str(_write(tmp_path, text)), "--out", str(out)]) == 1
    status = _status(out)
    good, bad = status["matrix-default-vdn-good-0"], status["matrix-default-vdn-bad-0"]
    assert good["status"] == "finished" and good["attempts"] == 1
    assert bad["status"] == "failed" and bad["attempts"] == 2
    assert "payoff" in bad["error"]
    log = (out / "logs" / "matrix-default-vdn-bad-0.log").read_text()
    assert log.count("=== ") == 2
    printed = capsys.readouterr()
    assert "FAILED matrix-default-vdn-bad-0 after 2 attempts" in printed.out
    assert "retrying" in printed.err


@pytest.mark.slow
def test_ray_local_instance_gives_the_same_layout(local_sweep, tmp_path):
    ray = pytest.importorskip("ray")
    out = tmp_path / "ray"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(["sweep", str(local_sweep / "sweep.yaml"), "--out", str(out), "--ray"]) == 0
    finally:
        ray.shutdown()
    assert _layout(out) == _layout(local_sweep)
    assert _summaries(out) == _summaries(local_sweep)  # CPU, same seeds: same numbers
    assert {r["status"] for r in _status(out).values()} == {"finished"}


class _ScriptedBackend:
    """A scheduler whose runs end with scripted exit statuses, one per attempt."""

    stopping = "test"
    where = "scripted"

    def __init__(self, codes: dict[str, list[int]], limit: int, interrupt_after: int = -1):
        self.codes, self.limit = codes, limit
        self.interrupt_after = interrupt_after
        self.polls = 0
        self.most_at_once = 0
        self.stopped: list[str] = []

    def session(self):
        return contextlib.nullcontext()

    def submit(self, spec, run_dir, log):
        return spec.name

    def poll(self, running):
        self.most_at_once = max(self.most_at_once, len(running))
        self.polls += 1
        if self.polls == self.interrupt_after:
            raise KeyboardInterrupt
        name = sorted(running)[0]
        code = self.codes[name].pop(0)
        return [(name, code, "backend says no" if code == 1 else "")]

    def stop(self, running):
        self.stopped = sorted(running)
        return {name: 3 for name in running if name == "a"}  # "a" checkpointed and exited


def _drive(tmp_path: Path, backend: _ScriptedBackend) -> tuple[dict, bool]:
    """Runs a, b, c under ``drive``: (name -> (status, attempts, error), interrupted)."""
    from ddn.sweep.scheduler import drive
    from ddn.sweep.state import Outcome, Progress

    (spec,) = load_sweep(_write(tmp_path, TINY.replace("seeds: [0, 1]", "seeds: [0]")
                                .replace("[vdn, qmix]", "[vdn]"))).runs  # fmt: skip
    specs = [dataclasses.replace(spec, name=name) for name in "abc"]
    outcomes = {s.name: Outcome(s.name, "pending", log=str(tmp_path / s.name)) for s in specs}
    progress = Progress(len(specs), 0, {s.name: 1 for s in specs})
    try:
        drive(backend, specs, tmp_path, outcomes, progress, max_attempts=2)
        interrupted = False
    except KeyboardInterrupt:
        interrupted = True
    return {n: (o.status, o.attempts, o.error) for n, o in outcomes.items()}, interrupted


def test_the_shared_loop_retries_once_caps_runs_and_stops(tmp_path, capsys):
    """The loop every scheduler runs under: a failed run goes again once and then counts
    as failed with the scheduler's error; never more than ``limit`` runs at once; Ctrl-C
    stops every running run, marks it interrupted and is raised again."""
    backend = _ScriptedBackend({"a": [0], "b": [1, 1], "c": [1, 0]}, limit=2)
    result, interrupted = _drive(tmp_path, backend)
    assert not interrupted
    assert result == {
        "a": ("finished", 1, ""),
        "b": ("failed", 2, "backend says no"),
        "c": ("finished", 2, "backend says no"),  # the first attempt's error is kept
    }
    assert backend.most_at_once == 2
    assert "b failed (backend says no); retrying" in capsys.readouterr().err

    stopping = _ScriptedBackend({}, limit=3, interrupt_after=1)
    result, interrupted = _drive(tmp_path, stopping)
    assert interrupted and stopping.stopped == ["a", "b", "c"]
    assert result == {n: ("interrupted", 1, "") for n in "abc"}


def test_the_eta_starts_from_where_a_resumed_run_resumes(tmp_path, monkeypatch):
    """A resumed run's metrics are cut back to its checkpoint after the sweep's first
    line has read them: the ETA counts the steps made from the checkpoint on."""
    from ddn.sweep import state

    metrics = tmp_path / "run" / "metrics.jsonl"
    metrics.parent.mkdir()
    clock = iter([10.0, 50.0, 100.0])
    monkeypatch.setattr(state.time, "monotonic", lambda: next(clock))
    progress = state.Progress(1, 0, {"run": 100}, started=0.0)
    metrics.write_text(json.dumps({"t_env": 40}) + "\n")  # logged before the kill
    progress.line(tmp_path, ["run"])  # at 10 s
    metrics.write_text(json.dumps({"t_env": 20}) + "\n")  # cut back to the checkpoint
    progress.line(tmp_path, ["run"])  # at 50 s
    metrics.write_text(json.dumps({"t_env": 60}) + "\n")
    # 40 steps from the checkpoint in 100 s: the 40 left take 100 s more.
    assert progress.line(tmp_path, ["run"]).endswith("60% of steps | elapsed 1:40 | ETA 1:40")


def test_the_eta_counts_only_the_runs_left_to_run(tmp_path):
    """A resumed sweep's finished (skipped) runs are not work left: the fraction and the
    ETA are over the runs it runs, so half of the runs left done reads 50%, not 25%."""
    from ddn.sweep.state import Progress

    def run_at(name: str, t_env: int, finished: bool) -> None:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "metrics.jsonl").write_text(json.dumps({"t_env": t_env}) + "\n")
        if finished:
            (folder / "summary.json").write_text(json.dumps({"t_env": t_env, "finished": True}))

    run_at("old_a", 100, True)
    run_at("old_b", 100, True)
    run_at("new_a", 100, True)
    run_at("new_b", 0, False)
    progress = Progress(4, 2, {n: 100 for n in ("old_a", "old_b", "new_a", "new_b")})
    assert progress.steps_fraction(tmp_path, ["new_a", "new_b"]) == 0.5
    assert progress.steps_fraction(tmp_path, ["old_a", "old_b", "new_a", "new_b"]) == 0.75
    assert "50% of steps" in progress.line(tmp_path, ["new_a", "new_b"])
