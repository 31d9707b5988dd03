"""Checkpoints: ``<run>/checkpoints/<t_env>/`` written atomically, read safely.

A checkpoint is first written to a hidden temporary folder beside the final one and
renamed into place (a rename is atomic on POSIX), so a crash mid-save leaves the last
good checkpoint untouched. Files are read with ``torch.load(weights_only=True)``:
tensors and plain containers only, never arbitrary pickled objects.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"
BUFFER_FILE = "buffer.pt"


class CheckpointError(ValueError):
    """A missing, corrupt or mismatched checkpoint; the message names the fix."""


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[int]:
    """``t_env`` of every complete checkpoint of a run, ascending."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    return sorted(
        int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / STATE_FILE).is_file()
    )


def _fsync_write(path: Path, obj: Any) -> None:
    with path.open("wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(
    run_dir: Path, t_env: int, state: dict[str, Any], buffer: dict[str, Any] | None = None
) -> Path:
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / str(t_env)
    # Leftovers of saves killed midway (possibly holding a large buffer.pt).
    for stale in [*root.glob(".tmp-*"), *root.glob(".old-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".tmp-{t_env}-{os.getpid()}"
    tmp.mkdir()
    _fsync_write(tmp / STATE_FILE, state)
    if buffer is not None:
        _fsync_write(tmp / BUFFER_FILE, buffer)
    if final.exists():  # same t_env saved twice (e.g. Ctrl-C right after a save)
        old = root / f".old-{t_env}-{os.getpid()}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final


def _load(path: Path) -> dict[str, Any]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad files
        # One line: torch's unpickling messages span many lines (with ANSI codes) and
        # advise weights_only=False, which a corrupt or foreign file must not get.
        if isinstance(exc, pickle.UnpicklingError):
            reason = "not a tensors-only torch file"
        else:
            lines = str(exc).strip().splitlines()
            reason = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        raise CheckpointError(
            f"checkpoint file {path} is corrupt or unreadable ({reason}). "
            "Delete that checkpoint folder to fall back to an earlier one, "
            "or pass --checkpoint with another t_env."
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint file {path} does not hold a ddn checkpoint")
    return data


def load_checkpoint(run_dir: Path, t_env: int | None = None) -> tuple[int, dict, dict | None]:
    """(t_env, state, buffer-or-None) of checkpoint ``t_env`` (default: the latest)."""
    available = list_checkpoints(run_dir)
    if not available:
        raise CheckpointError(
            f"no checkpoint in {checkpoint_dir(run_dir)}; a run saves one every "
            "save_model_interval steps and when stopped with Ctrl-C"
        )
    if t_env is None:
        t_env = available[-1]
    elif t_env not in available:
        raise CheckpointError(
            f"no checkpoint at t_env={t_env} in {run_dir}; available: {available}"
        )
    folder = checkpoint_dir(run_dir) / str(t_env)
    state = _load(folder / STATE_FILE)
    buffer = _load(folder / BUFFER_FILE) if (folder / BUFFER_FILE).is_file() else None
    return t_env, state, buffer
