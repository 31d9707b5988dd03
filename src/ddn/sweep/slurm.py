"""``ddn sweep FILE --slurm``: every run of a sweep as its own Slurm job, via submitit.

The jobs run exactly what the local pool and Ray run (:mod:`ddn.sweep.worker`: one
``python -m ddn.sweep --worker`` process per run, its output in ``<out>/logs/<run>.log``)
under the same loop (:func:`ddn.sweep.scheduler.drive`), so run folders, skip and resume
rules are the same: a finished run is skipped, one with checkpoints resumes from the
latest, a failed one is retried once. This process stays in the foreground until the
jobs end (run it in ``tmux``/``screen`` on a login node, or as a small job of its own);
running the same command again after it stopped picks up where the runs are.

A job warned of its time limit or of preemption (Slurm's USR2, ``signal_delay_s``
before the end, which submitit sets up) stops its run with a checkpoint and is
requeued; the requeued job resumes the run.

submitit keeps its job scripts and the jobs' own output under ``<out>/slurm/``.
"""

from __future__ import annotations

import contextlib
import math
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ddn.config import ConfigError
from ddn.sweep.spec import RunSpec
from ddn.sweep.worker import ERROR_CHARS, EXIT_FAILED, start

try:  # optional: only a --slurm sweep needs submitit
    from submitit.helpers import Checkpointable, DelayedSubmission
except ImportError:  # pragma: no cover - the message comes from import_submitit()
    Checkpointable = object  # type: ignore[assignment,misc]

# Slurm warns a job (USR2) this many seconds before its time limit or a preemption...
SIGNAL_DELAY_S = 120
# ...of which the run gets this many to write its checkpoint; the rest is submitit's, to
# requeue the job.
CHECKPOINT_GRACE_S = 90.0
# How often the sweep asks submitit whether a job ended (each ask may read job state
# files on the shared file system).
POLL_S = 1.0


@dataclass(frozen=True)
class SlurmOptions:
    """What each run's job asks Slurm for (``--partition --time --cpus --gpus``)."""

    time_min: int
    partition: str | None = None
    cpus: int | None = None  # default: the sweep's threads per run
    gpus: int | None = None  # default: the sweep's gpus per run, rounded up
    cluster: str = "slurm"  # submitit's executor; tests use "local"


def import_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise ConfigError(
            "--slurm needs submitit, an optional extra: pip install 'ddn[slurm]' "
            "(or pip install submitit)"
        ) from None
    return submitit


_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_time(text: str) -> int:
    """Slurm's ``--time`` formats (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``,
    ``D-HH:MM:SS``) -> whole minutes, rounded up."""
    m = _TIME.match(str(text).strip())
    if not m:
        raise ConfigError(
            f"--time {text!r}: use Slurm's formats, e.g. 90 (minutes), 12:00:00, 2-00:00:00"
        )
    days, a, b, c = m.groups()
    nums = [int(x) for x in (a, b, c) if x is not None]
    if days is not None:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = [*nums, 0, 0][:3]
        total = int(days) * 86400 + hours * 3600 + minutes * 60 + seconds
    elif len(nums) == 1:  # MM
        total = nums[0] * 60
    elif len(nums) == 2:  # MM:SS
        total = nums[0] * 60 + nums[1]
    else:  # HH:MM:SS
        total = nums[0] * 3600 + nums[1] * 60 + nums[2]
    if total <= 0:
        raise ConfigError(f"--time {text!r} must be longer than 0")
    return math.ceil(total / 60)


def options_from_args(args: Any) -> SlurmOptions:
    """``ddn sweep --slurm`` flags -> options; one ConfigError for a mistake."""
    if args.ray is not None:
        raise ConfigError("--slurm and --ray exclude each other: pick one")
    if args.time is None:
        raise ConfigError(
            "--slurm needs --time, the longest a run's job may take (e.g. --time 12:00:00); "
            "a run stopped at the limit resumes from its checkpoint in a requeued job"
        )
    for flag in ("cpus", "gpus"):
        value = getattr(args, flag)
        if value is not None and value < (1 if flag == "cpus" else 0):
            raise ConfigError(f"--{flag} must be >= {1 if flag == 'cpus' else 0}, got {value}")
    return SlurmOptions(parse_time(args.time), args.partition, args.cpus, args.gpus)


def check_slurm(options: SlurmOptions) -> None:
    """Fail before anything is submitted: submitit missing, or no Slurm here."""
    import_submitit()
    if options.cluster == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError(
            "--slurm needs Slurm's sbatch on PATH: run ddn sweep on the cluster's login node"
        )


class SlurmRun(Checkpointable):
    """One run as a submitit job: the run's process in the job, and on the
    time-limit or preemption warning a checkpoint, then a requeue of the same run."""

    def __init__(self, spec: dict[str, Any], run_dir: str, log: str):
        self.spec, self.run_dir, self.log = spec, run_dir, log
        self._proc: subprocess.Popen | None = None

    def __call__(self) -> int:
        self._proc = start(RunSpec(**self.spec), Path(self.run_dir), Path(self.log))
        return self._proc.wait()

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Called by submitit in the job on USR2: SIGINT makes the run finish its
        iteration and write a checkpoint; the requeued job then resumes it."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(CHECKPOINT_GRACE_S)
        return DelayedSubmission(SlurmRun(self.spec, self.run_dir, self.log))

    def __getstate__(self) -> dict[str, Any]:  # the process handle stays in its job
        return {"spec": self.spec, "run_dir": self.run_dir, "log": self.log}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"], state["run_dir"], state["log"])


class SlurmJobs:
    """Runs as Slurm jobs through submitit (its job scripts and output in
    ``<out>/slurm/``); ``limit`` jobs queued or running at once."""

    stopping = "cancelling the runs' jobs"

    def __init__(self, out: Path, options: SlurmOptions, limit: int, threads: int, gpus: float):
        self.out, self.options, self.limit = out, options, limit
        self.threads, self.gpus = threads, gpus
        self.where = f"as Slurm jobs ({options.cluster})"
        self._executor: Any = None

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """One submitit executor with what every job asks Slurm for."""
        submitit = import_submitit()
        executor = submitit.AutoExecutor(
            folder=self.out.resolve() / "slurm" / "%j", cluster=self.options.cluster
        )
        params: dict[str, Any] = {
            "timeout_min": self.options.time_min,
            "cpus_per_task": self.options.cpus or self.threads,
        }
        if self.options.cluster == "slurm":
            params["slurm_signal_delay_s"] = SIGNAL_DELAY_S
        n_gpus = self.options.gpus if self.options.gpus is not None else math.ceil(self.gpus)
        if n_gpus:
            params["gpus_per_node"] = n_gpus
        if self.options.partition:
            params["slurm_partition"] = self.options.partition
        executor.update_parameters(**params)
        self._executor = executor
        yield

    def submit(self, spec: RunSpec, run_dir: Path, log: Path) -> Any:
        self._executor.update_parameters(name=f"ddn-{spec.name}")
        job = self._executor.submit(
            SlurmRun(asdict(spec), str(run_dir.resolve()), str(log.resolve()))
        )
        print(f"[sweep] {spec.name}: job {job.job_id}", file=sys.stderr, flush=True)
        return job

    def poll(self, running: dict[str, Any]) -> list[tuple[str, int, str]]:
        done = []
        for name, job in running.items():
            if not job.done():
                continue
            try:
                done.append((name, int(job.result()), ""))
            except Exception as exc:  # the job itself failed (node lost, cancelled, ...)
                error = f"Slurm job {job.job_id}: {exc}".splitlines()[0][:ERROR_CHARS]
                done.append((name, EXIT_FAILED, error))
        if not done:
            time.sleep(POLL_S)
        return done

    def stop(self, running: dict[str, Any]) -> dict[str, int]:
        """Cancel the runs' jobs; running the sweep again resumes each run from its
        latest checkpoint."""
        for job in running.values():
            with contextlib.suppress(Exception):
                job.cancel(check=False)
        return {}
