"""Predator-Prey throughput: the vectorized env against the plain loop-based reference.

An *env step* is one joint step of one environment (all its agents), so stepping ``B``
environments once counts ``B`` env steps. Both sides play uniformly random *available*
actions with the paper's preset (8 predators, 8 prey, 10x10 grid, 200-step episodes),
and the timed loop includes everything an episode collector pays for:

* vectorized: drawing the actions with torch (``torch.rand`` plus ``avail``, then
  ``argmax``: uniform over the available actions), ``env.step`` (which checks the
  actions and computes obs, state and avail), counting the running environments, and
  ``reset()`` when every environment has finished;
* reference (``tests/reference_predator_prey.py``): ``B`` environments stepped one after
  another in Python, each step drawing its predator/prey orders, prey moves and actions
  with Python's ``random`` and computing ``obs()``, ``state()`` and ``avail()``, with a
  ``reset()`` (also timed) right after an episode ends.

Only finished-but-waiting environments are not counted (with random actions every
episode runs the full 200 steps, so none wait). Each side is warmed up, then measured
``--repeats`` times (interleaved with the other side), each measurement lasting at least
``--seconds`` (the vectorized one also at least ``--episodes`` whole episodes); the best
measurement is reported, as ``timeit`` does, because on a shared machine noise only ever
slows a run down. ``--json`` also keeps every measurement.

Usage::

    python benchmarks/env_throughput.py [--sizes 1 8 64 512] [--seconds 2] [--repeats 3]
                                        [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

import ddn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference_predator_prey import RefPredatorPrey

PARAMS: dict[str, Any] = {}  # the registered defaults are the paper's preset


class VectorizedBench:
    """The vectorized env with ``B`` environments, timed over whole episodes."""

    def __init__(self, b: int, seed: int):
        self.env = ddn.envs.make("predator_prey", num_envs=b, seed=seed, **PARAMS)
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.run(0.0, 1)  # warm-up: one full episode

    def run(self, seconds: float, min_episodes: int) -> dict[str, float]:
        env, gen = self.env, self.gen
        out = env.reset()
        running = env.num_envs
        steps, episodes = 0, 0
        start = time.perf_counter()
        while True:
            # Available actions score in [1, 2), unavailable ones in [0, 1): the argmax is
            # uniform over the available ones.
            u = torch.rand(out.avail.shape, generator=gen)
            actions = (u + out.avail).argmax(dim=-1)
            out = env.step(actions)
            steps += running
            done = out.done
            running = env.num_envs - int(done.sum())
            if running == 0:
                episodes += 1
                elapsed = time.perf_counter() - start
                if elapsed >= seconds and episodes >= min_episodes:
                    return {"steps": steps, "seconds": elapsed, "episodes": episodes}
                out = env.reset()
                running = env.num_envs


class ReferenceBench:
    """``B`` reference environments stepped one after another, in rounds, in Python."""

    def __init__(self, b: int, seed: int):
        self.rng = random.Random(seed)
        probe = ddn.envs.make("predator_prey", num_envs=1, **PARAMS)
        self.n, self.m = probe.n_agents, probe.n_prey
        self.n_cells = probe.height * probe.width
        self.envs = [
            RefPredatorPrey(
                n_agents=probe.n_agents,
                n_prey=probe.n_prey,
                height=probe.height,
                width=probe.width,
                view=probe.view,
                capture_reward=probe.capture_reward,
                punishment=probe.punishment,
                episode_limit=probe.episode_limit,
            )
            for _ in range(b)
        ]
        self.avails = [self._reset(env) for env in self.envs]
        self.run(0.0)  # warm-up: one round

    def _reset(self, env: RefPredatorPrey) -> list[list[bool]]:
        env.reset(self.rng.sample(range(self.n_cells), self.n + self.m))
        env.obs()
        env.state()
        return env.avail()

    def run(self, seconds: float) -> dict[str, float]:
        """Rounds of one step of every env until ``seconds`` have passed; an env whose
        episode ends is reset right after that step (timed, like the vectorized reset)."""
        rng, envs, avails = self.rng, self.envs, self.avails
        agents, prey = list(range(self.n)), list(range(self.m))
        steps, episodes = 0, 0
        start = time.perf_counter()
        while True:
            for k, env in enumerate(envs):
                actions = [rng.choice([a for a, ok in enumerate(row) if ok]) for row in avails[k]]
                _, terminated, truncated = env.step(
                    actions,
                    rng.sample(agents, self.n),
                    rng.sample(prey, self.m),
                    [rng.random() for _ in prey],
                )
                env.obs()
                env.state()
                avails[k] = env.avail()
                steps += 1
                if terminated or truncated:
                    episodes += 1
                    avails[k] = self._reset(env)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return {"steps": steps, "seconds": elapsed, "episodes": episodes}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 64, 512])
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="minimum timed seconds per measurement"
    )
    parser.add_argument(
        "--episodes", type=int, default=3, help="minimum timed episodes (vectorized)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="measurements per side and B, interleaved; the best one is reported",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    machine = {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    print(
        f"torch {machine['torch']}, {machine['torch_threads']} threads, python "
        f"{machine['python']}, processor {machine['processor']!r}, "
        f"os.cpu_count() = {machine['cpu_count']}, {machine['platform']}"
    )
    print(
        "Predator-Prey paper preset (8 predators, 8 prey, 10x10, 200 steps); "
        "uniformly random available actions; action sampling is inside the timed loop;\n"
        f"best of {args.repeats} interleaved measurements of >= {args.seconds:g} s each.\n"
        "env steps/s = joint steps of one environment per second (B envs stepped once = B)."
    )
    header = f"{'B':>5} {'vectorized steps/s':>19} {'reference steps/s':>18} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    rows = []
    for b in args.sizes:
        vec_bench, ref_bench = VectorizedBench(b, args.seed), ReferenceBench(b, args.seed)
        vec_runs, ref_runs = [], []
        for _ in range(args.repeats):  # interleaved, so that a noisy moment hits both sides
            vec_runs.append(vec_bench.run(args.seconds, args.episodes))
            ref_runs.append(ref_bench.run(args.seconds))
        vec = max(vec_runs, key=lambda r: r["steps"] / r["seconds"])
        ref = max(ref_runs, key=lambda r: r["steps"] / r["seconds"])
        vec_rate = vec["steps"] / vec["seconds"]
        ref_rate = ref["steps"] / ref["seconds"]
        row = {
            "B": b,
            "vectorized_steps_per_s": vec_rate,
            "reference_steps_per_s": ref_rate,
            "ratio": vec_rate / ref_rate,
            "vectorized": vec,
            "reference": ref,
            "vectorized_runs": vec_runs,
            "reference_runs": ref_runs,
        }
        rows.append(row)
        print(f"{b:>5} {vec_rate:>19,.0f} {ref_rate:>18,.0f} {row['ratio']:>7.1f}x", flush=True)
    result = {"machine": machine, "rows": rows}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
