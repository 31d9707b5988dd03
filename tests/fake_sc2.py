"""A stand-in for SMAC's ``StarCraft2Env`` with the exact PyMARL interface, no game.

Used by ``tests/test_workers.py`` because StarCraft II cannot run here. Spawned worker
processes import it by name (``fake_sc2:StarCraft2Env``); pytest puts ``tests/`` on
``sys.path`` and ``spawn`` hands that path to the children.

Dynamics (deterministic given ``seed`` and the actions): ``n`` marines face ``n``
enemies with 3 health each. Action 0 is no-op (the only action of a dead ally), 1 stop,
``2 + j`` attacks enemy ``j`` (available while it lives). Every attack removes 1
health; ally ``k`` dies at a seed-drawn step. Reward is the health removed this step
(+10 on a win). The battle ends when the enemies or the allies are all dead (``won``
if the enemies), or after ``episode_limit`` steps with ``info["episode_limit"]``.

Failure injection, each fired once per ``{marker}.{kind}`` file (atomic ``O_EXCL`` create, so
exactly one copy of a vectorized run fails): ``crash_at`` kills the process at that
step, ``hang_at`` sleeps far past any time-out, ``raise_at`` raises a bug of the env's
own code (RuntimeError), ``game_error_at`` a lost connection to the game (what SMAC's
client raises when StarCraft II dies: ConnectionError),
``self_restart_at`` imitates SMAC's own restart after a protocol error (``force_restarts``
grows, ``(0, True, {})`` is returned).

``save_replay()`` writes ``<replay_dir>/<replay_prefix or map>_<pid>_<n>.SC2Replay`` (SMAC saves
into ``replay_dir`` when it is absolute) holding the number of episodes this game has
played, so a test can see which folder, how often and after which episodes it was
called.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np


def _fire_once(marker: str) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class StarCraft2Env:
    """The subset of ``smac.env.StarCraft2Env`` that PyMARL runners call."""

    def __init__(
        self,
        map_name: str = "3m",
        seed: int | None = None,
        episode_limit: int = 12,
        crash_at: int | None = None,
        hang_at: int | None = None,
        raise_at: int | None = None,
        game_error_at: int | None = None,
        self_restart_at: int | None = None,
        marker: str | None = None,
        **smac_kwargs: Any,
    ):
        if map_name not in ("3m", "5m"):
            raise ValueError(f"Map {map_name} is not in the fake registry")
        self.n_agents = self.n_enemies = int(map_name[0])
        self.episode_limit = episode_limit
        self.rng = np.random.default_rng(seed)
        self.crash_at, self.hang_at, self.raise_at = crash_at, hang_at, raise_at
        self.game_error_at = game_error_at
        self.self_restart_at, self.marker = self_restart_at, marker
        self.force_restarts = 0
        self.map_name = map_name
        self.episodes = 0
        self.replays = 0
        self.smac_kwargs = smac_kwargs
        self.closed = False
        self._t = 0

    def get_env_info(self) -> dict[str, Any]:
        return {
            "state_shape": 2 * self.n_agents + self.n_enemies + 1,
            "obs_shape": self.n_enemies + 2,
            "n_actions": 2 + self.n_enemies,
            "n_agents": self.n_agents,
            "episode_limit": self.episode_limit,
        }

    def reset(self) -> tuple[list[np.ndarray], np.ndarray]:
        self.episodes += 1
        self._t = 0
        self.health = np.full(self.n_enemies, 3.0)
        self.alive = np.ones(self.n_agents, bool)
        self.death_step = self.rng.integers(3, 3 * self.episode_limit, self.n_agents)
        self.last = np.zeros(self.n_agents)
        return self.get_obs(), self.get_state()

    def step(self, actions: list[int]) -> tuple[float, bool, dict[str, Any]]:
        self._t += 1
        for at, what in (
            (self.crash_at, "crash"),
            (self.hang_at, "hang"),
            (self.raise_at, "raise"),
            (self.game_error_at, "game_error"),
            (self.self_restart_at, "restart"),
        ):
            if at == self._t and self.marker and _fire_once(f"{self.marker}.{what}"):
                if what == "crash":
                    os._exit(3)
                if what == "hang":
                    time.sleep(3600)
                if what == "raise":
                    raise RuntimeError("injected bug in the env")
                if what == "game_error":
                    raise ConnectionError("injected: connection to the game lost")
                self.force_restarts += 1
                return 0, True, {}
        before = self.health.sum()
        for k, a in enumerate(actions):  # like SMAC: every action is checked first
            assert self.get_avail_agent_actions(k)[a], f"agent {k}: action {a} unavailable"
        for a in actions:
            if a >= 2:
                self.health[a - 2] = max(0.0, self.health[a - 2] - 1.0)
        self.last = np.asarray(actions, float)
        self.alive &= self.death_step > self._t
        reward = float(before - self.health.sum())
        won = bool((self.health == 0).all())
        lost = not self.alive.any()
        info: dict[str, Any] = {"battle_won": won, "dead_allies": int((~self.alive).sum())}
        if won:
            reward += 10.0
        terminated = won or lost
        if not terminated and self._t >= self.episode_limit:
            terminated = True
            info["episode_limit"] = True
        return reward, terminated, info

    def get_obs(self) -> list[np.ndarray]:
        return [self.get_obs_agent(k) for k in range(self.n_agents)]

    def get_obs_agent(self, k: int) -> np.ndarray:
        if not self.alive[k]:
            return np.zeros(self.n_enemies + 2, np.float32)
        return np.concatenate([self.health / 3.0, [k, self._t / self.episode_limit]]).astype(
            np.float32
        )

    def get_state(self) -> np.ndarray:
        return np.concatenate([self.alive, self.last, self.health, [self._t]]).astype(np.float32)

    def get_avail_agent_actions(self, k: int) -> list[int]:
        if not self.alive[k]:
            return [1] + [0] * (1 + self.n_enemies)
        return [0, 1] + [int(h > 0) for h in self.health]

    def get_avail_actions(self) -> list[list[int]]:
        return [self.get_avail_agent_actions(k) for k in range(self.n_agents)]

    def save_replay(self) -> None:
        folder = Path(self.smac_kwargs.get("replay_dir") or "Replays")
        prefix = self.smac_kwargs.get("replay_prefix") or self.map_name
        folder.mkdir(parents=True, exist_ok=True)
        self.replays += 1
        name = f"{prefix}_{os.getpid()}_{self.replays}.SC2Replay"  # SMAC's: a timestamp
        (folder / name).write_text(f"episodes={self.episodes}\n")

    def close(self) -> None:
        self.closed = True
