"""The training loop: collect, store, learn, log, test, checkpoint, resume.

Usable from Python (``Experiment(cfg, run_dir).run()``) and from ``ddn train``.
One iteration collects ``batch_size_run`` whole episodes (one per environment), stores
them, and makes ``updates_per_iteration`` learner updates once the buffer holds
``batch_size`` episodes (PyMARL's schedule is one update per episode). Logging, testing
and checkpoints fire on env-step intervals.

Failures stop a run loudly and never cost its last good checkpoint: a non-finite loss,
gradient norm or weight, a write that fails (no space, no permission) and an environment
that breaks end it with a :class:`TrainingError` (one line; ``summary.json`` says
``finished: false`` and why). SIGINT and SIGTERM finish the iteration, checkpoint and
stop; a second one aborts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import re
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ddn import config as config_mod
from ddn.algorithms import get_algorithm
from ddn.allocator import keep_freed_memory
from ddn.buffer import EpisodeBuffer
from ddn.checkpoint import CheckpointError, list_checkpoints, nonfinite_tensors, save_checkpoint
from ddn.config import Config, ConfigError, differing_keys
from ddn.envs import VecEnv, get_entry, make
from ddn.envs.errors import WorkerError
from ddn.evaluate import run_episodes
from ddn.learners.base import Learner, PostBudgetLearner
from ddn.learners.ctds import teacher_reads_privileged_obs
from ddn.logging import RunLogger, json_value
from ddn.provenance import record_start
from ddn.rng import EXPLORATION, REPLAY, seeded_generator
from ddn.rollout import Collector, EpsilonSchedule, RolloutStats
from ddn.run_folder import RunFolder, unwritable
from ddn.run_lock import run_lock
from ddn.threads import apply_threads

# 2: exploration and replay sampling draw from generators of their own (ddn.rng), saved
# under "rng"; 1 had them share torch's global generator. A format-1 checkpoint resumes
# with those streams started from their seeds (load_state says so).
CHECKPOINT_FORMAT = 2
READABLE_FORMATS = (1, 2)


class TrainingError(RuntimeError):
    """A run stopped by a failure (divergence, a failed write, a broken environment).
    The message is one line naming what happened and what to try; ``summary`` is what
    ``summary.json`` records."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary


class Aborted(KeyboardInterrupt):
    """A second SIGINT or SIGTERM: stop at once, without a final checkpoint."""

    def __init__(self, signum: int, run_dir: Path | None = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.run_dir = run_dir


class _Diverged(Exception):
    pass


def first_line(exc: BaseException) -> str:
    """An error's first line: environment errors carry the worker's traceback after it."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_run_dir(cfg: Config, root: str | Path = "runs") -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{cfg.env_name}-{cfg.map_name or 'default'}-{cfg.algo}-{cfg.seed}-{stamp}"


def make_env(cfg: Config, num_envs: int, seed: int, device: torch.device) -> VecEnv:
    """The run's environment; ``--map`` reaches environments with a ``map_name`` parameter."""
    params = dict(cfg.env)
    auto = getattr(get_algorithm(cfg.algo).learner, "privileged_obs_by_default", None)
    if (
        auto is not None
        and teacher_reads_privileged_obs(cfg, auto)
        and "privileged_obs" in get_entry(cfg.env_name).params()
        and "privileged_obs" not in params
    ):  # CTDS's teacher: unlimited sight where the environment can produce it
        params["privileged_obs"] = True
    if cfg.map_name is not None:
        if "map_name" not in get_entry(cfg.env_name).params():
            raise ConfigError(
                f"environment {cfg.env_name!r} has no maps; drop --map (see `ddn list`)"
            )
        params["map_name"] = cfg.map_name
    try:
        return make(cfg.env_name, num_envs=num_envs, seed=seed, device=device, **params)
    except ValueError as exc:  # bad parameter values: the env's message names the fix
        raise ConfigError(str(exc)) from None


def build_learner(cfg: Config, spec, device: torch.device) -> Learner:
    """The learner of ``cfg.algo``, as its registry entry builds it."""
    return get_algorithm(cfg.algo).learner(cfg, spec, device)


class _StopFlag:
    """A first SIGINT (Ctrl-C) or SIGTERM (what Slurm, Kubernetes and Ray send) asks the
    loop to checkpoint and stop; a second one aborts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> _StopFlag:
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                break
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise Aborted(signum)
        self.signum = signum
        tqdm.write(
            f"Stopping ({signal.Signals(signum).name}): finishing this iteration and writing "
            "a checkpoint (send it again to abort without saving)",
            file=sys.stderr,
        )

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def check_run_dir(run_dir: Path, cfg: Config, overwrite: bool = False) -> list[Path]:
    """The files of an earlier run in ``run_dir`` that a fresh run may replace.

    Refuses (ConfigError) a folder holding another run: one with checkpoints (resume
    it), one that ended, or one of another configuration, unless ``overwrite``. The same
    configuration killed before its first checkpoint just starts again.
    """
    for path in (run_dir, *run_dir.parents):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--out {run_dir}: {path} is a file; choose a folder")
    folder = RunFolder(run_dir)
    present = folder.present()
    if not present or overwrite:
        return present
    fix = "pass --overwrite to replace it, or choose another --out"
    saved = folder.checkpoints()
    if saved:
        raise ConfigError(
            f"{run_dir} already holds a run with checkpoints up to t_env={saved[-1]}; "
            f"continue it with `ddn train --resume {run_dir}`, or {fix}"
        )
    if folder.summary_path.exists():
        raise ConfigError(f"{run_dir} already holds a run that ended; {fix}")
    try:
        diff = differing_keys(folder.config().to_dict(), cfg)
    except (ConfigError, OSError):
        diff = [folder.config_path.name]
    if diff:
        raise ConfigError(f"{run_dir} already holds another run (keys differ: {diff[:8]}); {fix}")
    return present  # this run, killed before its first checkpoint: start it cleanly


@contextlib.contextmanager
def _allocating(what: str, fix: str) -> Iterator[None]:
    """Turn an allocation failure while building ``what`` into one ConfigError."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        text = str(exc)
        if not (
            isinstance(exc, MemoryError | torch.OutOfMemoryError) or "can't allocate memory" in text
        ):
            raise
        size = re.search(r"allocate (\d+) bytes", text)
        need = f" ({int(size.group(1)) / 1e9:,.1f} GB in one block)" if size else ""
        raise ConfigError(f"not enough memory for the {what}{need}; {fix}") from None


class Experiment:
    def __init__(
        self,
        cfg: Config,
        run_dir: str | Path | None = None,
        progress: bool = True,
        overwrite: bool = False,
    ):
        """``overwrite``: a fresh run may replace another run's files in ``run_dir``
        (else that is refused, see :func:`check_run_dir`)."""
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
        self.progress = progress
        self.overwrite = overwrite
        self.device = resolve_device(cfg.device)
        keep_freed_memory()  # updates reuse their activations' pages (ddn/allocator.py)
        set_seed(cfg.seed)
        with _allocating("environments", "make the environment smaller (see `ddn list`)"):
            self.env = make_env(cfg, cfg.batch_size_run, cfg.seed, self.device)
            self.spec = self.env.spec
        self.threads, self.threads_reason = apply_threads(cfg.threads)
        # config.yaml and checkpoints record the count used: a resume uses it again.
        self.cfg = cfg = dataclasses.replace(cfg, threads=self.threads)
        # The buffer is usually the largest allocation: fail on it before building more.
        buffer_device = torch.device("cpu") if cfg.buffer_cpu_only else self.device
        with _allocating("replay buffer", "lower buffer_size or make the environment smaller"):
            self.buffer = EpisodeBuffer(
                cfg.buffer_size, self.spec, buffer_device, seeded_generator(cfg.seed, REPLAY)
            )
        with _allocating("environments", "make the environment smaller (see `ddn list`)"):
            # A separate stream for tests, so testing never shifts the training episodes.
            n_test = max(1, min(cfg.test_nepisode, 64))
            if self.env.expensive_copies:  # e.g. StarCraft II processes: the run's width
                n_test = min(n_test, cfg.batch_size_run)
            self.test_env = make_env(cfg, n_test, cfg.seed + 1_000_003, self.device)
        with _allocating(
            "networks", "lower rnn_hidden_dim, mixing_embed_dim, hypernet_embed or fusion_dim"
        ):
            self.learner = build_learner(cfg, self.spec, self.device)
        self.collector = Collector(self.env, self.device, seeded_generator(cfg.seed, EXPLORATION))
        self.epsilon = EpsilonSchedule(
            cfg.epsilon_start, cfg.epsilon_finish, cfg.epsilon_anneal_time
        )
        self.t_env = 0
        self.episode = 0
        self.last_log = 0
        self.last_test = -cfg.test_interval  # test at t_env = 0, as PyMARL does
        self.last_save = 0
        self._reset_window()
        self._resumed_from: int | None = None
        self._reward_abs_max = 0.0  # the runaway-Q check's scale
        self._runaway_warned = False
        self._last_test: dict[str, float] = {}
        self.stopped_by: int | None = None  # the signal that stopped the last run()

    # ------------------------------------------------------------------ resume
    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        progress: bool = True,
        threads: int | None = None,
        save_buffer: bool | None = None,
    ) -> Experiment:
        """Continue ``run_dir`` from its latest checkpoint. ``threads`` replaces the
        thread count it recorded (e.g. on another machine); ``save_buffer`` whether its
        later checkpoints hold the replay buffer (a checkpoint without one resumes with
        an empty buffer; from the next checkpoint on, resumes are exact)."""
        folder = RunFolder(run_dir).require()
        cfg = folder.config()
        given = {"threads": threads, "save_buffer": save_buffer}
        given = {k: v for k, v in given.items() if v is not None}
        if given:
            cfg = config_mod.from_dict({**cfg.to_dict(), **given})
        exp = cls(cfg, folder.path, progress=progress)
        t_env, state, buffer = folder.load_checkpoint()
        exp.load_state(state, buffer)
        exp._resumed_from = t_env
        return exp

    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.cfg.to_dict(),
            "counters": {
                "t_env": self.t_env,
                "episode": self.episode,
                "last_log": self.last_log,
                "last_test": self.last_test,
                "last_save": self.last_save,
                "reward_abs_max": self._reward_abs_max,
                "runaway_warned": int(self._runaway_warned),
            },
            "learner": self.learner.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "train_env": self.env.generator.get_state(),
                "test_env": self.test_env.generator.get_state(),
                EXPLORATION: self.collector.generator.get_state(),
                REPLAY: self.buffer.generator.get_state(),
            },
            "window": {k: torch.tensor(v, dtype=torch.float64) for k, v in self._window.items()},
            # Update metrics not yet logged: a resume must average them in as well.
            "train_metrics": {
                k: torch.tensor(v, dtype=torch.float64) for k, v in self._train_metrics.items()
            },
            "buffer_saved": self.cfg.save_buffer,
        }

    def load_state(self, state: dict[str, Any], buffer: dict | None) -> None:
        fmt = state.get("format")
        if fmt not in READABLE_FORMATS:
            raise CheckpointError(
                f"checkpoint has format {fmt!r}, which this ddn version cannot read (it reads "
                f"formats {', '.join(map(str, READABLE_FORMATS))}): resume it with the ddn "
                "version that wrote it, or start a new run"
            )
        diff = differing_keys(state["config"], self.cfg)
        if diff:
            raise CheckpointError(
                f"checkpoint was made with another configuration (keys differ: {diff}); "
                "resume with the run's own config.yaml, or start a new run"
            )
        try:
            self.learner.load_state_dict(state["learner"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"checkpoint does not fit this model: {exc}") from None
        c = state["counters"]
        self.t_env, self.episode = int(c["t_env"]), int(c["episode"])
        self.last_log, self.last_test = int(c["last_log"]), int(c["last_test"])
        self.last_save = int(c["last_save"])
        self._reward_abs_max = float(c.get("reward_abs_max", 0.0))
        self._runaway_warned = bool(c.get("runaway_warned", 0))
        torch.set_rng_state(state["rng"]["torch"])
        self.env.generator.set_state(state["rng"]["train_env"])
        self.test_env.generator.set_state(state["rng"]["test_env"])
        if fmt == 1:
            print(
                "note: this checkpoint predates separate random streams (format 1): "
                "exploration, replay sampling and IDM masks go on from their seeds, so the "
                "continuation is a valid run but not the one the older version would have made",
                file=sys.stderr,
            )
        else:
            self.collector.generator.set_state(state["rng"][EXPLORATION])
            self.buffer.generator.set_state(state["rng"][REPLAY])
        self._window = {k: v.tolist() for k, v in state["window"].items()}
        # The throughput window restarts here: this process has made no step yet.
        self._window_start = (time.perf_counter(), self.t_env)
        self._train_metrics = {k: v.tolist() for k, v in state.get("train_metrics", {}).items()}
        if buffer is not None:
            self.buffer.load_state_dict(buffer)
        elif state.get("buffer_saved"):
            raise CheckpointError(
                "checkpoint says it saved the replay buffer but buffer.pt is missing"
            )

    def save(self) -> Path:
        # Set before state(): the checkpoint must record itself as the last save, or a
        # resume from it checkpoints again one iteration later.
        self.last_save = self.t_env
        buffer = self.buffer.state_dict() if self.cfg.save_buffer else None
        return save_checkpoint(
            self.run_dir, self.t_env, self.state(), buffer, keep=self.cfg.keep_checkpoints
        )

    # ------------------------------------------------------------------ loop
    def _reset_window(self) -> None:
        self._window: dict[str, list[float]] = {"return": [], "length": [], "won": [], "losses": []}
        self._window_start = (time.perf_counter(), self.t_env if hasattr(self, "t_env") else 0)
        self._train_metrics: dict[str, list[float]] = {}

    def _log_train(self, logger: RunLogger, epsilon: float) -> dict[str, float]:
        w = self._window
        returns = torch.tensor(w["return"], dtype=torch.float64)
        t0, t_env0 = self._window_start
        elapsed = max(time.perf_counter() - t0, 1e-9)
        metrics: dict[str, float] = {
            "train/return_mean": float(returns.mean()),
            "train/return_std": float(returns.std(unbiased=False)),
            "train/ep_length_mean": _mean(w["length"]),
            "train/epsilon": epsilon,
            "time/env_steps_per_s": (self.t_env - t_env0) / elapsed,
        }
        if self.spec.has_win_condition:
            metrics["train/win_rate"] = _mean(w["won"])
        for key, values in self._train_metrics.items():
            metrics[key] = sum(values) / len(values)
        counters = (("env/dropped_episodes", "dropped_episodes"), ("env/restarts", "restarts"))
        for key, attr in counters:
            if hasattr(self.env, attr):  # process-worker environments count their failures
                metrics[key] = float(getattr(self.env, attr))
        logger.log(self.t_env, metrics, episode=self.episode)
        self._check_runaway(logger, metrics)
        self._reset_window()
        return metrics

    def run(self) -> dict[str, Any]:
        """Train to ``t_max``, or until a SIGINT/SIGTERM (then checkpoint and stop:
        ``finished`` is false and ``stopped_by`` holds the signal); returns the summary.

        Raises :class:`TrainingError` when the run fails (its last good checkpoint kept),
        :class:`Aborted` on a second signal and :class:`~ddn.run_lock.RunInUseError`
        when another process trains into the same folder.
        """
        with run_lock(self.run_dir):
            return self._run()

    def _run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.stopped_by = None
        if self._resumed_from is None:
            for path in check_run_dir(self.run_dir, cfg, self.overwrite):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if self._resumed_from is None:  # a resume reads it, never rewrites it
                config_mod.save(cfg, RunFolder(self.run_dir).config_path)
            logger = RunLogger(
                self.run_dir, self._resumed_from, loggers=cfg.loggers, config=cfg.to_dict()
            )
            code = record_start(self.run_dir, self.t_env)
        except OSError as exc:
            raise unwritable(self.run_dir, exc) from None
        bar = tqdm(
            total=cfg.t_max, initial=min(self.t_env, cfg.t_max), unit="step",
            unit_scale=True, dynamic_ncols=True, disable=not self.progress,
            desc=f"{cfg.algo} {cfg.env_name}",
        )  # fmt: skip
        self._last_test = RunFolder(self.run_dir).last_test()  # a resume's summary needs it
        failure: str | None = None
        stopped: int | None = None
        try:
            with _StopFlag() as stop:
                self._loop(logger, bar, stop)
                stopped = stop.signum  # one arriving during the final save is too late
                if stopped is not None or cfg.save_model:
                    self.save()
        except (_Diverged, OSError, WorkerError) as exc:
            failure = self._failure(exc)
        except Aborted as exc:
            exc.run_dir = self.run_dir
            raise
        finally:
            bar.close()
            with contextlib.suppress(OSError):  # a full disk already made its error
                logger.close()
        summary = {
            "t_env": self.t_env,
            "episode": self.episode,
            "finished": failure is None and stopped is None,
            **self._last_test,
            "code": {k: code[k] for k in ("ddn", "commit", "dirty")},
        }
        if failure is None and stopped is not None:
            summary["reason"] = f"stopped by {signal.Signals(stopped).name}"
        try:
            if failure is not None:
                summary["reason"] = failure
            _atomic_write_json(RunFolder(self.run_dir).summary_path, summary)
        except OSError as exc:
            if failure is None:
                failure = self._failure(exc)
                summary.update(finished=False, reason=failure)
        if failure is not None:
            raise TrainingError(failure, summary)
        if stopped is not None:
            self.stopped_by = stopped
            tqdm.write(
                f"Stopped at t_env={self.t_env}; checkpoint saved. "
                f"Resume with: ddn train --resume {self.run_dir}"
            )
        return summary

    def _loop(self, logger: RunLogger, bar: tqdm, stop: _StopFlag) -> None:
        cfg = self.cfg
        while self.t_env < cfg.t_max:
            if self.t_env - self.last_test >= cfg.test_interval and cfg.test_nepisode > 0:
                self._test(logger)
            epsilon = self.iteration()
            bar.update(min(self.t_env, cfg.t_max) - bar.n)
            if self.t_env - self.last_log >= cfg.log_interval or self.t_env >= cfg.t_max:
                m = self._log_train(logger, epsilon)
                self.last_log = self.t_env
                bar.set_postfix(ret=f"{m['train/return_mean']:.2f}", eps=f"{epsilon:.2f}")
            if self.t_env >= cfg.t_max and not self._finish_learner(logger, stop):
                return  # stopped during the learner's last phase: checkpoint it
            if (
                cfg.test_nepisode > 0
                and not stop.requested
                and (self.t_env - self.last_test >= cfg.test_interval or self.t_env >= cfg.t_max)
            ):
                # Test before checkpointing this t_env: a resume from the checkpoint
                # cuts the logs back to t_env and must not test (and log) it again.
                self._test(logger)
            if cfg.save_model and self.t_env - self.last_save >= cfg.save_model_interval:
                self.save()
            if stop.requested:
                return
        if not self._finish_learner(logger, stop):  # a resume inside the last phase
            return
        if cfg.test_nepisode > 0 and self.last_test != self.t_env:
            self._test(logger)

    def _finish_learner(self, logger: RunLogger, stop: _StopFlag) -> bool:
        """A learner's phase after the training budget (PTDE's offline distillation):
        run or continue it and log its metrics. False when a signal stopped it."""
        learner = self.learner
        if not isinstance(learner, PostBudgetLearner) or learner.post_budget_done:
            return True
        metrics = learner.post_budget(self.env, lambda: stop.requested, self.progress)
        if metrics is None:
            return False
        logger.log(self.t_env, metrics, episode=self.episode)
        return True

    def _failure(self, exc: BaseException) -> str:
        """The one line a failed run ends with: what happened, what is kept, what to try."""
        saved = list_checkpoints(self.run_dir)
        kept = f"the last good checkpoint is t_env={saved[-1]}" if saved else "no checkpoint yet"
        resume = (
            f", then `ddn train --resume {self.run_dir}`"
            if saved
            else ", then run the same command again"
        )
        if isinstance(exc, _Diverged):
            lrs = ", ".join(get_algorithm(self.cfg.algo).learning_rate_keys())
            return (
                f"training diverged at t_env={self.t_env}: {exc}; {kept}. Try a smaller "
                f"{lrs} (lr now {self.cfg.lr:g}) or grad_norm_clip "
                f"(now {self.cfg.grad_norm_clip:g}) in a new run"
            )
        if isinstance(exc, WorkerError):  # its first line; the worker's traceback is logged
            return f"the environment failed: {first_line(exc)}; {kept}. Fix the environment{resume}"
        assert isinstance(exc, OSError)
        where = exc.filename or self.run_dir
        return (
            f"could not write {where}: {exc.strerror or exc}; partial files removed, {kept}. "
            f"Free disk space or fix permissions{resume}"
        )

    def iteration(self) -> float:
        """Collect one episode per environment, store them, and make
        ``updates_per_iteration`` updates once the buffer holds a batch. Returns the epsilon
        the episodes were collected with."""
        epsilon = self.epsilon(self.t_env)
        batch, stats = self.collector.run(self.learner.acting_network, epsilon, self.buffer.device)
        self.t_env += stats.env_steps
        dropped = getattr(self.env, "dropped", None)  # episodes a crashed worker broke
        if dropped is not None and bool(dropped.any()):
            # A dropped episode's last transition is the step that failed: it never
            # happened in the env, so it is not counted (the steps before it were).
            self.t_env -= int(dropped.sum())
            keep = ~dropped.to(batch.filled.device)
            batch = batch.index(keep)
            stats = RolloutStats(stats.returns[keep], stats.lengths[keep], stats.won[keep])
        self.buffer.insert(batch)
        if batch.num_episodes:
            self._reward_abs_max = max(self._reward_abs_max, float(batch.reward.abs().max()))
        self.episode += self.env.num_envs
        self._window["return"] += stats.returns.tolist()
        self._window["length"] += stats.lengths.tolist()
        self._window["won"] += stats.won.float().tolist()
        if self.buffer.can_sample(self.cfg.batch_size):
            # Every update of an iteration sees the same episode count, so target networks
            # still sync every target_update_interval episodes, not more often.
            for _ in range(self.cfg.updates_per_iteration):
                batch = self.buffer.sample(self.cfg.batch_size)
                metrics = self.learner.train(batch, self.episode)
                self._check_update(metrics)
                for key, value in metrics.items():
                    self._train_metrics.setdefault(key, []).append(value)
        return epsilon

    def _check_update(self, metrics: dict[str, float]) -> None:
        """Stop before a non-finite update reaches a test, a log line or a checkpoint."""
        bad = [key for key, value in metrics.items() if not math.isfinite(value)]
        if bad:
            raise _Diverged(f"{bad[0]} is {metrics[bad[0]]}")
        weights = nonfinite_tensors(self.learner.state_dict())
        if weights:
            raise _Diverged(f"non-finite learner weights ({', '.join(weights[:3])})")

    def _check_runaway(self, logger: RunLogger, metrics: dict[str, float]) -> None:
        """Warn once when the mean Q is far beyond any return the rewards seen allow."""
        cfg, r_max = self.cfg, self._reward_abs_max
        if cfg.runaway_q_factor <= 0 or self._runaway_warned or r_max <= 0:
            return
        horizon = sum(cfg.gamma**k for k in range(self.spec.episode_limit))
        bound = cfg.runaway_q_factor * r_max * horizon
        # Every logged mean Q-value or target: train/q_<what>_mean by convention (the
        # learners': q_taken, DDN's q_teacher and q_student) and train/target_mean.
        keys = [k for k in metrics if k.startswith("train/q_") and k.endswith("_mean")]
        for key in [*keys, "train/target_mean"]:
            value = metrics.get(key)
            if value is not None and abs(value) > bound:
                message = (
                    f"{key}={value:.3g} at t_env={self.t_env} is over {cfg.runaway_q_factor:g}x "
                    f"the largest return the rewards allow ({r_max:.3g} per step over "
                    f"{horizon:.3g} discounted steps); the run may be diverging: try a smaller "
                    "lr or grad_norm_clip (runaway_q_factor=0 turns this check off)"
                )
                tqdm.write(f"Warning: {message}", file=sys.stderr)
                logger.log(self.t_env, {}, episode=self.episode, warning=message)
                self._runaway_warned = True
                return

    def _test(self, logger: RunLogger) -> None:
        metrics: dict[str, float] = {}
        algorithm = get_algorithm(self.cfg.algo)
        for prefix, network in self.learner.evaluation_policies().items():
            episodes = run_episodes(network, self.test_env, self.cfg.test_nepisode)
            metrics.update(episodes.summary(prefix))
            name = algorithm.policy_by_prefix(prefix).name
            logger.log_episodes(self.t_env, name, episodes, episode=self.episode)
        metrics.update(self.learner.evaluation_metrics(metrics))  # e.g. DDN's transfer rate
        logger.log(self.t_env, metrics, episode=self.episode)
        self.last_test = self.t_env
        self._last_test = metrics
        if self.progress:
            parts = [f"{k} {v:.3f}" for k, v in metrics.items() if not k.endswith("_std")]
            tqdm.write(f"[test t_env={self.t_env:>9,}] " + "  ".join(parts))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    clean = {k: json_value(v) for k, v in data.items()}
    tmp.write_text(json.dumps(clean, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
