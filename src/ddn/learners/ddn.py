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

``docs/ddn.md`` maps every equation and ablation switch to this code.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ddn.buffer import EpisodeBatch
from ddn.config import Config
from ddn.envs import EnvSpec
from ddn.learners.targets import fix_avail
from ddn.learners.value_decomposition import VDLearner, adam, metric_values
from ddn.nets.agent import AgentOutput
from ddn.nets.ddn import GuidingNetwork, LocalPolicyNetwork
from ddn.nets.rnd import RND

# Finite stand-in for -inf on unavailable actions: softmax gives them exactly 0, and
# 0 * (finite log-ratio) stays 0 in the forward and backward passes (-inf would be NaN).
_MASKED = -1e9


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


def kl_divergence(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """KL(softmax(teacher) || softmax(student)) over the last dim, restricted to ``valid``
    entries (e.g. available actions): [..., K] -> [...]."""
    if valid is not None:
        teacher_logits = teacher_logits.masked_fill(~valid, _MASKED)
        student_logits = student_logits.masked_fill(~valid, _MASKED)
    log_p = F.log_softmax(teacher_logits, dim=-1)
    log_q = F.log_softmax(student_logits, dim=-1)
    # kl_div(input=log q, target=log p) = p (log p - log q), in one fused kernel.
    terms = F.kl_div(log_q, log_p, reduction="none", log_target=True)
    if valid is not None:
        terms = torch.where(valid, terms, 0.0)
    return terms.sum(dim=-1)


class DistillationLosses(nn.Module):
    """L_B, L_Q, L_F (paper eq. 6) between detached teacher and student outputs.

    Per (episode, step) with a real transition and per agent that is alive (more than
    one available action: dead or frozen agents only have a no-op):
    L_B averages the squared block difference over agents and block units (MSE);
    L_Q and L_F sum the KL divergences over agents. All are then averaged over steps.
    """

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg

    def forward(
        self, teacher: AgentOutput, student: AgentOutput, avail: torch.Tensor, filled: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.cfg
        t = filled.shape[1]
        avail = avail[:, :t]  # states of real transitions: [E, T, N, A]
        alive = (avail.sum(dim=-1) > 1) & filled.unsqueeze(-1)  # [E, T, N]
        alive_f = alive.float()
        n_steps = filled.float().sum().clamp(min=1.0)
        metrics: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), device=avail.device)
        if cfg.distill_block and teacher.block is not None:
            sq = ((student.block[:, :t] - teacher.block[:, :t]) ** 2).mean(dim=-1)
            l_b = (sq * alive_f).sum() / alive_f.sum().clamp(min=1.0)
            loss = loss + cfg.w_block * l_b
            metrics["train/L_B"] = l_b.detach()
        if cfg.distill_q:
            temp = cfg.distill_temperature
            kl = kl_divergence(teacher.q[:, :t] / temp, student.q[:, :t] / temp, avail)
            l_q = (kl * alive_f).sum() / n_steps
            loss = loss + cfg.w_q * l_q
            metrics["train/L_Q"] = l_q.detach()
        if cfg.distill_feature:
            # Features are [E, T, N, H] views of [T, E, N, H] storage (nets/agent.py): take
            # the KL in storage order, then view it back, so nothing H-wide is copied.
            kl = kl_divergence(
                teacher.feature.transpose(0, 1), student.feature.transpose(0, 1)
            ).transpose(0, 1)[:, :t]
            l_f = (kl * alive_f).sum() / n_steps
            loss = loss + cfg.w_feature * l_f
            metrics["train/L_F"] = l_f.detach()
        metrics["train/L_local"] = loss.detach()
        return loss, metrics


class DDNLearner:
    def __init__(self, cfg: Config, spec: EnvSpec, device: torch.device):
        self.cfg, self.spec, self.device = cfg, spec, device
        self.teacher = build_teacher(cfg, spec)
        self.td = VDLearner(cfg, spec, device, agent=self.teacher)  # GGN's TD learning
        self.student = build_student(cfg, spec).to(device)
        self.distill = DistillationLosses(cfg)
        self.student_optimizer = adam(self.student.parameters(), cfg.student_lr)
        self.idm: RND | None = None
        if cfg.idm:
            self.idm = RND(spec.state_dim, cfg.idm_embed_dim).to(device)
            self.idm_optimizer = adam(self.idm.predictor.parameters(), cfg.idm_lr)

    @property
    def acting_network(self) -> nn.Module:
        return self.teacher if self.cfg.act_with == "teacher" else self.student

    def evaluation_policies(self) -> dict[str, nn.Module]:
        return {"test": self.teacher, "test_student": self.student}

    def train(self, batch: EpisodeBatch, episode: int) -> dict[str, float]:
        batch = batch.to(self.device)
        reward, metrics = batch.reward, {}
        if self.idm is not None:
            r_i, idm_metrics = self.intrinsic_reward(batch)
            reward = reward + r_i
            metrics.update(idm_metrics)
        td_metrics, teacher_out = self.td.td_update(batch, episode, reward)
        metrics.update(td_metrics)
        metrics["train/L_td"] = td_metrics["train/loss"]
        metrics.update(self.distill_step(batch, teacher_out))
        return metric_values(metrics)

    def intrinsic_reward(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict]:
        """r_I [E, T] from the current predictor; then one predictor step on L_I.

        r_I = idm_coef * m * e / rms(e), m ~ Bernoulli(idm_mask_prob) per transition
        (the paper's eq. 9, mu read as a mask probability). L_I = mean of e over the
        masked real transitions (eq. 8).
        """
        cfg, idm = self.cfg, self.idm
        assert idm is not None
        states = batch.state[:, 1:] if cfg.idm_next_state else batch.state[:, :-1]
        error = idm.error(states)  # [E, T]
        filled = batch.filled
        mask = (torch.rand(filled.shape, device=filled.device) < cfg.idm_mask_prob) & filled
        with torch.no_grad():
            novelty = error.detach()
            if cfg.idm_normalize:
                idm.error_stats.update(novelty[filled])
                novelty = novelty / idm.error_stats.rms.to(novelty.dtype)
            r_i = cfg.idm_coef * novelty * mask
        mask_f = mask.float()
        l_i = (error * mask_f).sum() / mask_f.sum().clamp(min=1.0)
        self.idm_optimizer.zero_grad(set_to_none=True)
        l_i.backward()
        self.idm_optimizer.step()
        n = filled.float().sum().clamp(min=1.0)
        return r_i, {"train/L_I": l_i.detach(), "train/r_I_mean": r_i.sum() / n}

    def distill_step(self, batch: EpisodeBatch, teacher_out: AgentOutput) -> dict:
        student_out = self.student.sequence(batch)
        loss, metrics = self.distill(teacher_out, student_out, fix_avail(batch.avail), batch.filled)
        if loss.requires_grad:  # all of L_B, L_Q, L_F switched off: nothing to learn
            self.student_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.student.parameters(), self.cfg.grad_norm_clip)
            self.student_optimizer.step()
        with torch.no_grad():
            t, filled = batch.filled.shape[1], batch.filled.float()
            actions = batch.actions.unsqueeze(-1)
            for name, out in (("teacher", teacher_out), ("student", student_out)):
                q = out.q[:, :t].gather(-1, actions).squeeze(-1).mean(dim=-1)
                metrics[f"train/q_{name}_mean"] = (q * filled).sum() / filled.sum()
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
        return state

    def load_state_dict(self, state: dict) -> None:
        self.td.load_state_dict(state["td"])
        self.student.load_state_dict(state["student"])
        self.student_optimizer.load_state_dict(state["student_optimizer"])
        if self.idm is not None:
            self.idm.load_state_dict(state["idm"])
            self.idm_optimizer.load_state_dict(state["idm_optimizer"])
