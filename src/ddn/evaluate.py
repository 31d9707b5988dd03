"""Greedy evaluation episodes."""

from __future__ import annotations

import math

import torch

from ddn.envs import VecEnv
from ddn.rollout import ActingNetwork, Collector


def evaluate(
    network: ActingNetwork, env: VecEnv, n_episodes: int, prefix: str = "test"
) -> dict[str, float]:
    """Run ``n_episodes`` greedy episodes (in rollouts of ``env.num_envs``) and summarise.

    Keys: ``<prefix>/return_mean``, ``return_std``, ``ep_length_mean`` and, where the
    environment has a win condition, ``win_rate``.
    """
    collector = Collector(env, env.device)
    returns, lengths, won = [], [], []
    for _ in range(math.ceil(n_episodes / env.num_envs)):
        _, stats = collector.run(network, epsilon=0.0)
        returns.append(stats.returns)
        lengths.append(stats.lengths)
        won.append(stats.won)
    r = torch.cat(returns)[:n_episodes].double()
    metrics = {
        f"{prefix}/return_mean": float(r.mean()),
        f"{prefix}/return_std": float(r.std(unbiased=False)),
        f"{prefix}/ep_length_mean": float(torch.cat(lengths)[:n_episodes].double().mean()),
    }
    if env.spec.has_win_condition:
        metrics[f"{prefix}/win_rate"] = float(torch.cat(won)[:n_episodes].double().mean())
    return metrics
