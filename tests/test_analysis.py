"""``ddn plot`` and ``ddn report`` on fixture run folders with known numbers."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from ddn.analysis.curves import (
    aggregate,
    build_curves,
    find_runs,
    plot_curves,
    t_quantile_975,
    variant_labels,
)
from ddn.analysis.plot import plot_learning_curve
from ddn.analysis.report import build_report, write_report
from ddn.cli import main
from ddn.config import Config, ConfigError


def write_run(
    root: Path,
    name: str,
    algo: str,
    seed: int,
    tests: list[tuple[int, float]],
    env: str = "matrix",
    map_name: str | None = None,
    student: list[float] | None = None,
    summary: bool = True,
    returns_only: bool = False,
    **cfg: object,
) -> Path:
    """A run folder as Experiment writes it: config.yaml, metrics.jsonl, summary.json.
    ``tests``: (t_env, teacher win rate); the return is 10x the win rate."""
    run = root / name
    run.mkdir(parents=True)
    config = Config(env_name=env, map_name=map_name, algo=algo, seed=seed, **cfg).to_dict()
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    events = []
    for i, (t, win) in enumerate(tests):
        event: dict = {"t_env": t, "episode": t, "test/return_mean": 10 * win}
        if not returns_only:
            event["test/win_rate"] = win
        if student is not None:
            event["test_student/return_mean"] = 10 * student[i]
            if not returns_only:
                event["test_student/win_rate"] = student[i]
            event["test/transfer_rate"] = student[i] / win if win else None
        events.append(event)
        events.append({"t_env": t + 1, "episode": t, "train/return_mean": -1.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    if summary:
        last = {k: v for k, v in events[-2].items() if k.startswith("test")}
        (run / "summary.json").write_text(
            json.dumps({"t_env": tests[-1][0], "episode": 1, "finished": True, **last})
        )
    return run


GRID = [0, 100, 200]


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """matrix: vdn (3 seeds) and ddn_vdn (2 seeds); smax 3m: qmix (2 seeds)."""
    root = tmp_path / "runs"
    for seed, final in enumerate([0.2, 0.4, 0.6]):
        write_run(root, f"vdn-{seed}", "vdn", seed, list(zip(GRID, [0.0, 0.1, final], strict=True)))
    for seed, (g, s) in enumerate([(0.8, 0.6), (1.0, 0.9)]):
        write_run(
            root, f"ddn-{seed}", "ddn_vdn", seed, list(zip(GRID, [0.0, 0.5, g], strict=True)),
            student=[0.0, 0.25, s],
        )  # fmt: skip
    for seed in range(2):
        write_run(
            root, f"qmix-3m-{seed}", "qmix", seed, list(zip(GRID, [0.0, 0.3, 0.5], strict=True)),
            env="smax", map_name="3m",
        )  # fmt: skip
    return root


# ---------------------------------------------------------------------- curves
def test_aggregate_mean_std_ci_on_a_common_grid():
    a = (np.array([0.0, 100, 200]), np.array([0.0, 1.0, 2.0]))
    b = (np.array([0.0, 50, 200]), np.array([1.0, 2.0, 5.0]))  # other test steps
    c = (np.array([0.0, 100]), np.array([2.0, 3.0]))  # unfinished: stops at 100
    x, mean, std, lo, _, n = aggregate([a, b, c], band="std")
    assert x.tolist() == [0, 50, 100, 200]
    # b at 100: 2 + (5-2) * 50/150 = 3; a at 50: 0.5; c at 50: 2.5; c absent at 200.
    at = {
        0: [0.0, 1.0, 2.0],
        50: [0.5, 2.0, 2.5],
        100: [1.0, 3.0, 3.0],
        200: [2.0, 5.0],
    }
    for i, t in enumerate(x):
        vals = np.array(at[int(t)])
        assert n[i] == len(vals)
        assert mean[i] == pytest.approx(vals.mean())
        assert std[i] == pytest.approx(vals.std(ddof=1))
        assert lo[i] == pytest.approx(vals.mean() - vals.std(ddof=1))
    _, mean_ci, _, _, hi_ci, _ = aggregate([a, b, c], band="ci")
    half = 4.303 * np.std([0.0, 1.0, 2.0], ddof=1) / math.sqrt(3)  # t_{.975, 2}
    assert hi_ci[0] - mean_ci[0] == pytest.approx(half)
    half2 = 12.706 * np.std([2.0, 5.0], ddof=1) / math.sqrt(2)
    assert hi_ci[-1] - mean_ci[-1] == pytest.approx(half2)
    assert t_quantile_975(1000) == pytest.approx(1.9623, abs=1e-3)


def test_grouping_panels_lines_and_ddn_teacher_student(runs):
    found = find_runs([runs])
    assert len(found) == 7
    metric, panels = build_curves(found)
    assert metric == "test/win_rate"  # every run logs one
    assert set(panels) == {("matrix", None), ("smax", "3m")}
    lines = {c.label: c for c in panels[("matrix", None)]}
    assert set(lines) == {"VDN", "VDN_DDN GGN", "VDN_DDN LPN"}
    assert lines["VDN_DDN LPN"].role == "student"
    assert lines["VDN_DDN LPN"].metric == "test_student/win_rate"
    vdn = lines["VDN"]
    assert vdn.x.tolist() == GRID and vdn.n.tolist() == [3, 3, 3]
    assert vdn.mean[-1] == pytest.approx(0.4)
    assert vdn.std[-1] == pytest.approx(0.2)  # sample std of 0.2, 0.4, 0.6
    assert lines["VDN_DDN GGN"].mean[-1] == pytest.approx(0.9)
    assert lines["VDN_DDN LPN"].mean.tolist() == pytest.approx([0.0, 0.25, 0.75])
    assert [c.label for c in panels[("smax", "3m")]] == ["QMIX"]
    # Return instead of win rate: the teacher metric maps to its student counterpart.
    _, by_return = build_curves(found, "test/return_mean")
    ret = {c.label: c for c in by_return[("matrix", None)]}
    assert ret["VDN_DDN LPN"].mean[-1] == pytest.approx(7.5)


def test_runs_of_one_setting_across_ddn_versions_are_one_variant(tmp_path):
    """A run recorded before ddn had a key (its config.yaml lacks it) ran with that key's
    default, and keys of execution or record keeping (threads, loggers, checkpoints kept)
    do not make a variant; a key that changes learning still does."""
    old = write_run(tmp_path, "old", "qmix", 0, [(0, 0.0), (10, 0.5)])
    config = yaml.safe_load((old / "config.yaml").read_text())
    for key in ("keep_checkpoints", "loggers", "runaway_q_factor", "threads"):
        del config[key]
    (old / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    write_run(tmp_path, "new", "qmix", 1, [(0, 0.0), (10, 0.7)], threads=1, keep_checkpoints=0)
    write_run(tmp_path, "other", "qmix", 2, [(0, 0.0), (10, 0.7)], gamma=0.9)
    labels = {r.path.name: label for r, label in zip_labels(find_runs([tmp_path]))}
    assert labels == {"old": "gamma=0.99", "new": "gamma=0.99", "other": "gamma=0.9"}


def zip_labels(runs):
    labels = variant_labels(runs)
    return [(r, labels[r.path]) for r in runs]


def test_variants_get_their_own_lines(tmp_path):
    for seed in range(2):
        write_run(tmp_path, f"a{seed}", "ddn", seed, [(0, 0.0), (10, 0.5)], student=[0, 0.5])
        write_run(
            tmp_path, f"b{seed}", "ddn", seed, [(0, 0.0), (10, 0.7)], student=[0, 0.5],
            idm_mask_prob=0.5,
        )  # fmt: skip
    found = find_runs([tmp_path])
    assert set(variant_labels(found).values()) == {"idm_mask_prob=0.75", "idm_mask_prob=0.5"}
    _, panels = build_curves(found)
    labels = {c.label: c for c in panels[("matrix", None)]}
    assert labels["DDN [idm_mask_prob=0.5] GGN"].mean[-1] == pytest.approx(0.7)
    assert len(labels) == 4


def test_panels_by_base_method_put_each_base_beside_ddn_on_it(tmp_path, capsys):
    """``--panels base`` (the paper's Figure 5): a panel per base method, holding the
    base and DDN on it (``ddn`` is DDN on QMIX); curves are those of the map panel."""
    for seed in range(2):
        write_run(tmp_path, f"v{seed}", "vdn", seed, [(0, 0.0), (10, 0.4)])
        write_run(tmp_path, f"dv{seed}", "ddn_vdn", seed, [(0, 0.0), (10, 0.6)], student=[0, 0.5])
        write_run(tmp_path, f"q{seed}", "qmix", seed, [(0, 0.0), (10, 0.3)])
        write_run(tmp_path, f"d{seed}", "ddn", seed, [(0, 0.0), (10, 0.9)], student=[0, 0.8])
    found = find_runs([tmp_path])
    _, by_map = build_curves(found)
    _, by_base = build_curves(found, panels_by="base")
    assert list(by_base) == [("matrix", None, "qmix"), ("matrix", None, "vdn")]
    names = {panel[2]: sorted(c.label for c in curves) for panel, curves in by_base.items()}
    assert names == {
        "qmix": ["DDN GGN", "DDN LPN", "QMIX"],
        "vdn": ["VDN", "VDN_DDN GGN", "VDN_DDN LPN"],
    }
    means = {c.label: c.mean[-1] for curves in by_base.values() for c in curves}
    assert means == {c.label: c.mean[-1] for c in by_map[("matrix", None)]}
    assert means["VDN_DDN LPN"] == pytest.approx(0.5)
    out = tmp_path / "fig5"
    assert main(["plot", str(tmp_path), "--panels", "base", "--out", str(out)]) == 0
    assert "2 panel(s), 6 line(s)" in capsys.readouterr().out
    assert out.with_suffix(".png").stat().st_size > 0


def test_one_change_at_a_time_variants_name_only_their_change(tmp_path):
    """A sweep's variants each change one setting from the defaults: with several keys
    varying, each run names only where it differs from the group's reference (each key's
    most common value, ties to ddn's default), and the reference run is unlabelled."""
    tests = [(0, 0.0), (10, 0.5)]
    for seed in range(2):
        write_run(tmp_path, f"default{seed}", "ddn", seed, tests, student=[0, 0.5])
    write_run(tmp_path, "h16", "ddn", 0, tests, student=[0, 0.5], fusion_hypernet_dim=16)
    write_run(
        tmp_path, "literal", "ddn", 0, tests, student=[0, 0.5], idm_coef=1.0,
        idm_normalize=False,
    )  # fmt: skip
    labels = {r.path.name: label for r, label in zip_labels(find_runs([tmp_path]))}
    assert labels == {
        "default0": "",
        "default1": "",
        "h16": "fusion_hypernet_dim=16",
        "literal": "idm_coef=1.0, idm_normalize=False",
    }
    # A tie between two values goes to ddn's default as the reference.
    tied = tmp_path / "tied"
    write_run(tied, "a", "qmix", 0, tests, gamma=0.9, batch_size=16)
    write_run(tied, "b", "qmix", 0, tests, gamma=0.99, batch_size=32)
    labels = {r.path.name: label for r, label in zip_labels(find_runs([tied]))}
    assert labels == {"a": "batch_size=16, gamma=0.9", "b": ""}


def test_an_algorithm_at_one_protocol_names_it_when_its_panel_has_two(tmp_path):
    """A key every algorithm has, constant within DDN's runs but not across the panel
    (its base at two update rates), is named on DDN's runs too, so no line or row of one
    protocol reads as if it were the other's; an algorithm-specific key (the fusion
    width) never is, and a panel of one protocol stays unlabelled."""
    tests = [(0, 0.0), (10, 0.5)]
    for upi in (1, 8):
        write_run(tmp_path, f"qmix{upi}", "qmix", 0, tests, updates_per_iteration=upi)
    write_run(tmp_path, "ddn", "ddn", 0, tests, student=[0, 0.5])
    write_run(tmp_path, "ddn16", "ddn", 0, tests, student=[0, 0.5], fusion_hypernet_dim=16)
    write_run(tmp_path, "other_map", "ddn", 0, tests, map_name="x", student=[0, 0.5])
    labels = {r.path.name: label for r, label in zip_labels(find_runs([tmp_path]))}
    assert labels == {
        "qmix1": "updates_per_iteration=1",
        "qmix8": "updates_per_iteration=8",
        "ddn": "fusion_hypernet_dim=4, updates_per_iteration=1",
        "ddn16": "fusion_hypernet_dim=16, updates_per_iteration=1",
        "other_map": "",
    }


def test_a_run_repeated_by_two_campaigns_counts_once(tmp_path):
    """The same setting and seed in two result folders is one sample: the run that got
    furthest is kept, with a warning naming both; another seed is a second sample."""
    write_run(tmp_path / "a", "short", "qmix", 0, [(0, 0.0), (10, 0.5)], summary=False)
    write_run(tmp_path / "b", "long", "qmix", 0, [(0, 0.0), (10, 0.5), (20, 0.9)])
    write_run(tmp_path / "b", "seed1", "qmix", 1, [(0, 0.0), (10, 0.7)])
    with pytest.warns(UserWarning, match="short repeats .*long .*counted once"):
        found = find_runs([tmp_path / "a", tmp_path / "b"])
    assert sorted(r.path.name for r in found) == ["long", "seed1"]


def test_plot_writes_png_and_svg(runs, tmp_path):
    written, _, _ = plot_curves(find_runs([runs]), tmp_path / "fig" / "curves.png")
    assert [p.name for p in written] == ["curves.png", "curves.svg"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in written[1].read_text()[:500]
    # The single-run plot the demo uses still works.
    single = plot_learning_curve(runs / "vdn-0", tmp_path / "one.png")
    assert single.stat().st_size > 0


def test_default_metric_falls_back_to_return(tmp_path):
    write_run(tmp_path, "r0", "vdn", 0, [(0, 0.1), (10, 0.3)], returns_only=True)
    metric, panels = build_curves(find_runs([tmp_path]))
    assert metric == "test/return_mean"
    assert panels[("matrix", None)][0].mean[-1] == pytest.approx(3.0)


# ---------------------------------------------------------------------- report
def _cells(report) -> dict[tuple[str, str, str, str, str], tuple[float, float, int]]:
    """(table, scenario, algorithm, setting, column) -> (mean, std, n), unrounded."""
    out = {}
    for table in report.tables:
        setting_names = table.header[2 : table.n_label_cols]
        for labels, cells in table.rows:
            setting = " ".join(f"{k}={v}" for k, v in zip(setting_names, labels[2:], strict=True))
            for column, cell in zip(table.header[table.n_label_cols :], cells, strict=True):
                if cell is not None:
                    out[(table.key, labels[0], labels[1], setting, column)] = cell.stats
    return out


def test_report_tables_1_and_2(runs, tmp_path):
    report = build_report(find_runs([runs]))
    assert [t.key for t in report.tables] == ["table1", "table2"]
    assert set(report.skipped) == {"Table 3", "Table 4", "Table 5"}
    cells = _cells(report)
    mean, std, n = cells[("table1", "matrix", "VDN", "", "base")]
    assert (mean, n) == (pytest.approx(0.4), 3) and std == pytest.approx(0.2)
    mean, std, n = cells[("table1", "matrix", "VDN", "", "+DDN (GGN)")]
    assert (mean, n) == (pytest.approx(0.9), 2)
    assert std == pytest.approx(np.std([0.8, 1.0], ddof=1))
    # DDN minus VDN per seed, over the seeds both have (0 and 1; VDN's seed 2 has no
    # partner): GGN 0.8 - 0.2 and 1.0 - 0.4, LPN 0.6 - 0.2 and 0.9 - 0.4.
    mean, std, n = cells[("table1", "matrix", "VDN", "", "GGN − base")]
    assert (mean, std, n) == (pytest.approx(0.6), pytest.approx(0.0), 2)
    mean, std, n = cells[("table1", "matrix", "VDN", "", "LPN − base")]
    assert (mean, n) == (pytest.approx(0.45), 2)
    assert std == pytest.approx(np.std([0.4, 0.5], ddof=1))
    assert cells[("table2", "matrix", "VDN_DDN", "", "student (LPN)")][0] == pytest.approx(0.75)
    rate = cells[("table2", "matrix", "VDN_DDN", "", "transfer rate")]
    assert rate[0] == pytest.approx((0.6 / 0.8 + 0.9 / 1.0) / 2) and rate[2] == 2
    md = report.markdown()
    assert "| matrix | VDN | 0.400 ± 0.200 (n=3) | 0.900 ± 0.141 (n=2) |" in md
    # smax/3m has QMIX only: no Table 1 row there.
    assert not any(k[1] == "3m" for k in cells)

    written = write_report(report, tmp_path / "out" / "report.md")
    assert [p.name for p in written] == ["report.md", "report.csv"]
    rows = list(csv.DictReader(io.StringIO(written[1].read_text())))
    base = next(r for r in rows if r["table"] == "table1" and r["column"] == "base")
    assert base["mean"] == "0.4" and base["n"] == "3" and base["values"] == "0.2 0.4 0.6"


def test_report_cells_with_the_95_percent_ci(runs, tmp_path):
    """``interval="ci"``: mean ± t_{0.975, n-1} * std / sqrt(n); the CSV has both."""
    report = build_report(find_runs([runs]), interval="ci")
    half = 4.303 * 0.2 / math.sqrt(3)  # VDN's three seeds 0.2, 0.4, 0.6
    assert f"| matrix | VDN | 0.400 ± {half:.3f} (n=3) |" in report.markdown()
    assert "95% CI of the mean" in report.notes[0]
    written = write_report(report, tmp_path / "ci")
    rows = list(csv.DictReader(io.StringIO(written[1].read_text())))
    base = next(r for r in rows if r["table"] == "table1" and r["column"] == "base")
    assert float(base["ci95"]) == pytest.approx(half, rel=1e-3) and base["std"] == "0.2"


def test_report_ablation_tables_and_last_event_fallback(tmp_path):
    def ddn(name, seed, win, student, summary=True, **cfg):
        write_run(
            tmp_path, name, "ddn", seed, [(0, 0.0), (10, win)], student=[0.0, student],
            summary=summary, **cfg,
        )  # fmt: skip

    ddn("full0", 0, 0.9, 0.8)
    ddn("full1", 1, 0.7, 0.6, summary=False)  # killed: its last test event counts
    ddn("raw0", 0, 0.5, 0.4, personalized_state=False)
    ddn("noB0", 0, 0.6, 0.3, distill_block=False)
    ddn("noidm0", 0, 0.4, 0.35, idm=False)
    ddn("mu05", 0, 0.3, 0.2, idm_mask_prob=0.5)
    report = build_report(find_runs([tmp_path]))
    assert [t.key for t in report.tables] == ["table2", "table3", "table4", "table5"]
    assert "Table 1" in report.skipped
    assert any("unfinished" in note for note in report.notes)
    cells = _cells(report)
    assert cells[("table2", "matrix", "DDN", "", "teacher (GGN)")][:1] == (pytest.approx(0.8),)
    assert cells[("table2", "matrix", "DDN", "", "teacher (GGN)")][2] == 2
    assert cells[("table3", "matrix", "DDN", "state=personalized", "GGN")][0] == pytest.approx(0.8)
    assert cells[("table3", "matrix", "DDN", "state=raw", "LPN")][0] == pytest.approx(0.4)
    assert cells[("table4", "matrix", "DDN", "L_B=✗ L_Q=✓ L_F=✓", "LPN")][0] == pytest.approx(0.3)
    assert cells[("table4", "matrix", "DDN", "L_B=✓ L_Q=✓ L_F=✓", "LPN")][2] == 2
    table5 = {k[3]: v for k, v in cells.items() if k[0] == "table5" and k[4] == "GGN"}
    assert set(table5) == {"mu=✗", "mu=0.50", "mu=0.75"}
    assert table5["mu=✗"][0] == pytest.approx(0.4)
    md = report.markdown()
    assert "| matrix | DDN | 0.500 (n=1) | 0.400 (n=1) |" not in md  # rows carry settings
    assert "| matrix | DDN | raw | 0.500 (n=1) | 0.400 (n=1) |" in md


def test_report_never_pools_runs_of_different_settings(tmp_path):
    """Runs of one algorithm that differ in a key besides the ablation switches (a sweep's
    variants) get a row each, named by that key, in Tables 1, 2 and the ablations."""
    write_run(tmp_path, "vdn0", "vdn", 0, [(0, 0.0), (10, 0.4)])
    for seed, win in enumerate((0.8, 1.0)):
        write_run(tmp_path, f"d{seed}", "ddn_vdn", seed, [(0, 0.0), (10, win)], student=[0, 0.5])
    write_run(
        tmp_path, "wide", "ddn_vdn", 0, [(0, 0.0), (10, 0.2)], student=[0, 0.1],
        fusion_hypernet_dim=64,
    )  # fmt: skip
    for name, win, personalized in (("wide_raw", 0.1, False), ("narrow_raw", 0.3, False)):
        dim = 64 if name == "wide_raw" else 4
        write_run(
            tmp_path, name, "ddn_vdn", 0, [(0, 0.0), (10, win)], student=[0, 0.1],
            fusion_hypernet_dim=dim, personalized_state=personalized,
        )  # fmt: skip
    cells = _cells(build_report(find_runs([tmp_path])))
    # One key varies (the width), so both settings are named by it.
    narrow, wide = "[fusion_hypernet_dim=4]", "[fusion_hypernet_dim=64]"
    row = ("table1", "matrix", f"VDN vs DDN {narrow}", "", "+DDN (GGN)")
    assert cells[row][::2] == (pytest.approx(0.9), 2)
    row = ("table1", "matrix", f"VDN vs DDN {wide}", "", "+DDN (GGN)")
    assert cells[row][::2] == (pytest.approx(0.2), 1)
    assert cells[("table2", "matrix", f"VDN_DDN {narrow}", "", "teacher (GGN)")][2] == 2
    assert cells[("table2", "matrix", f"VDN_DDN {wide}", "", "teacher (GGN)")][0] == 0.2
    raw = ("table3", "matrix", f"VDN_DDN {wide}", "state=raw", "GGN")
    assert cells[raw][0] == pytest.approx(0.1)
    raw = ("table3", "matrix", f"VDN_DDN {narrow}", "state=raw", "GGN")
    assert cells[raw][0] == pytest.approx(0.3)


def test_report_final_value_over_the_last_k_tests(tmp_path, capsys):
    """``--last K``: a run's final value is the mean of its last K tests (fewer when it
    has fewer); the default stays its last test."""
    write_run(tmp_path, "v0", "vdn", 0, [(0, 0.0), (10, 0.5), (20, 0.7), (30, 0.9)])
    write_run(tmp_path, "d0", "ddn_vdn", 0, [(0, 0.0), (10, 0.4), (20, 0.6)], student=[0, 0.2, 0.4])
    runs = find_runs([tmp_path])
    base = ("table1", "matrix", "VDN", "", "base")
    assert _cells(build_report(runs))[base][0] == pytest.approx(0.9)
    cells = _cells(build_report(runs, last=2))
    assert cells[base][0] == pytest.approx(0.8)
    assert cells[("table1", "matrix", "VDN", "", "+DDN (LPN)")][0] == pytest.approx(0.3)
    assert _cells(build_report(runs, last=10))[base][0] == pytest.approx(0.525)
    with pytest.raises(ConfigError, match="last must be"):
        build_report(runs, last=0)
    # A test that left a metric empty (no transfer rate: the teacher scored 0) is not
    # filled in from an older test.
    write_run(
        tmp_path, "d1", "ddn_vdn", 1, [(0, 0.0), (10, 0.5), (20, 0.0), (30, 0.0)],
        student=[0, 0.25, 0, 0],
    )  # fmt: skip
    (d1,) = [r for r in find_runs([tmp_path]) if r.path.name == "d1"]
    assert "test/transfer_rate" not in d1.final_metrics(last=2)
    assert d1.final_metrics(last=3)["test/transfer_rate"] == pytest.approx(0.5)
    # Over K tests the transfer rate is the student's mean over the teacher's mean
    # (0.3 / 0.5 = 0.6), not the mean of the per-test ratios ((0.5 + 1.0) / 2 = 0.75).
    write_run(tmp_path, "d2", "ddn_vdn", 2, [(0, 0.8), (10, 0.2)], student=[0.4, 0.2])
    (d2,) = [r for r in find_runs([tmp_path]) if r.path.name == "d2"]
    assert d2.final_metrics(last=2)["test/transfer_rate"] == pytest.approx(0.6)
    assert main(["report", str(tmp_path), "--last", "2", "--out", str(tmp_path / "r")]) == 0
    assert "the mean of its last 2 tests" in capsys.readouterr().out


def test_until_reads_each_run_as_it_stood_at_that_step(tmp_path, capsys):
    """``--until STEP``: a run's tests after STEP are left out and its last test up to
    STEP is its final one; a run that stopped short of STEP counts as unfinished."""
    write_run(tmp_path, "v0", "vdn", 0, [(0, 0.0), (10, 0.5), (20, 0.7), (30, 0.9)])
    write_run(tmp_path, "v1", "vdn", 1, [(0, 0.0), (10, 0.3)])  # a 10-step budget
    write_run(tmp_path, "d0", "ddn_vdn", 0, [(0, 0.0), (20, 0.4), (30, 1.0)], student=[0, 0.2, 1])
    d0, v0, v1 = find_runs([tmp_path], until=20)
    assert (v0.until, v0.finished, v1.finished) == (20, True, False)
    assert max(e["t_env"] for e in v0.events) == 20  # its train event at 21 is gone too
    assert v0.final_metrics()["test/win_rate"] == pytest.approx(0.7)
    assert v0.final_metrics(last=2)["test/win_rate"] == pytest.approx(0.6)
    assert v1.final_metrics()["test/win_rate"] == pytest.approx(0.3)
    base = ("table1", "matrix", "VDN", "", "base")
    report = build_report([d0, v0, v1])
    cells = _cells(report)
    assert cells[base][0] == pytest.approx(0.5)  # (0.7 + 0.3) / 2
    assert cells[("table1", "matrix", "VDN", "", "+DDN (LPN)")][0] == pytest.approx(0.2)
    assert "every run as it stood after 20 environment steps (--until)" in report.notes
    assert "1 unfinished run(s) counted with their last test: v1" in report.notes
    _, panels = build_curves([d0, v0, v1], "test/win_rate")
    assert max(curve.x[-1] for curve in panels[("matrix", None)]) == 20
    with pytest.raises(ConfigError, match="until must be"):
        find_runs([tmp_path], until=0)
    assert main(["report", str(tmp_path), "--until", "20", "--out", str(tmp_path / "r")]) == 0
    assert "as it stood after 20 environment steps" in capsys.readouterr().out
    assert main(["plot", str(tmp_path), "--until", "10", "--out", str(tmp_path / "c.png")]) == 0
    assert main(["report", str(tmp_path), "--until", "-5"]) == 2


def test_until_reads_a_run_whose_budget_ends_there_whole(tmp_path):
    """A run stops at the first iteration that reaches its t_max, so its final test lies
    a few steps past it: read at its own t_max, it keeps that test. A finished run with a
    smaller budget is read whole too, but did not get that far."""
    write_run(tmp_path, "v0", "vdn", 0, [(0, 0.0), (10, 0.5), (22, 0.9)], t_max=20)
    write_run(tmp_path, "v1", "vdn", 1, [(0, 0.0), (12, 0.3)], t_max=10)
    write_run(tmp_path, "v2", "vdn", 2, [(0, 0.0), (10, 0.4), (22, 0.8)])  # t_max 1M
    v0, v1, v2 = find_runs([tmp_path], until=20)
    assert [r.finished for r in (v0, v1, v2)] == [True, False, True]
    assert [r.final_metrics()["test/win_rate"] for r in (v0, v1, v2)] == [0.9, 0.3, 0.4]
    assert max(e["t_env"] for e in v0.events) == 23 and max(e["t_env"] for e in v2.events) == 11


# ---------------------------------------------------------------------- CLI
def test_cli_plot_and_report(runs, tmp_path, capsys):
    assert main(["plot", str(runs), "--out", str(tmp_path / "c.png"), "--band", "ci"]) == 0
    assert (tmp_path / "c.png").is_file() and (tmp_path / "c.svg").is_file()
    assert "2 panel(s), 4 line(s) of test/win_rate" in capsys.readouterr().out
    assert main(["report", str(runs), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r.md").is_file() and (tmp_path / "r.csv").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["plot", str(empty)]) == 2
    assert capsys.readouterr().err.startswith("ddn: error: no run folders found")


def test_cli_names_a_repeated_run_in_one_line(tmp_path, capsys):
    write_run(tmp_path / "a", "first", "qmix", 0, [(0, 0.0), (10, 0.5)])
    write_run(tmp_path / "b", "again", "qmix", 0, [(0, 0.0), (10, 0.5)])
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("ddn: warning: ") and "counted once" in err


def test_iql_labels():
    from ddn.analysis.curves import algo_label

    assert algo_label("iql") == "IQL"
    assert algo_label("ddn_iql") == "IQL_DDN"


def test_report_table2_has_the_rivals_rows_after_ddns(tmp_path):
    write_run(tmp_path, "ddn0", "ddn", 0, [(0, 0.0), (10, 0.8)], student=[0.0, 0.6])
    write_run(tmp_path, "ctds0", "ctds", 0, [(0, 0.0), (10, 0.7)], student=[0.0, 0.35])
    write_run(tmp_path, "ctds1", "ctds", 1, [(0, 0.0), (10, 0.5)], student=[0.0, 0.45])
    write_run(tmp_path, "ptde0", "ptde", 0, [(0, 0.0), (10, 1.0)], student=[0.0, 0.9])
    write_run(tmp_path, "da0", "igm_da", 0, [(0, 0.0), (10, 0.4)], student=[0.0, 0.3])
    write_run(tmp_path, "bc0", "igm_bc", 0, [(0, 0.0), (10, 0.5)], student=[0.0, 0.1])
    write_run(tmp_path, "vdn0", "ctds_vdn", 0, [(0, 0.0), (10, 0.2)], student=[0.0, 0.2])
    report = build_report(find_runs([tmp_path]))
    (table2,) = [t for t in report.tables if t.key == "table2"]
    assert [labels[1] for labels, _ in table2.rows] == [
        "DDN", "CTDS", "CTDS (VDN)", "PTDE", "IGM-DA (DAgger)", "IGM-DA (BC)",
    ]  # fmt: skip
    cells = _cells(report)
    assert cells[("table2", "matrix", "CTDS", "", "teacher (GGN)")][0] == pytest.approx(0.6)
    assert cells[("table2", "matrix", "CTDS", "", "student (LPN)")][0] == pytest.approx(0.4)
    rate = cells[("table2", "matrix", "CTDS", "", "transfer rate")]
    assert rate[0] == pytest.approx((0.5 + 0.9) / 2) and rate[2] == 2
    assert cells[("table2", "matrix", "IGM-DA (BC)", "", "student (LPN)")][0] == pytest.approx(0.1)


def test_report_table1_pairs_base_and_ddn_runs_of_the_same_setting(tmp_path):
    """Base and DDN runs at two episode limits: each limit's base beside the same limit's
    DDN, never across; a limit only the base ran keeps its row with empty DDN cells."""

    def at_limit(run: Path, limit: int) -> None:
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["env"] = {"episode_limit": limit}
        (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    for limit, base_win, ddn_win in ((101, 0.1, 0.3), (250, 0.5, 0.2)):
        at_limit(write_run(tmp_path, f"vdn-{limit}", "vdn", 0, [(10, base_win)]), limit)
        ddn = write_run(tmp_path, f"ddn-{limit}", "ddn_vdn", 0, [(10, ddn_win)], student=[0.1])
        at_limit(ddn, limit)
    at_limit(write_run(tmp_path, "vdn-400", "vdn", 0, [(10, 0.7)]), 400)
    cells = _cells(build_report(find_runs([tmp_path])))
    table1 = {key[2] for key in cells if key[0] == "table1"}
    assert table1 == {f"VDN [env.episode_limit={n}]" for n in (101, 250, 400)}
    for limit, base_win, ddn_win in ((101, 0.1, 0.3), (250, 0.5, 0.2)):
        row = ("table1", "matrix", f"VDN [env.episode_limit={limit}]", "")
        assert cells[(*row, "base")][0] == pytest.approx(base_win)
        assert cells[(*row, "+DDN (GGN)")][0] == pytest.approx(ddn_win)
        assert cells[(*row, "+DDN (LPN)")][0] == pytest.approx(0.1)
    lone = ("table1", "matrix", "VDN [env.episode_limit=400]", "")
    assert cells[(*lone, "base")][0] == pytest.approx(0.7)
    assert (*lone, "+DDN (GGN)") not in cells


def test_report_table1_never_pairs_runs_of_different_protocols(tmp_path):
    """DDN runs at one protocol only (so unlabelled among themselves) never stand beside a
    base setting of another protocol: the base at 8 updates per iteration keeps its row
    alone, and where the two sides share no protocol at all, each row names its own."""
    for seed, upi, win in ((0, 1, 0.1), (1, 1, 0.3), (0, 8, 0.9)):
        write_run(tmp_path / "a", f"vdn-{upi}-{seed}", "vdn", seed, [(10, win)],
                  updates_per_iteration=upi)  # fmt: skip
    for seed in (0, 1):
        write_run(tmp_path / "a", f"ddn-{seed}", "ddn_vdn", seed, [(10, 0.5)], student=[0.4])
    cells = _cells(build_report(find_runs([tmp_path / "a"])))
    same = ("table1", "matrix", "VDN [updates_per_iteration=1]", "")
    assert cells[(*same, "base")][::2] == (pytest.approx(0.2), 2)
    assert cells[(*same, "GGN − base")][::2] == (pytest.approx(0.3), 2)
    other = ("table1", "matrix", "VDN [updates_per_iteration=8]", "")
    assert cells[(*other, "base")][::2] == (pytest.approx(0.9), 1)
    assert (*other, "+DDN (GGN)") not in cells and (*other, "GGN − base") not in cells

    write_run(tmp_path / "b", "vdn", "vdn", 0, [(10, 0.9)], updates_per_iteration=8)
    write_run(tmp_path / "b", "ddn", "ddn_vdn", 0, [(10, 0.5)], student=[0.4])
    cells = _cells(build_report(find_runs([tmp_path / "b"])))
    rows = {key[2:]: value[::2] for key, value in cells.items() if key[0] == "table1"}
    assert rows == {
        ("VDN [updates_per_iteration=8]", "", "base"): (pytest.approx(0.9), 1),
        ("VDN vs DDN [updates_per_iteration=1]", "", "+DDN (GGN)"): (pytest.approx(0.5), 1),
        ("VDN vs DDN [updates_per_iteration=1]", "", "+DDN (LPN)"): (pytest.approx(0.4), 1),
    }
