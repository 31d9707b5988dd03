"""End-to-end training throughput on SMAX: env steps/s of ddn's training loop, updates
included, for QMIX and DDN on 3m and 3s5z (the `smax` preset: 8 battles, batch 32).

    python benchmarks/smax_training_throughput.py [--seconds 30] [--maps 3m 3s5z]
    python benchmarks/smax_training_throughput.py --maps 3s5z MMM2 2s_vs_1sc --algos qmix

(``MMM2`` and ``2s_vs_1sc`` are ddn's medivac / spine-crawler maps, ``docs/smax.md``.)

The buffer is first filled to one batch (no updates happen before); then the loop body
(`Experiment.iteration`) runs for --seconds. Early in training (epsilon near 1) battles
are short, so these are the throughputs of that phase. Needs the `smax` extra.
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--maps", nargs="+", default=["3m", "3s5z"])
    p.add_argument("--algos", nargs="+", default=["qmix", "ddn"])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the rates here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    # One update per collection of 8 battles, as these numbers were first measured.
    overrides = ["updates_per_iteration=1", "test_nepisode=0", "save_model=false", "device=cpu"]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for map_name in args.maps:
            for algo in args.algos:
                cfg = resolve("smax", algo, map_name, overrides, t_max=10**9)
                exp = Experiment(cfg, Path(tmp) / f"{map_name}-{algo}", progress=False)
                while not exp.buffer.can_sample(cfg.batch_size):
                    exp.iteration()
                exp.iteration()  # first update: allocations, compilation
                t0, cpu0, steps0 = time.perf_counter(), time.process_time(), exp.t_env
                while time.perf_counter() - t0 < args.seconds:
                    exp.iteration()
                rate = (exp.t_env - steps0) / (time.perf_counter() - t0)
                cpu_rate = (exp.t_env - steps0) / (time.process_time() - cpu0)
                print(f"{map_name:<10} {algo:<6}{rate:>10,.0f} env steps/s", flush=True)
                results.append(
                    {
                        "algo": f"{map_name}/{algo}",
                        "env_steps_per_s": rate,
                        "env_steps_per_cpu_s": cpu_rate,
                    }
                )
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2))


if __name__ == "__main__":
    main()
