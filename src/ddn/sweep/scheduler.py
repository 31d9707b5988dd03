"""Running a sweep: which runs are left, and the one loop every scheduler shares.

A scheduler (:class:`Backend`) only knows how to start a run's process somewhere (a local
subprocess, a Ray task, a Slurm job), to tell which ones ended and how, and to stop them;
queueing, the cap on runs at once, retries, outcomes and progress are :func:`drive`'s,
the same for all three, so skip, resume and retry rules cannot drift apart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ddn.run_lock import holder
from ddn.sweep.spec import RunSpec, Sweep
from ddn.sweep.state import IN_USE, Outcome, Progress, check_existing, run_state, write_status
from ddn.sweep.worker import EXIT_INTERRUPTED, EXIT_OK, last_error

if TYPE_CHECKING:
    from ddn.sweep.slurm import SlurmOptions

# A run that fails is started again once (a crashed node, a full disk freed meanwhile);
# a second failure is reported.
MAX_ATTEMPTS = 2
# Where the sweep keeps a copy of the file that produced its results.
SWEEP_COPY = "sweep.yaml"


class Backend(Protocol):
    """Where runs execute. ``submit`` returns a handle; ``poll`` waits a little and
    returns ``(name, exit status, error)`` for the runs that ended (``error`` "" means:
    read it from the run's log); ``stop`` asks the running ones to stop and returns the
    exit statuses it saw."""

    limit: int  # runs at once
    where: str  # for the first line: "2 local workers", "on Ray (local)", ...
    stopping: str  # what happens to the runs on Ctrl-C

    def session(self) -> contextlib.AbstractContextManager[None]: ...

    def submit(self, spec: RunSpec, run_dir: Path, log: Path) -> Any: ...

    def poll(self, running: dict[str, Any]) -> list[tuple[str, int, str]]: ...

    def stop(self, running: dict[str, Any]) -> dict[str, int]: ...


def default_workers(threads: int) -> int:
    """Local runs at once: the CPUs this process may use, ``threads`` each."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, threads))


def _finish(outcome: Outcome, code: int, started: float, progress: Progress, error: str) -> bool:
    """Record one attempt's exit status; True when it failed (another attempt may follow)."""
    outcome.seconds += time.monotonic() - started
    progress.running.discard(outcome.name)
    if code == EXIT_OK:
        outcome.status = "finished"
        progress.done += 1
        return False
    if code == EXIT_INTERRUPTED:
        outcome.status = "interrupted"
        return False
    outcome.error = error or last_error(Path(outcome.log)) or f"exit status {code}"
    return True


def drive(
    backend: Backend,
    todo: list[RunSpec],
    out: Path,
    outcomes: dict[str, Outcome],
    progress: Progress,
    max_attempts: int = MAX_ATTEMPTS,
) -> None:
    """Run ``todo`` on ``backend``, at most ``backend.limit`` at once, a failed run
    queued again first until it has had ``max_attempts``. Ctrl-C (and SIGTERM where the
    backend turns it into one) stops the runs, marks them interrupted and re-raises."""
    names = [s.name for s in todo]
    queue = list(todo)
    running: dict[str, tuple[Any, float, RunSpec]] = {}
    with backend.session():
        try:
            while queue or running:
                while queue and len(running) < backend.limit:
                    spec = queue.pop(0)
                    outcome = outcomes[spec.name]
                    outcome.attempts += 1
                    handle = backend.submit(spec, out / spec.name, Path(outcome.log))
                    running[spec.name] = (handle, time.monotonic(), spec)
                    progress.running.add(spec.name)
                    progress.show(out, names, force=True)
                for name, code, error in backend.poll({n: r[0] for n, r in running.items()}):
                    _, started, spec = running.pop(name)
                    outcome = outcomes[name]
                    if _finish(outcome, code, started, progress, error):
                        if outcome.attempts < max_attempts:
                            retry = f"[sweep] {name} failed ({outcome.error}); retrying"
                            print(retry, file=sys.stderr, flush=True)
                            queue.insert(0, spec)
                        else:
                            outcome.status = "failed"
                            progress.failed += 1
                    progress.show(out, names, force=True)
                progress.show(out, names)
        except KeyboardInterrupt:
            print(f"[sweep] stopping: {backend.stopping}", file=sys.stderr, flush=True)
            codes = backend.stop({n: r[0] for n, r in running.items()})
            for name, (_, started, _) in running.items():
                if name in codes:
                    _finish(outcomes[name], codes[name], started, progress, "")
                if outcomes[name].status == "pending":
                    outcomes[name].status = "interrupted"
            raise


def run_sweep(
    sweep: Sweep,
    out: Path,
    workers: int | None = None,
    ray_address: str | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    slurm: SlurmOptions | None = None,
) -> list[Outcome]:
    """Run every unfinished run of ``sweep`` under ``out``; returns one Outcome per run.

    Locally (``workers`` processes at once, default CPUs / threads), on Ray
    (``ray_address``: ``"local"`` or a cluster's), or as Slurm jobs (``slurm``)."""
    out.mkdir(parents=True, exist_ok=True)
    for spec in sweep.runs:
        check_existing(spec, out / spec.name)
    copy = out / SWEEP_COPY
    if not (copy.exists() and copy.samefile(sweep.source)):
        shutil.copyfile(sweep.source, copy)  # what produced these results
    outcomes: dict[str, Outcome] = {}
    todo: list[RunSpec] = []
    for spec in sweep.runs:
        state, latest = run_state(out / spec.name)
        log = str(out / "logs" / f"{spec.name}.log")
        pid = holder(out / spec.name)
        if state == "finished":
            outcomes[spec.name] = Outcome(spec.name, "skipped", log=log)
        elif pid is not None:  # another sweep or `ddn train` is training it: left to it
            outcomes[spec.name] = Outcome(spec.name, IN_USE, log=log, error=f"pid {pid}")
        else:
            outcomes[spec.name] = Outcome(spec.name, "pending", resumed_from=latest, log=log)
            todo.append(spec)
    t_max = {s.name: s.config().t_max for s in sweep.runs}
    skipped = sum(o.status == "skipped" for o in outcomes.values())
    progress = Progress(len(todo) + skipped, skipped, t_max)
    limit = workers or len(todo)  # Ray's resources and Slurm decide; --workers caps them
    backend: Backend
    if slurm is not None:
        from ddn.sweep.slurm import SlurmJobs

        backend = SlurmJobs(out, slurm, limit, sweep.threads, sweep.gpus)
    elif ray_address is not None:
        from ddn.sweep.ray_tasks import RayTasks

        backend = RayTasks(ray_address, limit)
    else:
        from ddn.sweep.local import LocalPool

        backend = LocalPool(workers or default_workers(sweep.threads))
    print(
        f"[sweep] {sweep.name}: {len(sweep.runs)} runs, {len(todo)} to run "
        f"({sum(o.resumed_from is not None for o in outcomes.values())} resumed), "
        f"{backend.where}, {sweep.threads} thread(s) per run -> {out}",
        file=sys.stderr,
        flush=True,
    )
    try:
        if todo:
            drive(backend, todo, out, outcomes, progress, max_attempts)
    finally:
        write_status(out, sweep, [outcomes[s.name] for s in sweep.runs])
    progress.show(out, [s.name for s in sweep.runs], force=True)
    return [outcomes[s.name] for s in sweep.runs]
