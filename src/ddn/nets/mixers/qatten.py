"""Qatten (Yang et al., 2020): multi-head attention over agents, conditioned on the state.

    Q_tot(s, u) = c(s) + sum_h w_h(s) * sum_i lambda_{h,i}(s) Q_i(tau_i, u_i),
    lambda_{h,i} = softmax_i( q_h(s)^T k_{h,i} / sqrt(d) ),

with w_h >= 0 (``abs``) when ``weighted_head`` and w_h = 1 otherwise, so Q_tot is monotonic
in every Q_i (lambda > 0) and IGM holds.

Keys. The paper builds k_{h,i} from agent i's own features (its slice of the global state,
e.g. a SMAC unit's health/position). Generic environments expose no such per-unit slices,
so here agent i's feature is ``f_i = ReLU(W_s s + E e_i)``: the whole state plus a learned
embedding of the agent's one-hot id (``E e_i``, i.e. a bias-free linear layer on the id).
The ReLU makes the key depend on state and id jointly; with a purely linear key the state
part would add the same logit to every agent and cancel in the softmax.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ddn.nets.mixers.base import MixContext, Mixer
from ddn.nets.mixers.qmix import hypernet


class QattenMixer(Mixer):
    """Attention mixer; needs ``ctx.state`` only."""

    def __init__(
        self,
        n_agents: int,
        state_dim: int,
        embed_dim: int = 32,
        n_heads: int = 4,
        attend_embed: int = 32,
        weighted_head: bool = True,
        hypernet_layers: int = 2,
        hypernet_embed: int = 64,
    ) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.n_heads = n_heads
        self.attend_embed = attend_embed
        self.weighted_head = weighted_head
        self.query = hypernet(state_dim, n_heads * attend_embed, hypernet_layers, hypernet_embed)
        self.state_feat = nn.Linear(state_dim, hypernet_embed)
        self.agent_embed = nn.Linear(n_agents, hypernet_embed, bias=False)  # one-hot id -> emb
        self.key = nn.Linear(hypernet_embed, n_heads * attend_embed, bias=False)
        if weighted_head:
            self.hyper_w_head = hypernet(state_dim, n_heads, hypernet_layers, hypernet_embed)
        # c(s): the state-dependent constant of the paper.
        self.v = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))

    def attention(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (logits, lambda), both ``[..., H, N]``; logits feed an optional regulariser."""
        lead = state.shape[:-1]
        q = self.query(state).reshape(*lead, self.n_heads, self.attend_embed)
        ids = self.agent_embed.weight.t()  # [N, hidden] == agent_embed(eye(N))
        feat = torch.relu(self.state_feat(state).unsqueeze(-2) + ids)  # [..., N, hidden]
        k = self.key(feat).reshape(*lead, self.n_agents, self.n_heads, self.attend_embed)
        logits = torch.einsum("...hd,...nhd->...hn", q, k) / math.sqrt(self.attend_embed)
        return logits, torch.softmax(logits, dim=-1)

    def head_weights(self, state: torch.Tensor) -> torch.Tensor:
        """w_h(s) >= 0, ``[..., H]`` (all ones when not ``weighted_head``)."""
        if self.weighted_head:
            return self.hyper_w_head(state).abs()
        return state.new_ones(*state.shape[:-1], self.n_heads)

    def forward(self, qs: torch.Tensor, ctx: MixContext) -> torch.Tensor:
        s = ctx.state.to(qs.dtype)
        _, lam = self.attention(s)
        head_q = torch.einsum("...hn,...n->...h", lam, qs)
        return (self.head_weights(s) * head_q).sum(dim=-1) + self.v(s).squeeze(-1)
