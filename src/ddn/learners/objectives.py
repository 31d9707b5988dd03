"""The TD objective of IQL and of each value-decomposition family, over whole episode batches.

An objective turns the agent networks' outputs over a batch (online and target) into
the loss to minimise. It owns the trainable pieces beyond the agents (the mixer, and
WQMIX's central Q* or QTRAN's joint networks); the learner keeps a target copy of it.
DDN reuses these objectives unchanged for its teacher: only the agent network and the
reward (r + r_I) differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from ddn.buffer import EpisodeBatch
from ddn.config import Config
from ddn.envs import EnvSpec
from ddn.learners.targets import last_transition, td_lambda_targets
from ddn.nets.agent import AgentOutput, AgentQNetwork
from ddn.nets.masked import masked_argmax, masked_mean
from ddn.nets.mixers import (
    CentralMixer,
    MixContext,
    QMixer,
    QTranNet,
    joint_action_is_greedy,
    qtran_losses,
    wqmix_weights,
)

if TYPE_CHECKING:
    from ddn.algorithms import Algorithm


@dataclass
class TDBatch:
    """A batch seen by an objective: the episodes plus what every objective reuses."""

    batch: EpisodeBatch
    inputs: torch.Tensor  # [E, T+1, N, D] the encoded x_i (WQMIX's central agents read it)
    online: AgentOutput  # [E, T+1, N, ...] with gradient
    target: AgentOutput  # [E, T+1, N, ...] target network, no gradient
    reward: torch.Tensor  # [E, T] the reward to learn from (DDN adds r_I)
    avail: torch.Tensor  # [E, T+1, N, A] with padding made all-available
    mask: torch.Tensor  # [E, T] float, 1 on real transitions
    # [E, T, N] bootstrap actions at t+1 chosen by another network (IGM-DA's DAgger
    # bootstraps the expert on the learner's greedy actions); None: the objective's own.
    next_actions: torch.Tensor | None = None

    @property
    def chosen_q(self) -> torch.Tensor:
        """Q_i of the taken actions, [E, T, N]."""
        return self.online.q[:, :-1].gather(-1, self.batch.actions.unsqueeze(-1)).squeeze(-1)


def _ctx(
    state: torch.Tensor,
    actions: torch.Tensor,
    q: torch.Tensor,
    avail: torch.Tensor,
    n_actions: int,
    gru_out: torch.Tensor | None = None,
) -> MixContext:
    max_qs = q.detach().masked_fill(~avail, float("-inf")).max(dim=-1).values
    return MixContext(
        state=state,
        actions_onehot=F.one_hot(actions, n_actions).to(q.dtype),
        max_qs=max_qs,
        agent_gru_out=gru_out,
    )


class TDObjective(nn.Module):
    def __init__(self, cfg: Config, spec: EnvSpec):
        super().__init__()
        self.cfg, self.spec = cfg, spec

    def next_actions(self, td: TDBatch) -> torch.Tensor:
        """The bootstrap action at t+1: double-Q picks it with the online agents."""
        if td.next_actions is not None:
            return td.next_actions
        q = td.online.q if self.cfg.double_q else td.target.q
        return masked_argmax(q[:, 1:].detach(), td.avail[:, 1:])

    def targets(self, td: TDBatch, next_value: torch.Tensor) -> torch.Tensor:
        return self.returns(td.reward, td.batch.terminated, td.batch.filled, next_value)

    def returns(
        self,
        reward: torch.Tensor,
        terminated: torch.Tensor,
        filled: torch.Tensor,
        next_value: torch.Tensor,
    ) -> torch.Tensor:
        """TD(lambda) targets of [E, T] episodes from the values of the states reached."""
        if not self.cfg.bootstrap_timeout:  # every episode's last transition ends it
            terminated = terminated | last_transition(filled)
        return td_lambda_targets(
            reward, terminated, filled, next_value, self.cfg.gamma, self.cfg.td_lambda
        ).detach()

    def forward(self, td: TDBatch, target: TDObjective) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError


class MixerTD(TDObjective):
    """VDN, QMIX, Qatten, QPLEX: squared TD error of the mixed Q_tot."""

    def __init__(self, cfg: Config, spec: EnvSpec):
        super().__init__(cfg, spec)
        mixer = _algorithm(cfg).mixer
        if mixer is None:
            raise ValueError(f"{cfg.algo} declares no mixer (ddn/algorithms.py)")
        self.mixer = mixer(cfg, spec)

    def q_tot(self, td: TDBatch) -> torch.Tensor:
        b, a = td.batch, self.spec.n_actions
        ctx = _ctx(b.state[:, :-1], b.actions, td.online.q[:, :-1], td.avail[:, :-1], a)
        return self.mixer(td.chosen_q, ctx)

    def forward(self, td: TDBatch, target: TDObjective) -> tuple[torch.Tensor, dict]:
        b, a = td.batch, self.spec.n_actions
        q_tot = self.q_tot(td)
        with torch.no_grad():
            nxt = self.next_actions(td)
            tq = td.target.q[:, 1:]
            chosen = tq.gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
            next_q_tot = target.mixer(chosen, _ctx(b.state[:, 1:], nxt, tq, td.avail[:, 1:], a))
            y = self.targets(td, next_q_tot)
        loss = masked_mean((q_tot - y) ** 2, td.mask)
        return loss, _td_metrics(loss, q_tot, y, td.mask)


class IndependentTD(TDObjective):
    """IQL: no mixer. Each agent regresses its own Q_i(tau_i, u_i) towards
    r + gamma * Q_i^-(tau_i', u_i'), r the team reward, u_i' its own (double-Q) greedy
    action: N single-agent TD problems that share the agent network's parameters.

    It has no trainable pieces of its own; the learner's optimizer sees only the agents.
    """

    def forward(self, td: TDBatch, target: TDObjective) -> tuple[torch.Tensor, dict]:
        b = td.batch
        q = td.chosen_q  # [E, T, N]
        e, t, n = q.shape
        with torch.no_grad():
            nxt = self.next_actions(td)
            next_q = td.target.q[:, 1:].gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
            # Each agent's return is an episode of its own with the team's reward and
            # terminations: [E, T, N] -> [E * N, T] for the shared TD(lambda) routine.
            y = self.returns(
                td.reward.repeat_interleave(n, dim=0),
                b.terminated.repeat_interleave(n, dim=0),
                b.filled.repeat_interleave(n, dim=0),
                next_q.permute(0, 2, 1).reshape(e * n, t),
            )
            y = y.reshape(e, n, t).permute(0, 2, 1)
        mask = td.mask.unsqueeze(-1).expand(e, t, n)
        loss = masked_mean((q - y) ** 2, mask)
        return loss, _td_metrics(loss, q, y, mask)


class WeightedQMixTD(TDObjective):
    """CW-/OW-QMIX: weighted TD loss of QMIX's Q_tot towards targets of an unrestricted Q*.

    Q* is a separate recurrent agent network (central utilities) and a feedforward
    central mixer; both train with the unweighted TD loss. The bootstrap action is the
    QMIX agents' greedy joint action (Rashid et al., 2020, Sec. 5).
    """

    def __init__(self, cfg: Config, spec: EnvSpec):
        super().__init__(cfg, spec)
        self.kind = "cw" if _algorithm(cfg).base_method == "cw_qmix" else "ow"
        self.mixer = QMixer(
            spec.n_agents, spec.state_dim, embed_dim=cfg.mixing_embed_dim,
            hypernet_layers=cfg.hypernet_layers, hypernet_embed=cfg.hypernet_embed,
        )  # fmt: skip
        self.central_agent = AgentQNetwork(
            spec.obs_dim, spec.n_agents, spec.n_actions, cfg.rnn_hidden_dim,
            cfg.obs_last_action, cfg.obs_agent_id,
        )  # fmt: skip
        self.central_mixer = CentralMixer(
            spec.n_agents, spec.state_dim, embed_dim=cfg.central_mixing_embed_dim
        )

    def forward(self, td: TDBatch, target: TDObjective) -> tuple[torch.Tensor, dict]:
        assert isinstance(target, WeightedQMixTD)
        b, a = td.batch, self.spec.n_actions
        ctx = _ctx(b.state[:, :-1], b.actions, td.online.q[:, :-1], td.avail[:, :-1], a)
        q_tot = self.mixer(td.chosen_q, ctx)
        central_q = self.central_agent.unroll(td.inputs)[0].q  # [E, T+1, N, A]
        central_now = central_q[:, :-1]
        q_star = self.central_mixer(
            central_now.gather(-1, b.actions.unsqueeze(-1)).squeeze(-1), ctx
        )
        with torch.no_grad():
            # Q_tot's argmax is the agents' greedy joint action (monotonic mixer).
            nxt = masked_argmax(td.online.q[:, 1:].detach(), td.avail[:, 1:])
            target_central = target.central_agent.unroll(td.inputs)[0].q[:, 1:]
            next_star = target.central_mixer(
                target_central.gather(-1, nxt.unsqueeze(-1)).squeeze(-1),
                MixContext(state=b.state[:, 1:]),
            )
            y = self.targets(td, next_star)
            greedy = masked_argmax(td.online.q[:, :-1].detach(), td.avail[:, :-1])
            central_greedy = None
            if self.kind == "cw":
                central_greedy = self.central_mixer(
                    central_now.gather(-1, greedy.unsqueeze(-1)).squeeze(-1), ctx
                )
            w = wqmix_weights(
                y, kind=self.kind, alpha=self.cfg.w, q_tot=q_tot,
                central_greedy_q=central_greedy,
                is_greedy=joint_action_is_greedy(b.actions, greedy),
            )  # fmt: skip
        qmix_loss = masked_mean(w * (q_tot - y) ** 2, td.mask)
        central_loss = masked_mean((q_star - y) ** 2, td.mask)
        loss = self.cfg.qmix_loss * qmix_loss + self.cfg.central_loss * central_loss
        metrics = _td_metrics(loss, q_tot, y, td.mask)
        metrics.update(
            {
                "train/qmix_loss": qmix_loss.detach(),
                "train/central_loss": central_loss.detach(),
                "train/w_mean": masked_mean(w, td.mask),
            }
        )
        return loss, metrics


class QTranTD(TDObjective):
    """QTRAN-base: TD on the free joint Q_jt plus its L_opt and L_nopt constraints."""

    def __init__(self, cfg: Config, spec: EnvSpec):
        super().__init__(cfg, spec)
        self.joint = QTranNet(
            spec.n_agents, spec.n_actions, spec.state_dim, cfg.rnn_hidden_dim,
            embed_dim=cfg.mixing_embed_dim,
        )  # fmt: skip

    def forward(self, td: TDBatch, target: TDObjective) -> tuple[torch.Tensor, dict]:
        assert isinstance(target, QTranTD)
        b, a = td.batch, self.spec.n_actions
        q_now, h_now, avail_now = td.online.q[:, :-1], td.online.gru_out[:, :-1], td.avail[:, :-1]
        q_jt, v_jt = self.joint(_ctx(b.state[:, :-1], b.actions, q_now, avail_now, a, h_now))
        with torch.no_grad():
            nxt = self.next_actions(td)
            tq = td.target.q[:, 1:]
            next_q_jt, _ = target.joint(
                _ctx(b.state[:, 1:], nxt, tq, td.avail[:, 1:], a, td.target.gru_out[:, 1:])
            )
            y = self.targets(td, next_q_jt)
        td_loss = masked_mean((q_jt - y) ** 2, td.mask)
        greedy = masked_argmax(q_now.detach(), avail_now)
        q_jt_greedy, _ = self.joint(_ctx(b.state[:, :-1], greedy, q_now, avail_now, a, h_now))
        q_sum_greedy = q_now.gather(-1, greedy.unsqueeze(-1)).squeeze(-1).sum(dim=-1)
        l_opt, l_nopt = qtran_losses(
            q_sum_greedy, q_jt_greedy, td.chosen_q.sum(dim=-1), q_jt, v_jt, td.mask
        )
        loss = td_loss + self.cfg.opt_loss * l_opt + self.cfg.nopt_min_loss * l_nopt
        metrics = _td_metrics(loss, q_jt, y, td.mask)
        metrics.update(
            {
                "train/td_loss": td_loss.detach(),
                "train/opt_loss": l_opt.detach(),
                "train/nopt_loss": l_nopt.detach(),
            }
        )
        return loss, metrics


def _td_metrics(loss, q_tot, y, mask) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {
            "train/loss": loss.detach(),
            "train/td_error_abs": masked_mean((q_tot - y).abs(), mask),
            "train/q_taken_mean": masked_mean(q_tot, mask),
            "train/target_mean": masked_mean(y, mask),
        }


def _algorithm(cfg: Config) -> Algorithm:
    """The run's registry entry (imported here: the registry imports this module)."""
    from ddn.algorithms import get_algorithm

    return get_algorithm(cfg.algo)


def build_objective(cfg: Config, spec: EnvSpec) -> TDObjective:
    """The objective the algorithm's registry entry declares."""
    objective = _algorithm(cfg).objective
    if objective is None:
        raise ValueError(f"{cfg.algo} declares no TD objective (ddn/algorithms.py)")
    return objective(cfg, spec)
