"""Success rate over seeds on the non-monotonic matrix game (docs/training.md has the numbers).

A run succeeds when its final greedy joint action is the game's optimum (test win rate
1, i.e. greedy return 8 on [[8,-12,-12],[-12,0,0],[-12,0,0]]). Each run is exactly
`ddn train --env matrix --algo ALGO --seed S` with the shipped `matrix` preset (2,000
updates under uniform exploration) unless --updates or --set say otherwise. One learning
test per method asserts on a few seeds; this script measures the rate those tests are
chosen by.

    python benchmarks/matrix_success.py --algos qplex qtran --seeds 10
    python benchmarks/matrix_success.py --algos qplex --updates 1000 --set lr=5e-4

A run folder that already has its summary.json is reused (kill and rerun to continue);
results also go to --out/results.json. One run takes ~25-50 s on one CPU thread.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ddn.analysis.plot import metric_series
from ddn.config import resolve
from ddn.experiment import Experiment
from ddn.run_folder import RunFolder

ALGOS = ["qplex", "qtran", "cw_qmix", "ow_qmix", "qmix", "vdn"]


def run_seed(algo: str, seed: int, updates: int | None, sets: list[str], out: Path) -> dict:
    """Train one seed (or read back a finished run) -> its final greedy test result and
    the greedy test win rate at every test (the curve: QPLEX can leave the optimum)."""
    run_dir = out / algo / str(seed)
    folder = RunFolder(run_dir)
    seconds = None
    if not folder.summary_path.is_file():
        overrides = ["device=cpu", "save_model=false", *sets]
        cfg = resolve("matrix", algo, overrides=overrides, seed=seed)
        if updates is not None:  # one update per batch_size_run collected episodes
            t_max = updates * cfg.batch_size_run
            cfg = resolve("matrix", algo, overrides=overrides, seed=seed, t_max=t_max)
        t0 = time.perf_counter()
        Experiment(cfg, run_dir, progress=False).run()
        seconds = time.perf_counter() - t0
    summary = folder.summary() or {}
    steps, wins = metric_series(run_dir, "test/win_rate")
    return {
        "seed": seed,
        "success": summary["test/win_rate"] == 1.0,
        "return": summary["test/return_mean"],
        "curve": list(zip(steps, wins, strict=True)),
        "seconds": seconds,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algos", nargs="+", default=ALGOS)
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--updates", type=int, default=None, help="default: the preset's t_max")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", type=Path, default=Path("runs/matrix_success"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    results: dict[str, list[dict]] = {}
    for algo in args.algos:
        results[algo] = []
        for seed in seeds:
            r = run_seed(algo, seed, args.updates, args.sets, args.out)
            results[algo].append(r)
            tests = "".join("1" if w == 1.0 else "0" for _, w in r["curve"])
            print(
                f"{algo} seed {seed}: return {r['return']:g}, optimum at tests {tests}", flush=True
            )
    print("\n| method | success | failed seeds |\n|---|---|---|")
    for algo, rows in results.items():
        ok = sum(r["success"] for r in rows)
        failed = " ".join(str(r["seed"]) for r in rows if not r["success"]) or "-"
        print(f"| {algo} | {ok}/{len(rows)} | {failed} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
