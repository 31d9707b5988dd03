"""Where a sweep stands: each run folder's state, each run's outcome, the progress line
and ``sweep_status.json``."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ddn.config import ConfigError, differing_keys
from ddn.run_folder import RunFolder
from ddn.sweep.spec import RunSpec, Sweep

RunState = Literal["finished", "resume", "new"]
STATUS_FILE = "sweep_status.json"
# A run another process trains into now (its folder's lock is held): this sweep leaves it.
IN_USE = "in use"
# The progress line is printed when something changes (a run starts or ends) and at
# most this often otherwise: often enough to watch, rare enough for a log file.
PROGRESS_EVERY_S = 5.0


def run_state(run_dir: Path) -> tuple[RunState, int | None]:
    """('finished' | 'resume' | 'new', latest checkpoint t_env)."""
    folder = RunFolder(run_dir)
    if folder.finished():
        return "finished", None
    found = folder.checkpoints()
    if found:
        return "resume", found[-1]
    return "new", None


def check_existing(spec: RunSpec, run_dir: Path) -> None:
    """A run folder left by an earlier version of the sweep file must not be mixed in."""
    folder = RunFolder(run_dir)
    if not folder.is_run():
        return
    try:
        old = folder.config_mapping()
    except ConfigError:
        return  # unreadable: treated as a fresh start by the worker
    # Keys the old run lacks were added to ddn since: they count as their defaults, so a
    # campaign carries on across ddn versions.
    diff = differing_keys(old, spec.config())
    if diff:
        raise ConfigError(
            f"{run_dir} was made with another configuration (keys differ: {diff}); the sweep "
            "file changed since: use another --out, or delete that run folder"
        )


@dataclass
class Outcome:
    """One run's result in this sweep, as ``sweep_status.json`` records it."""

    name: str
    status: str  # pending | finished | skipped | failed | interrupted | in use
    attempts: int = 0
    resumed_from: int | None = None
    seconds: float = 0.0
    log: str = ""
    error: str = ""


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class Progress:
    """The counts and the ETA line on stderr; the ETA comes from the env steps done
    since this sweep started (read from the runs' folders), not from run counts."""

    total: int
    skipped: int
    t_max: dict[str, int]
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    failed: int = 0
    running: set[str] = field(default_factory=set)
    _start_steps: float | None = None
    _last_print: float = 0.0
    _last_line: str = ""

    def steps_fraction(self, out: Path, names: list[str]) -> float:
        """Fraction of the env steps of ``names`` done, read from the runs' folders (for the
        ETA). ``names``: the runs this sweep runs (its finished runs, skipped, are not work
        left: counting their steps as to do made a resumed sweep's ETA many times too long),
        or every run for the closing line."""
        total = sum(self.t_max[n] for n in names) or 1
        done = sum(min(RunFolder(out / n).latest_t_env(), self.t_max[n]) for n in names)
        return done / total

    def line(self, out: Path, names: list[str]) -> str:
        frac = self.steps_fraction(out, names)
        # The lowest fraction seen is the start: a resumed run cuts its logs back to its
        # checkpoint only once it has started, after the first lines may have read them.
        if self._start_steps is None or frac < self._start_steps:
            self._start_steps = frac
        elapsed = time.monotonic() - self.started
        gained = frac - self._start_steps
        eta = "?" if gained <= 0 else _hms(elapsed * (1 - frac) / gained)
        pending = self.total - self.skipped - self.done - self.failed - len(self.running)
        return (
            f"[sweep] {self.done + self.skipped}/{self.total} done ({self.skipped} skipped), "
            f"{len(self.running)} running, {self.failed} failed, {pending} pending | "
            f"{frac:.0%} of steps | elapsed {_hms(elapsed)} | ETA {eta}"
        )

    def show(self, out: Path, names: list[str], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_print < PROGRESS_EVERY_S:
            return
        text = self.line(out, names)
        if force or text != self._last_line:
            print(text, file=sys.stderr, flush=True)
            self._last_line = text
        self._last_print = now


def write_status(out: Path, sweep: Sweep, outcomes: list[Outcome]) -> None:
    """``<out>/sweep_status.json``, replaced atomically (a reader never sees it cut).

    Several sweeps may share ``out`` (each with its own ``--runs``): the entries of the
    runs this one did not run, whether left out or found in use, stay as the sweeps that
    ran them wrote them."""
    path = out / STATUS_FILE
    ours = {o.name for o in outcomes if o.status != IN_USE}
    runs = []
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        earlier = json.loads(path.read_text())
        if earlier["sweep"] == sweep.name:
            runs = [r for r in earlier["runs"] if r["name"] not in ours]
    known = {r["name"] for r in runs}
    runs += [asdict(o) for o in outcomes if o.name in ours or o.name not in known]
    data = {"sweep": sweep.name, "source": str(sweep.source), "runs": runs}
    tmp = out / f"{STATUS_FILE}.{os.getpid()}.tmp"  # one per process: sweeps may share out
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def summarize(outcomes: list[Outcome]) -> str:
    """The lines printed at the end: counts, resumed runs, each failure with its log."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    lines = ["[sweep] " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))]
    resumed = [o for o in outcomes if o.resumed_from is not None and o.status == "finished"]
    if resumed:
        lines.append(
            "  resumed: " + ", ".join(f"{o.name} (from {o.resumed_from})" for o in resumed)
        )
    for o in outcomes:
        if o.status == "failed":
            lines.append(f"  FAILED {o.name} after {o.attempts} attempts: {o.error}")
            lines.append(f"         log: {o.log}")
        elif o.status == IN_USE:
            lines.append(f"  {o.name}: trained by another process ({o.error}); left to it")
    return "\n".join(lines)
