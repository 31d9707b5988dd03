"""End-to-end training throughput on SMAX: env steps/s of ddn's training loop, updates
included, for QMIX and DDN on 3m and 3s5z (the `smax` preset: 8 battles, batch 32).

    python benchmarks/smax_training_throughput.py [--seconds 10] [--seeds 0 1 2 3]
    python benchmarks/smax_training_throughput.py --maps 3s5z MMM2 2s_vs_1sc --algos qmix

(``MMM2`` and ``2s_vs_1sc`` are ddn's medivac / spine-crawler maps, ``docs/smax.md``.)

The buffer is first filled to one batch (no updates happen before); then the loop body
(`Experiment.iteration`) runs for --seconds. Early in training (epsilon near 1) battles
are short, so these are the throughputs of that phase.

Why several seeds: a sampled batch is as long as its longest episode, and early on every
batch is drawn from the first few dozen battles. One random battle that runs to the
time-out (about 1 in 200 under random play on 3m) makes every early update several times
dearer, so a one-seed figure says more about that seed's battles than about the code
(two commits whose exploration streams differ draw different battles). The rate reported
is the pooled one, all seeds' env steps over all seeds' time, and each seed's longest
battle in the buffer is printed beside its own rate. To compare code alone, take the
battles' length out of it: ``--set env.episode_limit=30`` cuts every battle at 30 steps,
about as long as random battles run on 3m, so that almost every batch is 30 steps long
on either side. Needs the `smax` extra.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from ddn.config import resolve
from ddn.experiment import Experiment


def longest_battle(exp: Experiment) -> int:
    """The longest episode in the replay buffer, in steps."""
    return int(exp.buffer.data.filled.sum(dim=1).max())


def measure(cfg, folder: Path, seconds: float) -> tuple[int, float, float, int]:
    """(env steps, wall s, CPU s, longest battle) of ``seconds`` of training iterations."""
    exp = Experiment(cfg, folder, progress=False)
    while not exp.buffer.can_sample(cfg.batch_size):
        exp.iteration()
    exp.iteration()  # first update: allocations, compilation
    t0, cpu0, steps0 = time.perf_counter(), time.process_time(), exp.t_env
    while time.perf_counter() - t0 < seconds:
        exp.iteration()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return exp.t_env - steps0, wall, cpu, longest_battle(exp)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--maps", nargs="+", default=["3m", "3s5z"])
    p.add_argument("--algos", nargs="+", default=["qmix", "ddn"])
    p.add_argument("--seconds", type=float, default=10.0, help="per seed")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides on top"
    )
    p.add_argument("--json", type=Path, help="also write the rates here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    # One update per collection of 8 battles, as these numbers were first measured.
    overrides = ["updates_per_iteration=1", "test_nepisode=0", "save_model=false", "device=cpu"]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for map_name in args.maps:
            for algo in args.algos:
                steps = wall = cpu = 0.0
                per_seed = []
                for seed in args.seeds:
                    cfg = resolve(
                        "smax", algo, map_name, [*overrides, *args.set, f"seed={seed}"], t_max=10**9
                    )
                    folder = Path(tmp) / f"{map_name}-{algo}-{seed}"
                    n, w, c, longest = measure(cfg, folder, args.seconds)
                    steps, wall, cpu = steps + n, wall + w, cpu + c
                    per_seed.append({"seed": seed, "env_steps_per_s": n / w, "longest": longest})
                seeds = " ".join(
                    f"{s['seed']}:{s['env_steps_per_s']:,.0f}(T{s['longest']})" for s in per_seed
                )
                print(
                    f"{map_name:<10} {algo:<6}{steps / wall:>10,.0f} env steps/s"
                    f"   per seed (longest battle): {seeds}",
                    flush=True,
                )
                results.append(
                    {
                        "algo": f"{map_name}/{algo}",
                        "env_steps_per_s": steps / wall,
                        "env_steps_per_cpu_s": steps / cpu,
                        "per_seed": per_seed,
                    }
                )
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2))


if __name__ == "__main__":
    main()
