"""Vectorized multi-agent environments: ``ddn.envs.make(name, num_envs, seed, device, **params)``.

Importing this package registers the built-in environments.
"""

from ddn.envs import matrix, pettingzoo, predator_prey, smac, smax, workers  # noqa: F401  (registration side effect)
from ddn.envs.base import EnvOutput, EnvSpec, VecEnv
from ddn.envs.registry import get_entry, list_envs, make, register

__all__ = ["EnvOutput", "EnvSpec", "VecEnv", "get_entry", "list_envs", "make", "register"]
