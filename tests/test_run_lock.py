"""One process per run folder (ddn/run_lock.py): a second trainer is refused, the lock
dies with its process, and a process may re-enter its own lock."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ddn.cli import main
from ddn.config import resolve
from ddn.experiment import Experiment
from ddn.run_lock import RunInUseError, holder, lock_path, run_lock

MATRIX = ["t_max=64", "batch_size_run=16", "batch_size=16", "test_nepisode=4",
          "test_interval=64", "log_interval=64", "save_model_interval=64", "device=cpu",
          "rnn_hidden_dim=8"]  # fmt: skip
# Another process's lock as ddn takes it (flock on the lock file, its pid inside), in a
# plain interpreter: importing ddn would take seconds.
HOLD = (
    "import fcntl, os, sys, time\n"
    "fh = open(sys.argv[1], 'a+')\n"
    "fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
    "fh.truncate(0); fh.write(f'{os.getpid()}\\n'); fh.flush()\n"
    "print('held', flush=True)\n"
    "time.sleep(600)\n"
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def held(tmp_path) -> Iterator[tuple[Path, subprocess.Popen]]:
    """A run folder whose lock another process holds (killed at the end, by SIGKILL)."""
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock_path(run))], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield run, proc
    finally:
        proc.kill()
        proc.wait()


def test_a_second_trainer_is_refused_and_the_lock_dies_with_its_process(held):
    run, proc = held
    assert holder(run) == proc.pid
    exp = Experiment(resolve("matrix", "vdn", overrides=MATRIX), run, progress=False)
    with pytest.raises(RunInUseError, match=rf"in use by another ddn process \(pid {proc.pid}\)"):
        exp.run()
    assert not run.exists()  # nothing of the refused run was written
    proc.kill()  # SIGKILL: no cleanup ran, the kernel still drops the lock
    proc.wait()
    assert holder(run) is None
    assert exp.run()["finished"]
    assert lock_path(run).is_file() and not (run / lock_path(run).name).exists()


def test_train_on_a_folder_in_use_is_one_error(held, capsys):
    run, proc = held
    sets = [x for item in MATRIX for x in ("--set", item)]
    assert main(["train", "--env", "matrix", "--algo", "vdn", "--out", str(run), *sets]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ddn: error: run folder") and f"pid {proc.pid}" in err[-1]


def test_a_process_reenters_its_own_lock(tmp_path):
    run = tmp_path / "run"
    with run_lock(run), run_lock(run):
        assert holder(run) is None  # this process's own lock is no other trainer
        assert lock_path(run).read_text().strip().isdigit()
    # Released: another process can take it now.
    take = "import fcntl, sys\nfcntl.flock(open(sys.argv[1]), fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
    subprocess.run([sys.executable, "-c", take, str(lock_path(run))], check=True)
    with run_lock(run):  # held by this process: another one cannot take it
        failed = subprocess.run([sys.executable, "-c", take, str(lock_path(run))])
        assert failed.returncode != 0
