"""SMAC, the real StarCraft II micromanagement benchmark, as a ddn :class:`VecEnv`.

``--env smac --map NAME`` runs ``B`` copies of ``smac.env.StarCraft2Env`` (oxwhirl's
SMAC, the paper's benchmark) through :class:`~ddn.envs.adapters.pool.MultiAgentEnvVec`: one
worker process per game, stepped in lock-step, a crashed or hung game killed and
restarted and its episode dropped (``env.restarts`` / ``env.dropped_episodes``).

Nothing imports ``smac`` until an ``SMAC`` is built; then this process checks that the
right package and StarCraft II are there (one clear line otherwise) and that the map
exists (SMAC's own map registry, with a suggestion for typos), and each worker builds
its own ``StarCraft2Env``. StarCraft II itself starts at the first ``reset()``.

Caveat of the package name: PyPI's ``smac`` is SMAC3, a hyper-parameter optimiser. The
StarCraft Multi-Agent Challenge installs from GitHub (``docs/adapters.md``).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import torch

from ddn.envs.adapters.factories import ImportFactory
from ddn.envs.adapters.pool import MultiAgentEnvVec
from ddn.envs.errors import MissingExtraError
from ddn.envs.registry import check_float, check_int, register
from ddn.suggest import suggest

#: What the workers build; a module attribute so tests can point it at a fake.
SMAC_TARGET = "smac.env:StarCraft2Env"

#: SMAC's ``difficulty`` codes of StarCraft II's built-in AI: "1" (very easy) to "7"
#: (very hard, the paper's and PyMARL's), "8"-"9" and "A" the cheating levels.
_DIFFICULTIES = frozenset({*(str(d) for d in range(1, 10)), "A"})

#: The maps of the paper's SMAC experiments (any other SMAC map works too).
PAPER_MAPS: tuple[str, ...] = ("3s5z", "2s_vs_1sc", "3s_vs_5z", "5m_vs_6m", "3s5z_vs_3s6z", "MMM2")

INSTALL_HINT = (
    "SMAC needs the optional extra: pip install 'ddn[smac]' "
    "(or pip install git+https://github.com/oxwhirl/smac.git), plus StarCraft II "
    "(Linux: the 4.10 package from https://github.com/Blizzard/s2client-proto#downloads, "
    "unzipped, with the SMAC maps copied into its Maps/SMAC_Maps) and SC2PATH pointing at it"
)


def _preflight(map_name: str) -> None:
    """Fail here, in one line, on a missing package, game or map (not in B workers)."""
    try:
        smac = importlib.import_module("smac")
    except ImportError as exc:
        raise MissingExtraError(f"{INSTALL_HINT} ({exc})") from exc
    try:
        importlib.import_module("smac.env")
    except ImportError as exc:
        if hasattr(smac, "Scenario") or hasattr(smac, "HyperparameterOptimizationFacade"):
            raise MissingExtraError(
                "the installed 'smac' is SMAC3 (PyPI's hyper-parameter optimiser), not the "
                "StarCraft Multi-Agent Challenge: pip uninstall smac, then " + INSTALL_HINT
            ) from exc
        raise MissingExtraError(f"{INSTALL_HINT} ({exc})") from exc
    sc2 = os.environ.get("SC2PATH") or os.path.expanduser("~/StarCraftII")
    if not os.path.isdir(sc2):
        where = "SC2PATH" if os.environ.get("SC2PATH") else "SC2PATH is unset and ~/StarCraftII"
        raise MissingExtraError(f"StarCraft II not found ({where}: {sc2}). {INSTALL_HINT}")
    try:
        maps = importlib.import_module("smac.env.starcraft2.maps")
        registry = list(maps.get_smac_map_registry())
    except (ImportError, AttributeError):  # an older/newer layout: let SMAC validate
        return
    if map_name not in registry:
        raise ValueError(
            f"unknown SMAC map {map_name!r}.{suggest(map_name, registry)} "
            f"Valid maps: {', '.join(sorted(registry))}"
        )


@register(
    "smac",
    "StarCraft II battles through oxwhirl's smac package (needs StarCraft II); --map picks the map",
)
class SMAC(MultiAgentEnvVec):
    """``num_envs`` StarCraft II battles of ``map_name``, one worker process each.

    Observations, state, available actions, rewards and the episode limit are SMAC's
    own (PyMARL's defaults below); ``won`` is ``info["battle_won"]``, a time-out
    (``info["episode_limit"]``) is ``truncated``. ``smac_kwargs`` passes any other
    ``StarCraft2Env`` argument (``obs_pathing_grid``, ``game_version``, ...).
    ``step_timeout`` seconds without an answer count as a hung game; ``reset_timeout``
    covers the first reset, which launches StarCraft II.
    """

    def __init__(
        self,
        num_envs: int = 1,
        seed: int = 0,
        device: str | torch.device = "cpu",
        *,
        map_name: str = "3m",
        difficulty: str = "7",
        step_mul: int = 8,
        reward_only_positive: bool = True,
        reward_scale_rate: float = 20.0,
        obs_last_action: bool = False,
        state_last_action: bool = True,
        obs_instead_of_state: bool = False,
        replay_dir: str = "",
        smac_kwargs: dict | None = None,
        step_timeout: float = 60.0,
        reset_timeout: float = 600.0,
        max_restarts: int = 1000,
    ):
        if not isinstance(map_name, str) or not map_name:
            raise ValueError(f"parameter map_name must be a SMAC map name, got {map_name!r}")
        if smac_kwargs is not None and not isinstance(smac_kwargs, dict):
            raise ValueError(f"parameter smac_kwargs must be a mapping, got {smac_kwargs!r}")
        difficulty = str(difficulty)
        if difficulty not in _DIFFICULTIES:
            raise ValueError(f"parameter difficulty must be '1'..'9' or 'A', got {difficulty!r}")
        kwargs: dict[str, Any] = {
            "map_name": map_name,
            "difficulty": difficulty,
            "step_mul": check_int("step_mul", step_mul, 1),
            "reward_only_positive": bool(reward_only_positive),
            "reward_scale_rate": check_float("reward_scale_rate", reward_scale_rate),
            "obs_last_action": bool(obs_last_action),
            "state_last_action": bool(state_last_action),
            "obs_instead_of_state": bool(obs_instead_of_state),
            "replay_dir": str(replay_dir),
            **(smac_kwargs or {}),
        }
        _preflight(map_name)
        self.map_name = map_name
        super().__init__(
            num_envs,
            seed,
            device,
            factory=ImportFactory(SMAC_TARGET, kwargs),
            processes=True,
            step_timeout=step_timeout,
            reset_timeout=reset_timeout,
            max_restarts=max_restarts,
            has_win_condition=True,
            name=f"SMAC {map_name} ({SMAC_TARGET})",
        )
