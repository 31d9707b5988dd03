"""TD targets over whole padded episodes, without a Python loop over time."""

from __future__ import annotations

import torch


def fix_avail(avail: torch.Tensor) -> torch.Tensor:
    """Padded steps have no available action; treat them as all-available so that
    masked maxima stay finite (their losses are masked out anyway)."""
    return avail | ~avail.any(dim=-1, keepdim=True)


def last_transition(filled: torch.Tensor) -> torch.Tensor:
    """[E, T] bool: the last real transition of each padded episode."""
    next_filled = torch.cat((filled[:, 1:], torch.zeros_like(filled[:, :1])), dim=1)
    return filled & ~next_filled


def td_lambda_targets(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    filled: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    td_lambda: float,
) -> torch.Tensor:
    """Lambda-returns G_t for every step of ``[E, T]`` padded episodes.

    ``next_value[:, t]`` is the target network's value of the state reached by
    transition t. The recursion

        G_t = r_t + gamma (1 - term_t) [ (1 - lambda_t) V_{t+1} + lambda_t G_{t+1} ],

    with lambda_t = lambda on every step but an episode's last (whose successor is not
    a transition, so it bootstraps fully: a time-out bootstraps, a termination does
    not), unrolls to G_t = sum_{k >= t} (gamma lambda)^{k-t} a_k with
    a_k = r_k + gamma (1 - term_k) (1 - lambda_k) V_{k+1} and a_k = 0 on padding.
    Inside an episode the discount is the constant gamma * lambda, so the sum is one
    matmul with an upper-triangular Toeplitz matrix. ``td_lambda = 0`` gives one-step
    targets.
    """
    t = reward.shape[1]
    not_term = (~terminated).to(next_value.dtype)
    filled_f = filled.to(next_value.dtype)
    next_filled = torch.cat((filled_f[:, 1:], torch.zeros_like(filled_f[:, :1])), dim=1)
    lam = td_lambda * next_filled
    a = (reward + gamma * not_term * (1.0 - lam) * next_value) * filled_f
    if td_lambda == 0.0:
        return a
    steps = torch.arange(t, device=reward.device)
    power = (steps[None, :] - steps[:, None]).to(next_value.dtype)  # [t, k] = k - t
    discount = torch.where(power >= 0, (gamma * td_lambda) ** power.clamp(min=0), 0.0)
    return a @ discount.T
