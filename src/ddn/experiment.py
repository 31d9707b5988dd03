"""The training loop: collect, store, learn, log, test, checkpoint, resume.

Usable from Python (``Experiment(cfg, run_dir).run()``) and from ``ddn train``.
One iteration collects ``batch_size_run`` whole episodes (one per environment), stores
them, and makes ``updates_per_iteration`` learner updates once the buffer holds
``batch_size`` episodes (PyMARL's schedule is one update per episode). Logging, testing
and checkpoints fire on env-step intervals.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ddn import config as config_mod
from ddn.allocator import keep_freed_memory
from ddn.buffer import EpisodeBuffer
from ddn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ddn.config import Config, ConfigError, is_ddn
from ddn.envs import VecEnv, get_entry, make
from ddn.evaluate import policy_name, run_episodes
from ddn.learners import DDNLearner, VDLearner
from ddn.logging import RunLogger, read_metrics
from ddn.provenance import record_start
from ddn.rollout import Collector, EpsilonSchedule, RolloutStats

CHECKPOINT_FORMAT = 1


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


def build_learner(cfg: Config, spec, device: torch.device) -> VDLearner | DDNLearner:
    if is_ddn(cfg.algo):
        return DDNLearner(cfg, spec, device)
    return VDLearner(cfg, spec, device)


def transfer_rate(metrics: dict[str, float], has_wins: bool) -> float | None:
    """LPN / GGN: win rates where the environment has wins, else returns (paper Table 2)."""
    key = "win_rate" if has_wins else "return_mean"
    teacher, student = metrics.get(f"test/{key}"), metrics.get(f"test_student/{key}")
    if teacher is None or student is None or teacher == 0:
        return None
    return student / teacher


class _StopFlag:
    """First Ctrl-C asks the loop to checkpoint and stop; a second one aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopFlag:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write(
            "Stopping: finishing this iteration and writing a checkpoint "
            "(Ctrl-C again to abort without saving)"
        )

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Experiment:
    def __init__(self, cfg: Config, run_dir: str | Path | None = None, progress: bool = True):
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
        self.progress = progress
        self.device = resolve_device(cfg.device)
        keep_freed_memory()  # updates reuse their activations' pages (ddn/allocator.py)
        set_seed(cfg.seed)
        self.env = make_env(cfg, cfg.batch_size_run, cfg.seed, self.device)
        self.spec = self.env.spec
        # A separate stream for tests, so testing never shifts the training episodes.
        n_test = max(1, min(cfg.test_nepisode, 64))
        if self.env.expensive_copies:  # e.g. StarCraft II processes: reuse the run's width
            n_test = min(n_test, cfg.batch_size_run)
        self.test_env = make_env(cfg, n_test, cfg.seed + 1_000_003, self.device)
        self.learner = build_learner(cfg, self.spec, self.device)
        buffer_device = torch.device("cpu") if cfg.buffer_cpu_only else self.device
        self.buffer = EpisodeBuffer(cfg.buffer_size, self.spec, buffer_device)
        self.collector = Collector(self.env, self.device)
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

    # ------------------------------------------------------------------ resume
    @classmethod
    def resume(cls, run_dir: str | Path, progress: bool = True) -> Experiment:
        run_dir = Path(run_dir)
        cfg_path = run_dir / "config.yaml"
        if not cfg_path.is_file():
            raise CheckpointError(f"{run_dir} is not a ddn run folder (no config.yaml)")
        cfg = config_mod.load(cfg_path)
        exp = cls(cfg, run_dir, progress=progress)
        t_env, state, buffer = load_checkpoint(run_dir)
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
            },
            "learner": self.learner.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "train_env": self.env.generator.get_state(),
                "test_env": self.test_env.generator.get_state(),
            },
            "window": {k: torch.tensor(v, dtype=torch.float64) for k, v in self._window.items()},
            # Update metrics not yet logged: a resume must average them in as well.
            "train_metrics": {
                k: torch.tensor(v, dtype=torch.float64) for k, v in self._train_metrics.items()
            },
            "buffer_saved": self.cfg.save_buffer,
        }

    def load_state(self, state: dict[str, Any], buffer: dict | None) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError("checkpoint written by an incompatible ddn version")
        if state["config"] != self.cfg.to_dict():
            diff = sorted(
                k for k in state["config"] if state["config"].get(k) != self.cfg.to_dict().get(k)
            )
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
        torch.set_rng_state(state["rng"]["torch"])
        self.env.generator.set_state(state["rng"]["train_env"])
        self.test_env.generator.set_state(state["rng"]["test_env"])
        self._window = {k: v.tolist() for k, v in state["window"].items()}
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
        return save_checkpoint(self.run_dir, self.t_env, self.state(), buffer)

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
        self._reset_window()
        return metrics

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config_mod.save(cfg, self.run_dir / "config.yaml")
        logger = RunLogger(
            self.run_dir, self._resumed_from, loggers=cfg.loggers, config=cfg.to_dict()
        )
        code = record_start(self.run_dir, self.t_env)
        bar = tqdm(
            total=cfg.t_max, initial=min(self.t_env, cfg.t_max), unit="step",
            unit_scale=True, dynamic_ncols=True, disable=not self.progress,
            desc=f"{cfg.algo} {cfg.env_name}",
        )  # fmt: skip
        last_test = self._last_logged_test()
        stopped = False
        with _StopFlag() as stop:
            while self.t_env < cfg.t_max:
                if self.t_env - self.last_test >= cfg.test_interval and cfg.test_nepisode > 0:
                    last_test = self._test(logger)
                epsilon = self.iteration()
                bar.update(min(self.t_env, cfg.t_max) - bar.n)
                if self.t_env - self.last_log >= cfg.log_interval or self.t_env >= cfg.t_max:
                    m = self._log_train(logger, epsilon)
                    self.last_log = self.t_env
                    bar.set_postfix(ret=f"{m['train/return_mean']:.2f}", eps=f"{epsilon:.2f}")
                if (
                    cfg.test_nepisode > 0
                    and not stop.requested
                    and (
                        self.t_env - self.last_test >= cfg.test_interval or self.t_env >= cfg.t_max
                    )
                ):
                    # Test before checkpointing this t_env: a resume from the checkpoint
                    # cuts the logs back to t_env and must not test (and log) it again.
                    last_test = self._test(logger)
                if cfg.save_model and self.t_env - self.last_save >= cfg.save_model_interval:
                    self.save()
                if stop.requested:
                    stopped = True
                    break
            if not stopped and cfg.test_nepisode > 0 and self.last_test != self.t_env:
                last_test = self._test(logger)
        bar.close()
        if stopped or cfg.save_model:
            self.save()
        logger.close()
        summary = {
            "t_env": self.t_env,
            "episode": self.episode,
            "finished": not stopped,
            **last_test,
            "code": {k: code[k] for k in ("ddn", "commit", "dirty")},
        }
        _atomic_write_json(self.run_dir / "summary.json", summary)
        if stopped:
            tqdm.write(
                f"Stopped at t_env={self.t_env}; checkpoint saved. "
                f"Resume with: ddn train --resume {self.run_dir}"
            )
        return summary

    def _last_logged_test(self) -> dict[str, float]:
        """The latest test event already in the log (a resumed run's summary needs it)."""
        path = self.run_dir / "metrics.jsonl"
        tests = [e for e in read_metrics(path) if "test/return_mean" in e] if path.exists() else []
        if not tests:
            return {}
        return {k: v for k, v in tests[-1].items() if k.startswith("test")}

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
                for key, value in metrics.items():
                    self._train_metrics.setdefault(key, []).append(value)
        return epsilon

    def _test(self, logger: RunLogger) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for prefix, network in self.learner.evaluation_policies().items():
            episodes = run_episodes(network, self.test_env, self.cfg.test_nepisode)
            metrics.update(episodes.summary(prefix))
            logger.log_episodes(self.t_env, policy_name(prefix), episodes, episode=self.episode)
        if "test_student/return_mean" in metrics:
            rate = transfer_rate(metrics, self.spec.has_win_condition)
            metrics["test/transfer_rate"] = float("nan") if rate is None else rate
        logger.log(self.t_env, metrics, episode=self.episode)
        self.last_test = self.t_env
        if self.progress:
            parts = [f"{k} {v:.3f}" for k, v in metrics.items() if not k.endswith("_std")]
            tqdm.write(f"[test t_env={self.t_env:>9,}] " + "  ".join(parts))
        return metrics


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
