"""Disk use of checkpoints per preset: state.pt (networks, target networks, optimizer,
RNG states, counters) and buffer.pt per stored episode (``save_buffer=true``).

Builds each preset's learner and one environment copy, writes a real checkpoint with
``save_checkpoint`` into a temporary folder and measures the files. A buffer snapshot
holds the filled episodes only, so its size is ``episodes held x per-episode size``.

    python benchmarks/checkpoint_disk_use.py [--presets predator_prey:qmix smax/3m:ddn ...]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch.optim import Optimizer

from ddn.buffer import EpisodeBuffer
from ddn.checkpoint import save_checkpoint
from ddn.config import resolve
from ddn.experiment import build_learner, make_env

PRESETS = [
    "predator_prey:qmix", "predator_prey:ddn", "matrix:qmix", "matrix:ddn",
    "smax/3m:qmix", "smax/3m:ddn", "smax/MMM2:qmix", "smax/MMM2:ddn",
]  # fmt: skip


def measure(preset: str, root: Path) -> tuple[int, float]:
    """(bytes of state.pt, bytes of buffer.pt per stored episode) of ``env[/map]:algo``."""
    target, algo = preset.split(":")
    env_name, _, map_name = target.partition("/")
    cfg = resolve(env_name, algo, map_name or None, ["device=cpu"])
    env = make_env(cfg, 1, 0, torch.device("cpu"))
    learner = build_learner(cfg, env.spec, torch.device("cpu"))
    # Optimizers create their per-parameter state on the first step: take one (zero
    # gradients), as every checkpoint after training started holds that state.
    owners = [learner, getattr(learner, "td", None)]
    for opt in [v for o in owners if o for v in vars(o).values() if isinstance(v, Optimizer)]:
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = torch.zeros_like(p)
        opt.step()
    state = {"learner": learner.state_dict(), "config": cfg.to_dict()}
    folder = save_checkpoint(root / preset.replace("/", "-"), 0, state)
    buffers = []
    for episodes in (1, 11):  # the difference removes the file's fixed overhead
        buf = EpisodeBuffer(16, env.spec)
        buf.size, buf.cursor = episodes, episodes  # sizes only: contents do not matter
        path = root / f"{preset.replace('/', '-')}-{episodes}.pt"
        torch.save(buf.state_dict(), path)
        buffers.append(path.stat().st_size)
    return (folder / "state.pt").stat().st_size, (buffers[1] - buffers[0]) / 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    args = parser.parse_args()
    print("| preset | state.pt | buffer.pt per episode | buffer.pt at buffer_size 5000 |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            try:
                state, per_episode = measure(preset, Path(tmp))
            except Exception as exc:  # e.g. the smax extra missing: report, go on
                print(f"| `{preset}` | ({type(exc).__name__}: {exc}) | | |")
                continue
            print(
                f"| `{preset}` | {state / 1e6:.2f} MB | {_size(per_episode)} | "
                f"{_size(per_episode * 5000)} |"
            )


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


if __name__ == "__main__":
    main()
