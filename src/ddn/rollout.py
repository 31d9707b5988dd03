"""Collect whole episodes from B environments at once, epsilon-greedy over available actions.

Environments do not auto-reset (``ddn.envs.base``): a rollout resets all ``B``, steps
them in lock-step until every one has finished, and returns the ``B`` episodes as one
padded :class:`~ddn.buffer.EpisodeBatch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ddn.buffer import EpisodeBatch
from ddn.envs import EnvOutput, VecEnv


class ActingNetwork(Protocol):
    """What a rollout needs from a policy network (the agent net, or DDN's GGN/LPN)."""

    def initial_hidden(self, batch: int, device: torch.device) -> torch.Tensor: ...

    def step(
        self, env_out: EnvOutput, last_actions: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class EpsilonSchedule:
    """Linear annealing from ``start`` to ``finish`` over ``anneal_time`` env steps."""

    def __init__(self, start: float, finish: float, anneal_time: int):
        self.start, self.finish, self.anneal_time = start, finish, anneal_time

    def __call__(self, t_env: int) -> float:
        if self.anneal_time <= 0:
            return self.finish
        frac = min(t_env / self.anneal_time, 1.0)
        return self.start + frac * (self.finish - self.start)


def select_actions(
    q: torch.Tensor, avail: torch.Tensor, epsilon: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Epsilon-greedy over available actions: q, avail [B, N, A] -> actions [B, N].

    With probability epsilon an agent picks uniformly among its available actions.
    """
    greedy = q.masked_fill(~avail, float("-inf")).argmax(dim=-1)
    if epsilon <= 0.0:
        return greedy
    noise = torch.rand(avail.shape, device=q.device, generator=generator)
    random = noise.masked_fill(~avail, -1.0).argmax(dim=-1)
    explore = torch.rand(greedy.shape, device=q.device, generator=generator) < epsilon
    return torch.where(explore, random, greedy)


@dataclass
class RolloutStats:
    returns: torch.Tensor  # [B] episode returns
    lengths: torch.Tensor  # [B] transitions per episode
    won: torch.Tensor  # [B] bool

    @property
    def env_steps(self) -> int:
        return int(self.lengths.sum())


class Collector:
    """Runs one episode in each of ``env.num_envs`` environments per call."""

    def __init__(self, env: VecEnv, device: torch.device):
        self.env = env
        self.device = device

    @torch.no_grad()
    def run(
        self,
        network: ActingNetwork,
        epsilon: float,
        buffer_device: torch.device | None = None,
    ) -> tuple[EpisodeBatch, RolloutStats]:
        env, b, spec = self.env, self.env.num_envs, self.env.spec
        batch = EpisodeBatch.zeros(b, spec, self.device)
        out = env.reset()
        hidden = network.initial_hidden(b, self.device)
        last_actions = torch.full((b, spec.n_agents), -1, dtype=torch.long, device=self.device)
        returns = torch.zeros(b, device=self.device)
        lengths = torch.zeros(b, dtype=torch.long, device=self.device)
        t = 0
        for t in range(spec.episode_limit):
            batch.obs[:, t] = out.obs
            batch.state[:, t] = out.state
            batch.avail[:, t] = out.avail
            if out.privileged_obs is not None:
                batch.privileged_obs[:, t] = out.privileged_obs
            running = ~out.done
            q, hidden = network.step(out, last_actions, hidden)
            actions = select_actions(q, out.avail, epsilon)
            out = env.step(actions)
            batch.actions[:, t] = actions
            batch.reward[:, t] = out.reward
            batch.terminated[:, t] = out.terminated & running
            batch.filled[:, t] = running
            returns += out.reward
            lengths += running.long()
            last_actions = actions
            if bool(out.done.all()):
                break
        # The state each episode ended in (a time-out bootstraps from it).
        batch.obs[:, t + 1] = out.obs
        batch.state[:, t + 1] = out.state
        batch.avail[:, t + 1] = out.avail
        if out.privileged_obs is not None:
            batch.privileged_obs[:, t + 1] = out.privileged_obs
        batch = batch.index(slice(None), t + 1)
        if buffer_device is not None:
            batch = batch.to(buffer_device)
        return batch, RolloutStats(returns=returns, lengths=lengths, won=out.won.clone())
