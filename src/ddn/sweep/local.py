"""The local pool: each run a subprocess of this one, ``workers`` at once."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ddn.sweep.spec import RunSpec
from ddn.sweep.worker import start

# How long the loop sleeps when no run has ended: runs last seconds to days, and a
# check costs one waitpid per run.
POLL_S = 0.2


class LocalPool:
    """Runs as local processes; SIGTERM to the sweep stops them as Ctrl-C does."""

    stopping = "runs write a checkpoint and exit"

    def __init__(self, workers: int) -> None:
        self.limit = workers
        self.where = f"{workers} local workers"

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        def _stop(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, _stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def submit(self, spec: RunSpec, run_dir: Path, log: Path) -> subprocess.Popen:
        return start(spec, run_dir, log)

    def poll(self, running: dict[str, subprocess.Popen]) -> list[tuple[str, int, str]]:
        ended = [(name, proc.poll(), "") for name, proc in running.items()]
        done = [(name, code, error) for name, code, error in ended if code is not None]
        if not done:
            time.sleep(POLL_S)
        return done

    def stop(self, running: dict[str, subprocess.Popen]) -> dict[str, int]:
        """SIGINT to every run (each is in its own session, so a terminal's Ctrl-C
        reaches only the sweep): each finishes its iteration, checkpoints and exits. A
        second Ctrl-C meanwhile kills them."""
        for proc in running.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        codes: dict[str, int] = {}
        try:
            for name, proc in running.items():
                codes[name] = proc.wait()
        except KeyboardInterrupt:
            for proc in running.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        return codes
