"""SMAX, JaxMARL's SMAC in JAX: the ddn wrapper, its compiled step and ddn's unit extensions.

- :mod:`~ddn.envs.smax.env`: the ``"smax"`` :class:`~ddn.envs.base.VecEnv` (jax-free
  until built) and its map list;
- :mod:`~ddn.envs.smax.compiled`: the ``B`` battles as one ``vmap``-ed, ``jit``-ed step;
- :mod:`~ddn.envs.smax.units`, :mod:`~ddn.envs.smax.engine`, :mod:`~ddn.envs.smax.enemy`:
  the medivac and spine crawler (numbers and maps), the engine rules they need, and the
  scripted enemy that knows them.

Importing this package registers ``"smax"`` without importing jax; only ``env`` and
``compiled`` are imported here (the other three import jax and jaxmarl).
"""

from ddn.envs.smax.compiled import INSTALL_HINT
from ddn.envs.smax.env import (
    DEFAULT_EPISODE_LIMIT,
    DEFAULT_REWARD_SCALE,
    SMAX,
    SMAX_MAPS,
    UNITS_MAP_EPISODE_LIMITS,
    default_episode_limit,
)

__all__ = [
    "DEFAULT_EPISODE_LIMIT",
    "DEFAULT_REWARD_SCALE",
    "INSTALL_HINT",
    "SMAX",
    "SMAX_MAPS",
    "UNITS_MAP_EPISODE_LIMITS",
    "default_episode_limit",
]
