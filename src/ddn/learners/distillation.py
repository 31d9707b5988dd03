"""DDN's equations (paper Sec. 4), one function each, apart from the optimiser steps.

Numbers are the paper's; ``shared/spec/ddn-method.md`` fixes its typos (the squares of
eqs. 5 and 8, the IOB's input) and reads its ambiguous eq. 9. Every function is pure:
the learner (:mod:`ddn.learners.ddn`) owns the networks, the running statistics and the
optimisers, and calls these on their outputs.

Shapes: E episodes, T real-or-padded transitions, N agents, A actions. Losses average
over real transitions (``filled``) and, where agents can die, over alive agents only
(:func:`alive_agents`).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ddn.nets.agent import AgentOutput
from ddn.nets.masked import masked_mean

# Finite stand-in for -inf on unavailable actions: softmax gives them exactly 0, and
# 0 * (finite log-ratio) stays 0 in the forward and backward passes (-inf would be NaN).
_MASKED = -1e9


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


def alive_agents(avail: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """[E, T, N] bool: the agents that count in L_B, L_Q, L_F: on a real transition, with
    more than one available action (dead or frozen agents only have a no-op).
    ``avail`` is [E, T(+1), N, A]; only its first T steps are read."""
    t = filled.shape[1]
    return (avail[:, :t].sum(dim=-1) > 1) & filled.unsqueeze(-1)


def block_loss(
    student_block: torch.Tensor, teacher_block: torch.Tensor, alive: torch.Tensor
) -> torch.Tensor:
    """Eq. 6, L_B = (1/n) sum_i ||o_hat_i - sg(S_hat_i)||^2: the squared difference of the
    IOB's and the PFB's outputs, averaged over block units (an MSE) and over the alive
    agents of real transitions. Blocks are [E, T(+1), N, d]; the first T steps count."""
    t = alive.shape[1]
    sq = ((student_block[:, :t] - teacher_block[:, :t]) ** 2).mean(dim=-1)
    return masked_mean(sq, alive)


def q_distillation_loss(
    teacher_q: torch.Tensor,
    student_q: torch.Tensor,
    avail: torch.Tensor,
    alive: torch.Tensor,
    filled: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Eq. 6, L_Q = sum_i KL(softmax(Q_i^GGN / T) || softmax(Q_i^LPN / T)): over the
    available actions only, summed over the alive agents, averaged over real
    transitions. Q is [E, T(+1), N, A], ``avail`` [E, T(+1), N, A] (padding made
    all-available, see :func:`~ddn.learners.targets.fix_avail`)."""
    t = alive.shape[1]
    kl = kl_divergence(teacher_q[:, :t] / temperature, student_q[:, :t] / temperature, avail[:, :t])
    return masked_mean((kl * alive).sum(dim=-1), filled)


def feature_distillation_loss(
    teacher_feature: torch.Tensor,
    student_feature: torch.Tensor,
    alive: torch.Tensor,
    filled: torch.Tensor,
) -> torch.Tensor:
    """Eq. 6, L_F = sum_i KL(softmax(F_i^GGN) || softmax(F_i^LPN)) between the MLP
    outputs (softmax over feature units), summed over the alive agents, averaged over
    real transitions. Features are [E, T(+1), N, H]."""
    t = alive.shape[1]
    # Features are [E, T, N, H] views of [T, E, N, H] storage (nets/agent.py): take the KL
    # in storage order, then view it back, so nothing H-wide is copied.
    kl = kl_divergence(teacher_feature.transpose(0, 1), student_feature.transpose(0, 1)).transpose(
        0, 1
    )[:, :t]
    return masked_mean((kl * alive).sum(dim=-1), filled)


def local_loss(
    teacher: AgentOutput,
    student: AgentOutput,
    avail: torch.Tensor,
    filled: torch.Tensor,
    w_block: float | None = 1.0,
    w_q: float | None = 1.0,
    w_feature: float | None = 1.0,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 7, L_local = w_B L_B + w_Q L_Q + w_F L_F, the student's only loss.

    A weight of None switches its term off (the paper's Table 4 ablation); L_B is also
    off when the teacher has no block (no PFB: Table 3's raw-state ablation). ``teacher``
    must be detached (sg: L_local never reaches the GGN). Returns the loss (a constant 0
    without gradient when every term is off) and each term's value, detached, as
    ``train/L_B``, ``train/L_Q``, ``train/L_F``, ``train/L_local``.
    """
    alive = alive_agents(avail, filled)
    loss = torch.zeros((), device=avail.device)
    metrics: dict[str, torch.Tensor] = {}
    if w_block is not None and teacher.block is not None and student.block is not None:
        l_b = block_loss(student.block, teacher.block, alive)
        loss = loss + w_block * l_b
        metrics["train/L_B"] = l_b.detach()
    if w_q is not None:
        l_q = q_distillation_loss(teacher.q, student.q, avail, alive, filled, temperature)
        loss = loss + w_q * l_q
        metrics["train/L_Q"] = l_q.detach()
    if w_feature is not None:
        l_f = feature_distillation_loss(teacher.feature, student.feature, alive, filled)
        loss = loss + w_feature * l_f
        metrics["train/L_F"] = l_f.detach()
    metrics["train/L_local"] = loss.detach()
    return loss, metrics


def idm_mask(
    filled: torch.Tensor, prob: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """m ~ Bernoulli(mu) per real transition ([E, T] bool): the paper's "random mask
    probability" mu of eq. 9, read as a mask (``shared/spec/ddn-method.md``, Sec. 2).
    Drawn where ``generator`` lives, then moved to ``filled``'s device."""
    where = filled.device if generator is None else generator.device
    draw = torch.rand(filled.shape, device=where, generator=generator).to(filled.device)
    return (draw < prob) & filled


def idm_loss(error: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 8 (its square restored), L_I = mean of e = ||P(S) - T(S)||^2 over the masked
    transitions: the IDM predictor's loss. ``error`` [E, T] from
    :meth:`~ddn.nets.rnd.RND.error`, ``mask`` from :func:`idm_mask`."""
    return masked_mean(error, mask)


def intrinsic_reward(
    error: torch.Tensor, mask: torch.Tensor, coef: float, scale: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """Eq. 9, r_I = coef * m * e / scale per transition ([E, T], no gradient): the
    prediction error of the masked transitions, divided by ``scale`` (the running root
    mean square of e where ``idm_normalize`` is on, so that ``coef`` means the same in
    every environment)."""
    return coef * (error.detach() / scale) * mask


def total_reward(reward: torch.Tensor, r_i: torch.Tensor) -> torch.Tensor:
    """Eq. 10, r_tot = r + r_I: the reward the teacher's TD loss (eq. 5) learns from.
    r_I is never added at test time."""
    return reward + r_i
