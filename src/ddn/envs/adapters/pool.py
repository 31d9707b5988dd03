"""Any PyMARL-style ``MultiAgentEnv`` as a ddn :class:`VecEnv`, one process per copy.

PyMARL, PyMARL2 and EPyMARL environments (SMAC's ``StarCraft2Env`` first of all) are
single, stateful Python objects with this interface::

    get_env_info() -> {"n_agents", "obs_shape", "state_shape", "n_actions", "episode_limit"}
    reset()                                   # v2 (EPyMARL >= 2): -> (obs, info)
    step(actions: list[int]) -> (reward, terminated, info)   # info may hold battle_won,
    #   v2: -> (obs, reward, terminated, truncated, info)     # episode_limit
    get_obs() -> [N][O]; get_state() -> [S]; get_avail_actions() -> [N][A]
    close()

:class:`MultiAgentEnvVec` runs ``B`` of them in lock-step and speaks the batched ddn
protocol (``ddn.envs.base``); one copy's worker is :mod:`ddn.envs.adapters.worker`.
With ``processes=True`` each copy lives in its own worker
process (a fresh interpreter, nothing forked from this one), so a game
that crashes or hangs cannot take the run down:

* an env whose own Python code raises in ``reset`` or ``step`` (or breaks the API)
  stops the run at once with an :class:`EnvError` carrying its traceback and the env's
  name: a restart would only repeat the bug. A lost connection or time-out, or an
  exception from StarCraft II's client libraries, says the *game* failed instead
  (:func:`is_game_failure`) and counts as a crash:
* a worker that dies, closes its pipe, reports a game failure or does not answer within
  ``step_timeout`` seconds is killed (with its whole process group: the StarCraft II
  binary it launched goes too) and restarted from the factory with a fresh seed;
* the episode it was playing is **dropped**: that environment is reported as finished
  (``truncated=True``, ``terminated=False``, ``won=False``, reward 0 for the step that
  failed, observations and state kept from the last good step), ``dropped[b]`` is set
  for the current batch of episodes, and the counters ``dropped_episodes`` and
  ``restarts`` grow. A collector that ignores ``dropped`` stores the broken episode as
  a time-out cut short at its last good step (a bootstrapped, unbiased-in-expectation
  partial episode); one that reads ``dropped`` can discard it;
* SMAC restarts StarCraft II by itself after a protocol error and then returns
  ``(0, True, {})``, which would read as a lost battle: a rise of the env's
  ``force_restarts`` attribute is therefore treated as a dropped episode too (no process
  restart needed);
* a crash during ``reset()`` restarts the worker and retries (``reset_attempts``
  times) without dropping anything: no episode had started.

The time-out follows PyMARL: ``info["episode_limit"]`` true, or ``episode_limit`` steps
without the env ending the episode itself, is ``truncated``; any other end is
``terminated``. ``won`` is ``info["battle_won"]``.

Seeds: the factory is called as ``factory(seed)`` with a seed drawn from
``self.generator`` (so a run's seed fixes every copy's seed, restarts included);
``self.seeds`` lists the seeds the current workers were built with.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ddn.envs.adapters.worker import (
    API_CHOICES,
    EnvRaised,
    InlineHandle,
    ProcessHandle,
    WorkerFailed,
    describe,
    shutdown,
)
from ddn.envs.base import EnvOutput, EnvSpec, VecEnv
from ddn.envs.errors import EnvError, WorkerError
from ddn.envs.registry import check_float, check_int

log = logging.getLogger(__name__)

#: Worker seeds are drawn from [0, this): non-negative and within a signed 32-bit int, so
#: any env constructor's ``seed`` argument takes them.
_SEED_BOUND = 2**31 - 1


class MultiAgentEnvVec(VecEnv):
    """``num_envs`` copies of a PyMARL ``MultiAgentEnv`` built by ``factory(seed)``.

    ``factory`` must be picklable when ``processes`` is true (a module-level function, a
    :class:`ImportFactory`, a ``functools.partial`` of one). Counters for the logs:
    ``restarts`` (workers restarted), ``dropped_episodes`` (episodes lost to a failure);
    ``dropped`` [B] bool marks the episodes of the current batch that were dropped.
    """

    expensive_copies = True

    def __init__(
        self,
        num_envs: int,
        seed: int = 0,
        device: str | torch.device = "cpu",
        *,
        factory: Callable[[int], Any],
        processes: bool = True,
        step_timeout: float = 60.0,
        reset_timeout: float = 600.0,
        start_timeout: float = 300.0,
        reset_attempts: int = 3,
        max_restarts: int = 1000,
        has_win_condition: bool = False,
        episode_limit: int | None = None,
        api: str = "auto",
        name: str | None = None,
    ):
        super().__init__(num_envs, seed, device)
        if api not in API_CHOICES:
            raise ValueError(f"parameter api must be one of {list(API_CHOICES)}, got {api!r}")
        self.factory = factory
        self.api = api
        #: How errors name the env: the factory's target, e.g. "envs:gymma_fn".
        self.name = name or getattr(factory, "target", None) or repr(factory)
        self.processes = bool(processes)
        self.step_timeout = check_float("step_timeout", step_timeout)
        self.reset_timeout = check_float("reset_timeout", reset_timeout)
        self.start_timeout = check_float("start_timeout", start_timeout)
        self.reset_attempts = check_int("reset_attempts", reset_attempts, 1)
        self.max_restarts = check_int("max_restarts", max_restarts, 0)
        self.restarts = 0
        self.dropped_episodes = 0
        b = num_envs
        self.seeds: list[int] = [0] * b
        self._handles: list[Any] = [None] * b
        self._finalizer = weakref.finalize(self, shutdown, self._handles)
        infos = self._start_all()
        info = infos[0]
        for i, other in enumerate(infos[1:], 1):
            if other != info:
                raise WorkerError(f"env copy {i} reports {other}, copy 0 reports {info}")
        self._info = info
        limit = info["episode_limit"] if episode_limit is None else episode_limit
        try:
            self.spec = EnvSpec(
                n_agents=check_int("n_agents", info["n_agents"], 1),
                obs_dim=check_int("obs_shape", _flat(info["obs_shape"]), 1),
                state_dim=check_int("state_shape", _flat(info["state_shape"]), 1),
                n_actions=check_int("n_actions", info["n_actions"], 1),
                episode_limit=check_int("episode_limit", limit, 1),
                has_win_condition=has_win_condition,
            )
        except (TypeError, ValueError) as exc:
            self.close()
            raise WorkerError(f"get_env_info() gave {info}: {exc}") from None
        n, o, s, a = self.spec.n_agents, self.spec.obs_dim, self.spec.state_dim, self.spec.n_actions
        self._obs = np.zeros((b, n, o), np.float32)
        self._state = np.zeros((b, s), np.float32)
        self._avail = np.ones((b, n, a), bool)
        self._t = np.zeros(b, np.int64)
        self._term = np.ones(b, bool)  # nothing runs before the first reset()
        self._trunc = np.zeros(b, bool)
        self._won = np.zeros(b, bool)
        self._dropped = np.zeros(b, bool)
        self._started = False

    # ------------------------------------------------------------------ workers
    def _draw_seed(self) -> int:
        return int(torch.randint(0, _SEED_BOUND, (1,), generator=self.generator))

    def _spawn(self, i: int) -> Any:
        self.seeds[i] = self._draw_seed()
        if self.processes:
            return ProcessHandle(self.factory, self.seeds[i], self.api)
        try:
            return InlineHandle(self.factory, self.seeds[i], self.api)
        except Exception as exc:
            self.close()
            raise WorkerError(f"could not build environment copy {i}: {describe(exc)}") from None

    def _start_all(self) -> list[dict]:
        for i in range(self.num_envs):
            self._handles[i] = self._spawn(i)
        deadline = time.monotonic() + self.start_timeout
        infos = []
        for i, h in enumerate(self._handles):
            try:
                infos.append(h.recv(deadline))
            except (WorkerFailed, EnvRaised) as exc:
                self.close()
                raise WorkerError(f"could not build environment copy {i}: {exc}") from None
        return infos

    def _restart(self, i: int, reason: str) -> None:
        """Kill worker ``i`` and build a new one (same spec), or give up with an error."""
        self.restarts += 1
        log.warning("environment worker %d failed (%s); restarting it", i, reason.strip())
        self._handles[i].kill()
        self._handles[i] = None
        if self.restarts > self.max_restarts:
            self.close()
            raise WorkerError(
                f"gave up after {self.restarts - 1} worker restarts (max_restarts); "
                f"last failure: {reason}"
            )
        self._handles[i] = self._spawn(i)
        try:
            info = self._handles[i].recv(time.monotonic() + self.start_timeout)
        except (WorkerFailed, EnvRaised) as exc:
            self.close()
            raise WorkerError(f"could not rebuild environment copy {i}: {exc}") from None
        if info != self._info:
            self.close()
            raise WorkerError(f"restarted copy {i} reports {info}, expected {self._info}")

    def _check(self, i: int, payload: tuple) -> tuple:
        obs, state, avail = payload
        spec = self.spec
        want = {
            "get_obs()": (obs, (spec.n_agents, spec.obs_dim)),
            "get_state()": (state, (spec.state_dim,)),
            "get_avail_actions()": (avail, (spec.n_agents, spec.n_actions)),
        }
        for name, (arr, shape) in want.items():
            if arr.shape != shape:
                raise WorkerError(
                    f"env copy {i}: {name} has shape {list(arr.shape)}, but get_env_info() "
                    f"promised {list(shape)}"
                )
        return payload

    # ------------------------------------------------------------------ protocol
    def reset(self) -> EnvOutput:
        b = self.num_envs
        pending = list(range(b))
        for attempt in range(self.reset_attempts):
            failed = []
            for i in pending:
                try:
                    self._handles[i].send("reset")
                except WorkerFailed as exc:
                    failed.append((i, str(exc)))
                except EnvRaised as exc:  # in-process envs raise here
                    self._stop(i, "reset()", exc)
            deadline = time.monotonic() + self.reset_timeout
            sent = [i for i in pending if i not in {f for f, _ in failed}]
            for i in sent:
                try:
                    self._obs[i], self._state[i], self._avail[i] = self._check(
                        i, self._handles[i].recv(deadline)
                    )
                except WorkerFailed as exc:
                    failed.append((i, str(exc)))
                except EnvRaised as exc:
                    self._stop(i, "reset()", exc)
            for i, reason in failed:
                self._restart(i, f"during reset (attempt {attempt + 1}): {reason}")
            pending = [i for i, _ in failed]
            if not pending:
                break
        else:
            self.close()
            raise WorkerError(
                f"environment copies {pending} failed to reset {self.reset_attempts} times"
            )
        self._t[:] = 0
        self._term[:] = False
        self._trunc[:] = False
        self._won[:] = False
        self._dropped[:] = False
        self._started = True
        return self._output(np.zeros(b, np.float32))

    def step(self, actions: torch.Tensor) -> EnvOutput:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        running = ~(self._term | self._trunc)
        self.validate_actions(actions, self._avail_t, torch.from_numpy(running).to(self.device))
        acts = actions.detach().cpu().numpy()
        reward = np.zeros(self.num_envs, np.float32)
        failed: dict[int, str] = {}
        live = np.flatnonzero(running).tolist()
        for i in live:
            try:
                self._handles[i].send("step", acts[i].tolist())
            except WorkerFailed as exc:
                failed[i] = str(exc)
            except EnvRaised as exc:  # in-process envs raise here
                self._stop(i, "step()", exc)
        deadline = time.monotonic() + self.step_timeout
        for i in live:
            if i in failed:
                continue
            try:
                r, term, (won, limit_hit), self_restarted, payload = self._handles[i].recv(deadline)
            except WorkerFailed as exc:
                failed[i] = str(exc)
                continue
            except EnvRaised as exc:
                self._stop(i, "step()", exc)
            if self_restarted:
                self._drop(i)
                log.warning("environment %d restarted itself; its episode is dropped", i)
                continue
            self._obs[i], self._state[i], self._avail[i] = self._check(i, payload)
            self._t[i] += 1
            timeout = limit_hit or (not term and self._t[i] >= self.spec.episode_limit)
            reward[i] = r
            self._term[i] = term and not timeout
            self._trunc[i] = timeout
            self._won[i] = won and (term or timeout)
        for i, reason in failed.items():
            self._drop(i)
            self._restart(i, reason)
        return self._output(reward)

    def call(self, method: str, timeout: float | None = None) -> list[Any]:
        """``method()`` on every copy, in its worker; its return values, by copy.

        For occasional calls between episodes (SMAC's ``save_replay``): a failure is an
        error, not a restart, since what the call was for cannot be redone.
        """
        deadline = time.monotonic() + (self.step_timeout if timeout is None else timeout)
        replies = []
        for i, handle in enumerate(self._handles):
            try:
                handle.send("call", method)
                replies.append(handle.recv(deadline))
            except (WorkerFailed, EnvRaised) as exc:
                raise WorkerError(f"env copy {i}: {method}() failed: {exc}") from None
        return replies

    def _stop(self, i: int, where: str, exc: EnvRaised) -> None:
        """The env's own code raised: close every copy and stop the run, no restart."""
        self.close()
        raise EnvError(
            f"environment {self.name} (copy {i}) raised in {where}; its traceback:\n{exc}"
        ) from None

    def _drop(self, i: int) -> None:
        """End env ``i``'s episode as a truncation at its last good step (module doc)."""
        self._term[i], self._trunc[i], self._won[i] = False, True, False
        self._dropped[i] = True
        self.dropped_episodes += 1

    @property
    def dropped(self) -> torch.Tensor:
        """[B] bool: episodes of the current batch dropped because their worker failed."""
        return torch.from_numpy(self._dropped.copy()).to(self.device)

    def _output(self, reward: np.ndarray) -> EnvOutput:
        dev = self.device
        self._avail_t = torch.from_numpy(self._avail.copy()).to(dev)
        return EnvOutput(
            obs=torch.from_numpy(self._obs.copy()).to(dev),
            state=torch.from_numpy(self._state.copy()).to(dev),
            avail=self._avail_t,
            reward=torch.from_numpy(reward).to(dev),
            terminated=torch.from_numpy(self._term.copy()).to(dev),
            truncated=torch.from_numpy(self._trunc.copy()).to(dev),
            won=torch.from_numpy(self._won.copy()).to(dev),
        )

    def close(self) -> None:
        """Close every copy (politely, then by force); safe to call twice."""
        if self.processes:
            self._finalizer()
        else:
            for h in self._handles:
                if h is not None:
                    h.kill()
        for i in range(len(self._handles)):
            self._handles[i] = None


def _flat(shape: Any) -> Any:
    """``obs_shape`` may be an int or a shape tuple (flattened)."""
    if isinstance(shape, list | tuple):
        return int(np.prod(shape))
    if isinstance(shape, np.integer):
        return int(shape)
    return shape
