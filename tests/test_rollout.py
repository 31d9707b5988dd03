"""Epsilon-greedy action selection, the epsilon schedule, and the episode collector."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch

from ddn.envs import make
from ddn.nets.actor import select_actions
from ddn.rollout import Collector, EpsilonSchedule

CATCH = 5


pytestmark = pytest.mark.usefixtures("one_thread")


def random_avail(shape, generator, p=0.5):
    avail = torch.rand(*shape, generator=generator) < p
    # At least one available action per agent, not always the same one.
    forced = torch.randint(0, shape[-1], shape[:-1], generator=generator)
    avail.scatter_(-1, forced.unsqueeze(-1), True)
    return avail


# ---------------------------------------------------------------- select_actions
@pytest.mark.parametrize("epsilon", [0.0, 0.5, 1.0])
def test_select_actions_never_picks_unavailable(epsilon):
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        q = torch.randn(64, 5, 7, generator=g) * 10
        avail = random_avail((64, 5, 7), g, p=0.3)
        a = select_actions(q, avail, epsilon, generator=g)
        assert a.shape == (64, 5) and a.dtype == torch.long
        assert avail.gather(-1, a.unsqueeze(-1)).all()


def test_select_actions_epsilon_zero_is_the_masked_greedy_action():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(32, 3, 6, generator=g)
    avail = random_avail((32, 3, 6), g)
    best = q.masked_fill(~avail, float("-inf")).argmax(dim=-1)
    assert torch.equal(select_actions(q, avail, 0.0), best)
    # Unavailable actions with the largest Q are skipped.
    q = torch.tensor([[[100.0, 1.0, 2.0]]])
    avail = torch.tensor([[[False, True, True]]])
    assert select_actions(q, avail, 0.0).tolist() == [[2]]


def test_select_actions_epsilon_one_is_uniform_over_available():
    g = torch.Generator().manual_seed(2)
    n = 60_000
    avail_row = torch.tensor([True, False, True, True, False, True])
    avail = avail_row.expand(n, 1, 6)
    q = torch.zeros(n, 1, 6)
    q[..., 0] = 5.0  # greedy would always pick 0
    a = select_actions(q, avail, 1.0, generator=g).flatten()
    counts = torch.bincount(a, minlength=6).double()
    assert counts[~avail_row].sum() == 0
    expected = n / int(avail_row.sum())
    chi2 = float(((counts[avail_row] - expected) ** 2 / expected).sum())
    assert chi2 < 21.0  # 3 degrees of freedom: p ~ 1e-4


def test_select_actions_epsilon_half_mixes_greedy_and_uniform():
    g = torch.Generator().manual_seed(3)
    n = 40_000
    avail = torch.tensor([True, True, True, False]).expand(n, 1, 4)
    q = torch.tensor([0.0, 3.0, 1.0, 9.0]).expand(n, 1, 4)
    a = select_actions(q, avail, 0.5, generator=g).flatten()
    counts = torch.bincount(a, minlength=4).double() / n
    # Greedy (action 1) with 0.5 + 0.5/3, others 0.5/3 each, never action 3.
    assert counts[3] == 0
    assert float(counts[1]) == pytest.approx(0.5 + 0.5 / 3, abs=0.015)
    assert float(counts[0]) == pytest.approx(0.5 / 3, abs=0.015)
    assert float(counts[2]) == pytest.approx(0.5 / 3, abs=0.015)


def test_select_actions_is_reproducible_with_a_generator():
    q = torch.randn(16, 4, 6)
    avail = random_avail((16, 4, 6), torch.Generator().manual_seed(4))
    a = select_actions(q, avail, 0.7, generator=torch.Generator().manual_seed(9))
    b = select_actions(q, avail, 0.7, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


# ---------------------------------------------------------------- EpsilonSchedule
def test_epsilon_schedule_is_linear_then_flat():
    sched = EpsilonSchedule(1.0, 0.05, 100)
    assert sched(0) == 1.0
    assert sched(50) == pytest.approx(0.525)
    assert sched(25) == pytest.approx(1.0 - 0.25 * 0.95)
    assert sched(100) == pytest.approx(0.05)
    assert sched(10_000) == pytest.approx(0.05)
    values = [sched(t) for t in range(0, 120, 7)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_epsilon_schedule_constant_and_zero_anneal():
    assert EpsilonSchedule(1.0, 1.0, 50)(30) == 1.0
    assert EpsilonSchedule(0.8, 0.1, 0)(0) == 0.1
    # Annealing upwards also works linearly.
    assert EpsilonSchedule(0.0, 1.0, 10)(5) == pytest.approx(0.5)


# ---------------------------------------------------------------- Collector
class RecordingEnv:
    """Wraps a VecEnv and records every output it returns."""

    def __init__(self, env):
        self.env = env
        self.outputs = []
        self.actions = []

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self):
        out = self.env.reset()
        self.outputs = [_copy(out)]
        self.actions = []
        return out

    def step(self, actions):
        self.actions.append(actions.clone())
        out = self.env.step(actions)
        self.outputs.append(_copy(out))
        return out


def _copy(out):
    return type(out)(**{k: None if v is None else v.clone() for k, v in vars(out).items()})


class CatchyNetwork:
    """A stateless dummy policy that prefers ``catch``, then a random-ish move. Its input
    encoding records the last actions it is given, its step the recurrent state."""

    reads_state = False

    def __init__(self, n_agents: int, n_actions: int, seed: int = 0):
        self.n_agents, self.n_actions = n_agents, n_actions
        self.g = torch.Generator().manual_seed(seed)
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.inputs = SimpleNamespace(encode=self._encode)

    def _encode(self, obs, last_actions):
        self.calls.append((last_actions.clone(), None))
        return obs

    def initial_hidden(self, batch, device):
        return torch.zeros(batch, self.n_agents, 1, device=device)

    def observe(self, obs, avail=None, privileged_obs=None):
        return obs

    def step(self, x, hidden, state=None):
        assert state is None
        self.calls[-1] = (self.calls[-1][0], hidden.clone())
        b = x.shape[0]
        q = torch.rand(b, self.n_agents, self.n_actions, generator=self.g)
        if self.n_actions > CATCH:
            q[..., CATCH] += 1.0
        return q, hidden + 1


PP = {"n_agents": 4, "n_prey": 1, "height": 3, "width": 3, "episode_limit": 12}


def collect(seed: int, epsilon: float = 0.3, num_envs: int = 16, **params):
    env = RecordingEnv(make("predator_prey", num_envs=num_envs, seed=seed, **{**PP, **params}))
    net = CatchyNetwork(env.spec.n_agents, env.spec.n_actions, seed)
    torch.manual_seed(seed)
    batch, stats = Collector(env, torch.device("cpu")).run(net, epsilon)
    return env, net, batch, stats


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_collector_masks_match_episode_lengths(seed):
    env, _, batch, stats = collect(seed)
    limit = env.spec.episode_limit
    lengths = stats.lengths
    final = env.outputs[-1]
    assert bool(final.done.all())
    assert batch.num_episodes == env.num_envs
    assert batch.max_t == int(lengths.max()) <= limit
    assert stats.env_steps == int(lengths.sum())
    steps = torch.arange(batch.max_t)
    assert torch.equal(batch.filled, steps[None, :] < lengths[:, None])
    # Terminated only on the last transition of episodes that really terminated.
    last = steps[None, :] == (lengths - 1)[:, None]
    assert torch.equal(batch.terminated, last & final.terminated[:, None])
    # Time-outs run to the episode limit; terminations before it count as terminated.
    assert (lengths[final.truncated] == limit).all()
    assert not (final.terminated & final.truncated).any()
    # Rewards: padded steps are zero and each episode's sum is its return.
    assert not batch.reward[~batch.filled].any()
    torch.testing.assert_close(batch.reward.sum(dim=1), stats.returns)
    assert not stats.won.any()


def test_collector_sees_both_terminations_and_time_outs():
    kinds = set()
    for seed in range(4):
        env, _, batch, _ = collect(seed)
        final = env.outputs[-1]
        kinds.update({"terminated"} if final.terminated.any() else set())
        kinds.update({"truncated"} if final.truncated.any() else set())
        kinds.update({"padded"} if (~batch.filled).any() else set())
    assert kinds == {"terminated", "truncated", "padded"}


@pytest.mark.parametrize("seed", [0, 3])
def test_collector_stores_what_the_env_returned(seed):
    env, _, batch, stats = collect(seed)
    outs = env.outputs
    for e in range(env.num_envs):
        n = int(stats.lengths[e])
        for t in range(n + 1):  # t = n is the state the last transition reached
            assert torch.equal(batch.obs[e, t], outs[t].obs[e]), (e, t)
            assert torch.equal(batch.state[e, t], outs[t].state[e]), (e, t)
            assert torch.equal(batch.avail[e, t], outs[t].avail[e]), (e, t)
        # The observation at index length is the final one the env returned.
        assert torch.equal(batch.obs[e, n], outs[-1].obs[e])
        assert torch.equal(batch.state[e, n], outs[-1].state[e])
        for t in range(n):
            assert torch.equal(batch.actions[e, t], env.actions[t][e])
            assert float(batch.reward[e, t]) == float(outs[t + 1].reward[e])
    # Chosen actions were available where the episode was running.
    chosen = batch.avail[:, :-1].gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
    assert chosen[batch.filled].all()


def test_collector_feeds_last_actions_and_hidden_state():
    env, net, batch, _ = collect(5)
    assert len(net.calls) == batch.max_t
    first_last, first_hidden = net.calls[0]
    assert (first_last == -1).all() and (first_hidden == 0).all()
    for t in range(1, batch.max_t):
        last, hidden = net.calls[t]
        assert torch.equal(last, env.actions[t - 1])
        assert (hidden == t).all()


def test_collector_on_the_matrix_game():
    env = make("matrix", num_envs=8, seed=0)
    net = CatchyNetwork(env.spec.n_agents, env.spec.n_actions)
    batch, stats = Collector(env, torch.device("cpu")).run(net, 1.0)
    assert batch.max_t == 1 and batch.obs.shape[1] == 2
    assert batch.filled.all() and batch.terminated.all()
    assert stats.lengths.tolist() == [1] * 8
    payoff = env.payoff
    want = payoff[batch.actions[:, 0, 0], batch.actions[:, 0, 1]]
    torch.testing.assert_close(batch.reward[:, 0], want)
    torch.testing.assert_close(stats.returns, want)
    assert torch.equal(stats.won, want >= payoff.max())


def test_collector_moves_the_batch_to_the_buffer_device():
    env = make("matrix", num_envs=2, seed=0)
    net = CatchyNetwork(env.spec.n_agents, env.spec.n_actions)
    batch, _ = Collector(env, torch.device("cpu")).run(net, 0.5, torch.device("meta"))
    assert batch.obs.device.type == "meta"
