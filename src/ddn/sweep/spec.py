"""The sweep file: its YAML schema, its expansion into runs, and their validation.

Sweep file keys::

    name: tiny_matrix              # default: the file's stem; output sweeps/<name>
    algos: [vdn, qmix]
    envs:                          # names, or mappings with maps / per-env overrides
      - matrix
      - {env: smax, maps: [3s_vs_5z, MMM2], overrides: [t_max=2000000]}
    seeds: [0, 1]                  # or an int N: seeds 0..N-1
    t_max: 2048                    # optional, for every run
    overrides: [test_interval=512] # --set strings for every run
    variants:                      # optional named variants: one run per variant
      full: []
      raw_state: [personalized_state=false]
    threads: 1                     # torch threads per run (= Ray num_cpus)
    gpus: 0                        # GPUs per run for Ray (fractions allowed)
    device: cpu                    # optional, as ddn train --device

Run folders are ``<env>-<map|default>-<algo>[-<variant>]-<seed>``. Seeds are the outer
loop, so a sweep stopped half way has a first seed of every setting.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from ddn.config import Config, ConfigError, load_yaml_mapping, parse_override, resolve

TOP_KEYS = frozenset(
    {"name", "algos", "envs", "seeds", "t_max", "overrides", "variants", "threads", "gpus",
     "device", "description"}
)  # fmt: skip
ENV_KEYS = frozenset({"env", "maps", "overrides"})
# Characters kept in a run folder's name; any other becomes "_" (a map or variant name
# must not make a path separator or a shell metacharacter).
_NAME_CHARS = "-._=+"


@dataclass
class RunSpec:
    """One run of a sweep: what ``ddn train`` would be given, and where it writes."""

    name: str
    env: str
    map_name: str | None
    algo: str
    seed: int
    variant: str | None
    overrides: list[str]
    t_max: int | None
    device: str | None
    threads: int = 1
    gpus: float = 0.0

    def config(self) -> Config:
        return resolve(
            self.env,
            self.algo,
            self.map_name,
            self.overrides,
            seed=self.seed,
            t_max=self.t_max,
            device=self.device,
            threads=self.threads,
        )


@dataclass
class Sweep:
    """A sweep file, expanded: every run in launch order, and what each run holds."""

    name: str
    runs: list[RunSpec]
    threads: int
    gpus: float
    source: Path


def _packaged_root() -> Path:
    return Path(str(resources.files("ddn") / "configs" / "sweeps"))


def packaged_sweeps() -> list[str]:
    """Names accepted by ``ddn sweep NAME`` (``paper/table2``, ``tiny_matrix``, ...)."""
    root = _packaged_root()
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def find_sweep_file(name: str | Path) -> Path:
    """A path as given, else a sweep file shipped in ``ddn/configs/sweeps``."""
    path = Path(name)
    if path.is_file():
        return path
    root = _packaged_root()
    for candidate in (root / f"{name}.yaml", root / str(name)):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no sweep file {str(name)!r} (neither a file nor a packaged sweep); packaged: "
        + ", ".join(packaged_sweeps())
    )


def _list_of_str(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{what} must be a list of key=value strings, got {value!r}")
    for item in value:
        parse_override(item)  # a malformed item fails here, naming the fix
    return list(value)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in _NAME_CHARS else "_" for c in text)


def _seeds(data: dict[str, Any], path: Path) -> list[int]:
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(seeds))
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{path}: seeds must be a list of integers or a count")
    return seeds


def _resources(data: dict[str, Any], path: Path) -> tuple[int, float]:
    threads, gpus = data.get("threads", 1), data.get("gpus", 0.0)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"{path}: threads must be an integer >= 1, got {threads!r}")
    if isinstance(gpus, bool) or not isinstance(gpus, int | float) or gpus < 0:
        raise ConfigError(f"{path}: gpus must be a number >= 0 (a fraction shares one GPU), "
                          f"got {gpus!r}")  # fmt: skip
    return threads, float(gpus)


def _env_entries(data: dict[str, Any], path: Path) -> list[Any]:
    envs = data.get("envs")
    if isinstance(envs, str | dict):
        envs = [envs]
    if not envs:
        raise ConfigError(f"{path}: envs must list at least one environment")
    return list(envs)


def _targets(envs: list[Any], path: Path) -> list[tuple[str, str | None, list[str]]]:
    """(env, map or None, the env's own overrides) of every ``envs`` item and map."""
    targets: list[tuple[str, str | None, list[str]]] = []
    for entry in envs:
        if isinstance(entry, str):
            entry = {"env": entry}
        if not isinstance(entry, dict) or "env" not in entry or set(entry) - ENV_KEYS:
            raise ConfigError(
                f"{path}: each envs item is a name or a mapping with env, maps, overrides; "
                f"got {entry!r}"
            )
        maps = entry.get("maps") or [None]
        if isinstance(maps, str):
            maps = [maps]
        env_over = _list_of_str(entry.get("overrides"), f"overrides of {entry['env']}")
        targets += [(str(entry["env"]), m, env_over) for m in maps]
    return targets


def load_sweep(path: str | Path) -> Sweep:
    """Read and expand a sweep file; every run's config is resolved (validated) here, so a
    typo stops the sweep before anything starts."""
    path = find_sweep_file(path)
    data = load_yaml_mapping(path, "sweep keys (algos, envs, seeds, ...)")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {sorted(unknown)}; valid: {', '.join(sorted(TOP_KEYS))}"
        )
    algos = data.get("algos")
    if isinstance(algos, str):
        algos = [algos]
    if not algos or not all(isinstance(a, str) for a in algos):
        raise ConfigError(f"{path}: algos must be a non-empty list of algorithm names")
    seeds = _seeds(data, path)
    envs = _env_entries(data, path)
    common = _list_of_str(data.get("overrides"), "overrides")
    variants_raw = data.get("variants") or {}
    if not isinstance(variants_raw, dict):
        raise ConfigError(f"{path}: variants must map names to lists of key=value strings")
    variants: list[tuple[str | None, list[str]]] = [
        (str(k), _list_of_str(v, f"variants.{k}")) for k, v in variants_raw.items()
    ] or [(None, [])]
    threads, gpus = _resources(data, path)
    targets = _targets(envs, path)

    runs: list[RunSpec] = []
    for seed in seeds:
        for env, map_name, env_over in targets:
            for variant, var_over in variants:
                for algo in algos:
                    parts = [env, map_name or "default", algo]
                    if variant is not None:
                        parts.append(variant)
                    parts.append(str(seed))
                    runs.append(
                        RunSpec(
                            name=_safe("-".join(parts)),
                            env=env,
                            map_name=map_name,
                            algo=algo,
                            seed=seed,
                            variant=variant,
                            overrides=[*common, *env_over, *var_over],
                            t_max=data.get("t_max"),
                            device=data.get("device"),
                            threads=threads,
                            gpus=gpus,
                        )
                    )
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: two runs map to one folder name; make names distinct")
    for run in runs:
        try:
            run.config()
        except ConfigError as exc:
            raise ConfigError(f"{path}: run {run.name}: {exc}") from None
    return Sweep(str(data.get("name") or path.stem), runs, threads, gpus, path)


def select_runs(sweep: Sweep, patterns: list[str]) -> Sweep:
    """The sweep cut to the runs whose names match one of ``patterns`` (shell patterns:
    ``'*-vdn-2'``), in the file's order; a pattern that matches none is an error."""
    names = [r.name for r in sweep.runs]
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            raise ConfigError(
                f"--runs {pattern!r} matches no run of sweep {sweep.name!r}; its runs: "
                f"{', '.join(names)}"
            )
    runs = [r for r in sweep.runs if any(fnmatch.fnmatchcase(r.name, p) for p in patterns)]
    return replace(sweep, runs=runs)


def with_threads(sweep: Sweep, threads: int) -> Sweep:
    """The sweep with every run at ``threads`` torch threads (``ddn sweep --threads``).
    Threads say how a run executes, not what it computes (``EXECUTION_KEYS``): runs
    started at another count resume at this one."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"--threads must be an integer >= 1, got {threads!r}")
    return replace(sweep, threads=threads, runs=[replace(r, threads=threads) for r in sweep.runs])
