"""The one interface every mixer speaks.

A mixer maps the per-agent Q-values of a joint action to Q_tot. Leading dims ``...``
are free (usually ``[E, T]``: episodes x time), so a mixer runs over whole sequences
in one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class MixContext:
    """Everything a mixer may condition on, beyond the chosen agents' Q-values.

    Fields a mixer does not need may be ``None``.
    """

    state: torch.Tensor  # [..., S] global state
    actions_onehot: torch.Tensor | None = None  # [..., N, A] the joint action being scored
    max_qs: torch.Tensor | None = None  # [..., N] max_a Q_i(tau_i, a) (QPLEX advantages)
    agent_gru_out: torch.Tensor | None = None  # [..., N, H] agents' GRU outputs (QTRAN)


class Mixer(nn.Module):
    """``forward(qs [..., N], ctx) -> q_tot [...]``."""

    def forward(self, qs: torch.Tensor, ctx: MixContext) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError
