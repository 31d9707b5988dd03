"""One-step cooperative matrix games: the classic probe of value factorization.

Every agent picks one action; the team receives ``payoff[a_1][a_2]...[a_n]`` and the
episode terminates. The default is the non-monotonic game of the QTRAN / WQMIX papers,
whose optimum (8) VDN and QMIX cannot represent under uniform exploration.
"""

from __future__ import annotations

from typing import Any

import torch

from ddn.envs.base import EnvOutput, EnvSpec, VecEnv
from ddn.envs.registry import register

NON_MONOTONIC = [[8.0, -12.0, -12.0], [-12.0, 0.0, 0.0], [-12.0, 0.0, 0.0]]


def _payoff_tensor(payoff: Any) -> torch.Tensor:
    try:
        table = torch.tensor(payoff, dtype=torch.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"parameter payoff must be a nested list of numbers, one axis per agent with the "
            f"same number of actions on each, e.g. [[8,-12],[-12,0]]; got {payoff!r}"
        ) from exc
    if table.dim() < 2 or len(set(table.shape)) != 1 or table.shape[0] < 2:
        raise ValueError(
            "parameter payoff must be a square table with one axis per agent (>= 2 agents) "
            f"and the same number (>= 2) of actions on each axis; got shape {list(table.shape)}"
        )
    return table


@register("matrix", "one-step cooperative matrix game; default the non-monotonic 3x3 game")
class MatrixGame(VecEnv):
    """Observation and state are a constant ``[1.0]``: the game has a single state.

    ``won`` is ``True`` when the joint action reaches the table's maximum.
    """

    def __init__(
        self,
        num_envs: int = 1,
        seed: int = 0,
        device: str | torch.device = "cpu",
        *,
        payoff: list = NON_MONOTONIC,
    ):
        super().__init__(num_envs, seed, device)
        self.payoff = _payoff_tensor(payoff).to(self.device)
        n_agents, n_actions = self.payoff.dim(), self.payoff.shape[0]
        self.spec = EnvSpec(
            n_agents=n_agents,
            obs_dim=1,
            state_dim=1,
            n_actions=n_actions,
            episode_limit=1,
            has_win_condition=True,
        )
        # Row-major strides turn a joint action into a flat index of the table.
        self._strides = torch.tensor(
            [n_actions ** (n_agents - 1 - i) for i in range(n_agents)], device=self.device
        )
        self._best = self.payoff.max()
        self._done = torch.ones(num_envs, dtype=torch.bool, device=self.device)
        self._won = torch.zeros(num_envs, dtype=torch.bool, device=self.device)

    def _output(self, reward: torch.Tensor) -> EnvOutput:
        b, s = self.num_envs, self.spec
        return EnvOutput(
            obs=torch.ones(b, s.n_agents, 1, device=self.device),
            state=torch.ones(b, 1, device=self.device),
            avail=torch.ones(b, s.n_agents, s.n_actions, dtype=torch.bool, device=self.device),
            reward=reward,
            terminated=self._done.clone(),
            truncated=torch.zeros_like(self._done),
            won=self._won.clone(),
        )

    def reset(self) -> EnvOutput:
        self._done.zero_()
        self._won.zero_()
        return self._output(torch.zeros(self.num_envs, device=self.device))

    def step(self, actions: torch.Tensor) -> EnvOutput:
        running = ~self._done
        avail = torch.ones(
            self.num_envs,
            self.spec.n_agents,
            self.spec.n_actions,
            dtype=torch.bool,
            device=self.device,
        )
        self.validate_actions(actions, avail, running)
        value = self.payoff.flatten()[(actions * self._strides).sum(dim=1)]
        reward = torch.where(running, value, 0.0)
        self._won |= running & (value >= self._best)
        self._done.fill_(True)
        return self._output(reward)
