"""Reductions over padded batches: the one masked mean and the one masked argmax.

Episodes are padded to a common length and agents may have unavailable actions; every
loss, metric and greedy choice of the project goes through these two.
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` (bool or 0/1, broadcastable to x) is
    set; 0, not NaN, when none is. Masked-out entries (padding) reach neither the value
    nor the gradient, whatever they hold (as long as they are finite)."""
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)


def masked_argmax(q: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """Greedy action over available actions: [..., A] -> [...]."""
    return q.masked_fill(~avail, float("-inf")).argmax(dim=-1)
