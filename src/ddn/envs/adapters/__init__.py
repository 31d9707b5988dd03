"""Other libraries' environments as ddn ``VecEnv`` s: PyMARL/EPyMARL, SMAC, PettingZoo.

- :mod:`~ddn.envs.adapters.pool`: ``B`` copies of a PyMARL-style env stepped in
  lock-step, restarted and their episodes dropped when their game fails;
- :mod:`~ddn.envs.adapters.worker`: one copy behind a handle (its worker process);
- :mod:`~ddn.envs.adapters.factories`: ``"module:callable"`` targets to build copies from;
- :mod:`~ddn.envs.adapters.pymarl`, :mod:`~ddn.envs.adapters.smac`,
  :mod:`~ddn.envs.adapters.pettingzoo`: the registered ``"pymarl"``, ``"smac"`` and
  ``"pettingzoo"`` environments (none imports its library before it is built).
"""

from ddn.envs.adapters import pettingzoo, pymarl, smac  # noqa: F401  (registration side effect)
