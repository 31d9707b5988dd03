"""``ddn sweep --slurm``: each run a submitit job, through submitit's local executor (no
Slurm here): the same run folders, skip, resume and retry rules as the local pool, and
a time-limit warning that checkpoints the run and requeues it."""

from __future__ import annotations

import json
import pickle
import shutil
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from ddn.checkpoint import list_checkpoints
from ddn.cli import main
from ddn.config import ConfigError
from ddn.sweep import load_sweep, run_sweep

submitit = pytest.importorskip("submitit")

from ddn.sweep.slurm import SlurmOptions, SlurmRun, parse_time  # noqa: E402

TINY = """
algos: [vdn]
envs: [matrix]
seeds: [0, 1]
t_max: 1024
overrides: [test_interval=256, log_interval=256, save_model_interval=256]
threads: 1
device: cpu
"""
NAMES = {"matrix-default-vdn-0", "matrix-default-vdn-1"}
LOCAL = SlurmOptions(time_min=10, cluster="local")


def _status(out: Path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads((out / "sweep_status.json").read_text())["runs"]}


def _summaries(out: Path) -> dict[str, dict]:
    return {n: json.loads((out / n / "summary.json").read_text()) for n in NAMES}


@pytest.fixture(scope="module")
def slurm_sweep(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("slurm")
    (tmp / "tiny.yaml").write_text(TINY)
    out = tmp / "out"
    outcomes = run_sweep(load_sweep(tmp / "tiny.yaml"), out, slurm=LOCAL)
    assert {o.status for o in outcomes} == {"finished"}
    return tmp, out


@pytest.mark.slow
def test_slurm_jobs_give_the_local_pools_run_folders(slurm_sweep):
    tmp, out = slurm_sweep
    assert {d.name for d in out.iterdir() if d.is_dir()} == NAMES | {"logs", "slurm"}
    for name in NAMES:
        assert {"config.yaml", "metrics.jsonl", "summary.json", "checkpoints"} <= {
            p.name for p in (out / name).iterdir()
        }
        assert (out / "logs" / f"{name}.log").is_file()
    # The same runs in the local pool: same numbers (CPU, same seeds).
    local = tmp / "local"
    assert main(["sweep", str(tmp / "tiny.yaml"), "--out", str(local)]) == 0
    assert _summaries(out) == _summaries(local)
    # submitit kept one folder per job (scripts and the job's own output).
    assert len({p.name for p in (out / "slurm").iterdir() if p.is_dir()} - {"%j"}) == 2


@pytest.mark.slow
def test_slurm_rerun_skips_finished_and_resumes_unfinished(slurm_sweep, tmp_path):
    _, done = slurm_sweep
    out = tmp_path / "copy"
    shutil.copytree(done, out)
    before = _summaries(out)
    victim = out / "matrix-default-vdn-1"
    (victim / "summary.json").unlink()
    for t in list_checkpoints(victim):
        if t > 512:
            shutil.rmtree(victim / "checkpoints" / str(t))
    run_sweep(load_sweep(out / "sweep.yaml"), out, slurm=LOCAL)
    status = _status(out)
    assert status["matrix-default-vdn-0"]["status"] == "skipped"
    assert status[victim.name]["status"] == "finished"
    assert status[victim.name]["resumed_from"] == 512
    assert _summaries(out) == before


@pytest.mark.slow
def test_slurm_failed_run_is_retried_once(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "algos: [vdn]\nenvs: [matrix]\nseeds: [0]\nt_max: 64\n"
        'overrides: ["env.payoff=[1, 2]", device=cpu]\n'
    )
    out = tmp_path / "out"
    (outcome,) = run_sweep(load_sweep(tmp_path / "bad.yaml"), out, slurm=LOCAL)
    assert outcome.status == "failed" and outcome.attempts == 2
    assert "payoff" in outcome.error


@pytest.mark.slow
def test_time_limit_warning_checkpoints_and_resubmits_the_run(tmp_path):
    """What submitit calls in a job on Slurm's time-limit or preemption warning:
    ``checkpoint()`` stops the run with a checkpoint (exit status 3) and hands back the
    same run to requeue, which resumes it and runs it to the end. (Called here in a
    thread as submitit's signal handler would; Slurm's requeue itself is not run.)"""
    text = TINY.replace("seeds: [0, 1]", "seeds: [0]").replace("t_max: 1024", "t_max: 16384")
    (tmp_path / "long.yaml").write_text(text)
    (spec,) = load_sweep(tmp_path / "long.yaml").runs
    run_dir, log = tmp_path / spec.name, tmp_path / "logs" / f"{spec.name}.log"
    job = SlurmRun(asdict(spec), str(run_dir), str(log))
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(job()))
    thread.start()
    deadline = time.monotonic() + 120
    while not list_checkpoints(run_dir) and time.monotonic() < deadline:
        time.sleep(0.2)  # the run is in its loop once it has a checkpoint
    resubmit = job.checkpoint()
    thread.join(120)
    assert codes == [3]  # stopped with a checkpoint, not finished
    stopped_at = list_checkpoints(run_dir)[-1]
    assert 0 < stopped_at < 16384
    assert isinstance(resubmit, submitit.helpers.DelayedSubmission)
    again = pickle.loads(pickle.dumps(resubmit.function))  # submitit pickles it to requeue
    assert again() == 0
    assert f"resuming {run_dir} from t_env={stopped_at}" in log.read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["finished"] and summary["t_env"] == 16384


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("90", 90), ("1:30", 2), ("12:00:00", 720), ("2-00:00:00", 2880), ("1-2", 1560),
     ("0-0:30", 30)],
)  # fmt: skip
def test_slurm_time_formats(text, minutes):
    assert parse_time(text) == minutes


def test_slurm_flags_are_checked_in_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "tiny.yaml").write_text(TINY)
    sweep = ["sweep", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "o")]
    assert main([*sweep, "--slurm"]) == 2
    assert "--slurm needs --time" in capsys.readouterr().err
    assert main([*sweep, "--slurm", "--time", "1h"]) == 2
    assert "Slurm's formats" in capsys.readouterr().err
    assert main([*sweep, "--slurm", "--time", "60", "--ray"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no sbatch on this machine
    assert main([*sweep, "--slurm", "--time", "60"]) == 2
    err = capsys.readouterr().err
    assert "sbatch" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()  # nothing started
    with pytest.raises(ConfigError, match="longer than 0"):
        parse_time("0")
