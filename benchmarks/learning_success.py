"""Success rate over seeds of the Predator-Prey learning tests' claims (docs/training.md).

Each claim is the very function its test in tests/test_learning.py runs on a few seeds
(QMIX and IQL improve on a small Predator-Prey; DDN on VDN's student follows its
teacher); here it runs on seeds 0..N-1, and the rate chooses the test's seeds and how
many must hold. The matrix game's claims have their own script, matrix_success.py.

    python benchmarks/learning_success.py [--claims qmix iql ddn_vdn] [--seeds 10]

One seed takes ~1 min (QMIX, IQL) or ~3 min (DDN on VDN) on one CPU thread.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_learning import ddn_vdn_student_follows, improves_on_small_predator_prey

CLAIMS = {
    "qmix": lambda seed, d: improves_on_small_predator_prey("qmix", seed, d),
    "iql": lambda seed, d: improves_on_small_predator_prey("iql", seed, d),
    "ddn_vdn": ddn_vdn_student_follows,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--claims", nargs="+", default=list(CLAIMS), choices=list(CLAIMS))
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.claims:
            failed = {}
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                t0 = time.process_time()
                failed[seed] = CLAIMS[name](seed, Path(tmp) / name / str(seed))
                cpu = time.process_time() - t0
                print(f"{name} seed {seed}: {'; '.join(failed[seed]) or 'holds'} "
                      f"({cpu:.0f} s CPU)", flush=True)  # fmt: skip
            held = sum(not f for f in failed.values())
            misses = " ".join(str(s) for s, f in failed.items() if f) or "-"
            rows.append(f"| {name} | {held}/{len(failed)} | {misses} |")
    print("\n| claim | holds | failed seeds |\n|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
