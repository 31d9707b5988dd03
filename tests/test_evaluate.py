"""Greedy evaluation: the actions a fixed network takes and the episode statistics that
come back, on a tiny deterministic environment whose every number is worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from ddn.envs import EnvOutput, EnvSpec, VecEnv
from ddn.evaluate import evaluate, run_episodes
from ddn.nets.inputs import LocalInputs

N_AGENTS, N_ACTIONS, LIMIT = 2, 3, 3


class Lights(VecEnv):
    """Each agent sees one "lit" action, one-hot: (b + i + t) % 3 for agent i of env b at
    step t. The team's reward is how many agents took their lit action. Agent 2 can never
    take action 2. Env b terminates after b + 1 steps; env 2 runs into the episode limit
    (3) and is truncated. ``won``: every action of the episode hit. Every joint action a
    running env receives is recorded in ``taken``."""

    def __init__(self, num_envs: int = 3, seed: int = 0, device: str = "cpu"):
        super().__init__(num_envs, seed, device)
        self.spec = EnvSpec(
            n_agents=N_AGENTS,
            obs_dim=N_ACTIONS,
            state_dim=1,
            n_actions=N_ACTIONS,
            episode_limit=LIMIT,
            has_win_condition=True,
        )
        self.env_ids = torch.arange(num_envs)
        self.length = torch.clamp(self.env_ids + 1, max=LIMIT)
        self.taken: list[list[tuple[int, ...]]] = [[] for _ in range(num_envs)]

    def _avail(self) -> torch.Tensor:
        avail = torch.ones(self.num_envs, N_AGENTS, N_ACTIONS, dtype=torch.bool)
        avail[:, 1, 2] = False
        return avail

    def _output(self, reward: torch.Tensor) -> EnvOutput:
        lit = (self.env_ids[:, None] + torch.arange(N_AGENTS)[None, :] + self.t[:, None]) % 3
        ended = self.t >= self.length
        return EnvOutput(
            obs=torch.nn.functional.one_hot(lit, N_ACTIONS).float(),
            state=self.t[:, None].float(),
            avail=self._avail(),
            reward=reward,
            terminated=ended & (self.length < LIMIT),
            truncated=ended & (self.length == LIMIT),
            won=ended & self.perfect,
        )

    def reset(self) -> EnvOutput:
        self.t = torch.zeros(self.num_envs, dtype=torch.long)
        self.perfect = torch.ones(self.num_envs, dtype=torch.bool)
        self.taken = [[] for _ in range(self.num_envs)]
        return self._output(torch.zeros(self.num_envs))

    def step(self, actions: torch.Tensor) -> EnvOutput:
        running = self.t < self.length
        self.validate_actions(actions, self._avail(), running)
        lit = (self.env_ids[:, None] + torch.arange(N_AGENTS)[None, :] + self.t[:, None]) % 3
        hits = (actions == lit).sum(dim=1)
        for b in running.nonzero().flatten().tolist():
            self.taken[b].append(tuple(actions[b].tolist()))
        self.perfect &= ~running | (hits == N_AGENTS)
        self.t = self.t + running.long()
        return self._output(torch.where(running, hits.float(), 0.0))


class CopyObservation(torch.nn.Module):
    """A fixed network: Q_i(a) = obs_i[a] + 0.1 [a == 1], i.e. "take the lit action",
    and action 1 where the lit action is unavailable (Q = (0, 0.1, 1) masked to (0, 0.1)).
    Its input x_i is the bare observation (no last action, no agent id)."""

    reads_state = False

    def __init__(self) -> None:
        super().__init__()
        self.inputs = LocalInputs(N_ACTIONS, N_AGENTS, N_ACTIONS, last_action=False, agent_id=False)
        self.n_agents = N_AGENTS

    def initial_hidden(self, batch: int, device: torch.device) -> torch.Tensor:
        return torch.zeros(batch, N_AGENTS, 1, device=device)

    def observe(self, obs, avail=None, privileged_obs=None):
        return obs

    def step(
        self, x: torch.Tensor, hidden: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return x + torch.tensor([0.0, 0.1, 0.0]), hidden


# The greedy episodes, step by step (lit actions (agent 1, agent 2) -> actions, reward):
#   env 0: t0 (0, 1) -> (0, 1), 2                                     return 2, 1 step, won
#   env 1: t0 (1, 2) -> (1, 1), 1 [2 unavailable]; t1 (2, 0) -> (2, 0), 2      return 3, 2 steps
#   env 2: t0 (2, 0) -> (2, 0), 2; t1 (0, 1) -> (0, 1), 2; t2 (1, 2) -> (1, 1), 1  return 5, 3
GREEDY_ACTIONS = [[(0, 1)], [(1, 1), (2, 0)], [(2, 0), (0, 1), (1, 1)]]


def test_greedy_episodes_take_the_best_available_action_and_report_each_episode():
    env = Lights()
    episodes = run_episodes(CopyObservation(), env, n_episodes=3)
    assert env.taken == GREEDY_ACTIONS
    assert episodes.returns.tolist() == [2.0, 3.0, 5.0]
    assert episodes.lengths.tolist() == [1, 2, 3]
    assert episodes.won is not None
    assert episodes.won.tolist() == [True, False, False]


def test_more_episodes_than_envs_run_whole_rollouts_and_keep_the_first_n():
    """Five episodes on three envs: two rollouts of three, the last one's surplus dropped
    (episodes 0, 1, 2, 0, 1)."""
    episodes = run_episodes(CopyObservation(), Lights(), n_episodes=5)
    assert episodes.returns.tolist() == [2.0, 3.0, 5.0, 2.0, 3.0]
    assert episodes.lengths.tolist() == [1, 2, 3, 1, 2]
    assert episodes.won is not None
    assert episodes.won.tolist() == [True, False, False, True, False]


def test_greedy_evaluation_ignores_the_random_state():
    """Epsilon is 0: the same actions and returns whatever torch's generator holds."""
    runs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        env = Lights()
        runs.append((run_episodes(CopyObservation(), env, 3).returns.tolist(), env.taken))
    assert runs[0] == runs[1]


def test_evaluate_summarises_the_episodes():
    """Returns (2, 3, 5, 2, 3): mean 15 / 5 = 3, population variance
    ((-1)^2 + 0 + 2^2 + (-1)^2 + 0) / 5 = 6 / 5; lengths (1, 2, 3, 1, 2): mean 9 / 5;
    wins (1, 0, 0, 1, 0): rate 2 / 5."""
    summary = evaluate(CopyObservation(), Lights(), n_episodes=5, prefix="test")
    assert summary == pytest.approx(
        {
            "test/return_mean": 3.0,
            "test/return_std": math.sqrt(6 / 5),
            "test/ep_length_mean": 9 / 5,
            "test/win_rate": 2 / 5,
        }
    )
