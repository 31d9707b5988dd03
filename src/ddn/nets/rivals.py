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

import torch
from torch import nn
from torch.nn import functional as F

from ddn.nets.agent import AgentOutput, AgentQNetwork, RecurrentQNetwork, RNNAgent
from ddn.nets.fusion import FusionBlock
from ddn.nets.inputs import LocalInputs


class AvailInputAgent(AgentQNetwork):
    """IGM-DA's learner: the available-action mask is part of the observation.

    In IGM-DA's zero-sight regime the mask is most of what the learner knows (which
    enemies are in shooting range), so its code feeds it to the network: o_i here is
    [obs_i; avail_i] (:meth:`observe`).
    """

    def __init__(self, obs_dim: int, n_agents: int, n_actions: int, hidden_dim: int = 64,
                 last_action: bool = True, agent_id: bool = True) -> None:  # fmt: skip
        super().__init__(
            obs_dim + n_actions, n_agents, n_actions, hidden_dim, last_action, agent_id
        )

    def observe(
        self,
        obs: torch.Tensor,
        avail: torch.Tensor | None = None,
        privileged_obs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if avail is None:
            raise ValueError("this network (IGM-DA's learner) reads the available actions")
        return torch.cat((obs, avail.to(obs.dtype)), dim=-1)


class PrivilegedObsAgent(AgentQNetwork):
    """A teacher on the env's privileged observation in place of the local one:
    [o~_i; u_i^{t-1}; id_i] (CTDS's teacher: the same encoding with unlimited sight)."""

    def observe(
        self,
        obs: torch.Tensor,
        avail: torch.Tensor | None = None,
        privileged_obs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if privileged_obs is None:
            raise ValueError("this network (CTDS's teacher) reads the privileged observation")
        return privileged_obs


LOG_VAR_CAP = 20.0


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


class _PTDEBase(RecurrentQNetwork):
    """The trunk and head PTDE's teacher and student share.

    The trunk is fc1 -> GRU, then the head's first layer Linear(H -> H): ddn's
    :class:`~ddn.nets.agent.RNNAgent` with H outputs is exactly that (``self.net``), so
    its ``q`` is the head feature before the ReLU. The head reads [ReLU(feature); z_i],
    z_i coming from :meth:`z` (the GIP's sample, or the student's MLP): the head sits
    after the GRU, so PTDE overrides ``unroll``/``step`` rather than ``encode``.
    """

    def __init__(self, obs_dim: int, n_agents: int, n_actions: int, hidden_dim: int,
                 z_dim: int, last_action: bool, agent_id: bool) -> None:  # fmt: skip
        super().__init__(
            LocalInputs(obs_dim, n_agents, n_actions, last_action, agent_id), hidden_dim
        )
        self.obs_dim, self.z_dim = obs_dim, z_dim
        self.head: nn.Linear

    def z(self, x: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        """x [E, T, N, D] (state [E, T, S] where read) -> z_i [E, T, N, z]."""
        raise NotImplementedError

    def unroll(
        self, x: torch.Tensor, state: torch.Tensor | None = None, h0: torch.Tensor | None = None
    ) -> tuple[AgentOutput, torch.Tensor]:
        """As :meth:`RecurrentQNetwork.unroll`; ``block`` carries z_i."""
        self._check_state(state)
        out, h = self.net(x.transpose(0, 1), h0)
        z = self.z(x, state)
        q = self.head(torch.cat((F.relu(out.q), z), dim=-1))
        return AgentOutput(q=q, gru_out=out.gru_out, feature=out.feature, block=z), h

    def step(
        self, x: torch.Tensor, hidden: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, h = self.unroll(x.unsqueeze(1), None if state is None else state.unsqueeze(1), hidden)
        return out.q[:, 0], h


class PTDETeacher(_PTDEBase):
    """PTDE's phase-1 network: trunk + GIP + head. z_i is sampled (``rsample``) both when
    acting and when learning, as in PTDE's code; ``block`` carries the sample."""

    reads_state = True

    def __init__(self, obs_dim: int, state_dim: int, n_agents: int, n_actions: int,
                 hidden_dim: int = 64, z_dim: int = 64, hyper_dim: int = 64,
                 var_floor: float = 0.01, last_action: bool = True,
                 agent_id: bool = True) -> None:  # fmt: skip
        super().__init__(obs_dim, n_agents, n_actions, hidden_dim, z_dim, last_action, agent_id)
        self.net = RNNAgent(self.local_dim, hidden_dim, hidden_dim)
        self.gip = GIPModule(self.local_dim, state_dim, z_dim, hyper_dim, var_floor)
        self.head = nn.Linear(hidden_dim + z_dim, n_actions)

    def z(self, x: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        assert state is not None
        mu, var = self.gip(x, state)
        return mu + var.sqrt() * torch.randn_like(mu)


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
            self.net = RNNAgent(self.local_dim, hidden_dim, hidden_dim)
            self.head = nn.Linear(hidden_dim + z_dim, n_actions)
        else:
            self.net, self.head = teacher.net, teacher.head
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

    def z(self, x: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        z = self.z_hat(x)
        if self.noise_std > 0:
            z = z + self.noise_std * torch.randn_like(z)
        return z
