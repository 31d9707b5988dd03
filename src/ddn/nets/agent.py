"""The parameter-shared recurrent agent: MLP -> GRU -> Q head.

One network serves all agents (the agent id is in the input). In the learner it runs
over whole episode sequences in one ``nn.GRU`` call; in rollouts one step at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from ddn.buffer import EpisodeBatch
    from ddn.envs import EnvOutput


@dataclass
class AgentOutput:
    q: torch.Tensor  # [..., N, A] Q_i over all actions
    hidden: torch.Tensor  # [..., N, H] GRU outputs (QTRAN reads them)
    feature: torch.Tensor  # [..., N, H] MLP output before the GRU (DDN's F_i)
    block: torch.Tensor | None = None  # [..., N, d] DDN's fusion-block output (PFB/IOB)

    def detach(self) -> AgentOutput:
        return AgentOutput(
            *(
                None if x is None else x.detach()
                for x in (self.q, self.hidden, self.feature, self.block)
            )
        )


def agent_input_dim(
    obs_dim: int, n_actions: int, n_agents: int, last_action: bool, agent_id: bool
) -> int:
    return obs_dim + (n_actions if last_action else 0) + (n_agents if agent_id else 0)


def build_agent_inputs(
    obs: torch.Tensor,
    last_actions: torch.Tensor | None,
    n_actions: int,
    agent_id: bool,
) -> torch.Tensor:
    """[..., N, O] obs (+ one-hot last action [..., N] int, + one-hot id) -> [..., N, D].

    ``last_actions`` uses -1 for "no previous action" (first step): an all-zero one-hot.
    """
    parts = [obs]
    if last_actions is not None:
        parts.append(
            F.one_hot(last_actions.clamp(min=0), n_actions).to(obs.dtype)
            * (last_actions >= 0).unsqueeze(-1)
        )
    if agent_id:
        n = obs.shape[-2]
        eye = torch.eye(n, dtype=obs.dtype, device=obs.device)
        parts.append(eye.expand(*obs.shape[:-1], n))
    return torch.cat(parts, dim=-1)


class RNNAgent(nn.Module):
    def __init__(self, input_dim: int, n_actions: int, hidden_dim: int = 64):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.rnn = nn.GRU(hidden_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, n_actions)

    def initial_hidden(self, batch: int, n_agents: int, device: torch.device) -> torch.Tensor:
        return torch.zeros(batch, n_agents, self.hidden_dim, device=device)

    def forward(
        self, inputs: torch.Tensor, h0: torch.Tensor | None = None
    ) -> tuple[AgentOutput, torch.Tensor]:
        """inputs [E, T, N, D] (h0 [E, N, H] or None) -> (outputs [E, T, N, ...], h_T [E, N, H]).

        The GRU runs time-major (``batch_first=False``): that is the layout its CPU and
        cuDNN kernels use, so a batch-first call would transpose its input and output
        in memory. The inputs are read in [T, E, N] order (fc1 copies them once, at
        width D) and the outputs are returned as [E, T, N] views of [T, E, N] storage,
        so no H-wide tensor is ever transposed in memory.
        """
        e, t, n, _ = inputs.shape
        feature = F.relu(self.fc1(inputs.transpose(0, 1)))  # [T, E, N, H], contiguous
        h = None if h0 is None else h0.reshape(1, e * n, self.hidden_dim)
        out, h_last = self.rnn(feature.view(t, e * n, self.hidden_dim), h)
        hidden = out.view(t, e, n, self.hidden_dim)
        q = self.fc2(hidden)
        return (
            AgentOutput(
                q=q.transpose(0, 1), hidden=hidden.transpose(0, 1), feature=feature.transpose(0, 1)
            ),
            h_last.reshape(e, n, self.hidden_dim),
        )


class AgentQNetwork(nn.Module):
    """The agent network with its input convention: what acts and what the learner unrolls.

    Inputs are ``[o_i, u_i^{t-1}, id_i]`` (each switchable). ``sequence`` unrolls whole
    episodes of an :class:`~ddn.buffer.EpisodeBatch`; ``step`` advances one env step.
    """

    def __init__(
        self,
        obs_dim: int,
        n_agents: int,
        n_actions: int,
        hidden_dim: int = 64,
        last_action: bool = True,
        agent_id: bool = True,
    ):
        super().__init__()
        self.n_agents, self.n_actions = n_agents, n_actions
        self.last_action, self.agent_id = last_action, agent_id
        dim = agent_input_dim(obs_dim, n_actions, n_agents, last_action, agent_id)
        self.net = RNNAgent(dim, n_actions, hidden_dim)

    def _inputs(self, obs: torch.Tensor, last_actions: torch.Tensor) -> torch.Tensor:
        return build_agent_inputs(
            obs, last_actions if self.last_action else None, self.n_actions, self.agent_id
        )

    def initial_hidden(self, batch: int, device: torch.device) -> torch.Tensor:
        return self.net.initial_hidden(batch, self.n_agents, device)

    def sequence(self, batch: EpisodeBatch) -> AgentOutput:
        """Unroll whole episodes: outputs [E, T+1, N, ...]."""
        out, _ = self.net(batch.agent_inputs(self.n_actions, self.last_action, self.agent_id))
        return out

    def step(
        self, env_out: EnvOutput, last_actions: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One env step: last_actions [B, N], hidden [B, N, H] -> (q [B, N, A], hidden)."""
        out, h = self.net(self._inputs(env_out.obs, last_actions).unsqueeze(1), hidden)
        return out.q[:, 0], h
