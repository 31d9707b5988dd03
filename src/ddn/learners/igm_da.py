"""IGM-DA (Hong, Jin and Tang, 2022): an expert trained by value decomposition on more
information, and a local learner trained only by imitating the expert's greedy actions,
so that the mixer's decomposition error is never bootstrapped through the learner.

* ``igm_da`` (DAgger): the learner acts; the expert's TD target bootstraps on the
  learner's greedy action at t+1 (the expert evaluates the learner's policy);
* ``igm_bc`` (behaviour cloning): the expert acts and bootstraps on its own (double-Q)
  greedy action.

Labels are the current expert's greedy actions over the available ones, recomputed at
every update on the replayed batch (the buffer plays the aggregated DAgger dataset).
The learner's loss is :func:`imitation_loss`, its Q-vector regressed onto the one-hot
label. ``docs/rivals.md`` lists the choices made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ddn.buffer import EpisodeBatch
from ddn.config import Config
from ddn.envs import EnvSpec
from ddn.learners.base import transfer_rate_metrics
from ddn.learners.ctds import build_local_agent, build_privileged_teacher
from ddn.learners.targets import fix_avail
from ddn.learners.value_decomposition import (
    VDLearner,
    make_optimizer,
    metric_values,
    unroll_batch,
)
from ddn.nets.agent import AgentQNetwork
from ddn.nets.masked import masked_argmax
from ddn.nets.rivals import AvailInputAgent


@dataclass
class IGMDAConfig:
    """IGM-DA's learner reads the available-action mask with its observation, as in its
    code (false: the observation only)."""

    igm_learner_avail: bool = True


def imitation_loss(
    learner_q: torch.Tensor, labels: torch.Tensor, filled: torch.Tensor
) -> torch.Tensor:
    """IGM-DA's imitation loss: the learner's raw Q-vector regressed onto the one-hot of
    the expert's greedy action (not a cross-entropy), over all agents and actions,
    averaged over real transitions x N x |A|.

    learner_q [E, T, N, A]; labels [E, T, N] int; filled [E, T] bool.
    """
    target = F.one_hot(labels, learner_q.shape[-1]).to(learner_q.dtype)
    sq = (learner_q - target) ** 2  # [E, T, N, A]
    m = filled.to(sq.dtype)
    per_step = sq.shape[-1] * sq.shape[-2]
    return (sq.sum(dim=(-1, -2)) * m).sum() / (m.sum() * per_step).clamp(min=1.0)


def build_learner_network(cfg: Config, spec: EnvSpec) -> AgentQNetwork:
    if cfg.igm_learner_avail:
        return AvailInputAgent(
            spec.obs_dim, spec.n_agents, spec.n_actions, cfg.rnn_hidden_dim,
            cfg.obs_last_action, cfg.obs_agent_id,
        )  # fmt: skip
    return build_local_agent(cfg, spec)


class IGMDALearner:
    """IGM-DA with DAgger (``igm_da``, ``igm_da_qplex``); :class:`IGMBCLearner` is its
    behaviour-cloning variant."""

    # teacher_obs=auto: the "expert with global state" reads [s, o_i].
    privileged_obs_by_default = False
    dagger = True  # the learner acts; the expert bootstraps on the learner's actions

    def __init__(self, cfg: Config, spec: EnvSpec, device: torch.device):
        self.cfg, self.spec, self.device = cfg, spec, device
        self.expert = build_privileged_teacher(cfg, spec, self.privileged_obs_by_default)
        self.td = VDLearner(cfg, spec, device, agent=self.expert)
        self.learner = build_learner_network(cfg, spec).to(device)
        self.learner_optimizer = make_optimizer(cfg, list(self.learner.parameters()))

    @property
    def acting_network(self) -> nn.Module:
        return self.learner if self.dagger else self.expert

    def evaluation_policies(self) -> dict[str, nn.Module]:
        """The expert as the teacher, the learner as the student (both variants)."""
        return {"test": self.expert, "test_student": self.learner}

    def evaluation_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """The transfer rate, student over teacher (the paper's Table 2)."""
        return transfer_rate_metrics(metrics, self.spec.has_win_condition)

    def train(self, batch: EpisodeBatch, episode: int) -> dict[str, float]:
        batch = batch.to(self.device)
        avail = fix_avail(batch.avail)
        learner_q = unroll_batch(self.learner, batch).q
        next_actions = None
        if self.dagger:  # the expert evaluates the learner's greedy policy
            next_actions = masked_argmax(learner_q[:, 1:].detach(), avail[:, 1:])
        metrics, expert_out = self.td.td_update(batch, episode, next_actions=next_actions)
        metrics["train/L_td"] = metrics["train/loss"]
        t = batch.filled.shape[1]
        labels = masked_argmax(expert_out.q[:, :t], avail[:, :t])  # pre-update expert
        loss = imitation_loss(learner_q[:, :t], labels, batch.filled)
        self.learner_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.learner.parameters(), self.cfg.grad_norm_clip)
        self.learner_optimizer.step()
        metrics["train/L_il"] = loss.detach()
        with torch.no_grad():
            greedy = masked_argmax(learner_q[:, :t].detach(), avail[:, :t])
            agree = (greedy == labels).float().mean(dim=-1)
            filled = batch.filled.float()
            metrics["train/il_agreement"] = (agree * filled).sum() / filled.sum().clamp(min=1.0)
        return metric_values(metrics)

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {
            "td": self.td.state_dict(),
            "learner": self.learner.state_dict(),
            "learner_optimizer": self.learner_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.td.load_state_dict(state["td"])
        self.learner.load_state_dict(state["learner"])
        self.learner_optimizer.load_state_dict(state["learner_optimizer"])

    def policy_state_dict(self) -> dict:
        return {"teacher": self.expert.state_dict(), "student": self.learner.state_dict()}


class IGMBCLearner(IGMDALearner):
    """IGM-DA with behaviour cloning (``igm_bc``, ``igm_bc_qplex``): the expert acts and
    bootstraps on its own greedy actions."""

    dagger = False
