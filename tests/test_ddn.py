"""DDN (paper Sec. 4): gradient isolation of teacher / student / IDM, the fusion blocks
against hand computations, the distillation losses, distilling from a frozen teacher,
the IDM's intrinsic reward, the ablation switches, every DDN algorithm, evaluation of
both networks and checkpoints."""

from __future__ import annotations

import copy
import inspect
import io
import math
import shutil

import pytest
import torch
from same_run import assert_states_equal, without_time
from torch import nn

from ddn.algorithms import all_algorithms
from ddn.buffer import EpisodeBatch
from ddn.checkpoint import list_checkpoints, load_checkpoint
from ddn.config import resolve
from ddn.deploy import export_student, load_student
from ddn.envs import make
from ddn.experiment import Experiment, build_learner
from ddn.learners import DDNLearner
from ddn.learners.base import transfer_rate
from ddn.learners.distillation import (
    alive_agents,
    block_loss,
    feature_distillation_loss,
    idm_loss,
    idm_mask,
    intrinsic_reward,
    kl_divergence,
    local_loss,
    q_distillation_loss,
    total_reward,
)
from ddn.learners.targets import fix_avail
from ddn.logging import read_metrics
from ddn.nets.actor import GreedyActor
from ddn.nets.agent import AgentOutput
from ddn.nets.ddn import GuidingNetwork, LocalPolicyNetwork
from ddn.nets.fusion import FusionBlock
from ddn.rollout import Collector

CPU = torch.device("cpu")
# view=3: observations (27 floats) and the state (75 floats) differ in size, so a
# network reading the wrong one cannot go unnoticed.
TINY = [
    "env.n_agents=3", "env.n_prey=1", "env.height=5", "env.width=5", "env.view=3",
    "env.episode_limit=10", "rnn_hidden_dim=16", "fusion_dim=8", "mixing_embed_dim=8",
    "hypernet_embed=16", "central_mixing_embed_dim=16", "n_head=2", "device=cpu",
]  # fmt: skip
DDN_METRICS = (
    "train/L_td", "train/L_B", "train/L_Q", "train/L_F", "train/L_I", "train/r_I_mean",
    "train/q_teacher_mean", "train/q_student_mean",
)  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(algo: str = "ddn", *extra: str):
    return resolve("predator_prey", algo, overrides=[*TINY, *extra])


def setup(algo: str = "ddn", *extra: str, seed: int = 0) -> tuple[DDNLearner, EpisodeBatch]:
    """A DDN learner and one batch of 8 random-action episodes collected by it."""
    cfg = tiny_cfg(algo, *extra)
    env = make(cfg.env_name, num_envs=8, seed=seed, **cfg.env)
    torch.manual_seed(seed)
    learner = build_learner(cfg, env.spec, CPU)
    assert isinstance(learner, DDNLearner)
    batch, _ = Collector(env, CPU).run(learner.acting_network, 1.0)
    return learner, batch


def groups(learner: DDNLearner) -> dict[str, nn.Module]:
    found = {
        "teacher": learner.teacher,
        "mixer": learner.td.objective,
        "target_teacher": learner.td.target_agent,
        "target_mixer": learner.td.target_objective,
        "student": learner.student,
    }
    if learner.idm is not None:
        found["idm_predictor"] = learner.idm.predictor
        found["idm_target"] = learner.idm.target
    return found


def snapshot(learner: DDNLearner) -> dict[str, dict[str, torch.Tensor]]:
    return {
        g: {n: p.detach().clone() for n, p in m.named_parameters()}
        for g, m in groups(learner).items()
    }


def changed(learner: DDNLearner, before: dict) -> dict[str, float]:
    """Fraction of each group's parameter tensors that changed since ``before``."""
    out = {}
    for g, m in groups(learner).items():
        named = list(m.named_parameters())
        if named:
            moved = [not torch.equal(before[g][n], p) for n, p in named]
            out[g] = sum(moved) / len(moved)
    return out


def moved_groups(learner: DDNLearner, before: dict) -> set[str]:
    return {g for g, frac in changed(learner, before).items() if frac > 0}


def alive_mask(batch: EpisodeBatch) -> torch.Tensor:
    t = batch.filled.shape[1]
    return (fix_avail(batch.avail)[:, :t].sum(-1) > 1) & batch.filled.unsqueeze(-1)


def greedy(q: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    return q.masked_fill(~avail, float("-inf")).argmax(dim=-1)


# ---------------------------------------------------------------- 1. gradient isolation
def test_local_step_changes_only_the_student():
    learner, batch = setup("ddn")
    # As in train(): the TD step first (it leaves gradients on the teacher), then L_local.
    _, teacher_out = learner.td.td_update(batch, episode=1)
    assert all(p.grad is not None for p in learner.teacher.parameters())
    before = snapshot(learner)
    metrics = learner.distill_step(batch, teacher_out)
    assert moved_groups(learner, before) == {"student"}
    assert changed(learner, before)["student"] == 1.0
    assert {"train/L_B", "train/L_Q", "train/L_F"} <= set(metrics)


def test_global_step_changes_only_the_teacher_and_mixer():
    learner, batch = setup("ddn")
    for p in learner.student.parameters():
        p.grad = None
    before = snapshot(learner)
    learner.td.td_update(batch, episode=1)
    assert moved_groups(learner, before) == {"teacher", "mixer"}
    assert changed(learner, before)["teacher"] == 1.0
    assert all(p.grad is None for p in learner.student.parameters())


def test_idm_step_changes_only_the_predictor():
    learner, batch = setup("ddn", "idm_mask_prob=1.0")
    before = snapshot(learner)
    learner.idm_step(batch)
    assert moved_groups(learner, before) == {"idm_predictor"}
    assert changed(learner, before)["idm_predictor"] == 1.0


def test_full_train_step_changes_teacher_student_and_predictor():
    learner, batch = setup("ddn")
    before = snapshot(learner)
    metrics = learner.train(batch, episode=1)
    frac = changed(learner, before)
    for group in ("teacher", "mixer", "student", "idm_predictor"):
        assert frac[group] == 1.0, (group, frac)
    for group in ("target_teacher", "target_mixer", "idm_target"):
        assert frac[group] == 0.0, (group, frac)
    assert all(math.isfinite(v) for v in metrics.values())


def optimised(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for g in optimizer.param_groups for p in g["params"]}


def test_each_optimiser_holds_exactly_its_own_network():
    learner, _ = setup("ddn")
    ids = {g: {id(p) for p in m.parameters()} for g, m in groups(learner).items()}
    assert optimised(learner.student_optimizer) == ids["student"]
    assert optimised(learner.td.optimizer) == ids["teacher"] | ids["mixer"]
    assert optimised(learner.idm_optimizer) == ids["idm_predictor"]
    assert isinstance(learner.student_optimizer, torch.optim.Adam)  # paper B.3
    assert isinstance(learner.td.optimizer, torch.optim.RMSprop)
    assert learner.evaluation_policies() == {
        "test": learner.teacher,
        "test_student": learner.student,
    }
    assert learner.td.agent is learner.teacher


def test_distillation_loss_has_no_gradient_path_to_the_teacher():
    learner, batch = setup("ddn")
    teacher_params = [*learner.teacher.parameters(), *learner.td.objective.parameters()]
    _, teacher_out = learner.td.td_update(batch, episode=1)  # what train() distils from
    for x in (teacher_out.q, teacher_out.gru_out, teacher_out.feature, teacher_out.block):
        assert not x.requires_grad and x.grad_fn is None
    for p in [*teacher_params, *learner.student.parameters()]:
        p.grad = None
    x = learner.td.encode(batch)
    student_out, _ = learner.student.unroll(x)
    loss, _ = local_loss(teacher_out, student_out, fix_avail(batch.avail), batch.filled)
    loss.backward()
    assert all(p.grad is None for p in teacher_params)
    assert all(p.grad is not None for p in learner.student.parameters())
    assert sum(float(p.grad.abs().sum()) for p in learner.student.parameters()) > 0

    # The check bites: the same loss on the live (undetached) teacher outputs reaches it.
    live, _ = learner.teacher.unroll(x, batch.state)
    loss, _ = local_loss(live, learner.student.unroll(x)[0], fix_avail(batch.avail), batch.filled)
    loss.backward()
    assert any(p.grad is not None for p in learner.teacher.parameters())


# ---------------------------------------------------------------- 2. IDM target frozen
def test_idm_target_never_changes_and_the_predictor_does():
    cfg = tiny_cfg("ddn", "idm_mask_prob=1.0")
    env = make(cfg.env_name, num_envs=4, seed=0, **cfg.env)
    torch.manual_seed(0)
    learner = build_learner(cfg, env.spec, CPU)
    assert learner.idm is not None
    target = {n: p.clone() for n, p in learner.idm.target.state_dict().items()}
    predictor = {n: p.clone() for n, p in learner.idm.predictor.state_dict().items()}
    assert all(not p.requires_grad for p in learner.idm.target.parameters())
    assert all(p.requires_grad for p in learner.idm.predictor.parameters())
    assert optimised(learner.idm_optimizer) == {id(p) for p in learner.idm.predictor.parameters()}
    collector = Collector(env, CPU)
    for step in range(12):
        batch, _ = collector.run(learner.acting_network, 1.0)
        learner.train(batch, episode=4 * (step + 1))
    for n, p in learner.idm.target.state_dict().items():
        assert torch.equal(p, target[n]), n
    assert all(not p.requires_grad for p in learner.idm.target.parameters())
    moved = [
        not torch.equal(p, predictor[n]) for n, p in learner.idm.predictor.state_dict().items()
    ]
    assert all(moved)
    assert float(learner.idm.error_stats.count) > 0


# ---------------------------------------------------------------- 3. student needs no state
def test_student_unroll_and_step_need_only_local_inputs():
    learner, batch = setup("ddn")
    student = learner.student
    x = learner.td.encode(batch)  # x_i = [o_i, u_i^{t-1}, id_i]: nothing of the state
    assert x.shape[-1] == student.inputs.dim == student.local_dim
    e, t1 = batch.obs.shape[:2]
    with torch.no_grad():
        seq, _ = student.unroll(x)
        hidden = student.initial_hidden(e, CPU)
        for t in range(t1):
            q, hidden = student.step(x[:, t], hidden)
            assert torch.allclose(q, seq.q[:, t], atol=1e-5)
        # A state cannot be handed to it by mistake; the teacher's is required.
        with pytest.raises(ValueError, match="takes no global state"):
            student.unroll(x, batch.state)
        with pytest.raises(ValueError, match="takes no global state"):
            student.step(x[:, 0], hidden, batch.state[:, 0])
        with pytest.raises(ValueError, match="needs the global state"):
            learner.teacher.unroll(x)
        # The actor hands the state only to networks that read it: a scrambled state
        # changes nothing the student does.
        actors = [GreedyActor(student, CPU, e) for _ in range(2)]
        for t in range(t1):
            obs, avail = batch.obs[:, t], fix_avail(batch.avail[:, t])
            a = actors[0].act(obs, avail, batch.state[:, t])
            b = actors[1].act(obs, avail, torch.randn_like(batch.state[:, t]))
            assert torch.equal(a, b)


def test_exported_student_acts_from_observations_only(tmp_path):
    learner, batch = setup("ddn")
    path = export_student(learner.student, tmp_path / "lpn.pt")
    data = torch.load(path, weights_only=True)
    assert "state_dim" not in data["arch"]
    policy = load_student(path)
    e, t1 = batch.obs.shape[:2]
    policy.reset(batch=e)
    student = learner.student
    hidden = student.initial_hidden(e, CPU)
    last = torch.full((e, learner.spec.n_agents), -1, dtype=torch.long)
    with torch.no_grad():
        for t in range(t1):
            actions = policy.act(batch.obs[:, t])  # observations only: no state, no avail
            q, hidden = student.step(student.inputs.encode(batch.obs[:, t], last), hidden)
            assert torch.equal(actions, q.argmax(dim=-1))
            last = actions


# ---------------------------------------------------------------- 4. PFB / IOB
def explicit_weights(block: FusionBlock, x: torch.Tensor) -> torch.Tensor:
    """W_i = sum_m z'_im A_m with z'_i = [relu(hyper(x_i)), 1], by a plain loop."""
    z = torch.relu(x @ block.hyper.weight.T + block.hyper.bias)
    z1 = torch.cat((z, torch.ones_like(z[..., :1])), dim=-1)
    w = torch.zeros(*x.shape[:-1], block.value_dim, block.out_dim, dtype=x.dtype)
    for m in range(block.hypernet_dim + 1):
        w = w + z1[..., m, None, None] * block.basis[:, m, :]
    return w


def test_fusion_block_matches_explicit_weights():
    torch.manual_seed(0)
    e, t, n, x_dim, v, d, h = 2, 3, 4, 5, 7, 6, 3
    block = FusionBlock(x_dim, v, d, h).double()
    x = torch.randn(e, t, n, x_dim, dtype=torch.float64)
    with torch.no_grad():
        w = explicit_weights(block, x)
        w_api, b = block.weights(x)
        assert torch.allclose(w, w_api)
        assert w.shape == (e, t, n, v, d) and b.shape == (e, t, n, d)
        # B_i is what the block outputs for a zero value, and it depends on x_i alone.
        assert torch.allclose(block(x, torch.zeros(e, t, v, dtype=torch.float64)), b)
        assert torch.allclose(block(x, torch.zeros(e, t, n, v, dtype=torch.float64)), b)
        assert torch.allclose(block.weights(x[:, :, :1])[1], b[:, :, :1])
        # PFB: one state per step, shared by the agents: S_hat_i = S W_i + B_i.
        state = torch.randn(e, t, v, dtype=torch.float64)
        expected = torch.einsum("etv,etnvd->etnd", state, w) + b
        pfb = block(x, state)
        assert pfb.shape == (e, t, n, d)
        assert torch.allclose(pfb, expected)
        # IOB: each agent's own value: o_hat_i = o_i W_i + B_i.
        obs = torch.randn(e, t, n, v, dtype=torch.float64)
        expected = torch.einsum("etnv,etnvd->etnd", obs, w) + b
        assert torch.allclose(block(x, obs), expected)
        # Both contraction orders agree when every agent gets the same value.
        shared = block(x, state.unsqueeze(-2).expand(e, t, n, v).contiguous())
        assert torch.allclose(shared, pfb)


def test_fusion_block_tiny_example_by_hand():
    """V=2, d=2, h=1, one-dimensional x; numbers worked out on paper."""
    block = FusionBlock(hyper_in=1, value_dim=2, out_dim=2, hypernet_dim=1)
    with torch.no_grad():
        block.hyper.weight.copy_(torch.tensor([[2.0]]))
        block.hyper.bias.copy_(torch.tensor([-1.0]))
        # basis[v, m, k]: A_0 = [[1, 2], [5, 6]] (for z), A_1 = [[3, 4], [7, 8]] (for 1).
        block.basis.copy_(torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]))
        # The bias head, whatever its depth: zero weights, last layer's bias B = [0.1, 0.2].
        for p in block.bias.parameters():
            p.zero_()
        [*_, last] = (m for m in block.bias.modules() if isinstance(m, nn.Linear))
        last.bias.copy_(torch.tensor([0.1, 0.2]))
        x = torch.tensor([[1.0], [0.0]])  # agent 0: z = relu(2 - 1) = 1; agent 1: z = 0
        # W_0 = A_0 + A_1 = [[4, 6], [12, 14]]; W_1 = A_1 = [[3, 4], [7, 8]].
        w, b = block.weights(x)
        assert w.tolist() == [[[4.0, 6.0], [12.0, 14.0]], [[3.0, 4.0], [7.0, 8.0]]]
        assert torch.allclose(b, torch.tensor([[0.1, 0.2], [0.1, 0.2]]))
        # PFB, S = [1, -2]: agent 0: [4 - 24, 6 - 28] + B; agent 1: [3 - 14, 4 - 16] + B.
        pfb = block(x, torch.tensor([1.0, -2.0]))
        assert torch.allclose(pfb, torch.tensor([[-19.9, -21.8], [-10.9, -11.8]]))
        # IOB, o_0 = [2, 1], o_1 = [-1, 3]: [8 + 12, 12 + 14] + B; [-3 + 21, -4 + 24] + B.
        iob = block(x, torch.tensor([[2.0, 1.0], [-1.0, 3.0]]))
        assert torch.allclose(iob, torch.tensor([[20.1, 26.2], [18.1, 20.2]]))


def test_networks_use_their_blocks_as_documented():
    """GGN: PFB(x_i, S) feeds the agent net; LPN: IOB(x_i, o_i) does."""
    learner, batch = setup("ddn")
    teacher, student = learner.teacher, learner.student
    x = learner.td.encode(batch)
    with torch.no_grad():
        w, b = teacher.pfb.weights(x)
        s_hat = torch.einsum("etv,etnvd->etnd", batch.state, w) + b
        out, _ = teacher.unroll(x, batch.state)
        assert torch.allclose(out.block, s_hat, atol=1e-5)
        # RNNAgent reads time-major inputs.
        assert torch.allclose(out.q, teacher.net(s_hat.transpose(0, 1))[0].q, atol=1e-5)
        w, b = student.iob.weights(x)
        o_hat = torch.einsum("etnv,etnvd->etnd", batch.obs, w) + b
        out, _ = student.unroll(x)
        assert torch.allclose(out.block, o_hat, atol=1e-5)
        assert torch.allclose(out.q, student.net(o_hat.transpose(0, 1))[0].q, atol=1e-5)
    assert student.iob.value_dim == learner.spec.obs_dim != learner.spec.state_dim


# ---------------------------------------------------------------- 5. L_Q, L_B, L_F
def test_kl_divergence_ignores_unavailable_actions():
    torch.manual_seed(0)
    teacher, student = torch.randn(5, 4), torch.randn(5, 4)
    valid = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 1], [0, 0, 1, 1]])
    valid = valid.bool()
    kl = kl_divergence(teacher, student, valid)
    # By hand: softmax over the valid entries only.
    for r in range(5):
        idx = valid[r].nonzero().flatten()
        p, q = teacher[r, idx].softmax(-1), student[r, idx].softmax(-1)
        assert torch.isclose(kl[r], (p * (p.log() - q.log())).sum(), atol=1e-6)
    assert kl[1] == 0.0  # one available action: nothing to distil
    # Changing the logits of unavailable actions, even to huge values, changes nothing.
    noise_t = torch.where(valid, 0.0, torch.randn(5, 4) * 1e6)
    noise_s = torch.where(valid, 0.0, torch.full((5, 4), -3e30))
    other = kl_divergence(teacher + noise_t, student + noise_s, valid)
    assert torch.equal(other, kl)
    big = kl_divergence(
        teacher.masked_fill(~valid, 1e30), student.masked_fill(~valid, -1e30), valid
    )
    assert torch.equal(big, kl)
    # Huge available logits stay finite.
    huge = kl_divergence(teacher * 1e6, student * 1e6, valid)
    assert torch.isfinite(huge).all() and (huge >= 0).all()
    # Gradient on the unavailable student logits is exactly zero (and finite elsewhere).
    s = student.clone().masked_fill(~valid, 1e30).requires_grad_(True)
    t = teacher.clone().requires_grad_(True)
    kl_divergence(t, s, valid).sum().backward()
    assert torch.equal(s.grad[~valid], torch.zeros(int((~valid).sum())))
    assert torch.equal(t.grad[~valid], torch.zeros(int((~valid).sum())))
    assert torch.isfinite(s.grad).all() and torch.isfinite(t.grad).all()
    assert s.grad[valid].abs().sum() > 0
    # Without a mask it is the ordinary KL; it is zero between equal logits.
    full = kl_divergence(teacher, student)
    p, q = teacher.softmax(-1), student.softmax(-1)
    assert torch.allclose(full, (p * (p.log() - q.log())).sum(-1), atol=1e-6)
    assert torch.allclose(kl_divergence(teacher, teacher, valid), torch.zeros(5), atol=1e-7)


def _kl_by_hand(tl: list[float], sl: list[float], valid: list[bool]) -> float:
    tl = [a for a, v in zip(tl, valid, strict=True) if v]
    sl = [a for a, v in zip(sl, valid, strict=True) if v]
    zt, zs = sum(math.exp(a) for a in tl), sum(math.exp(a) for a in sl)
    return sum(
        math.exp(a) / zt * ((a - math.log(zt)) - (b - math.log(zs)))
        for a, b in zip(tl, sl, strict=True)
    )


def test_distillation_losses_match_a_hand_computation():
    """E=1, 3 transitions (the last one padding), N=2 agents, A=3 actions, H=d=2.
    Agent 1 is dead at step 1 (only its no-op is available)."""
    weights = {"w_block": 0.5, "w_q": 2.0, "w_feature": 3.0, "temperature": 2.0}
    g = torch.Generator().manual_seed(0)
    shape = (1, 4, 2)  # [E, T+1, N]
    teacher = AgentOutput(
        q=torch.randn(*shape, 3, generator=g), gru_out=torch.zeros(*shape, 2),
        feature=torch.rand(*shape, 2, generator=g), block=torch.randn(*shape, 2, generator=g),
    )  # fmt: skip
    student = AgentOutput(
        q=torch.randn(*shape, 3, generator=g), gru_out=torch.zeros(*shape, 2),
        feature=torch.rand(*shape, 2, generator=g), block=torch.randn(*shape, 2, generator=g),
    )  # fmt: skip
    avail = torch.tensor(
        [[[[1, 0, 1], [1, 1, 1]], [[1, 1, 0], [0, 0, 1]], [[0, 0, 0], [0, 0, 0]],
          [[0, 0, 0], [0, 0, 0]]]]
    ).bool()  # fmt: skip
    filled = torch.tensor([[True, True, False]])
    loss, metrics = local_loss(teacher, student, fix_avail(avail), filled, **weights)

    alive = [(0, 0), (0, 1), (1, 0)]  # (step, agent)
    tq, sq = teacher.q[0].tolist(), student.q[0].tolist()
    tf, sf = teacher.feature[0].tolist(), student.feature[0].tolist()
    tb, sb = teacher.block[0].tolist(), student.block[0].tolist()
    av = avail[0].tolist()
    l_b = (
        sum(
            sum((s - t) ** 2 for s, t in zip(sb[k][i], tb[k][i], strict=True)) / 2 for k, i in alive
        )
        / 3
    )  # mean over alive agent-steps and block units
    l_q = (
        sum(
            _kl_by_hand(
                [x / 2 for x in tq[k][i]], [x / 2 for x in sq[k][i]], [bool(a) for a in av[k][i]]
            )
            for k, i in alive
        )
        / 2
    )  # summed over agents, averaged over the 2 real steps
    l_f = sum(_kl_by_hand(tf[k][i], sf[k][i], [True, True]) for k, i in alive) / 2
    assert metrics["train/L_B"].item() == pytest.approx(l_b, rel=1e-5)
    assert metrics["train/L_Q"].item() == pytest.approx(l_q, rel=1e-5)
    assert metrics["train/L_F"].item() == pytest.approx(l_f, rel=1e-5)
    assert loss.item() == pytest.approx(0.5 * l_b + 2.0 * l_q + 3.0 * l_f, rel=1e-5)
    assert metrics["train/L_local"].item() == pytest.approx(loss.item())

    # The dead agent and the padded step do not count: changing them changes nothing.
    for out in (teacher, student):
        out.q[0, 1, 1] += 5.0
        out.q[0, 2:] = torch.randn(2, 2, 3, generator=g)
        out.feature[0, 1, 1] += 1.0
        out.feature[0, 2:] = torch.rand(2, 2, 2, generator=g)
        out.block[0, 1, 1] += 1.0
        out.block[0, 2:] = torch.randn(2, 2, 2, generator=g)
    again, metrics2 = local_loss(teacher, student, fix_avail(avail), filled, **weights)
    assert again.item() == pytest.approx(loss.item(), rel=1e-6)
    for key in ("train/L_B", "train/L_Q", "train/L_F"):
        assert metrics2[key].item() == pytest.approx(metrics[key].item(), rel=1e-6)


# ---------------------------------------------------------------- 5b. each equation by hand
LN = math.log


def test_alive_agents_are_real_transitions_with_a_choice():
    # E=1, T=2 transitions (the second padding), N=2, A=2; agent 1 has only its no-op at t=0.
    avail = torch.tensor([[[[1, 1], [1, 0]], [[1, 1], [1, 1]], [[1, 1], [1, 1]]]]).bool()
    alive = alive_agents(avail, torch.tensor([[True, False]]))
    assert alive.tolist() == [[[True, False], [False, False]]]


def test_block_loss_eq6_by_hand():
    """L_B, E=1, T=2, N=2, d=2; agent 1 dead at t=1; the bootstrap step t=2 never counts.
    t=0: agent 0 (1^2 + 2^2) / 2 = 2.5, agent 1 (2^2 + 2^2) / 2 = 4; t=1: agent 0
    (0 + 1^2) / 2 = 0.5. Mean over the 3 alive agent-steps: 7 / 3."""
    student = torch.tensor([[[[1.0, 2.0], [3.0, 3.0]], [[0.0, 1.0], [9.0, 9.0]], [[7.0, 7.0]] * 2]])
    teacher = torch.tensor([[[[0.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0]] * 2]])
    alive = torch.tensor([[[True, True], [True, False]]])
    assert block_loss(student, teacher, alive).item() == pytest.approx(7 / 3, rel=1e-6)


def test_q_distillation_loss_eq6_by_hand():
    """L_Q at temperature 2, E=1, T=2 (t=1 padding), N=3, A=3, at t=0:
    agent 0, action 2 unavailable: teacher logits [0, 0]/2 -> p = [1/2, 1/2]; student
      [2 ln 3, 0]/2 = [ln 3, 0] -> q = [3/4, 1/4]; KL = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3);
    agent 1, all available: teacher [2 ln 3, 0, 0]/2 -> p = [3/5, 1/5, 1/5]; student 0s ->
      q = 1/3 each; KL = 3/5 ln(9/5) + 2/5 ln(3/5);
    agent 2 dead (no-op only): not counted, whatever its Q.
    Summed over agents, averaged over the one real step."""
    big = 100.0  # on unavailable actions, dead agents and padding: must not count
    teacher = torch.tensor([[[[0.0, 0.0, big], [2 * LN(3), 0.0, 0.0], [big, -big, 0.0]]]])
    student = torch.tensor([[[[2 * LN(3), 0.0, -big], [0.0, 0.0, 0.0], [-big, big, 0.0]]]])
    teacher = torch.cat((teacher, torch.full_like(teacher, big)), dim=1)  # t=1: padding
    student = torch.cat((student, torch.full_like(student, -big)), dim=1)
    avail = torch.tensor([[[[1, 1, 0], [1, 1, 1], [1, 0, 0]], [[1, 1, 1]] * 3]]).bool()
    filled = torch.tensor([[True, False]])
    expected = 0.5 * LN(4 / 3) + 0.6 * LN(9 / 5) + 0.4 * LN(3 / 5)  # = 0.29218...
    alive = alive_agents(avail, filled)
    l_q = q_distillation_loss(teacher, student, avail, alive, filled, temperature=2.0)
    assert l_q.item() == pytest.approx(expected, rel=1e-5)


def test_feature_distillation_loss_eq6_by_hand():
    """L_F, E=1, T=2, N=2, H=2. Teacher features [ln 3, 0] -> p = [3/4, 1/4], student
    [0, 0] -> q = [1/2, 1/2]: KL = 3/4 ln(3/2) + 1/4 ln(1/2) = k for every alive agent.
    Alive: agent 0 at t=0, both agents at t=1: 3k summed, over 2 real steps: 1.5 k."""
    teacher = torch.tensor([LN(3), 0.0]).expand(1, 3, 2, 2).contiguous()
    student = torch.zeros(1, 3, 2, 2)
    student[0, 0, 1] = 5.0  # agent 1 dead at t=0: not counted
    alive = torch.tensor([[[True, False], [True, True]]])
    k = 0.75 * LN(1.5) + 0.25 * LN(0.5)  # = 0.13081...
    l_f = feature_distillation_loss(teacher, student, alive, torch.tensor([[True, True]]))
    assert l_f.item() == pytest.approx(1.5 * k, rel=1e-5)


def _outputs(block: list[float] | None, q: list[float], feature: list[float]) -> AgentOutput:
    """One agent, one real transition (plus the bootstrap step, zeros)."""

    def seq(x: list[float]) -> torch.Tensor:
        return torch.stack((torch.tensor(x), torch.zeros(len(x)))).view(1, 2, 1, len(x))

    return AgentOutput(
        q=seq(q), gru_out=torch.zeros(1, 2, 1, 2), feature=seq(feature),
        block=None if block is None else seq(block),
    )  # fmt: skip


def test_local_loss_eq7_weights_and_switches_by_hand():
    """E=1, T=1, N=1, A=2 (both available). L_B: student [1, 2], teacher [0, 0] -> 2.5.
    L_Q: teacher [ln 3, 0] -> [3/4, 1/4], student [0, 0] -> [1/2, 1/2]:
      3/4 ln(3/2) + 1/4 ln(1/2). L_F: teacher [0, 0], student [ln 3, 0]: 1/2 ln(4/3).
    L_local = w_B L_B + w_Q L_Q + w_F L_F; a weight of None switches its term off."""
    teacher = _outputs([0.0, 0.0], [LN(3), 0.0], [0.0, 0.0])
    student = _outputs([1.0, 2.0], [0.0, 0.0], [LN(3), 0.0])
    avail, filled = torch.ones(1, 2, 1, 2, dtype=torch.bool), torch.tensor([[True]])
    l_b, l_q, l_f = 2.5, 0.75 * LN(1.5) + 0.25 * LN(0.5), 0.5 * LN(4 / 3)
    loss, metrics = local_loss(teacher, student, avail, filled, 0.5, 2.0, 3.0)
    assert loss.item() == pytest.approx(0.5 * l_b + 2.0 * l_q + 3.0 * l_f, rel=1e-5)
    assert metrics["train/L_B"].item() == pytest.approx(l_b, rel=1e-6)
    assert metrics["train/L_Q"].item() == pytest.approx(l_q, rel=1e-5)
    assert metrics["train/L_F"].item() == pytest.approx(l_f, rel=1e-5)
    assert metrics["train/L_local"].item() == pytest.approx(loss.item())
    loss, metrics = local_loss(teacher, student, avail, filled, 0.5, 2.0, None)  # no L_F
    assert loss.item() == pytest.approx(0.5 * l_b + 2.0 * l_q, rel=1e-5)
    assert set(metrics) == {"train/L_B", "train/L_Q", "train/L_local"}
    no_block = _outputs(None, [LN(3), 0.0], [0.0, 0.0])  # the raw-state teacher: no PFB
    loss, metrics = local_loss(no_block, student, avail, filled, 0.5, None, None)
    assert loss.item() == 0.0 and not loss.requires_grad
    assert set(metrics) == {"train/L_local"}


def test_idm_mask_loss_and_intrinsic_reward_eqs_8_and_9_by_hand():
    """e = [[1, 2, 3], [4, 5, 6]], mask m = [[1, 0, 1], [0, 0, 1]]: L_I (eq. 8) =
    (1 + 3 + 6) / 3 = 10/3. r_I (eq. 9) with coef 0.5 and scale 2: 0.5 * m * e / 2 =
    [[0.25, 0, 0.75], [0, 0, 1.5]], without gradient (the predictor learns from L_I only)."""
    error = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    assert idm_loss(error, mask).item() == pytest.approx(10 / 3, rel=1e-6)
    r_i = intrinsic_reward(error, mask, coef=0.5, scale=torch.tensor(2.0))
    assert r_i.tolist() == [[0.25, 0.0, 0.75], [0.0, 0.0, 1.5]]
    assert not r_i.requires_grad
    # m ~ Bernoulli(mu) on real transitions only, drawn from the generator given.
    filled = torch.tensor([[True, True, False]] * 400)
    assert not idm_mask(filled, 0.0).any() and torch.equal(idm_mask(filled, 1.0), filled)
    m = idm_mask(filled, 0.75, torch.Generator().manual_seed(0))
    assert not m[:, 2].any() and 0.70 < m[:, :2].float().mean().item() < 0.80
    assert torch.equal(m, idm_mask(filled, 0.75, torch.Generator().manual_seed(0)))


def test_total_reward_eq10_by_hand():
    # r_tot = r + r_I: [1, -1] + [0.25, 0] = [1.25, -1].
    r_tot = total_reward(torch.tensor([1.0, -1.0]), torch.tensor([0.25, 0.0]))
    assert r_tot.tolist() == [1.25, -1.0]


# ---------------------------------------------------------------- 6. frozen teacher
@pytest.mark.slow
def test_student_distils_a_frozen_teacher():
    """A random GGN, never updated; only L_local steps. The student comes to agree with it."""
    learner, batch = setup("ddn_vdn", "idm=false", "student_lr=0.002", seed=0)
    with torch.no_grad():  # no head bias: the teacher's greedy action depends on its input
        learner.teacher.net.fc2.bias.zero_()
        teacher_out = learner.teacher.unroll(learner.td.encode(batch), batch.state)[0].detach()
    frozen = copy.deepcopy(learner.teacher.state_dict())
    t = batch.filled.shape[1]
    avail, alive = fix_avail(batch.avail)[:, :t], alive_mask(batch)
    teacher_actions = greedy(teacher_out.q[:, :t], avail)
    # No constant policy could reach the agreement asked below.
    assert torch.bincount(teacher_actions[alive]).max() < 0.85 * alive.sum()

    def agreement() -> float:
        with torch.no_grad():
            student_actions = greedy(
                learner.student.unroll(learner.td.encode(batch))[0].q[:, :t], avail
            )
        return float((student_actions == teacher_actions)[alive].float().mean())

    start = agreement()
    first = learner.distill_step(batch, teacher_out)
    for _ in range(300):
        last = learner.distill_step(batch, teacher_out)
    assert last["train/L_Q"] < 0.3 * first["train/L_Q"]
    assert last["train/L_F"] < 0.3 * first["train/L_F"]
    assert last["train/L_B"] < 0.3 * first["train/L_B"]
    end = agreement()
    assert end >= 0.9 and end > start + 0.5, (start, end)
    for n, p in learner.teacher.state_dict().items():
        assert torch.equal(p, frozen[n])


# ---------------------------------------------------------------- 7. IDM
def state_batch(spec, states: torch.Tensor) -> EpisodeBatch:
    """Episodes whose states are ``states`` [E, T+1, S]; all transitions real."""
    e, t1 = states.shape[:2]
    batch = EpisodeBatch.zeros(e, spec, CPU).index(slice(None), t1 - 1)
    batch.state.copy_(states)
    batch.filled.fill_(True)
    batch.avail.fill_(True)
    return batch


def test_intrinsic_reward_falls_for_a_repeated_state_and_stays_high_for_a_novel_one():
    cfg = tiny_cfg("ddn", "idm_mask_prob=1.0", "idm_lr=0.001")
    env = make(cfg.env_name, num_envs=2, seed=0, **cfg.env)
    torch.manual_seed(0)
    learner = build_learner(cfg, env.spec, CPU)
    out = env.reset()
    seen, other = out.state[0], out.state[1]
    novel = 1.0 - seen  # every cell flipped
    batch = state_batch(env.spec, seen.expand(4, 6, -1).clone())
    with torch.no_grad():
        e_seen0, e_novel0 = learner.idm.error(seen), learner.idm.error(novel)
    rewards = [float(learner.idm_step(batch)[0].mean()) for _ in range(100)]
    with torch.no_grad():
        e_seen, e_novel, e_other = (learner.idm.error(s) for s in (seen, novel, other))
    assert e_seen < 0.01 * e_seen0
    assert e_novel > 0.5 * e_novel0
    assert e_novel > 100 * e_seen and e_other > 10 * e_seen
    assert rewards[-1] < 0.1 * rewards[0]  # r_I itself falls too (normalised by the rms)


def test_intrinsic_reward_stays_bounded_when_every_state_is_the_same():
    """A constant state (a matrix game) gives a batch of identical errors: the
    normalisation must not divide by their zero spread."""
    cfg = tiny_cfg("ddn", "idm_mask_prob=1.0", "idm_coef=0.1")
    env = make(cfg.env_name, num_envs=1, seed=0, **cfg.env)
    torch.manual_seed(0)
    learner = build_learner(cfg, env.spec, CPU)
    batch = state_batch(env.spec, env.reset().state[0].expand(4, 6, -1).clone())
    for _ in range(20):
        r_i, _ = learner.idm_step(batch)
        assert float(r_i.max()) <= 0.1 * 10  # e / rms(e) stays O(1)


def test_mask_probability_zero_and_one():
    learner, batch = setup("ddn", "idm_mask_prob=0.0")
    predictor = copy.deepcopy(learner.idm.predictor.state_dict())
    r_i, metrics = learner.idm_step(batch)
    assert torch.equal(r_i, torch.zeros_like(batch.reward))
    assert float(metrics["train/r_I_mean"]) == 0.0 and float(metrics["train/L_I"]) == 0.0
    for n, p in learner.idm.predictor.state_dict().items():  # nothing selected: no learning
        assert torch.equal(p, predictor[n])

    learner, batch = setup("ddn", "idm_mask_prob=1.0", "idm_normalize=false", "idm_coef=1.0")
    # Pad some episodes, as the collector does (zeros after the end).
    for ep, end in ((0, 3), (1, 7), (5, 1)):
        batch.filled[ep, end:] = False
        batch.state[ep, end + 1 :] = 0.0
        batch.avail[ep, end + 1 :] = False
    with torch.no_grad():
        error = learner.idm.error(batch.state[:, 1:])
    r_i, metrics = learner.idm_step(batch)
    assert (r_i[batch.filled] > 0).all()
    assert (r_i[~batch.filled] == 0).all()
    assert torch.allclose(r_i, error * batch.filled, atol=1e-6)
    assert float(metrics["train/L_I"]) == pytest.approx(float(error[batch.filled].mean()), 1e-5)
    n = batch.filled.sum()
    assert float(metrics["train/r_I_mean"]) == pytest.approx(float(r_i.sum() / n), 1e-5)


@pytest.mark.parametrize("next_state", [True, False])
def test_idm_next_state_switch_picks_the_state_fed(next_state):
    cfg = tiny_cfg(
        "ddn", "idm_mask_prob=1.0", "idm_normalize=false", "idm_coef=0.5",
        f"idm_next_state={str(next_state).lower()}",
    )  # fmt: skip
    env = make(cfg.env_name, num_envs=1, seed=0, **cfg.env)
    torch.manual_seed(0)
    learner = build_learner(cfg, env.spec, CPU)
    g = torch.Generator().manual_seed(1)
    states = torch.rand(3, 6, env.spec.state_dim, generator=g) * torch.arange(1.0, 7.0)[:, None]
    batch = state_batch(env.spec, states)
    with torch.no_grad():
        e_next = learner.idm.error(states[:, 1:])
        e_now = learner.idm.error(states[:, :-1])
    r_i, _ = learner.idm_step(batch)
    expected, wrong = (e_next, e_now) if next_state else (e_now, e_next)
    assert torch.allclose(r_i, 0.5 * expected, atol=1e-6)
    assert not torch.allclose(r_i, 0.5 * wrong, atol=1e-3)


def test_idm_normalises_by_the_running_rms():
    learner, batch = setup("ddn", "idm_mask_prob=1.0", "idm_coef=0.3")
    with torch.no_grad():
        error = learner.idm.error(batch.state[:, 1:])
    r_i, _ = learner.idm_step(batch)
    rms = error[batch.filled].double().pow(2).mean().sqrt()  # first update: batch stats
    assert torch.allclose(r_i.double(), 0.3 * error.double() / rms, rtol=1e-4)
    assert float(learner.idm.error_stats.count) == int(batch.filled.sum())


def _recording_rewards(learner: DDNLearner) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    td_update = learner.td.td_update

    def wrapped(batch, episode, reward=None, inputs=None):
        seen.append(batch.reward if reward is None else reward)
        return td_update(batch, episode, reward, inputs)

    learner.td.td_update = wrapped
    return seen


def test_idm_off_means_no_idm_and_the_environment_reward():
    learner, batch = setup("ddn", "idm=false")
    assert learner.idm is None and "idm" not in learner.state_dict()
    seen = _recording_rewards(learner)
    metrics = learner.train(batch, episode=1)
    assert torch.equal(seen[0], batch.reward)
    assert "train/L_I" not in metrics and "train/r_I_mean" not in metrics

    learner, batch = setup("ddn", "idm_mask_prob=1.0")
    seen = _recording_rewards(learner)
    metrics = learner.train(batch, episode=1)
    bonus = seen[0] - batch.reward
    assert (bonus[batch.filled] > 0).all()
    assert float(bonus.sum() / batch.filled.sum()) == pytest.approx(metrics["train/r_I_mean"])


# ---------------------------------------------------------------- 8. raw state
def test_raw_state_switch_removes_the_pfb():
    learner, batch = setup("ddn", "personalized_state=false")
    teacher, spec = learner.teacher, learner.spec
    assert teacher.pfb is None
    assert not any(isinstance(m, FusionBlock) for m in teacher.modules())
    assert teacher.net.fc1.in_features == spec.state_dim + teacher.local_dim
    assert teacher.local_dim == spec.obs_dim + spec.n_actions + spec.n_agents
    in_optimizer = optimised(learner.td.optimizer)
    expected = {id(p) for p in (*teacher.parameters(), *learner.td.objective.parameters())}
    assert in_optimizer == expected
    assert not {id(p) for p in learner.student.iob.parameters()} & in_optimizer
    with torch.no_grad():
        x = learner.td.encode(batch)
        out, _ = teacher.unroll(x, batch.state)
        assert out.block is None
        raw = torch.cat((batch.state.unsqueeze(-2).expand(*x.shape[:-1], -1), x), dim=-1)
        assert torch.allclose(out.q, teacher.net(raw.transpose(0, 1))[0].q, atol=1e-6)
    before = snapshot(learner)
    metrics = learner.train(batch, episode=1)
    assert "train/L_B" not in metrics
    assert {"train/L_Q", "train/L_F", "train/L_td"} <= set(metrics)
    assert changed(learner, before)["student"] > 0.5
    # The personalised default does put the PFB in the teacher's optimiser.
    learner, _ = setup("ddn")
    assert {id(p) for p in learner.teacher.pfb.parameters()} <= optimised(learner.td.optimizer)


# ---------------------------------------------------------------- 9. every DDN algorithm
@pytest.mark.parametrize("algo", [a.name for a in all_algorithms() if a.family == "ddn"])
def test_every_ddn_algorithm_trains_with_finite_metrics(algo):
    learner, batch = setup(algo)
    before = snapshot(learner)
    metrics = learner.train(batch, episode=1)
    for key in DDN_METRICS:
        assert key in metrics, key
        assert math.isfinite(metrics[key]), (key, metrics[key])
    frac = changed(learner, before)
    assert frac["teacher"] > 0 and frac["student"] > 0 and frac["idm_predictor"] > 0


@pytest.mark.parametrize(
    ("switch", "gone"),
    [
        ("distill_block=false", {"train/L_B"}),
        ("distill_q=false", {"train/L_Q"}),
        ("distill_feature=false", {"train/L_F"}),
        ("idm=false", {"train/L_I", "train/r_I_mean"}),
    ],
)
def test_each_switch_removes_its_metric(switch, gone):
    learner, batch = setup("ddn", switch)
    metrics = learner.train(batch, episode=1)
    assert not gone & set(metrics)
    assert set(DDN_METRICS) - gone <= set(metrics)


def test_all_distillation_losses_off_leaves_the_student_alone():
    learner, batch = setup("ddn", "distill_block=false", "distill_q=false", "distill_feature=false")
    before = snapshot(learner)
    metrics = learner.train(batch, episode=1)
    assert metrics["train/L_local"] == 0.0
    assert changed(learner, before)["student"] == 0.0


def test_act_with_student_collects_with_the_lpn():
    learner, _ = setup("ddn", "act_with=student")
    assert learner.acting_network is learner.student
    learner_t, _ = setup("ddn")
    assert learner_t.acting_network is learner_t.teacher
    calls = {"teacher": 0, "student": 0}
    for name in calls:
        net = getattr(learner, name)
        original = net.step

        def counted(*args, _name=name, _original=original):
            calls[_name] += 1
            return _original(*args)

        net.step = counted
    env = make("predator_prey", num_envs=2, seed=0, **learner.cfg.env)
    Collector(env, CPU).run(learner.acting_network, 0.0)
    assert calls["student"] > 0 and calls["teacher"] == 0


# ---------------------------------------------------------------- 10. experiment, checkpoints
EXP = [
    "batch_size_run=4", "batch_size=4", "buffer_size=32", "t_max=120", "test_interval=60",
    "test_nepisode=4", "log_interval=40", "save_model_interval=40",
]  # fmt: skip


def test_transfer_rate():
    m = {"test/return_mean": 4.0, "test_student/return_mean": 3.0}
    assert transfer_rate(m, has_wins=False) == 0.75
    w = {"test/win_rate": 0.5, "test_student/win_rate": 0.25, **m}
    assert transfer_rate(w, has_wins=True) == 0.5  # wins, not returns
    assert transfer_rate({"test/win_rate": 0.0, "test_student/win_rate": 0.5}, True) is None
    assert transfer_rate({"test/return_mean": 0.0, "test_student/return_mean": 1.0}, False) is None
    assert transfer_rate({"test/return_mean": 1.0}, False) is None  # no student


def test_ddn_experiment_logs_teacher_and_student_tests(tmp_path):
    cfg = tiny_cfg("ddn_vdn", *EXP, "save_model=false")
    summary = Experiment(cfg, tmp_path / "run", progress=False).run()
    events = read_metrics(tmp_path / "run" / "metrics.jsonl")
    tests = [e for e in events if "test/return_mean" in e]
    assert len(tests) >= 2
    for e in tests:
        teacher = {k.split("/", 1)[1] for k in e if k.startswith("test/")} - {"transfer_rate"}
        student = {k.split("/", 1)[1] for k in e if k.startswith("test_student/")}
        assert teacher == student == {"return_mean", "return_std", "ep_length_mean"}
        assert "test/transfer_rate" in e
        rate = transfer_rate(e, has_wins=False)
        assert e["test/transfer_rate"] == (None if rate is None else pytest.approx(rate))
    train = [e for e in events if "train/return_mean" in e]
    assert train and all(k in train[-1] for k in DDN_METRICS)
    assert "test_student/return_mean" in summary and "test/transfer_rate" in summary


def test_ddn_matrix_experiment_reports_win_rate_transfer(tmp_path):
    cfg = resolve(
        "matrix", "ddn_vdn",
        overrides=["t_max=64", "batch_size_run=16", "batch_size=16", "test_interval=32",
                   "log_interval=32", "save_model=false", "device=cpu", "rnn_hidden_dim=8",
                   "fusion_dim=4", "test_nepisode=16"],
    )  # fmt: skip
    summary = Experiment(cfg, tmp_path / "m", progress=False).run()
    assert "test/win_rate" in summary and "test_student/win_rate" in summary
    rate = transfer_rate(summary, has_wins=True)
    if rate is None:
        assert math.isnan(summary["test/transfer_rate"])
    else:
        assert summary["test/transfer_rate"] == pytest.approx(rate)


def test_learner_state_dict_round_trip():
    learner, batch = setup("ddn")
    for ep in range(3):
        learner.train(batch, episode=ep + 1)
    buf = io.BytesIO()
    torch.save(learner.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # as checkpoints are read
    assert {"td", "student", "student_optimizer", "idm", "idm_optimizer"} <= set(state)
    assert {"error_stats.count", "error_stats.mean", "error_stats.var"} <= set(state["idm"])

    fresh, _ = setup("ddn", seed=7)  # other initial weights
    fresh.load_state_dict(state)
    assert_states_equal(fresh.state_dict(), learner.state_dict())
    assert float(fresh.idm.error_stats.count) == float(learner.idm.error_stats.count) > 0
    # Both continue identically (optimiser moments and RND stats included).
    torch.manual_seed(3)
    m_a = learner.train(batch, episode=4)
    torch.manual_seed(3)
    m_b = fresh.train(batch, episode=4)
    assert m_a == m_b
    assert_states_equal(fresh.state_dict(), learner.state_dict())


@pytest.mark.slow
def test_ddn_run_resumes_like_an_uninterrupted_run(tmp_path):
    cfg = tiny_cfg("ddn", *EXP, "save_buffer=true")
    a = Experiment(cfg, tmp_path / "a", progress=False).run()
    b_dir = tmp_path / "b"
    b = Experiment(cfg, b_dir, progress=False).run()
    assert _same(a, b)
    saved = list_checkpoints(b_dir)
    assert len(saved) >= 3
    for t in saved[2:]:
        shutil.rmtree(b_dir / "checkpoints" / str(t))
    exp = Experiment.resume(b_dir, progress=False)
    assert exp.t_env == saved[1]
    _, state, _ = load_checkpoint(b_dir)
    assert_states_equal(exp.learner.state_dict(), state["learner"])
    assert float(exp.learner.idm.error_stats.count) > 0
    assert _same(exp.run(), a)
    events_a = without_time(read_metrics(tmp_path / "a" / "metrics.jsonl"))
    events_b = without_time(read_metrics(b_dir / "metrics.jsonl"))
    assert events_a == events_b


def _same(a: dict, b: dict) -> bool:
    """Summaries equal, NaN (an undefined transfer rate) equal to NaN."""
    if set(a) != set(b):
        return False
    for k in a:
        x, y = a[k], b[k]
        both_nan = isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)
        if not both_nan and x != y:
            return False
    return True


def test_guiding_and_local_networks_have_the_documented_inputs():
    net = GuidingNetwork(obs_dim=4, state_dim=9, n_agents=2, n_actions=3, hidden_dim=5,
                         fusion_dim=6, hypernet_dim=2)  # fmt: skip
    assert net.pfb.value_dim == 9 and net.pfb.out_dim == 6 and net.net.fc1.in_features == 6
    assert net.pfb.hyper.in_features == 4 + 3 + 2
    lpn = LocalPolicyNetwork(obs_dim=4, n_agents=2, n_actions=3, hidden_dim=5, fusion_dim=6,
                             hypernet_dim=2)  # fmt: skip
    assert lpn.iob.value_dim == 4 and lpn.iob.hyper.in_features == 4 + 3 + 2
    assert "state_dim" not in inspect.signature(LocalPolicyNetwork).parameters


@pytest.mark.parametrize("extra", [(), ("personalized_state=false",)])
def test_whole_episode_unroll_equals_acting_step_by_step(extra):
    """The learner's time-major unroll over a batch (one encoding of x_i shared by all
    networks) computes what the networks compute one env step at a time while acting."""
    learner, batch = setup("ddn", *extra)
    baseline = build_learner(tiny_cfg("qmix", *extra), learner.spec, CPU).agent
    # Teacher, student and the plain agent read the same x_i: one encoding serves all.
    assert learner.teacher.inputs == learner.student.inputs == baseline.inputs
    x = learner.td.encode(batch)
    for net in (learner.teacher, learner.student, baseline):
        state = batch.state if net.reads_state else None
        with torch.no_grad():
            whole, _ = net.unroll(x, state)
            e, t1 = batch.obs.shape[:2]
            hidden = net.initial_hidden(e, CPU)
            for t in range(t1):
                q, hidden = net.step(x[:, t], hidden, None if state is None else state[:, t])
                torch.testing.assert_close(whole.q[:, t], q, rtol=1e-5, atol=1e-5)
