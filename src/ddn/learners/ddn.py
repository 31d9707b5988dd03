"""The Double Distillation Network learner (paper Sec. 4, Algorithm 1).

Built by composition on the value-decomposition learner:

* the **GGN** (teacher, :class:`~ddn.nets.ddn.GuidingNetwork`) is the agent network of a
  :class:`~ddn.learners.value_decomposition.VDLearner`, which trains it with the base
  method's TD objective (any mixer) on r_tot = r + r_I, RMSprop, target networks;
* the **LPN** (student, :class:`~ddn.nets.ddn.LocalPolicyNetwork`) has no TD loss; it is
  trained only by L_local = w_B L_B + w_Q L_Q + w_F L_F against the teacher's outputs,
  with Adam. Teacher tensors are detached (the pre-update outputs of the TD step), so
  L_local never reaches the GGN and L_global never reaches the LPN;
* the **IDM** (:class:`~ddn.nets.rnd.RND`) computes r_I on the sampled batch with the
  current predictor, then trains the predictor on the masked transitions.

The equations are the functions of :mod:`ddn.learners.distillation`; this module owns
the networks, the running statistics, the IDM's mask generator and the optimiser
steps. ``docs/ddn.md`` maps every equation and ablation switch to the code.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ddn.buffer import EpisodeBatch
from ddn.config import Config
from ddn.envs import EnvSpec
from ddn.learners.base import STUDENT_PREFIX, TEACHER_PREFIX, transfer_rate_metrics
from ddn.learners.distillation import (
    idm_loss,
    idm_mask,
    intrinsic_reward,
    local_loss,
    total_reward,
)
from ddn.learners.targets import fix_avail
from ddn.learners.value_decomposition import VDLearner, adam, metric_values
from ddn.nets.agent import AgentOutput
from ddn.nets.ddn import GuidingNetwork, LocalPolicyNetwork
from ddn.nets.masked import masked_mean
from ddn.nets.rnd import RND
from ddn.rng import IDM_MASK, seeded_generator


def build_teacher(cfg: Config, spec: EnvSpec) -> GuidingNetwork:
    return GuidingNetwork(
        spec.obs_dim, spec.state_dim, spec.n_agents, spec.n_actions, cfg.rnn_hidden_dim,
        cfg.fusion_dim, cfg.fusion_hypernet_dim, cfg.personalized_state,
        cfg.obs_last_action, cfg.obs_agent_id,
    )  # fmt: skip


def build_student(cfg: Config, spec: EnvSpec) -> LocalPolicyNetwork:
    return LocalPolicyNetwork(
        spec.obs_dim, spec.n_agents, spec.n_actions, cfg.rnn_hidden_dim, cfg.fusion_dim,
        cfg.fusion_hypernet_dim, cfg.obs_last_action, cfg.obs_agent_id,
    )  # fmt: skip


class DDNLearner:
    """GGN, LPN and IDM with their optimisers (a :class:`~ddn.learners.base.Learner`)."""

    def __init__(self, cfg: Config, spec: EnvSpec, device: torch.device):
        self.cfg, self.spec, self.device = cfg, spec, device
        self.teacher = build_teacher(cfg, spec)
        self.td = VDLearner(cfg, spec, device, agent=self.teacher)  # GGN's TD learning
        self.student = build_student(cfg, spec).to(device)
        # One encoding of x_i per update serves both networks: they read the same x_i.
        assert self.student.inputs == self.teacher.inputs
        self.student_optimizer = adam(self.student.parameters(), cfg.student_lr)
        self.idm: RND | None = None
        if cfg.idm:
            self.idm = RND(spec.state_dim, cfg.idm_embed_dim).to(device)
            self.idm_optimizer = adam(self.idm.predictor.parameters(), cfg.idm_lr)
            self.idm_generator = seeded_generator(cfg.seed, IDM_MASK)

    @property
    def acting_network(self) -> nn.Module:
        return self.teacher if self.cfg.act_with == "teacher" else self.student

    def evaluation_policies(self) -> dict[str, nn.Module]:
        return {TEACHER_PREFIX: self.teacher, STUDENT_PREFIX: self.student}

    def evaluation_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """The transfer rate LPN / GGN (the paper's Table 2)."""
        return transfer_rate_metrics(metrics, self.spec.has_win_condition)

    def train(self, batch: EpisodeBatch, episode: int) -> dict[str, float]:
        """Algorithm 1's update: r_I and the IDM step, the GGN's TD step on r + r_I, the
        LPN's distillation step, all from one encoding of the batch's local inputs."""
        batch = batch.to(self.device)
        x = self.td.encode(batch)
        reward, metrics = batch.reward, {}
        if self.idm is not None:
            r_i, idm_metrics = self.idm_step(batch)
            reward = total_reward(batch.reward, r_i)
            metrics.update(idm_metrics)
        td_metrics, teacher_out = self.td.td_update(batch, episode, reward, x)
        metrics.update(td_metrics)
        metrics["train/L_td"] = td_metrics["train/loss"]
        metrics.update(self.distill_step(batch, teacher_out, x))
        return metric_values(metrics)

    def idm_step(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict]:
        """r_I [E, T] from the current predictor (eq. 9); then one predictor step on L_I
        (eq. 8) over the same masked transitions."""
        cfg, idm = self.cfg, self.idm
        assert idm is not None
        states = batch.state[:, 1:] if cfg.idm_next_state else batch.state[:, :-1]
        error = idm.error(states)  # [E, T]
        filled = batch.filled
        mask = idm_mask(filled, cfg.idm_mask_prob, self.idm_generator)
        scale: torch.Tensor | float = 1.0
        if cfg.idm_normalize:
            idm.error_stats.update(error.detach()[filled])
            scale = idm.error_stats.rms.to(error.dtype)
        r_i = intrinsic_reward(error, mask, cfg.idm_coef, scale)
        l_i = idm_loss(error, mask)
        self.idm_optimizer.zero_grad(set_to_none=True)
        l_i.backward()
        self.idm_optimizer.step()
        return r_i, {"train/L_I": l_i.detach(), "train/r_I_mean": masked_mean(r_i, filled)}

    def distill_step(
        self, batch: EpisodeBatch, teacher_out: AgentOutput, inputs: torch.Tensor | None = None
    ) -> dict:
        """One student step on L_local (eq. 7) against the detached ``teacher_out``, from
        the encoded ``inputs`` (default: encode ``batch``)."""
        cfg = self.cfg
        x = self.td.encode(batch) if inputs is None else inputs
        student_out, _ = self.student.unroll(x)
        loss, metrics = local_loss(
            teacher_out, student_out, fix_avail(batch.avail), batch.filled,
            w_block=cfg.w_block if cfg.distill_block else None,
            w_q=cfg.w_q if cfg.distill_q else None,
            w_feature=cfg.w_feature if cfg.distill_feature else None,
            temperature=cfg.distill_temperature,
        )  # fmt: skip
        if loss.requires_grad:  # all of L_B, L_Q, L_F switched off: nothing to learn
            self.student_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.student.parameters(), cfg.grad_norm_clip)
            self.student_optimizer.step()
        with torch.no_grad():
            t = batch.filled.shape[1]
            actions = batch.actions.unsqueeze(-1)
            for name, out in (("teacher", teacher_out), ("student", student_out)):
                q = out.q[:, :t].gather(-1, actions).squeeze(-1).mean(dim=-1)
                metrics[f"train/q_{name}_mean"] = masked_mean(q, batch.filled)
        return metrics

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        state = {
            "td": self.td.state_dict(),
            "student": self.student.state_dict(),
            "student_optimizer": self.student_optimizer.state_dict(),
        }
        if self.idm is not None:
            state["idm"] = self.idm.state_dict()
            state["idm_optimizer"] = self.idm_optimizer.state_dict()
            state["idm_generator"] = self.idm_generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.td.load_state_dict(state["td"])
        self.student.load_state_dict(state["student"])
        self.student_optimizer.load_state_dict(state["student_optimizer"])
        if self.idm is not None:
            self.idm.load_state_dict(state["idm"])
            self.idm_optimizer.load_state_dict(state["idm_optimizer"])
            # Checkpoints of format 1 (before the IDM had its own mask stream) have none:
            # the stream then goes on from its seed (see ddn.experiment.Experiment.load_state).
            if "idm_generator" in state:
                self.idm_generator.set_state(state["idm_generator"])

    def policy_state_dict(self) -> dict:
        """What evaluation needs: the GGN's and the LPN's weights."""
        return {"teacher": self.teacher.state_dict(), "student": self.student.state_dict()}
