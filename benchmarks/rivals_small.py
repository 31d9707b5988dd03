"""Teacher and student of DDN and its Table 2 rivals on the learning tests' small
Predator-Prey (tests/test_rivals.py: 2 predators, 1 prey, 3x3 grid, 5x5 view, 10-step
episodes, no miscapture penalty, four updates per collection of 16 episodes), one budget
for all: the numbers the tests' bars are chosen from, and a comparison of the methods side
by side (``--set updates_per_iteration=1``: one update per 16 episodes, as first measured).

    python benchmarks/rivals_small.py [--algos ddn ctds ptde igm_da igm_bc] [--seeds 0 1]
                                      [--t-max 20000] [--set KEY=VALUE ...]

Each run trains through the real loop, then evaluates both networks greedily on 2,048
episodes. One run takes 15-30 s on one CPU thread (PTDE ~35 s: its phase 2), more on a
busy machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_rivals import LEARNING_SETTING

from ddn.config import resolve
from ddn.evaluate import evaluate
from ddn.experiment import Experiment
from ddn.run_folder import RunFolder


def run(algo: str, seed: int, t_max: int, run_dir: Path, extra: list[str]) -> dict:
    overrides = [*LEARNING_SETTING, *extra]
    cfg = resolve("predator_prey", algo, overrides=overrides, seed=seed, t_max=t_max)
    start = time.perf_counter()
    exp = Experiment(cfg, run_dir, progress=False)
    exp.run()
    policies = exp.learner.evaluation_policies()
    final = {
        name: evaluate(network, exp.test_env, 2048)["test/return_mean"]
        for name, network in policies.items()
    }
    phase_two = [e for e in RunFolder(run_dir).metrics() if "ptde/dataset_rows" in e]
    return {
        "algo": algo,
        "seed": seed,
        "t_max": t_max,
        "set": extra,
        "teacher": final["test"],
        "student": final.get("test_student"),
        "share": final["test_student"] / final["test"] if final["test"] else None,
        **({k: v for k, v in phase_two[0].items() if k.startswith("ptde/")} if phase_two else {}),
        "wall_s": round(time.perf_counter() - start),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=["ddn", "ctds", "ptde", "igm_da", "igm_bc"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--t-max", type=int, default=20_000)
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE", help="on top of the tests' setting"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for algo in args.algos:
            for seed in args.seeds:
                print(
                    json.dumps(run(algo, seed, args.t_max, Path(tmp) / f"{algo}-{seed}", args.set)),
                    flush=True,
                )


if __name__ == "__main__":
    main()
