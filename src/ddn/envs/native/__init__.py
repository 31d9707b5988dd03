"""ddn's own environments, written for the batched protocol (no external simulator).

"Native" as opposed to :mod:`ddn.envs.smax` (JaxMARL's simulator in JAX) and
:mod:`ddn.envs.adapters` (other libraries' environments in worker processes):
Predator-Prey (the paper's, stepped by a compiled kernel) and the matrix game.
Importing this package registers ``"predator_prey"`` and ``"matrix"``.
"""

from ddn.envs.native import matrix, predator_prey  # noqa: F401  (registration side effect)
