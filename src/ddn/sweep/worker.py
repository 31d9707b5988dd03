"""One run in its own process: ``python -m ddn.sweep --worker JSON``.

Every scheduler (local pool, Ray task, Slurm job) starts this same process, so a crash,
a leak or a CUDA error in one run cannot take the others down, and each run's output
goes to ``<out>/logs/<run>.log``, one ``=== <time> <run>`` header per attempt. Torch is
pinned to the run's ``threads`` (OMP/MKL variables here, the config key in the run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ddn.run_lock import run_lock
from ddn.sweep.spec import RunSpec
from ddn.sweep.state import run_state

# The run process's exit status: finished; failed; stopped by a signal with a checkpoint.
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 3
# Each attempt's first line in the run's log; an error line is never one of these.
LOG_HEADER = "==="
# An error quoted in the sweep's status and summary is cut to this many characters.
ERROR_CHARS = 300
# Linux prctl option: a signal for this process when its parent dies.
_PR_SET_PDEATHSIG = 1


def run_one(spec: RunSpec, run_dir: Path) -> int:
    """Train (or resume) one run in this process; the exit status."""
    from ddn.experiment import Experiment

    cfg = spec.config()
    # Held from before the folder is read or cleared: another process may train into it.
    with run_lock(run_dir):
        state, latest = run_state(run_dir)
        if state == "finished":
            return EXIT_OK
        if state == "resume":
            print(f"resuming {run_dir} from t_env={latest}", flush=True)
            # The sweep's execution keys apply to the resumed run (config.EXECUTION_KEYS).
            exp = Experiment.resume(
                run_dir, progress=False, threads=cfg.threads, save_buffer=cfg.save_buffer
            )
        else:
            if run_dir.exists():  # leftovers of a run killed before its first checkpoint
                shutil.rmtree(run_dir)
            print(f"starting {run_dir}", flush=True)
            exp = Experiment(cfg, run_dir, progress=False)
        summary = exp.run()
    print(json.dumps(summary), flush=True)
    return EXIT_OK if summary.get("finished") else EXIT_INTERRUPTED


def _die_with_parent() -> None:
    """Linux: the run process is killed when the sweep process dies, even by SIGKILL, so a
    killed sweep leaves no orphan writing into a folder that the next sweep resumes."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def start(spec: RunSpec, run_dir: Path, log: Path) -> subprocess.Popen:
    """Start the run's process, its output appended to ``log`` after a header line. It has
    its own session: a terminal's Ctrl-C reaches the sweep, which passes it on."""
    log.parent.mkdir(parents=True, exist_ok=True)
    payload = {"spec": asdict(spec), "run_dir": str(run_dir)}
    env = {**os.environ, "OMP_NUM_THREADS": str(spec.threads), "MKL_NUM_THREADS": str(spec.threads)}
    with log.open("a") as fh:
        fh.write(f"\n{LOG_HEADER} {time.strftime('%Y-%m-%d %H:%M:%S')} {spec.name}\n")
        fh.flush()
        return subprocess.Popen(
            [sys.executable, "-m", "ddn.sweep", "--worker", json.dumps(payload)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )


def execute_run(spec_dict: dict[str, Any], run_dir: str, log: str) -> int:
    """Run one run to completion in its own process and return its exit status (what a
    Ray task executes; SIGINT/cancel is passed on so that the run checkpoints)."""
    proc = start(RunSpec(**spec_dict), Path(run_dir), Path(log))
    try:
        return proc.wait()
    except (KeyboardInterrupt, SystemExit):
        proc.send_signal(signal.SIGINT)
        return proc.wait()


def last_error(log: Path) -> str:
    """The last line of the run's log that is neither a header nor a traceback's body:
    the worker ends a failure with ``error: <type>: <message>``."""
    with contextlib.suppress(OSError):
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
        for line in reversed(lines):
            if not line.startswith((LOG_HEADER, "  ", "Traceback")):
                return line.strip()[:ERROR_CHARS]
    return ""


def main(argv: list[str]) -> int:
    """``python -m ddn.sweep --worker JSON``: the run's process."""
    parser = argparse.ArgumentParser(prog="python -m ddn.sweep")
    parser.add_argument("--worker", required=True, help="JSON: spec, run_dir")
    args = parser.parse_args(argv)
    try:
        payload = json.loads(args.worker)
        return run_one(RunSpec(**payload["spec"]), Path(payload["run_dir"]))
    except KeyboardInterrupt:
        print("interrupted before a checkpoint", flush=True)
        return EXIT_INTERRUPTED
    except Exception as exc:
        traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc}", flush=True)
        return EXIT_FAILED
