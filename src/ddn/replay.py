"""``ddn evaluate --save-replay``: something to watch of a run's evaluation.

* Real SMAC: the evaluation runs in one StarCraft II game (as PyMARL evaluates with
  ``save_replay``), then the env's own ``save_replay()`` writes one ``.SC2Replay``
  holding every evaluation episode into ``<run>/replays/`` (passed to SMAC as its
  absolute ``replay_dir``; StarCraft II's replay viewer opens it).
* SMAX and Predator-Prey have no StarCraft II replay: a GIF of one greedy episode goes
  to ``<run>/replays/`` instead, and the result says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ddn.config import ConfigError
from ddn.evaluate import Episodes, run_episodes
from ddn.run import Policy, load_run, policy_fn
from ddn.run_folder import RunFolder

REPLAY_FOLDER = "replays"


def evaluate_with_replay(
    run_dir: Path, t_env: int | None, episodes: int, policy: Policy
) -> tuple[int, Episodes, dict[str, Any]]:
    """Evaluate like ``ddn evaluate`` and save a replay: (checkpoint t_env, the episodes,
    what was written: ``replay_dir`` and ``replays``, plus a ``note`` for a GIF)."""
    env_name = RunFolder(run_dir).require().config().env_name
    folder = (run_dir / REPLAY_FOLDER).resolve()
    if env_name == "smac":
        run = load_run(run_dir, t_env, num_envs=1, env_overrides={"replay_dir": str(folder)})
        try:
            played = run_episodes(run.policy(policy), run.env, episodes)
            before = set(folder.glob("*")) if folder.is_dir() else set()
            run.env.call("save_replay")
        finally:
            run.env.close()
        written = sorted(set(folder.glob("*")) - before) if folder.is_dir() else []
        return run.t_env, played, {"replay_dir": str(folder), "replays": [str(p) for p in written]}
    if env_name not in ("smax", "predator_prey"):
        raise ConfigError(
            f"--save-replay needs a smac run (a StarCraft II replay) or a smax or "
            f"predator_prey run (a GIF); {run_dir} is a {env_name} run"
        )
    run = load_run(run_dir, t_env, num_envs=min(episodes, 64))
    played = run_episodes(run.policy(policy), run.env, episodes)
    folder.mkdir(parents=True, exist_ok=True)
    gif = folder / f"{run.cfg.map_name or env_name}-{run.t_env}-{policy}.gif"
    act = policy_fn(run.policy(policy))
    if env_name == "smax":
        from ddn.analysis.render_smax import render_smax

        render_smax(gif, act, 0, run.cfg.map_name or "3m", **run.cfg.env)
    else:
        from ddn.analysis.render import render_predator_prey

        render_predator_prey(gif, policy=act, seed=0, **run.cfg.env)
    note = (
        f"{env_name} has no StarCraft II replay; wrote a GIF of one greedy episode instead: {gif}"
    )
    return run.t_env, played, {"replay_dir": str(folder), "replays": [str(gif)], "note": note}
