"""``--env pymarl``: any PyMARL or EPyMARL ``MultiAgentEnv`` from a ``module:callable``."""

from __future__ import annotations

import os
import sys

import torch

from ddn.envs.adapters.factories import ImportFactory, resolve_target
from ddn.envs.adapters.pool import MultiAgentEnvVec
from ddn.envs.registry import register


@register(
    "pymarl",
    "any PyMARL or EPyMARL (v1 or v2 API) MultiAgentEnv from a 'module:callable' factory",
)
class PyMARLEnv(MultiAgentEnvVec):
    """Bring your own PyMARL or EPyMARL ``MultiAgentEnv``:
    ``factory(**factory_kwargs, seed=...)``.

    ``api`` is the env's ``step``/``reset`` API: ``v1`` (PyMARL, SMAC), ``v2`` (EPyMARL
    >= 2: gymma, SMACv2, VMAS wrappers) or ``auto`` (from what ``step`` returns).
    ``python_path`` entries (e.g. a PyMARL checkout's ``src``) are made importable in the
    workers and here; ``seed_arg`` names the constructor's seed argument ("" for none).
    ``has_win_condition`` makes the logs report ``info["battle_won"]`` as a win rate.
    """

    def __init__(
        self,
        num_envs: int = 1,
        seed: int = 0,
        device: str | torch.device = "cpu",
        *,
        factory: str = "",
        factory_kwargs: dict | None = None,
        seed_arg: str = "seed",
        python_path: list | None = None,
        processes: bool = True,
        step_timeout: float = 60.0,
        reset_timeout: float = 600.0,
        max_restarts: int = 1000,
        has_win_condition: bool = False,
        api: str = "auto",
    ):
        if not factory:
            raise ValueError(
                "environment 'pymarl' needs env.factory='module:callable' (a function or "
                "class returning a PyMARL MultiAgentEnv), e.g. --set env.factory=my_envs:make"
            )
        if factory_kwargs is not None and not isinstance(factory_kwargs, dict):
            raise ValueError(f"parameter factory_kwargs must be a mapping, got {factory_kwargs!r}")
        paths = tuple(os.path.abspath(p) for p in (python_path or []))
        made = ImportFactory(str(factory), dict(factory_kwargs or {}), seed_arg or None, paths)
        for p in reversed(paths):
            if p not in sys.path:
                sys.path.insert(0, p)
        resolve_target(made.target)  # a typo is reported here, before any worker starts
        super().__init__(
            num_envs,
            seed,
            device,
            factory=made,
            processes=processes,
            step_timeout=step_timeout,
            reset_timeout=reset_timeout,
            max_restarts=max_restarts,
            has_win_condition=has_win_condition,
            api=api,
        )
