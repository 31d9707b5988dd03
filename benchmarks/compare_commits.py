"""Throughput of two commits of ddn, measured side by side in one run.

A refactor must not slow training down, and this machine is too noisy for figures taken
at different times to be compared. So each commit gets its own temporary git worktree,
and the chosen throughput benchmark runs from each in turn, alternating the order every
round (A B, B A, ...), so that a slow phase of the machine falls on both. Reported per
algorithm, per second of wall-clock time and per second of the process's CPU time (what
other processes take from it does not count): the median of each commit's rates and the
ratio new / base of the medians, with each round's ratio beside it.

    python benchmarks/compare_commits.py BASE NEW [--bench train|smax] [--rounds 3] \
        [-- extra arguments for the benchmark]
    python benchmarks/compare_commits.py 55d5ebf HEAD --bench train -- --iterations 5
    python benchmarks/compare_commits.py 55d5ebf HEAD --bench smax --paired --rounds 4 -- --maps 3m

Both commits run the benchmark script of the working tree (it uses only the public
``resolve`` and ``Experiment``), with ``PYTHONPATH`` pointing at the commit's ``src``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = {
    "train": HERE / "train_throughput.py",
    "smax": HERE / "smax_training_throughput.py",
}


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=HERE, check=True, capture_output=True, text=True
    ).stdout.strip()


def start(script: Path, tree: Path, extra: list[str], out: Path, cpu: int | None):
    """Starts one benchmark run from ``tree``'s code, pinned to ``cpu`` if given."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(script), *extra, "--json", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        preexec_fn=None if cpu is None else lambda: os.sched_setaffinity(0, {cpu}),
    )


def read_rates(out: Path) -> dict[str, float]:
    """A finished run's "algo wall" / "algo cpu" -> env steps/s per second of
    wall-clock time / of the benchmark process's CPU time."""
    rates = {}
    for r in json.loads(out.read_text())["results"]:
        rates[f"{r['algo']} wall"] = r["env_steps_per_s"]
        rates[f"{r['algo']} cpu"] = r["env_steps_per_cpu_s"]
        # train_throughput.py also times one update and one rollout (medians of its
        # interleaved rounds): as rates (1/s), so that every row reads "higher is faster".
        for key, name in (("update_s", "updates/s"), ("rollout_s_8x200", "rollouts/s")):
            if key in r:
                rates[f"{r['algo']} {name}"] = 1.0 / r[key]
    return rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base", help="the reference commit (any git revision)")
    p.add_argument("new", help="the commit measured against it")
    p.add_argument("--bench", choices=sorted(BENCHES), default="train")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--paired", action="store_true", help="run both commits at once, one per pinned CPU"
    )
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_args(argv[:cut])
    args.extra = argv[cut + 1 :]  # the benchmark's own arguments
    refs = {"base": git("rev-parse", args.base), "new": git("rev-parse", args.new)}
    cpus = sorted(os.sched_getaffinity(0))
    if args.paired and len(cpus) < 2:
        p.error("--paired needs two CPUs; this process may use only one")
    rates: dict[str, list[dict[str, float]]] = {"base": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for name, sha in refs.items():
            trees[name] = Path(tmp) / name
            git("worktree", "add", "--detach", str(trees[name]), sha)
        try:
            for i in range(args.rounds):
                order = ("base", "new") if i % 2 == 0 else ("new", "base")
                outs = {name: Path(tmp) / f"{name}-{i}.json" for name in order}
                if args.paired:  # at once, the CPUs swapped every round
                    procs = [
                        start(BENCHES[args.bench], trees[name], args.extra, outs[name], cpu)
                        for name, cpu in zip(order, cpus[:2], strict=True)
                    ]
                    if any(proc.wait() for proc in procs):
                        raise SystemExit("a benchmark run failed")
                for name in order:
                    if not args.paired:
                        proc = start(BENCHES[args.bench], trees[name], args.extra, outs[name], None)
                        if proc.wait():
                            raise SystemExit(f"the {name} benchmark run failed")
                    rates[name].append(read_rates(outs[name]))
                    print(f"round {i + 1}/{args.rounds} {name}: {rates[name][-1]}", flush=True)
        finally:
            for tree in trees.values():
                git("worktree", "remove", "--force", str(tree))
    print(
        f"\n{args.bench} throughput (env steps/s unless named); "
        f"base {refs['base'][:8]}, new {refs['new'][:8]}"
    )
    print(f"{'algo, rate':<22}{'base':>10}{'new':>10}{'new/base':>10}  per round")
    for algo in rates["base"][0]:
        base = [r[algo] for r in rates["base"]]
        new = [r[algo] for r in rates["new"]]
        ratio = statistics.median(new) / statistics.median(base)
        rounds = " ".join(f"{n / b:.3f}" for b, n in zip(base, new, strict=True))
        print(
            f"{algo:<22}{statistics.median(base):>10,.0f}{statistics.median(new):>10,.0f}"
            f"{ratio:>10.3f}  {rounds}"
        )


if __name__ == "__main__":
    main()
