"""Typed, validated run configuration, in sections, with PyMARL's flat key names.

A run's configuration is one :class:`Config`. It is made of typed sections, one per
component: :class:`RunConfig` (what to run), :class:`CollectConfig` (data collection,
replay, exploration), :class:`OptimConfig`, :class:`TDConfig` (the TD target),
:class:`AgentConfig`, :class:`MixerConfig`, :class:`LogConfig`, plus one section per
algorithm that needs its own keys (WQMIX, QTRAN, DDN, ...), declared with the
algorithm in the registry (``ddn/algorithms.py``). Every default lives in these
dataclasses and nowhere else.

Keys keep PyMARL's flat names (``lr``, ``mixing_embed_dim``, ``w``, ``fusion_dim``):
``--set``, the YAML presets and a run's saved ``config.yaml`` use them, so a PyMARL
user's settings and every old run record still read as they are. Flat names are unique
across all sections, and ``cfg.lr`` or ``cfg.fusion_dim`` reads a key wherever it lives;
a component that wants only its own keys takes its section (``cfg.section(DDNConfig)``,
or a common section's type in its signature: a ``Config`` is each common section).

A configuration is assembled from YAML presets shipped in the package and ``--set``
overrides, later wins:

    the dataclass defaults < configs/envs/<env>.yaml < configs/maps/<env>/<map>.yaml
    < configs/algs/<algo>.yaml < --set

Every key and type is checked; a mistake gets one :class:`ConfigError` that names the
valid keys.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from ddn.suggest import suggest

# Where metrics go besides metrics.jsonl (always written): see ddn/trackers.py.
LOGGERS = ("tensorboard", "wandb", "mlflow")
# Seeds feed torch's and numpy's generators (with offsets for the test environments).
MAX_SEED = 2**62


class ConfigError(ValueError):
    """A user-fixable configuration mistake; the message says how to fix it."""


# ---------------------------------------------------------------------- field ranges
# A key's range is declared with its default, so a section (an algorithm's own too) is
# checked without a list kept elsewhere.
def positive(default: Any) -> Any:
    """A key that must be > 0."""
    return field(default=default, metadata={"range": "> 0"})


def non_negative(default: Any) -> Any:
    """A key that must be >= 0."""
    return field(default=default, metadata={"range": ">= 0"})


def fraction(default: float) -> Any:
    """A key that must lie in [0, 1] (probabilities, weights, discounts)."""
    return field(default=default, metadata={"range": "[0, 1]"})


def follows(key: str) -> Any:
    """A positive key that, left unset (null), takes ``key``'s value when the
    configuration is built, so config.yaml records the value used."""
    return field(default=None, metadata={"range": "> 0", "follows": key})


# ---------------------------------------------------------------------- sections
@dataclass
class RunConfig:
    """What to run."""

    env_name: str = "predator_prey"
    map_name: str | None = None
    algo: str = "qmix"
    env: dict[str, Any] = field(default_factory=dict)  # the environment's own parameters
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch's CPU threads; null: the thread policy picks (ddn/threads.py). A run records
    # the count it used, so that a resume uses the same one.
    threads: int | None = None


@dataclass
class CollectConfig:
    """Budget, data collection, replay and exploration."""

    t_max: int = positive(1_000_000)
    batch_size_run: int = positive(8)
    # Gradient updates (each on a fresh sample) after each collection of batch_size_run
    # episodes. PyMARL, and so the paper, makes one update per collected episode:
    # updates_per_iteration = batch_size_run reproduces that (the paper presets do).
    updates_per_iteration: int = positive(1)
    batch_size: int = positive(32)
    buffer_size: int = positive(5000)
    buffer_cpu_only: bool = True
    save_buffer: bool = False
    epsilon_start: float = fraction(1.0)
    epsilon_finish: float = fraction(0.05)
    epsilon_anneal_time: int = non_negative(50_000)


@dataclass
class OptimConfig:
    """The optimiser of the TD learning (the paper's Section B.3: RMSprop, lr 5e-4)."""

    lr: float = positive(5e-4)
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    optim_alpha: float = 0.99
    optim_eps: float = 1e-5
    grad_norm_clip: float = positive(10.0)


@dataclass
class TDConfig:
    """The TD target."""

    gamma: float = fraction(0.99)
    td_lambda: float = fraction(0.0)
    double_q: bool = True
    # False: a time-out ends the return like a termination (JaxMARL's SMAX baselines);
    # True: it bootstraps from the state reached (PyMARL), the right target when the
    # time-out is not part of the task.
    bootstrap_timeout: bool = True
    target_update_interval: int = positive(200)


@dataclass
class AgentConfig:
    """The recurrent agent network."""

    rnn_hidden_dim: int = positive(64)
    obs_last_action: bool = True
    obs_agent_id: bool = True


@dataclass
class MixerConfig:
    """The mixers of the value-decomposition methods."""

    mixing_embed_dim: int = positive(32)
    hypernet_layers: int = positive(2)
    hypernet_embed: int = positive(64)
    n_head: int = positive(4)  # Qatten / QPLEX attention heads
    # QPLEX lambda network depth (1 cannot fit the matrix game).
    adv_hypernet_layers: int = positive(3)


@dataclass
class LogConfig:
    """Logging, evaluation, checkpoints (intervals in environment steps)."""

    test_interval: int = positive(20_000)
    test_nepisode: int = non_negative(32)
    log_interval: int = positive(10_000)
    # Trackers fed the same events as metrics.jsonl: tensorboard, wandb, mlflow.
    loggers: list[str] = field(default_factory=lambda: ["tensorboard"])
    save_model: bool = True
    save_model_interval: int = positive(100_000)
    keep_checkpoints: int = non_negative(3)  # the newest this many stay on disk; 0 keeps all
    # Warn once when a logged mean Q exceeds this many times the largest discounted
    # return the rewards seen so far allow (a run heading for divergence); 0: never.
    runaway_q_factor: float = non_negative(10.0)


# Every run has these, in this order (config.yaml's order too).
COMMON_SECTIONS: tuple[type, ...] = (
    RunConfig, CollectConfig, OptimConfig, TDConfig, AgentConfig, MixerConfig, LogConfig,
)  # fmt: skip

# Algorithm sections, in declaration order, and the section owning each of their keys:
# filled by declare_section, which ddn/algorithms.py's register() calls.
_ALGORITHM_SECTIONS: dict[type, None] = {}
_OWNER: dict[str, type] = {}
_COMMON_KEYS = {f.name: s for s in COMMON_SECTIONS for f in dataclasses.fields(s)}


_S = typing.TypeVar("_S")


def declare_section(section: type) -> None:
    """Make an algorithm section's keys config keys (idempotent). Its key names must be
    new: keys are flat, so a name taken by another section would be ambiguous."""
    if section in _ALGORITHM_SECTIONS:
        return
    if not dataclasses.is_dataclass(section):
        raise TypeError(f"config section {section.__name__} must be a dataclass")
    for f in dataclasses.fields(section):
        other = _COMMON_KEYS.get(f.name) or _OWNER.get(f.name)
        if other is not None:
            raise ValueError(
                f"config key {f.name!r} of {section.__name__} is already {other.__name__}'s; "
                "keys are flat, so choose another name"
            )
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TypeError(f"config key {section.__name__}.{f.name} needs a default")
    _ALGORITHM_SECTIONS[section] = None
    for f in dataclasses.fields(section):
        _OWNER[f.name] = section
        # A property, so that a read of a section's key (per update, in the learners)
        # costs what a plain attribute read does.
        setattr(Config, f.name, _section_key(section, f.name))


def _section_key(section: type, name: str) -> property:
    def get(cfg: Config) -> Any:
        return getattr(cfg._sections[section], name)

    def put(cfg: Config, value: Any) -> None:
        setattr(cfg._sections[section], name, value)

    return property(get, put, doc=f"{section.__name__}.{name}")


def _load_registry() -> None:
    """Import the algorithm registry, which declares the algorithms' sections. Lazy: the
    registry imports the learners, and the learners import this module."""
    import ddn.algorithms  # noqa: F401


def algorithm_sections() -> tuple[type, ...]:
    _load_registry()
    return tuple(_ALGORITHM_SECTIONS)


def sections() -> tuple[type, ...]:
    """Every section, common ones first."""
    return (*COMMON_SECTIONS, *algorithm_sections())


def keys() -> list[str]:
    """Every config key, in config.yaml's order."""
    return [f.name for s in sections() for f in dataclasses.fields(s)]


@dataclass(init=False, repr=False)
class Config(RunConfig, CollectConfig, OptimConfig, TDConfig, AgentConfig, MixerConfig, LogConfig):
    """A run's configuration: the common sections as fields (so ``cfg.lr`` and
    ``dataclasses.replace(cfg, threads=2)`` work as on any dataclass) and one instance
    of each algorithm section. ``Config(**flat)`` takes any key by its flat name; a key
    of an algorithm section is a property that reads and writes through to it
    (``cfg.fusion_dim``)."""

    _sections: dict[type, Any] = field(default_factory=dict)

    def __init__(self, _sections: dict[type, Any] | None = None, **values: Any) -> None:
        for name in _COMMON_KEYS:
            f = self.__dataclass_fields__[name]
            if name in values:
                value = values.pop(name)
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = f.default
            object.__setattr__(self, name, value)
        # A copy of each section: a replaced Config never shares mutable state.
        own = {s: copy.copy(v) for s, v in (_sections or {}).items()}
        for section in algorithm_sections():
            own.setdefault(section, section())
        object.__setattr__(self, "_sections", own)
        for name, value in values.items():
            if name not in _OWNER:
                raise TypeError(f"Config got an unknown key {name!r}")
            setattr(own[_OWNER[name]], name, value)
        for section in sections():
            for f in dataclasses.fields(section):
                source = f.metadata.get("follows")
                if source is not None and getattr(self, f.name) is None:
                    setattr(self, f.name, getattr(self, source))

    def __setattr__(self, name: str, value: Any) -> None:
        # An algorithm key's property writes through to its section; a name that is no
        # key is a mistake, not a new attribute.
        if name in _COMMON_KEYS or name in _OWNER or name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            raise AttributeError(f"Config has no key {name!r}")

    def __repr__(self) -> str:
        return f"Config({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"

    def section(self, kind: type[_S]) -> _S:
        """The section ``kind``: a common one is this Config itself, an algorithm's
        its own instance (``cfg.section(DDNConfig).fusion_dim``)."""
        if kind in COMMON_SECTIONS:
            return typing.cast(_S, self)
        return typing.cast(_S, self._sections[kind])

    def to_dict(self) -> dict[str, Any]:
        """Flat ``{key: value}`` of every section (what config.yaml holds)."""
        flat = {name: copy.deepcopy(getattr(self, name)) for name in _COMMON_KEYS}
        for section in self._sections.values():  # in declaration order
            flat.update(dataclasses.asdict(section))
        return flat


def _hints() -> dict[str, tuple[Any, dataclasses.Field]]:
    """Every key's type hint and field (its range, what it follows)."""
    out = {}
    for section in sections():
        hints = typing.get_type_hints(section)
        for f in dataclasses.fields(section):
            out[f.name] = (hints[f.name], f)
    return out


def _check_type(key: str, value: Any, hint: Any) -> Any:
    """Return ``value`` coerced where lossless (int -> float), else raise ConfigError."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_type(key, value, inner)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, e.g. {key}=[a,b], got {value!r}")
        (inner,) = typing.get_args(hint)
        return [_check_type(key, v, inner) for v in value]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, str):  # "1e6" from YAML 1.1: accept whole numbers
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int):
            # YAML reads 1e6 as a string and 1.0e6 as a float: accept whole floats.
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint} for {key}")  # a bug, not a user error


def from_dict(values: dict[str, Any]) -> Config:
    """Build a Config from plain flat values, checking every key, type and range."""
    hints = _hints()
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(
                f"unknown config key {key!r}.{suggest(key, hints)} "
                f"Valid keys: {', '.join(sorted(hints))}"
            )
        kwargs[key] = _check_type(key, value, hints[key][0])
    cfg = Config(**kwargs)
    for key, (_, f) in hints.items():
        value, bounds = getattr(cfg, key), f.metadata.get("range")
        if bounds == "> 0" and value <= 0:
            raise ConfigError(f"{key} must be > 0, got {value}")
        if bounds == ">= 0" and value < 0:
            raise ConfigError(f"{key} must be >= 0, got {value}")
        if bounds == "[0, 1]" and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{key} must be in [0, 1], got {value}")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(
            f"threads must be >= 1 (or null for the automatic choice), got {cfg.threads}"
        )
    if not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError(f"seed must be in [0, 2**62], got {cfg.seed}")
    for key in ("batch_size", "batch_size_run"):
        if getattr(cfg, key) > cfg.buffer_size:
            raise ConfigError(
                f"{key}={getattr(cfg, key)} is larger than buffer_size={cfg.buffer_size} "
                f"(episodes); raise buffer_size or lower {key}"
            )
    cfg.env = _numbers(cfg.env)
    for name in cfg.loggers:
        if name not in LOGGERS:
            raise ConfigError(
                f"unknown logger {name!r} in loggers.{suggest(name, LOGGERS)} "
                f"Valid: {', '.join(LOGGERS)} (e.g. --set loggers=[tensorboard,wandb])"
            )
    if len(set(cfg.loggers)) != len(cfg.loggers):
        raise ConfigError(f"loggers lists a logger twice: {cfg.loggers}")
    _check_env(cfg)
    from ddn.algorithms import get_algorithm

    get_algorithm(cfg.algo)  # an unknown name: one error with a suggestion
    return cfg


# YAML 1.2 floats without a dot (1e30, 5e-4), which YAML 1.1 (PyYAML) reads as strings.
_EXP_FLOAT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+")


def _numbers(value: Any) -> Any:
    """``value`` with YAML-1.1 strings such as ``"1e30"`` read as the numbers meant.
    Environment parameters are untyped here (typed keys convert in ``_check_type``), so
    a payoff matrix ``[[1e30, 0], ...]`` would otherwise reach the env as text."""
    if isinstance(value, str) and _EXP_FLOAT.fullmatch(value):
        return float(value)
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    return value


def _check_env(cfg: Config) -> None:
    from ddn.envs import get_entry

    try:
        entry = get_entry(cfg.env_name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    valid = entry.params()
    for key in cfg.env:
        if key not in valid:
            raise ConfigError(
                f"unknown environment parameter env.{key} for {cfg.env_name!r}."
                f"{suggest(key, valid)} Valid: "
                + ", ".join(f"env.{k} (default {v!r})" for k, v in valid.items())
            )


# ---------------------------------------------------------------------- presets
def _preset_dir() -> Path:
    return Path(str(resources.files("ddn") / "configs"))


def load_yaml_mapping(path: Path, what: str = "config keys") -> dict[str, Any]:
    """A YAML file holding a mapping (presets, sweep files), or one ConfigError."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a UTF-8 text file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of {what}")
    return data


def list_presets(kind: Literal["algs", "envs"]) -> list[str]:
    return sorted(p.stem for p in (_preset_dir() / kind).glob("*.yaml"))


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` with a YAML value: ``lr=1e-3``, ``env.payoff=[[8,0],[0,1]]``."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r} (e.g. --set lr=0.001)")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}") from None
    return key.strip(), value


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if key == "env" and isinstance(value, dict):
            merged["env"] = {**merged.get("env", {}), **value}
        else:
            merged[key] = value
    return merged


def resolve(
    env_name: str,
    algo: str,
    map_name: str | None = None,
    overrides: typing.Sequence[str] = (),
    **explicit: Any,
) -> Config:
    """Presets + overrides -> a validated Config (what ``ddn train`` runs). Keys no
    preset sets keep their dataclass defaults."""
    presets = _preset_dir()
    values: dict[str, Any] = {}
    env_file = presets / "envs" / f"{env_name}.yaml"
    if env_file.exists():
        values = _merge(values, load_yaml_mapping(env_file))
    # Per-map settings where the paper uses them (e.g. 3s5z_vs_3s6z's budget and lr).
    map_file = presets / "maps" / env_name / f"{map_name}.yaml"
    if map_name is not None and map_file.exists():
        values = _merge(values, load_yaml_mapping(map_file))
    # Where a registered algorithm's settings differ from its sections' defaults: its
    # base method's first (ddn_qtran's teacher trains with qtran.yaml's joint network).
    from ddn.algorithms import algorithm_names, get_algorithm

    base = get_algorithm(algo).base_method if algo in algorithm_names() else algo
    for name in dict.fromkeys((base, algo)):
        alg_file = presets / "algs" / f"{name}.yaml"
        if alg_file.exists():
            values = _merge(values, load_yaml_mapping(alg_file))
    values = _merge(values, {"env_name": env_name, "algo": algo, "map_name": map_name})
    values = _merge(values, {k: v for k, v in explicit.items() if v is not None})
    for item in overrides:
        key, value = parse_override(item)
        if key.startswith("env."):
            values = _merge(values, {"env": {key[4:]: value}})
        elif "." in key:
            raise ConfigError(f"--set {key}: only env.<param> keys are nested")
        else:
            values = _merge(values, {key: value})
    return from_dict(values)


def load(path: str | Path) -> Config:
    """Read a run folder's resolved ``config.yaml``."""
    values = load_yaml_mapping(Path(path))
    cfg = from_dict(values)
    if not {"env_name", "algo"} <= set(values):  # e.g. emptied: not all defaults
        raise ConfigError(
            f"{path} holds no run configuration (no env_name or algo: it is empty or was "
            "cut); restore that file, or start a new run"
        )
    return cfg


# Keys that say how a run executes, not what it computes: a checkpoint or a sweep's run
# folder still belongs to a configuration that differs only in them, and a resume may
# change them (a campaign turns on ``save_buffer`` for runs that outlive a session).
EXECUTION_KEYS = ("threads", "save_buffer")


def differing_keys(saved: dict[str, Any], cfg: Config) -> list[str]:
    """Keys where a stored configuration (a checkpoint's, a run folder's config.yaml,
    always flat) differs from ``cfg``. Keys the stored one lacks (added to ddn since)
    count as their defaults; ``EXECUTION_KEYS`` never count."""
    current = cfg.to_dict()
    stored = {**Config().to_dict(), **saved}
    return sorted(
        k
        for k in set(stored) | set(current)
        if k not in EXECUTION_KEYS and stored.get(k) != current.get(k)
    )


def save(cfg: Config, path: str | Path) -> None:
    """Write ``config.yaml`` atomically: a failed write (a full disk) leaves no cut file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
