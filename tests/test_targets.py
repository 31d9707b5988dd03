"""TD(lambda) targets, masking of padded steps, and the masked argmax helpers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ddn.config import resolve
from ddn.envs import make
from ddn.learners.objectives import build_objective
from ddn.learners.targets import fix_avail, last_transition, td_lambda_targets
from ddn.nets.masked import masked_argmax, masked_mean


def reference_targets(reward, terminated, filled, next_value, gamma, lam):
    """The backward recursion written out as a plain Python loop.

    G_t = r_t + gamma (1 - term_t) [(1 - lam_t) V_{t+1} + lam_t G_{t+1}], with lam_t = 0
    on an episode's last transition and G_t = 0 on padding.
    """
    e_count, t_count = reward.shape
    out = [[0.0] * t_count for _ in range(e_count)]
    for e in range(e_count):
        g_next = 0.0
        for t in reversed(range(t_count)):
            if not bool(filled[e, t]):
                out[e][t] = 0.0
                g_next = 0.0
                continue
            last = t == t_count - 1 or not bool(filled[e, t + 1])
            lam_t = 0.0 if last else lam
            not_term = 0.0 if bool(terminated[e, t]) else 1.0
            v = float(next_value[e, t])
            g = float(reward[e, t]) + gamma * not_term * ((1 - lam_t) * v + lam_t * g_next)
            out[e][t] = g
            g_next = g
    return torch.tensor(out, dtype=torch.float64)


def random_episodes(e: int, t: int, seed: int, dtype=torch.float64):
    """Padded episodes of random lengths; each ends in a termination or a time-out."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, t + 1, (e,), generator=g)
    lengths[0] = t  # at least one full-length episode
    steps = torch.arange(t)
    filled = steps[None, :] < lengths[:, None]
    ends_terminated = torch.rand(e, generator=g) < 0.5
    terminated = (steps[None, :] == (lengths - 1)[:, None]) & ends_terminated[:, None]
    reward = torch.randn(e, t, generator=g, dtype=dtype)
    next_value = torch.randn(e, t, generator=g, dtype=dtype) * 3
    return reward, terminated, filled, next_value


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("gamma", [0.99, 0.5, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_backward_recursion(lam, gamma, seed):
    reward, terminated, filled, next_value = random_episodes(7, 13, seed)
    got = td_lambda_targets(reward, terminated, filled, next_value, gamma, lam)
    want = reference_targets(reward, terminated, filled, next_value, gamma, lam)
    assert got.shape == reward.shape
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_float32_matches_the_recursion():
    reward, terminated, filled, next_value = random_episodes(5, 40, 3, dtype=torch.float32)
    got = td_lambda_targets(reward, terminated, filled, next_value, 0.99, 0.8)
    want = reference_targets(reward, terminated, filled, next_value, 0.99, 0.8)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)


def _tiny(terminal: bool, pad: int = 0):
    reward = torch.tensor([[1.0, 2.0, 3.0] + [7.0] * pad], dtype=torch.float64)
    next_value = torch.tensor([[10.0, 20.0, 30.0] + [-5.0] * pad], dtype=torch.float64)
    filled = torch.tensor([[True, True, True] + [False] * pad])
    terminated = torch.tensor([[False, False, terminal] + [False] * pad])
    return reward, terminated, filled, next_value


def test_hand_computed_terminated_episode():
    # gamma = lambda = 0.5; the last transition terminates: no bootstrap.
    # G2 = 3
    # G1 = 2 + 0.5 * (0.5 * 20 + 0.5 * 3)     = 7.75
    # G0 = 1 + 0.5 * (0.5 * 10 + 0.5 * 7.75)  = 5.4375
    got = td_lambda_targets(*_tiny(terminal=True), gamma=0.5, td_lambda=0.5)
    assert got.tolist() == [[5.4375, 7.75, 3.0]]


def test_hand_computed_timed_out_episode():
    # A time-out bootstraps fully from V(s_T) = 30 on its last transition.
    # G2 = 3 + 0.5 * 30                       = 18
    # G1 = 2 + 0.5 * (0.5 * 20 + 0.5 * 18)    = 11.5
    # G0 = 1 + 0.5 * (0.5 * 10 + 0.5 * 11.5)  = 6.375
    got = td_lambda_targets(*_tiny(terminal=False), gamma=0.5, td_lambda=0.5)
    assert got.tolist() == [[6.375, 11.5, 18.0]]


@pytest.mark.parametrize(
    ("bootstrap", "want"),
    [(True, [[6.375, 11.5, 18.0, 0.0, 0.0]]), (False, [[5.4375, 7.75, 3.0, 0.0, 0.0]])],
)
def test_bootstrap_timeout_switch(bootstrap, want):
    """bootstrap_timeout=false treats a time-out like a termination (the hand-computed
    episodes above): the objective's targets for a timed-out, padded episode."""
    reward, terminated, filled, next_value = _tiny(terminal=False, pad=2)
    cfg = resolve("matrix", "vdn", overrides=[f"bootstrap_timeout={bootstrap}", "gamma=0.5",
                                              "td_lambda=0.5"])  # fmt: skip
    objective = build_objective(cfg, make("matrix").spec)
    td = SimpleNamespace(reward=reward, batch=SimpleNamespace(terminated=terminated, filled=filled))
    assert objective.targets(td, next_value).tolist() == want
    assert last_transition(filled).tolist() == [[False, False, True, False, False]]


def test_hand_computed_padding_is_zero_and_ignored():
    padded = td_lambda_targets(*_tiny(terminal=False, pad=2), gamma=0.5, td_lambda=0.5)
    assert padded.tolist() == [[6.375, 11.5, 18.0, 0.0, 0.0]]
    padded = td_lambda_targets(*_tiny(terminal=True, pad=2), gamma=0.5, td_lambda=0.5)
    assert padded.tolist() == [[5.4375, 7.75, 3.0, 0.0, 0.0]]


def test_lambda_zero_is_one_step():
    reward, terminated, filled, next_value = random_episodes(6, 9, 4)
    got = td_lambda_targets(reward, terminated, filled, next_value, 0.9, 0.0)
    one_step = (reward + 0.9 * (~terminated).double() * next_value) * filled.double()
    torch.testing.assert_close(got, one_step)


def test_lambda_one_gamma_one_is_the_return_plus_final_bootstrap():
    reward, terminated, filled, next_value = random_episodes(6, 9, 5)
    got = td_lambda_targets(reward, terminated, filled, next_value, 1.0, 1.0)
    for e in range(6):
        n = int(filled[e].sum())
        last_v = 0.0 if bool(terminated[e, n - 1]) else float(next_value[e, n - 1])
        for t in range(n):
            want = float(reward[e, t:n].sum()) + last_v
            assert float(got[e, t]) == pytest.approx(want, abs=1e-9)


def test_padded_values_do_not_change_real_targets():
    reward, terminated, filled, next_value = random_episodes(6, 11, 6)
    base = td_lambda_targets(reward, terminated, filled, next_value, 0.99, 0.8)
    pad = ~filled
    reward2 = torch.where(pad, torch.full_like(reward, 1e6), reward)
    next_value2 = torch.where(pad, torch.full_like(next_value, -1e6), next_value)
    terminated2 = terminated | (pad & (torch.rand(pad.shape) < 0.5))
    again = td_lambda_targets(reward2, terminated2, filled, next_value2, 0.99, 0.8)
    torch.testing.assert_close(again, base, rtol=0, atol=0)
    assert (again[pad] == 0).all()


# ---------------------------------------------------------------- masking
def test_masked_mean_averages_real_entries_only():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, -50.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert float(masked_mean(x, mask)) == pytest.approx(2.0)
    # A bool mask works the same.
    assert float(masked_mean(x, mask.bool())) == pytest.approx(2.0)


def test_masked_mean_ignores_padded_values_and_their_gradients():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=g)
    mask = (torch.rand(4, 6, generator=g) < 0.6).float()
    mask[0, 0] = 1.0
    base = masked_mean(x, mask)
    garbage = torch.where(mask.bool(), x, torch.randn(4, 6, generator=g) * 1e4)
    assert float(masked_mean(garbage, mask)) == float(base)

    leaf = garbage.clone().requires_grad_(True)
    masked_mean(leaf**2, mask).backward()
    assert (leaf.grad[mask == 0] == 0).all()
    real = mask.bool()
    torch.testing.assert_close(leaf.grad[real], 2 * leaf.detach()[real] / mask.sum())


def test_masked_mean_of_an_all_padded_batch_is_zero_not_nan():
    x = torch.randn(3, 4)
    assert float(masked_mean(x, torch.zeros(3, 4))) == 0.0


# ---------------------------------------------------------------- avail helpers
def test_fix_avail_makes_empty_rows_all_available_and_keeps_others():
    avail = torch.tensor(
        [
            [[True, False, False], [False, False, False]],
            [[False, True, True], [False, False, False]],
        ]
    )
    fixed = fix_avail(avail)
    assert fixed.dtype == torch.bool
    assert fixed[0, 0].tolist() == [True, False, False]
    assert fixed[1, 0].tolist() == [False, True, True]
    assert fixed[0, 1].all() and fixed[1, 1].all()
    assert avail[0, 1].sum() == 0  # the input is not modified


def test_masked_argmax_never_picks_unavailable_actions():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(50, 4, 7, generator=g)
    avail = torch.rand(50, 4, 7, generator=g) < 0.4
    avail[..., 3] |= ~avail.any(dim=-1)  # at least one available action
    a = masked_argmax(q, avail)
    assert a.shape == (50, 4)
    assert avail.gather(-1, a.unsqueeze(-1)).all()
    best = q.masked_fill(~avail, float("-inf")).max(dim=-1).values
    torch.testing.assert_close(q.gather(-1, a.unsqueeze(-1)).squeeze(-1), best)


def test_masked_argmax_prefers_available_over_larger_unavailable():
    q = torch.tensor([[5.0, 1.0, 2.0]])
    avail = torch.tensor([[False, True, True]])
    assert masked_argmax(q, avail).tolist() == [2]
    # Even with -inf Q values, an available action wins after fix_avail on padding.
    q = torch.full((1, 3), float("-inf"))
    assert masked_argmax(q, fix_avail(torch.zeros(1, 3, dtype=torch.bool))).tolist() == [0]
