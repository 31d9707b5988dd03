"""The agent networks of DDN's Table 2 rivals (CTDS, PTDE, IGM-DA) that ddn did not have.

CTDS's student and IGM-DA's teacher reuse existing networks (``AgentQNetwork``, and the
GGN without its fusion block, which reads ``[s, o_i, u_i^{t-1}, id_i]``). New here:

* :class:`AvailInputAgent`: IGM-DA's learner, the recurrent agent with the
  available-action mask in its input ([o_i; avail_i; u_i^{t-1}; id_i]);
* :class:`PTDETeacher`: PTDE's phase-1 network, a recurrent trunk on local information,
  the Global Information Personalization (GIP) module z_i = mu_i + sigma_i eps from the
  state through a hypernetwork of x_i, and a Q head on [ReLU(trunk); z_i];
* :class:`PTDEStudent`: the same trunk and head with the GIP replaced by a memoryless
  MLP of x_i (phase 2 trains that MLP only).

``docs/rivals.md`` says where each follows its method's public code and where not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from ddn.nets.agent import AgentOutput, AgentQNetwork, RNNAgent, agent_input_dim, build_agent_inputs
from ddn.nets.fusion import FusionBlock

if TYPE_CHECKING:
    from ddn.buffer import EpisodeBatch
    from ddn.envs import EnvOutput


class AvailInputAgent(AgentQNetwork):
    """IGM-DA's learner: the available-action mask is part of the observation.

    In IGM-DA's zero-sight regime the mask is most of what the learner knows (which
    enemies are in shooting range), so its code feeds it to the network.
    """

    def __init__(self, obs_dim: int, n_agents: int, n_actions: int, hidden_dim: int = 64,
                 last_action: bool = True, agent_id: bool = True) -> None:  # fmt: skip
        super().__init__(
            obs_dim + n_actions, n_agents, n_actions, hidden_dim, last_action, agent_id
        )

    @staticmethod
    def _obs(obs: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        return torch.cat((obs, avail.to(obs.dtype)), dim=-1)

    def sequence(self, batch: EpisodeBatch) -> AgentOutput:
        last = batch.last_actions() if self.last_action else None
        x = build_agent_inputs(
            self._obs(batch.obs, batch.avail), last, self.n_actions, self.agent_id
        )
        out, _ = self.net(x)
        return out

    def step(
        self, env_out: EnvOutput, last_actions: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        obs = self._obs(env_out.obs, env_out.avail)
        out, h = self.net(self._inputs(obs, last_actions).unsqueeze(1), hidden)
        return out.q[:, 0], h


LOG_VAR_CAP = 20.0


class PrivilegedObsAgent(AgentQNetwork):
    """A teacher on the env's privileged observation in place of the local one:
    [o~_i; u_i^{t-1}; id_i] (CTDS's teacher: the same encoding with unlimited sight)."""

    def sequence(self, batch: EpisodeBatch) -> AgentOutput:
        last = batch.last_actions() if self.last_action else None
        x = build_agent_inputs(batch.privileged_obs, last, self.n_actions, self.agent_id)
        out, _ = self.net(x)
        return out

    def step(
        self, env_out: EnvOutput, last_actions: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, h = self.net(self._inputs(env_out.privileged_obs, last_actions).unsqueeze(1), hidden)
        return out.q[:, 0], h


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """PTDE's two-layer heads: Linear, LeakyReLU, Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, out_dim))


class GIPModule(nn.Module):
    """PTDE's Global Information Personalization: a Gaussian over z_i given (x_i, s).

    g_i = ELU(s W_i + b_i) with W_i produced by a hypernetwork of x_i; mu_i and the
    variance (floored at ``var_floor``) are two MLP heads on g_i. The hypernetwork is
    ddn's :class:`~ddn.nets.fusion.FusionBlock` (the PFB's structure, full rank: its
    ``hypernet_dim`` is PTDE's 64 hyper units), so W_i is never materialised.
    """

    def __init__(self, local_dim: int, state_dim: int, z_dim: int = 64, hyper_dim: int = 64,
                 var_floor: float = 0.01) -> None:  # fmt: skip
        super().__init__()
        self.var_floor = var_floor
        self.hyper = FusionBlock(local_dim, state_dim, z_dim, hyper_dim)
        self.mu = _mlp(z_dim, z_dim, z_dim)
        self.log_var = _mlp(z_dim, z_dim, z_dim)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [..., N, D], state [..., S] -> (mu, variance), each [..., N, z]."""
        g = F.elu(self.hyper(x, state))
        # The cap only keeps exp() finite on wild inputs (padding may hold anything);
        # PTDE's code has no cap.
        var = self.log_var(g).clamp(max=LOG_VAR_CAP).exp().clamp(min=self.var_floor)
        return self.mu(g), var


class _PTDEBase(nn.Module):
    """The trunk and head PTDE's teacher and student share.

    The trunk is fc1 -> GRU, then the head's first layer Linear(H -> H): ddn's
    :class:`~ddn.nets.agent.RNNAgent` with H outputs is exactly that, so its ``q`` is
    the head feature before the ReLU. The head reads [ReLU(feature); z_i].
    """

    def __init__(self, obs_dim: int, n_agents: int, n_actions: int, hidden_dim: int,
                 z_dim: int, last_action: bool, agent_id: bool) -> None:  # fmt: skip
        super().__init__()
        self.n_agents, self.n_actions, self.hidden_dim = n_agents, n_actions, hidden_dim
        self.obs_dim, self.z_dim = obs_dim, z_dim
        self.last_action, self.agent_id = last_action, agent_id
        self.local_dim = agent_input_dim(obs_dim, n_actions, n_agents, last_action, agent_id)

    def initial_hidden(self, batch: int, device: torch.device) -> torch.Tensor:
        return torch.zeros(batch, self.n_agents, self.hidden_dim, device=device)

    def local_info(self, obs: torch.Tensor, last_actions: torch.Tensor) -> torch.Tensor:
        return build_agent_inputs(
            obs, last_actions if self.last_action else None, self.n_actions, self.agent_id
        )

    def batch_local_info(self, batch: EpisodeBatch) -> torch.Tensor:
        return batch.agent_inputs(self.n_actions, self.last_action, self.agent_id)

    def _q(self, trunk: RNNAgent, head: nn.Linear, x: torch.Tensor, z: torch.Tensor,
           h0: torch.Tensor | None) -> tuple[AgentOutput, torch.Tensor]:  # fmt: skip
        """x [E, T, N, D], z [E, T, N, z] -> (outputs with ``block`` = z, final hidden)."""
        out, h = trunk(x, h0)
        q = head(torch.cat((F.relu(out.q), z), dim=-1))
        return AgentOutput(q=q, hidden=out.hidden, feature=out.feature, block=z), h


class PTDETeacher(_PTDEBase):
    """PTDE's phase-1 network: trunk + GIP + head. z_i is sampled (``rsample``) both when
    acting and when learning, as in PTDE's code; ``block`` carries the sample."""

    def __init__(self, obs_dim: int, state_dim: int, n_agents: int, n_actions: int,
                 hidden_dim: int = 64, z_dim: int = 64, hyper_dim: int = 64,
                 var_floor: float = 0.01, last_action: bool = True,
                 agent_id: bool = True) -> None:  # fmt: skip
        super().__init__(obs_dim, n_agents, n_actions, hidden_dim, z_dim, last_action, agent_id)
        self.trunk = RNNAgent(self.local_dim, hidden_dim, hidden_dim)
        self.gip = GIPModule(self.local_dim, state_dim, z_dim, hyper_dim, var_floor)
        self.head = nn.Linear(hidden_dim + z_dim, n_actions)

    def sample_z(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        mu, var = self.gip(x, state)
        return mu + var.sqrt() * torch.randn_like(mu)

    def sequence(self, batch: EpisodeBatch) -> AgentOutput:
        x = self.batch_local_info(batch)
        out, _ = self._q(self.trunk, self.head, x, self.sample_z(x, batch.state), None)
        return out

    def step(self, env_out: EnvOutput, last_actions: torch.Tensor, hidden: torch.Tensor):
        x = self.local_info(env_out.obs, last_actions)
        z = self.sample_z(x, env_out.state)
        out, h = self._q(self.trunk, self.head, x.unsqueeze(1), z.unsqueeze(1), hidden)
        return out.q[:, 0], h


class PTDEStudent(_PTDEBase):
    """PTDE's deployed network: the teacher's trunk and head with z_hat_i = MLP(x_i) in
    place of the GIP. It reads local information only. ``teacher``: share its trunk and
    head (the learner freezes them); None: own ones (a deployed copy loads them).
    ``noise_std``: z_hat + N(0, noise_std^2), as PTDE's evaluation does (std 0.1)."""

    def __init__(self, obs_dim: int, n_agents: int, n_actions: int, hidden_dim: int = 64,
                 z_dim: int = 64, noise_std: float = 0.0, last_action: bool = True,
                 agent_id: bool = True, teacher: PTDETeacher | None = None) -> None:  # fmt: skip
        super().__init__(obs_dim, n_agents, n_actions, hidden_dim, z_dim, last_action, agent_id)
        if teacher is None:
            self.trunk = RNNAgent(self.local_dim, hidden_dim, hidden_dim)
            self.head = nn.Linear(hidden_dim + z_dim, n_actions)
        else:
            self.trunk, self.head = teacher.trunk, teacher.head
        self.noise_std = noise_std
        d, z = self.local_dim, self.z_dim
        self.z_net = nn.Sequential(nn.Linear(d, z), nn.ReLU(), _mlp(z, z, z))

    @classmethod
    def of(cls, teacher: PTDETeacher, z_noise: bool = True) -> PTDEStudent:
        """The student sharing ``teacher``'s trunk and head; ``z_noise``: PTDE's
        test-time noise, std sqrt(var_floor)."""
        return cls(
            teacher.obs_dim, teacher.n_agents, teacher.n_actions, teacher.hidden_dim,
            teacher.z_dim, teacher.gip.var_floor**0.5 if z_noise else 0.0,
            teacher.last_action, teacher.agent_id, teacher,
        )  # fmt: skip

    def z_hat(self, x: torch.Tensor) -> torch.Tensor:
        """The student's mean z_hat_i = MLP(x_i), what phase 2 regresses onto mu_i."""
        return self.z_net(x)

    def forward(
        self, obs: torch.Tensor, last_actions: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[AgentOutput, torch.Tensor]:
        """obs [E, T, N, O], last_actions [E, T, N] (-1: none) -> (outputs, final hidden)."""
        x = self.local_info(obs, last_actions)
        z = self.z_hat(x)
        if self.noise_std > 0:
            z = z + self.noise_std * torch.randn_like(z)
        return self._q(self.trunk, self.head, x, z, hidden)

    def sequence(self, batch: EpisodeBatch) -> AgentOutput:
        out, _ = self(batch.obs, batch.last_actions())
        return out

    def step(self, env_out: EnvOutput, last_actions: torch.Tensor, hidden: torch.Tensor):
        """Reads ``env_out.obs`` only."""
        out, h = self(env_out.obs.unsqueeze(1), last_actions.unsqueeze(1), hidden)
        return out.q[:, 0], h
