"""DDN's Table 2 rivals (CTDS, PTDE, IGM-DA): their losses against hand computations,
gradient isolation parameter by parameter, students that never read the state, exact
resume (PTDE across its phases), export and evaluation of the student."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal

import pytest
import torch
from same_run import assert_states_equal, without_time
from torch import nn

from ddn.algorithms import get_algorithm
from ddn.buffer import EpisodeBatch
from ddn.checkpoint import list_checkpoints, load_checkpoint
from ddn.cli import main
from ddn.config import ConfigError, resolve
from ddn.deploy import export_student, load_student
from ddn.envs import make
from ddn.evaluate import evaluate
from ddn.experiment import Experiment, build_learner, make_env
from ddn.learners import CTDSLearner, IGMBCLearner, IGMDALearner, PTDELearner
from ddn.learners.ctds import ctds_loss
from ddn.learners.igm_da import imitation_loss
from ddn.learners.ptde import ptde_distill_loss
from ddn.learners.value_decomposition import encode_batch, unroll_batch
from ddn.logging import read_metrics
from ddn.nets.actor import GreedyActor
from ddn.nets.ddn import GuidingNetwork
from ddn.nets.masked import masked_argmax
from ddn.nets.rivals import PrivilegedObsAgent
from ddn.rollout import Collector

CPU = torch.device("cpu")
# view=3: observations (27 floats) and the state (75 floats) differ in size.
TINY = [
    "env.n_agents=3", "env.n_prey=1", "env.height=5", "env.width=5", "env.view=3",
    "env.episode_limit=10", "rnn_hidden_dim=16", "mixing_embed_dim=8", "hypernet_embed=16",
    "n_head=2", "device=cpu", "ptde_z_dim=8", "ptde_hyper_dim=4",
    "ptde_dataset_episodes=12", "ptde_distill_steps=30", "ptde_distill_batch=32",
]  # fmt: skip
EXP = [
    "batch_size_run=4", "batch_size=4", "buffer_size=32", "t_max=120", "test_interval=60",
    "test_nepisode=4", "log_interval=40", "save_model_interval=40",
]  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")

RIVAL_ALGORITHMS = ("ctds", "ctds_vdn", "ctds_qplex", "ptde", "igm_da", "igm_bc")
# The same learners on the other mixers their own code has (resumed in the slow tier only
# through the names above).
OTHER_MIXERS = ("ptde_vdn", "igm_da_qplex", "igm_bc_qplex")


def tiny_cfg(algo: str, *extra: str):
    return resolve("predator_prey", algo, overrides=[*TINY, *extra])


def setup(algo: str, *extra: str, seed: int = 0):
    """A learner and one batch of 8 random-action episodes."""
    cfg = tiny_cfg(algo, *extra)
    env = make_env(cfg, 8, seed, CPU)  # as a run makes it (CTDS: with privileged_obs)
    torch.manual_seed(seed)
    learner = build_learner(cfg, env.spec, CPU)
    batch, _ = Collector(env, CPU).run(learner.acting_network, 1.0)
    return learner, batch, env


# ---------------------------------------------------------------- 1. the losses by hand
def test_ctds_loss_sums_all_actions_and_agents_over_real_steps():
    # E=1, T=2, N=2, A=2; the second step is padding.
    student = torch.tensor([[[[1.0, 2.0], [0.0, 0.0]], [[9.0, 9.0], [9.0, 9.0]]]])
    teacher = torch.tensor([[[[0.0, 0.0], [1.0, -1.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    filled = torch.tensor([[True, False]])
    # Step 0: agent 0 (1 + 4) + agent 1 (1 + 1) = 7, over one real step (not N * A).
    assert float(ctds_loss(student, teacher, filled)) == pytest.approx(7.0)
    both = torch.tensor([[True, True]])  # step 1 adds 4 * 81 = 324: (7 + 324) / 2
    assert float(ctds_loss(student, teacher, both)) == pytest.approx(165.5)


def test_ctds_loss_never_reaches_the_teacher():
    teacher = torch.randn(2, 3, 2, 4, requires_grad=True)
    student = torch.randn(2, 3, 2, 4, requires_grad=True)
    ctds_loss(student, teacher, torch.ones(2, 3, dtype=torch.bool)).backward()
    assert teacher.grad is None and student.grad is not None


def test_imitation_loss_regresses_onto_the_one_hot_label():
    # E=1, T=1, N=2, A=3: labels 2 and 0.
    q = torch.tensor([[[[0.5, 0.0, 1.0], [2.0, 1.0, -1.0]]]])
    labels = torch.tensor([[[2, 0]]])
    # agent 0: 0.25 + 0 + 0 ; agent 1: 1 + 1 + 1 -> 3.25 over N * A = 6 entries.
    loss = imitation_loss(q, labels, torch.tensor([[True]]))
    assert float(loss) == pytest.approx(3.25 / 6)
    # A padded step counts neither in the sum nor in the normaliser.
    q2 = torch.cat((q, torch.full_like(q, 5.0)), dim=1)
    labels2 = torch.cat((labels, labels), dim=1)
    assert float(imitation_loss(q2, labels2, torch.tensor([[True, False]]))) == pytest.approx(
        3.25 / 6
    )


def test_ptde_distill_loss_sums_units_and_averages_rows():
    z_hat = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    mu = torch.tensor([[0.0, 0.0], [3.0, -1.0]])
    # rows: 1 + 4 = 5 and 9 + 1 = 10 -> mean 7.5
    assert float(ptde_distill_loss(z_hat, mu)) == pytest.approx(7.5)


def test_ptde_dataset_targets_the_gip_mean_of_real_steps():
    learner, _, env = setup("ptde")
    data = learner.collect_dataset(env)
    rows = len(data["x"])
    n = learner.spec.n_agents
    assert rows % n == 0 and rows >= 12 * n  # 12 episodes, every agent of every real step
    assert len(data["train"]) + len(data["eval"]) == rows
    assert set(data["train"].tolist()).isdisjoint(data["eval"].tolist())
    # The target is the mean mu: re-deriving it from the stored x and a state gives mu
    # (deterministic), never a sample.
    x = data["x"][:n].view(1, 1, n, -1)
    state = torch.zeros(1, 1, learner.spec.state_dim)
    mu1, _ = learner.teacher.gip(x, state)
    mu2, _ = learner.teacher.gip(x, state)
    torch.testing.assert_close(mu1, mu2)


# ---------------------------------------------------------------- 2. gradient isolation
def groups(learner) -> dict[str, nn.Module]:
    td = learner.td
    found = {
        "teacher": td.agent,
        "mixer": td.objective,
        "target_teacher": td.target_agent,
        "target_mixer": td.target_objective,
    }
    if isinstance(learner, PTDELearner):
        found["z_net"] = learner.student.z_net
    elif isinstance(learner, IGMDALearner):
        found["student"] = learner.learner
    else:
        found["student"] = learner.student
    return found


def snapshot(learner) -> dict[str, dict[str, torch.Tensor]]:
    return {
        g: {k: p.detach().clone() for k, p in m.named_parameters()}
        for g, m in groups(learner).items()
    }


def moved(learner, before) -> dict[str, float]:
    """The share of each group's parameter tensors that changed since ``before`` (groups
    without parameters, VDN's mixer, left out)."""
    now = snapshot(learner)
    return {
        g: sum(not torch.equal(now[g][k], v) for k, v in params.items()) / len(params)
        for g, params in before.items()
        if params
    }


@pytest.mark.parametrize(
    "algo", ["ctds", "ctds_vdn", "ctds_qplex", "igm_da", "igm_bc", "igm_da_qplex", "igm_bc_qplex"]
)
def test_td_step_moves_only_the_teacher_and_the_student_step_only_the_student(algo):
    learner, batch, _ = setup(algo)
    learner.train(batch, episode=1)  # optimiser moments exist: every step moves what it sees
    for p in groups(learner)["student"].parameters():
        p.grad = None
    seen: dict[str, object] = {}
    td_update = learner.td.td_update

    def spy(*args, **kwargs):
        before = snapshot(learner)
        out = td_update(*args, **kwargs)
        seen["td_moved"] = moved(learner, before)
        seen["after_td"] = snapshot(learner)
        seen["teacher_grads"] = [p.grad.clone() for p in learner.td.params]
        student = groups(learner)["student"]
        seen["student_grads"] = [p.grad for p in student.parameters()]
        return out

    learner.td.td_update = spy
    learner.train(batch, episode=2)
    td_moved = seen["td_moved"]
    assert td_moved["teacher"] == 1.0 and td_moved.get("mixer", 1.0) == 1.0, td_moved
    assert td_moved["student"] == 0.0 and td_moved["target_teacher"] == 0.0, td_moved
    assert all(g is None for g in seen["student_grads"])  # the TD loss reached no student
    student_moved = moved(learner, seen["after_td"])
    assert student_moved.pop("student") == 1.0
    assert set(student_moved.values()) == {0.0}, student_moved
    # The student's loss added no gradient to the teacher's (it would accumulate).
    for g, p in zip(seen["teacher_grads"], learner.td.params, strict=True):
        assert torch.equal(g, p.grad)


def test_ptde_phase_one_never_moves_the_z_net_and_phase_two_only_it():
    learner, batch, env = setup("ptde")
    before = snapshot(learner)
    learner.train(batch, episode=1)
    frac = moved(learner, before)
    assert frac["teacher"] == 1.0 and frac["mixer"] == 1.0 and frac["z_net"] == 0.0, frac
    before = snapshot(learner)
    metrics = learner.phase_two(env, progress=False)
    assert metrics is not None and learner.student_ready
    frac = moved(learner, before)
    assert frac["z_net"] == 1.0, frac
    assert all(v == 0.0 for k, v in frac.items() if k != "z_net"), frac
    with pytest.raises(RuntimeError, match="phase 1 is over"):
        learner.train(batch, episode=2)


def test_each_optimiser_holds_exactly_its_own_network():
    def ids(opt):
        return {id(p) for g in opt.param_groups for p in g["params"]}

    for algo in RIVAL_ALGORITHMS:
        learner, _, _ = setup(algo)
        teacher = {id(p) for p in learner.td.params}
        if isinstance(learner, PTDELearner):
            student, opt = learner.student.z_net, learner.z_optimizer
        elif isinstance(learner, IGMDALearner):
            student, opt = learner.learner, learner.learner_optimizer
        else:
            student, opt = learner.student, learner.student_optimizer
        assert ids(opt) == {id(p) for p in student.parameters()}, algo
        assert ids(learner.td.optimizer) == teacher and teacher.isdisjoint(ids(opt)), algo


# ---------------------------------------------------------------- 3. what each network reads
def _student(learner):
    return learner.evaluation_policies()["test_student"]


@pytest.mark.parametrize("algo", RIVAL_ALGORITHMS + OTHER_MIXERS)
def test_students_never_read_the_state_and_teachers_do(algo):
    learner, batch, env = setup(algo)
    if isinstance(learner, PTDELearner):
        learner.phase_two(env, progress=False)
        learner.student.noise_std = 0.0  # compare deterministic outputs
    noise = {k: torch.randn_like(getattr(batch, k)) for k in ("state", "privileged_obs")}
    perturbed = EpisodeBatch(**{**batch.tensors(), **noise})
    student, teacher = _student(learner), learner.evaluation_policies()["test"]
    torch.manual_seed(0)
    with torch.no_grad():
        a, b = unroll_batch(student, batch).q, unroll_batch(student, perturbed).q
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        # Acting step by step: the actor hands it neither the state nor the privileged
        # observation (a network reading either would fail here).
        GreedyActor(student, CPU, 8).act(batch.obs[:, 0], batch.avail[:, 0])
        # The teacher does read it (the perturbation is one that matters).
        torch.manual_seed(0)
        t1 = unroll_batch(teacher, batch).q
        torch.manual_seed(0)
        t2 = unroll_batch(teacher, perturbed).q
        assert not torch.allclose(t1, t2)


def test_igm_learner_reads_the_available_actions_when_asked():
    learner, batch, _ = setup("igm_da")
    off, _, _ = setup("igm_da", "igm_learner_avail=false")
    fewer = EpisodeBatch(**{**batch.tensors(), "avail": torch.ones_like(batch.avail)})
    with torch.no_grad():
        assert not torch.allclose(
            unroll_batch(learner.learner, batch).q, unroll_batch(learner.learner, fewer).q
        )
        torch.testing.assert_close(
            unroll_batch(off.learner, batch).q, unroll_batch(off.learner, fewer).q
        )


@pytest.mark.parametrize("algo", ["ctds", "igm_da", "ptde"])
def test_whole_episode_unroll_equals_acting_step_by_step(algo):
    learner, batch, env = setup(algo)
    if isinstance(learner, PTDELearner):
        learner.phase_two(env, progress=False)
        learner.student.noise_std = 0.0
    nets = [_student(learner)]
    if algo != "ptde":  # PTDE's teacher samples z: no two unrolls are equal
        nets.append(learner.evaluation_policies()["test"])
    for net in nets:
        with torch.no_grad():
            whole = unroll_batch(net, batch)
            e, t1 = batch.obs.shape[:2]
            # The actor, fed the env's fields step by step, acts on the same Q-values.
            actor = GreedyActor(net, CPU, e)
            for t in range(t1):
                q, _ = net.step(
                    encode_batch(net, batch)[:, t], actor.hidden,
                    batch.state[:, t] if net.reads_state else None,
                )  # fmt: skip
                torch.testing.assert_close(whole.q[:, t], q, rtol=1e-5, atol=1e-5)
                avail = batch.avail[:, t]
                acted = actor.act(
                    batch.obs[:, t], avail, batch.state[:, t],
                    privileged_obs=batch.privileged_obs[:, t],
                )  # fmt: skip
                assert torch.equal(acted, masked_argmax(q, avail))
                if t1 > t + 1:
                    actor.last_actions = batch.actions[:, t]  # follow the stored episode


def test_what_the_teacher_reads():
    ctds, batch, _ = setup("ctds")
    assert isinstance(ctds.teacher, PrivilegedObsAgent)  # Predator-Prey has unlimited sight
    assert batch.privileged_obs.shape[-1] == (2 * 5 - 1) ** 2 * 3 == ctds.spec.privileged_obs_dim
    for algo, extra in [("ctds", "teacher_obs=state"), ("igm_da", "teacher_obs=auto")]:
        learner, batch, _ = setup(algo, extra)
        assert isinstance(learner.td.agent, GuidingNetwork) and learner.td.agent.pfb is None
        assert batch.privileged_obs.shape[-1] == 0  # not asked for: not produced
    igm, _, _ = setup("igm_bc", "teacher_obs=privileged")
    assert isinstance(igm.expert, PrivilegedObsAgent)
    with pytest.raises(ConfigError, match="no privileged observation"):
        cfg = resolve("matrix", "ctds", overrides=["device=cpu", "teacher_obs=privileged"])
        build_learner(cfg, make_env(cfg, 1, 0, CPU).spec, CPU)
    # On an env without one, auto falls back to [s, o_i].
    cfg = resolve("matrix", "ctds", overrides=["device=cpu"])
    learner = build_learner(cfg, make_env(cfg, 1, 0, CPU).spec, CPU)
    assert isinstance(learner.teacher, GuidingNetwork)


def test_dagger_acts_with_the_learner_and_bc_with_the_expert():
    dagger, _, _ = setup("igm_da")
    bc, _, _ = setup("igm_bc")
    assert dagger.acting_network is dagger.learner
    assert bc.acting_network is bc.expert
    ctds, _, _ = setup("ctds")
    assert ctds.acting_network is ctds.teacher


@pytest.mark.parametrize("mixer", ["", "_qplex"])
def test_dagger_bootstraps_the_expert_on_the_learners_greedy_actions(mixer):
    learner, batch, _ = setup(f"igm_da{mixer}")
    seen = {}
    td_update = learner.td.td_update

    def spy(batch, episode, reward=None, inputs=None, next_actions=None):
        seen["next"] = next_actions
        return td_update(batch, episode, reward, inputs, next_actions)

    learner.td.td_update = spy
    with torch.no_grad():
        q = unroll_batch(learner.learner, batch).q[:, 1:]
        avail = batch.avail[:, 1:] | ~batch.avail[:, 1:].any(dim=-1, keepdim=True)
        expected = q.masked_fill(~avail, float("-inf")).argmax(dim=-1)
    learner.train(batch, episode=1)
    assert torch.equal(seen["next"], expected)
    bc, batch, _ = setup(f"igm_bc{mixer}")
    bc_update = bc.td.td_update

    def spy_bc(batch, episode, reward=None, inputs=None, next_actions=None):
        seen["bc"] = next_actions
        return bc_update(batch, episode, reward, inputs, next_actions)

    bc.td.td_update = spy_bc
    bc.train(batch, episode=1)
    assert seen["bc"] is None  # the expert's own double-Q choice


# ---------------------------------------------------------------- 4. checkpoints and runs


def _same(a: dict, b: dict) -> bool:
    if set(a) != set(b):
        return False
    nan = [k for k in a if isinstance(a[k], float) and math.isnan(a[k])]
    return all(a[k] == b[k] for k in a if k not in nan) and all(math.isnan(b[k]) for k in nan)


@pytest.mark.slow
@pytest.mark.parametrize("algo", RIVAL_ALGORITHMS)
def test_run_resumes_like_an_uninterrupted_run(algo, tmp_path):
    cfg = tiny_cfg(algo, *EXP, "save_buffer=true")
    a = Experiment(cfg, tmp_path / "a", progress=False).run()
    assert "test_student/return_mean" in a and "test/transfer_rate" in a
    b_dir = tmp_path / "b"
    Experiment(cfg, b_dir, progress=False).run()
    saved = list_checkpoints(b_dir)
    assert len(saved) >= 3
    for t in saved[2:]:
        shutil.rmtree(b_dir / "checkpoints" / str(t))
    exp = Experiment.resume(b_dir, progress=False)
    _, state, _ = load_checkpoint(b_dir)
    assert_states_equal(exp.learner.state_dict(), state["learner"])
    assert _same(exp.run(), a)
    assert without_time(read_metrics(b_dir / "metrics.jsonl")) == without_time(
        read_metrics(tmp_path / "a" / "metrics.jsonl")
    )


@pytest.mark.slow
def test_ptde_stopped_in_phase_two_resumes_in_phase_two(tmp_path):
    cfg = tiny_cfg("ptde", *EXP)
    a = Experiment(cfg, tmp_path / "a", progress=False).run()
    (logged,) = [
        e for e in read_metrics(tmp_path / "a" / "metrics.jsonl") if "ptde/dataset_rows" in e
    ]
    assert logged["t_env"] == a["t_env"] >= cfg.t_max
    assert logged["ptde/distill_error_final"] < logged["ptde/distill_error_initial"]
    b_dir = tmp_path / "b"
    exp = Experiment(cfg, b_dir, progress=False)
    step = exp.learner.z_optimizer.step
    calls = {"n": 0}

    def interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:
            os.kill(os.getpid(), signal.SIGINT)
        return step(*args, **kwargs)

    exp.learner.z_optimizer.step = interrupt
    stopped = exp.run()
    assert stopped["finished"] is False and stopped["t_env"] >= cfg.t_max
    _, state, _ = load_checkpoint(b_dir)
    assert state["learner"]["phase"] == 2 and state["learner"]["distill_step"] == 10
    resumed = Experiment.resume(b_dir, progress=False)
    assert resumed.learner.phase == 2 and resumed.learner.distill_step == 10
    assert _same(resumed.run(), a)
    assert resumed.learner.phase == 3
    assert without_time(read_metrics(b_dir / "metrics.jsonl")) == without_time(
        read_metrics(tmp_path / "a" / "metrics.jsonl")
    )


@pytest.fixture(scope="module")
def ptde_run(tmp_path_factory):
    """A PTDE run with a checkpoint in phase 1 (t_env 40) and one after phase 2."""
    run = tmp_path_factory.mktemp("ptde") / "run"
    cfg = tiny_cfg("ptde", *EXP, "keep_checkpoints=0")
    Experiment(cfg, run, progress=False).run()
    return run


@pytest.mark.slow
def test_evaluate_and_export_a_ptde_student_of_any_checkpoint(ptde_run, tmp_path, capsys):
    first = list_checkpoints(ptde_run)[0]
    _, state, _ = load_checkpoint(ptde_run, first)
    assert state["learner"]["phase"] == 1
    args = ["evaluate", "--run", str(ptde_run), "--episodes", "4", "--policy", "student"]
    assert main([*args, "--checkpoint", str(first)]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["policy"] == "student" and out["checkpoint"] == first
    assert math.isfinite(out["test/return_mean"])
    assert "running it first" in captured.err
    path = tmp_path / "student.pt"
    assert main(["export", "--run", str(ptde_run), "--out", str(path)]) == 0
    policy = load_student(path)
    assert "state" not in json.dumps(torch.load(path, weights_only=True)["arch"])
    policy.reset(batch=2)
    env = make("predator_prey", num_envs=2, seed=0, **tiny_cfg("ptde").env)
    out = env.reset()
    assert policy.act(out.obs, out.avail).shape == (2, 3)


@pytest.mark.parametrize("algo", ["ctds", "igm_da"])
def test_exported_student_acts_like_the_trained_one(algo, tmp_path):
    learner, batch, _ = setup(algo)
    learner.train(batch, episode=1)
    student = _student(learner)
    path = export_student(student, tmp_path / "s.pt")
    policy = load_student(path)
    policy.reset(batch=8)
    hidden = student.initial_hidden(8, CPU)
    last = torch.full((8, learner.spec.n_agents), -1)
    with torch.no_grad():
        for t in range(3):
            avail = batch.avail[:, t] | ~batch.avail[:, t].any(dim=-1, keepdim=True)
            x = student.inputs.encode(student.observe(batch.obs[:, t], avail), last)
            q, hidden = student.step(x, hidden)
            expected = q.masked_fill(~avail, float("-inf")).argmax(dim=-1)
            assert torch.equal(policy.act(batch.obs[:, t], avail), expected)
            last = expected
    if algo == "igm_da":
        with pytest.raises(ValueError, match="pass avail"):
            policy.act(batch.obs[:, 0])


def test_rivals_are_registered_with_a_teacher_and_a_student():
    for algo in RIVAL_ALGORITHMS + OTHER_MIXERS:
        entry = get_algorithm(algo)
        assert entry.has_student and entry.base in ("qmix", "vdn", "qplex"), algo
    assert get_algorithm("ctds_vdn").label == "CTDS (VDN)"
    assert get_algorithm("igm_bc_qplex").label == "IGM-DA (BC, QPLEX)"
    for algo, base in [("ptde_vdn", "vdn"), ("igm_da_qplex", "qplex"), ("igm_bc_qplex", "qplex")]:
        assert get_algorithm(algo).mixer is get_algorithm(base).mixer, algo
    assert tiny_cfg("ptde").ptde_z_dim == 8 and tiny_cfg("igm_da").igm_learner_avail


def test_learner_types():
    for algo, kind in [
        ("ctds_qplex", CTDSLearner),
        ("igm_bc", IGMBCLearner),
        ("igm_bc_qplex", IGMBCLearner),
        ("igm_da_qplex", IGMDALearner),
        ("ptde", PTDELearner),
    ]:
        learner, _, _ = setup(algo)
        assert isinstance(learner, kind)


# ---------------------------------------------------------------- 5. learning (CI-sized)
# 2 predators, 1 prey on a 3x3 grid, 10-step episodes, no miscapture penalty; the 5x5
# view covers the grid from the centre, not from a corner (the teacher's covers it from
# anywhere). A greedy untrained policy scores 0, always catching 1.79 (2,048 episodes).
SMALL_PREDATOR_PREY = [
    "env.n_agents=2", "env.n_prey=1", "env.height=3", "env.width=3", "env.view=5",
    "env.episode_limit=10", "env.punishment=0.0", "batch_size_run=16", "batch_size=32",
    "buffer_size=500", "test_interval=5000", "test_nepisode=64", "log_interval=5000",
    "save_model=false", "epsilon_anneal_time=10000", "device=cpu",
    "ptde_dataset_episodes=200", "ptde_distill_steps=5000", "ptde_distill_lr=0.001",
    "ptde_distill_batch=256",
]  # fmt: skip


# The learning tests train on that task with four updates per collection of 16 episodes
# (PyMARL's and the paper's rate is one update per episode): at one update per 16 the
# students, trained by their teachers' updates alone, had had ~125 steps by 20k env steps
# and trailed (CTDS 0.69-0.73 of its teacher, IGM-DA 0.49-0.71).
LEARNING_SETTING = [*SMALL_PREDATOR_PREY, "updates_per_iteration=4"]


def _final_returns(algo: str, seed: int, run_dir) -> dict[str, float]:
    """20k steps; then the teacher's and the student's greedy returns on 2,048 episodes."""
    cfg = resolve("predator_prey", algo, overrides=LEARNING_SETTING, seed=seed, t_max=20_000)
    exp = Experiment(cfg, run_dir, progress=False)
    exp.run()
    policies = exp.learner.evaluation_policies()
    return {
        name: evaluate(policies[name], exp.test_env, 2048)["test/return_mean"]
        for name in ("test", "test_student")
    }


# The student's share of its teacher's greedy return, seeds 0-5 (benchmarks/rivals_small.py,
# docs/rivals.md): CTDS 0.91 0.99 1.00 0.94 0.97 1.00; IGM-DA DAgger 1.08 0.65 0.97 1.06
# 0.94 1.13; BC 1.38 1.15 1.02 0.97 0.91 1.15; PTDE (seeds 0-3) 0.96 0.84 0.54 0.96, where
# seed 2's teacher itself scored only 4.27. So >= 80% holds on 20 of 22 seeds; seed 0,
# tested, passes for each method (0.91, 1.08, 1.38, 0.96).
@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ctds", "ptde", "igm_da", "igm_bc"])
def test_the_student_follows_its_teacher(algo, tmp_path):
    final = _final_returns(algo, 0, tmp_path)
    assert final["test"] >= 4.0, final  # the teacher learned to capture
    assert final["test_student"] >= 2.5, final  # so did the student, from the teacher alone
    assert final["test_student"] >= 0.8 * final["test"], final
    if algo == "ptde":  # phase 2 cut the distillation error on held-out rows >= 10x
        (m,) = [e for e in read_metrics(tmp_path / "metrics.jsonl") if "ptde/dataset_rows" in e]
        assert m["ptde/distill_error_final"] <= 0.1 * m["ptde/distill_error_initial"], m
