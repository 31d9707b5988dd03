"""Any PettingZoo parallel environment with discrete actions as a ddn :class:`VecEnv`.

``--env pettingzoo --set env.env_fn=mpe2:simple_spread_v3`` runs ``B`` copies. Each copy
is wrapped as a PyMARL ``MultiAgentEnv`` (:class:`PettingZooMultiAgentEnv`) and the
copies run through :class:`~ddn.envs.adapters.pool.MultiAgentEnvVec`: in this process by
default (cheap environments such as MPE would spend more on pipes than on stepping), in
worker processes with ``processes=True`` (slow or fragile ones: crash/hang recovery).

How PettingZoo's per-agent dicts become ddn's batched team view:

* agents are ``env.possible_agents`` in order; an agent that has left the episode
  (dead) gets zero observations, only action 0 available, and no action is sent for it;
* ``avail``: ``infos[agent]["action_mask"]`` or an observation dict's ``"action_mask"``
  where the env provides one, else every action; agents with fewer actions than the
  largest action space have the extra actions masked out;
* ``obs``: the observation (a dict's ``"observation"``), flattened, zero-padded to the
  longest agent observation;
* ``state``: ``env.state()`` where the env implements it, else the concatenation of every
  agent's (padded) observation;
* ``reward``: the sum of the agents' rewards (``reward_reduce="mean"`` for the mean), the
  usual "common reward" of EPyMARL;
* the episode ends when no agent is left; it is ``truncated`` if any agent was truncated
  on that step (a time-out), else ``terminated``; ``episode_limit`` steps without an end
  are a time-out too. PettingZoo has no win condition: ``won`` is always ``False``.

Seeds: a copy's first ``reset`` gets its worker seed, later resets continue the env's own
random stream (``reset(seed=None)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ddn.envs.adapters.factories import resolve_target
from ddn.envs.adapters.pool import MultiAgentEnvVec
from ddn.envs.registry import check_int, register

_REDUCE = ("sum", "mean")


def _flat_size(space: Any) -> int:
    shape = getattr(space, "shape", None)
    if shape is None:
        raise ValueError(f"observation space {space} has no shape; only Box-like spaces work")
    return int(np.prod(shape)) if len(shape) else 1


class PettingZooMultiAgentEnv:
    """One PettingZoo parallel env behind the PyMARL ``MultiAgentEnv`` interface."""

    def __init__(
        self,
        env_fn: str,
        env_kwargs: dict | None = None,
        seed: int | None = None,
        reward_reduce: str = "sum",
        episode_limit: int = 0,
    ):
        if reward_reduce not in _REDUCE:
            raise ValueError(f"parameter reward_reduce must be sum or mean, got {reward_reduce!r}")
        self.env = resolve_target(env_fn, attr_fallback="parallel_env")(**(env_kwargs or {}))
        env = self.env
        if not (hasattr(env, "possible_agents") and hasattr(env, "step")):
            raise ValueError(f"{env_fn!r} did not return a PettingZoo environment")
        if hasattr(env, "agent_selection"):
            raise ValueError(
                f"{env_fn!r} is an AEC (turn-based) environment; pass its parallel_env, or "
                "wrap it with pettingzoo.utils.conversions.aec_to_parallel"
            )
        self.agents: list[str] = list(env.possible_agents)
        self.reward_reduce = reward_reduce
        self.seed = seed
        self._episodes = 0
        self._n_actions: list[int] = []
        self._obs_sizes: list[int] = []
        self._obs_dict: list[bool] = []
        for a in self.agents:
            act = env.action_space(a)
            if not hasattr(act, "n") or getattr(act, "shape", ()) not in ((), None):
                raise ValueError(
                    f"agent {a!r} has action space {act}: only discrete actions work "
                    "(for MPE pass env.env_kwargs={continuous_actions: false})"
                )
            self._n_actions.append(int(act.n))
            space = env.observation_space(a)
            is_dict = hasattr(space, "spaces") and "observation" in getattr(space, "spaces", {})
            self._obs_dict.append(is_dict)
            self._obs_sizes.append(_flat_size(space["observation"] if is_dict else space))
        self.n_agents = len(self.agents)
        self.obs_dim = max(self._obs_sizes)
        self.n_actions = max(self._n_actions)
        # ParallelEnv.state() raises NotImplementedError unless the env defines a state;
        # those that do also declare state_space.
        state_space = getattr(env, "state_space", None)
        self._has_state = state_space is not None
        self.state_dim = (
            _flat_size(state_space) if self._has_state else self.n_agents * self.obs_dim
        )
        limit = episode_limit or _find_limit(env)
        if not limit:
            raise ValueError(
                f"{env_fn!r} does not say how long its episodes are: set env.episode_limit"
            )
        self.episode_limit = check_int("episode_limit", limit, 1)
        self._obs = np.zeros((self.n_agents, self.obs_dim), np.float32)
        self._avail = np.zeros((self.n_agents, self.n_actions), bool)
        self._t = 0

    # -------------------------------------------------------------- MultiAgentEnv
    def get_env_info(self) -> dict[str, Any]:
        return {
            "n_agents": self.n_agents,
            "obs_shape": self.obs_dim,
            "state_shape": self.state_dim,
            "n_actions": self.n_actions,
            "episode_limit": self.episode_limit,
        }

    def reset(self) -> None:
        seed = self.seed if self._episodes == 0 else None
        self._episodes += 1
        self._t = 0
        obs, infos = self.env.reset(seed=seed)
        self._absorb(obs, infos)

    def step(self, actions: list[int]) -> tuple[float, bool, dict[str, Any]]:
        live = set(self.env.agents)
        joint = {a: int(actions[k]) for k, a in enumerate(self.agents) if a in live}
        obs, rewards, terms, truncs, infos = self.env.step(joint)
        self._t += 1
        self._absorb(obs, infos)
        values = [float(rewards.get(a, 0.0)) for a in self.agents]
        reward = float(np.sum(values) if self.reward_reduce == "sum" else np.mean(values))
        over = not self.env.agents or all(
            terms.get(a, False) or truncs.get(a, False) for a in self.agents
        )
        info: dict[str, Any] = {}
        if over and any(truncs.get(a, False) for a in self.agents):
            info["episode_limit"] = True
        elif not over and self._t >= self.episode_limit:
            info["episode_limit"] = True
            over = True
        return reward, over, info

    def _absorb(self, obs: dict[str, Any], infos: dict[str, Any]) -> None:
        """Per-agent dicts -> ``self._obs`` [N, O], ``self._avail`` [N, A]."""
        self._obs[:] = 0.0
        self._avail[:] = False
        for k, a in enumerate(self.agents):
            if a not in obs:  # gone: zero observation, no-op only
                self._avail[k, 0] = True
                continue
            o, mask = obs[a], (infos.get(a) or {}).get("action_mask")
            if self._obs_dict[k]:
                mask = o.get("action_mask", mask)
                o = o["observation"]
            flat = np.asarray(o, np.float32).reshape(-1)
            self._obs[k, : flat.size] = flat
            n = self._n_actions[k]
            self._avail[k, :n] = True if mask is None else np.asarray(mask).astype(bool)[:n]
            if not self._avail[k].any():  # a mask that forbids everything: allow no-op
                self._avail[k, 0] = True

    def get_obs(self) -> np.ndarray:
        return self._obs.copy()

    def get_state(self) -> np.ndarray:
        if self._has_state:
            return np.asarray(self.env.state(), np.float32).reshape(-1)
        return self._obs.reshape(-1).copy()

    def get_avail_actions(self) -> np.ndarray:
        return self._avail.copy()

    def close(self) -> None:
        self.env.close()


def _find_limit(env: Any) -> int:
    """The env's own episode length where it exposes one (MPE's ``max_cycles``)."""
    for obj in (env, getattr(env, "unwrapped", None), getattr(env, "aec_env", None)):
        for name in ("max_cycles", "max_steps", "episode_limit"):
            value = getattr(obj, name, None) if obj is not None else None
            if isinstance(value, int) and value > 0:
                return value
    return 0


class _PettingZooFactory:
    """Picklable ``seed -> PettingZooMultiAgentEnv`` for worker processes."""

    def __init__(self, env_fn: str, env_kwargs: dict, reward_reduce: str, episode_limit: int):
        self.args = (env_fn, env_kwargs, reward_reduce, episode_limit)

    def __call__(self, seed: int) -> PettingZooMultiAgentEnv:
        env_fn, env_kwargs, reduce, limit = self.args
        return PettingZooMultiAgentEnv(env_fn, env_kwargs, seed, reduce, limit)


@register(
    "pettingzoo",
    "any PettingZoo parallel env with discrete actions, from env_fn='module:function'",
)
class PettingZooEnv(MultiAgentEnvVec):
    """``num_envs`` copies of ``env_fn(**env_kwargs)`` (module doc: how dicts map to tensors).

    ``env_fn`` is ``"module:function"``; a module that holds ``parallel_env`` works too
    (``"mpe2:simple_spread_v3"``). ``episode_limit`` 0 reads the env's ``max_cycles``.
    """

    def __init__(
        self,
        num_envs: int = 1,
        seed: int = 0,
        device: str | torch.device = "cpu",
        *,
        env_fn: str = "mpe2:simple_spread_v3",
        env_kwargs: dict | None = None,
        reward_reduce: str = "sum",
        episode_limit: int = 0,
        processes: bool = False,
        step_timeout: float = 60.0,
    ):
        if env_kwargs is not None and not isinstance(env_kwargs, dict):
            raise ValueError(f"parameter env_kwargs must be a mapping, got {env_kwargs!r}")
        check_int("episode_limit", episode_limit, 0)
        factory = _PettingZooFactory(
            str(env_fn), dict(env_kwargs or {}), reward_reduce, episode_limit
        )
        self.env_fn = env_fn
        super().__init__(
            num_envs,
            seed,
            device,
            factory=factory,
            processes=processes,
            step_timeout=step_timeout,
            episode_limit=episode_limit or None,
        )
