"""QPLEX (Wang et al., 2021): duplex dueling value decomposition.

Individual dueling: V_i = max_a Q_i(tau_i, a) (``ctx.max_qs``), A_i = Q_i - V_i <= 0.
Transformation (per agent, state-conditioned): Q_i' = w_i(s) Q_i + b_i(s),
V_i' = w_i(s) V_i + b_i(s), hence A_i' = w_i(s) A_i, with w_i = |.| + 1e-10 > 0.
Joint dueling:

    Q_tot(s, u) = V_tot(s) + A_tot(s, u),  V_tot = sum_i V_i',  A_tot = sum_i lambda_i(s, u) A_i'

with lambda_i(s, u) > 0 from multi-head attention (the paper's "DMAQ_SI_Weight"):

    lambda_i(s, u) = sum_k |key_k(s)| * sigmoid(agent_k(s))_i * sigmoid(action_k(s, u))_i.

IGM: A_i' <= 0 with equality at each agent's argmax and lambda_i > 0, so A_tot <= 0 with
equality at the per-agent greedy joint action, which therefore maximises Q_tot (V_tot does
not depend on u). The forward pass adds V_tot and A_tot separately, so Q_tot(u) <= V_tot
holds exactly in floating point, not only up to rounding.

``stop_gradient`` (PyMARL's ``is_stop_gradient``, on in the paper's SMAC config): the
advantage entering the lambda-term is detached, i.e. Q_tot = sum_i Q_i' +
sum_i (lambda_i - 1) sg(A_i'); the value is unchanged, only the gradient paths differ.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from ddn.nets.mixers.base import MixContext, Mixer


class HeadMLP(nn.Module):
    """K independent MLPs (one per attention head) evaluated in one batched einsum."""

    def __init__(self, n_heads: int, in_dim: int, out_dim: int, layers: int, hidden: int) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in itertools.pairwise(dims):
            bound = 1.0 / math.sqrt(d_in)  # nn.Linear's default init range
            w = torch.empty(n_heads, d_in, d_out).uniform_(-bound, bound)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.empty(n_heads, d_out).uniform_(-bound, bound)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., in] -> [..., K, out]``."""
        h = torch.einsum("...i,kio->...ko", x, self.weights[0]) + self.biases[0]
        for w, b in zip(self.weights[1:], self.biases[1:], strict=True):
            h = torch.einsum("...ki,kio->...ko", torch.relu(h), w) + b
        return h


class QPLEXMixer(Mixer):
    """Duplex dueling mixer; needs ``ctx.state``, ``ctx.actions_onehot`` and ``ctx.max_qs``.

    ``embed_dim`` is accepted for a uniform constructor signature; the transformation
    networks use ``hypernet_embed`` hidden units, as in the reference configuration.
    """

    def __init__(
        self,
        n_agents: int,
        state_dim: int,
        n_actions: int,
        embed_dim: int = 32,
        n_heads: int = 4,
        hypernet_embed: int = 64,
        adv_hypernet_layers: int = 1,
        adv_hypernet_embed: int = 64,
        stop_gradient: bool = True,
    ) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.n_actions = n_actions
        self.embed_dim = embed_dim
        self.n_heads = n_heads
        self.stop_gradient = stop_gradient
        self.hyper_w = nn.Sequential(
            nn.Linear(state_dim, hypernet_embed), nn.ReLU(), nn.Linear(hypernet_embed, n_agents)
        )
        self.hyper_b = nn.Sequential(
            nn.Linear(state_dim, hypernet_embed), nn.ReLU(), nn.Linear(hypernet_embed, n_agents)
        )
        sa_dim = state_dim + n_agents * n_actions
        self.key = HeadMLP(n_heads, state_dim, 1, adv_hypernet_layers, adv_hypernet_embed)
        self.agents = HeadMLP(n_heads, state_dim, n_agents, adv_hypernet_layers, adv_hypernet_embed)
        self.action = HeadMLP(n_heads, sa_dim, n_agents, adv_hypernet_layers, adv_hypernet_embed)

    def transform(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(w_i(s) > 0, b_i(s)), both ``[..., N]``."""
        return self.hyper_w(state).abs() + 1e-10, self.hyper_b(state)

    def lambdas(self, state: torch.Tensor, actions_onehot: torch.Tensor) -> torch.Tensor:
        """lambda_i(s, u) > 0, ``[..., N]``."""
        aoh = actions_onehot.to(state.dtype).flatten(start_dim=-2)
        key = self.key(state).abs() + 1e-10  # [..., K, 1]
        agents = torch.sigmoid(self.agents(state))  # [..., K, N]
        action = torch.sigmoid(self.action(torch.cat([state, aoh], dim=-1)))  # [..., K, N]
        return (key * agents * action).sum(dim=-2)

    def v_tot(self, state: torch.Tensor, max_qs: torch.Tensor) -> torch.Tensor:
        """V_tot(s) = sum_i w_i(s) V_i + b_i(s), ``[...]``; equals Q_tot at the greedy action."""
        w, b = self.transform(state.to(max_qs.dtype))
        return (w * max_qs + b).sum(dim=-1)

    def forward(self, qs: torch.Tensor, ctx: MixContext) -> torch.Tensor:
        if ctx.actions_onehot is None or ctx.max_qs is None:
            raise ValueError("QPLEXMixer needs ctx.actions_onehot and ctx.max_qs")
        s = ctx.state.to(qs.dtype)
        max_qs = ctx.max_qs.to(qs.dtype)
        w, b = self.transform(s)
        v_tot = (w * max_qs + b).sum(dim=-1)
        adv = w * (qs - max_qs)  # A_i' <= 0
        lam = self.lambdas(s, ctx.actions_onehot)
        if self.stop_gradient:
            adv_d = adv.detach()
            # value lam*A' exactly; gradient of sum_i A_i' + (lam_i - 1) sg(A_i')
            adv_term = lam * adv_d + (adv - adv_d)
        else:
            adv_term = lam * adv
        return v_tot + adv_term.sum(dim=-1)
