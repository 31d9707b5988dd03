"""DDN's two agent networks (paper Sec. 4.2): the teacher GGN and the student LPN.

* GGN (Global Guiding Network): PFB -> MLP -> GRU -> Q. Its input is the personalized
  state S_hat_i = S W_i + B_i; with ``personalized_state=False`` (the paper's Table 3
  ablation) there is no PFB and the MLP reads the raw [S, o_i, u_i^{t-1}, id_i].
* LPN (Local Policy Network): IOB -> MLP -> GRU -> Q, reading local information only
  (o_i, u_i^{t-1}, i). It is the network deployed; nothing in it can reach the state.

Both return :class:`~ddn.nets.agent.AgentOutput` with ``feature`` = the MLP output F_i
(for L_F) and ``block`` = the fusion block's output (for L_B).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ddn.nets.agent import AgentOutput, RNNAgent, agent_input_dim, build_agent_inputs
from ddn.nets.fusion import FusionBlock

if TYPE_CHECKING:
    from ddn.buffer import EpisodeBatch
    from ddn.envs import EnvOutput


class _FusedAgent(nn.Module):
    """Shared plumbing: local information x_i, a block, then the recurrent agent."""

    def __init__(self, obs_dim: int, n_agents: int, n_actions: int, hidden_dim: int,
                 last_action: bool, agent_id: bool) -> None:  # fmt: skip
        super().__init__()
        self.n_agents, self.n_actions = n_agents, n_actions
        self.last_action, self.agent_id = last_action, agent_id
        self.local_dim = agent_input_dim(obs_dim, n_actions, n_agents, last_action, agent_id)
        self.hidden_dim = hidden_dim

    def local_info(self, obs: torch.Tensor, last_actions: torch.Tensor) -> torch.Tensor:
        """x_i = [o_i, u_i^{t-1}, id_i] (each part per the switches)."""
        return build_agent_inputs(
            obs, last_actions if self.last_action else None, self.n_actions, self.agent_id
        )

    def batch_local_info(self, batch: EpisodeBatch) -> torch.Tensor:
        """x_i for every step of ``batch``, time-major [T+1, E, N, D] (shared, see
        :meth:`~ddn.buffer.EpisodeBatch.agent_inputs`): the blocks compute in that
        layout so that their matmuls read contiguous rows."""
        x = batch.agent_inputs(self.n_actions, self.last_action, self.agent_id)
        return x.transpose(0, 1)

    def initial_hidden(self, batch: int, device: torch.device) -> torch.Tensor:
        return torch.zeros(batch, self.n_agents, self.hidden_dim, device=device)


class GuidingNetwork(_FusedAgent):
    """The GGN (teacher). Reads the global state; used in training only."""

    def __init__(self, obs_dim: int, state_dim: int, n_agents: int, n_actions: int,
                 hidden_dim: int = 64, fusion_dim: int = 32, hypernet_dim: int = 4,
                 personalized_state: bool = True, last_action: bool = True,
                 agent_id: bool = True) -> None:  # fmt: skip
        super().__init__(obs_dim, n_agents, n_actions, hidden_dim, last_action, agent_id)
        self.pfb: FusionBlock | None = None
        if personalized_state:
            self.pfb = FusionBlock(self.local_dim, state_dim, fusion_dim, hypernet_dim)
            agent_in = fusion_dim
        else:
            agent_in = state_dim + self.local_dim
        self.net = RNNAgent(agent_in, n_actions, hidden_dim)

    def _inputs(
        self, x: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the MLP's input, the PFB output S_hat_i or None) from x [..., N, D], S [..., S]."""
        if self.pfb is None:
            raw = state.unsqueeze(-2).expand(*x.shape[:-1], state.shape[-1])
            return torch.cat((raw, x), dim=-1), None
        block = self.pfb(x, state)
        return block, block

    def sequence(self, batch: EpisodeBatch) -> AgentOutput:
        # Time-major in, [E, T, N, ...] views out (see batch_local_info).
        inputs, block = self._inputs(self.batch_local_info(batch), batch.state.transpose(0, 1))
        out, _ = self.net(inputs.transpose(0, 1))
        out.block = None if block is None else block.transpose(0, 1)
        return out

    def step(self, env_out: EnvOutput, last_actions: torch.Tensor, hidden: torch.Tensor):
        inputs, _ = self._inputs(self.local_info(env_out.obs, last_actions), env_out.state)
        out, h = self.net(inputs.unsqueeze(1), hidden)
        return out.q[:, 0], h


class LocalPolicyNetwork(_FusedAgent):
    """The LPN (student): local observations only, trained purely by distillation."""

    def __init__(self, obs_dim: int, n_agents: int, n_actions: int, hidden_dim: int = 64,
                 fusion_dim: int = 32, hypernet_dim: int = 4, last_action: bool = True,
                 agent_id: bool = True) -> None:  # fmt: skip
        super().__init__(obs_dim, n_agents, n_actions, hidden_dim, last_action, agent_id)
        self.obs_dim = obs_dim
        self.iob = FusionBlock(self.local_dim, obs_dim, fusion_dim, hypernet_dim)
        self.net = RNNAgent(fusion_dim, n_actions, hidden_dim)

    def forward(
        self, obs: torch.Tensor, last_actions: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[AgentOutput, torch.Tensor]:
        """obs [E, T, N, O], last_actions [E, T, N] (-1: none) -> (outputs, final hidden)."""
        block = self.iob(self.local_info(obs, last_actions), obs)  # o_hat_i
        out, h = self.net(block, hidden)
        out.block = block
        return out, h

    def sequence(self, batch: EpisodeBatch) -> AgentOutput:
        x = self.batch_local_info(batch)
        block = self.iob(x, x[..., : self.obs_dim]).transpose(0, 1)  # x_i begins with o_i
        out, _ = self.net(block)
        out.block = block
        return out

    def step(self, env_out: EnvOutput, last_actions: torch.Tensor, hidden: torch.Tensor):
        """Reads ``env_out.obs`` only."""
        out, h = self(env_out.obs.unsqueeze(1), last_actions.unsqueeze(1), hidden)
        return out.q[:, 0], h
