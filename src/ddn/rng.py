"""A run's random streams: one seeded ``torch.Generator`` per purpose.

Exploration (the rollout's epsilon-greedy draws), replay sampling and the IDM's masks
each draw from a generator of their own, seeded from the run seed and the purpose's
name, so that one purpose drawing more or less (a longer episode, another batch size,
IDM off) never shifts another's numbers, and each is saved in and restored from
checkpoints (exact resume). Network initialisation still draws from torch's global
generator, seeded by the run seed before the networks are built.

The generators live on the CPU whatever the run's device: their draws are small (one
[B, N, A] tensor per env step, one [E, T] mask per update) and are moved to the device,
so a run draws the same numbers on a CPU and a GPU and its checkpoints resume on either.
"""

from __future__ import annotations

import hashlib

import torch

EXPLORATION, REPLAY, IDM_MASK = "exploration", "replay", "idm_mask"


def stream_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for ``purpose`` from the run seed: a hash, so that nearby run seeds
    (0, 1, 2, ...) give unrelated streams and no two purposes share one."""
    digest = hashlib.sha256(f"ddn:{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seeded_generator(seed: int, purpose: str) -> torch.Generator:
    """The (CPU) generator of ``purpose`` for run seed ``seed``."""
    generator = torch.Generator()
    generator.manual_seed(stream_seed(seed, purpose))
    return generator
