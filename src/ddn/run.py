"""Reading a run folder back: its config, a checkpoint's networks, a fresh environment."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ddn import config as config_mod
from ddn.algorithms import get_algorithm
from ddn.checkpoint import CheckpointError, nonfinite_tensors
from ddn.config import Config, ConfigError
from ddn.envs import EnvOutput, VecEnv
from ddn.experiment import build_learner, make_env, resolve_device
from ddn.learners.base import Learner, PostBudgetLearner
from ddn.nets.actor import GreedyActor
from ddn.nets.agent import RecurrentQNetwork
from ddn.run_folder import RunFolder

Policy = Literal["teacher", "student"]


@dataclass
class LoadedRun:
    cfg: Config
    env: VecEnv
    learner: Learner
    t_env: int

    def policy(self, which: Policy = "teacher") -> RecurrentQNetwork:
        """The network ``which`` names in the algorithm's registry entry: the teacher
        (DDN's GGN, or a run's only network) or the student (DDN's LPN, a rival's
        student); a run without it gets one ConfigError. A checkpoint taken before the
        learner's post-budget phase (PTDE's) gets that phase run here first, its
        progress shown on stderr."""
        prefix = get_algorithm(self.cfg.algo).policy(which).prefix
        learner = self.learner
        pending = isinstance(learner, PostBudgetLearner) and not learner.post_budget_done
        if which == "student" and pending:
            print("checkpoint before the post-budget phase: running it first", file=sys.stderr)
            learner.post_budget(self.env, lambda: False, True)
        return learner.evaluation_policies()[prefix]


def load_run(
    run_dir: str | Path,
    t_env: int | None = None,
    num_envs: int = 1,
    seed: int = 12345,
    env_overrides: dict[str, Any] | None = None,
) -> LoadedRun:
    """A run's checkpoint ``t_env`` (default: latest) with a fresh env of ``num_envs``.

    The checkpoint's own configuration builds the env and networks: the run's
    ``config.yaml`` may have been edited since (another ``n_prey``, another episode
    limit), which would evaluate a network on a task it never saw. Where the two differ
    a note on stderr says so. A checkpoint with non-finite weights is refused.
    ``env_overrides`` changes environment parameters that do not alter the task (where
    SMAC writes replays).
    """
    folder = RunFolder(run_dir).require()
    run_dir = folder.path
    t_env, state, _ = folder.load_checkpoint(t_env)
    try:
        cfg = config_mod.from_dict(state["config"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(
            f"checkpoint t_env={t_env} of {run_dir} holds no usable configuration ({exc})"
        ) from None
    try:
        diff = config_mod.differing_keys(folder.config_mapping(), cfg)
    except ConfigError:
        diff = [f"({folder.config_path.name} unreadable)"]
    if diff:
        print(
            f"note: {folder.config_path} differs from checkpoint t_env={t_env}'s configuration "
            f"(keys: {', '.join(diff[:8])}); using the checkpoint's",
            file=sys.stderr,
        )
    bad = nonfinite_tensors(state["learner"])
    if bad:
        raise CheckpointError(
            f"checkpoint t_env={t_env} of {run_dir} holds non-finite weights ({bad[0]}): the "
            "run diverged; pick an earlier one with --checkpoint "
            f"(available: {folder.checkpoints()})"
        )
    if env_overrides:
        cfg = dataclasses.replace(cfg, env={**cfg.env, **env_overrides})
    device = resolve_device(cfg.device)
    env = make_env(cfg, num_envs, seed, device)
    learner = build_learner(cfg, env.spec, device)
    try:
        learner.load_state_dict(state["learner"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint t_env={t_env} of {run_dir} does not fit its configuration: {exc}"
        ) from None
    return LoadedRun(cfg, env, learner, t_env)


def policy_fn(network: RecurrentQNetwork) -> Callable[[EnvOutput], torch.Tensor]:
    """A greedy, stateful ``(out) -> actions`` callable; make a new one per episode."""
    actor: GreedyActor | None = None

    def act(out: EnvOutput) -> torch.Tensor:
        nonlocal actor
        if actor is None:  # the batch size and device are the first step's
            actor = GreedyActor(network, out.obs.device, out.obs.shape[0])
        return actor.act(out.obs, out.avail, out.state, privileged_obs=out.privileged_obs)

    return act
