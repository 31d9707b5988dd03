"""CTDS (Zhao et al., 2022): a teacher trained by value decomposition on privileged
inputs, and a local student trained at the same time by regressing its Q-vector onto
the teacher's.

* teacher: the agent network of a :class:`~ddn.learners.value_decomposition.VDLearner`
  (the mixer of ``ctds`` / ``ctds_vdn`` / ``ctds_qplex``), reading the state with its
  local information (see :func:`build_privileged_teacher`); it acts in training;
* student: a plain recurrent agent on local information, its only loss
  :func:`ctds_loss` against the teacher's detached, pre-update Q-values, with its own
  optimiser of the run's kind (RMSprop by default, as CTDS).

``docs/rivals.md`` maps the method onto ddn and lists the choices made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ddn.buffer import EpisodeBatch
from ddn.config import Config, ConfigError
from ddn.envs import EnvSpec
from ddn.learners.base import transfer_rate_metrics
from ddn.learners.value_decomposition import (
    VDLearner,
    make_optimizer,
    metric_values,
    unroll_batch,
)
from ddn.nets.agent import AgentQNetwork
from ddn.nets.ddn import GuidingNetwork
from ddn.nets.rivals import PrivilegedObsAgent


@dataclass
class TeacherObsConfig:
    """What CTDS's teacher and IGM-DA's expert read besides their own history: the env's
    privileged observation (unlimited sight; predator_prey, smax) or [s, o_i]. auto:
    CTDS's teacher the privileged one where the env can produce it, IGM-DA's expert
    [s, o_i]."""

    teacher_obs: Literal["auto", "state", "privileged"] = "auto"


def ctds_loss(
    student_q: torch.Tensor, teacher_q: torch.Tensor, filled: torch.Tensor
) -> torch.Tensor:
    """CTDS's distillation loss: the squared difference of the Q-vectors summed over all
    agents and all actions (dead agents and unavailable actions included, as CTDS's code
    does), averaged over the real transitions only (not over N * |A|).

    student_q, teacher_q [E, T, N, A] (the teacher's detached); filled [E, T] bool.
    """
    sq = ((student_q - teacher_q.detach()) ** 2).sum(dim=(-1, -2))  # [E, T]
    m = filled.to(sq.dtype)
    return (sq * m).sum() / m.sum().clamp(min=1.0)


def teacher_reads_privileged_obs(cfg: Config, auto: bool) -> bool:
    """Whether the teacher reads the env's privileged observation: ``teacher_obs``, where
    ``auto`` is the method's own choice (CTDS's teacher: yes, IGM-DA's expert: no; each
    learner's ``privileged_obs_by_default``)."""
    return cfg.teacher_obs == "privileged" or (cfg.teacher_obs == "auto" and auto)


def build_privileged_teacher(cfg: Config, spec: EnvSpec, auto: bool) -> nn.Module:
    """The teacher of CTDS or IGM-DA: on the env's privileged observation (CTDS's
    unlimited sight, see :func:`teacher_reads_privileged_obs`) where there is one, else
    on [s, o_i, u_i^{t-1}, id_i], the GGN without its fusion block (IGM-DA's "expert
    with global state", and CTDS's where the env has no privileged observation)."""
    if teacher_reads_privileged_obs(cfg, auto) and spec.privileged_obs_dim > 0:
        return PrivilegedObsAgent(
            spec.privileged_obs_dim, spec.n_agents, spec.n_actions, cfg.rnn_hidden_dim,
            cfg.obs_last_action, cfg.obs_agent_id,
        )  # fmt: skip
    if cfg.teacher_obs == "privileged":
        raise ConfigError(
            f"teacher_obs=privileged: environment {cfg.env_name!r} produces no privileged "
            "observation (predator_prey and smax do); use teacher_obs=state or auto"
        )
    return GuidingNetwork(
        spec.obs_dim, spec.state_dim, spec.n_agents, spec.n_actions, cfg.rnn_hidden_dim,
        personalized_state=False, last_action=cfg.obs_last_action, agent_id=cfg.obs_agent_id,
    )  # fmt: skip


def build_local_agent(cfg: Config, spec: EnvSpec) -> AgentQNetwork:
    return AgentQNetwork(
        spec.obs_dim, spec.n_agents, spec.n_actions, cfg.rnn_hidden_dim,
        cfg.obs_last_action, cfg.obs_agent_id,
    )  # fmt: skip


class CTDSLearner:
    # teacher_obs=auto: the teacher sees with unlimited sight where the env can produce it.
    privileged_obs_by_default = True

    def __init__(self, cfg: Config, spec: EnvSpec, device: torch.device):
        self.cfg, self.spec, self.device = cfg, spec, device
        self.teacher = build_privileged_teacher(cfg, spec, self.privileged_obs_by_default)
        self.td = VDLearner(cfg, spec, device, agent=self.teacher)
        self.student = build_local_agent(cfg, spec).to(device)
        self.student_optimizer = make_optimizer(cfg, list(self.student.parameters()))

    @property
    def acting_network(self) -> nn.Module:
        return self.teacher

    def evaluation_policies(self) -> dict[str, nn.Module]:
        return {"test": self.teacher, "test_student": self.student}

    def evaluation_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """The transfer rate, student over teacher (the paper's Table 2)."""
        return transfer_rate_metrics(metrics, self.spec.has_win_condition)

    def train(self, batch: EpisodeBatch, episode: int) -> dict[str, float]:
        batch = batch.to(self.device)
        x = self.td.encode(batch)
        metrics, teacher_out = self.td.td_update(batch, episode, inputs=x)
        metrics["train/L_td"] = metrics["train/loss"]
        t = batch.filled.shape[1]
        # The teacher's x_i serves the student too where both read the same o_i.
        same = self.student.inputs == self.teacher.inputs and type(self.teacher).observe is (
            AgentQNetwork.observe
        )
        student_q = unroll_batch(self.student, batch, x if same else None).q[:, :t]
        loss = ctds_loss(student_q, teacher_out.q[:, :t], batch.filled)
        self.student_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.student.parameters(), self.cfg.grad_norm_clip)
        self.student_optimizer.step()
        metrics["train/L_kd"] = loss.detach()
        return metric_values(metrics)

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {
            "td": self.td.state_dict(),
            "student": self.student.state_dict(),
            "student_optimizer": self.student_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.td.load_state_dict(state["td"])
        self.student.load_state_dict(state["student"])
        self.student_optimizer.load_state_dict(state["student_optimizer"])

    def policy_state_dict(self) -> dict:
        """What evaluation needs: both networks' weights."""
        return {"teacher": self.teacher.state_dict(), "student": self.student.state_dict()}
