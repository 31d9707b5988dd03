"""Weighted QMIX (Rashid et al., 2020): the unrestricted central Q* and the loss weights.

WQMIX trains QMIX's monotonic Q_tot with a *weighted* TD loss
``sum w(s, u) (Q_tot(s, u) - y)^2`` whose target y is bootstrapped from an unrestricted
joint value Q* (``CentralMixer``), itself trained with an unweighted TD loss.

Weightings (paper Sec. 5, "Centrally-Weighted QMIX" / "Optimistically-Weighted QMIX"; the
deep-RL versions of the idealised central and optimistic weightings of Sec. 4):

* CW:  w(s, u) = 1  if  y > Q*(s, u_hat)  or  u = u_hat,  else alpha,
  where u_hat = argmax_u Q_tot(s, u) is the QMIX greedy joint action (each agent's argmax)
  and Q*(s, u_hat) is the central network evaluated at it.
* OW:  w(s, u) = 1  if  Q_tot(s, u) < y,  else alpha.

alpha = 0.1 is the reference configuration's default (``w: 0.1  # alpha in the paper``
for both CW-QMIX and OW-QMIX).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ddn.nets.mixers.base import MixContext


class CentralMixer(nn.Module):
    """Q*(s, u) = MLP([s, q*_1..q*_N]) + V(s): a plain feedforward net, *not* monotonic.

    ``qs`` are the central agents' utilities of the chosen actions, ``[..., N]`` or
    ``[..., N, central_action_embed]``. Three ReLU hidden layers of ``embed_dim`` (256 in the
    reference config) and a two-layer V(s), as in WQMIX's "ff" central mixer. Needs
    ``ctx.state`` only. ``central_skip`` adds sum(qs) (an option of the reference code).
    """

    def __init__(
        self,
        n_agents: int,
        state_dim: int,
        central_action_embed: int = 1,
        embed_dim: int = 256,
        central_skip: bool = False,
    ) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.central_action_embed = central_action_embed
        self.central_skip = central_skip
        in_dim = state_dim + n_agents * central_action_embed
        self.net = nn.Sequential(
            nn.Linear(in_dim, embed_dim),
            nn.ReLU(),
            nn.Linear(embed_dim, embed_dim),
            nn.ReLU(),
            nn.Linear(embed_dim, embed_dim),
            nn.ReLU(),
            nn.Linear(embed_dim, 1),
        )
        self.v = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))

    def forward(self, qs: torch.Tensor, ctx: MixContext) -> torch.Tensor:
        s = ctx.state.to(qs.dtype)
        if qs.dim() == s.dim() + 1:  # [..., N, E] -> [..., N*E]
            qs = qs.flatten(start_dim=-2)
        q = self.net(torch.cat([s, qs], dim=-1)) + self.v(s)
        out = q.squeeze(-1)
        if self.central_skip:
            out = out + qs.sum(dim=-1)
        return out


def joint_action_is_greedy(actions: torch.Tensor, greedy_actions: torch.Tensor) -> torch.Tensor:
    """``u == u_hat`` for every agent: actions ``[..., N]`` (indices) -> bool ``[...]``."""
    return (actions == greedy_actions).all(dim=-1)


def wqmix_weights(
    target: torch.Tensor,
    *,
    kind: Literal["cw", "ow"] = "cw",
    alpha: float = 0.1,
    q_tot: torch.Tensor | None = None,
    central_greedy_q: torch.Tensor | None = None,
    is_greedy: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample loss weights in {1, alpha}, shape of ``target``, no gradient.

    kind "cw" needs ``central_greedy_q`` = Q*(s, u_hat) and ``is_greedy`` (u == u_hat, bool);
    kind "ow" needs ``q_tot`` = Q_tot(s, u). ``target`` is the TD target y.
    """
    target = target.detach()
    if kind == "cw":
        if central_greedy_q is None or is_greedy is None:
            raise ValueError("CW weighting needs central_greedy_q and is_greedy")
        full = (target > central_greedy_q.detach()) | is_greedy.bool()
    elif kind == "ow":
        if q_tot is None:
            raise ValueError("OW weighting needs q_tot")
        full = q_tot.detach() < target
    else:
        raise ValueError(f"kind must be 'cw' or 'ow', got {kind!r}")
    return torch.where(full, torch.ones_like(target), torch.full_like(target, alpha))
