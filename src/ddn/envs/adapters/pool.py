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
protocol (``ddn.envs.base``). With ``processes=True`` each copy lives in its own worker
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

import contextlib
import importlib
import logging
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ddn.envs.base import EnvOutput, EnvSpec, VecEnv
from ddn.envs.registry import check_float, check_int, register

log = logging.getLogger(__name__)

_INFO_KEYS = ("n_agents", "obs_shape", "state_shape", "n_actions", "episode_limit")


class WorkerError(RuntimeError, ValueError):
    """An environment could not be built or keeps failing.

    Also a ``ValueError``, so ``ddn train`` shows the worker's own message as a one-line
    configuration error (a bad map name, a missing package) rather than a traceback.
    """


class EnvError(RuntimeError):
    """The env's own Python code raised in ``reset()`` or ``step()`` (or broke the API).

    Not a crash of a game process, which restarts the worker: a bug that a restart
    would only repeat. The message names the env and the copy and carries the env's
    own traceback; ``ddn train`` prints it and stops.
    """


#: Where exceptions come from when the game behind an env died or stopped answering
#: (StarCraft II's client libraries): a restart can cure those.
_GAME_CLIENT_MODULES = ("pysc2", "websocket", "s2clientprotocol")


def is_game_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the game process behind the env failed (restart the worker)
    rather than the env's Python code (stop the run): a lost connection or time-out, or
    an exception from a game client library, anywhere in its chain of causes."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ConnectionError | TimeoutError | EOFError):
            return True
        if type(e).__module__.split(".")[0] in _GAME_CLIENT_MODULES:
            return True
        e = e.__cause__ or e.__context__
    return False


# ---------------------------------------------------------------------------- factories


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


# ------------------------------------------------------------------------------ workers


def _observe(env: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    obs = np.asarray(env.get_obs(), dtype=np.float32)
    state = np.asarray(env.get_state(), dtype=np.float32).reshape(-1)
    avail = np.asarray(env.get_avail_actions()).astype(bool)
    return obs, state, avail


def _describe(exc: BaseException) -> str:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return f"{type(exc).__name__}: {exc}\n{''.join(tb)}"


API_CHOICES = ("auto", "v1", "v2")


class _Env:
    """Calls into one env and packs the replies; shared by both back-ends.

    ``api``: ``v1`` (PyMARL, SMAC: ``step -> (reward, terminated, info)``), ``v2``
    (EPyMARL >= 2: ``step -> (obs, reward, terminated, truncated, info)``, ``reset ->
    (obs, info)``) or ``auto``: told apart by the number of values ``step`` returns.
    Either way observations, state and masks are read back with ``get_obs()``,
    ``get_state()`` and ``get_avail_actions()``, which both APIs have, and ``reset()``'s
    return value is not used (SMAC's v1 ``reset`` returns ``(obs, state)``, as long as
    v2's ``(obs, info)``).
    """

    def __init__(self, env: Any, api: str = "auto"):
        self.env = env
        self.api = api

    def info(self) -> dict[str, Any]:
        info = dict(self.env.get_env_info())
        return {k: info.get(k) for k in _INFO_KEYS}

    def reset(self) -> tuple:
        self.env.reset()
        return _observe(self.env)

    def step(self, actions: list[int]) -> tuple:
        before = getattr(self.env, "force_restarts", None)
        reward, terminated, truncated, info = self._unpack(self.env.step(actions))
        after = getattr(self.env, "force_restarts", None)
        info = info or {}
        timeout = truncated or bool(info.get("episode_limit", False))
        flags = (bool(info.get("battle_won", False)), timeout)
        return (reward, terminated, flags, before != after, _observe(self.env))

    def _unpack(self, out: Any) -> tuple[float, bool, bool, dict]:
        """(team reward, terminated, truncated, info) from a v1 or v2 ``step`` result."""
        n = len(out) if isinstance(out, tuple | list) else None
        want = {"v1": (3,), "v2": (5,), "auto": (3, 5)}[self.api]
        if n not in want:
            raise TypeError(
                f"step() returned {n if n is not None else type(out).__name__} values; "
                f"env.api={self.api} expects "
                + " or ".join({3: "3 (v1: reward, terminated, info)",
                               5: "5 (v2: obs, reward, terminated, truncated, info)"}[k]
                              for k in want)
            )  # fmt: skip
        if n == 3:
            reward, terminated, info = out
            truncated: Any = False
        else:
            _, reward, terminated, truncated, info = out
        if np.ndim(reward) != 0:
            raise ValueError(
                f"step() returned one reward per agent ({np.asarray(reward).tolist()}); ddn "
                "learns from one team reward: build the env with common_reward=True (EPyMARL: "
                "env.factory_kwargs={common_reward: true, reward_scalarisation: sum})"
            )
        # Per-agent flags (a list) end the episode when every agent is done.
        return float(reward), bool(np.all(terminated)), bool(np.any(truncated)), info

    def call(self, method: str) -> Any:
        """Another method of the env, without arguments (SMAC's ``save_replay``)."""
        fn = getattr(self.env, method, None)
        if not callable(fn):
            raise AttributeError(f"{type(self.env).__name__} has no method {method}()")
        return fn()

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if close is not None:
            close()


_CHILD_BOOT = (
    "import sys; from multiprocessing.connection import Connection; "
    "c = Connection(int(sys.argv[1])); sys.path[:] = c.recv(); "
    "from ddn.envs.workers import _worker_main; _worker_main(c)"
)


def _worker_main(conn: Any) -> None:
    """A worker process: build the env, then answer ``(command, arg)`` until ``close``.

    The parent sends ``(factory, seed, api)`` first. Replies are ``("ok", payload)`` or
    ``("error", (text, game_failure))``; after an error the worker exits, and the parent
    restarts it (a game failure) or stops the run (the env's own error).
    """
    # Ctrl-C and SIGTERM (sent to the whole job by Slurm) are the parent's business: it
    # checkpoints, then stops its workers with SIGKILL.
    with contextlib.suppress(Exception):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        factory, seed, api = conn.recv()
        env = _Env(factory(seed), api)
        conn.send(("ok", env.info()))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send(("error", (_describe(exc), is_game_failure(exc))))
        return
    while True:
        try:
            cmd, arg = conn.recv()
        except (EOFError, OSError):
            break
        try:
            if cmd == "close":
                env.close()
                conn.send(("ok", None))
                break
            payload = (
                env.reset() if cmd == "reset" else env.call(arg) if cmd == "call" else env.step(arg)
            )
            conn.send(("ok", payload))
        except BaseException as exc:
            with contextlib.suppress(Exception):
                conn.send(("error", (_describe(exc), is_game_failure(exc))))
            break


class _Failure(Exception):
    """A worker did not give a usable answer (crash, hang, a game failure): restart it."""


class _EnvRaised(Exception):
    """The env's own code raised (the text is its traceback): stop, do not restart."""


class _ProcessHandle:
    """One worker process and its socket.

    Started as a fresh ``python -c`` (not ``multiprocessing``): nothing of this process
    is forked (torch threads, CUDA), and unlike ``spawn`` the caller's ``__main__`` is
    not re-imported, so a script without an ``if __name__ == "__main__"`` guard works.
    The worker gets its own session, hence its own process group: killing the group
    also stops whatever the env launched (the StarCraft II binary).
    """

    def __init__(self, factory: Callable[[int], Any], seed: int, api: str = "auto"):
        self.conn, child = mp.Pipe(duplex=True)
        fd = child.fileno()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD_BOOT, str(fd)],
                pass_fds=(fd,),
                start_new_session=True,
            )
        finally:
            child.close()
        self.send("boot", None, raw=list(sys.path))
        self.send("boot", None, raw=(factory, seed, api))

    def send(self, cmd: str, arg: Any = None, raw: Any = None) -> None:
        try:
            self.conn.send((cmd, arg) if raw is None else raw)
        except (OSError, EOFError, ValueError) as exc:
            raise _Failure(f"pipe to worker broken ({type(exc).__name__})") from None

    def recv(self, deadline: float) -> Any:
        try:
            if not self.conn.poll(max(0.0, deadline - time.monotonic())):
                raise _Failure("no answer before the time-out (hung)")
            status, payload = self.conn.recv()
        except (OSError, EOFError) as exc:
            code = None
            with contextlib.suppress(Exception):
                code = self.proc.wait(1)
            raise _Failure(f"worker died ({type(exc).__name__}, exit code {code})") from None
        if status != "ok":
            text, game_failure = payload
            if game_failure:
                raise _Failure(f"the game failed: {text}")
            raise _EnvRaised(text)
        return payload

    def kill(self) -> None:
        """Kill the worker's process group (what it launched too), then reap it."""
        with contextlib.suppress(Exception):
            self.conn.close()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                with contextlib.suppress(Exception):
                    self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(5)


def _shutdown(handles: list[_ProcessHandle | None]) -> None:
    """Polite ``close`` to every worker, then kill what is left (also run at exit)."""
    live = [h for h in handles if isinstance(h, _ProcessHandle)]
    for h in live:
        with contextlib.suppress(Exception):
            h.conn.send(("close", None))
    deadline = time.monotonic() + 10.0
    for h in live:
        if h is not None:
            with contextlib.suppress(Exception):
                h.proc.wait(max(0.0, deadline - time.monotonic()))
            h.kill()


class _InlineHandle:
    """The same calls in this process (cheap envs): no isolation from crashes, but an
    exception is sorted into a game failure or the env's own error as in a worker."""

    def __init__(self, factory: Callable[[int], Any], seed: int, api: str = "auto"):
        self.env = _Env(factory(seed), api)
        self._reply: Any = self.env.info()

    def send(self, cmd: str, arg: Any = None) -> None:
        try:
            if cmd == "call":
                self._reply = self.env.call(arg)
            else:
                self._reply = self.env.reset() if cmd == "reset" else self.env.step(arg)
        except Exception as exc:
            if is_game_failure(exc):
                raise _Failure(f"the game failed: {_describe(exc)}") from None
            raise _EnvRaised(_describe(exc)) from None

    def recv(self, deadline: float) -> Any:
        return self._reply

    def kill(self) -> None:
        self.env.close()


# ------------------------------------------------------------------------------ the env


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
        self._finalizer = weakref.finalize(self, _shutdown, self._handles)
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
        return int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator))

    def _spawn(self, i: int) -> Any:
        self.seeds[i] = self._draw_seed()
        if self.processes:
            return _ProcessHandle(self.factory, self.seeds[i], self.api)
        try:
            return _InlineHandle(self.factory, self.seeds[i], self.api)
        except Exception as exc:
            self.close()
            raise WorkerError(f"could not build environment copy {i}: {_describe(exc)}") from None

    def _start_all(self) -> list[dict]:
        for i in range(self.num_envs):
            self._handles[i] = self._spawn(i)
        deadline = time.monotonic() + self.start_timeout
        infos = []
        for i, h in enumerate(self._handles):
            try:
                infos.append(h.recv(deadline))
            except (_Failure, _EnvRaised) as exc:
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
        except (_Failure, _EnvRaised) as exc:
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
                except _Failure as exc:
                    failed.append((i, str(exc)))
                except _EnvRaised as exc:  # in-process envs raise here
                    self._stop(i, "reset()", exc)
            deadline = time.monotonic() + self.reset_timeout
            sent = [i for i in pending if i not in {f for f, _ in failed}]
            for i in sent:
                try:
                    self._obs[i], self._state[i], self._avail[i] = self._check(
                        i, self._handles[i].recv(deadline)
                    )
                except _Failure as exc:
                    failed.append((i, str(exc)))
                except _EnvRaised as exc:
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
            except _Failure as exc:
                failed[i] = str(exc)
            except _EnvRaised as exc:  # in-process envs raise here
                self._stop(i, "step()", exc)
        deadline = time.monotonic() + self.step_timeout
        for i in live:
            if i in failed:
                continue
            try:
                r, term, (won, limit_hit), self_restarted, payload = self._handles[i].recv(deadline)
            except _Failure as exc:
                failed[i] = str(exc)
                continue
            except _EnvRaised as exc:
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
            except (_Failure, _EnvRaised) as exc:
                raise WorkerError(f"env copy {i}: {method}() failed: {exc}") from None
        return replies

    def _stop(self, i: int, where: str, exc: _EnvRaised) -> None:
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


# ------------------------------------------------------------------ the "pymarl" entry


@register(
    "pymarl",
    "any PyMARL or EPyMARL (v1 or v2 API) MultiAgentEnv from a 'module:callable' factory",
)
class PyMARLEnv(MultiAgentEnvVec):
    """Bring your own PyMARL or EPyMARL ``MultiAgentEnv``:
    ``factory(**factory_kwargs, seed=...)``.

    ``api`` is the env's ``step``/``reset`` API: ``v1`` (PyMARL, SMAC), ``v2`` (EPyMARL
    >= 2: gymma, SMACv2, VMAS wrappers) or ``auto`` (from what ``step`` returns).
    ``python_path`` entries (e.g. a PyMARL checkout's ``src``) are made importable in the
    workers and here; ``seed_arg`` names the constructor's seed argument ("" for none).
    ``has_win_condition`` makes the logs report ``info["battle_won"]`` as a win rate.
    """

    def __init__(
        self,
        num_envs: int = 1,
        seed: int = 0,
        device: str | torch.device = "cpu",
        *,
        factory: str = "",
        factory_kwargs: dict | None = None,
        seed_arg: str = "seed",
        python_path: list | None = None,
        processes: bool = True,
        step_timeout: float = 60.0,
        reset_timeout: float = 600.0,
        max_restarts: int = 1000,
        has_win_condition: bool = False,
        api: str = "auto",
    ):
        if not factory:
            raise ValueError(
                "environment 'pymarl' needs env.factory='module:callable' (a function or "
                "class returning a PyMARL MultiAgentEnv), e.g. --set env.factory=my_envs:make"
            )
        if factory_kwargs is not None and not isinstance(factory_kwargs, dict):
            raise ValueError(f"parameter factory_kwargs must be a mapping, got {factory_kwargs!r}")
        paths = tuple(os.path.abspath(p) for p in (python_path or []))
        made = ImportFactory(str(factory), dict(factory_kwargs or {}), seed_arg or None, paths)
        for p in reversed(paths):
            if p not in sys.path:
                sys.path.insert(0, p)
        resolve_target(made.target)  # a typo is reported here, before any worker starts
        super().__init__(
            num_envs,
            seed,
            device,
            factory=made,
            processes=processes,
            step_timeout=step_timeout,
            reset_timeout=reset_timeout,
            max_restarts=max_restarts,
            has_win_condition=has_win_condition,
            api=api,
        )
