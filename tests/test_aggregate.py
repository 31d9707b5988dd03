"""Aggregate statistics (rliable), ``ddn plot --kind profile/aggregate`` and the marl-eval
and PyMARL exports, on fixture run folders with hand-computed answers."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("rliable", reason="the stats extra: pip install 'ddn[stats]'")

from rliable import metrics

from ddn.analysis.aggregate import (
    Options,
    aggregate_metrics,
    aggregate_section,
    collect_scores,
    interval_estimates,
    parse_ranges,
    performance_profiles,
    probability_of_improvement,
)
from ddn.analysis.curves import find_runs
from ddn.analysis.export import marl_eval_data, pymarl_info, pymarl_name
from ddn.analysis.report import build_report
from ddn.cli import main
from ddn.config import Config, ConfigError
from ddn.logging import read_metrics


# ---------------------------------------------------------------------- known answers
def test_median_iqm_mean_of_a_fixed_table():
    # 4 runs x 3 tasks. Task means 0.3, 0.85, 0.3: median 0.3, mean 1.45 / 3. Sorted
    # values 0 .1 .2 .3 .3 .4 .5 .6 .7 .8 .9 1; the IQM drops 3 at each end and
    # averages .3 .3 .4 .5 .6 .7 = 2.8 / 6.
    table = np.array([[0.0, 1.0, 0.1], [0.2, 0.9, 0.5], [0.4, 0.8, 0.3], [0.6, 0.7, 0.3]])
    assert aggregate_metrics(table) == pytest.approx([0.3, 2.8 / 6, 1.45 / 3])


def test_probability_of_improvement_of_two_fixed_score_sets():
    # Task 1: X {2, 4, 6} vs Y {1, 2, 3}: 2 beats 1 and ties 2 (1.5), 4 and 6 beat all
    # (3 + 3): 7.5 / 9. Task 2: X {5, 6, 7} beats every Y {1, 2, 3}: 1. Mean 0.91667.
    x = np.array([[2.0, 5.0], [4.0, 6.0], [6.0, 7.0]])
    y = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    p, (lo, hi) = probability_of_improvement(x, y, reps=200, seed=0)
    assert p == pytest.approx((7.5 / 9 + 1) / 2)
    assert 0 <= lo <= p <= hi <= 1
    # Runs may differ in number: X {1, 3} vs Y {2}: 1 of 2 pairs.
    assert probability_of_improvement(np.array([[1.0], [3.0]]), np.array([[2.0]]), 50)[0] == 0.5


@pytest.mark.slow
def test_bootstrap_ci_covers_the_true_mean_at_about_its_nominal_rate():
    """Synthetic 10 runs x 3 tasks, task means 0.2, 0.5, 0.8 (true aggregate mean 0.5):
    the 95% stratified-bootstrap CI of the mean should hold 0.5 in about 95% of trials."""
    rng = np.random.default_rng(0)
    trials, hits = 200, 0

    def mean(s: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_mean(s)])

    for trial in range(trials):
        scores = rng.normal(loc=[0.2, 0.5, 0.8], scale=0.3, size=(10, 3))
        _, ci = interval_estimates({"a": scores}, reps=300, seed=trial, func=mean)
        hits += bool(ci["a"][0, 0] <= 0.5 <= ci["a"][1, 0])
    # Binomial sd at 200 trials is 1.5 points; the percentile bootstrap with 10 runs per
    # task runs slightly narrow, hence the wider lower margin.
    assert 0.88 <= hits / trials <= 0.99


def test_bootstrap_is_seeded_and_each_algorithm_resampled_on_its_own():
    rng = np.random.default_rng(1)
    a, b = rng.random((5, 2)), rng.random((5, 2))
    _, one = interval_estimates({"a": a}, reps=100, seed=3)
    _, two = interval_estimates({"b": b, "a": a}, reps=100, seed=3)
    np.testing.assert_array_equal(one["a"], two["a"])
    _, other = interval_estimates({"a": a}, reps=100, seed=4)
    assert not np.array_equal(one["a"], other["a"])
    state = np.random.get_state()[1].copy()
    interval_estimates({"a": a}, reps=10, seed=0)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # the caller's RNG


def test_performance_profile_is_the_fraction_of_runs_above_tau():
    scores = {"a": np.array([[0.2, 0.9], [0.4, 0.1], [0.6, 0.7]])}
    profiles, bands = performance_profiles(scores, np.array([0.0, 0.3, 0.65, 1.0]), reps=50)
    np.testing.assert_allclose(profiles["a"], [1.0, 4 / 6, 2 / 6, 0.0])
    assert bands["a"].shape == (2, 4)
    assert np.all(bands["a"][0] <= profiles["a"] + 1e-12)
    assert np.all(profiles["a"] <= bands["a"][1] + 1e-12)


# ---------------------------------------------------------------------- fixture runs
def write_run(
    root: Path,
    name: str,
    algo: str,
    seed: int,
    final: list[float],
    student: list[float] | None = None,
    env: str = "predator_prey",
    map_name: str | None = None,
    episodes: bool = True,
    env_params: dict | None = None,
) -> Path:
    """A run folder as Experiment writes it, with two tests (t_env 0 and 1000). ``final``:
    the last test's per-episode returns (wins where ``map_name``: return = 10 x win);
    the first test's episodes all score 0."""
    run = root / name
    run.mkdir(parents=True)
    config = Config(env_name=env, map_name=map_name, algo=algo, seed=seed, env=env_params or {})
    config = config.to_dict()
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    wins = map_name is not None
    events, records = [], []
    for t, values in ((0, [0.0] * len(final)), (1000, final)):
        event: dict = {"t_env": t, "episode": t // 10}
        for policy, vals in (("teacher", values), ("student", student)):
            if vals is None:
                continue
            if t == 0:
                vals = [0.0] * len(vals)
            prefix = "test" if policy == "teacher" else "test_student"
            returns = [10 * v for v in vals] if wins else vals
            event[f"{prefix}/return_mean"] = float(np.mean(returns))
            event[f"{prefix}/return_std"] = float(np.std(returns))
            event[f"{prefix}/ep_length_mean"] = 5.0
            record = {"t_env": t, "source": "test", "policy": policy, "episode": t // 10}
            record |= {"return": returns, "length": [5] * len(vals)}
            if wins:
                event[f"{prefix}/win_rate"] = float(np.mean(vals))
                record["won"] = [int(v) for v in vals]
            records.append(record)
        events.append(event)
        events.append({"t_env": t + 1, "episode": t // 10, "train/return_mean": -1.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    if episodes:
        (run / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    last = {k: v for k, v in events[-2].items() if k.startswith("test")}
    (run / "summary.json").write_text(json.dumps({"t_env": 1000, "finished": True, **last}))
    return run


ONE_PREY = {"n_prey": 1}  # Predator-Prey's declared score range: 0 to 1 x 10


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """VDN and DDN on VDN, 3 seeds each, on Predator-Prey with one prey (returns 0..10)
    and SMAX 3m (wins), plus a VDN run logged before per-episode values existed."""
    root = tmp_path / "study"
    pp_vdn = [[0.0, 2.0], [2.0, 4.0], [4.0, 6.0]]  # means 1 3 5 -> 0.1 0.3 0.5
    pp_ggn = [[4.0, 8.0], [6.0, 8.0], [8.0, 10.0]]  # 6 7 9 -> 0.6 0.7 0.9
    pp_lpn = [[2.0, 4.0], [4.0, 6.0], [6.0, 8.0]]  # 3 5 7 -> 0.3 0.5 0.7
    w_vdn = [[0, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1]]  # .25 .5 .75
    w_ggn = [[1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]]  # 1 .75 1
    w_lpn = [[0, 1, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1]]  # .75 .5 1
    for s in range(3):
        write_run(root, f"pp-vdn-{s}", "vdn", s, pp_vdn[s], env_params=ONE_PREY)
        write_run(root, f"pp-ddn-{s}", "ddn_vdn", s, pp_ggn[s], pp_lpn[s], env_params=ONE_PREY)
        write_run(root, f"3m-vdn-{s}", "vdn", s, w_vdn[s], env="smax", map_name="3m")
        write_run(root, f"3m-ddn-{s}", "ddn_vdn", s, w_ggn[s], w_lpn[s], "smax", "3m")
    write_run(root, "pp-vdn-old", "vdn", 3, [8.0, 8.0], episodes=False, env_params=ONE_PREY)
    return root


def test_scores_are_normalised_per_task_and_arranged_for_rliable(study):
    scores = collect_scores(find_runs([study]), Options())
    assert scores.metric == {"3m": "win_rate", "predator_prey": "return_mean"}
    assert scores.ranges["3m"][:2] == (0.0, 1.0)
    assert scores.ranges["predator_prey"] == (
        0.0,
        10.0,
        "0 (no capture) to 10 (every prey captured)",
    )
    assert set(scores.matrices) == {"VDN", "VDN_DDN GGN", "VDN_DDN LPN"}
    assert all(scores.tasks[k] == ["3m", "predator_prey"] for k in scores.matrices)
    np.testing.assert_allclose(scores.matrices["VDN"], [[0.25, 0.1], [0.5, 0.3], [0.75, 0.5]])
    np.testing.assert_allclose(scores.matrices["VDN_DDN GGN"], [[1, 0.6], [0.75, 0.7], [1, 0.9]])
    np.testing.assert_allclose(scores.matrices["VDN_DDN LPN"], [[0.75, 0.3], [0.5, 0.5], [1, 0.7]])
    # VDN: sorted .1 .25 .3 .5 .5 .75, IQM of the middle four 0.3875; task means .5, .3.
    points, intervals = interval_estimates(scores.matrices, reps=200, seed=0)
    assert points["VDN"] == pytest.approx([0.4, 0.3875, 0.4])
    assert np.all(intervals["VDN"][0] <= points["VDN"]) and np.all(
        points["VDN"] <= intervals["VDN"][1]
    )
    assert scores.left_out == [
        ("pp-vdn-old", "no episodes.jsonl (logged before per-episode values were; "
         "its means are in the tables)"),
    ]  # fmt: skip
    # A stated range replaces the observed one.
    ranged = collect_scores(find_runs([study]), Options(ranges={"predator_prey": (0.0, 20.0)}))
    np.testing.assert_allclose(ranged.matrices["VDN"][:, 1], [0.05, 0.15, 0.25])
    assert ranged.ranges["predator_prey"] == (0.0, 20.0, "--score-range")


@pytest.mark.slow
def test_report_section_pairs_counts_and_left_out_runs(study):
    runs = find_runs([study])
    report = build_report(runs, aggregate=Options(reps=200, seed=0))
    md = report.markdown()
    # Old runs still count in the tables with their means: 4 VDN runs on Predator-Prey.
    assert "| predator_prey | VDN | 4.25 ± 2.99 (n=4) |" in md
    section = md[md.index("## Aggregate statistics (rliable)") :]
    assert "200 resamples" in section and "seed 0" in section
    assert "| predator_prey | return_mean | 0 | 10 |" in section
    assert "| 3m | win_rate | 0 | 1 | win rate as is |" in section
    # P(GGN > VDN): 3m 8.5 / 9, Predator-Prey 9 / 9 -> 0.972; P(LPN > GGN): 3m 2.5 / 9,
    # Predator-Prey 1.5 / 9 -> 0.222.
    assert "| VDN_DDN GGN | VDN | 2 | 0.972 [" in section
    assert "| VDN_DDN LPN | VDN | 2 |" in section
    assert "| VDN_DDN LPN | VDN_DDN GGN | 2 | 0.222 [" in section
    assert "| VDN | 2 | 6 |" in section  # tasks, run scores
    assert "| predator_prey | VDN | 3 | 0, 1, 2 | 1, 3, 5 |" in section  # raw final returns
    assert "| 3m | VDN_DDN LPN | 3 | 0, 1, 2 | 0.75, 0.5, 1 |" in section
    assert "- pp-vdn-old: no episodes.jsonl" in section
    # The same seed gives the same section.
    assert build_report(runs, aggregate=Options(reps=200, seed=0)).markdown() == md


def test_report_last_k_scores_the_aggregate_over_the_same_tests(study):
    """``ddn report --last K``: the aggregate's score is the mean over the episodes of the
    last K tests, as the tables' final value (the study's first test scores 0 throughout,
    so over both tests every score halves)."""
    runs = find_runs([study])
    scores = collect_scores(runs, Options(last=2))
    np.testing.assert_allclose(scores.matrices["VDN"], [[0.125, 0.05], [0.25, 0.15], [0.375, 0.25]])
    section = build_report(runs, aggregate=Options(reps=200), last=2).markdown()
    section = section[section.index("## Aggregate statistics (rliable)") :]
    assert "the mean over the episodes of its last 2 tests" in section
    assert "| predator_prey | VDN | 3 | 0, 1, 2 | 0.5, 1.5, 2.5 |" in section
    with pytest.raises(ConfigError, match="last must be a number of tests >= 1"):
        Options(last=0)


def test_uneven_seeds_keep_a_full_matrix_and_say_what_was_dropped(study):
    shutil.rmtree(study / "3m-ddn-2")
    scores = collect_scores(find_runs([study]), Options())
    assert scores.matrices["VDN_DDN GGN"].shape == (2, 2)
    assert [s.run.seed for s in scores.cells[("VDN_DDN GGN", "predator_prey")]] == [0, 1]
    assert ("pp-ddn-2", "VDN_DDN GGN has only 2 run(s) on some task; rliable needs the same "
            "number on every task") in scores.left_out  # fmt: skip


def test_win_rate_asked_of_runs_without_wins_is_left_out_with_why(study):
    scores = collect_scores(find_runs([study / "pp-vdn-0"]), Options(metric="win_rate"))
    assert not scores.matrices
    assert scores.left_out == [("pp-vdn-0", "no win condition; use --metric return_mean")]


def test_missing_rliable_names_the_extra(study, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "rliable", None)  # import rliable -> ImportError
    section = aggregate_section(find_runs([study]), Options())
    assert "Skipped: aggregate statistics need the rliable package: pip install 'ddn[stats]'" in (
        section
    )
    assert main(["plot", str(study), "--kind", "profile", "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err == "ddn: error: aggregate statistics need the rliable package: " + (
        "pip install 'ddn[stats]'\n"
    )


def test_predator_prey_scores_from_no_capture_to_every_prey_captured(tmp_path: Path):
    """The paper's preset declares 0..80, whatever the runs reached: a team that only
    learned to stop trying (return 0 at the end, -6 on the way) scores 0, not 1."""
    write_run(tmp_path, "qmix-0", "qmix", 0, [0.0, 0.0])
    write_run(tmp_path, "qmix-1", "qmix", 1, [-6.0, 40.0])
    scores = collect_scores(find_runs([tmp_path]), Options())
    assert scores.ranges["predator_prey"] == (
        0.0,
        80.0,
        "0 (no capture) to 80 (every prey captured)",
    )
    np.testing.assert_allclose(scores.matrices["QMIX"], [[0.0], [17.0 / 80]])
    # Runs of different grids share no declared range: the range they reached is used.
    write_run(tmp_path, "qmix-2", "qmix", 2, [10.0, 10.0], env_params=ONE_PREY)
    mixed = collect_scores(find_runs([tmp_path]), Options())
    lo, hi, why = mixed.ranges["predator_prey"]
    assert (lo, hi) == (-6.0, 40.0) and why.startswith("lowest/highest")


def test_score_range_parsing():
    assert parse_ranges(["pp=-1:2.5", "3m=0:1"]) == {"pp": (-1.0, 2.5), "3m": (0.0, 1.0)}
    for bad in ("pp", "pp=1", "pp=a:b", "=0:1", "pp=2:1"):
        with pytest.raises(ConfigError, match="--score-range"):
            parse_ranges([bad])


# ---------------------------------------------------------------------- CLI: plots, exports
@pytest.mark.slow
def test_cli_profile_and_aggregate_plots(study, tmp_path, capsys):
    for kind in ("profile", "aggregate"):
        out = tmp_path / kind
        args = ["plot", str(study), "--kind", kind, "--out", str(out), "--bootstrap-reps", "50"]
        assert main(args) == 0
        assert out.with_suffix(".png").stat().st_size > 0 and out.with_suffix(".svg").is_file()
        printed = capsys.readouterr().out
        assert "3 algorithm(s) over 2 task(s); left out: 1" in printed
    bad = ["plot", str(study), "--kind", "profile", "--metric", "test/loss"]
    assert main(bad) == 2
    assert "takes --metric win_rate or return_mean" in capsys.readouterr().err
    assert main(["report", str(study), "--score-range", "pp=1"]) == 2
    assert capsys.readouterr().err.startswith("ddn: error: --score-range takes TASK=MIN:MAX")


def test_marl_eval_export_round_trips(study, tmp_path, capsys):
    # A ddn evaluate record of 10x the test episodes becomes the absolute metric.
    record = {"t_env": 1000, "source": "evaluate", "policy": "teacher", "seed": 12345}
    record |= {"return": [1.0] * 40, "length": [5] * 40, "won": [1] * 40}
    with (study / "3m-vdn-0" / "episodes.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    out = tmp_path / "marl_eval.json"
    code = main(["report", str(study), "--out", str(tmp_path / "r"), "--marl-eval", str(out),
                 "--bootstrap-reps", "20"])  # fmt: skip
    assert code == 0
    assert "marl-eval export left out pp-vdn-old: no test episodes" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data == marl_eval_data(find_runs([study]))[0]
    # marl-eval's layout: env -> task -> algorithm -> run -> step_i / absolute_metrics.
    assert set(data) == {"predator_prey", "smax"}
    assert set(data["smax"]) == {"3m"} and set(data["predator_prey"]) == {"predator_prey"}
    assert set(data["smax"]["3m"]) == {"vdn", "ddn_vdn", "ddn_vdn_lpn"}
    for tasks in data.values():
        for algos in tasks.values():
            for seeds in algos.values():
                assert set(seeds) == {"seed_0", "seed_1", "seed_2"}
                for steps in seeds.values():
                    assert list(steps) == ["step_0", "step_1", "absolute_metrics"]
                    assert [steps[f"step_{i}"]["step_count"] for i in range(2)] == [0, 1000]
                    for i in range(2):
                        metric_names = set(steps[f"step_{i}"]) - {"step_count"}
                        assert metric_names == set(steps["absolute_metrics"])
                        for name in metric_names:  # one value per evaluation episode
                            n = len(steps[f"step_{i}"][name])
                            assert n == len(steps["step_1"]["return"])
                            assert len(steps["absolute_metrics"][name]) in (1, 10 * n)
    # The lists are the per-episode values; their means are what metrics.jsonl logged.
    run = data["smax"]["3m"]["ddn_vdn_lpn"]["seed_1"]
    assert run["step_1"] == {"step_count": 1000, "return": [0, 0, 10, 10], "win_rate": [0, 0, 1, 1]}
    logged = read_metrics(study / "3m-ddn-1" / "metrics.jsonl")[2]
    assert np.mean(run["step_1"]["win_rate"]) == logged["test_student/win_rate"]
    assert run["absolute_metrics"] == {"return": [10 * 0.5], "win_rate": [0.5]}  # best test
    assert data["smax"]["3m"]["vdn"]["seed_0"]["absolute_metrics"]["win_rate"] == [1] * 40


def test_pymarl_export_round_trips(study, tmp_path):
    out = tmp_path / "sacred"
    code = main(["report", str(study), "--out", str(tmp_path / "r"), "--pymarl", str(out),
                 "--bootstrap-reps", "20"])  # fmt: skip
    assert code == 0
    runs = find_runs([study])
    assert {p.name for p in out.iterdir()} == {str(i) for i in range(1, len(runs) + 1)}
    for number, run in enumerate(runs, start=1):
        info = json.loads((out / str(number) / "info.json").read_text())
        config = json.loads((out / str(number) / "config.json").read_text())
        assert config["name"] == run.algo and config["env"] == run.env
        assert config["seed"] == run.seed and config["ddn_run_dir"] == str(run.path)
        assert info == pymarl_info(run)
        for key in ("test/return_mean", "test/return_std", "train/return_mean"):
            t, values = run.series(key)
            assert info[pymarl_name(key)] == list(values)
            assert info[pymarl_name(key) + "_T"] == [int(x) for x in t]
        if run.map_name:
            assert config["env_args"]["map_name"] == "3m"
            assert info["test_battle_won_mean"] == list(run.series("test/win_rate")[1])
        if run.algo == "ddn_vdn":
            assert "test_student_return_mean" in info
    assert pymarl_name("test/win_rate") == "test_battle_won_mean"
    assert pymarl_name("train/win_rate") == "battle_won_mean"
    assert pymarl_name("train/epsilon") == "epsilon" and pymarl_name("train/loss") == "loss"
    assert pymarl_name("test_student/return_mean") == "test_student_return_mean"
    assert pymarl_name("episode") == "episode"
    assert pymarl_name("time/env_steps_per_s") == "time_env_steps_per_s"
