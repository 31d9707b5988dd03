"""``ddn sweep``: the command's body (its flags are declared in :mod:`ddn.cli`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ddn.config import ConfigError
from ddn.run_lock import holder
from ddn.sweep.scheduler import run_sweep
from ddn.sweep.spec import load_sweep, packaged_sweeps, select_runs, with_threads
from ddn.sweep.state import run_state, summarize

# The sweep's exit status when it or a run was stopped: 128 + SIGINT, as a shell reports
# a Ctrl-C'd command.
EXIT_STOPPED = 130


def main(args: argparse.Namespace) -> int:
    """``ddn sweep``; returns the exit status (1 when a run failed, 130 when stopped)."""
    if args.list:
        print("\n".join(packaged_sweeps()))
        return 0
    if not args.file:
        raise ConfigError("sweep needs a FILE.yaml or a packaged name (see ddn sweep --list)")
    if args.workers is not None and args.workers < 1:
        raise ConfigError("--workers must be >= 1")
    sweep = load_sweep(args.file)
    if args.runs:
        sweep = select_runs(sweep, args.runs)
    if args.threads is not None:
        sweep = with_threads(sweep, args.threads)
    out = args.out or Path("sweeps") / sweep.name
    if args.dry_run:
        for spec in sweep.runs:
            state, latest = run_state(out / spec.name)
            extra = f" from t_env={latest}" if latest is not None else ""
            pid = holder(out / spec.name)
            if pid is not None:
                extra += f", in use by pid {pid}"
            print(f"{spec.name:<60} {state}{extra}  {' '.join(spec.overrides)}")
        return 0
    slurm = None
    if getattr(args, "slurm", False):
        from ddn.sweep.slurm import check_slurm, options_from_args

        slurm = options_from_args(args)
        check_slurm(slurm)  # a missing extra or no Slurm fails before anything starts
    elif args.ray is not None:
        from ddn.sweep.ray_tasks import import_ray

        import_ray()  # a missing extra fails before anything starts
    try:
        outcomes = run_sweep(sweep, out, args.workers, args.ray, slurm=slurm)
    except KeyboardInterrupt:
        runs = f" --runs {' '.join(repr(r) for r in args.runs)}" if args.runs else ""
        print(
            f"[sweep] stopped; run the same command again to resume: ddn sweep {args.file} "
            f"--out {out}{runs}",
            file=sys.stderr,
        )
        return EXIT_STOPPED
    print(summarize(outcomes))
    print(f"Results: {out}  (ddn plot {out}; ddn report {out})")
    if any(o.status == "failed" for o in outcomes):
        return 1
    if any(o.status == "interrupted" for o in outcomes):
        return EXIT_STOPPED
    return 0
