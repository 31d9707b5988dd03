"""Learning on SMAX (default map 3m): greedy test win rate against env steps and wall-clock time.

Trains each algorithm with ddn's own training loop on a SMAX (JaxMARL's SMAC) map with
the `smax` preset (batch 32 episodes, epsilon 1 -> 0.05 over 50k steps) plus PyMARL2's
optimiser settings (Adam lr 1e-3, TD(lambda) 0.6) and 4 parallel battles instead of 8
(one update per 4 collected episodes: twice the preset's updates per env step), then
prints each run's test win-rate curve and the steps and minutes at which it first reached
the target (docs/smax.md has the numbers).

    python benchmarks/smax_learning.py [--algos qmix ddn] [--t-max 300000] [--out DIR]
    python benchmarks/smax_learning.py --algos qmix --map 2s_vs_1sc --t-max 300000

Needs the `smax` extra. The run folders stay in --out for `ddn plot` and `ddn report`.
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

SETTINGS = ["optimizer=adam", "lr=0.001", "td_lambda=0.6", "batch_size_run=4",
            "updates_per_iteration=1",
            "test_interval=10000", "test_nepisode=32", "save_model_interval=100000",
            "device=cpu"]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algos", nargs="+", default=["qmix", "ddn"])
    p.add_argument("--map", default="3m")
    p.add_argument("--t-max", type=int, default=300_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", type=float, default=0.8, help="win rate to report reaching")
    p.add_argument("--out", type=Path, default=Path("runs/smax_learning"))
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    summary = {}
    for algo in args.algos:
        cfg = resolve("smax", algo, args.map, SETTINGS, seed=args.seed, t_max=args.t_max)
        run_dir = args.out / f"smax-{args.map}-{algo}-{args.seed}"
        folder = RunFolder(run_dir)
        exp = (
            Experiment.resume(run_dir)
            if folder.checkpoints() and not folder.summary_path.is_file()
            else Experiment(cfg, run_dir)
        )
        t0 = time.perf_counter()
        exp.run()
        minutes = (time.perf_counter() - t0) / 60
        steps, wins = metric_series(run_dir, "test/win_rate")
        reached = next((s for s, w in zip(steps, wins, strict=True) if w >= args.target), None)
        summary[algo] = {
            "final_win_rate": wins[-1] if wins else None,
            "best_win_rate": max(wins) if wins else None,
            f"first_t_env_at_{args.target}": reached,
            "minutes_this_session": round(minutes, 1),
            "curve": list(zip(steps, [round(w, 3) for w in wins], strict=True)),
        }
        if algo.startswith("ddn"):
            _, student = metric_series(run_dir, "test_student/win_rate")
            summary[algo]["student_final_win_rate"] = student[-1] if student else None
    print(json.dumps(summary, indent=2))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
