"""Greedy evaluation episodes: their per-episode values and the summary logged from them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ddn.envs import VecEnv
from ddn.nets.agent import RecurrentQNetwork
from ddn.rollout import Collector


@dataclass
class Episodes:
    """Every evaluation episode's return, length and win (``won`` is None where the
    environment has no win condition). The logged means are computed from exactly these
    values, so ``episodes.jsonl`` and ``metrics.jsonl`` always agree."""

    returns: torch.Tensor  # [n] float32, as the environment summed them
    lengths: torch.Tensor  # [n] int
    won: torch.Tensor | None  # [n] bool

    def summary(self, prefix: str = "test") -> dict[str, float]:
        """``<prefix>/return_mean``, ``return_std`` (population std, as PyMARL logs it),
        ``ep_length_mean`` and, with a win condition, ``win_rate``."""
        r = self.returns.double()
        metrics = {
            f"{prefix}/return_mean": float(r.mean()),
            f"{prefix}/return_std": float(r.std(unbiased=False)),
            f"{prefix}/ep_length_mean": float(self.lengths.double().mean()),
        }
        if self.won is not None:
            metrics[f"{prefix}/win_rate"] = float(self.won.double().mean())
        return metrics


def run_episodes(network: RecurrentQNetwork, env: VecEnv, n_episodes: int) -> Episodes:
    """Run ``n_episodes`` greedy episodes (in rollouts of ``env.num_envs``).

    Episodes that a worker failure dropped (``env.dropped``, process-worker envs) are
    left out: they are neither losses nor returns (fewer episodes come back; NaN means
    when every episode was dropped).
    """
    collector = Collector(env, env.device)
    returns, lengths, won = [], [], []
    for k in range(math.ceil(n_episodes / env.num_envs)):
        _, stats = collector.run(network, epsilon=0.0)
        kept = torch.ones_like(stats.won)
        dropped = getattr(env, "dropped", None)
        if dropped is not None:
            kept = ~dropped.to(stats.won.device)
        kept[max(0, n_episodes - k * env.num_envs) :] = False  # the last rollout's surplus
        returns.append(stats.returns[kept])
        lengths.append(stats.lengths[kept])
        won.append(stats.won[kept])
    return Episodes(
        torch.cat(returns).cpu(),
        torch.cat(lengths).cpu(),
        torch.cat(won).cpu() if env.spec.has_win_condition else None,
    )


def evaluate(
    network: RecurrentQNetwork, env: VecEnv, n_episodes: int, prefix: str = "test"
) -> dict[str, float]:
    """The summary of ``n_episodes`` greedy episodes (see :meth:`Episodes.summary`)."""
    return run_episodes(network, env, n_episodes).summary(prefix)
