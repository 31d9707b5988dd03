"""QTRAN-base (Son et al., 2019): a free joint Q_jt, a state value V_jt and the
constraints that tie them to the individual utilities.

Networks (``QTranNet``):
    Q_jt(s, u) = MLP_Q([s, sum_i enc([h_i, onehot(u_i)])])   (enc shared across agents)
    V_jt(s)    = MLP_V(s)
with h_i the agents' GRU outputs (``ctx.agent_gru_out``). Summing the per-agent
encodings keeps the input size independent of N and the network permutation-invariant.

Losses (paper Sec. 3, QTRAN-base; Q'_jt = sum_i Q_i, hat Q_jt = Q_jt with the gradient
stopped, u_bar = the per-agent greedy joint action, u = the taken joint action):
    L_opt  = ( Q'_jt(s, u_bar) - hat Q_jt(s, u_bar) + V_jt(s) )^2
    L_nopt = ( min[ Q'_jt(s, u) - hat Q_jt(s, u) + V_jt(s), 0 ] )^2
The full objective is L_td + lambda_opt L_opt + lambda_nopt L_nopt (the TD term on Q_jt is
the learner's); the reference configuration uses lambda_opt = 1, lambda_nopt = 0.1.
"""

from __future__ import annotations

import torch
from torch import nn

from ddn.nets.masked import masked_mean
from ddn.nets.mixers.base import MixContext


class QTranNet(nn.Module):
    """``forward(ctx) -> (q_jt [...], v_jt [...])``; needs state, agent_gru_out, actions_onehot."""

    def __init__(
        self,
        n_agents: int,
        n_actions: int,
        state_dim: int,
        hidden_dim: int,
        embed_dim: int = 64,
    ) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.n_actions = n_actions
        ae = hidden_dim + n_actions
        self.action_encoding = nn.Sequential(nn.Linear(ae, ae), nn.ReLU(), nn.Linear(ae, ae))
        self.q = nn.Sequential(
            nn.Linear(state_dim + ae, embed_dim),
            nn.ReLU(),
            nn.Linear(embed_dim, embed_dim),
            nn.ReLU(),
            nn.Linear(embed_dim, 1),
        )
        self.v = nn.Sequential(
            nn.Linear(state_dim, embed_dim),
            nn.ReLU(),
            nn.Linear(embed_dim, embed_dim),
            nn.ReLU(),
            nn.Linear(embed_dim, 1),
        )

    def forward(self, ctx: MixContext) -> tuple[torch.Tensor, torch.Tensor]:
        if ctx.agent_gru_out is None or ctx.actions_onehot is None:
            raise ValueError("QTranNet needs ctx.agent_gru_out and ctx.actions_onehot")
        h = ctx.agent_gru_out
        s = ctx.state.to(h.dtype)
        x = torch.cat([h, ctx.actions_onehot.to(h.dtype)], dim=-1)  # [..., N, H+A]
        enc = self.action_encoding(x).sum(dim=-2)
        q_jt = self.q(torch.cat([s, enc], dim=-1)).squeeze(-1)
        v_jt = self.v(s).squeeze(-1)
        return q_jt, v_jt


def qtran_losses(
    q_sum_greedy: torch.Tensor,
    q_jt_greedy: torch.Tensor,
    q_sum_taken: torch.Tensor,
    q_jt_taken: torch.Tensor,
    v_jt: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduce: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_opt, L_nopt) of QTRAN-base; all inputs ``[...]``, ``mask`` 1 on valid steps.

    ``q_sum_*`` = sum_i Q_i at the greedy (u_bar) / taken (u) joint action, with gradient;
    ``q_jt_*`` are detached here (hat Q_jt); ``v_jt`` keeps its gradient. With ``reduce``
    the masked means are returned, otherwise the per-sample terms (masked to 0).
    """
    opt = (q_sum_greedy - q_jt_greedy.detach() + v_jt) ** 2
    nopt = torch.clamp(q_sum_taken - q_jt_taken.detach() + v_jt, max=0.0) ** 2
    if not reduce:
        if mask is not None:
            m = mask.to(opt.dtype)
            opt, nopt = opt * m, nopt * m
        return opt, nopt
    if mask is None:
        return opt.mean(), nopt.mean()
    return masked_mean(opt, mask), masked_mean(nopt, mask)
