"""Small seeded learning tests: each trains through the real training loop.

* The non-monotonic matrix game [[8,-12,-12],[-12,0,0],[-12,0,0]] under uniform
  exploration, each claim on several seeds ("at least k of these n"), k and n chosen
  from the success rates measured over 10 seeds (docs/training.md): CW-/OW-QMIX and
  QTRAN find the optimal joint action (return 8), QPLEX on some seeds (as PyMARL2's
  QPLEX); VDN and QMIX, whose monotonic Q_tot cannot represent the table, never do.
* IQL, with no mixer, learns each agent's marginal payoff and misses it as well.
* QMIX and IQL on a small Predator-Prey clearly improve their greedy test return.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from ddn.analysis.plot import metric_series
from ddn.config import resolve
from ddn.evaluate import evaluate
from ddn.experiment import Experiment
from ddn.nets.mixers import MixContext
from ddn.rollout import Collector

# Learning runs: minutes of training each, so only in the full tier (`make test`).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def _train_matrix(algo: str, updates: int, seed: int, tmp_path) -> tuple[Experiment, dict]:
    cfg = resolve(
        "matrix", algo, overrides=["device=cpu", "save_model=false"], seed=seed,
        t_max=64 * updates,
    )  # fmt: skip
    exp = Experiment(cfg, tmp_path / f"{algo}-{seed}", progress=False)
    return exp, exp.run()


@torch.no_grad()
def _joint_values(exp: Experiment) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(every joint action [9, 2], the learned joint value of each [9], the agents' greedy
    joint action [2]) in the matrix game's single state."""
    batch, _ = Collector(exp.env, torch.device("cpu")).run(exp.learner.acting_network, 0.0)
    out, _ = exp.learner.agent.unroll(exp.learner.encode(batch))
    q, hidden, state = out.q[0, 0], out.gru_out[0, 0], batch.state[0, 0]  # [N, A], [N, H], [S]
    n, a = q.shape
    joint = torch.cartesian_prod(*[torch.arange(a)] * n)  # [A^N, N]
    chosen = q.gather(1, joint.T).T  # [A^N, N]: Q_i of each joint action
    ctx = MixContext(
        state=state.expand(len(joint), -1),
        actions_onehot=F.one_hot(joint, a).float(),
        max_qs=q.max(dim=-1).values.expand(len(joint), -1),
        agent_gru_out=hidden.expand(len(joint), -1, -1),
    )
    objective = exp.learner.objective
    values = (
        objective.joint(ctx)[0] if hasattr(objective, "joint") else objective.mixer(chosen, ctx)
    )
    return joint, values, q.argmax(dim=-1)


# (algorithm, updates, seeds, at least k of them must reach the optimum), chosen from
# the success rates benchmarks/matrix_success.py measured over seeds 0-9 at the same
# budgets (docs/training.md, "Success over seeds"): CW-/OW-QMIX 10/10 at 250 updates,
# QTRAN 8/10 at 1000 (seeds 0-2 all succeed), QPLEX 4/10 at 2000, the preset (seeds 0
# and 2 of 0-3; PyMARL2's QPLEX 0/10). QPLEX's claim is only that some seeds succeed.
@pytest.mark.parametrize(
    ("algo", "updates", "seeds", "at_least"),
    [
        ("cw_qmix", 250, (0, 1, 2), 3),
        ("ow_qmix", 250, (0, 1, 2), 3),
        ("qtran", 1000, (0, 1, 2), 2),
        ("qplex", 2000, (0, 1, 2, 3), 1),
    ],
)
def test_expressive_methods_find_the_matrix_optimum(algo, updates, seeds, at_least, tmp_path):
    found = []
    for seed in seeds:
        if len(found) >= at_least:  # the claim holds: the remaining seeds cannot change it
            break
        exp, summary = _train_matrix(algo, updates, seed, tmp_path)
        if summary["test/win_rate"] < 1.0:
            continue
        found.append(seed)
        assert summary["test/return_mean"] == pytest.approx(8.0)
        # IGM: the joint action that maximises the learned joint value (QTRAN's Q_jt, the
        # weighted QMIX's Q_tot, QPLEX's Q_tot) is the agents' own greedy joint action.
        joint, values, greedy = _joint_values(exp)
        assert joint[values.argmax()].tolist() == greedy.tolist() == [0, 0]
    assert len(found) >= at_least, f"{algo}: the optimum on seeds {found} of {seeds}"


@pytest.mark.parametrize("algo", ["vdn", "qmix"])
def test_monotonic_methods_miss_the_matrix_optimum(algo, tmp_path):
    # Measured: neither reaches the optimum on any of seeds 0-9 at 500 updates.
    for seed in (0, 1):
        _, summary = _train_matrix(algo, 500, seed, tmp_path)
        assert summary["test/return_mean"] < 8.0, seed
        assert summary["test/win_rate"] == 0.0, seed


def _small_predator_prey(
    predators: int, side: int, limit: int, test_interval: int, test_nepisode: int
) -> list[str]:
    """One prey on a small square grid, no miscapture penalty, small batches."""
    return [
        f"env.n_agents={predators}", "env.n_prey=1", f"env.height={side}",
        f"env.width={side}", f"env.episode_limit={limit}", "env.punishment=0.0",
        "batch_size_run=16", "batch_size=32", "buffer_size=500",
        f"test_interval={test_interval}", f"test_nepisode={test_nepisode}",
        f"log_interval={test_interval}", "save_model=false", "epsilon_anneal_time=10000",
        "device=cpu",
    ]  # fmt: skip


# The Predator-Prey claims, one function each: the test runs it on a few seeds, and
# benchmarks/learning_success.py on seeds 0-9 (the rates the seeds are chosen by). Each
# trains through the real loop and returns the conditions that failed (none: it holds).
def improves_on_small_predator_prey(algo: str, seed: int, run_dir) -> list[str]:
    """3 predators, 1 prey, 5x5, no miscapture penalty (with p > 0 QMIX learns to stop
    catching: the relative-overgeneralization trap the paper studies), 40k steps: the
    greedy test return (one capture is worth 10) ends at 2.5 or more, 2 above the
    untrained policy's. Measured on seeds 0-9 with the run's own exploration and replay
    streams (ddn.rng): QMIX 6/10 (seeds 1, 2, 3 end at 1.93, 1.88, 2.45; seed 8 never
    catches). Before those streams were split off torch's global generator the same
    claim held on 9/10 (seed 1 never caught; a bar of 4 and a gain of 3 held on 5/10
    only, and seeds 0 and 1 missed it at 80k steps too). IQL: 9/10 (seed 4 ends at
    2.24), 10/10 before."""
    overrides = _small_predator_prey(3, 5, 25, test_interval=5000, test_nepisode=64)
    cfg = resolve("predator_prey", algo, overrides=overrides, seed=seed, t_max=40_000)
    Experiment(cfg, run_dir, progress=False).run()
    _, returns = metric_series(run_dir, "test/return_mean")
    first, last = returns[0], sum(returns[-3:]) / 3
    failed = [] if len(returns) >= 8 else [f"{len(returns)} tests"]
    if last < 2.5:
        failed.append(f"last {last:.2f} < 2.5")
    if last < first + 2.0:
        failed.append(f"gain {last - first:.2f} < 2")
    return failed


def ddn_vdn_student_follows(seed: int, run_dir) -> list[str]:
    """DDN on VDN, 2 predators / 1 prey on 4x4 (p = 0), paper defaults for DDN, 150k
    steps: the GGN learns to capture and the LPN, trained only by distillation from local
    observations (a 5x5 window of the grid; the teacher sees the whole state), reaches
    >= 70% of the GGN's greedy test return at the end, measured on 2,048 episodes each.
    Seeds 0-9: the GGN learns on 10/10; LPN / GGN is >= 0.9 on seeds 0, 1, 2 and 5 only,
    and 0.879, 0.743, 0.857, 0.739, 0.736, 0.841 on seeds 3, 4, 6-9 (the old one-seed
    test's 0.9 bar held on 4/10), so the claim is 0.7."""
    overrides = _small_predator_prey(2, 4, 20, test_interval=10000, test_nepisode=64)
    cfg = resolve("predator_prey", "ddn_vdn", overrides=overrides, seed=seed, t_max=150_000)
    exp = Experiment(cfg, run_dir, progress=False)
    exp.run()
    _, teacher = metric_series(run_dir, "test/return_mean")
    _, student = metric_series(run_dir, "test_student/return_mean")
    failed = [] if len(teacher) == len(student) >= 15 else ["missing tests"]
    teacher_last = sum(teacher[-3:]) / 3
    if teacher_last < 6.0:
        failed.append(f"GGN last {teacher_last:.2f} < 6")
    if teacher_last < teacher[0] + 5.0:
        failed.append(f"GGN gain {teacher_last - teacher[0]:.2f} < 5")
    policies = exp.learner.evaluation_policies()
    final = {
        name: evaluate(policies[name], exp.test_env, 2048)["test/return_mean"]
        for name in ("test", "test_student")
    }
    if final["test_student"] < 0.7 * final["test"]:
        failed.append(f"LPN/GGN {final['test_student'] / final['test']:.3f} < 0.7")
    return failed


def _holds_on(claim, seeds, at_least: int, tmp_path) -> None:
    failed = {s: claim(s, tmp_path / str(s)) for s in seeds}
    held = [s for s, f in failed.items() if not f]
    assert len(held) >= at_least, f"held on seeds {held} of {list(seeds)}: {failed}"


# Seeds and k chosen by the rates over seeds 0-9 (docs/training.md, "Success over seeds").
@pytest.mark.parametrize(
    ("algo", "seeds", "at_least"), [("qmix", (0, 4, 5), 2), ("iql", (0, 1), 2)]
)
def test_improves_on_small_predator_prey(algo, seeds, at_least, tmp_path):
    _holds_on(lambda s, d: improves_on_small_predator_prey(algo, s, d), seeds, at_least, tmp_path)


def test_ddn_vdn_learns_and_its_student_follows(tmp_path):
    _holds_on(ddn_vdn_student_follows, (0, 3), 2, tmp_path)


def test_iql_learns_each_agents_marginal_values_and_misses_the_matrix_optimum(tmp_path):
    """IQL beside VDN on the non-monotonic game: under uniform exploration each agent's
    Q_i(u) is the team payoff averaged over the other agent's uniform action, (8 - 12 -
    12) / 3 = -16/3 for u = 0 and (-12 + 0 + 0) / 3 = -4 for u = 1, 2, so the greedy
    agents avoid the optimum (0, 0) and settle on a joint action worth 0."""
    exp, summary = _train_matrix("iql", 1000, 0, tmp_path)
    batch, _ = Collector(exp.env, torch.device("cpu")).run(exp.learner.acting_network, 0.0)
    with torch.no_grad():
        q = exp.learner.agent.unroll(exp.learner.encode(batch))[0].q[
            0, 0
        ]  # [N, A] in the single state
    # Sampling noise moves single entries by up to ~0.5 (seeds 0-2 at 1000 updates:
    # Q_i(0) in [-5.16, -5.02], Q_i(1) in [-3.91, -3.48], Q_i(2) in [-4.15, -3.83]);
    # the mean of the two equal-valued actions is steadier (in [-3.90, -3.81]).
    torch.testing.assert_close(q[:, 0], torch.full((2,), -16 / 3), atol=0.4, rtol=0.0)
    torch.testing.assert_close(q[:, 1:].mean(dim=1), torch.full((2,), -4.0), atol=0.3, rtol=0.0)
    assert (q[:, 1:].max(dim=1).values > q[:, 0]).all()
    assert summary["test/return_mean"] == pytest.approx(0.0)
    assert summary["test/win_rate"] == 0.0
