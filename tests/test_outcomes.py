"""``ddn report --outcomes``: how test battles ended, on fixture runs with counted answers."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ddn.analysis.curves import find_runs
from ddn.analysis.outcomes import outcomes_section, run_outcomes
from ddn.cli import main
from ddn.config import Config


def write_battles(
    root: Path,
    name: str,
    tests: list[dict[str, tuple[list[int], list[int]]]],
    limit: int | None = 10,
    algo: str = "ddn_vdn",
    wins: bool = True,
    seed: int = 0,
) -> Path:
    """A SMAX run folder whose i-th test played ``tests[i][policy] = (lengths, won)``."""
    run = root / name
    run.mkdir(parents=True)
    config = Config(env_name="smax", map_name="3m", algo=algo, seed=seed).to_dict()
    config["env"] = {} if limit is None else {"episode_limit": limit}
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    events, records = [], []
    for i, test in enumerate(tests):
        t = 1000 * i
        events.append({"t_env": t, "episode": i, "test/return_mean": 0.0})
        for policy, (lengths, won) in test.items():
            record = {"t_env": t, "source": "test", "policy": policy, "episode": i}
            record |= {"return": [0.0] * len(lengths), "length": lengths}
            if wins:
                record["won"] = won
            records.append(record)
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_shares_and_won_lengths_over_the_last_tests(tmp_path):
    write_battles(
        tmp_path,
        "3m-ddn-0",
        [
            # An old test the window of 2 must leave out (all won).
            {"teacher": ([3, 3], [1, 1]), "student": ([3, 3], [1, 1])},
            # Teacher: won at 4 and 8; lost at 6; timed out at 10 (the limit).
            {"teacher": ([4, 6, 10, 8], [1, 0, 0, 1]), "student": ([10, 10, 2, 10], [0, 0, 0, 1])},
            # Teacher: a win on the limit's last step is a win, not a time-out.
            {"teacher": ([10, 10, 5, 7], [1, 0, 0, 0]), "student": ([9, 10, 10, 10], [1, 0, 0, 0])},
        ],
    )
    [run] = find_runs([tmp_path])
    teacher, student = run_outcomes(run, last=2)
    assert (teacher.network, student.network) == ("teacher", "student")
    # Teacher, last 2 tests: 8 battles, won 4 / 8 / 10, lost 6 / 5 / 7, timed out 10 / 10.
    assert (teacher.won, teacher.lost, teacher.timed_out, teacher.battles) == (3, 3, 2, 8)
    assert sorted(teacher.won_lengths) == [4, 8, 10]
    # Student: won 10 / 9, lost 2, timed out five times.
    assert (student.won, student.lost, student.timed_out) == (2, 1, 5)
    section = outcomes_section([run], last=2)
    assert "over its last 2 tests" in section
    assert "| 3m-ddn-0 | teacher | 8 | 0.375 | 0.375 | 0.250 | 8 (4-10) | 10 |" in section
    assert "| 3m-ddn-0 | student | 8 | 0.250 | 0.125 | 0.625 | 9.5 (9-10) | 10 |" in section
    # The whole history: the old test's two wins at 3 steps join the teacher's.
    [whole, _] = run_outcomes(run, last=3)
    assert (whole.won, whole.battles, min(whole.won_lengths)) == (5, 10, 3)
    # As it stood after 1000 steps (``--until``): the third test (at 2000) is not yet there.
    [early, _] = run_outcomes(run.truncated(1000), last=2)
    assert (early.won, early.lost, early.timed_out, early.battles) == (4, 1, 1, 6)


def test_runs_without_wins_or_limit_and_same_named_runs(tmp_path):
    battles = [{"teacher": ([5, 10], [0, 0])}]
    # Distinct seeds: find_runs counts a run repeated in two folders once.
    write_battles(tmp_path / "a", "3m-vdn-0", battles, algo="vdn")
    write_battles(tmp_path / "b", "3m-vdn-0", battles, algo="vdn", limit=None)
    write_battles(tmp_path / "b", "pp-vdn-1", battles, algo="vdn", wins=False, seed=1)
    old = write_battles(tmp_path / "b", "3m-vdn-old", battles, algo="vdn", seed=2)
    (old / "episodes.jsonl").unlink()
    section = outcomes_section(find_runs([tmp_path]))
    # Two sweeps' runs of one name stay apart; without a limit nothing is a time-out.
    assert "| a/3m-vdn-0 | teacher | 2 | 0.000 | 0.500 | 0.500 | — | 10 |" in section
    assert "| b/3m-vdn-0 | teacher | 2 | 0.000 | 1.000 | — | — | — |" in section
    assert "- b/pp-vdn-1: its environment logs no wins" in section
    assert "- b/3m-vdn-old: no episodes.jsonl (logged before per-episode values were)" in section


def test_cli_report_adds_the_section_only_when_asked(tmp_path, capsys):
    write_battles(tmp_path / "runs", "3m-ddn-0", [{"teacher": ([4, 10], [1, 0])}])
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "runs"), "--out", str(out)]) == 0
    assert "## Battle outcomes" not in out.with_suffix(".md").read_text()
    assert main(["report", str(tmp_path / "runs"), "--outcomes", "--out", str(out)]) == 0
    md = out.with_suffix(".md").read_text()
    assert "| 3m-ddn-0 | teacher | 2 | 0.500 | 0.000 | 0.500 | 4 (4-4) | 10 |" in md
    assert "## Battle outcomes" in capsys.readouterr().out
