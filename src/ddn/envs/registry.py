"""Names -> environment constructors, with errors that list what is valid."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ddn.envs.base import VecEnv
from ddn.suggest import suggest

_PROTOCOL_ARGS = ("num_envs", "seed", "device")


# (lowest, highest, what they mean) of an episode's return, from the environment's parameters.
ScoreRange = Callable[[Mapping[str, Any]], tuple[float, float, str]]


@dataclass(frozen=True)
class EnvEntry:
    name: str
    constructor: Callable[..., VecEnv]
    description: str
    # The return range ``ddn report`` normalises scores by when no --score-range is given
    # (None: the range the runs themselves reached).
    score_range: ScoreRange | None = None

    def params(self) -> dict[str, Any]:
        """Environment parameters and their defaults (protocol args excluded)."""
        sig = inspect.signature(self.constructor)
        return {
            k: p.default
            for k, p in sig.parameters.items()
            if k not in _PROTOCOL_ARGS and p.kind is p.KEYWORD_ONLY
        }

    def return_range(self, params: Mapping[str, Any]) -> tuple[float, float, str] | None:
        """The declared score range under ``params`` (a run's ``env`` config; defaults fill
        the rest), or None where the environment declares none."""
        if self.score_range is None:
            return None
        return self.score_range({**self.params(), **params})


_REGISTRY: dict[str, EnvEntry] = {}


def register(
    name: str, description: str, score_range: ScoreRange | None = None
) -> Callable[[Callable[..., VecEnv]], Callable]:
    """Class decorator: ``@register("my_env", "one line")`` makes it ``ddn.envs.make``-able.

    Parameters are the constructor's keyword-only arguments after
    ``num_envs, seed, device``. ``score_range``, given the parameters, says the
    (lowest, highest) episode return a report normalises by and what they mean.
    """

    def deco(constructor: Callable[..., VecEnv]) -> Callable[..., VecEnv]:
        if name in _REGISTRY:
            raise ValueError(f"environment {name!r} is registered twice")
        _REGISTRY[name] = EnvEntry(name, constructor, description, score_range)
        return constructor

    return deco


def get_entry(name: str) -> EnvEntry:
    if name not in _REGISTRY:
        valid = sorted(_REGISTRY)
        raise ValueError(
            f"unknown environment {name!r}.{suggest(name, valid)} Valid environments: "
            f"{', '.join(valid)} (see `ddn list`)"
        )
    return _REGISTRY[name]


def list_envs() -> dict[str, EnvEntry]:
    return dict(sorted(_REGISTRY.items()))


def make(
    name: str,
    num_envs: int = 1,
    seed: int = 0,
    device: str | torch.device = "cpu",
    **params: Any,
) -> VecEnv:
    """Build ``num_envs`` copies of environment ``name``; ``params`` override its defaults."""
    entry = get_entry(name)
    valid = entry.params()
    unknown = [k for k in params if k not in valid]
    if unknown:
        k = unknown[0]
        raise ValueError(
            f"unknown parameter {k!r} for environment {name!r}.{suggest(k, list(valid))} "
            f"Valid parameters: {', '.join(f'{p}={d!r}' for p, d in valid.items())}"
        )
    return entry.constructor(num_envs=num_envs, seed=seed, device=device, **params)


def check_int(name: str, value: Any, minimum: int) -> int:
    """Validate an integer parameter; shared by environments for uniform messages."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"parameter {name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"parameter {name} must be >= {minimum}, got {value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"parameter {name} must be true or false, got {value!r}")
    return value


def check_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"parameter {name} must be a number, got {value!r}")
    return float(value)
