"""Comparing two runs for exact-resume tests: checkpoint states and logged events."""

from __future__ import annotations

import torch


def without_time(events: list[dict]) -> list[dict]:
    """Logged events without their wall-clock entries, the only ones a resume changes."""
    return [{k: v for k, v in e.items() if not k.startswith("time/")} for e in events]


def assert_states_equal(a, b, path: str = "") -> None:
    """Two nested state dicts hold the same keys and bit-identical tensors and values;
    a mismatch names its path."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            assert_states_equal(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_states_equal(x, y, f"{path}/{i}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    else:
        assert a == b, path
