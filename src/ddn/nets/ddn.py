"""DDN's two agent networks (paper Sec. 4.2): the teacher GGN and the student LPN.

* GGN (Global Guiding Network): PFB -> MLP -> GRU -> Q. Its input is the personalized
  state S_hat_i = S W_i + B_i; with ``personalized_state=False`` (the paper's Table 3
  ablation) there is no PFB and the MLP reads the raw [S, o_i, u_i^{t-1}, id_i].
* LPN (Local Policy Network): IOB -> MLP -> GRU -> Q, reading local information only
  (o_i, u_i^{t-1}, i). It is the network deployed; nothing in it can reach the state
  (it has no state-sized weight, and ``unroll``/``step`` refuse a state).

Both are :class:`~ddn.nets.agent.RecurrentQNetwork` s whose ``encode`` hook is the fusion
block; their outputs carry ``feature`` = the MLP output F_i (for L_F) and ``block`` = the
block's output (for L_B).
"""

from __future__ import annotations

import torch

from ddn.nets.agent import RecurrentQNetwork, RNNAgent
from ddn.nets.fusion import FusionBlock
from ddn.nets.inputs import LocalInputs


class GuidingNetwork(RecurrentQNetwork):
    """The GGN (teacher). Reads the global state; used in training only."""

    reads_state = True

    def __init__(self, obs_dim: int, state_dim: int, n_agents: int, n_actions: int,
                 hidden_dim: int = 64, fusion_dim: int = 32, hypernet_dim: int = 4,
                 personalized_state: bool = True, last_action: bool = True,
                 agent_id: bool = True) -> None:  # fmt: skip
        super().__init__(
            LocalInputs(obs_dim, n_agents, n_actions, last_action, agent_id), hidden_dim
        )
        self.pfb: FusionBlock | None = None
        if personalized_state:
            self.pfb = FusionBlock(self.local_dim, state_dim, fusion_dim, hypernet_dim)
            agent_in = fusion_dim
        else:
            agent_in = state_dim + self.local_dim
        self.net = RNNAgent(agent_in, n_actions, hidden_dim)

    def encode(
        self, x: torch.Tensor, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """S_hat_i = PFB(x_i, S) (twice: the MLP's input and the block to distil), or the
        raw [S, x_i] without a PFB. Time-major, so the block's matmuls read contiguous
        rows."""
        assert state is not None
        if self.pfb is None:
            raw = state.unsqueeze(-2).expand(*x.shape[:-1], state.shape[-1])
            return torch.cat((raw, x), dim=-1), None
        block = self.pfb(x, state)
        return block, block


class LocalPolicyNetwork(RecurrentQNetwork):
    """The LPN (student): local observations only, trained purely by distillation."""

    def __init__(self, obs_dim: int, n_agents: int, n_actions: int, hidden_dim: int = 64,
                 fusion_dim: int = 32, hypernet_dim: int = 4, last_action: bool = True,
                 agent_id: bool = True) -> None:  # fmt: skip
        super().__init__(
            LocalInputs(obs_dim, n_agents, n_actions, last_action, agent_id), hidden_dim
        )
        self.obs_dim = obs_dim
        self.iob = FusionBlock(self.local_dim, obs_dim, fusion_dim, hypernet_dim)
        self.net = RNNAgent(fusion_dim, n_actions, hidden_dim)

    def encode(
        self, x: torch.Tensor, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """o_hat_i = IOB(x_i, o_i); x_i begins with o_i, so o_i is a slice (no copy).
        ``state`` is always None here (:meth:`unroll` refuses one)."""
        block = self.iob(x, x[..., : self.obs_dim])
        return block, block
