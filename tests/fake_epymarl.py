"""EPyMARL-v2 ``MultiAgentEnv`` stand-ins over ``fake_sc2``'s battle, with EPyMARL 2's
exact signatures (``src/envs/multiagentenv.py`` there)::

    reset(seed=None, options=None) -> (obs, info)
    step(actions) -> (obs, reward, terminated, truncated, info)

``GymmaLike`` reports a time limit as gymnasium does: ``truncated=True`` with
``terminated=False`` (EPyMARL's gymma wrapper also sets ``info["episode_limit"]``; this
one does not, so the flag alone must do). ``common_reward=False`` returns one reward
per agent, as EPyMARL's gymma does then. ``raise_in="step"`` / ``"reset"`` raises a bug
of the env's own (KeyError) at step ``raise_at`` / on the first reset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fake_sc2 import StarCraft2Env


class GymmaLike:
    def __init__(
        self,
        map_name: str = "3m",
        seed: int | None = None,
        episode_limit: int = 12,
        common_reward: bool = True,
        raise_in: str | None = None,
        raise_at: int = 2,
        **game_kwargs: Any,
    ):
        self._game = StarCraft2Env(map_name, seed, episode_limit, **game_kwargs)
        self.n_agents = self._game.n_agents
        self.episode_limit = episode_limit
        self.common_reward = common_reward
        self.raise_in, self.raise_at = raise_in, raise_at
        self._t = 0

    def get_env_info(self) -> dict[str, Any]:
        return self._game.get_env_info()

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[list, dict]:
        if self.raise_in == "reset":
            raise KeyError("injected bug in reset")
        self._t = 0
        obs, _ = self._game.reset()
        return obs, {}

    def step(self, actions: list[int]) -> tuple[list, Any, bool, bool, dict]:
        self._t += 1
        if self.raise_in == "step" and self._t == self.raise_at:
            raise KeyError("injected bug in step")
        reward, terminated, info = self._game.step(actions)
        truncated = bool(info.pop("episode_limit", False))
        if truncated:
            terminated = False
        if not self.common_reward:
            reward = [reward / self.n_agents] * self.n_agents
        return self.get_obs(), reward, terminated, truncated, info

    def get_obs(self) -> list[np.ndarray]:
        return self._game.get_obs()

    def get_state(self) -> np.ndarray:
        return self._game.get_state()

    def get_avail_actions(self) -> list[list[int]]:
        return self._game.get_avail_actions()

    def close(self) -> None:
        self._game.close()
