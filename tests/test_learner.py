"""The value-decomposition learner: target syncs, seeding, every algorithm, clipping,
and losses that ignore padded steps."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ddn.algorithms import algorithm_names
from ddn.buffer import EpisodeBatch
from ddn.config import resolve
from ddn.envs import EnvSpec, make
from ddn.experiment import build_learner
from ddn.learners import VDLearner
from ddn.learners.value_decomposition import metric_values
from ddn.rollout import Collector

CPU = torch.device("cpu")
SMALL_NETS = [
    "rnn_hidden_dim=16",
    "mixing_embed_dim=8",
    "hypernet_embed=16",
    "central_mixing_embed_dim=16",
    "n_head=2",
    "device=cpu",
]
PP_ENV = ["env.n_agents=3", "env.n_prey=1", "env.height=5", "env.width=5", "env.episode_limit=20"]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(env: str = "predator_prey", algo: str = "qmix", *extra: str):
    overrides = [*(PP_ENV if env == "predator_prey" else []), *SMALL_NETS, *extra]
    return resolve(env, algo, overrides=overrides)


def build(cfg, seed: int = 0, generic: bool = False):
    """A learner and an env; ``generic`` builds whatever learner the run would use."""
    env = make(cfg.env_name, num_envs=8, seed=seed, **cfg.env)
    torch.manual_seed(seed)
    make_learner = build_learner if generic else VDLearner
    return make_learner(cfg, env.spec, CPU), env


def trainable(learner) -> list[nn.Parameter]:
    """Every trainable parameter a learner holds, whatever its structure (modules in its
    attributes, or in the attributes of objects it holds)."""
    found: dict[int, nn.Parameter] = {}
    stack, seen = [(learner, 0)], set()
    while stack:
        obj, depth = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, nn.Module):
            for p in obj.parameters():
                if p.requires_grad:
                    found.setdefault(id(p), p)
        elif depth < 3 and hasattr(obj, "__dict__"):
            stack += [(v, depth + 1) for v in vars(obj).values()]
    return list(found.values())


def snapshot(learner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainable(learner)]


def collected_batch(learner: VDLearner, env, seed: int = 0) -> EpisodeBatch:
    torch.manual_seed(seed)
    batch, _ = Collector(env, CPU).run(learner.acting_network, epsilon=1.0)
    return batch


def synthetic_batch(spec: EnvSpec, e: int, seed: int) -> EpisodeBatch:
    """Random episodes of random lengths (zero padding, as the buffer stores them)."""
    g = torch.Generator().manual_seed(seed)
    t_lim, n, a = spec.episode_limit, spec.n_agents, spec.n_actions
    batch = EpisodeBatch.zeros(e, spec, "cpu")
    lengths = torch.randint(1, t_lim + 1, (e,), generator=g)
    lengths[0] = max(1, t_lim - 1)  # padding exists but the batch is not trimmed away
    for k in range(e):
        m = int(lengths[k])
        batch.obs[k, : m + 1] = torch.rand(m + 1, n, spec.obs_dim, generator=g)
        batch.state[k, : m + 1] = torch.rand(m + 1, spec.state_dim, generator=g)
        avail = torch.rand(m + 1, n, a, generator=g) < 0.6
        avail[..., -1] = True
        batch.avail[k, : m + 1] = avail
        scores = torch.rand(m, n, a, generator=g).masked_fill(~avail[:m], -1.0)
        batch.actions[k, :m] = scores.argmax(dim=-1)
        batch.reward[k, :m] = torch.randn(m, generator=g)
        batch.filled[k, :m] = True
        batch.terminated[k, m - 1] = bool(torch.rand(1, generator=g) < 0.5)
    return batch


def with_garbage_in_padding(batch: EpisodeBatch, seed: int) -> EpisodeBatch:
    """The same episodes with random values wherever a step is padding."""
    g = torch.Generator().manual_seed(seed)
    out = EpisodeBatch(**{k: v.clone() for k, v in batch.tensors().items()})
    lengths = batch.filled.sum(dim=1)
    t = batch.max_t
    pad_step = torch.arange(t)[None, :] >= lengths[:, None]  # [E, T]
    pad_obs = torch.arange(t + 1)[None, :] > lengths[:, None]  # [E, T+1]
    out.obs[pad_obs] = torch.randn(out.obs[pad_obs].shape, generator=g) * 50
    out.state[pad_obs] = torch.randn(out.state[pad_obs].shape, generator=g) * 50
    out.avail[pad_obs] = torch.rand(out.avail[pad_obs].shape, generator=g) < 0.5
    out.actions[pad_step] = torch.randint(0, out.avail.shape[-1], out.actions[pad_step].shape)
    out.reward[pad_step] = torch.randn(out.reward[pad_step].shape, generator=g) * 1e3
    out.terminated[pad_step] = torch.rand(out.terminated[pad_step].shape, generator=g) < 0.5
    assert pad_step.any()
    return out


def params(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def all_params(learner: VDLearner) -> list[torch.Tensor]:
    return params(learner.agent) + params(learner.objective)


def all_target_params(learner: VDLearner) -> list[torch.Tensor]:
    return params(learner.target_agent) + params(learner.target_objective)


# ---------------------------------------------------------------- target networks
@pytest.mark.parametrize("algo", ["qmix", "cw_qmix", "qtran"])
def test_target_sync_exactly_at_the_interval(algo):
    cfg = tiny_cfg("predator_prey", algo, "target_update_interval=10", "lr=0.01")
    learner, env = build(cfg)
    batch = collected_batch(learner, env)
    assert same(all_params(learner), all_target_params(learner))  # a copy at the start
    assert all(not p.requires_grad for p in learner.target_agent.parameters())
    assert all(not p.requires_grad for p in learner.target_objective.parameters())

    schedule = [(4, False), (9, False), (10, True), (15, False), (19, False), (20, True)]
    for episode, synced in schedule:
        before = all_target_params(learner)
        learner.train(batch, episode)
        if synced:
            assert same(all_params(learner), all_target_params(learner)), episode
            assert learner.last_target_update_episode == episode
        else:
            assert not same(all_params(learner), all_target_params(learner)), episode
            assert same(before, all_target_params(learner)), episode  # untouched
    assert learner.updates == len(schedule)


def test_target_sync_counts_from_the_last_sync_not_multiples():
    cfg = tiny_cfg("matrix", "vdn", "target_update_interval=10", "lr=0.01")
    learner, env = build(cfg)
    batch = collected_batch(learner, env)
    learner.train(batch, 13)  # 13 - 0 >= 10
    assert learner.last_target_update_episode == 13
    learner.train(batch, 20)  # 20 - 13 < 10: a multiple of 10 does not sync
    assert not same(all_params(learner), all_target_params(learner))
    learner.train(batch, 23)
    assert learner.last_target_update_episode == 23
    assert same(all_params(learner), all_target_params(learner))


# ---------------------------------------------------------------- seeding
@pytest.mark.parametrize("algo", ["qmix", "qplex"])
def test_same_seed_same_update_other_seed_differs(algo):
    cfg = tiny_cfg("predator_prey", algo)
    a, env = build(cfg, seed=3)
    batch = collected_batch(a, env, seed=3)
    b, _ = build(cfg, seed=3)
    c, _ = build(cfg, seed=4)
    assert same(all_params(a), all_params(b))
    ma = a.train(batch, 8)
    mb = b.train(batch, 8)
    c.train(batch, 8)
    assert ma == mb
    assert same(all_params(a), all_params(b))
    assert same(all_target_params(a), all_target_params(b))
    assert not same(all_params(a), all_params(c))


def test_learner_state_dict_round_trip_continues_identically():
    cfg = tiny_cfg("predator_prey", "qmix", "target_update_interval=8")
    a, env = build(cfg, seed=1)
    batch = collected_batch(a, env, seed=1)
    a.train(batch, 8)
    state = copy.deepcopy(a.state_dict())
    b, _ = build(cfg, seed=99)  # other initial weights, then overwritten
    b.load_state_dict(state)
    assert (b.updates, b.last_target_update_episode) == (1, 8)
    for episode in (12, 16, 20):
        assert a.train(batch, episode) == b.train(batch, episode)
    assert same(all_params(a), all_params(b))
    assert same(all_target_params(a), all_target_params(b))


# ---------------------------------------------------------------- every algorithm
@pytest.mark.parametrize("env_name", ["predator_prey", "matrix"])
@pytest.mark.parametrize("algo", algorithm_names())
def test_every_algorithm_updates_without_nan(env_name, algo):
    cfg = tiny_cfg(env_name, algo, "lr=0.01")
    learner, env = build(cfg, generic=True)
    batch = collected_batch(learner, env)
    acting_before = params(learner.acting_network)
    before = snapshot(learner)
    metrics = learner.train(batch, 8)
    assert "train/loss" in metrics
    for key, value in metrics.items():
        assert isinstance(value, float)
        assert value == value and abs(value) != float("inf"), key
    after = snapshot(learner)
    assert all(torch.isfinite(p).all() for p in after)
    assert not same(before, after)
    # The network that acts learns too (not only the mixer).
    assert not same(acting_before, params(learner.acting_network))


@pytest.mark.parametrize("algo", ["qmix", "ow_qmix"])
def test_td_lambda_and_no_double_q_run(algo):
    cfg = tiny_cfg("predator_prey", algo, "td_lambda=0.8", "double_q=false", "optimizer=adam")
    learner, env = build(cfg)
    batch = collected_batch(learner, env)
    metrics = learner.train(batch, 8)
    assert all(v == v for v in metrics.values())


# ---------------------------------------------------------------- gradient clipping
def _grad_norm(learner: VDLearner) -> float:
    grads = [p.grad.detach().flatten() for p in learner.params if p.grad is not None]
    return float(torch.cat(grads).norm())


def test_grad_norm_is_pre_clip_and_the_step_uses_clipped_grads():
    free_cfg = tiny_cfg("predator_prey", "qmix", "grad_norm_clip=1000000.0")
    free, env = build(free_cfg)
    batch = collected_batch(free, env)
    start = all_params(free)
    pre = free.train(batch, 1)["train/grad_norm"]
    assert pre == pytest.approx(_grad_norm(free), rel=1e-5)
    free_grads = [p.grad.clone() for p in free.params]
    assert pre > 0.02

    clip = pre / 10
    cfg = tiny_cfg("predator_prey", "qmix", f"grad_norm_clip={clip}")
    clipped, _ = build(cfg)
    assert same(all_params(clipped), start)
    reported = clipped.train(batch, 1)["train/grad_norm"]
    # clip_grad_norm_ reports the norm before clipping ...
    assert reported == pytest.approx(pre, rel=1e-5)
    # ... and leaves gradients of norm `clip`, parallel to the unclipped ones.
    assert _grad_norm(clipped) == pytest.approx(clip, rel=1e-4)
    for g_free, p in zip(free_grads, clipped.params, strict=True):
        torch.testing.assert_close(p.grad, g_free * (clip / pre), rtol=1e-4, atol=1e-8)
    # The RMSprop step was taken with those clipped gradients.
    lr, alpha, eps = cfg.lr, cfg.optim_alpha, cfg.optim_eps
    for p0, p in zip(start, clipped.params, strict=True):
        g = p.grad
        want = p0 - lr * g / (((1 - alpha) * g * g).sqrt() + eps)
        torch.testing.assert_close(p.detach(), want, rtol=1e-5, atol=1e-6)


def test_no_clip_below_the_threshold():
    cfg = tiny_cfg("matrix", "vdn", "grad_norm_clip=1000000.0")
    learner, env = build(cfg)
    batch = collected_batch(learner, env)
    norm = learner.train(batch, 1)["train/grad_norm"]
    assert norm == pytest.approx(_grad_norm(learner), rel=1e-5)


# ---------------------------------------------------------------- padding
@pytest.mark.parametrize("algo", algorithm_names())
@pytest.mark.parametrize("td_lambda", [0.0, 0.8])
def test_loss_ignores_padded_steps(algo, td_lambda):
    cfg = tiny_cfg("predator_prey", algo, f"td_lambda={td_lambda}", "env.episode_limit=9")
    learner, _ = build(cfg, generic=True)
    batch = synthetic_batch(learner.spec, 6, seed=2)
    dirty = with_garbage_in_padding(batch, seed=3)
    twin = copy.deepcopy(learner)
    torch.manual_seed(0)  # in case a learner draws random numbers in its update
    clean_metrics = learner.train(batch, 1)
    torch.manual_seed(0)
    dirty_metrics = twin.train(dirty, 1)
    assert clean_metrics.keys() == dirty_metrics.keys()
    for key, value in clean_metrics.items():
        assert dirty_metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for p, q in zip(snapshot(learner), snapshot(twin), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_padding_gets_no_gradient():
    cfg = tiny_cfg("predator_prey", "qmix", "env.episode_limit=9")
    learner, _ = build(cfg)
    batch = synthetic_batch(learner.spec, 6, seed=4)
    obs = batch.obs.clone().requires_grad_(True)
    leaky = EpisodeBatch(**{**batch.tensors(), "obs": obs})
    learner.train(leaky, 1)
    lengths = batch.filled.sum(dim=1)
    pad_obs = torch.arange(batch.max_t + 1)[None, :] > lengths[:, None]
    assert obs.grad is not None
    assert (obs.grad[pad_obs] == 0).all()
    assert obs.grad[~pad_obs].abs().sum() > 0


# ---------------------------------------------------------------- IQL
@pytest.mark.parametrize("double_q", [True, False])
def test_iql_loss_is_each_agents_own_td_error_on_the_team_reward(double_q):
    """The IQL loss, recomputed one (episode, step, agent) at a time: Q_i of the taken
    action against r_t + gamma (1 - term_t) Q_i^-(t+1, u'), u' agent i's own greedy
    action (online agents with double Q, target agents without); padding excluded."""
    cfg = tiny_cfg(
        "predator_prey", "iql", f"double_q={str(double_q).lower()}", "env.episode_limit=9"
    )
    learner, _ = build(cfg)
    # Targets differ from the online agents, so double Q picks other actions than max.
    with torch.no_grad():
        for p in learner.target_agent.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    batch = synthetic_batch(learner.spec, 5, seed=7)
    with torch.no_grad():
        x = learner.encode(batch)
        q = learner.agent.unroll(x)[0].q  # [E, T+1, N, A]
        tq = learner.target_agent.unroll(x)[0].q
    avail = batch.avail | ~batch.avail.any(dim=-1, keepdim=True)
    errors = []
    for e in range(batch.num_episodes):
        for t in range(int(batch.filled[e].sum())):
            for i in range(learner.spec.n_agents):
                chooser = q if double_q else tq
                nxt = chooser[e, t + 1, i].masked_fill(~avail[e, t + 1, i], -torch.inf).argmax()
                alive = 0.0 if batch.terminated[e, t] else 1.0
                y = batch.reward[e, t] + cfg.gamma * alive * tq[e, t + 1, i, nxt]
                errors.append(float(q[e, t, i, batch.actions[e, t, i]] - y) ** 2)
    metrics = learner.train(batch, 1)
    assert metrics["train/loss"] == pytest.approx(sum(errors) / len(errors), rel=1e-5)


def test_iql_has_no_mixer_and_only_agent_parameters():
    learner, _ = build(tiny_cfg("predator_prey", "iql"))
    assert list(learner.objective.parameters()) == []
    assert len(learner.params) == len(list(learner.agent.parameters()))


# ---------------------------------------------------------------- per-update overhead
@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
@pytest.mark.parametrize("algo", ["qmix", "ddn"])
def test_multi_tensor_optimizers_step_exactly_like_the_per_parameter_loop(algo, optimizer):
    """The learners' optimizers use torch's multi-tensor (foreach) update for speed; a run
    must still compute what the per-parameter loop computes, bit for bit."""
    cfg = tiny_cfg("predator_prey", algo, f"optimizer={optimizer}", "lr=0.01")
    fast, env = build(cfg, seed=3, generic=True)
    loop, _ = build(cfg, seed=3, generic=True)
    optimizers = [o for o in vars(loop).values() if isinstance(o, torch.optim.Optimizer)]
    td = getattr(loop, "td", loop)  # DDN: the GGN's TD learner holds the main optimizer
    optimizers.append(td.optimizer)
    for opt in optimizers:
        for group in opt.param_groups:
            group["foreach"] = False
    assert all(g["foreach"] for g in getattr(fast, "td", fast).optimizer.param_groups)
    batch = collected_batch(fast, env, seed=3)
    for episode in range(8, 48, 8):
        metrics = []
        for learner in (fast, loop):
            torch.manual_seed(episode)  # DDN's IDM draws its masks from torch's generator
            metrics.append(learner.train(batch, episode))
        assert metrics[0] == metrics[1]
    assert same(snapshot(fast), snapshot(loop))


def test_metric_values_read_every_metric_exactly():
    metrics = {
        "a": torch.tensor(0.1),
        "b": torch.tensor(3.0, dtype=torch.float64) / 7,
        "c": torch.tensor([2.5]).sum(),
    }
    assert metric_values(metrics) == {k: float(v) for k, v in metrics.items()}
