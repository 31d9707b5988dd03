"""The agents' local input x_i = [o_i, u_i^{t-1}, id_i]: the one place it is encoded.

Every agent network of the project reads the same x_i (the value-decomposition agents,
DDN's teacher and student, WQMIX's central agents), so the learner encodes a sampled
batch once per update (:meth:`LocalInputs.episodes`) and hands the tensor to each network
that unrolls it; acting encodes one step at a time (:meth:`LocalInputs.encode`, called by
:class:`~ddn.nets.actor.GreedyActor`). Storage never encodes, networks never read storage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class LocalInputs:
    """How x_i is built: its parts (each switchable, PyMARL's ``obs_last_action`` and
    ``obs_agent_id``) and sizes. x_i begins with o_i, so ``x[..., :obs_dim]`` is the
    observation without a copy."""

    obs_dim: int
    n_agents: int
    n_actions: int
    last_action: bool = True
    agent_id: bool = True

    @property
    def dim(self) -> int:
        """D, the width of x_i."""
        return (
            self.obs_dim
            + (self.n_actions if self.last_action else 0)
            + (self.n_agents if self.agent_id else 0)
        )

    def encode(self, obs: torch.Tensor, last_actions: torch.Tensor | None) -> torch.Tensor:
        """[..., N, O] obs, [..., N] int last actions -> x [..., N, D].

        ``last_actions`` uses -1 for "no previous action" (an episode's first step): an
        all-zero one-hot. It is not read (and may be None) without ``last_action``.
        """
        parts = [obs]
        if self.last_action:
            assert last_actions is not None, "x_i includes u_i^{t-1}: pass the last actions"
            parts.append(
                F.one_hot(last_actions.clamp(min=0), self.n_actions).to(obs.dtype)
                * (last_actions >= 0).unsqueeze(-1)
            )
        if self.agent_id:
            n = obs.shape[-2]
            eye = torch.eye(n, dtype=obs.dtype, device=obs.device)
            parts.append(eye.expand(*obs.shape[:-1], n))
        return torch.cat(parts, dim=-1)

    def episodes(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """x for every step of whole episodes: obs [E, T+1, N, O], the actions taken
        [E, T, N] -> [E, T+1, N, D].

        The result is an [E, T+1] view of time-major ([T+1, E, N, D]) storage: the layout
        the agent networks compute in (see :class:`~ddn.nets.agent.RNNAgent`), so they
        read it without a copy.
        """
        last = None
        if self.last_action:  # u^{t-1}: -1 before the first step
            acts = actions.transpose(0, 1)
            last = torch.cat((torch.full_like(acts[:1], -1), acts), dim=0)
        return self.encode(obs.transpose(0, 1), last).transpose(0, 1)
