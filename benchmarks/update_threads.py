"""Does a second torch thread pay for one run's gradient updates? The wall time of
``learner.train`` at 1 thread and at ``--threads N``, on the same sampled batches, in
alternating rounds of one process (so both counts see the same machine state).

    python benchmarks/update_threads.py --env smax --map 3s_vs_5z --set env.episode_limit=250 \\
        --algos ddn ddn_vdn qatten

The run is the preset's (``ddn train --env ENV --map MAP --algo ALGO`` plus ``--set``);
the buffer is filled to one batch by the run's own collection, then ``--batches``
batches are sampled once and trained on in every round. Early in training the episodes
are the exploratory (short) ones, so later, longer batches have larger matmuls: the
ratio here is for the small end.

Wall time is the figure (a second thread's purpose is to finish sooner, not to use less
CPU), so it only means something on an otherwise quiet machine: pause other runs
(``kill -STOP``/``-CONT`` their process groups) while this measures.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ddn.config import resolve
from ddn.experiment import Experiment


def measure(
    env: str, map_name: str | None, algo: str, sets: list[str], threads: int, batches: int,
    rounds: int, tmp: Path,
) -> tuple[list[float], list[float], int]:  # fmt: skip
    """Per-update wall seconds at 1 thread and at ``threads``, one entry per round, and
    the batches' time dimension."""
    torch.set_num_threads(1)
    cfg = resolve(env, algo, map_name, [*sets, "save_model=false", "device=cpu"])
    exp = Experiment(cfg, tmp / algo, progress=False)
    while not exp.buffer.can_sample(cfg.batch_size):
        exp.iteration()
    exp.iteration()  # first updates: allocations, warm-up
    sample = [exp.buffer.sample(cfg.batch_size) for _ in range(batches)]
    times: dict[int, list[float]] = {1: [], threads: []}
    for _ in range(rounds):
        for n in (1, threads):
            torch.set_num_threads(n)
            t0 = time.perf_counter()
            for batch in sample:
                exp.learner.train(batch, exp.episode)
            times[n].append((time.perf_counter() - t0) / batches)
    return times[1], times[threads], int(sample[0].filled.shape[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="smax")
    p.add_argument("--map", default="3s_vs_5z")
    p.add_argument("--algos", nargs="+", default=["ddn"])
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--threads", type=int, default=2, help="the count compared with 1")
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args()
    if args.threads < 2:
        p.error("--threads: the count compared with 1 must be at least 2")
    print(f"| algo | batch T | update, 1 thread | update, {args.threads} threads | "
          "ratio (1 / N) per round |")  # fmt: skip
    print("|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for algo in args.algos:
            one, many, t = measure(args.env, args.map, algo, args.set, args.threads,
                                   args.batches, args.rounds, Path(tmp))  # fmt: skip
            ratios = ", ".join(f"{a / b:.2f}" for a, b in zip(one, many, strict=True))
            print(f"| {algo} | {t} | {statistics.median(one) * 1e3:.1f} ms | "
                  f"{statistics.median(many) * 1e3:.1f} ms | {ratios} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
