"""Mixers: value-decomposition networks from agent Q-values to Q_tot.

``build_mixer`` covers the plain ``Mixer`` family (vdn, qmix, qatten, qplex). WQMIX's
``CentralMixer``/``wqmix_weights`` and QTRAN's ``QTranNet``/``qtran_losses`` are pieces
used directly by their learners.
"""

from __future__ import annotations

from typing import Any

from ddn.nets.mixers.base import MixContext, Mixer
from ddn.nets.mixers.qatten import QattenMixer
from ddn.nets.mixers.qmix import QMixer
from ddn.nets.mixers.qplex import QPLEXMixer
from ddn.nets.mixers.qtran import QTranNet, qtran_losses
from ddn.nets.mixers.vdn import VDNMixer
from ddn.nets.mixers.wqmix import CentralMixer, joint_action_is_greedy, wqmix_weights

MIXERS: dict[str, type[Mixer]] = {
    "vdn": VDNMixer,
    "qmix": QMixer,
    "qatten": QattenMixer,
    "qplex": QPLEXMixer,
}


def build_mixer(
    name: str, n_agents: int, state_dim: int, n_actions: int, embed_dim: int = 32, **kw: Any
) -> Mixer:
    """Build a mixer by name with one signature; ``kw`` goes to the class's extra options."""
    key = name.lower()
    if key == "vdn":
        return VDNMixer()
    if key == "qmix":
        return QMixer(n_agents, state_dim, embed_dim=embed_dim, **kw)
    if key == "qatten":
        return QattenMixer(n_agents, state_dim, embed_dim=embed_dim, **kw)
    if key == "qplex":
        return QPLEXMixer(n_agents, state_dim, n_actions, embed_dim=embed_dim, **kw)
    raise ValueError(f"unknown mixer {name!r}; choose from {sorted(MIXERS)}")


__all__ = [
    "MIXERS",
    "CentralMixer",
    "MixContext",
    "Mixer",
    "QMixer",
    "QPLEXMixer",
    "QTranNet",
    "QattenMixer",
    "VDNMixer",
    "build_mixer",
    "joint_action_is_greedy",
    "qtran_losses",
    "wqmix_weights",
]
