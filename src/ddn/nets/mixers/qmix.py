"""QMIX (Rashid et al., 2018): a monotonic mixing network conditioned on the state.

Q_tot = w2(s)^T ELU(W1(s)^T q + b1(s)) + V(s), with W1, w2 produced by hypernetworks and
made non-negative by ``abs`` so that dQ_tot/dQ_i >= 0 (which gives IGM). Layer sizes follow
the PyMARL defaults (embed 32, two-layer hypernetworks with 64 hidden units, ReLU inside
the hypernetworks, ELU on the mixing hidden layer, a two-layer V(s) for the final bias).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ddn.nets.mixers.base import MixContext, Mixer


def hypernet(in_dim: int, out_dim: int, layers: int, hidden: int) -> nn.Module:
    """A state -> weights hypernetwork: one linear layer, or linear-ReLU-linear."""
    if layers == 1:
        return nn.Linear(in_dim, out_dim)
    if layers == 2:
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
    raise ValueError(f"hypernet layers must be 1 or 2, got {layers}")


class QMixer(Mixer):
    """Monotonic mixer; needs ``ctx.state`` only."""

    def __init__(
        self,
        n_agents: int,
        state_dim: int,
        embed_dim: int = 32,
        hypernet_layers: int = 2,
        hypernet_embed: int = 64,
    ) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.state_dim = state_dim
        self.embed_dim = embed_dim
        self.hyper_w1 = hypernet(state_dim, n_agents * embed_dim, hypernet_layers, hypernet_embed)
        self.hyper_b1 = nn.Linear(state_dim, embed_dim)
        self.hyper_w2 = hypernet(state_dim, embed_dim, hypernet_layers, hypernet_embed)
        # V(s) replaces the final bias so the state alone can shift Q_tot.
        self.v = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))

    def forward(self, qs: torch.Tensor, ctx: MixContext) -> torch.Tensor:
        s = ctx.state.to(qs.dtype)
        lead = qs.shape[:-1]
        w1 = self.hyper_w1(s).abs().reshape(*lead, self.n_agents, self.embed_dim)
        b1 = self.hyper_b1(s)
        # Broadcast-multiply and sum: as a batched matmul these [1 x N] @ [N x E]
        # products are tiny and bmm runs them several times slower on CPU.
        hidden = F.elu((qs.unsqueeze(-1) * w1).sum(dim=-2) + b1)
        w2 = self.hyper_w2(s).abs()
        return (hidden * w2).sum(dim=-1) + self.v(s).squeeze(-1)
