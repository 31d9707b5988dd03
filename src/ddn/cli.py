"""``ddn``: one entry point with subcommands (train, evaluate, export, list, render, demo,
sweep, plot, report).

User mistakes (unknown env/algorithm, bad config, bad checkpoint, unreadable logs, a
path that cannot be written) print one line ``ddn: error: ...`` and exit with status 2;
a training run that fails (divergence, a failed write, a broken environment) prints one
line and exits with 1; a run stopped by SIGINT/SIGTERM exits with 130/143. No traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ddn.checkpoint import CheckpointError
from ddn.config import ConfigError
from ddn.envs.errors import EnvError
from ddn.run_folder import MetricsError

if TYPE_CHECKING:  # the analysis stack (matplotlib, numpy) loads only for its commands
    from ddn.analysis.curves import RunRecord


def _threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads", type=int, metavar="N",
        help="torch CPU threads (default: OMP_NUM_THREADS if set, else 1; docs/training.md)",
    )  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ddn",
        description="Double Distillation Network and value-decomposition MARL.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an algorithm on an environment (or --resume a run)")
    t.add_argument("--env", help="environment name (see `ddn list`)")
    t.add_argument("--map", dest="map_name", help="map (smax/smac environments)")
    t.add_argument("--algo", help="algorithm name (see `ddn list`)")
    t.add_argument("--seed", type=int)
    t.add_argument("--t-max", type=int, dest="t_max", help="environment steps to train for")
    t.add_argument(
        "--out", type=Path, help="run folder (default runs/<env>-<map>-<algo>-<seed>-<time>)"
    )
    t.add_argument("--device", choices=["auto", "cpu", "cuda"])
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set lr=0.001 --set env.n_prey=4",
    )
    t.add_argument(
        "--resume", type=Path, metavar="DIR", help="continue a run from its last checkpoint"
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --out (its checkpoints and logs are deleted)",
    )
    t.add_argument(
        "--save-buffer",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="checkpoints also hold the replay buffer, so a resume is exact (as --set "
        "save_buffer=true; with --resume it applies from the next checkpoint on)",
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    _threads_arg(t)

    e = sub.add_parser("evaluate", help="greedy test episodes of a saved run")
    e.add_argument("--run", type=Path, required=True)
    e.add_argument("--episodes", type=int, default=32)
    e.add_argument("--checkpoint", type=int, help="t_env of the checkpoint (default: latest)")
    e.add_argument(
        "--policy",
        choices=["teacher", "student"],
        default="teacher",
        help="DDN runs: the GGN (teacher, needs the state) or the LPN (student)",
    )
    e.add_argument(
        "--save-replay",
        action="store_true",
        help="also write RUN/replays/: a StarCraft II replay (smac), else a GIF (smax)",
    )
    _threads_arg(e)

    x = sub.add_parser("export", help="write a DDN run's LPN (student) alone, for deployment")
    x.add_argument("--run", type=Path, required=True)
    x.add_argument("--out", type=Path, required=True)
    x.add_argument("--checkpoint", type=int, help="t_env of the checkpoint (default: latest)")

    sub.add_parser("list", help="environments, maps, algorithms, presets, config keys")

    r = sub.add_parser("render", help="render a Predator-Prey episode or a SMAX battle as a GIF")
    r.add_argument("--out", type=Path, default=Path("episode.gif"))
    r.add_argument(
        "--env",
        choices=["predator_prey", "smax"],
        default=None,
        help="default: the run's environment, else predator_prey",
    )
    r.add_argument("--map", dest="map_name", help="SMAX map (default: the run's, else 3m)")
    r.add_argument(
        "--run", type=Path, help="act with this run's latest checkpoint (default: random)"
    )
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--policy", choices=["teacher", "student"], default="teacher")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="env.KEY=VALUE")
    _threads_arg(r)

    d = sub.add_parser("demo", help="train on a small Predator-Prey, then plot and summarise")
    d.add_argument("--out", type=Path, default=Path("demo"))
    d.add_argument("--t-max", type=int, dest="t_max", default=None)

    pl = sub.add_parser(
        "plot", help="learning curves of many runs: mean and band across seeds, panel per map"
    )
    pl.add_argument("runs", nargs="+", type=Path, help="run folders, or folders holding them")
    pl.add_argument(
        "--metric", help="metrics.jsonl key (default: test/win_rate if logged, else return)"
    )
    pl.add_argument(
        "--kind", choices=["curves", "profile", "aggregate"], default="curves",
        help="curves: learning curves; profile: performance profile of the final scores "
        "with its 95%% CI band; aggregate: median, IQM and mean with 95%% CIs (rliable)",
    )  # fmt: skip
    pl.add_argument("--band", choices=["std", "ci"], default="std", help="std or 95%% CI")
    pl.add_argument(
        "--panels", choices=["map", "base"], default="map",
        help="curves: a panel per map (default), or per map and base method, each base "
        "beside DDN on it (the paper's Figure 5)",
    )  # fmt: skip
    pl.add_argument(
        "--out", type=Path, default=Path("curves.png"), help="writes FILE.png and FILE.svg"
    )
    pl.add_argument("--title")
    _until_option(pl)
    _aggregate_options(pl)

    rp = sub.add_parser("report", help="the paper's tables (Markdown and CSV) from runs")
    rp.add_argument("runs", nargs="+", type=Path, help="run folders, or folders holding them")
    rp.add_argument(
        "--out", type=Path, default=Path("report.md"), help="writes FILE.md and FILE.csv"
    )
    rp.add_argument(
        "--metric", choices=["win_rate", "return_mean"], help="default: win rate where logged"
    )
    rp.add_argument(
        "--last", type=int, default=1, metavar="K",
        help="a run's final value: the mean of its last K tests (default 1: its last test)",
    )  # fmt: skip
    rp.add_argument(
        "--interval", choices=["std", "ci"], default="std",
        help="cells: mean ± the sample std over seeds (default) or ± the 95%% CI of the mean",
    )  # fmt: skip
    rp.add_argument(
        "--outcomes", action="store_true",
        help="also tabulate how each run's test battles ended (won, lost, timed out) over "
        "the same last K tests",
    )  # fmt: skip
    _until_option(rp)
    _aggregate_options(rp)
    rp.add_argument(
        "--marl-eval", type=Path, metavar="FILE", help="also write the runs' per-episode "
        "evaluations as marl-eval's JSON (docs/experiments.md)",
    )  # fmt: skip
    rp.add_argument(
        "--pymarl", type=Path, metavar="DIR",
        help="also write a sacred-style info.json per run (PyMARL's metric names) under DIR",
    )  # fmt: skip

    sw = sub.add_parser(
        "sweep", help="run a grid of algorithms x envs/maps x seeds x variants (local or Ray)"
    )
    sw.add_argument("file", nargs="?", help="sweep YAML, or a packaged name such as paper/table2")
    sw.add_argument("--out", type=Path, help="results folder (default sweeps/<name>)")
    sw.add_argument("--workers", type=int, help="runs at once (default: CPUs / threads per run)")
    sw.add_argument(
        "--threads", type=int, metavar="N",
        help="torch threads per run instead of the sweep file's threads (runs in progress "
        "resume with N), e.g. one run on all cores: --threads 2 on 2 cores",
    )  # fmt: skip
    sw.add_argument(
        "--ray", nargs="?", const="local", metavar="ADDRESS",
        help="run on Ray: a cluster ADDRESS, or none to start a local Ray instance",
    )  # fmt: skip
    sw.add_argument(
        "--slurm", action="store_true",
        help="one Slurm job per run (submitit; pip install 'ddn[slurm]'); needs --time",
    )  # fmt: skip
    sw.add_argument("--partition", help="--slurm: the partition to submit to")
    sw.add_argument("--time", help="--slurm: each job's time limit, e.g. 12:00:00")
    sw.add_argument("--cpus", type=int, help="--slurm: CPUs per job (default: threads)")
    sw.add_argument("--gpus", type=int, help="--slurm: GPUs per job (default: gpus, rounded up)")
    sw.add_argument(
        "--runs", nargs="+", metavar="PATTERN",
        help="only the runs whose names match (shell patterns, e.g. '*-vdn-2'); "
        "several sweeps may share one --out, each with its own runs",
    )  # fmt: skip
    sw.add_argument("--list", action="store_true", help="list the packaged sweep files")
    sw.add_argument("--dry-run", action="store_true", help="print the runs and their state")
    return p


def _aggregate_options(p: argparse.ArgumentParser) -> None:
    """Options of the aggregate statistics (``ddn report``, ``ddn plot --kind ...``)."""
    p.add_argument(
        "--bootstrap-reps", type=int, default=2000, metavar="N",
        help="bootstrap resamples for the 95%% CIs (default 2000)",
    )  # fmt: skip
    p.add_argument("--bootstrap-seed", type=int, default=0, metavar="S", help="default 0")
    p.add_argument(
        "--score-range", action="append", default=[], metavar="TASK=MIN:MAX",
        help="normalise TASK's returns by this min-max (default: the lowest and highest "
        "test episode return of the runs given)",
    )  # fmt: skip


def _options(args: argparse.Namespace, metric: str | None):
    from ddn.analysis.aggregate import Options, parse_ranges

    return Options(metric, args.bootstrap_reps, args.bootstrap_seed, parse_ranges(args.score_range))


def main(argv: list[str] | None = None) -> int:
    from ddn.envs.errors import WorkerError
    from ddn.experiment import Aborted, TrainingError, first_line

    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (TrainingError, EnvError) as exc:  # EnvError: the env's bug, its traceback
        print(f"ddn: error: {exc}", file=sys.stderr)
        return 1
    except WorkerError as exc:  # an environment that cannot be built
        print(f"ddn: error: {first_line(exc)}", file=sys.stderr)
        return 2
    except (ConfigError, CheckpointError, MetricsError) as exc:
        print(f"ddn: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that cannot be written (or read)
        print(f"ddn: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Aborted) else signal.SIGINT
        resume = ""
        if isinstance(exc, Aborted) and exc.run_dir is not None:
            resume = f"; resume from its last checkpoint: ddn train --resume {exc.run_dir}"
        print(f"ddn: aborted ({signal.Signals(signum).name}){resume}", file=sys.stderr)
        return 128 + signum


def _until_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--until", type=int, metavar="STEP",
        help="every run as it stood after STEP environment steps (its tests up to then; "
        "its last one there is its final test): runs of different budgets compared at one",
    )  # fmt: skip


def _find_runs(paths: list[Path], until: int | None = None) -> list[RunRecord]:
    """The run folders under ``paths`` (each up to ``until`` steps), what ``find_runs``
    warns of printed as one line each (a run two campaigns share counts once) rather than
    as a Python warning."""
    import warnings

    from ddn.analysis.curves import find_runs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = find_runs(paths, until)
    for warning in caught:
        print(f"ddn: warning: {warning.message}", file=sys.stderr)
    return runs


def _os_error(exc: OSError) -> str:
    """One line for a failed read or write: the path, the reason, what to do."""
    path = f"{exc.filename}: " if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = "free disk space or write elsewhere"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "choose a writable location"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        fix = "check that folders and files in the path are what the command expects"
    else:
        fix = "check the path"
    return f"{path}{exc.strerror or exc}; {fix}"


def _train(args: argparse.Namespace) -> int:
    from ddn.config import resolve
    from ddn.experiment import Experiment, check_run_dir

    if args.resume is not None:
        given = [
            k
            for k in ("env", "algo", "map_name", "seed", "t_max", "device")
            if getattr(args, k) is not None  # --seed 0 is given too
        ]
        if given or args.overrides or args.out or args.overwrite:
            raise ConfigError(
                "--resume takes the run's own config.yaml; drop "
                + ", ".join(
                    [f"--{k.replace('_name', '').replace('_', '-')}" for k in given]
                    + (["--set"] if args.overrides else [])
                    + (["--out"] if args.out else [])
                    + (["--overwrite"] if args.overwrite else [])
                )
            )
        exp = Experiment.resume(
            args.resume,
            progress=not args.no_progress,
            threads=args.threads,
            save_buffer=args.save_buffer,
        )
        print(f"Resuming {args.resume} from t_env={exp.t_env}")
    else:
        if not args.env or not args.algo:
            raise ConfigError("train needs --env and --algo (or --resume DIR); see `ddn list`")
        overrides = list(args.overrides)
        if args.save_buffer is not None:
            overrides.append(f"save_buffer={str(args.save_buffer).lower()}")
        cfg = resolve(
            args.env, args.algo, args.map_name, overrides,
            seed=args.seed, t_max=args.t_max, device=args.device, threads=args.threads,
        )  # fmt: skip
        if args.out is not None:  # before building environments: fail fast
            check_run_dir(args.out, cfg, args.overwrite)
        exp = Experiment(cfg, args.out, progress=not args.no_progress, overwrite=args.overwrite)
        print(f"Run folder: {exp.run_dir}")
    print(f"Threads: {exp.threads} ({exp.threads_reason})")
    summary = exp.run()
    print(json.dumps(summary, indent=2))
    return 128 + exp.stopped_by if exp.stopped_by is not None else 0


def _evaluate(args: argparse.Namespace) -> int:
    from ddn.evaluate import run_episodes
    from ddn.logging import append_episodes, episode_record
    from ddn.run import load_run

    if args.episodes < 1:
        raise ConfigError("--episodes must be >= 1")
    threads = _apply_threads(args.threads)
    replay: dict = {}
    if args.save_replay:
        from ddn.replay import evaluate_with_replay

        t_env, episodes, replay = evaluate_with_replay(
            args.run, args.checkpoint, args.episodes, args.policy
        )
        if "note" in replay:
            print(f"ddn: {replay['note']}", file=sys.stderr)
    else:
        run = load_run(args.run, args.checkpoint, num_envs=min(args.episodes, 64))
        t_env = run.t_env
        episodes = run_episodes(run.policy(args.policy), run.env, args.episodes)
    metrics = episodes.summary("test")
    # Every episode goes to the run's episodes.jsonl (marl-eval's absolute metric reads it).
    append_episodes(args.run, episode_record(t_env, "evaluate", args.policy, episodes))
    print(
        json.dumps(
            {
                "run": str(args.run),
                "checkpoint": t_env,
                "policy": args.policy,
                "episodes": args.episodes,
                "threads": threads,
                **metrics,
                **replay,
            },
            indent=2,
        )
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from ddn.algorithms import get_algorithm
    from ddn.deploy import export_student
    from ddn.run import load_run

    run = load_run(args.run, args.checkpoint)
    if not get_algorithm(run.cfg.algo).has_student:
        raise ConfigError(
            f"{args.run} is a {run.cfg.algo} run; only runs with a student network "
            "(DDN's LPN) have one to export"
        )
    path = export_student(run.policy("student"), args.out)
    print(json.dumps({"run": str(args.run), "checkpoint": run.t_env, "out": str(path)}))
    return 0


def _list(args: argparse.Namespace) -> int:
    import dataclasses

    from ddn import config
    from ddn.algorithms import all_algorithms
    from ddn.envs import list_envs

    print("Environments (ddn train --env NAME --set env.PARAM=VALUE):")
    for name, entry in list_envs().items():
        params = ", ".join(f"{k}={v!r}" for k, v in entry.params().items())
        print(f"  {name:<16} {entry.description}\n  {'':<16} params: {params}")
    from ddn.envs.smax import SMAX_MAPS

    print("\nMaps (ddn train --env smax --map NAME; needs pip install 'ddn[smax]'):")
    print("  " + ", ".join(SMAX_MAPS))
    print("  --env smac --map NAME takes any SMAC map (needs StarCraft II; docs/adapters.md)")
    print("\nAlgorithms (ddn train --algo NAME):")
    for algo in all_algorithms():
        own = f" [config: {', '.join(s.__name__ for s in algo.sections)}]" if algo.sections else ""
        print(f"  {algo.name:<16} {algo.label}: {algo.description}{own}")
    print("\nPresets shipped (configs/):")
    print("  envs: " + ", ".join(config.list_presets("envs")))
    print("  algs: " + ", ".join(config.list_presets("algs")))
    print("\nConfig keys and defaults by section (ddn train --set KEY=VALUE):")
    for section in config.sections():
        defaults = section()
        values = [
            f"{f.name}={getattr(defaults, f.name)!r}"
            if "follows" not in f.metadata
            else f"{f.name}=<{f.metadata['follows']}>"  # unset: takes that key's value
            for f in dataclasses.fields(section)
        ]
        print(f"  {section.__name__}: " + ", ".join(values))
    return 0


def _render(args: argparse.Namespace) -> int:
    from ddn.analysis.render import render_predator_prey
    from ddn.config import parse_override

    threads = _apply_threads(args.threads)
    params = {}
    for item in args.overrides:
        key, value = parse_override(item)
        if not key.startswith("env."):
            raise ConfigError(f"render --set takes env.PARAM=VALUE, got {key!r}")
        params[key[4:]] = value
    env_name, map_name, policy = args.env or "predator_prey", args.map_name, None
    if args.run is not None:
        from ddn.run import load_run, policy_fn

        run = load_run(args.run)
        if args.env is not None and args.env != run.cfg.env_name:
            raise ConfigError(f"{args.run} is a {run.cfg.env_name} run; drop --env")
        env_name, map_name = run.cfg.env_name, map_name or run.cfg.map_name
        params = {**run.cfg.env, **params}
        policy = policy_fn(run.policy(args.policy))
    try:
        if env_name == "smax":
            from ddn.analysis.render_smax import render_smax

            info = render_smax(args.out, policy, args.seed, map_name or "3m", **params)
        elif env_name == "predator_prey":
            if map_name is not None:
                raise ConfigError("Predator-Prey has no maps; drop --map")
            info = render_predator_prey(args.out, policy=policy, seed=args.seed, **params)
        else:
            raise ConfigError(f"ddn render draws predator_prey and smax runs, not {env_name}")
    except ValueError as exc:  # bad environment parameters, missing extra
        raise ConfigError(str(exc)) from None
    info["threads"] = threads
    print(json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in info.items()}))
    return 0


def _apply_threads(requested: int | None) -> int:
    """evaluate and render: ``--threads`` or the policy's choice (not the run's recorded
    count, which was chosen for its updates)."""
    from ddn.threads import apply_threads

    if requested is not None and requested < 1:
        raise ConfigError(f"--threads must be >= 1, got {requested}")
    return apply_threads(requested)[0]


def _demo(args: argparse.Namespace) -> int:
    from ddn.demo import run_demo

    run_demo(args.out, args.t_max)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from ddn.analysis.curves import plot_curves

    runs = _find_runs(args.runs, args.until)
    if args.kind != "curves":
        from ddn.analysis.aggregate import plot_aggregate

        metric = args.metric.removeprefix("test/") if args.metric else None
        if metric not in (None, "win_rate", "return_mean"):
            raise ConfigError(f"--kind {args.kind} takes --metric win_rate or return_mean")
        out = args.out if args.out != Path("curves.png") else Path(f"{args.kind}.png")
        written, scores = plot_aggregate(runs, out, _options(args, metric), args.kind, args.title)
        left = f"; left out: {len(scores.left_out)} (see ddn report)" if scores.left_out else ""
        print(
            f"{len(runs)} runs, {len(scores.matrices)} algorithm(s) over "
            f"{len(scores.metric)} task(s){left}: " + ", ".join(str(p) for p in written)
        )
        return 0
    written, metric, panels = plot_curves(
        runs, args.out, args.metric, args.band, args.title, args.panels
    )
    lines = sum(len(c) for c in panels.values())
    print(
        f"{len(runs)} runs, {len(panels)} panel(s), {lines} line(s) of {metric}: "
        + ", ".join(str(p) for p in written)
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from ddn.analysis.report import build_report, write_report

    runs = _find_runs(args.runs, args.until)
    report = build_report(
        runs,
        args.metric,
        _options(args, args.metric),
        last=args.last,
        interval=args.interval,
        outcomes=args.outcomes,
    )
    written = write_report(report, args.out)
    print(report.markdown())
    if args.marl_eval is not None:
        from ddn.analysis.export import write_marl_eval

        left_out = write_marl_eval(runs, args.marl_eval)
        written.append(args.marl_eval)
        for name, why in left_out:
            print(f"marl-eval export left out {name}: {why}")
    if args.pymarl is not None:
        from ddn.analysis.export import write_pymarl

        folders = write_pymarl(runs, args.pymarl)
        print(f"PyMARL export: {len(folders)} run folder(s) 1..{len(folders)} in {args.pymarl}")
        written.append(args.pymarl)
    print("Wrote " + ", ".join(str(p) for p in written))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from ddn.sweep import main as sweep_main

    return sweep_main(args)


_COMMANDS = {
    "train": _train,
    "evaluate": _evaluate,
    "export": _export,
    "list": _list,
    "render": _render,
    "demo": _demo,
    "plot": _plot,
    "report": _report,
    "sweep": _sweep,
}

if __name__ == "__main__":
    raise SystemExit(main())
