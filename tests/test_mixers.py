"""Mixers: monotonicity / IGM, shapes over free leading dims, and the WQMIX/QTRAN pieces."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch

from ddn.nets.mixers import (
    CentralMixer,
    MixContext,
    QattenMixer,
    QMixer,
    QPLEXMixer,
    QTranNet,
    VDNMixer,
    build_mixer,
    joint_action_is_greedy,
    qtran_losses,
    wqmix_weights,
)

N, S, A, H = 3, 7, 4, 16


def _ctx(lead: tuple[int, ...], n: int = N, a: int = A, fill: float | None = None) -> MixContext:
    """A full random (or constant-filled) context with leading dims ``lead``."""

    def make(*shape: int) -> torch.Tensor:
        return torch.full(shape, fill) if fill is not None else torch.randn(*shape)

    acts = torch.randint(a, (*lead, n))
    return MixContext(
        state=make(*lead, S),
        actions_onehot=torch.nn.functional.one_hot(acts, a).float(),
        max_qs=make(*lead, n).abs() if fill is None else make(*lead, n),
        agent_gru_out=make(*lead, n, H),
    )


def _all_mixers(n: int = N, a: int = A) -> dict[str, torch.nn.Module]:
    return {name: build_mixer(name, n, S, a, 32) for name in ("vdn", "qmix", "qatten", "qplex")}


def test_vdn_is_sum() -> None:
    qs = torch.randn(5, 6, N)
    torch.testing.assert_close(VDNMixer()(qs, _ctx((5, 6))), qs.sum(-1))


@pytest.mark.parametrize("lead", [(4, 5), (6,)])
@pytest.mark.parametrize("name", ["vdn", "qmix", "qatten", "qplex"])
def test_shapes(name: str, lead: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    mixer = build_mixer(name, N, S, A, 32)
    assert mixer(torch.randn(*lead, N), _ctx(lead)).shape == lead


def _min_grad(mixer: torch.nn.Module, trials: int = 5) -> float:
    """Smallest dQ_tot/dQ_i over random inputs, states and input scales."""
    lo = float("inf")
    for scale in (0.1, 1.0, 10.0)[:trials]:
        qs = (scale * torch.randn(256, N)).requires_grad_()
        ctx = MixContext(state=scale * torch.randn(256, S))
        (grad,) = torch.autograd.grad(mixer(qs, ctx).sum(), qs)
        lo = min(lo, grad.min().item())
    return lo


@pytest.mark.parametrize("seed", range(4))
def test_qmix_monotonic(seed: int) -> None:
    torch.manual_seed(seed)
    for layers in (1, 2):
        assert _min_grad(QMixer(N, S, hypernet_layers=layers)) >= 0.0


@pytest.mark.parametrize("weighted_head", [True, False])
def test_qatten_monotonic_and_attention(weighted_head: bool) -> None:
    torch.manual_seed(1)
    mixer = QattenMixer(N, S, weighted_head=weighted_head)
    assert _min_grad(mixer) >= 0.0
    logits, lam = mixer.attention(torch.randn(2, 3, S))
    assert logits.shape == lam.shape == (2, 3, 4, N)
    torch.testing.assert_close(lam.sum(-1), torch.ones(2, 3, 4))
    # the attention depends on the state (keys mix state and agent id non-linearly)
    _, lam2 = mixer.attention(torch.randn(2, 3, S))
    assert not torch.allclose(lam, lam2)


def _joint_eval(
    mixer: QPLEXMixer, qtab: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Q_tot of every joint action: qtab [B, n, a], state [B, S] -> [B, a**n]."""
    b, n, a = qtab.shape
    joint = torch.tensor(list(itertools.product(range(a), repeat=n)))  # [J, n]
    j = joint.shape[0]
    qs = qtab.unsqueeze(1).expand(b, j, n, a).gather(-1, joint.expand(b, j, n).unsqueeze(-1))
    ctx = MixContext(
        state=state.unsqueeze(1).expand(b, j, S),
        actions_onehot=torch.nn.functional.one_hot(joint, a).float().expand(b, j, n, a),
        max_qs=qtab.max(-1).values.unsqueeze(1).expand(b, j, n),
    )
    return mixer(qs.squeeze(-1), ctx), joint


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("stop_gradient", [True, False])
def test_qplex_igm(n: int, stop_gradient: bool) -> None:
    torch.manual_seed(n)
    for layers in (1, 2):
        mixer = QPLEXMixer(n, S, 3, adv_hypernet_layers=layers, stop_gradient=stop_gradient)
        qtab = 3.0 * torch.randn(64, n, 3)
        qtab[:8] = qtab[:8].round()  # integer tables: ties between actions
        state = torch.randn(64, S)
        with torch.no_grad():
            q_tot, joint = _joint_eval(mixer, qtab, state)
            greedy = qtab.argmax(-1)  # [B, n]
            g_idx = (joint.unsqueeze(0) == greedy.unsqueeze(1)).all(-1).float().argmax(-1)
            q_greedy = q_tot.gather(1, g_idx.unsqueeze(1)).squeeze(1)
            assert torch.all(q_greedy >= q_tot.max(-1).values)
            # V_tot equals Q_tot at the greedy joint action
            torch.testing.assert_close(mixer.v_tot(state, qtab.max(-1).values), q_greedy)


def test_qplex_lambda_positive() -> None:
    torch.manual_seed(2)
    mixer = QPLEXMixer(N, S, A, adv_hypernet_layers=2)
    ctx = _ctx((32, 5))
    for scale in (0.0, 1.0, 100.0):
        lam = mixer.lambdas(scale * ctx.state, ctx.actions_onehot)
        assert lam.shape == (32, 5, N)
        assert torch.all(lam > 0)


def test_central_mixer_unconstrained() -> None:
    torch.manual_seed(3)
    mixer = CentralMixer(N, S, embed_dim=64)
    qs = (3 * torch.randn(512, N)).requires_grad_()
    ctx = MixContext(state=torch.randn(512, S))
    out = mixer(qs, ctx)
    assert out.shape == (512,)
    (grad,) = torch.autograd.grad(out.sum(), qs)
    assert grad.min() < 0 < grad.max()
    # [..., N, central_action_embed] inputs are flattened
    wide = CentralMixer(N, S, central_action_embed=2, embed_dim=8)
    assert wide(torch.randn(4, 5, N, 2), MixContext(state=torch.randn(4, 5, S))).shape == (4, 5)


def test_wqmix_weights_cw() -> None:
    y = torch.tensor([1.0, 1.0, 1.0, 3.0])
    central_greedy = torch.tensor([0.5, 2.0, 2.0, 2.0])  # Q*(s, u_hat)
    taken = torch.tensor([[0, 1], [0, 1], [1, 1], [0, 0]])
    greedy = torch.tensor([[1, 1], [1, 0], [1, 1], [1, 1]])
    is_greedy = joint_action_is_greedy(taken, greedy)
    assert is_greedy.tolist() == [False, False, True, False]
    w = wqmix_weights(y, kind="cw", alpha=0.1, central_greedy_q=central_greedy, is_greedy=is_greedy)
    # y > Q*(u_hat) -> 1 ; neither -> alpha ; u == u_hat -> 1 ; y > Q*(u_hat) -> 1
    torch.testing.assert_close(w, torch.tensor([1.0, 0.1, 1.0, 1.0]))


def test_wqmix_weights_ow() -> None:
    y = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    q_tot = torch.tensor([[0.5, 2.0], [1.0, -2.0]], requires_grad=True)
    w = wqmix_weights(y, kind="ow", alpha=0.5, q_tot=q_tot)
    torch.testing.assert_close(w, torch.tensor([[1.0, 0.5], [0.5, 1.0]]))  # 1 iff Q_tot < y
    assert not w.requires_grad
    assert wqmix_weights(y, kind="ow", q_tot=q_tot)[0, 1].item() == pytest.approx(0.1)
    with pytest.raises(ValueError):
        wqmix_weights(y, kind="cw")


def test_qtran_losses_hand_computed() -> None:
    q_sum_greedy = torch.tensor([2.0, 1.0], requires_grad=True)
    q_jt_greedy = torch.tensor([3.0, 1.0], requires_grad=True)
    v_jt = torch.tensor([0.5, -1.0], requires_grad=True)
    q_sum_taken = torch.tensor([1.0, 0.0])
    q_jt_taken = torch.tensor([1.0, 0.5])
    l_opt, l_nopt = qtran_losses(q_sum_greedy, q_jt_greedy, q_sum_taken, q_jt_taken, v_jt)
    # opt terms: (2-3+0.5)^2 = 0.25, (1-1-1)^2 = 1 ; nopt inner: 0.5 (>0 -> 0), -1.5 -> 2.25
    assert l_opt.item() == pytest.approx((0.25 + 1.0) / 2)
    assert l_nopt.item() == pytest.approx(2.25 / 2)
    _, nopt = qtran_losses(q_sum_greedy, q_jt_greedy, q_sum_taken, q_jt_taken, v_jt, reduce=False)
    assert nopt[0].item() == 0.0  # inner term positive -> no penalty
    # mask drops the second sample
    mask = torch.tensor([1.0, 0.0])
    l_opt_m, l_nopt_m = qtran_losses(
        q_sum_greedy, q_jt_greedy, q_sum_taken, q_jt_taken, v_jt, mask=mask
    )
    assert l_opt_m.item() == pytest.approx(0.25)
    assert l_nopt_m.item() == 0.0
    # hat Q_jt is fixed: no gradient to Q_jt, gradient to sum Q_i and V_jt
    (l_opt + l_nopt).backward()
    assert q_jt_greedy.grad is None
    assert q_sum_greedy.grad is not None and v_jt.grad is not None


def test_qtran_net_shapes() -> None:
    net = QTranNet(N, A, S, H)
    q_jt, v_jt = net(_ctx((4, 5)))
    assert q_jt.shape == v_jt.shape == (4, 5)
    q_jt, v_jt = net(_ctx((6,)))
    assert q_jt.shape == v_jt.shape == (6,)


Fn = Callable[[torch.Tensor, MixContext], torch.Tensor]


def _every_module() -> dict[str, tuple[torch.nn.Module, Fn]]:
    def mix(m: torch.nn.Module) -> Fn:
        return lambda qs, ctx: m(qs, ctx)

    mods = _all_mixers()
    out = {k: (m, mix(m)) for k, m in mods.items()}
    central = CentralMixer(N, S, embed_dim=32)
    out["central"] = (central, mix(central))
    qtran = QTranNet(N, A, S, H)
    out["qtran"] = (qtran, lambda qs, ctx: sum(qtran(ctx)))
    return out


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_constant_inputs_finite(fill: float) -> None:
    torch.manual_seed(4)
    for name, (_, fn) in _every_module().items():
        ctx = _ctx((3, 4), fill=fill)
        out = fn(torch.full((3, 4, N), fill), ctx)
        assert out.shape == (3, 4), name
        assert torch.isfinite(out).all(), name


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_gradient_reaches_all_parameters(stop_gradient: bool) -> None:
    torch.manual_seed(5)
    mods = _every_module()
    mods["qplex"] = (m := QPLEXMixer(N, S, A, stop_gradient=stop_gradient), m)
    for name, (module, fn) in mods.items():
        ctx = _ctx((8, 5))
        # non-greedy: A_i < 0 so lambda matters
        qs = (ctx.max_qs - torch.rand(8, 5, N)).requires_grad_()
        fn(qs, ctx).pow(2).sum().backward()
        if name != "qtran":  # Q_jt reads hidden states and actions, not the utilities
            assert qs.grad is not None and qs.grad.abs().sum() > 0, name
        for pname, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname}"


def test_qplex_stop_gradient_changes_only_gradients() -> None:
    torch.manual_seed(6)
    a = QPLEXMixer(N, S, A, stop_gradient=True)
    b = QPLEXMixer(N, S, A, stop_gradient=False)
    b.load_state_dict(a.state_dict())
    ctx = _ctx((10, 3))
    qs = (ctx.max_qs - torch.rand(10, 3, N)).requires_grad_()
    qa, qb = a(qs, ctx), b(qs, ctx)
    torch.testing.assert_close(qa, qb)
    # with the advantage detached, dQ_tot/dQ_i is the transformation weight w_i(s)
    (grad,) = torch.autograd.grad(qa.sum(), qs)
    torch.testing.assert_close(grad, a.transform(ctx.state)[0])


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_qplex_matches_the_reference_learner_combination(layers: int) -> None:
    """PyMARL2's dmaq_qatten_learner forms Q_tot as sum_i Q_i' of the taken actions plus
    sum_i (lambda_i - 1) sg(A_i') (``is_minus_one``, stop-gradient, ``weighted_head``:
    Q_i' = w_i Q_i + b_i, A_i' = Q_i' - (w_i max Q_i + b_i)). The mixer's V_tot + lambda A'
    form must give the same Q_tot and the same gradient for every parameter and Q_i."""
    torch.manual_seed(7 + layers)
    mixer = QPLEXMixer(N, S, A, adv_hypernet_layers=layers, stop_gradient=True).double()
    ctx = _ctx((16,))
    ctx = MixContext(
        state=ctx.state.double(),
        actions_onehot=ctx.actions_onehot.double(),
        max_qs=ctx.max_qs.double(),
    )
    qs = (ctx.max_qs - torch.rand(16, N, dtype=torch.float64)).requires_grad_()
    weights = torch.randn(16, dtype=torch.float64)
    params = [qs, *mixer.parameters()]

    ours = mixer(qs, ctx)
    ours_grads = torch.autograd.grad((weights * ours).sum(), params)

    w, b = mixer.transform(ctx.state)
    q_taken, q_max = w * qs + b, w * ctx.max_qs + b
    lam = mixer.lambdas(ctx.state, ctx.actions_onehot)
    ref = q_taken.sum(-1) + ((q_taken - q_max).detach() * (lam - 1.0)).sum(-1)
    ref_grads = torch.autograd.grad((weights * ref).sum(), params)

    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    for mine, theirs in zip(ours_grads, ref_grads, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)
