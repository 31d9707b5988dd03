"""How much JAX's persistent compilation cache saves a SMAX run's start.

    python benchmarks/smax_compile_cache.py --map 3s_vs_5z --episode-limit 250

Three fresh processes build a run's two environments (``--batches``, default 8 and 32
battles: the training and test batch sizes of the smax preset), reset them and take one
step, and report the process's CPU time from start to ready: first with the cache off
(``DDN_JAX_CACHE=off``), then twice with an empty temporary cache (the first fills it,
the second loads from it). The ratio uncached / warm is the number to read: CPU time
counts this process only, so it holds on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

_CHILD = """
import time, torch, ddn.envs
for b in {batches}:
    env = ddn.envs.make("smax", num_envs=b, seed=0, map_name={map_name!r},
                        episode_limit={limit})
    env.reset()
    env.step(torch.full((b, env.spec.n_agents), 4, dtype=torch.long))  # 4: stop
print(time.process_time())
"""


def ready_seconds(code: str, cache: str) -> float:
    env = {**os.environ, "DDN_JAX_CACHE": cache, "OMP_NUM_THREADS": "1"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--map", default="3s_vs_5z")
    p.add_argument("--episode-limit", type=int, default=250)
    p.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    args = p.parse_args()
    code = _CHILD.format(batches=args.batches, map_name=args.map, limit=args.episode_limit)
    with tempfile.TemporaryDirectory() as cache:
        uncached = ready_seconds(code, "off")
        cold = ready_seconds(code, cache)
        warm = ready_seconds(code, cache)
    print(f"{args.map}, batches {args.batches}: CPU seconds from start to ready")
    print(f"  cache off   {uncached:6.1f}")
    print(f"  cache cold  {cold:6.1f}  (fills the cache)")
    print(f"  cache warm  {warm:6.1f}  (loads from it)")
    print(f"  uncached / warm: {uncached / warm:.1f}x")


if __name__ == "__main__":
    main()
