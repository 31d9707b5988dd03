"""DDN's fusion blocks: the Personalization Fusion Block (PFB) and the Independent
Observation Block (IOB) — one structure, two inputs (paper Sec. 4.2, Fig. 2).

A hypernetwork of the agent's local information x_i = [o_i, u_i^{t-1}, id_i] produces a
weight matrix W_i (V x d) and a bias B_i (d), and the block outputs ``v W_i + B_i``:

* PFB: v = S, the global state, shared by all agents: S_hat_i = S W_i + B_i;
* IOB: v = o_i, the agent's own observation: o_hat_i = o_i W'_i + B'_i.

The hypernetwork is z_i = ReLU(L x_i) (``hypernet_dim`` = h units) followed by a linear
map to W_i, so W_i = sum_m z'_im A_m with z'_i = [z_i, 1] and h+1 basis matrices A_m
(V x d). W_i (V*d numbers per agent and step: 19,200 for a 300-float state) is never
materialised; the contraction order below costs O(V d (h+1)) per step:

* PFB: P = S @ A (once per step, shared by the N agents), then S_hat_i = P z'_i;
* IOB: Y_i = o_i @ A for all h+1 bases in one matmul, then o_hat_i = sum_m z'_im Y_im.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class FusionBlock(nn.Module):
    def __init__(
        self,
        hyper_in: int,
        value_dim: int,
        out_dim: int,
        hypernet_dim: int = 4,
        bias_hidden: int = 64,
    ):
        super().__init__()
        self.value_dim, self.out_dim, self.hypernet_dim = value_dim, out_dim, hypernet_dim
        self.hyper = nn.Linear(hyper_in, hypernet_dim)
        # Basis matrices A_m, laid out [V, h+1, d] so both contraction orders are matmuls;
        # initialised like a linear layer with fan-in V*(h+1) (the IOB's outer product).
        bound = 1.0 / math.sqrt(value_dim * (hypernet_dim + 1))
        self.basis = nn.Parameter(torch.empty(value_dim, hypernet_dim + 1, out_dim))
        nn.init.uniform_(self.basis, -bound, bound)
        # B_i has its own, wider head (as QMIX's hypernetworks give biases their own): it
        # is the path by which the local information itself reaches the agent network.
        self.bias = nn.Sequential(
            nn.Linear(hyper_in, bias_hidden), nn.ReLU(), nn.Linear(bias_hidden, out_dim)
        )

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.relu(self.hyper(x))
        return torch.cat((z, torch.ones_like(z[..., :1])), dim=-1)  # z'_i: [..., N, h+1]

    def weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_i [..., N, V, d], B_i [..., N, d]) explicitly: for tests and inspection."""
        z1 = self._hidden(x)
        w = torch.einsum("...m,vmd->...vd", z1, self.basis)
        return w, self.bias(x)

    def forward(self, x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """x [..., N, X]; value [..., V] (shared, PFB) or [..., N, V] (per agent, IOB)
        -> [..., N, d]."""
        z1 = self._hidden(x)
        v, h1, d = self.value_dim, self.hypernet_dim + 1, self.out_dim
        if value.dim() == x.dim() - 1:  # one value for all agents: contract it first
            p = (value @ self.basis.view(v, h1 * d)).view(*value.shape[:-1], h1, d)
            out = z1 @ p  # [..., N, h+1] @ [..., h+1, d]
        else:  # per-agent values: project each onto all h+1 bases, then mix by z'_i
            y = (value @ self.basis.view(v, h1 * d)).view(*value.shape[:-1], h1, d)
            out = (y * z1.unsqueeze(-1)).sum(dim=-2)
        return out + self.bias(x)
