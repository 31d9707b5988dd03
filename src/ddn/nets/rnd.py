"""Random network distillation on the global state: DDN's Internal Distillation Module.

A frozen, randomly initialised target MLP T and a trained predictor MLP P (same shape)
read the global state; the prediction error e(S) = ||P(S) - T(S)||^2 is high on states
the predictor has rarely been trained on (paper Sec. 4.3, after Burda et al., 2018).
The running root mean square of e lets the intrinsic reward be scaled the same way
across environments.
"""

from __future__ import annotations

import torch
from torch import nn


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, out_dim),
    )  # fmt: skip


class RunningVariance(nn.Module):
    """Running mean and variance (parallel-update formula); buffers go into checkpoints."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("count", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("mean", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("var", torch.tensor(1.0, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.double().flatten()
        n = x.numel()
        if n == 0:
            return
        b_mean, b_var = x.mean(), x.var(unbiased=False)
        total = self.count + n
        delta = b_mean - self.mean
        m2 = self.var * self.count + b_var * n + delta**2 * self.count * n / total
        self.mean += delta * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    @property
    def rms(self) -> torch.Tensor:
        """Root mean square, sqrt(var + mean^2). Unlike the std it stays the size of the
        values when they barely vary (e.g. every state the same, as in a matrix game),
        so dividing by it can never blow a constant error up to a huge reward."""
        return (self.var + self.mean**2).sqrt().clamp(min=1e-8)


class RND(nn.Module):
    def __init__(self, state_dim: int, embed_dim: int = 64, hidden: int = 128):
        super().__init__()
        self.target = _mlp(state_dim, hidden, embed_dim)
        self.predictor = _mlp(state_dim, hidden, embed_dim)
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.error_stats = RunningVariance()

    def error(self, state: torch.Tensor) -> torch.Tensor:
        """e(S) = ||P(S) - T(S)||^2 over the embedding, [...]; differentiable in P only."""
        with torch.no_grad():
            target = self.target(state)
        return ((self.predictor(state) - target) ** 2).sum(dim=-1)
