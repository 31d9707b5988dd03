"""Learning curves across many runs: seeds aggregated, one panel per map, one line per algorithm.

``ddn plot RUNS...`` reads run folders (or folders holding run folders, e.g. a sweep's
output), groups them by (environment, map) into panels and by algorithm (plus any config
variant that differs between runs of the same algorithm) into lines, aligns every seed on
a common ``t_env`` grid, and draws the mean with a band (std or 95% CI across seeds), in
the style of the DDN paper's Figures 4 and 5. DDN runs draw two lines: the GGN (teacher,
``test/...``) solid and the LPN (student, ``test_student/...``) dashed.

Alignment: seeds rarely test at identical ``t_env`` (episodes end early in some
environments), so each seed is linearly interpolated onto the union of all seeds' test
``t_env`` values. A seed never contributes beyond its own last event (no extrapolation),
so an unfinished seed shortens nothing: later grid points simply have a smaller ``n``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ddn.algorithms import find_algorithm, policies_of
from ddn.algorithms import label as algo_label
from ddn.config import COMMON_SECTIONS, EXECUTION_KEYS, Config, ConfigError
from ddn.run_folder import CONFIG_FILE, METRICS_FILE, RunFolder, last_test

Band = Literal["std", "ci"]
# A panel per (env, map), or per (env, map, base method): each base beside DDN on it, as
# the paper's Figure 5 draws them.
PanelBy = Literal["map", "base"]
Panel = tuple[str | None, ...]

# Keys that vary between seeds of one setting, or say how a run was executed and
# recorded rather than what it learned: they never define a separate line (runs of one
# campaign differ in them when ddn gained or changed such a key between runs).
_IGNORED_KEYS = frozenset({
    "seed", "device", "t_max", *EXECUTION_KEYS, "loggers", "keep_checkpoints",
    "runaway_q_factor", "save_model", "save_model_interval",
})  # fmt: skip


# ---------------------------------------------------------------------- loading
@dataclass
class RunRecord:
    """One run folder: its resolved config, its events and its summary (if written)."""

    path: Path
    config: dict[str, Any]
    events: list[dict[str, Any]]
    summary: dict[str, Any] | None
    until: int | None = None  # the step it is read at (``truncated``)
    read_to: float | None = None  # the last t_env its events and episodes are read to

    @property
    def env(self) -> str:
        return str(self.config.get("env_name"))

    @property
    def map_name(self) -> str | None:
        return self.config.get("map_name")

    @property
    def algo(self) -> str:
        return str(self.config.get("algo"))

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def panel(self) -> tuple[str, str | None]:
        return (self.env, self.map_name)

    @property
    def finished(self) -> bool:
        return bool(self.summary and self.summary.get("finished"))

    def series(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(t_env, value) of every event carrying a finite ``metric``, sorted by t_env."""
        xs, ys = [], []
        for event in self.events:
            value = event.get(metric)
            if isinstance(value, int | float) and math.isfinite(value):
                xs.append(float(event["t_env"]))
                ys.append(float(value))
        order = np.argsort(xs, kind="stable")
        return np.asarray(xs)[order], np.asarray(ys)[order]

    @property
    def folder(self) -> RunFolder:
        """The run folder, for the files not read here (``episodes.jsonl``)."""
        return RunFolder(self.path)

    def episodes(self) -> list[dict[str, Any]] | None:
        """The records of ``episodes.jsonl`` up to ``read_to``, or None for a run without
        that file (one logged before per-episode values were)."""
        records = self.folder.episodes()
        if records is None or self.read_to is None:
            return records
        return [r for r in records if float(r["t_env"]) <= self.read_to]

    def truncated(self, until: int) -> RunRecord:
        """The run as it stood after ``until`` environment steps: its events and test
        episodes up to then, its last test there as its final one. It counts as finished
        if it got that far; its own summary (written at its end) is left out.

        A finished run with a budget (``t_max``) of ``until`` or less stands at its end,
        so it is read whole: a run stops at the first iteration that reaches t_max, and
        its final test comes a few steps past it (a run of 1.05M steps read at 1.05M keeps
        its final test, logged at 1,050,078). Only a budget of exactly ``until`` counts as
        having got that far."""
        t_max = self.config.get("t_max")
        whole = self.finished and isinstance(t_max, int) and t_max <= until
        read_to = math.inf if whole else float(until)
        events = [e for e in self.events if float(e["t_env"]) <= read_to]
        last = max((float(e["t_env"]) for e in self.events), default=0.0)
        reached = t_max == until if whole else last >= until
        return RunRecord(self.path, self.config, events, {"finished": reached}, until, read_to)

    def final_metrics(self, last: int = 1) -> dict[str, float]:
        """The run's last test metrics: summary.json's, else the last test event's.

        A run killed before writing its summary still counts with its last test.
        ``last`` > 1: each metric's mean over the run's last ``last`` tests that logged it
        (one test of 32 episodes is a noisy estimate of a final win rate).
        """
        if last > 1:
            return self._mean_of_last_tests(last)
        source: dict[str, Any] = {}
        if self.summary and any(k.startswith("test") for k in self.summary):
            source = self.summary
        else:
            source = last_test(self.events)
        out = {}
        for key, value in source.items():
            finite = isinstance(value, int | float) and math.isfinite(value)
            if key.startswith("test") and finite:
                out[key] = float(value)
        return out

    def _mean_of_last_tests(self, last: int) -> dict[str, float]:
        # The last ``last`` test events, then each metric's finite values among them: a
        # metric a test left empty (the transfer rate when the teacher scored 0) is not
        # filled in from older tests.
        tests = [e for e in self.events if any(k.startswith("test") for k in e)]
        tests.sort(key=lambda e: float(e["t_env"]))
        window = tests[-last:]
        out = {}
        for key in sorted({k for e in window for k in e if k.startswith("test")}):
            values = [e.get(key) for e in window]
            finite = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
            if finite:
                out[key] = sum(finite) / len(finite)
        # The window's transfer rate is its student mean over its teacher mean, the ratio
        # of the two final values it sits beside in Table 2: a mean of per-test ratios
        # would be dominated by the tests where the teacher scored near 0.
        if "test/transfer_rate" in out:
            key = "test/win_rate" if "test/win_rate" in out else "test/return_mean"
            teacher, student = out.get(key), out.get(student_metric(key) or "")
            if teacher and student is not None:
                out["test/transfer_rate"] = student / teacher
            else:
                del out["test/transfer_rate"]
        return out


def load_run(path: str | Path) -> RunRecord:
    """One run folder's config, events and summary (one error if it holds no run)."""
    folder = RunFolder(path).require()
    return RunRecord(folder.path, folder.config_mapping(), folder.metrics(), folder.summary())


def find_runs(paths: Iterable[str | Path], until: int | None = None) -> list[RunRecord]:
    """Run folders named directly, or found (recursively) under the folders named.

    A sweep's output folder or a whole ``runs/`` folder can be passed as is; only runs
    that logged (hold a ``metrics.jsonl``) count. ``until``: every run as it stood after
    that many environment steps (``RunRecord.truncated``), to compare runs of different
    budgets at the same one.
    """
    if until is not None and until < 1:
        raise ConfigError(f"until must be a number of environment steps >= 1, got {until}")
    found: dict[Path, RunRecord] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ConfigError(f"{path} does not exist")
        if RunFolder(path).is_run():
            candidates = [path]
        else:
            candidates = sorted(p.parent for p in path.rglob(CONFIG_FILE))
        for run_dir in candidates:
            if RunFolder(run_dir).metrics_path.is_file() and run_dir.resolve() not in found:
                found[run_dir.resolve()] = load_run(run_dir)
    if not found:
        raise ConfigError(
            f"no run folders found (a run folder holds {CONFIG_FILE} and {METRICS_FILE}) in "
            + ", ".join(str(p) for p in paths)
        )
    runs = sorted(found.values(), key=lambda r: (r.env, r.map_name or "", r.algo, r.seed))
    runs = _one_run_per_seed(runs)
    return runs if until is None else [r.truncated(until) for r in runs]


def _one_run_per_seed(runs: list[RunRecord]) -> list[RunRecord]:
    """Drops repeats: a run of the same setting and seed as another (two campaigns that
    both ran it) is one sample, not two, so only the one that got furthest is kept
    (ties: the first path), with a warning naming both."""
    defaults = _flat_config(Config().to_dict())
    kept: dict[tuple, RunRecord] = {}
    for run in runs:
        flat = {**defaults, **_flat_config(run.config)}
        key = tuple(sorted((k, v) for k, v in flat.items() if k not in _IGNORED_KEYS))
        key += (("seed", run.seed),)
        other = kept.get(key)
        if other is None:
            kept[key] = run
            continue
        further = run.folder.latest_t_env() > other.folder.latest_t_env()
        keep, drop = (run, other) if further else (other, run)
        kept[key] = keep  # same sort key as the run it replaces: the order holds
        warnings.warn(
            f"{drop.path} repeats {keep.path} (same setting and seed): counted once, as "
            f"{keep.path.name}",
            stacklevel=2,
        )
    return list(kept.values())


def _flat_config(cfg: dict[str, Any]) -> dict[str, str]:
    flat = {}
    for key, value in cfg.items():
        if key == "env" and isinstance(value, dict):
            for k, v in value.items():
                flat[f"env.{k}"] = json.dumps(v, sort_keys=True)
        else:
            flat[key] = json.dumps(value, sort_keys=True)
    return flat


# The keys every algorithm has (the common config sections), besides the algorithm itself.
_SHARED_KEYS = frozenset(
    f.name for section in COMMON_SECTIONS for f in dataclasses.fields(section)
) - {"algo", "env"}


def variant_labels(runs: Sequence[RunRecord], ignore: Iterable[str] = ()) -> dict[Path, str]:
    """Per run: ``key=value, ...`` of the config keys that tell it apart from the other runs
    of its (env, map, algo), or "" when they differ only in seed. This keeps ablation
    variants apart without needing to know how the runs were launched.

    One varying key labels every run with its value (``idm_mask_prob=0.5`` beside
    ``idm_mask_prob=0.75``). Several varying keys (a sweep's one-change-at-a-time variants)
    would make every label list all of them, so each run then names only the keys where it
    differs from the group's reference: each key's most common value, ties going to
    ddn's default. The reference run itself is unlabelled, and two runs of different
    settings never share a label (they differ in a key, so at least one of them names it).
    ``ignore``: keys that never make a variant here (a report's ablation switches, which
    its tables show as columns).

    A key every algorithm has (``shared_settings``') that one algorithm holds at one value
    while other runs of the panel hold another is named on every run of that algorithm:
    DDN run under one protocol beside its base under two reads ``DDN
    [updates_per_iteration=1]``, never as if it matched both."""
    groups: dict[tuple, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault((run.panel, run.algo), []).append(run)
    # A key a run's config.yaml lacks (ddn gained it after the run) had its default value.
    defaults = _flat_config(Config().to_dict())
    flats = {run.path: {**defaults, **_flat_config(run.config)} for run in runs}
    ignored = _IGNORED_KEYS | set(ignore)
    across: dict[Panel, set[str]] = {}
    for panel in {run.panel for run in runs}:
        panel_flats = [flats[r.path] for r in runs if r.panel == panel]
        shared = {k for f in panel_flats for k in f if k in _SHARED_KEYS or k.startswith("env.")}
        across[panel] = {k for k in shared - ignored if len({f.get(k) for f in panel_flats}) > 1}
    labels: dict[Path, str] = {}
    for (panel, _), members in groups.items():
        mine = [flats[r.path] for r in members]
        keys = sorted(set().union(*mine) - ignored)
        varying = [k for k in keys if len({f.get(k) for f in mine}) > 1]
        reference = {
            k: _reference_value([f.get(k) for f in mine], defaults.get(k)) for k in varying
        }
        protocol = across[panel].difference(varying)
        for run, flat in zip(members, mine, strict=True):
            shown = varying if len(varying) == 1 else [
                k for k in varying if flat.get(k) != reference[k]
            ]  # fmt: skip
            parts = [
                f"{k}={json.loads(flat[k]) if k in flat else '-'}"
                for k in sorted({*shown, *protocol})
            ]  # fmt: skip
            labels[run.path] = ", ".join(parts)
    return labels


def shared_settings(run: RunRecord) -> dict[str, str]:
    """The run's values of the keys every algorithm has: the common config sections and
    the environment's parameters (``env.<name>``), besides the algorithm and the keys that
    never make a setting. Runs of two algorithms (a base and DDN on it) ran one protocol
    exactly when these agree; values as ``json.dumps`` strings, a key the run's
    config.yaml lacks at ddn's default."""
    flat = {**_flat_config(Config().to_dict()), **_flat_config(run.config)}
    return {
        k: v for k, v in flat.items()
        if (k in _SHARED_KEYS or k.startswith("env.")) and k not in _IGNORED_KEYS
    }  # fmt: skip


def _reference_value(values: Sequence[str | None], default: str | None) -> str | None:
    """The most common of ``values``; among equally common ones ddn's default, else the
    first in sorted order (so the choice never depends on the order runs were found)."""
    counts: dict[str | None, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    top = max(counts.values())
    tied = sorted((v for v, c in counts.items() if c == top), key=lambda v: (v is None, v or ""))
    return default if default in tied else tied[0]


# ---------------------------------------------------------------------- statistics
# Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


# The standard normal's 0.975 quantile, the limit of t_{0.975, df} as df grows.
_Z975 = 1.959964


def t_quantile_975(df: int) -> float:
    """t_{0.975, df}: table up to 30, then the Cornish-Fisher expansion (error < 1e-3)."""
    if df < 1:
        return float("nan")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; NaN for one value) and n."""
    arr = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    n = int(arr.size)
    if n == 0:
        return float("nan"), float("nan"), 0
    std = float(arr.std(ddof=1)) if n > 1 else float("nan")
    return float(arr.mean()), std, n


@dataclass
class Curve:
    """One line: the seeds' mean on a common grid with a band."""

    label: str
    algo: str
    role: Literal["main", "teacher", "student"]
    metric: str
    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray  # sample std across seeds (NaN where n = 1)
    lower: np.ndarray
    upper: np.ndarray
    n: np.ndarray  # seeds covering each grid point
    runs: list[Path] = field(default_factory=list)


def aggregate(
    series: Sequence[tuple[np.ndarray, np.ndarray]], band: Band = "std"
) -> tuple[np.ndarray, ...]:
    """Align seeds on the union of their x values and reduce them.

    Returns x, mean, std, lower, upper, n. Each seed is interpolated linearly within its
    own x range and ignored outside it. ``band``: ``std`` = mean +- sample std,
    ``ci`` = mean +- t_{0.975, n-1} * std / sqrt(n) (95% confidence interval of the mean).
    """
    series = [(x, y) for x, y in series if len(x)]
    if not series:
        empty = np.zeros(0)
        return empty, empty, empty, empty, empty, np.zeros(0, dtype=int)
    grid = np.unique(np.concatenate([x for x, _ in series]))
    values = np.full((len(series), grid.size), np.nan)
    for i, (x, y) in enumerate(series):
        inside = (grid >= x[0]) & (grid <= x[-1])
        values[i, inside] = np.interp(grid[inside], x, y)
    n = np.sum(~np.isnan(values), axis=0)
    mean = np.nanmean(values, axis=0)
    std = np.full(grid.size, np.nan)
    many = n > 1
    if many.any():
        std[many] = np.nanstd(values[:, many], axis=0, ddof=1)
    if band == "ci":
        half = (
            np.array([t_quantile_975(int(k) - 1) for k in n], dtype=np.float64)
            * std
            / np.sqrt(np.maximum(n, 1))
        )
    elif band == "std":
        half = std
    else:
        raise ConfigError(f"band must be 'std' or 'ci', got {band!r}")
    return grid, mean, std, mean - half, mean + half, n


def default_metric(runs: Sequence[RunRecord]) -> str:
    """test/win_rate where every run logs it, else test/return_mean."""
    if runs and all(len(r.series("test/win_rate")[0]) for r in runs):
        return "test/win_rate"
    return "test/return_mean"


def student_metric(metric: str) -> str | None:
    """The LPN's counterpart of a ``test/...`` metric (``test_student/...``)."""
    if metric.startswith("test/") and metric != "test/transfer_rate":
        return "test_student/" + metric.removeprefix("test/")
    return None


def _base_method(algo: str) -> str:
    algorithm = find_algorithm(algo)
    return algorithm.base_method if algorithm else algo


def build_curves(
    runs: Sequence[RunRecord],
    metric: str | None = None,
    band: Band = "std",
    panels_by: PanelBy = "map",
) -> tuple[str, dict[Panel, list[Curve]]]:
    """Group ``runs`` into panels and lines; returns (metric used, {panel: curves}).

    A panel is (env, map), or (env, map, base method) with ``panels_by="base"``.
    """
    metric = metric or default_metric(runs)
    labels = variant_labels(runs)
    lines: dict[tuple, list[RunRecord]] = {}
    for run in runs:
        panel: Panel = run.panel + ((_base_method(run.algo),) if panels_by == "base" else ())
        lines.setdefault((panel, run.algo, labels[run.path]), []).append(run)
    panels: dict[Panel, list[Curve]] = {}
    for (panel, algo, variant), members in sorted(
        lines.items(), key=lambda kv: (tuple(p or "" for p in kv[0][0]), kv[0][1], kv[0][2])
    ):
        name = algo_label(algo) + (f" [{variant}]" if variant else "")
        roles: list[tuple[str, str, str]] = []
        policies = policies_of(algo)
        if len(policies) == 1:
            roles.append(("main", metric, name))
        else:  # a teacher and a student (DDN's GGN and LPN), labelled as registered
            for policy in policies:
                key = metric if policy.name == "teacher" else student_metric(metric)
                if key is not None:
                    roles.append((policy.name, key, f"{name} {policy.label}".rstrip()))
        for role, key, label in roles:
            x, mean, std, lo, hi, n = aggregate([r.series(key) for r in members], band)
            if x.size == 0:
                continue
            panels.setdefault(panel, []).append(
                Curve(label, algo, role, key, x, mean, std, lo, hi, n, [r.path for r in members])
            )
    if not panels:
        raise ConfigError(
            f"no run logs {metric!r}; pass --metric with a key from metrics.jsonl "
            "(e.g. test/return_mean, test/win_rate, train/return_mean)"
        )
    return metric, panels


# ---------------------------------------------------------------------- drawing
def _panel_title(panel: Panel) -> str:
    env, map_name, *base = panel
    where = str(map_name or env)
    return f"{where}: {algo_label(base[0])}" if base else where


def _steps(x: float, _pos: Any = None) -> str:
    if abs(x) >= 1e6:
        return f"{x / 1e6:g}M"
    if abs(x) >= 1e3:
        return f"{x / 1e3:g}k"
    return f"{x:g}"


def output_paths(out: str | Path) -> list[Path]:
    """``curves.png`` -> [curves.png, curves.svg]; any suffix (or none) gives both."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix.lower() in (".png", ".svg", ".pdf") else out
    return [stem.with_suffix(".png"), stem.with_suffix(".svg")]


def save_figure(fig, out: str | Path) -> list[Path]:
    """Write ``fig`` as PNG and SVG (``output_paths``), close it; the paths written."""
    import matplotlib.pyplot as plt

    written = []
    for path in output_paths(out):
        path.parent.mkdir(parents=True, exist_ok=True)
        # "tight" grows the canvas to whatever sticks out: long variant names in the legend.
        fig.savefig(path, bbox_inches="tight")
        written.append(path)
    plt.close(fig)
    return written


def plot_curves(
    runs: Sequence[RunRecord],
    out: str | Path,
    metric: str | None = None,
    band: Band = "std",
    title: str | None = None,
    panels_by: PanelBy = "map",
) -> tuple[list[Path], str, dict[Panel, list[Curve]]]:
    """Draw one panel per (env, map), or per (env, map, base method), and write PNG and SVG.

    Returns the files written, the metric plotted and the curves (for tests and reports).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    metric, panels = build_curves(runs, metric, band, panels_by)
    keys = list(panels)
    ncols = 2 if len(keys) == 4 else min(3, len(keys))  # four panels as 2 x 2, not 3 + 1
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(max(4.6 * ncols, 6.4), 3.5 * nrows + 0.6), dpi=150, squeeze=False
    )
    # One colour per line name across all panels; a DDN run's GGN and LPN share it.
    labels_seen = sorted({c.label.rsplit(" ", 1)[0] if c.role != "main" else c.label
                          for curves in panels.values() for c in curves})  # fmt: skip
    cmap = plt.get_cmap("tab10" if len(labels_seen) <= 10 else "tab20")
    colours = {lab: cmap(i % cmap.N) for i, lab in enumerate(labels_seen)}
    handles: dict[str, Any] = {}
    for ax, panel in zip(axes.flat, keys, strict=False):
        for curve in panels[panel]:
            base = curve.label.rsplit(" ", 1)[0] if curve.role != "main" else curve.label
            colour = colours[base]
            style = "--" if curve.role == "student" else "-"
            # Draw only where every seed of the line has data: past the shortest seed's
            # last test the mean would jump as seeds drop out.
            full = curve.n == curve.n.max()
            x, mean, lower, upper = (
                a[full] for a in (curve.x, curve.mean, curve.lower, curve.upper)
            )
            (line,) = ax.plot(x, mean, style, color=colour, lw=1.6, label=curve.label)
            if curve.n.max() > 1:
                ax.fill_between(
                    x, lower, upper, color=colour,
                    alpha=0.12 if curve.role == "student" else 0.2, lw=0,
                )  # fmt: skip
            handles.setdefault(curve.label, line)
        seeds = max(int(c.n.max()) for c in panels[panel])
        ax.set_title(f"{_panel_title(panel)}  (seeds: {seeds})", fontsize=10)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(_metric_label(metric))
        ax.xaxis.set_major_formatter(FuncFormatter(_steps))
        ax.grid(alpha=0.3)
        if metric.endswith("win_rate"):
            ax.set_ylim(-0.02, 1.02)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    legend_cols = min(len(handles), 2 * ncols)  # two entries fit under each panel
    band_text = "mean ± std" if band == "std" else "mean, 95% CI"
    fig.suptitle(title or f"{_metric_label(metric)} ({band_text} across seeds)", fontsize=11)
    fig.legend(
        list(handles.values()), list(handles), loc="lower center",
        ncol=legend_cols, frameon=False, fontsize=9,
    )  # fmt: skip
    legend_rows = math.ceil(len(handles) / legend_cols)
    fig.tight_layout(rect=(0, 0.05 + 0.035 * legend_rows, 1, 1))
    return save_figure(fig, out), metric, panels


def _metric_label(metric: str) -> str:
    return {"test/win_rate": "test win rate", "test/return_mean": "test return"}.get(metric, metric)
