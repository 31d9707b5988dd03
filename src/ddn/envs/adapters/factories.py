"""Environment factories: ``"module:callable"`` targets, imported where the env is built.

Worker processes import the target themselves, so only a small picklable
:class:`ImportFactory` crosses the process boundary.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from dataclasses import dataclass, field
from typing import Any


def resolve_target(target: str, attr_fallback: str | None = None) -> Any:
    """``"package.module:attr.sub"`` -> the object, with errors that say what to write.

    ``attr_fallback`` lets a target name a module that holds the callable (PettingZoo's
    ``mpe2:simple_spread_v3`` names a module whose ``parallel_env`` is meant).
    """
    if not isinstance(target, str) or target.count(":") != 1:
        raise ValueError(
            f"expected 'module:callable' (e.g. 'mpe2:simple_spread_v3'), got {target!r}"
        )
    module_name, attr_path = target.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} for {target!r}: {exc}") from exc
    for part in attr_path.split("."):
        if not hasattr(obj, part) and hasattr(obj, "__path__"):  # a submodule not yet loaded
            with contextlib.suppress(ImportError):
                importlib.import_module(f"{obj.__name__}.{part}")
        if not hasattr(obj, part):
            raise ValueError(f"{module_name!r} has no attribute {attr_path!r} (from {target!r})")
        obj = getattr(obj, part)
    if attr_fallback is not None and not callable(obj) and hasattr(obj, attr_fallback):
        obj = getattr(obj, attr_fallback)
    if not callable(obj):
        raise ValueError(f"{target!r} is not callable")
    return obj


@dataclass(frozen=True)
class ImportFactory:
    """A picklable ``seed -> env``: ``target(**kwargs, <seed_arg>=seed)``.

    Spawned workers import ``target`` themselves, so only this small object crosses
    the process boundary. ``sys_path`` entries are prepended to ``sys.path`` first
    (a PyMARL checkout's ``src`` folder, say).
    """

    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    seed_arg: str | None = "seed"
    sys_path: tuple[str, ...] = ()

    def __call__(self, seed: int) -> Any:
        for p in reversed(self.sys_path):
            if p not in sys.path:
                sys.path.insert(0, p)
        fn = resolve_target(self.target)
        kwargs = dict(self.kwargs)
        if self.seed_arg:
            kwargs[self.seed_arg] = seed
        return fn(**kwargs)
