"""What every learner is to the training loop, checkpoints and evaluation.

The loop (``ddn/experiment.py``) and the run reader (``ddn/run.py``) see a learner only
through :class:`Learner`; the algorithm registry (``ddn/algorithms.py``) builds it. A
learner that trains a teacher and a student (DDN and its Table 2 rivals) evaluates both
under the metric prefixes below and reports the transfer rate through
:meth:`Learner.evaluation_metrics`, with :func:`transfer_rate_metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from torch import nn

if TYPE_CHECKING:
    from ddn.buffer import EpisodeBatch
    from ddn.envs import VecEnv

# Metric prefixes of the evaluated networks: the teacher (or a run's only network) and
# the student. The registry maps them to the names ``--policy`` takes.
TEACHER_PREFIX = "test"
STUDENT_PREFIX = "test_student"


@runtime_checkable
class Learner(Protocol):
    """One algorithm's trainable networks, their optimisers and their update."""

    @property
    def acting_network(self) -> nn.Module:
        """The network the rollout collects training episodes with."""
        ...

    def evaluation_policies(self) -> dict[str, nn.Module]:
        """The networks tested greedily, by metric prefix (``test``, ``test_student``)."""
        ...

    def evaluation_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """Metrics computed from a test's results (``metrics``: every policy's summary
        under its prefix), logged with them; ``{}`` when there are none."""
        ...

    def train(self, batch: EpisodeBatch, episode: int) -> dict[str, float]:
        """One update on ``batch``; ``episode`` counts the episodes collected so far."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint needs for an exact resume."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def policy_state_dict(self) -> dict[str, Any]:
        """The evaluated networks' weights only (no optimiser, no target networks)."""
        ...


@runtime_checkable
class PostBudgetLearner(Learner, Protocol):
    """A learner with a phase after the training budget (PTDE's offline distillation of
    its student): the optional part of the learner interface. The training loop runs it
    once the last training step is logged, and ``ddn evaluate``/``export`` run it on a
    checkpoint taken before it; a learner without one is done when the budget is."""

    @property
    def post_budget_done(self) -> bool:
        """Whether the phase has run (its networks are final)."""
        ...

    def post_budget(
        self, env: VecEnv, should_stop: Callable[[], bool], progress: bool
    ) -> dict[str, float] | None:
        """Run (or continue, after a resume) the phase on ``env``; its metrics once
        done, None when ``should_stop`` stopped it between two of its steps (its state
        is then in :meth:`state_dict`, so a resume continues it)."""
        ...


def transfer_rate(metrics: Mapping[str, float], has_wins: bool) -> float | None:
    """Student / teacher: win rates where the environment has wins, else returns (the
    paper's Table 2); None without both, or when the teacher scores 0."""
    key = "win_rate" if has_wins else "return_mean"
    teacher = metrics.get(f"{TEACHER_PREFIX}/{key}")
    student = metrics.get(f"{STUDENT_PREFIX}/{key}")
    if teacher is None or student is None or teacher == 0:
        return None
    return student / teacher


def transfer_rate_metrics(metrics: Mapping[str, float], has_wins: bool) -> dict[str, float]:
    """``test/transfer_rate`` for a teacher-student learner's evaluation hook; NaN (a
    logged gap) when it is undefined."""
    rate = transfer_rate(metrics, has_wins)
    return {f"{TEACHER_PREFIX}/transfer_rate": float("nan") if rate is None else rate}
