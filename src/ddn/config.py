"""Typed, validated run configuration.

A run's configuration is one flat :class:`Config` whose keys are PyMARL's names (so a
PyMARL user's settings carry over), plus ``env``: the environment's own parameters.
It is assembled from YAML presets shipped in the package and ``--set`` overrides:

    configs/default.yaml < configs/envs/<env>.yaml < configs/maps/<env>/<map>.yaml
    < configs/algs/<algo>.yaml < --set

Every key and type is checked; a mistake gets one :class:`ConfigError` that names the
valid keys.
"""

from __future__ import annotations

import contextlib
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

# IQL first: the no-mixer baseline every value-decomposition method is measured against.
BASE_ALGORITHMS = ("iql", "vdn", "qmix", "qatten", "qplex", "cw_qmix", "ow_qmix", "qtran")
# DDN on top of each base method; plain "ddn" is the paper's headline, DDN on QMIX.
DDN_ALGORITHMS = ("ddn", *(f"ddn_{a}" for a in BASE_ALGORITHMS))
# DDN's Table 2 rivals (docs/rivals.md): each trains a teacher that sees more and a
# student on local observations; on QMIX unless suffixed with another mixer.
RIVAL_BASES = {
    "ctds": "qmix", "ctds_vdn": "vdn", "ctds_qplex": "qplex",
    "ptde": "qmix", "igm_da": "qmix", "igm_bc": "qmix",
}  # fmt: skip
RIVAL_ALGORITHMS = tuple(RIVAL_BASES)
ALGORITHMS = (*BASE_ALGORITHMS, *DDN_ALGORITHMS, *RIVAL_ALGORITHMS)


# Where metrics go besides metrics.jsonl (always written): see ddn/trackers.py.
LOGGERS = ("tensorboard", "wandb", "mlflow")


def is_ddn(algo: str) -> bool:
    return algo in DDN_ALGORITHMS


def has_student(algo: str) -> bool:
    """Whether ``algo`` trains a student on local observations (DDN and its rivals)."""
    return is_ddn(algo) or algo in RIVAL_BASES


def base_algo(algo: str) -> str:
    """The value-decomposition method under ``algo`` (``ddn`` -> ``qmix``)."""
    if algo == "ddn":
        return "qmix"
    if algo in RIVAL_BASES:
        return RIVAL_BASES[algo]
    return algo.removeprefix("ddn_")


class ConfigError(ValueError):
    """A user-fixable configuration mistake; the message says how to fix it."""


@dataclass
class Config:
    # What to run.
    env_name: str = "predator_prey"
    map_name: str | None = None
    algo: str = "qmix"
    env: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch's CPU threads; null: the thread policy picks (ddn/threads.py). A run records
    # the count it used, so that a resume uses the same one.
    threads: int | None = None
    # Budget and data collection.
    t_max: int = 1_000_000
    batch_size_run: int = 8
    # Gradient updates (each on a fresh sample) after each collection of batch_size_run
    # episodes. PyMARL, and so the paper, makes one update per collected episode:
    # updates_per_iteration = batch_size_run reproduces that (the paper presets do).
    updates_per_iteration: int = 1
    batch_size: int = 32
    buffer_size: int = 5000
    buffer_cpu_only: bool = True
    save_buffer: bool = False
    # Optimisation.
    lr: float = 5e-4
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    optim_alpha: float = 0.99
    optim_eps: float = 1e-5
    gamma: float = 0.99
    td_lambda: float = 0.0
    double_q: bool = True
    # False: a time-out ends the return like a termination (JaxMARL's SMAX baselines);
    # True: it bootstraps from the state reached (PyMARL), the right target when the
    # time-out is not part of the task.
    bootstrap_timeout: bool = True
    grad_norm_clip: float = 10.0
    target_update_interval: int = 200
    # Exploration.
    epsilon_start: float = 1.0
    epsilon_finish: float = 0.05
    epsilon_anneal_time: int = 50_000
    # Agent network.
    rnn_hidden_dim: int = 64
    obs_last_action: bool = True
    obs_agent_id: bool = True
    # Mixers.
    mixing_embed_dim: int = 32
    hypernet_layers: int = 2
    hypernet_embed: int = 64
    n_head: int = 4  # Qatten / QPLEX attention heads
    adv_hypernet_layers: int = 3  # QPLEX lambda network depth (1 cannot fit the matrix game)
    # Weighted QMIX.
    w: float = 0.1  # weight of the down-weighted joint actions (alpha in the paper)
    central_mixing_embed_dim: int = 256
    central_loss: float = 1.0
    qmix_loss: float = 1.0
    # QTRAN.
    opt_loss: float = 1.0
    nopt_min_loss: float = 0.1
    # DDN (ddn* algorithms; docs/ddn.md maps each switch to the paper's tables).
    personalized_state: bool = True  # GGN input: PFB personalized state, else raw [S, o_i, ...]
    fusion_dim: int = 32  # d: width of the PFB / IOB outputs
    fusion_hypernet_dim: int = 4  # h: rank of the hypernetwork producing W_i (h+1 bases)
    act_with: Literal["teacher", "student"] = "teacher"
    # LPN's Adam learning rate (paper B.3: 5e-4); unset, it follows lr, so a preset that
    # changes lr (3s5z_vs_3s6z: 1e-3) changes it for every network.
    student_lr: float | None = None
    distill_block: bool = True  # L_B
    w_block: float = 1.0
    distill_q: bool = True  # L_Q
    w_q: float = 1.0
    distill_feature: bool = True  # L_F
    w_feature: float = 1.0
    distill_temperature: float = 1.0
    idm: bool = True  # Internal Distillation Module (RND on the global state)
    idm_mask_prob: float = 0.75  # mu: Bernoulli probability that a transition gets r_I
    idm_coef: float = 0.1  # r_I = idm_coef * m * e / running_rms(e)
    idm_next_state: bool = True  # novelty of S^{t+1} (as RND); false: of S^t
    idm_normalize: bool = True  # divide e by its running root mean square
    idm_embed_dim: int = 64
    idm_lr: float | None = None  # IDM predictor's Adam learning rate; unset, it follows lr
    # The rivals (ctds*, ptde, igm_*; docs/rivals.md). IGM-DA's learner reads the
    # available-action mask with its observation, as in its code.
    igm_learner_avail: bool = True
    # What CTDS's teacher and IGM-DA's expert read besides their own history: the env's
    # privileged observation (unlimited sight; predator_prey) or [s, o_i]. auto: CTDS's
    # teacher the privileged one where the env can produce it, IGM-DA's expert [s, o_i].
    teacher_obs: Literal["auto", "state", "privileged"] = "auto"
    # PTDE: the GIP module (z width, hypernetwork units, variance floor); test-time noise
    # N(0, var_floor) on the student's z_hat; phase 2's dataset (episodes with the
    # teacher acting at epsilon_finish) and its offline regression (Adam).
    ptde_z_dim: int = 64
    ptde_hyper_dim: int = 64
    ptde_var_floor: float = 0.01
    ptde_z_noise: bool = True
    ptde_dataset_episodes: int = 800
    ptde_distill_steps: int = 500_000
    ptde_distill_lr: float = 1e-4
    ptde_distill_batch: int = 2048
    # Logging, evaluation, checkpoints (intervals in environment steps).
    test_interval: int = 20_000
    test_nepisode: int = 32
    log_interval: int = 10_000
    # Trackers fed the same events as metrics.jsonl: tensorboard, wandb, mlflow.
    loggers: list[str] = field(default_factory=lambda: ["tensorboard"])
    save_model: bool = True
    save_model_interval: int = 100_000
    keep_checkpoints: int = 3  # the newest this many stay on disk; 0 keeps all
    # Warn once when a logged mean Q exceeds this many times the largest discounted
    # return the rewards seen so far allow (a run heading for divergence); 0: never.
    runaway_q_factor: float = 10.0

    def __post_init__(self) -> None:
        # Resolved at once, so config.yaml records the rate each network trained with.
        for key in ("student_lr", "idm_lr"):
            if getattr(self, key) is None:
                setattr(self, key, self.lr)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_HINTS = typing.get_type_hints(Config)
# Keys that must be > 0 (or >= 0): checked after types.
_POSITIVE = (
    "t_max", "batch_size_run", "updates_per_iteration", "batch_size", "buffer_size",
    "target_update_interval",
    "rnn_hidden_dim", "mixing_embed_dim", "hypernet_embed", "hypernet_layers", "n_head",
    "central_mixing_embed_dim", "adv_hypernet_layers", "test_interval", "log_interval",
    "save_model_interval", "lr", "fusion_dim", "fusion_hypernet_dim", "student_lr",
    "distill_temperature", "idm_embed_dim", "idm_lr", "grad_norm_clip",
    "ptde_z_dim", "ptde_hyper_dim", "ptde_var_floor", "ptde_dataset_episodes",
    "ptde_distill_lr", "ptde_distill_batch",
)  # fmt: skip
_NON_NEGATIVE = (
    "test_nepisode", "epsilon_anneal_time", "w_block", "w_q", "w_feature",
    "idm_coef", "keep_checkpoints", "runaway_q_factor", "ptde_distill_steps",
)  # fmt: skip
# Seeds feed torch's and numpy's generators (with offsets for the test environments).
MAX_SEED = 2**62


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
    """Build a Config from plain values, checking every key, type and range."""
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _FIELDS:
            raise ConfigError(
                f"unknown config key {key!r}.{suggest(key, _FIELDS)} "
                f"Valid keys: {', '.join(sorted(_FIELDS))}"
            )
        kwargs[key] = _check_type(key, value, _HINTS[key])
    cfg = Config(**kwargs)
    for key in _POSITIVE:
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{key} must be > 0, got {getattr(cfg, key)}")
    for key in _NON_NEGATIVE:
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{key} must be >= 0, got {getattr(cfg, key)}")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(
            f"threads must be >= 1 (or null for the automatic choice), got {cfg.threads}"
        )
    for key in ("gamma", "td_lambda", "epsilon_start", "epsilon_finish", "w", "idm_mask_prob"):
        if not 0.0 <= getattr(cfg, key) <= 1.0:
            raise ConfigError(f"{key} must be in [0, 1], got {getattr(cfg, key)}")
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
    if cfg.algo not in ALGORITHMS:
        raise ConfigError(
            f"unknown algorithm {cfg.algo!r}.{suggest(cfg.algo, ALGORITHMS)} "
            f"Valid algorithms: {', '.join(ALGORITHMS)}"
        )
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
    """Presets + overrides -> a validated Config (what ``ddn train`` runs)."""
    presets = _preset_dir()
    values = load_yaml_mapping(presets / "default.yaml")
    env_file = presets / "envs" / f"{env_name}.yaml"
    if env_file.exists():
        values = _merge(values, load_yaml_mapping(env_file))
    # Per-map settings where the paper uses them (e.g. 3s5z_vs_3s6z's budget and lr).
    map_file = presets / "maps" / env_name / f"{map_name}.yaml"
    if map_name is not None and map_file.exists():
        values = _merge(values, load_yaml_mapping(map_file))
    alg_file = presets / "algs" / f"{algo}.yaml"
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
# folder still belongs to a configuration that differs only in them.
EXECUTION_KEYS = ("threads",)


def differing_keys(saved: dict[str, Any], cfg: Config) -> list[str]:
    """Keys where a stored configuration (a checkpoint's) differs from ``cfg``. Keys the
    stored one lacks (added to ddn since) count as their defaults; ``EXECUTION_KEYS``
    never count."""
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
