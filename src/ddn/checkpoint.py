"""Checkpoints: ``<run>/checkpoints/<t_env>/`` written atomically, verified, read safely.

A checkpoint is first written to a hidden temporary folder beside the final one, with
``manifest.json`` (each file's size and SHA-256) written last, and renamed into place
(a rename is atomic on POSIX). A temporary folder holding a manifest is complete: if a
crash falls between the two renames of a same-``t_env`` re-save (the old folder moved
aside, the new one not yet in place), that folder is the checkpoint, so a crash at any
point of a save leaves exactly one usable latest checkpoint. Loading checks every file
against the manifest, so bytes changed after the save (disk or copy errors) are refused.
Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only,
never arbitrary pickled objects.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

CHECKPOINTS_FOLDER = "checkpoints"  # in the run folder (ddn.run_folder lists its files)
STATE_FILE = "state.pt"
BUFFER_FILE = "buffer.pt"
MANIFEST_FILE = "manifest.json"
# Bytes hashed per read when a checkpoint is verified: large enough to keep the per-call
# overhead negligible on a multi-GB buffer.pt, small enough to stream it.
_HASH_CHUNK = 1 << 22


# What every damaged-checkpoint message ends with.
_FIX = (
    "Delete that checkpoint folder to fall back to an earlier one, "
    "or pass --checkpoint with another t_env."
)


class CheckpointError(ValueError):
    """A missing, corrupt or mismatched checkpoint; the message names the fix."""


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / CHECKPOINTS_FOLDER


def _folders(run_dir: Path) -> dict[int, Path]:
    """``t_env`` -> folder of every complete checkpoint.

    Numbered folders are complete (they only appear by renaming a complete temporary
    folder; folders written before manifests existed count when they hold state.pt). A
    complete temporary folder whose number is missing is a save cut between its renames.
    """
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return {}
    found: dict[int, Path] = {}
    pending: dict[int, Path] = {}
    for p in root.iterdir():
        if p.name.isdigit():
            if (p / MANIFEST_FILE).is_file() or (p / STATE_FILE).is_file():
                found[int(p.name)] = p
        elif p.name.startswith(".tmp-") and (p / MANIFEST_FILE).is_file():
            t = p.name.split("-")[1]
            if t.isdigit():
                pending[int(t)] = p
    return {**{t: p for t, p in pending.items() if t not in found}, **found}


def list_checkpoints(run_dir: Path) -> list[int]:
    """``t_env`` of every complete checkpoint of a run, ascending."""
    return sorted(_folders(run_dir))


class _HashingWriter:
    """What ``torch.save`` writes through: hashes and counts the bytes on their way."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            written = self.file.write(data)
        except OSError as exc:
            self.error = exc  # torch's cleanup may replace it with its own RuntimeError
            raise
        self.sha256.update(data)
        self.size += memoryview(data).nbytes
        return written

    def flush(self) -> None:
        self.file.flush()


def _fsync_write(path: Path, obj: Any) -> dict[str, Any]:
    """Write ``obj`` durably; returns its manifest entry. A failing write (no space, no
    permission) raises the OSError itself, not the RuntimeError torch's serializer turns
    it into."""
    with path.open("wb") as f:
        writer = _HashingWriter(f)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is not None:
                raise writer.error from None
            raise
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": writer.size, "sha256": writer.sha256.hexdigest()}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _finish_interrupted_saves(root: Path) -> None:
    """Move a complete save cut between its renames into place; drop other leftovers
    of saves killed midway (possibly holding a large buffer.pt)."""
    numbered = {p.name for p in root.iterdir() if p.name.isdigit()}
    for tmp in sorted(root.glob(".tmp-*")):
        t = tmp.name.split("-")[1]
        if (tmp / MANIFEST_FILE).is_file() and t.isdigit() and t not in numbered:
            tmp.rename(root / t)
            numbered.add(t)
    for stale in [*root.glob(".tmp-*"), *root.glob(".old-*")]:
        shutil.rmtree(stale, ignore_errors=True)


def save_checkpoint(
    run_dir: Path,
    t_env: int,
    state: dict[str, Any],
    buffer: dict[str, Any] | None = None,
    keep: int = 0,
) -> Path:
    """Write checkpoint ``t_env``; then keep only the newest ``keep`` (0: all).

    A write that fails (OSError: no space, no permission) removes its partial files and
    re-raises, leaving the previous checkpoints as they were.
    """
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    _finish_interrupted_saves(root)
    final = root / str(t_env)
    tmp = root / f".tmp-{t_env}-{os.getpid()}"
    try:
        tmp.mkdir()
        files = {STATE_FILE: _fsync_write(tmp / STATE_FILE, state)}
        if buffer is not None:
            files[BUFFER_FILE] = _fsync_write(tmp / BUFFER_FILE, buffer)
        manifest = tmp / MANIFEST_FILE
        with manifest.open("w") as f:  # written last: its presence marks tmp complete
            json.dump({"t_env": t_env, "files": files}, f)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
    except BaseException as exc:  # a failed write, or a second Ctrl-C: no partial files
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.filename is None:  # a write() names no file
            exc.filename = str(final)
        raise
    if final.exists():  # same t_env saved twice (e.g. stopped right after a save)
        old = root / f".old-{t_env}-{os.getpid()}"
        final.rename(old)
        tmp.rename(final)  # a crash before this line leaves tmp, complete, as the latest
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    _fsync_dir(root)
    if keep > 0:
        for t in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(root / str(t), ignore_errors=True)
    return final


def unreadable_reason(exc: BaseException) -> str:
    """One line for a file ``torch.load`` refused. Its unpickling messages span many
    lines (with ANSI codes) and advise ``weights_only=False``, which a corrupt or foreign
    file must not get."""
    if isinstance(exc, pickle.UnpicklingError):
        return "not a tensors-only torch file"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _load(path: Path) -> dict[str, Any]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad files
        raise CheckpointError(
            f"checkpoint file {path} is corrupt or unreadable ({unreadable_reason(exc)}). {_FIX}"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint file {path} does not hold a ddn checkpoint")
    return data


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(folder: Path) -> list[str]:
    """Check the folder's files against its manifest; the names it lists."""
    manifest = folder / MANIFEST_FILE
    if not manifest.is_file():  # written before checksums existed
        return [name for name in (STATE_FILE, BUFFER_FILE) if (folder / name).is_file()]
    try:
        files = json.loads(manifest.read_text())["files"]
        entries = [(str(name), int(e["bytes"]), str(e["sha256"])) for name, e in files.items()]
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise CheckpointError(f"checkpoint manifest {manifest} is corrupt. {_FIX}") from None
    for name, size, sha in entries:
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {path} is missing. {_FIX}")
        if path.stat().st_size != size or _sha256(path) != sha:
            raise CheckpointError(
                f"checkpoint file {path} fails its checksum: its bytes changed after it "
                f"was written (disk or copy error). {_FIX}"
            )
    return [name for name, _, _ in entries]


def load_checkpoint(run_dir: Path, t_env: int | None = None) -> tuple[int, dict, dict | None]:
    """(t_env, state, buffer-or-None) of checkpoint ``t_env`` (default: the latest)."""
    folders = _folders(run_dir)
    available = sorted(folders)
    if not available:
        raise CheckpointError(
            f"no checkpoint in {checkpoint_dir(run_dir)}; a run saves one every "
            "save_model_interval steps and when stopped with Ctrl-C or SIGTERM"
        )
    if t_env is None:
        t_env = available[-1]
    elif t_env not in available:
        raise CheckpointError(
            f"no checkpoint at t_env={t_env} in {run_dir}; available: {available}"
        )
    folder = folders[t_env]
    names = _verify(folder)
    state = _load(folder / STATE_FILE)
    buffer = _load(folder / BUFFER_FILE) if BUFFER_FILE in names else None
    return t_env, state, buffer


def _float_tensors(tree: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(tree, torch.Tensor):
        if tree.is_floating_point():
            yield prefix, tree
        return
    if isinstance(tree, dict):
        items: Any = tree.items()
    elif isinstance(tree, list | tuple):
        items = enumerate(tree)
    else:
        return
    for key, value in items:
        yield from _float_tensors(value, f"{prefix}.{key}" if prefix else str(key))


def nonfinite_tensors(tree: Any) -> list[str]:
    """Dotted names of the floating-point tensors in ``tree`` (nested dicts and lists,
    e.g. a learner's state dict) holding a NaN or an infinity. One device sync per
    device when all are finite, the common case checked after every update."""
    named = list(_float_tensors(tree))
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for _, x in named:
        by_device.setdefault(x.device, []).append(torch.isfinite(x).all())
    if all(bool(torch.stack(flags).all()) for flags in by_device.values()):
        return []
    return [name for name, x in named if not bool(torch.isfinite(x).all())]
