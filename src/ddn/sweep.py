"""``ddn sweep``: a grid of algorithms x environments/maps x variants x seeds.

A sweep file (YAML) expands into runs with deterministic folder names under one output
folder, so that running the same sweep again finds its own results:

- a run whose ``summary.json`` says finished is skipped;
- a run with checkpoints is resumed from the latest (``Experiment.resume``);
- a run folder without a checkpoint is cleared and started again;
- a run that fails is retried once; failures are reported at the end (exit status 1).

Every run executes in its own Python process (``python -m ddn.sweep --worker ...``), with
torch pinned to ``threads`` threads (the run's ``threads`` config key, as ``ddn train
--threads``), so that a crash, a leak or a CUDA error in one run cannot take the others
down, and each run's output goes to ``<out>/logs/<run>.log``.
Locally, up to ``--workers`` such processes run at once (default: CPUs / threads). With
``--ray`` every run is a Ray task holding ``threads`` CPUs and ``gpus`` GPUs (a fraction
is allowed) that starts the same process; the output folder must then be on a file system
that the Ray workers share (always true for a local Ray instance). With ``--slurm`` every
run is a Slurm job (``ddn.sweep_slurm``, through submitit), on a shared file system too.

Sweep file keys::

    name: tiny_matrix              # default: the file's stem; output sweeps/<name>
    algos: [vdn, qmix]
    envs:                          # names, or mappings with maps / per-env overrides
      - matrix
      - {env: smax, maps: [3s_vs_5z, MMM2], overrides: [t_max=2000000]}
    seeds: [0, 1]                  # or an int N: seeds 0..N-1
    t_max: 2048                    # optional, for every run
    overrides: [test_interval=512] # --set strings for every run
    variants:                      # optional named variants: one run per variant
      full: []
      raw_state: [personalized_state=false]
    threads: 1                     # torch threads per run (= Ray num_cpus)
    gpus: 0                        # GPUs per run for Ray (fractions allowed)
    device: cpu                    # optional, as ddn train --device

Run folders are ``<env>-<map|default>-<algo>[-<variant>]-<seed>``. Seeds are the outer
loop, so a sweep stopped half way has a first seed of every setting.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ddn.config import (
    Config,
    ConfigError,
    differing_keys,
    load_yaml_mapping,
    parse_override,
    resolve,
)

_TOP_KEYS = {
    "name",
    "algos",
    "envs",
    "seeds",
    "t_max",
    "overrides",
    "variants",
    "threads",
    "gpus",
    "device",
    "description",
}
_ENV_KEYS = {"env", "maps", "overrides"}
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 3


# ---------------------------------------------------------------------- the sweep file
@dataclass
class RunSpec:
    """One run of a sweep: what ``ddn train`` would be given, and where it writes."""

    name: str
    env: str
    map_name: str | None
    algo: str
    seed: int
    variant: str | None
    overrides: list[str]
    t_max: int | None
    device: str | None
    threads: int = 1
    gpus: float = 0.0

    def config(self) -> Config:
        return resolve(
            self.env,
            self.algo,
            self.map_name,
            self.overrides,
            seed=self.seed,
            t_max=self.t_max,
            device=self.device,
            threads=self.threads,
        )


@dataclass
class Sweep:
    name: str
    runs: list[RunSpec]
    threads: int
    gpus: float
    source: Path


def packaged_sweeps() -> list[str]:
    """Names accepted by ``ddn sweep NAME`` (``paper/table2``, ``tiny_matrix``, ...)."""
    root = Path(str(resources.files("ddn") / "configs" / "sweeps"))
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def find_sweep_file(name: str | Path) -> Path:
    """A path as given, else a sweep file shipped in ``ddn/configs/sweeps``."""
    path = Path(name)
    if path.is_file():
        return path
    root = Path(str(resources.files("ddn") / "configs" / "sweeps"))
    for candidate in (root / f"{name}.yaml", root / str(name)):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no sweep file {str(name)!r} (neither a file nor a packaged sweep); packaged: "
        + ", ".join(packaged_sweeps())
    )


def _list_of_str(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{what} must be a list of key=value strings, got {value!r}")
    for item in value:
        parse_override(item)  # a malformed item fails here, naming the fix
    return list(value)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-._=+" else "_" for c in text)


def load_sweep(path: str | Path) -> Sweep:
    """Read and expand a sweep file; every run's config is resolved (validated) here, so a
    typo stops the sweep before anything starts."""
    path = find_sweep_file(path)
    data = load_yaml_mapping(path, "sweep keys (algos, envs, seeds, ...)")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {sorted(unknown)}; valid: {', '.join(sorted(_TOP_KEYS))}"
        )
    algos = data.get("algos")
    if isinstance(algos, str):
        algos = [algos]
    if not algos or not all(isinstance(a, str) for a in algos):
        raise ConfigError(f"{path}: algos must be a non-empty list of algorithm names")
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(seeds))
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{path}: seeds must be a list of integers or a count")
    envs = data.get("envs")
    if isinstance(envs, str | dict):
        envs = [envs]
    if not envs:
        raise ConfigError(f"{path}: envs must list at least one environment")
    common = _list_of_str(data.get("overrides"), "overrides")
    variants_raw = data.get("variants") or {}
    if not isinstance(variants_raw, dict):
        raise ConfigError(f"{path}: variants must map names to lists of key=value strings")
    variants: list[tuple[str | None, list[str]]] = [
        (str(k), _list_of_str(v, f"variants.{k}")) for k, v in variants_raw.items()
    ] or [(None, [])]
    threads, gpus = data.get("threads", 1), data.get("gpus", 0.0)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"{path}: threads must be an integer >= 1, got {threads!r}")
    if isinstance(gpus, bool) or not isinstance(gpus, int | float) or gpus < 0:
        raise ConfigError(f"{path}: gpus must be a number >= 0 (a fraction shares one GPU), "
                          f"got {gpus!r}")  # fmt: skip
    gpus = float(gpus)
    t_max = data.get("t_max")
    device = data.get("device")

    targets: list[tuple[str, str | None, list[str]]] = []
    for entry in envs:
        if isinstance(entry, str):
            entry = {"env": entry}
        if not isinstance(entry, dict) or "env" not in entry or set(entry) - _ENV_KEYS:
            raise ConfigError(
                f"{path}: each envs item is a name or a mapping with env, maps, overrides; "
                f"got {entry!r}"
            )
        maps = entry.get("maps") or [None]
        if isinstance(maps, str):
            maps = [maps]
        env_over = _list_of_str(entry.get("overrides"), f"overrides of {entry['env']}")
        targets += [(str(entry["env"]), m, env_over) for m in maps]

    runs: list[RunSpec] = []
    for seed in seeds:
        for env, map_name, env_over in targets:
            for variant, var_over in variants:
                for algo in algos:
                    parts = [env, map_name or "default", algo]
                    if variant is not None:
                        parts.append(variant)
                    parts.append(str(seed))
                    runs.append(
                        RunSpec(
                            name=_safe("-".join(parts)),
                            env=env,
                            map_name=map_name,
                            algo=algo,
                            seed=seed,
                            variant=variant,
                            overrides=[*common, *env_over, *var_over],
                            t_max=t_max,
                            device=device,
                            threads=threads,
                            gpus=gpus,
                        )
                    )
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: two runs map to one folder name; make names distinct")
    for run in runs:
        try:
            run.config()
        except ConfigError as exc:
            raise ConfigError(f"{path}: run {run.name}: {exc}") from None
    return Sweep(str(data.get("name") or path.stem), runs, threads, gpus, path)


# ---------------------------------------------------------------------- run states
def run_state(run_dir: Path) -> tuple[str, int | None]:
    """('finished' | 'resume' | 'new', latest checkpoint t_env)."""
    from ddn.checkpoint import list_checkpoints

    summary = run_dir / "summary.json"
    if summary.is_file():
        with contextlib.suppress(json.JSONDecodeError, OSError):
            if json.loads(summary.read_text()).get("finished"):
                return "finished", None
    if run_dir.is_dir():
        found = list_checkpoints(run_dir)
        if found:
            return "resume", found[-1]
    return "new", None


def check_existing(spec: RunSpec, run_dir: Path) -> None:
    """A run folder left by an earlier version of the sweep file must not be mixed in."""
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        return
    try:
        old = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError:
        return  # unreadable: treated as a fresh start by the worker
    # Keys the old run lacks were added to ddn since: they count as their defaults, so a
    # campaign carries on across ddn versions.
    diff = differing_keys(old, spec.config())
    if diff:
        raise ConfigError(
            f"{run_dir} was made with another configuration (keys differ: {diff}); the sweep "
            "file changed since: use another --out, or delete that run folder"
        )


# ---------------------------------------------------------------------- one run
def _worker(payload: dict[str, Any]) -> int:
    """Body of the run's own process: train (or resume) one run. Exit status:
    0 finished, 3 stopped by a signal with a checkpoint written, 1 error."""
    spec = RunSpec(**payload["spec"])
    run_dir = Path(payload["run_dir"])
    from ddn.experiment import Experiment

    state, latest = run_state(run_dir)
    if state == "finished":
        return EXIT_OK
    if state == "resume":
        print(f"resuming {run_dir} from t_env={latest}", flush=True)
        exp = Experiment.resume(run_dir, progress=False, threads=spec.threads)
    else:
        if run_dir.exists():  # leftovers of a run killed before its first checkpoint
            shutil.rmtree(run_dir)
        print(f"starting {run_dir}", flush=True)
        exp = Experiment(spec.config(), run_dir, progress=False)
    summary = exp.run()
    print(json.dumps(summary), flush=True)
    return EXIT_OK if summary.get("finished") else EXIT_INTERRUPTED


def _die_with_parent() -> None:
    """Linux: the run process is killed when the sweep process dies, even by SIGKILL, so a
    killed sweep leaves no orphan writing into a folder that the next sweep resumes."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _command(spec: RunSpec, run_dir: Path) -> list[str]:
    payload = {"spec": asdict(spec), "run_dir": str(run_dir)}
    return [sys.executable, "-m", "ddn.sweep", "--worker", json.dumps(payload)]


def _environ(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def _start(spec: RunSpec, run_dir: Path, log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {spec.name}\n")
        fh.flush()
        return subprocess.Popen(
            _command(spec, run_dir),
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=_environ(spec.threads),
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )


def execute_run(spec_dict: dict[str, Any], run_dir: str, log: str) -> int:
    """Run one run to completion in its own process and return its exit status (what a
    Ray task executes; SIGINT/cancel is passed on so that the run checkpoints)."""
    spec = RunSpec(**spec_dict)
    proc = _start(spec, Path(run_dir), Path(log))
    try:
        return proc.wait()
    except (KeyboardInterrupt, SystemExit):
        proc.send_signal(signal.SIGINT)
        return proc.wait()


# ---------------------------------------------------------------------- progress
@dataclass
class _Progress:
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
        """Fraction of the sweep's env steps done, read from the runs' logs (for the ETA)."""
        total = sum(self.t_max.values()) or 1
        done = 0.0
        for name in names:
            done += min(_last_t_env(out / name), self.t_max[name])
        return done / total

    def line(self, out: Path, names: list[str]) -> str:
        frac = self.steps_fraction(out, names)
        if self._start_steps is None:
            self._start_steps = frac
        elapsed = time.monotonic() - self.started
        gained = frac - self._start_steps
        eta = "?" if gained <= 1e-9 else _hms(elapsed * (1 - frac) / gained)
        pending = self.total - self.skipped - self.done - self.failed - len(self.running)
        return (
            f"[sweep] {self.done + self.skipped}/{self.total} done ({self.skipped} skipped), "
            f"{len(self.running)} running, {self.failed} failed, {pending} pending | "
            f"{frac:.0%} of steps | elapsed {_hms(elapsed)} | ETA {eta}"
        )

    def show(self, out: Path, names: list[str], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_print < 5.0:
            return
        text = self.line(out, names)
        if force or text != self._last_line:
            print(text, file=sys.stderr, flush=True)
            self._last_line = text
        self._last_print = now


def _last_t_env(run_dir: Path) -> int:
    summary = run_dir / "summary.json"
    with contextlib.suppress(OSError, json.JSONDecodeError, AttributeError):
        data = json.loads(summary.read_text())
        if data.get("finished"):
            return int(data["t_env"])
    metrics = run_dir / "metrics.jsonl"
    try:
        with metrics.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            tail = fh.read().decode(errors="ignore").splitlines()
    except OSError:
        return 0
    for line in reversed(tail):
        with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
            return int(json.loads(line)["t_env"])
    return 0


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# ---------------------------------------------------------------------- the scheduler
@dataclass
class Outcome:
    name: str
    status: str  # finished | skipped | failed | interrupted
    attempts: int = 0
    resumed_from: int | None = None
    seconds: float = 0.0
    log: str = ""
    error: str = ""


def default_workers(threads: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, threads))


def _last_error(log: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
        for line in reversed(lines):
            if not line.startswith(("===", "  ", "Traceback")):
                return line.strip()[:300]
    return ""


def run_sweep(
    sweep: Sweep,
    out: Path,
    workers: int | None = None,
    ray_address: str | None = None,
    max_attempts: int = 2,
    slurm: Any = None,
) -> list[Outcome]:
    """Run every unfinished run of ``sweep`` under ``out``; returns one Outcome per run.

    ``slurm`` (a :class:`ddn.sweep_slurm.SlurmOptions`) submits each run as a Slurm job."""
    out.mkdir(parents=True, exist_ok=True)
    for spec in sweep.runs:
        check_existing(spec, out / spec.name)
    copy = out / "sweep.yaml"
    if not (copy.exists() and copy.samefile(sweep.source)):
        shutil.copyfile(sweep.source, copy)  # what produced these results
    outcomes: dict[str, Outcome] = {}
    todo: list[RunSpec] = []
    for spec in sweep.runs:
        state, latest = run_state(out / spec.name)
        log = str(out / "logs" / f"{spec.name}.log")
        if state == "finished":
            outcomes[spec.name] = Outcome(spec.name, "skipped", log=log)
        else:
            outcomes[spec.name] = Outcome(spec.name, "pending", resumed_from=latest, log=log)
            todo.append(spec)
    t_max = {s.name: s.config().t_max for s in sweep.runs}
    progress = _Progress(len(sweep.runs), len(sweep.runs) - len(todo), t_max)
    if ray_address is None and slurm is None:
        workers = workers or default_workers(sweep.threads)
    where = f"{workers} local workers"
    if ray_address:
        where = f"on Ray ({ray_address})"
    elif slurm is not None:
        where = f"as Slurm jobs ({slurm.cluster})"
    print(
        f"[sweep] {sweep.name}: {len(sweep.runs)} runs, {len(todo)} to run "
        f"({sum(o.resumed_from is not None for o in outcomes.values())} resumed), "
        + where
        + f", {sweep.threads} thread(s) per run -> {out}",
        file=sys.stderr,
        flush=True,
    )
    try:
        if todo and slurm is not None:
            from ddn.sweep_slurm import schedule_slurm

            schedule_slurm(
                todo, out, workers, slurm, outcomes, progress, max_attempts,
                sweep.threads, sweep.gpus,
            )  # fmt: skip
        elif todo and ray_address is not None:
            _schedule_ray(todo, out, workers, ray_address, outcomes, progress, max_attempts)
        elif todo:
            _schedule_local(todo, out, workers, outcomes, progress, max_attempts)
    finally:
        _write_status(out, sweep, [outcomes[s.name] for s in sweep.runs])
    progress.show(out, [s.name for s in sweep.runs], force=True)
    return [outcomes[s.name] for s in sweep.runs]


def _retry_or_fail(name, spec, outcome, queue: list, progress, max_attempts: int) -> None:
    """A failed attempt: queue the run again first, or mark it failed for good."""
    if outcome.attempts < max_attempts:
        print(f"[sweep] {name} failed ({outcome.error}); retrying", file=sys.stderr, flush=True)
        queue.insert(0, spec)
    else:
        outcome.status = "failed"
        progress.failed += 1


def _finish(outcome: Outcome, code: int, started: float, progress: _Progress) -> bool:
    """Record one attempt's exit status; True when the run needs another attempt."""
    outcome.seconds += time.monotonic() - started
    progress.running.discard(outcome.name)
    if code == EXIT_OK:
        outcome.status = "finished"
        progress.done += 1
        return False
    if code == EXIT_INTERRUPTED:
        outcome.status = "interrupted"
        return False
    outcome.error = _last_error(Path(outcome.log)) or f"exit status {code}"
    return True


def _schedule_local(
    todo: list[RunSpec],
    out: Path,
    workers: int,
    outcomes: dict[str, Outcome],
    progress: _Progress,
    max_attempts: int,
) -> None:
    queue = list(todo)
    running: dict[str, tuple[subprocess.Popen, float, RunSpec]] = {}
    names = [s.name for s in todo]

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        while queue or running:
            while queue and len(running) < workers:
                spec = queue.pop(0)
                outcome = outcomes[spec.name]
                outcome.attempts += 1
                proc = _start(spec, out / spec.name, Path(outcome.log))
                running[spec.name] = (proc, time.monotonic(), spec)
                progress.running.add(spec.name)
                progress.show(out, names, force=True)
            for name, (proc, started, spec) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                del running[name]
                outcome = outcomes[name]
                if _finish(outcome, code, started, progress):
                    _retry_or_fail(name, spec, outcome, queue, progress, max_attempts)
                progress.show(out, names, force=True)
            progress.show(out, names)
            time.sleep(0.2)
    except KeyboardInterrupt:
        # Ask every run to checkpoint and stop (each is in its own session, so a
        # terminal's Ctrl-C reaches only this process); a second Ctrl-C kills them.
        print("[sweep] stopping: runs write a checkpoint and exit", file=sys.stderr, flush=True)
        for proc, _, _ in running.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        try:
            for name, (proc, started, _) in running.items():
                _finish(outcomes[name], proc.wait(), started, progress)
                if outcomes[name].status == "pending":
                    outcomes[name].status = "interrupted"
        except KeyboardInterrupt:
            for proc, _, _ in running.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--ray needs Ray, an optional extra: pip install 'ddn[ray]' (or pip install 'ray>=2.9')"
        ) from None
    return ray


def _schedule_ray(
    todo: list[RunSpec],
    out: Path,
    workers: int | None,
    address: str,
    outcomes: dict[str, Outcome],
    progress: _Progress,
    max_attempts: int,
) -> None:
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False}
        if address == "local":
            kwargs["include_dashboard"] = False
        else:
            kwargs["address"] = address
        ray.init(**kwargs)
    names = [s.name for s in todo]
    remote = ray.remote(execute_run)
    queue = list(todo)
    running: dict[Any, tuple[str, float, RunSpec]] = {}
    limit = workers or len(todo)  # Ray's resources decide; --workers caps it further
    try:
        while queue or running:
            while queue and len(running) < limit:
                spec = queue.pop(0)
                outcome = outcomes[spec.name]
                outcome.attempts += 1
                task = remote.options(num_cpus=spec.threads, num_gpus=spec.gpus).remote(
                    asdict(spec), str((out / spec.name).resolve()), str(Path(outcome.log).resolve())
                )
                running[task] = (spec.name, time.monotonic(), spec)
                progress.running.add(spec.name)
                progress.show(out, names, force=True)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for task in ready:
                name, started, spec = running.pop(task)
                outcome = outcomes[name]
                try:
                    code = int(ray.get(task))
                except Exception as exc:  # the task itself died (worker lost, ...)
                    code = EXIT_FAILED
                    outcome.error = f"Ray task error: {exc}"[:300]
                if _finish(outcome, code, started, progress):
                    _retry_or_fail(name, spec, outcome, queue, progress, max_attempts)
                progress.show(out, names, force=True)
            progress.show(out, names)
    except KeyboardInterrupt:
        print("[sweep] stopping: runs write a checkpoint and exit", file=sys.stderr, flush=True)
        for task in running:
            ray.cancel(task)  # KeyboardInterrupt in the task: it passes SIGINT on
        for task, (name, _, _) in running.items():
            with contextlib.suppress(Exception):
                ray.get(task)
            outcomes[name].status = "interrupted"
        raise
    finally:
        if started_here:
            ray.shutdown()


def _write_status(out: Path, sweep: Sweep, outcomes: list[Outcome]) -> None:
    data = {
        "sweep": sweep.name,
        "source": str(sweep.source),
        "runs": [asdict(o) for o in outcomes],
    }
    tmp = out / "sweep_status.json.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, out / "sweep_status.json")


def summarize(outcomes: list[Outcome]) -> str:
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
    return "\n".join(lines)


# ---------------------------------------------------------------------- entry points
def main(args: argparse.Namespace) -> int:
    """``ddn sweep``; returns the exit status (1 when a run failed, 130 when stopped)."""
    if args.list:
        print("\n".join(packaged_sweeps()))
        return 0
    if not args.file:
        raise ConfigError("sweep needs a FILE.yaml or a packaged name (see ddn sweep --list)")
    if args.workers is not None and args.workers < 1:
        raise ConfigError("--workers must be >= 1")
    sweep = load_sweep(args.file)
    out = args.out or Path("sweeps") / sweep.name
    if args.dry_run:
        for spec in sweep.runs:
            state, latest = run_state(out / spec.name)
            extra = f" from t_env={latest}" if latest is not None else ""
            print(f"{spec.name:<60} {state}{extra}  {' '.join(spec.overrides)}")
        return 0
    slurm = None
    if getattr(args, "slurm", False):
        from ddn.sweep_slurm import check_slurm, options_from_args

        slurm = options_from_args(args)
        check_slurm(slurm)  # a missing extra or no Slurm fails before anything starts
    elif args.ray is not None:
        _import_ray()  # a missing extra fails before anything starts
    try:
        outcomes = run_sweep(sweep, out, args.workers, args.ray, slurm=slurm)
    except KeyboardInterrupt:
        print(
            f"[sweep] stopped; run the same command again to resume: ddn sweep {args.file} "
            f"--out {out}",
            file=sys.stderr,
        )
        return 130
    print(summarize(outcomes))
    print(f"Results: {out}  (ddn plot {out}; ddn report {out})")
    if any(o.status == "failed" for o in outcomes):
        return 1
    if any(o.status == "interrupted" for o in outcomes):
        return 130
    return 0


def _worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddn.sweep")
    parser.add_argument("--worker", required=True, help="JSON: spec, run_dir")
    args = parser.parse_args(argv)
    try:
        return _worker(json.loads(args.worker))
    except KeyboardInterrupt:
        print("interrupted before a checkpoint", flush=True)
        return EXIT_INTERRUPTED
    except Exception as exc:
        traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc}", flush=True)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(_worker_main(sys.argv[1:]))
