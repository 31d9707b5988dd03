"""One-step cooperative matrix games."""

from __future__ import annotations

import itertools

import pytest
import torch

from ddn.envs import make
from ddn.envs.native.matrix import NON_MONOTONIC

DEFAULT = [[8.0, -12.0, -12.0], [-12.0, 0.0, 0.0], [-12.0, 0.0, 0.0]]


def play(env, joint):
    """Reset, play one joint action in every env; return the step output."""
    env.reset()
    return env.step(torch.tensor([joint] * env.num_envs, dtype=torch.long))


def test_default_is_the_non_monotonic_game():
    assert NON_MONOTONIC == DEFAULT
    env = make("matrix", num_envs=3)
    s = env.spec
    assert (s.n_agents, s.n_actions, s.obs_dim, s.state_dim, s.episode_limit) == (2, 3, 1, 1, 1)
    assert s.has_win_condition
    assert env.payoff.tolist() == DEFAULT


def test_reset_output():
    env = make("matrix", num_envs=3)
    out = env.reset()
    assert out.obs.shape == (3, 2, 1) and out.state.shape == (3, 1)
    assert out.avail.shape == (3, 2, 3) and out.avail.all()
    assert not out.reward.any() and not out.done.any() and not out.won.any()


@pytest.mark.parametrize(("a0", "a1"), list(itertools.product(range(3), range(3))))
def test_reward_is_payoff_and_one_step(a0, a1):
    env = make("matrix", num_envs=2)
    out = play(env, [a0, a1])
    assert out.reward.tolist() == [DEFAULT[a0][a1]] * 2
    assert out.terminated.all() and not out.truncated.any()
    assert out.won.tolist() == [(a0, a1) == (0, 0)] * 2


def test_mixed_joint_actions_in_one_batch():
    env = make("matrix", num_envs=9)
    env.reset()
    joints = list(itertools.product(range(3), range(3)))
    out = env.step(torch.tensor(joints, dtype=torch.long))
    assert out.reward.tolist() == [DEFAULT[a][b] for a, b in joints]
    assert out.won.tolist() == [j == (0, 0) for j in joints]


def test_finished_env_is_frozen_until_reset():
    env = make("matrix", num_envs=2)
    first = play(env, [0, 0])
    again = env.step(torch.tensor([[1, 2], [2, 1]]))
    assert not again.reward.any()
    assert again.terminated.all() and again.won.all()
    assert torch.equal(again.won, first.won)
    out = play(env, [1, 1])
    assert out.reward.tolist() == [0.0, 0.0] and not out.won.any()


def test_custom_payoff():
    payoff = [[1.0, 5.0], [-3.0, 2.5]]
    env = make("matrix", num_envs=1, payoff=payoff)
    assert (env.spec.n_agents, env.spec.n_actions) == (2, 2)
    for a0, a1 in itertools.product(range(2), range(2)):
        out = play(env, [a0, a1])
        assert float(out.reward[0]) == payoff[a0][a1]
        assert bool(out.won[0]) is ((a0, a1) == (0, 1))


def test_three_agent_payoff():
    # payoff[a0][a1][a2] = 100*a0 + 10*a1 + a2; the best is (1, 1, 1).
    payoff = [[[100 * i + 10 * j + k for k in range(2)] for j in range(2)] for i in range(2)]
    env = make("matrix", num_envs=1, payoff=payoff)
    assert (env.spec.n_agents, env.spec.n_actions) == (3, 2)
    assert env.reset().avail.shape == (1, 3, 2)
    for joint in itertools.product(range(2), repeat=3):
        out = play(env, list(joint))
        assert float(out.reward[0]) == payoff[joint[0]][joint[1]][joint[2]]
        assert bool(out.won[0]) is (joint == (1, 1, 1))


@pytest.mark.parametrize(
    ("payoff", "match"),
    [
        ([[1, 2], [3]], "nested list of numbers"),
        ([["a", "b"], ["c", "d"]], "nested list of numbers"),
        ("8,-12", "nested list of numbers"),
        ([1.0, 2.0, 3.0], "square table"),
        ([[1, 2, 3], [4, 5, 6]], r"square table.*got shape \[2, 3\]"),
        ([[5.0]], "square table"),
        (7.0, "square table"),
    ],
)
def test_bad_payoff(payoff, match):
    with pytest.raises(ValueError, match=match):
        make("matrix", payoff=payoff)


def test_bad_actions():
    env = make("matrix", num_envs=2)
    env.reset()
    with pytest.raises(ValueError, match="out of range"):
        env.step(torch.tensor([[0, 3], [0, 0]]))
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.tensor([[0, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"dtype torch\.int64"):
        env.step(torch.zeros(2, 2, dtype=torch.int32))
