"""Small runs: the matrix preset per algorithm, alone and beside a second ddn process.

For each algorithm, in this order and in the same run:

* **update**: the median time of one learner update on the matrix preset (64 one-step
  episodes), measured in a fresh process at 1 torch thread, wall and CPU time;
* **solo**: ``ddn train --env matrix --algo A`` alone (wall and CPU seconds);
* **pair**: two such ``ddn train`` processes started together (seeds 0 and 1), each
  one's wall time; the speed ratio is solo wall / pair wall (1.0: no slowdown).

The ``ddn train`` processes run with the thread policy's default (``OMP_NUM_THREADS``
and ``MKL_NUM_THREADS`` are removed from their environment) unless ``--threads N`` is
given. ``--baseline SRC`` repeats every measurement with another checkout's ``src``
folder (e.g. the commit before a change) right after this one's, so that the ratios
compare code measured under the same machine load.

``--scaling`` measures instead what the thread policy's default rests on: the median
time of one QMIX update at 1 thread and at every usable core, alternating on the same
batch, for updates from the matrix preset's to the paper's Predator-Prey batch.

    python benchmarks/small_runs.py [--algos vdn qmix] [--t-max 128000] [--threads N]
                                    [--baseline /path/to/old/src] [--json out.json]
    python benchmarks/small_runs.py --scaling [--updates 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ALGOS = ["vdn", "qmix", "qtran", "cw_qmix", "qplex"]
HERE_SRC = Path(__file__).resolve().parents[1] / "src"


def _environ(src: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(src)
    return env


def _wait(proc: subprocess.Popen) -> float:
    """Wait for ``proc``; its CPU seconds (user + system)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
    return usage.ru_utime + usage.ru_stime


def train(src: Path, algos: list[str], t_max: int, threads: int | None, tmp: Path) -> dict:
    """Wall and CPU seconds of ``ddn train`` on the matrix preset, one process per entry
    of ``algos`` (seed = position), all started together."""
    procs, t0 = [], time.perf_counter()
    for seed, algo in enumerate(algos):
        cmd = [
            sys.executable, "-m", "ddn.cli", "train", "--env", "matrix", "--algo", algo,
            "--seed", str(seed), "--t-max", str(t_max), "--no-progress",
            "--out", str(tmp / f"{algo}-{seed}-{time.monotonic_ns()}"),
            "--set", "save_model=false", "--set", "device=cpu",
            *(["--threads", str(threads)] if threads else []),
        ]  # fmt: skip
        procs.append(subprocess.Popen(cmd, env=_environ(src), stdout=subprocess.DEVNULL))
    walls, cpus = [], []
    for proc in procs:
        cpus.append(_wait(proc))
        walls.append(time.perf_counter() - t0)
    return {"wall_s": walls, "cpu_s": cpus}


def update_time(src: Path, algo: str, updates: int) -> dict:
    """One update of ``algo`` on the matrix preset, timed in a fresh process at 1 thread
    (set before the run is built; the policy also picks 1 for this preset)."""
    out = subprocess.run(
        [sys.executable, __file__, "--_update", algo, "--updates", str(updates)],
        env=_environ(src), capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _measure_update(algo: str, updates: int) -> None:
    """Body of the ``--_update`` process: median wall and CPU ms of one update."""
    import torch

    from ddn.config import resolve
    from ddn.experiment import Experiment

    torch.set_num_threads(1)
    cfg = resolve("matrix", algo, overrides=["device=cpu", "save_model=false"])
    with tempfile.TemporaryDirectory() as tmp:
        exp = Experiment(cfg, Path(tmp) / "run", progress=False)
        while not exp.buffer.can_sample(cfg.batch_size):
            exp.iteration()
        walls, cpus = [], []
        for i in range(updates + 5):
            batch = exp.buffer.sample(cfg.batch_size)
            w0, c0 = time.perf_counter(), time.process_time()
            exp.learner.train(batch, exp.episode)
            if i >= 5:  # the first updates allocate and warm up
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
    print(json.dumps({"wall_ms": 1e3 * statistics.median(walls),
                      "cpu_ms": 1e3 * statistics.median(cpus)}))  # fmt: skip


# (name, env, overrides): updates from the matrix preset's to the paper's Predator-Prey.
SCALING = [
    ("matrix preset", "matrix", []),
    ("predator_prey, batch 8", "predator_prey", ["batch_size=8"]),
    ("predator_prey, batch 32 (paper)", "predator_prey", ["batch_size=32"]),
]


def scaling(updates: int) -> None:
    """Median wall time of one QMIX update at 1 thread and at every usable core."""
    import torch

    from ddn.config import resolve
    from ddn.experiment import Experiment

    cores = len(os.sched_getaffinity(0))
    print(f"cpus {cores}, load average {os.getloadavg()}", flush=True)
    for name, env, overrides in SCALING:
        cfg = resolve(env, "qmix", overrides=[*overrides, "buffer_size=64", "device=cpu"])
        with tempfile.TemporaryDirectory() as tmp:
            exp = Experiment(cfg, Path(tmp) / "run", progress=False)
            while not exp.buffer.can_sample(cfg.batch_size):
                exp.iteration()
            batch = exp.buffer.sample(cfg.batch_size)
            times: dict[int, list[float]] = {1: [], cores: []}
            for i in range(updates + 1):
                for threads in times:
                    torch.set_num_threads(threads)
                    t0 = time.perf_counter()
                    exp.learner.train(batch, exp.episode)
                    if i > 0:  # the first update of each count warms up
                        times[threads].append(time.perf_counter() - t0)
        one, many = (statistics.median(t) for t in times.values())
        rows = cfg.batch_size * (exp.spec.episode_limit + 1) * exp.spec.n_agents
        print(
            f"{name:32s} {rows:6d} agent rows  1 thread {one * 1e3:8.1f} ms  "
            f"{cores} threads {many * 1e3:8.1f} ms  speed-up {one / many:.2f}",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algos", nargs="+", default=ALGOS)
    p.add_argument("--t-max", type=int, default=128_000, help="env steps (the preset: 128000)")
    p.add_argument("--threads", type=int, help="ddn train --threads (default: the policy's)")
    p.add_argument("--updates", type=int, default=100, help="timed updates per algorithm")
    p.add_argument("--baseline", type=Path, help="another checkout's src folder to compare")
    p.add_argument("--json", type=Path)
    p.add_argument("--scaling", action="store_true", help="1 thread against every core")
    p.add_argument("--_update", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.scaling:
        scaling(args.updates)
        return
    if args._update:
        _measure_update(args._update, args.updates)
        return

    versions = {"this": HERE_SRC, **({"baseline": args.baseline} if args.baseline else {})}
    print(f"cpus {len(os.sched_getaffinity(0))}, load average {os.getloadavg()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for algo in args.algos:
            for version, src in versions.items():
                upd = update_time(src, algo, args.updates)
                solo = train(src, [algo], args.t_max, args.threads, Path(tmp))
                pair = train(src, [algo, algo], args.t_max, args.threads, Path(tmp))
                row = {
                    "algo": algo, "version": version, "update_wall_ms": upd["wall_ms"],
                    "update_cpu_ms": upd["cpu_ms"], "solo_wall_s": solo["wall_s"][0],
                    "solo_cpu_s": solo["cpu_s"][0], "pair_wall_s": pair["wall_s"],
                    "pair_cpu_s": pair["cpu_s"],
                    "pair_speed": solo["wall_s"][0] / max(pair["wall_s"]),
                }  # fmt: skip
                rows.append(row)
                print(
                    f"{algo:8s} {version:8s} update {row['update_wall_ms']:6.2f} ms "
                    f"(cpu {row['update_cpu_ms']:6.2f})  solo {row['solo_wall_s']:6.1f} s "
                    f"(cpu {row['solo_cpu_s']:5.1f})  pair "
                    + " / ".join(f"{w:6.1f}" for w in row["pair_wall_s"])
                    + f" s  speed in pair {row['pair_speed']:.2f}",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps({"t_max": args.t_max, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
