"""Vectorized multi-agent environments: ``ddn.envs.make(name, num_envs, seed, device, **params)``.

Layout: the protocol (:mod:`~ddn.envs.base`), the registry (:mod:`~ddn.envs.registry`)
and the errors environments raise (:mod:`~ddn.envs.errors`) here; ddn's own
environments in :mod:`~ddn.envs.native`; SMAX in :mod:`~ddn.envs.smax`; other
libraries' environments in :mod:`~ddn.envs.adapters`.

Importing this package registers the built-in environments (none of them imports its
optional dependency, jax, smac or pettingzoo, before it is built).
"""

from ddn.envs import adapters, native, smax  # noqa: F401  (registration side effect)
from ddn.envs.base import EnvOutput, EnvSpec, VecEnv
from ddn.envs.errors import EnvError, MissingExtraError, WorkerError
from ddn.envs.registry import get_entry, list_envs, make, register

__all__ = [
    "EnvError",
    "EnvOutput",
    "EnvSpec",
    "MissingExtraError",
    "VecEnv",
    "WorkerError",
    "get_entry",
    "list_envs",
    "make",
    "register",
]
