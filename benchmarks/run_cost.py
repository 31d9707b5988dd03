"""What one run of an experiment costs: ddn's training loop timed on a preset, and the
wall clock of a whole run extrapolated from it (the plan in docs/results.md).

    python benchmarks/run_cost.py --env predator_prey --algos qmix ddn --set updates_per_iteration=8
    python benchmarks/run_cost.py --env smax --map 3s_vs_5z --algos vdn ddn_vdn

The run is the preset's (``ddn train --env ENV --map MAP --algo ALGO`` plus ``--set``).
The buffer is first filled to one batch (no updates happen before); then ``--iterations``
loop bodies (``Experiment.iteration``: collect ``batch_size_run`` episodes, make
``updates_per_iteration`` updates) are timed, and one greedy test of ``test_nepisode``
episodes. A run's cost is t_max / (training env steps/s) plus one test per
test_interval. Early in training epsilon is near 1, so the episodes timed are the
exploratory ones: SMAX battles grow longer as agents learn to survive, so on SMAX this
is a lower bound; Predator-Prey episodes run to the step limit either way.

Each algorithm is measured in a fresh process: ddn keeps freed memory in the process
for reuse (``ddn/allocator.py``), so a large map's buffer measured for one algorithm
would otherwise stay resident while the next one is measured.

Times are the measuring process's CPU time, not wall time: with one thread that is what a run
takes on a free core, and it stays so when other work shares the machine (a wall
clock measured beside other processes would charge their time to this run).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

from ddn.config import resolve
from ddn.experiment import Experiment


def measure(env: str, map_name: str | None, algo: str, sets: list[str], iterations: int,
            threads: int, tmp: Path) -> dict[str, float]:  # fmt: skip
    torch.set_num_threads(threads)
    cfg = resolve(env, algo, map_name, [*sets, "save_model=false", "device=cpu"])
    exp = Experiment(cfg, tmp / algo, progress=False)
    while not exp.buffer.can_sample(cfg.batch_size):
        exp.iteration()
    exp.iteration()  # first updates: allocations, warm-up
    t0, steps0 = time.process_time(), exp.t_env
    for _ in range(iterations):
        exp.iteration()
    train_rate = (exp.t_env - steps0) / (time.process_time() - t0)
    test_s = 0.0
    if cfg.test_nepisode > 0:
        from ddn.evaluate import evaluate

        def test() -> None:
            for prefix, network in exp.learner.evaluation_policies().items():
                evaluate(network, exp.test_env, cfg.test_nepisode, prefix)

        test()  # the first test compiles (SMAX's jitted step): once per run
        t1 = time.process_time()
        test()
        test_s = time.process_time() - t1
    n_tests = cfg.t_max // cfg.test_interval + 1 if cfg.test_nepisode > 0 else 0
    run_s = cfg.t_max / train_rate + n_tests * test_s
    return {"rate": train_rate, "test_s": test_s, "run_h": run_s / 3600, "t_max": cfg.t_max,
            "updates": cfg.updates_per_iteration, "batch_size_run": cfg.batch_size_run}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="predator_prey")
    p.add_argument("--map", default=None)
    p.add_argument("--algos", nargs="+", default=["qmix", "ddn"])
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    where = args.env + (f" {args.map}" if args.map else "")
    print(f"{where}  {' '.join(args.sets) or '(preset)'}  {args.threads} thread(s)")
    print(f"{'algo':<12}{'updates/iter':>13}{'env steps/s':>13}{'one test (s)':>14}"
          f"{'t_max':>11}{'run (h)':>9}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for algo in args.algos:
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as child:
                r = child.submit(measure, args.env, args.map, algo, args.sets,
                                 args.iterations, args.threads, Path(tmp)).result()  # fmt: skip
            updates = f"{r['updates']}/{r['batch_size_run']}"
            print(f"{algo:<12}{updates:>13}{r['rate']:>13,.0f}{r['test_s']:>14.1f}"
                  f"{r['t_max']:>11,}{r['run_h']:>9.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
