"""Aggregate statistics across tasks and seeds, the protocol of Agarwal et al. (2021, "Deep
RL at the edge of the statistical precipice"), computed with the ``rliable`` package
(``pip install 'ddn[stats]'``): median, mean and interquartile mean (IQM) of the final
normalised scores with stratified-bootstrap confidence intervals, the probability of
improvement between algorithms, and performance profiles.

Scores come from each run's ``episodes.jsonl`` (every test episode): a run's score on its
task is the mean over the episodes of its last test (of its last ``Options.last`` tests:
``ddn report --last K``, the tables' rule), normalised per task:

- win rate as is (already in [0, 1]);
- return as ``(R - min) / (max - min)``, with ``(min, max)`` given per task
  (``--score-range TASK=MIN:MAX``), else the range the task's environment declares
  (Predator-Prey: 0 to every prey captured), else the lowest and highest single test
  episode return of any included run of the task at any test (marl-eval's min-max
  normalisation). The ranges used are printed with the results.

A task is a scenario as in the report's tables (the map, else the environment). Each
"algorithm" is a (algorithm, config variant, network) line as in ``ddn plot``: DDN runs
give two, the GGN (teacher) and the LPN (student). rliable needs a full runs x tasks
matrix per algorithm, so an algorithm with more seeds on one task than on another keeps
its lowest seeds on every task; the runs dropped, like runs without ``episodes.jsonl``
(written before per-episode logging existed) or without a test, are listed with why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ddn.algorithms import find_algorithm, policies_of
from ddn.analysis.curves import RunRecord, algo_label, save_figure, variant_labels
from ddn.config import ConfigError
from ddn.envs import get_entry
from ddn.run_folder import EPISODES_FILE

STATS_EXTRA = "pip install 'ddn[stats]'"
DEFAULT_REPS = 2000
METRIC_NAMES = ("Median", "IQM", "Mean")


def require_rliable() -> tuple[Any, Any]:
    """rliable's ``library`` and ``metrics`` modules, or one clear error naming the extra."""
    try:
        from rliable import library, metrics
    except ImportError:
        raise ConfigError(f"aggregate statistics need the rliable package: {STATS_EXTRA}") from None
    except Exception as exc:  # e.g. arch 7 under pandas 3: the extra pins pandas < 3
        raise ConfigError(
            f"rliable is installed but does not import ({type(exc).__name__}: {exc}); "
            f"reinstall the extra: {STATS_EXTRA}"
        ) from None
    return library, metrics


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """rliable 1.2 resamples with NumPy's global generator (not its ``random_state``):
    seed it for one call and give the caller's state back afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


# ---------------------------------------------------------------------- estimates
def aggregate_metrics(scores: np.ndarray) -> np.ndarray:
    """Median (of per-task means), IQM (over all runs and tasks) and mean, as rliable
    defines them, for a runs x tasks matrix."""
    _, metrics = require_rliable()
    return np.array(
        [
            metrics.aggregate_median(scores),
            metrics.aggregate_iqm(scores),
            metrics.aggregate_mean(scores),
        ]
    )


def interval_estimates(
    scores: Mapping[str, np.ndarray],
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    func: Callable[[np.ndarray], np.ndarray] = aggregate_metrics,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Point estimates of ``func`` (default [median, IQM, mean]) and their 95%
    stratified-bootstrap CIs (percentile, ``reps`` resamples of runs within each task)
    per algorithm: [2, metrics] arrays, lower bounds first.

    Each algorithm is resampled from ``seed`` on its own, so its interval does not depend
    on which other algorithms are in the call."""
    library, _ = require_rliable()
    points, intervals = {}, {}
    for key, matrix in scores.items():
        with _seeded(seed):
            p, i = library.get_interval_estimates({key: matrix}, func, reps=reps)
        points[key], intervals[key] = p[key], i[key]
    return points, intervals


def probability_of_improvement(
    x: np.ndarray, y: np.ndarray, reps: int = DEFAULT_REPS, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """P(X > Y) averaged over tasks (the columns; runs may differ in number) with its 95%
    CI, both runs resampled independently within each task."""
    library, metrics = require_rliable()
    with _seeded(seed):
        p, i = library.get_interval_estimates(
            {"pair": [x, y]}, metrics.probability_of_improvement, reps=reps
        )
    lo, hi = np.asarray(i["pair"]).ravel()
    return float(p["pair"]), (float(lo), float(hi))


def performance_profiles(
    scores: Mapping[str, np.ndarray], taus: np.ndarray, reps: int = DEFAULT_REPS, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Score distributions: the fraction of runs (over all tasks) scoring above each tau,
    with 95% stratified-bootstrap bands [2, len(taus)]."""
    library, _ = require_rliable()
    profiles, bands = {}, {}
    for key, matrix in scores.items():
        with _seeded(seed):
            p, b = library.create_performance_profile({key: matrix}, taus, reps=reps)
        profiles[key], bands[key] = p[key], b[key]
    return profiles, bands


# ---------------------------------------------------------------------- scores
@dataclass
class Options:
    """What ``ddn report`` / ``ddn plot`` were asked for."""

    metric: str | None = None  # win_rate or return_mean; default per task as the tables
    reps: int = DEFAULT_REPS
    seed: int = 0
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # task -> min, max
    last: int = 1  # a run's score: the mean over the episodes of its last `last` tests

    def __post_init__(self) -> None:
        if self.reps < 1:
            raise ConfigError("--bootstrap-reps must be >= 1")
        if self.last < 1:
            raise ConfigError(f"last must be a number of tests >= 1, got {self.last}")


def _declared_range(runs: Sequence[RunRecord]) -> tuple[float, float, str] | None:
    """The return range the runs' environment declares (Predator-Prey: 0 to every prey
    captured), if they all share one; else None (the range the runs reached is used)."""
    found = set()
    for run in runs:
        try:
            entry = get_entry(run.env)
        except ValueError:  # an environment this install does not have
            return None
        found.add(entry.return_range(run.config.get("env") or {}))
    return found.pop() if len(found) == 1 else None


def parse_ranges(items: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``TASK=MIN:MAX`` items (``--score-range``) -> {task: (min, max)}."""
    ranges = {}
    for item in items:
        task, sep, span = item.partition("=")
        lo, sep2, hi = span.partition(":")
        try:
            if not (sep and sep2 and task):
                raise ValueError
            low, high = float(lo), float(hi)
        except ValueError:
            raise ConfigError(
                f"--score-range takes TASK=MIN:MAX (e.g. predator_prey=0:40), got {item!r}"
            ) from None
        if not high > low:
            raise ConfigError(f"--score-range {item}: MAX must be above MIN")
        ranges[task] = (low, high)
    return ranges


@dataclass
class RunScore:
    run: RunRecord
    task: str
    label: str
    score: float  # normalised
    raw: float  # the metric's mean over the episodes of the last `Options.last` tests


@dataclass
class Scores:
    """Final normalised scores, arranged for rliable, and what was left out."""

    metric: dict[str, str]  # task -> win_rate / return_mean
    ranges: dict[str, tuple[float, float, str]]  # task -> min, max, where they come from
    matrices: dict[str, np.ndarray]  # label -> runs x tasks (columns: tasks[label])
    tasks: dict[str, list[str]]
    cells: dict[tuple[str, str], list[RunScore]]  # (label, task) -> the runs in the matrix
    left_out: list[tuple[str, str]]  # (run folder, why)
    algos: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # label -> algo,
    # variant, policy


def _task(run: RunRecord) -> str:
    return run.map_name or run.env


def collect_scores(runs: Sequence[RunRecord], options: Options) -> Scores:
    """Each run's final normalised score per evaluated network, as rliable matrices."""
    left_out: list[tuple[str, str]] = []
    variants = variant_labels(runs)
    by_task: dict[str, list[tuple[RunRecord, list[dict[str, Any]]]]] = {}
    for run in runs:
        records = run.episodes()
        if records is None:
            why = f"no {EPISODES_FILE} (logged before per-episode values were; "
            why += "its means are in the tables)"
            left_out.append((run.path.name, why))
            continue
        tests = [r for r in records if r.get("source") == "test"]
        if not tests:
            left_out.append((run.path.name, f"no test evaluation in {EPISODES_FILE}"))
            continue
        by_task.setdefault(_task(run), []).append((run, tests))

    metric: dict[str, str] = {}
    ranges: dict[str, tuple[float, float, str]] = {}
    scored: list[RunScore] = []
    algos: dict[str, tuple[str, str, str]] = {}
    for task, members in sorted(by_task.items()):
        wins = all("won" in t for _, tests in members for t in tests)
        chosen = options.metric or ("win_rate" if wins else "return_mean")
        if chosen == "win_rate" and not wins:
            for run, _ in members:
                left_out.append((run.path.name, "no win condition; use --metric return_mean"))
            continue
        metric[task] = chosen
        if chosen == "win_rate":
            ranges[task] = (0.0, 1.0, "win rate as is")
        elif task in options.ranges:
            ranges[task] = (*options.ranges[task], "--score-range")
        elif (declared := _declared_range([run for run, _ in members])) is not None:
            ranges[task] = declared
        else:
            values = [v for _, tests in members for t in tests for v in t["return"]]
            lo, hi = min(values), max(values)
            if not hi > lo:
                for run, _ in members:
                    left_out.append((run.path.name, f"every test return on {task} is {lo:g}; "
                                     f"give --score-range {task}=MIN:MAX"))  # fmt: skip
                del metric[task]
                continue
            ranges[task] = (lo, hi, "lowest/highest test episode return of these runs")
        lo, hi, _ = ranges[task]
        key = "won" if chosen == "win_rate" else "return"
        for run, tests in members:
            for policy in policies_of(run.algo):
                mine = [t for t in tests if t.get("policy") == policy.name]
                if not mine:
                    continue
                final = sorted(mine, key=lambda t: t["t_env"])[-options.last :]
                episodes = [v for t in final for v in t[key]]
                raw = float(np.mean(np.asarray(episodes, dtype=np.float64)))
                label = algo_label(run.algo) + (f" [{variants[run.path]}]" if variants[run.path]
                                                else "")  # fmt: skip
                label = f"{label} {policy.label}".rstrip()  # DDN's: "... GGN", "... LPN"
                algos[label] = (run.algo, variants[run.path], policy.name)
                scored.append(RunScore(run, task, label, (raw - lo) / (hi - lo), raw))

    cells: dict[tuple[str, str], list[RunScore]] = {}
    for s in sorted(scored, key=lambda s: (s.label, s.task, s.run.seed, s.run.path.name)):
        cells.setdefault((s.label, s.task), []).append(s)
    matrices: dict[str, np.ndarray] = {}
    tasks: dict[str, list[str]] = {}
    for label in sorted({s.label for s in scored}):
        mine = sorted(t for (lab, t) in cells if lab == label)
        k = min(len(cells[(label, t)]) for t in mine)
        for t in mine:
            for dropped in cells[(label, t)][k:]:
                if algos[dropped.label][2] == "student":  # reported once, with the teacher
                    continue
                left_out.append((dropped.run.path.name, f"{label} has only {k} run(s) on some "
                                 "task; rliable needs the same number on every task"))  # fmt: skip
            cells[(label, t)] = cells[(label, t)][:k]
        tasks[label] = mine
        matrices[label] = np.array([[c.score for c in cells[(label, t)]] for t in mine]).T
    return Scores(metric, ranges, matrices, tasks, cells, left_out, algos)


def improvement_pairs(scores: Scores) -> list[tuple[str, str]]:
    """(X, Y) pairs a DDN study needs: each network of a method built on a base method
    (DDN's GGN and LPN) against that base algorithm's line without config variant, and
    each student (LPN) against its teacher (GGN) of the same line."""
    pairs = []
    for label, (algo, variant, policy) in sorted(scores.algos.items()):
        entry = find_algorithm(algo)
        if entry is None or entry.base is None:
            continue
        for base_label, (other, other_variant, _) in sorted(scores.algos.items()):
            if other == entry.base and other_variant == "":
                pairs.append((label, base_label))
        if policy == "student":
            for teacher_label, teacher in sorted(scores.algos.items()):
                if teacher == (algo, variant, "teacher"):
                    pairs.append((label, teacher_label))
    return pairs


def _common(scores: Scores, x: str, y: str) -> tuple[np.ndarray, np.ndarray, int]:
    common = [t for t in scores.tasks[x] if t in scores.tasks[y]]
    cols_x = [scores.tasks[x].index(t) for t in common]
    cols_y = [scores.tasks[y].index(t) for t in common]
    return scores.matrices[x][:, cols_x], scores.matrices[y][:, cols_y], len(common)


# ---------------------------------------------------------------------- report section
def _ci(point: float, lo: float, hi: float) -> str:
    return f"{point:.3f} [{lo:.3f}, {hi:.3f}]"


def aggregate_section(runs: Sequence[RunRecord], options: Options) -> str:
    """The Markdown section ``ddn report`` prints; without rliable, one line naming the
    extra (the tables above it need nothing extra)."""
    lines = ["## Aggregate statistics (rliable)", ""]
    try:
        require_rliable()
    except ConfigError as exc:
        return "\n".join([*lines, f"Skipped: {exc}.", ""])
    scores = collect_scores(runs, options)
    if scores.matrices:
        lines += _estimates_lines(scores, options)
    else:
        lines += ["No run has per-episode test values to aggregate.", ""]
    if scores.left_out:
        lines += ["Left out of this section:", ""]
        lines += [f"- {name}: {why}" for name, why in scores.left_out]
        lines.append("")
    return "\n".join(lines)


def _final_tests(options: Options) -> str:
    return "last test" if options.last == 1 else f"last {options.last} tests"


def _estimates_lines(scores: Scores, options: Options) -> list[str]:
    lines = [
        f"Score of a run on a task: the mean over the episodes of its {_final_tests(options)}, "
        "normalised per task (win rate as is; return as (R - min) / (max - min) with the "
        "ranges below). "
        f"Point estimates with 95% stratified-bootstrap CIs (percentile; {options.reps} "
        f"resamples of runs within each task; seed {options.seed}); IQM is the mean of the "
        "middle 50% of all runs x tasks scores, median the median of per-task means "
        "(Agarwal et al. 2021).",
        "",
        "| task | metric | min | max | range from |",
        "|---|---|---|---|---|",
    ]
    for task, (lo, hi, source) in scores.ranges.items():
        lines.append(f"| {task} | {scores.metric[task]} | {lo:.4g} | {hi:.4g} | {source} |")
    lines += ["", "| algorithm | tasks | runs | median | IQM | mean |", "|---|---|---|---|---|---|"]
    points, intervals = interval_estimates(scores.matrices, options.reps, options.seed)
    for label, matrix in scores.matrices.items():
        p, i = points[label], intervals[label]
        texts = [_ci(p[j], i[0][j], i[1][j]) for j in range(len(METRIC_NAMES))]
        lines.append(f"| {label} | {matrix.shape[1]} | {matrix.size} | " + " | ".join(texts) + " |")
    pairs = improvement_pairs(scores)
    if pairs:
        lines += ["", "Probability of improvement P(X > Y) on the tasks both have (Mann-Whitney "
                  "U / (n_X n_Y), averaged over tasks), 95% CI:", "",
                  "| X | Y | tasks | P(X > Y) |", "|---|---|---|---|"]  # fmt: skip
        for x, y in pairs:
            mx, my, n = _common(scores, x, y)
            if n == 0:
                lines.append(f"| {x} | {y} | 0 | — (no common task) |")
                continue
            p, (lo, hi) = probability_of_improvement(mx, my, options.reps, options.seed)
            lines.append(f"| {x} | {y} | {n} | {_ci(p, lo, hi)} |")
    lines += ["", f"Runs per cell (final: each run's mean over its {_final_tests(options)} "
              "before normalising):", "",
              "| task | algorithm | runs | seeds | final |", "|---|---|---|---|---|"]  # fmt: skip
    for (label, task), members in sorted(scores.cells.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        seeds = ", ".join(str(m.run.seed) for m in members)
        finals = ", ".join(f"{m.raw:.4g}" for m in members)
        lines.append(f"| {task} | {label} | {len(members)} | {seeds} | {finals} |")
    lines.append("")
    return lines


# ---------------------------------------------------------------------- plots
def _colours(labels: Sequence[str]) -> dict[str, Any]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _xlabel(scores: Scores) -> str:
    kinds = set(scores.metric.values())
    return "win rate" if kinds == {"win_rate"} else "normalised score"


def plot_aggregate(
    runs: Sequence[RunRecord], out: str | Path, options: Options, kind: str, title: str | None
) -> tuple[list[Path], Scores]:
    """``kind`` ``profile``: the performance profile (fraction of runs scoring above tau)
    per algorithm with its 95% CI band; ``aggregate``: median, IQM and mean with their
    95% CIs as intervals per algorithm. Writes PNG and SVG."""
    require_rliable()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = collect_scores(runs, options)
    if not scores.matrices:
        why = "; ".join(f"{n}: {w}" for n, w in scores.left_out[:3]) or "no runs"
        raise ConfigError(f"no run has per-episode test values to plot ({why})")
    labels = list(scores.matrices)
    colours = _colours(labels)
    n_tasks = len(scores.metric)
    n_runs = sum(m.shape[0] for m in scores.matrices.values())
    if kind == "profile":
        values = np.concatenate([m.ravel() for m in scores.matrices.values()])
        taus = np.linspace(min(0.0, values.min()), max(1.0, values.max()), 101)
        profiles, bands = performance_profiles(scores.matrices, taus, options.reps, options.seed)
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=150)
        for label in labels:
            style = "--" if label.endswith(" LPN") else "-"
            ax.plot(taus, profiles[label], style, color=colours[label], lw=1.8, label=label)
            ax.fill_between(taus, bands[label][0], bands[label][1], color=colours[label],
                            alpha=0.15, lw=0)  # fmt: skip
        ax.set_xlabel(f"{_xlabel(scores)} (τ)")
        ax.set_ylabel("fraction of runs with score > τ")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=9)
        default_title = f"Performance profile, 95% CI ({n_tasks} task(s), {n_runs} run scores)"
    elif kind == "aggregate":
        points, intervals = interval_estimates(scores.matrices, options.reps, options.seed)
        fig, axes = plt.subplots(
            1, len(METRIC_NAMES), figsize=(3.2 * len(METRIC_NAMES), 0.9 + 0.45 * len(labels)),
            dpi=150, sharey=True,
        )  # fmt: skip
        for j, (ax, name) in enumerate(zip(axes, METRIC_NAMES, strict=True)):
            for row, label in enumerate(labels):
                lo, hi = intervals[label][0][j], intervals[label][1][j]
                ax.barh(row, hi - lo, left=lo, height=0.6, color=colours[label], alpha=0.75)
                ax.vlines(points[label][j], row - 0.3, row + 0.3, color="k", lw=1.5)
            ax.set_title(name, fontsize=10)
            ax.set_xlabel(_xlabel(scores))
            ax.grid(alpha=0.3, axis="x")
        axes[0].set_yticks(range(len(labels)), labels)
        axes[0].invert_yaxis()
        default_title = f"Aggregates with 95% CIs ({n_tasks} task(s), {n_runs} run scores)"
    else:
        raise ConfigError(f"unknown plot kind {kind!r}")
    fig.suptitle(title or default_title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, out), scores
