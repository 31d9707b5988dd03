"""VDN (Sunehag et al., 2018): Q_tot(s, u) = sum_i Q_i(tau_i, u_i).

The additive decomposition is the simplest factorisation satisfying IGM; it has no
parameters and ignores the context entirely.
"""

from __future__ import annotations

import torch

from ddn.nets.mixers.base import MixContext, Mixer


class VDNMixer(Mixer):
    """Sum of the chosen agents' Q-values; ``ctx`` may be ``None``."""

    def forward(self, qs: torch.Tensor, ctx: MixContext | None = None) -> torch.Tensor:
        return qs.sum(dim=-1)
