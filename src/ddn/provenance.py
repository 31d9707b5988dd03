"""Which code produced a run: the git commit of ddn's source and whether its tree was
clean, with the library versions. A campaign spans days and code changes, so every
start and every resume of a run appends one record to ``<run>/provenance.jsonl``, and
``summary.json`` names the code that finished the run."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

import ddn
from ddn.run_folder import PROVENANCE_FILE


def _git(*args: str) -> str | None:
    source = Path(ddn.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):  # no git, or it hung
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """ddn's version and, when it runs from a git checkout, its commit and whether
    tracked files differ from it (untracked ones, such as run records, do not count).
    An installed wheel has no checkout: commit and dirty are then None."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "ddn": ddn.__version__,
        "commit": commit,
        "dirty": None if status is None else bool(status),
    }


def record_start(run_dir: Path, t_env: int) -> dict[str, Any]:
    """Append this process's start (or resume at ``t_env``) to the run's provenance."""
    entry = {
        "t_env": t_env,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        **code_version(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "host": platform.node(),
    }
    with (run_dir / PROVENANCE_FILE).open("a") as f:
        f.write(json.dumps(entry) + "\n")
    return entry
