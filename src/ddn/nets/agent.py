"""The parameter-shared recurrent Q network: an encoding hook -> MLP -> GRU -> Q head.

One network serves all agents (the agent id is in the input). Every agent network of
the project is a :class:`RecurrentQNetwork`: it reads the encoded local inputs x_i
(:mod:`ddn.nets.inputs`), maps them through its own ``encode`` hook (identity for the
plain agent, DDN's fusion blocks for its teacher and student), then the shared
MLP -> GRU -> Q body. ``unroll`` runs whole episode sequences in one ``nn.GRU`` call (the
learner); ``step`` advances one env step (acting, :class:`~ddn.nets.actor.GreedyActor`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ddn.nets.inputs import LocalInputs


@dataclass
class AgentOutput:
    q: torch.Tensor  # [..., N, A] Q_i over all actions
    gru_out: torch.Tensor  # [..., N, H] the GRU's outputs h_i^t (QTRAN's joint network reads them)
    feature: torch.Tensor  # [..., N, H] MLP output before the GRU (DDN's F_i)
    block: torch.Tensor | None = None  # [..., N, d] DDN's fusion-block output (PFB/IOB)

    def detach(self) -> AgentOutput:
        return AgentOutput(
            *(
                None if x is None else x.detach()
                for x in (self.q, self.gru_out, self.feature, self.block)
            )
        )


class RNNAgent(nn.Module):
    """MLP -> GRU -> Q head over time-major inputs."""

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
        """inputs [T, E, N, D] (h0 [E, N, H] or None) -> (outputs [E, T, N, ...], h_T [E, N, H]).

        The GRU runs time-major (``batch_first=False``): that is the layout its CPU and
        cuDNN kernels use, so a batch-first call would transpose its input and output
        in memory. The inputs are time-major (an encoded batch is stored that way, see
        :meth:`~ddn.nets.inputs.LocalInputs.episodes`) and the outputs are returned as
        [E, T, N] views of [T, E, N] storage, so no H-wide tensor is ever transposed in
        memory.
        """
        t, e, n, _ = inputs.shape
        feature = F.relu(self.fc1(inputs))  # [T, E, N, H], contiguous
        h = None if h0 is None else h0.reshape(1, e * n, self.hidden_dim)
        out, h_last = self.rnn(feature.view(t, e * n, self.hidden_dim), h)
        gru_out = out.view(t, e, n, self.hidden_dim)
        q = self.fc2(gru_out)
        return (
            AgentOutput(
                q=q.transpose(0, 1),
                gru_out=gru_out.transpose(0, 1),
                feature=feature.transpose(0, 1),
            ),
            h_last.reshape(e, n, self.hidden_dim),
        )


class RecurrentQNetwork(nn.Module):
    """x_i -> ``encode`` -> :class:`RNNAgent`: the base of every agent network.

    Subclasses set ``self.net`` (the :class:`RNNAgent`, sized for what ``encode``
    returns) and override ``encode``. A network that reads the global state
    (``reads_state``, DDN's teacher) gets it in ``unroll`` and ``step``; one that does not
    refuses it, so a local policy cannot be handed the state by mistake.
    """

    reads_state: ClassVar[bool] = False
    net: RNNAgent

    def __init__(self, inputs: LocalInputs, hidden_dim: int) -> None:
        super().__init__()
        self.inputs = inputs
        self.n_agents, self.n_actions = inputs.n_agents, inputs.n_actions
        self.last_action, self.agent_id = inputs.last_action, inputs.agent_id
        self.local_dim = inputs.dim
        self.hidden_dim = hidden_dim

    def observe(
        self,
        obs: torch.Tensor,
        avail: torch.Tensor | None = None,
        privileged_obs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The o_i this network's x_i starts with, from the env's fields of the same
        leading shape ([..., N, *]): the local observation here; a network that reads
        another field (CTDS's teacher the privileged observation, IGM-DA's learner the
        available actions too) overrides it. The actor and the learners call it, so
        storage and acting stay the same for every network."""
        return obs

    def encode(
        self, x: torch.Tensor, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Time-major x [T, E, N, D] (state [T, E, S] where read) -> (the MLP's input
        [T, E, N, D'], a block output to distil or None). The plain agent reads x."""
        return x, None

    def _check_state(self, state: torch.Tensor | None) -> None:
        if (state is not None) != self.reads_state:
            name = type(self).__name__
            need = "needs the global state" if self.reads_state else "takes no global state"
            raise ValueError(f"{name} {need}")

    def initial_hidden(self, batch: int, device: torch.device) -> torch.Tensor:
        return self.net.initial_hidden(batch, self.n_agents, device)

    def unroll(
        self, x: torch.Tensor, state: torch.Tensor | None = None, h0: torch.Tensor | None = None
    ) -> tuple[AgentOutput, torch.Tensor]:
        """Whole sequences: x [E, T, N, D] (best an [E, T] view of time-major storage, as
        :meth:`~ddn.nets.inputs.LocalInputs.episodes` makes it), state [E, T, S] where
        read -> (outputs [E, T, N, ...], final recurrent state [E, N, H])."""
        self._check_state(state)
        inputs, block = self.encode(
            x.transpose(0, 1), None if state is None else state.transpose(0, 1)
        )
        out, h = self.net(inputs, h0)
        out.block = None if block is None else block.transpose(0, 1)
        return out, h

    def step(
        self, x: torch.Tensor, hidden: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One env step: x [B, N, D], hidden [B, N, H] (state [B, S] where read)
        -> (q [B, N, A], next hidden)."""
        self._check_state(state)
        inputs, _ = self.encode(x.unsqueeze(0), None if state is None else state.unsqueeze(0))
        out, h = self.net(inputs, hidden)
        return out.q[:, 0], h


class AgentQNetwork(RecurrentQNetwork):
    """The plain agent network of IQL and the value-decomposition methods: x_i feeds the
    MLP directly."""

    def __init__(
        self,
        obs_dim: int,
        n_agents: int,
        n_actions: int,
        hidden_dim: int = 64,
        last_action: bool = True,
        agent_id: bool = True,
    ):
        super().__init__(
            LocalInputs(obs_dim, n_agents, n_actions, last_action, agent_id), hidden_dim
        )
        self.net = RNNAgent(self.local_dim, n_actions, hidden_dim)
