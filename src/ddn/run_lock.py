"""One process per run folder: the lock that keeps two from writing one run.

Two processes training into the same folder (a sweep started twice, ``ddn train
--resume`` beside a sweep that resumes the same run) would interleave their logs and
checkpoints and could delete each other's files: a fresh run clears the folder first.
So a training process holds an exclusive ``flock`` on ``.<run>.lock`` beside the folder
for as long as it trains; a second one is refused with one line naming the holder.

The lock file sits beside the folder, not in it, because a fresh run deletes what the
folder holds; it is never removed (removing a lock file races with the next process
that opens it), and the kernel drops the lock when its process ends, even by SIGKILL,
so a dead process never leaves a folder locked. Where ``fcntl`` does not exist
(Windows) there is no lock.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ddn.config import ConfigError
from ddn.run_folder import unwritable

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]

# The locks this process holds, by lock file, with how often each is entered: the sweep's
# worker holds a run's lock around the experiment, which takes it again.
_held: dict[Path, tuple[IO[str], int]] = {}


class RunInUseError(ConfigError):
    """The run folder is being trained into by another process."""


def lock_path(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir).absolute()
    return run_dir.parent / f".{run_dir.name}.lock"


def _take(fh: IO[str]) -> str | None:
    """Take the lock on ``fh``: None when taken, else the holder's pid as it wrote it."""
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        return fh.read().strip()
    return None


def holder(run_dir: str | Path) -> int | None:
    """The PID of the process training into ``run_dir`` now (-1 when it wrote none), or
    None when none is."""
    path = lock_path(run_dir)
    if fcntl is None or path in _held or not path.exists():
        return None
    try:
        fh = path.open("a+")
    except OSError:  # unreadable here (permissions): training it will say so
        return None
    with fh:  # closing it releases a lock taken here
        owner = _take(fh)
    if owner is None:
        return None
    return int(owner) if owner.isdigit() else -1


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock (re-entrant within a process); :class:`RunInUseError` when
    another process holds it."""
    path = lock_path(run_dir)
    if fcntl is None:
        yield
        return
    if path in _held:
        fh, depth = _held[path]
        _held[path] = (fh, depth + 1)
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = path.open("a+")
        except OSError as exc:
            raise unwritable(run_dir, exc) from None
        owner = _take(fh)
        if owner is not None:
            fh.close()
            raise RunInUseError(
                f"run folder {Path(run_dir)} is in use by another ddn process (pid "
                f"{owner or 'unknown'}); two processes must not train into one run: wait for "
                "it to end or stop it"
            )
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        _held[path] = (fh, 1)
    try:
        yield
    finally:
        fh, depth = _held[path]
        if depth > 1:
            _held[path] = (fh, depth - 1)
        else:
            del _held[path]
            fh.close()  # releases the lock
