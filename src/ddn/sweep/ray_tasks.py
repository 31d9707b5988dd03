"""``ddn sweep --ray``: each run a Ray task holding the run's ``threads`` CPUs and
``gpus`` GPUs (a fraction is allowed) that starts the run's process. The output folder
must be on a file system the Ray workers share (always true for a local Ray instance)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ddn.config import ConfigError
from ddn.sweep.spec import RunSpec
from ddn.sweep.worker import ERROR_CHARS, EXIT_FAILED, execute_run

# How long one ray.wait blocks for a task to end before the progress line is updated.
WAIT_S = 1.0


def import_ray() -> Any:
    """Ray, or one ConfigError naming the extra."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--ray needs Ray, an optional extra: pip install 'ddn[ray]' (or pip install 'ray>=2.9')"
        ) from None
    return ray


class RayTasks:
    """Runs as Ray tasks on ``address`` (``"local"``: a Ray instance started here)."""

    stopping = "runs write a checkpoint and exit"

    def __init__(self, address: str, limit: int) -> None:
        self.address, self.limit = address, limit
        self.where = f"on Ray ({address})"
        self._ray: Any = None
        self._remote: Any = None

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Joins Ray if this process is not connected yet (and leaves it at the end)."""
        ray = self._ray = import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False}
            if self.address == "local":
                kwargs["include_dashboard"] = False
            else:
                kwargs["address"] = self.address
            ray.init(**kwargs)
        self._remote = ray.remote(execute_run)
        try:
            yield
        finally:
            if started_here:
                ray.shutdown()

    def submit(self, spec: RunSpec, run_dir: Path, log: Path) -> Any:
        options = self._remote.options(num_cpus=spec.threads, num_gpus=spec.gpus)
        return options.remote(asdict(spec), str(run_dir.resolve()), str(log.resolve()))

    def poll(self, running: dict[str, Any]) -> list[tuple[str, int, str]]:
        names = {task: name for name, task in running.items()}
        ready, _ = self._ray.wait(list(names), num_returns=1, timeout=WAIT_S)
        done = []
        for task in ready:
            try:
                done.append((names[task], int(self._ray.get(task)), ""))
            except Exception as exc:  # the task itself died (worker lost, ...)
                done.append((names[task], EXIT_FAILED, f"Ray task error: {exc}"[:ERROR_CHARS]))
        return done

    def stop(self, running: dict[str, Any]) -> dict[str, int]:
        """Cancel every task: a KeyboardInterrupt in the task, which passes SIGINT on to
        its run (checkpoint, exit); wait for them to end."""
        for task in running.values():
            self._ray.cancel(task)
        for task in running.values():
            with contextlib.suppress(Exception):
                self._ray.get(task)
        return {}
