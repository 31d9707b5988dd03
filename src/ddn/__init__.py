"""ddn: the Double Distillation Network and value-decomposition MARL, vectorized."""

from ddn import envs

__version__ = "0.1.0"
__all__ = ["__version__", "envs"]
