"""Run folders in the formats other MARL tools read (``ddn report --marl-eval/--pymarl``).

**marl-eval** (Gorsane et al. 2022; BenchMARL writes it too): one JSON file
``{env: {task: {algorithm: {"seed_<s>": {"step_<i>": {...}, ..., "absolute_metrics":
{...}}}}}}``. Step ``i`` is the run's ``i``-th test, with ``step_count`` (its ``t_env``)
and one list per metric with a value per evaluation episode, from ``episodes.jsonl``:
``return`` and, where the environment has a win condition, ``win_rate`` (each episode's
win as 0/1). DDN runs give two algorithms, ``<algo>`` (the GGN) and ``<algo>_lpn``.
``absolute_metrics`` is the protocol's score of the best policy re-evaluated with 10x the
test episodes: the latest ``ddn evaluate`` of that network with exactly 10 x
``test_nepisode`` episodes if the run has one, else a one-element list per metric, the
mean of the test with the best mean (win rate where there are wins, else return).

**PyMARL** (sacred's ``info.json``): per run a folder ``1``, ``2``, ... holding
``info.json`` (for every logged key a value list and a ``<key>_T`` list of ``t_env``) and
``config.json`` (the run's config with PyMARL's ``env``, ``env_args`` and ``name``). Key
names follow PyMARL's: see :func:`pymarl_name`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ddn.algorithms import policies_of
from ddn.analysis.curves import RunRecord, variant_labels
from ddn.run_folder import EPISODES_FILE

# marl-eval's absolute metric re-evaluates the best policy with this many times the
# episodes of one test (Gorsane et al. 2022).
ABSOLUTE_EPISODES_FACTOR = 10


# ---------------------------------------------------------------------- marl-eval
def _absolute(tests: list[dict[str, Any]], evals: list[dict[str, Any]]) -> dict[str, list]:
    wins = "won" in tests[-1]
    n_absolute = ABSOLUTE_EPISODES_FACTOR * len(tests[-1]["return"])
    re_evaluations = [e for e in evals if len(e["return"]) == n_absolute]
    if re_evaluations:
        latest = re_evaluations[-1]
        out = {"return": latest["return"]}
        if wins and "won" in latest:
            out["win_rate"] = latest["won"]
        return out
    key = "won" if wins else "return"
    best = max(tests, key=lambda t: float(np.mean(t[key])))
    out = {"return": [float(np.mean(best["return"]))]}
    if wins:
        out["win_rate"] = [float(np.mean(best["won"]))]
    return out


def marl_eval_data(runs: Sequence[RunRecord]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The marl-eval dictionary of ``runs`` and the runs left out, with why."""
    data: dict[str, Any] = {}
    left_out: list[tuple[str, str]] = []
    variants = variant_labels(runs)
    for run in runs:
        records = run.episodes() or []
        if not any(r.get("source") == "test" for r in records):
            left_out.append((run.path.name, f"no test episodes in {EPISODES_FILE}"))
            continue
        task = run.map_name or run.env
        for evaluated in policies_of(run.algo):
            policy = evaluated.name
            mine = [r for r in records if r.get("policy") == policy]
            tests = sorted((r for r in mine if r["source"] == "test"), key=lambda r: r["t_env"])
            if not tests:
                continue
            algorithm = run.algo
            if policy == "student":  # the student as its own algorithm: DDN's "<algo>_lpn"
                algorithm += f"_{evaluated.label.lower()}"
            if variants[run.path]:
                algorithm += f" [{variants[run.path]}]"
            seeds = data.setdefault(run.env, {}).setdefault(task, {}).setdefault(algorithm, {})
            name = f"seed_{run.seed}"
            if name in seeds:  # two runs of one setting and seed: keep both
                name += f"_{run.path.name}"
            steps: dict[str, Any] = {}
            for i, test in enumerate(tests):
                step: dict[str, Any] = {"step_count": test["t_env"], "return": test["return"]}
                if "won" in test:
                    step["win_rate"] = test["won"]
                steps[f"step_{i}"] = step
            evals = [r for r in mine if r["source"] == "evaluate"]
            steps["absolute_metrics"] = _absolute(tests, evals)
            seeds[name] = steps
    return data, left_out


def write_marl_eval(runs: Sequence[RunRecord], out: str | Path) -> list[tuple[str, str]]:
    """Write the marl-eval JSON; returns the runs left out, with why."""
    data, left_out = marl_eval_data(runs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data) + "\n")
    return left_out


# ---------------------------------------------------------------------- PyMARL
def pymarl_name(key: str) -> str:
    """A ``metrics.jsonl`` key's PyMARL name: ``train/X`` -> ``X``, ``test/X`` ->
    ``test_X``, ``test_student/X`` -> ``test_student_X``, ``win_rate`` ->
    ``battle_won_mean`` (SMAC's name, which PyMARL plots read), other ``a/b`` -> ``a_b``."""
    group, _, name = key.rpartition("/")
    if name == "win_rate":
        name = "battle_won_mean"
    if group == "train":
        return name
    return f"{group}_{name}" if group else name


def pymarl_info(run: RunRecord) -> dict[str, list]:
    """sacred's ``info.json`` of one run: each metric's values and their ``_T`` list."""
    info: dict[str, list] = {}
    for event in sorted(run.events, key=lambda e: e["t_env"]):
        for key, value in event.items():
            if key == "t_env" or not isinstance(value, int | float) or isinstance(value, bool):
                continue  # None: a NaN the log could not hold
            name = pymarl_name(key)
            if info.get(f"{name}_T", [None])[-1] == event["t_env"]:
                continue  # ``episode``: in a test and a train event at the same t_env
            info.setdefault(name, []).append(value)
            info.setdefault(f"{name}_T", []).append(event["t_env"])
    return info


def write_pymarl(runs: Sequence[RunRecord], out: str | Path) -> list[Path]:
    """One sacred-style folder per run (``1``, ``2``, ... in ``runs``' order) under
    ``out``; returns the folders."""
    out = Path(out)
    written = []
    for number, run in enumerate(runs, start=1):
        folder = out / str(number)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "info.json").write_text(json.dumps(pymarl_info(run), indent=2) + "\n")
        env_args = dict(run.config.get("env") or {})
        if run.map_name:
            env_args["map_name"] = run.map_name
        config = {
            **run.config,
            "env": run.env,
            "env_args": env_args,
            "name": run.algo,
            "ddn_run_dir": str(run.path),
        }
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        written.append(folder)
    return written
