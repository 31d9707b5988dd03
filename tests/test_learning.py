"""Small seeded learning tests: each trains through the real training loop.

* The non-monotonic matrix game [[8,-12,-12],[-12,0,0],[-12,0,0]] under uniform
  exploration: the fully expressive methods (QPLEX, CW-/OW-QMIX, QTRAN) find the
  optimal joint action (return 8); VDN and QMIX, whose monotonic Q_tot cannot
  represent the table, settle on a suboptimal one.
* QMIX on a small Predator-Prey clearly improves its greedy test return.
"""

from __future__ import annotations

import pytest
import torch

from ddn.analysis.plot import metric_series
from ddn.config import resolve
from ddn.experiment import Experiment


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny networks: a second thread only adds contention on a 2-core machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _greedy_matrix_return(algo: str, updates: int, tmp_path) -> tuple[float, float]:
    cfg = resolve(
        "matrix", algo, overrides=["device=cpu", "save_model=false"], seed=0, t_max=64 * updates
    )
    summary = Experiment(cfg, tmp_path / algo, progress=False).run()
    return summary["test/return_mean"], summary["test/win_rate"]


# (algorithm, updates): each fully expressive method gets about twice what it needed
# in our measurements (QTRAN ~500, QPLEX ~1250, CW/OW-QMIX < 250 updates).
@pytest.mark.parametrize(
    ("algo", "updates"), [("cw_qmix", 500), ("ow_qmix", 500), ("qtran", 1000), ("qplex", 2000)]
)
def test_expressive_methods_find_the_matrix_optimum(algo, updates, tmp_path):
    ret, win = _greedy_matrix_return(algo, updates, tmp_path)
    assert ret == pytest.approx(8.0)
    assert win == 1.0


@pytest.mark.parametrize("algo", ["vdn", "qmix"])
def test_monotonic_methods_miss_the_matrix_optimum(algo, tmp_path):
    ret, win = _greedy_matrix_return(algo, 1000, tmp_path)
    assert ret < 8.0
    assert win == 0.0


def test_qmix_improves_on_small_predator_prey(tmp_path):
    """3 predators, 1 prey, 5x5, no miscapture penalty (with p > 0 QMIX learns to stop
    catching: the relative-overgeneralization trap the paper studies)."""
    overrides = [
        "env.n_agents=3", "env.n_prey=1", "env.height=5", "env.width=5",
        "env.episode_limit=25", "env.punishment=0.0", "batch_size_run=16", "batch_size=32",
        "buffer_size=500", "test_interval=5000", "test_nepisode=32", "log_interval=5000",
        "save_model=false", "epsilon_anneal_time=10000", "device=cpu",
    ]  # fmt: skip
    cfg = resolve("predator_prey", "qmix", overrides=overrides, seed=0, t_max=40_000)
    exp = Experiment(cfg, tmp_path / "run", progress=False)
    exp.run()
    _, returns = metric_series(exp.run_dir, "test/return_mean")
    assert len(returns) >= 8
    first, last = returns[0], sum(returns[-3:]) / 3
    # One capture is worth 10; greedy QMIX ends well above its untrained policy.
    assert last >= 4.0, returns
    assert last >= first + 3.0, returns


def test_ddn_vdn_learns_and_its_student_follows(tmp_path):
    """DDN on VDN, 2 predators / 1 prey on 4x4 (p = 0), paper defaults for DDN: the GGN
    learns to capture and the LPN, trained only by distillation from local observations,
    reaches >= 90% of its greedy test return once the teacher has plateaued (averages of
    the last three tests, 64 episodes each). Measured: seed 0 92%, seed 1 85% (the
    student sees a 5x5 window of the grid, the teacher the whole state)."""
    overrides = [
        "env.n_agents=2", "env.n_prey=1", "env.height=4", "env.width=4",
        "env.episode_limit=20", "env.punishment=0.0", "batch_size_run=16", "batch_size=32",
        "buffer_size=500", "test_interval=10000", "test_nepisode=64", "log_interval=10000",
        "save_model=false", "epsilon_anneal_time=10000", "device=cpu",
    ]  # fmt: skip
    cfg = resolve("predator_prey", "ddn_vdn", overrides=overrides, seed=0, t_max=150_000)
    exp = Experiment(cfg, tmp_path / "run", progress=False)
    exp.run()
    _, teacher = metric_series(exp.run_dir, "test/return_mean")
    _, student = metric_series(exp.run_dir, "test_student/return_mean")
    assert len(teacher) == len(student) >= 15
    teacher_last, student_last = sum(teacher[-3:]) / 3, sum(student[-3:]) / 3
    assert teacher_last >= 6.0, teacher
    assert teacher_last >= teacher[0] + 5.0, teacher
    assert student_last >= 0.9 * teacher_last, (teacher, student)
