"""The DDN paper's tables from run folders, as Markdown and CSV (``ddn report``).

Each cell is ``mean ± std (n=K)`` over seeds (sample std, ddof=1) of each run's final
test metric: ``summary.json``'s last test, or the last test event of a run that never
wrote one. The metric is the test win rate where the runs of an (env, map) log one,
else the test return (as the paper's Table 2 transfer rate does).

Which runs feed which table is read from each run's ``config.yaml``:

- Table 1, base vs +DDN: ``<base>`` runs against ``ddn_<base>`` (``ddn`` = ``ddn_qmix``)
  runs with every DDN switch at its default;
- Table 2, GGN / LPN and the transfer rate LPN / GGN: default DDN runs, then the
  rivals' runs (CTDS, PTDE, IGM-DA: teacher / student; IGM-DA's DAgger and BC are two
  rows, each with its expert as teacher and its learner as student);
- Table 3, personalized vs raw state: DDN runs differing only in ``personalized_state``;
- Table 4, which of L_B, L_Q, L_F: DDN runs differing only in ``distill_*``;
- Table 5, IDM off vs mask probability mu: DDN runs differing only in ``idm`` /
  ``idm_mask_prob``.

"Differing only" means the other ablation switches are at their defaults. Runs of one
algorithm that also differ in any other key (a sweep's variants, e.g. a hypernetwork
width) are never pooled into one cell: each such setting gets its own row, its algorithm
named with the keys that set it apart (``DDN [fusion_hypernet_dim=16]``). Table 1 sets a
base setting beside a DDN setting only when both ran one protocol (``_pairs``). A table is
written only when the runs it compares exist; the others are listed as skipped, with why.

After the tables comes the aggregate-statistics section (IQM and friends with bootstrap
CIs, probability of improvement; ``ddn.analysis.aggregate``), from the runs'
per-episode values.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ddn.algorithms import all_algorithms, find_algorithm
from ddn.analysis.aggregate import Options, aggregate_section
from ddn.analysis.curves import (
    RunRecord,
    algo_label,
    mean_std,
    shared_settings,
    t_quantile_975,
    variant_labels,
)
from ddn.analysis.outcomes import outcomes_section
from ddn.config import Config, ConfigError

_DEFAULTS = Config()
SWITCHES = (
    "personalized_state",
    "distill_block",
    "distill_q",
    "distill_feature",
    "idm",
    "idm_mask_prob",
)


Interval = Literal["std", "ci"]


@dataclass
class Cell:
    """mean ± std (or 95% CI) over seeds; ``values`` keeps the per-seed numbers for the CSV."""

    values: list[float]

    @property
    def stats(self) -> tuple[float, float, int]:
        return mean_std(self.values)

    @property
    def ci95(self) -> float:
        """Half-width of the 95% confidence interval of the mean (Student t, n - 1 df)."""
        _, std, n = self.stats
        return t_quantile_975(n - 1) * std / math.sqrt(n) if n > 1 else float("nan")

    def text(self, digits: int, interval: Interval = "std") -> str:
        mean, std, n = self.stats
        if n == 0:
            return "—"
        spread = std if interval == "std" else self.ci95
        if math.isnan(spread):
            return f"{mean:.{digits}f} (n={n})"
        return f"{mean:.{digits}f} ± {spread:.{digits}f} (n={n})"


@dataclass
class Table:
    key: str  # "table1"...
    title: str
    header: list[str]  # label columns then value columns
    n_label_cols: int
    rows: list[tuple[list[str], list[Cell | None]]] = field(default_factory=list)
    digits: int = 3
    note: str = ""
    interval: Interval = "std"

    def markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        lines.append("| " + " | ".join(self.header) + " |")
        lines.append("|" + "|".join("---" for _ in self.header) + "|")
        for labels, cells in self.rows:
            texts = ["—" if c is None else c.text(self.digits, self.interval) for c in cells]
            lines.append("| " + " | ".join([*labels, *texts]) + " |")
        return "\n".join(lines) + "\n"

    def csv_rows(self) -> list[dict[str, Any]]:
        """One CSV row per cell: scenario, algorithm, setting (ablation tables), column."""
        out = []
        setting_names = self.header[2 : self.n_label_cols]
        for labels, cells in self.rows:
            setting = " ".join(f"{k}={v}" for k, v in zip(setting_names, labels[2:], strict=True))
            for column, cell in zip(self.header[self.n_label_cols :], cells, strict=True):
                if cell is None:
                    continue
                mean, std, n = cell.stats
                out.append(
                    {
                        "table": self.key,
                        "scenario": labels[0],
                        "algorithm": labels[1],
                        "setting": setting,
                        "column": column,
                        "mean": _num(mean),
                        "std": _num(std),
                        "ci95": _num(cell.ci95),
                        "n": n,
                        "values": " ".join(f"{v:.6g}" for v in cell.values),
                    }
                )
        return out


def _num(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.6g}"


@dataclass
class Report:
    tables: list[Table]
    skipped: dict[str, str]  # table key -> why
    notes: list[str]
    aggregate: str = ""  # the aggregate-statistics section (Markdown), if asked for
    outcomes: str = ""  # the battle-outcomes section (Markdown), if asked for

    def markdown(self) -> str:
        parts = ["# Results", ""]
        parts += [f"- {n}" for n in self.notes]
        if self.notes:
            parts.append("")
        for table in self.tables:
            parts.append(table.markdown())
        if self.aggregate:
            parts.append(self.aggregate)
        if self.outcomes:
            parts.append(self.outcomes)
        if self.skipped:
            parts.append("## Skipped tables\n")
            parts += [f"- {k}: {why}" for k, why in self.skipped.items()]
            parts.append("")
        return "\n".join(parts)

    def csv(self) -> str:
        buf = io.StringIO()
        fields = ["table", "scenario", "algorithm", "setting", "column"]
        fields += ["mean", "std", "ci95", "n", "values"]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for table in self.tables:
            writer.writerows(table.csv_rows())
        return buf.getvalue()


# ---------------------------------------------------------------------- grouping
def _scenario(run: RunRecord) -> str:
    return run.map_name or run.env


def _uses_wins(runs: Sequence[RunRecord]) -> bool:
    return bool(runs) and all("test/win_rate" in r.final_metrics() for r in runs)


def _family(algo: str) -> str | None:
    """The registered method family (every DDN variant: "ddn"); None if unknown."""
    found = find_algorithm(algo)
    return found.family if found is not None else None


def _is_default(run: RunRecord, except_keys: Sequence[str] = ()) -> bool:
    return all(
        run.config.get(k, getattr(_DEFAULTS, k)) == getattr(_DEFAULTS, k)
        for k in SWITCHES
        if k not in except_keys
    )


class _Scenarios:
    """Runs per scenario (env/map), with the scenario's metric (win rate or return)."""

    def __init__(self, runs: Sequence[RunRecord], metric: str | None, last: int = 1) -> None:
        self.last = last
        # The settings besides seed and the ablation switches (the tables' own columns).
        self.variant = variant_labels(runs, ignore=SWITCHES)
        self.by: dict[str, list[RunRecord]] = {}
        for run in runs:
            self.by.setdefault(_scenario(run), []).append(run)
        self.metric: dict[str, str] = {}
        for name, members in self.by.items():
            self.metric[name] = metric or ("win_rate" if _uses_wins(members) else "return_mean")

    def cell(self, runs: Sequence[RunRecord], metric: str) -> Cell | None:
        """The runs' final ``metric`` (the mean of each run's last ``last`` tests)."""
        values = [r.final_metrics(self.last).get(metric) for r in runs]
        values = [v for v in values if v is not None]
        return Cell(values) if values else None

    def paired(
        self, base: Sequence[RunRecord], other: Sequence[RunRecord], base_metric: str, metric: str
    ) -> Cell | None:
        """Per seed, ``other``'s final ``metric`` minus ``base``'s final ``base_metric``,
        over the seeds both have. Paired because seed s of both methods draws the same
        environment and exploration streams; its interval is then Student t over the
        per-seed differences (n - 1 degrees of freedom)."""
        finals = {r.seed: r.final_metrics(self.last).get(base_metric) for r in base}
        values = []
        for run in other:
            mine, theirs = run.final_metrics(self.last).get(metric), finals.get(run.seed)
            if mine is not None and theirs is not None:
                values.append(mine - theirs)
        return Cell(values) if values else None

    def header_metric(self, names: Sequence[str]) -> str:
        kinds = {self.metric[n] for n in names}
        return "win rate" if kinds == {"win_rate"} else ", ".join(sorted(kinds))

    def digits(self, names: Sequence[str]) -> int:
        return 3 if all(self.metric[n] == "win_rate" for n in names) else 2

    def settings(self, runs: Sequence[RunRecord]) -> list[tuple[str, list[RunRecord]]]:
        """``runs`` split by setting (variant label, "" for none), in label order."""
        by: dict[str, list[RunRecord]] = {}
        for run in runs:
            by.setdefault(self.variant[run.path], []).append(run)
        return sorted(by.items())


def _named(label: str, variant: str) -> str:
    return f"{label} [{variant}]" if variant else label


_Settings = list[tuple[str, list[RunRecord]]]


def _pairs(
    plain: _Settings, ddn: _Settings
) -> list[tuple[str, list[RunRecord], str, list[RunRecord]]]:
    """Which base setting Table 1 sets beside which DDN setting: those that ran one
    protocol (equal ``shared_settings``: every common config key and environment
    parameter), so a base at one episode limit or update rate never meets DDN at another,
    while one base setting meets each of DDN's own variants (a hypernetwork width). When
    both sides have runs, a setting left without a partner still gets its row, the other
    side's cells empty (its label names its protocol: ``variant_labels``)."""
    if not plain or not ddn:
        return []
    shared = {id(runs): shared_settings(runs[0]) for _, runs in (*plain, *ddn)}
    pairs = [
        (p, pr, d, dr) for p, pr in plain for d, dr in ddn if shared[id(pr)] == shared[id(dr)]
    ]  # fmt: skip
    paired = {id(runs) for pair in pairs for runs in (pair[1], pair[3])}
    pairs += [(p, pr, "", []) for p, pr in plain if id(pr) not in paired]
    pairs += [("", [], d, dr) for d, dr in ddn if id(dr) not in paired]
    return pairs


def _table1(sc: _Scenarios) -> Table | str:
    rows = []
    names = []
    bases = [a.name for a in all_algorithms() if a.base is None]
    for name, runs in sc.by.items():
        m = f"test/{sc.metric[name]}"
        for base in bases:
            plain = [r for r in runs if r.algo == base]
            ddn = [
                r for r in runs
                if _family(r.algo) == "ddn" and find_algorithm(r.algo).base == base
                and _is_default(r)
            ]  # fmt: skip
            student = m.replace("test/", "test_student/")
            for plain_variant, plain_runs, ddn_variant, ddn_runs in _pairs(
                sc.settings(plain), sc.settings(ddn)
            ):
                label = _named(algo_label(base), plain_variant)
                if ddn_variant and ddn_variant != plain_variant:
                    label += f" vs DDN [{ddn_variant}]"
                cells = [
                    sc.cell(plain_runs, m),
                    sc.cell(ddn_runs, m),
                    sc.cell(ddn_runs, student),
                    sc.paired(plain_runs, ddn_runs, m, m),
                    sc.paired(plain_runs, ddn_runs, m, student),
                ]
                rows.append(([name, label], cells))
                names.append(name)
    if not rows:
        return "needs runs of a base algorithm and of ddn_<base> (default switches) on one env/map"
    return Table(
        "table1",
        f"Table 1: base method vs +DDN ({sc.header_metric(names)})",
        ["scenario", "algorithm", "base", "+DDN (GGN)", "+DDN (LPN)", "GGN − base",
         "LPN − base"],
        2,
        rows,
        sc.digits(names),
        note="GGN − base, LPN − base: per seed, DDN's final value minus the base's of the "
        "same seed (the seeds both have), then mean ± spread over seeds.",
    )  # fmt: skip


def _table2(sc: _Scenarios) -> Table | str:
    rows, names = [], []
    for name, runs in sc.by.items():
        key = sc.metric[name]
        present = {r.algo for r in runs}
        # In registration order: DDN's variants first, then its rivals (CTDS, PTDE,
        # IGM-DA), each teacher / student.
        for algo in [a.name for a in all_algorithms() if a.has_student and a.name in present]:
            group = [r for r in runs if r.algo == algo and _is_default(r)]
            for variant, members in sc.settings(group):
                cells = [
                    sc.cell(members, f"test/{key}"),
                    sc.cell(members, f"test_student/{key}"),
                    sc.cell(members, "test/transfer_rate"),
                ]
                rows.append(([name, _named(algo_label(algo), variant)], cells))
                names.append(name)
    if not rows:
        return "needs DDN (or rival) runs with default switches"
    return Table(
        "table2",
        f"Table 2: teacher / student ({sc.header_metric(names)}; DDN's GGN / LPN) "
        "and transfer rate student / teacher",
        ["scenario", "algorithm", "teacher (GGN)", "student (LPN)", "transfer rate"],
        2,
        rows,
        sc.digits(names),
        note="Transfer rate: mean over seeds of each run's student / teacher (seeds where "
        "the teacher scores 0 have none).",
    )


def _ablation(
    sc: _Scenarios,
    key: str,
    title: str,
    varied: Sequence[str],
    setting: Callable[[RunRecord], tuple],
    setting_labels: Callable[[tuple], list[str]],
    label_header: list[str],
    order: Callable[[tuple], Any],
    why: str,
) -> Table | str:
    rows, names = [], []
    for name, runs in sc.by.items():
        metric = sc.metric[name]
        for algo in sorted({r.algo for r in runs if _family(r.algo) == "ddn"}):
            group = [r for r in runs if r.algo == algo and _is_default(r, varied)]
            for variant, same in sc.settings(group):
                settings: dict[tuple, list[RunRecord]] = {}
                for run in same:
                    settings.setdefault(setting(run), []).append(run)
                if len(settings) < 2:
                    continue
                for value in sorted(settings, key=order):
                    members = settings[value]
                    cells = [
                        sc.cell(members, f"test/{metric}"),
                        sc.cell(members, f"test_student/{metric}"),
                    ]
                    label = _named(algo_label(algo), variant)
                    rows.append(([name, label, *setting_labels(value)], cells))
                    names.append(name)
    if not rows:
        return why
    return Table(
        key,
        f"{title} ({sc.header_metric(names)})",
        ["scenario", "algorithm", *label_header, "GGN", "LPN"],
        2 + len(label_header),
        rows,
        sc.digits(names),
    )


def _tick(flag: bool) -> str:
    return "✓" if flag else "✗"


def _idm_setting(run: RunRecord) -> tuple:
    if not run.config.get("idm", True):
        return (False, -1.0)
    return (True, float(run.config.get("idm_mask_prob", _DEFAULTS.idm_mask_prob)))


def build_report(
    runs: Sequence[RunRecord],
    metric: str | None = None,
    aggregate: Options | None = None,
    last: int = 1,
    interval: Interval = "std",
    outcomes: bool = False,
) -> Report:
    """All tables the runs allow. ``metric``: ``win_rate`` or ``return_mean`` (default:
    win rate where every run of a scenario logs one). ``aggregate``: also the aggregate
    statistics section, with these options (its metric is ``metric``, its scores the same
    last ``last`` tests). ``last``: a run's final value is the mean of its last ``last``
    tests (default: its last test).
    ``interval``: cells show the sample std over seeds, or the 95% CI of the mean.
    ``outcomes``: also the battle-outcomes section (won / lost / timed out per run, over
    the same last ``last`` tests; :mod:`ddn.analysis.outcomes`)."""
    if last < 1:
        raise ConfigError(f"last must be a number of tests >= 1, got {last}")
    if metric is not None:
        metric = metric.removeprefix("test/")
    sc = _Scenarios(runs, metric, last)
    built: list[Table | str] = [
        _table1(sc),
        _table2(sc),
        _ablation(
            sc, "table3", "Table 3: personalized vs raw state", ["personalized_state"],
            lambda r: (bool(r.config.get("personalized_state", True)),),
            lambda v: ["personalized" if v[0] else "raw"], ["state"],
            lambda v: not v[0],
            "needs DDN runs with personalized_state true and false (other switches default)",
        ),
        _ablation(
            sc, "table4", "Table 4: distillation losses", ["distill_block", "distill_q",
                                                             "distill_feature"],
            lambda r: tuple(bool(r.config.get(k, True)) for k in
                            ("distill_block", "distill_q", "distill_feature")),
            lambda v: [_tick(x) for x in v], ["L_B", "L_Q", "L_F"],
            lambda v: tuple(not x for x in v),
            "needs DDN runs with at least two combinations of distill_block/q/feature",
        ),
        _ablation(
            sc, "table5", "Table 5: IDM off (✗) and mask probability mu", ["idm",
                                                                         "idm_mask_prob"],
            _idm_setting,
            lambda v: ["✗" if not v[0] else f"{v[1]:.2f}"], ["mu"],
            lambda v: (v[0], v[1]),
            "needs DDN runs with idm false and/or at least two idm_mask_prob values",
        ),
    ]  # fmt: skip
    tables, skipped = [], {}
    for number, item in enumerate(built, start=1):
        if isinstance(item, Table):
            tables.append(replace(item, interval=interval))
        else:
            skipped[f"Table {number}"] = item
    spread = "sample std" if interval == "std" else "95% CI of the mean (Student t)"
    notes = [f"{len(runs)} runs; cells: mean ± {spread} over seeds (n = seeds)"]
    if last > 1:
        notes.append(f"a run's final value: the mean of its last {last} tests")
    until = sorted({r.until for r in runs if r.until is not None})
    if until:
        steps = " / ".join(f"{u:,}" for u in until)
        notes.append(f"every run as it stood after {steps} environment steps (--until)")
    unfinished = [r for r in runs if not r.finished]
    if unfinished:
        notes.append(
            f"{len(unfinished)} unfinished run(s) counted with their last test: "
            + ", ".join(r.path.name for r in unfinished[:5])
            + (" ..." if len(unfinished) > 5 else "")
        )
    no_test = [r for r in runs if not r.final_metrics()]
    if no_test:
        notes.append(f"{len(no_test)} run(s) have no test metrics yet and count nowhere")
    section = ""
    if aggregate is not None:
        section = aggregate_section(runs, replace(aggregate, metric=metric, last=last))
    battles = outcomes_section(runs, last) if outcomes else ""
    return Report(tables, skipped, notes, section, battles)


def write_report(report: Report, out: str | Path) -> list[Path]:
    """``report.md`` -> report.md and report.csv (any suffix or none gives both)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix.lower() in (".md", ".csv") else out
    md, csv_path = stem.with_suffix(".md"), stem.with_suffix(".csv")
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(report.markdown())
    csv_path.write_text(report.csv())
    return [md, csv_path]
