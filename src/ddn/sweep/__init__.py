"""``ddn sweep``: a grid of algorithms x environments/maps x variants x seeds.

A sweep file (YAML, :mod:`ddn.sweep.spec`) expands into runs with deterministic folder
names under one output folder, so that running the same sweep again finds its own
results (:mod:`ddn.sweep.state`):

- a run whose ``summary.json`` says finished is skipped;
- a run with checkpoints is resumed from the latest (``Experiment.resume``);
- a run folder without a checkpoint is cleared and started again;
- a run that fails is retried once; failures are reported at the end (exit status 1).

Every run executes in its own Python process (:mod:`ddn.sweep.worker`), started by one
of three schedulers under one shared loop (:mod:`ddn.sweep.scheduler`): the local pool
(:mod:`ddn.sweep.local`, ``--workers`` at once), Ray tasks (:mod:`ddn.sweep.ray_tasks`,
``--ray``) or Slurm jobs through submitit (:mod:`ddn.sweep.slurm`, ``--slurm``).
:mod:`ddn.sweep.cli` is the ``ddn sweep`` command.
"""

from ddn.sweep.cli import main
from ddn.sweep.scheduler import default_workers, run_sweep
from ddn.sweep.spec import RunSpec, Sweep, find_sweep_file, load_sweep, packaged_sweeps
from ddn.sweep.state import Outcome, check_existing, run_state, summarize
from ddn.sweep.worker import execute_run

__all__ = [
    "Outcome",
    "RunSpec",
    "Sweep",
    "check_existing",
    "default_workers",
    "execute_run",
    "find_sweep_file",
    "load_sweep",
    "main",
    "packaged_sweeps",
    "run_state",
    "run_sweep",
    "summarize",
]
