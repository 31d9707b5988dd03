"""One environment copy behind a handle: in a worker process of its own, or in this one.

A :class:`ProcessHandle` starts a fresh interpreter running :func:`_worker_main`, which
builds the env from its factory and answers ``reset``/``step``/``call``/``close``; an
:class:`InlineHandle` makes the same calls in this process. Both sort every exception
the same way (:func:`is_game_failure`): the game behind the env failed
(:class:`WorkerFailed`: restart the copy) or the env's own code raised
(:class:`EnvRaised`: stop the run). These two are signals between a handle and
:class:`~ddn.envs.adapters.pool.MultiAgentEnvVec`, which turns them into a restart or a
public :class:`~ddn.envs.errors.EnvError`; they never reach the caller.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

_INFO_KEYS = ("n_agents", "obs_shape", "state_shape", "n_actions", "episode_limit")

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


#: Seconds a worker gets to close its env politely before it is killed (at shutdown).
CLOSE_GRACE_S = 10.0
#: Seconds to wait for a dead worker's exit code, to name it in the error.
EXIT_CODE_WAIT_S = 1.0
#: Seconds to wait for a killed worker to be reaped.
REAP_WAIT_S = 5.0


def _observe(env: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    obs = np.asarray(env.get_obs(), dtype=np.float32)
    state = np.asarray(env.get_state(), dtype=np.float32).reshape(-1)
    avail = np.asarray(env.get_avail_actions()).astype(bool)
    return obs, state, avail


def describe(exc: BaseException) -> str:
    """An exception with its traceback, as text that crosses the pipe into an error."""
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
    "from ddn.envs.adapters.worker import _worker_main; _worker_main(c)"
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
            conn.send(("error", (describe(exc), is_game_failure(exc))))
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
                conn.send(("error", (describe(exc), is_game_failure(exc))))
            break


class WorkerFailed(Exception):
    """A worker did not give a usable answer (crash, hang, a game failure): restart it."""


class EnvRaised(Exception):
    """The env's own code raised (the text is its traceback): stop, do not restart."""


class ProcessHandle:
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
            raise WorkerFailed(f"pipe to worker broken ({type(exc).__name__})") from None

    def recv(self, deadline: float) -> Any:
        try:
            if not self.conn.poll(max(0.0, deadline - time.monotonic())):
                raise WorkerFailed("no answer before the time-out (hung)")
            status, payload = self.conn.recv()
        except (OSError, EOFError) as exc:
            code = None
            with contextlib.suppress(Exception):
                code = self.proc.wait(EXIT_CODE_WAIT_S)
            raise WorkerFailed(f"worker died ({type(exc).__name__}, exit code {code})") from None
        if status != "ok":
            text, game_failure = payload
            if game_failure:
                raise WorkerFailed(f"the game failed: {text}")
            raise EnvRaised(text)
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
            self.proc.wait(REAP_WAIT_S)


def shutdown(handles: list[ProcessHandle | None]) -> None:
    """Polite ``close`` to every worker, then kill what is left (also run at exit)."""
    live = [h for h in handles if isinstance(h, ProcessHandle)]
    for h in live:
        with contextlib.suppress(Exception):
            h.conn.send(("close", None))
    deadline = time.monotonic() + CLOSE_GRACE_S
    for h in live:
        if h is not None:
            with contextlib.suppress(Exception):
                h.proc.wait(max(0.0, deadline - time.monotonic()))
            h.kill()


class InlineHandle:
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
                raise WorkerFailed(f"the game failed: {describe(exc)}") from None
            raise EnvRaised(describe(exc)) from None

    def recv(self, deadline: float) -> Any:
        return self._reply

    def kill(self) -> None:
        self.env.close()
