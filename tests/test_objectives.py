"""The TD objectives' targets and losses against numbers computed by hand.

Each test builds a tiny batch (one to three episodes, two agents, two or three actions)
with the agents' Q-values written out, calls the objective the learner calls
(``objective(td, target_objective)``), and compares the loss and its metrics with the
arithmetic in the comments. Where a learned network would make the numbers opaque
(mixers, QTRAN's joint network, WQMIX's central Q*), it is swapped for a parameter-free
one whose values are the sums or table entries the comments use: what is under test is
which actions, which networks and which weights the objective's target and loss use.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ddn.buffer import EpisodeBatch
from ddn.config import Config, resolve
from ddn.envs import EnvSpec
from ddn.learners.objectives import TDBatch, TDObjective, build_objective
from ddn.learners.targets import fix_avail
from ddn.nets.agent import AgentOutput
from ddn.nets.inputs import LocalInputs
from ddn.nets.mixers import MixContext, VDNMixer

GAMMA = 0.5


def config(algo: str, *overrides: str) -> Config:
    """One-step targets (td_lambda = 0), gamma = 0.5, time-outs bootstrap."""
    return resolve(
        "matrix",
        algo,
        overrides=[
            f"gamma={GAMMA}",
            "td_lambda=0.0",
            "bootstrap_timeout=true",
            "rnn_hidden_dim=4",
            "mixing_embed_dim=4",
            "central_mixing_embed_dim=4",
            "device=cpu",
            *overrides,
        ],
    )


def outputs(q: list, hidden: list | None = None) -> AgentOutput:
    """Agent outputs with the given Q-values [E, T+1, N, A] (and GRU outputs [E, T+1, N, H],
    zeros unless given); nothing here reads the MLP features."""
    q_t = torch.tensor(q, dtype=torch.float32)
    h_t = torch.zeros(*q_t.shape[:-1], 1) if hidden is None else torch.tensor(hidden)
    return AgentOutput(q=q_t, gru_out=h_t, feature=torch.zeros_like(h_t))


def episodes(
    spec: EnvSpec,
    actions: list,
    reward: list,
    terminated: list,
    unavailable: tuple[tuple[int, int, int, int], ...] = (),
) -> EpisodeBatch:
    """Full-length episodes (no padding) with the given actions [E, T, N], rewards and
    terminations [E, T]; every action available except the (e, t, agent, action) listed."""
    e = len(reward)
    batch = EpisodeBatch.zeros(e, spec, "cpu")
    batch.actions[:] = torch.tensor(actions)
    batch.reward[:] = torch.tensor(reward)
    batch.terminated[:] = torch.tensor(terminated)
    batch.filled[:] = True
    batch.avail[:] = True
    for ep, t, agent, action in unavailable:
        batch.avail[ep, t, agent, action] = False
    return batch


def td_batch(batch: EpisodeBatch, online: AgentOutput, target: AgentOutput) -> TDBatch:
    """What the learner hands its objective (see ``VDLearner.td_update``)."""
    spec = LocalInputs(batch.obs.shape[-1], batch.obs.shape[-2], online.q.shape[-1])
    return TDBatch(
        batch=batch,
        inputs=spec.episodes(batch.obs, batch.actions),  # x_i, as the learner encodes it
        online=online,
        target=target,
        reward=batch.reward,
        avail=fix_avail(batch.avail),
        mask=batch.filled.float(),
    )


def objective_pair(cfg: Config, spec: EnvSpec) -> tuple[TDObjective, TDObjective]:
    """The online objective and its target copy, as the learner holds them."""
    online = build_objective(cfg, spec)
    return online, copy.deepcopy(online)


def constant_q(network: nn.Module, values: list[float]) -> None:
    """Make a recurrent agent network output Q_i(a) = values[a] for every agent and step:
    all weights zero (the GRU then outputs 0 from its zero initial state) and the Q head's
    bias (the last linear layer with one output per action) set to ``values``."""
    head = [m for m in network.modules() if isinstance(m, nn.Linear)][-1]
    assert head.out_features == len(values)
    with torch.no_grad():
        for p in network.parameters():
            p.zero_()
        head.bias.copy_(torch.tensor(values))


# ---------------------------------------------------------------- mixer TD, double Q
MIXER_SPEC = EnvSpec(n_agents=2, obs_dim=1, state_dim=1, n_actions=3, episode_limit=2)


@pytest.mark.parametrize(
    ("double_q", "want_targets", "want_loss"),
    [
        # online greedy at t=1 is (1, 0): Q^-_1(1) + Q^-_2(0) = 1 + 0 = 1
        #   y_0 = 1 + 0.5 * 1 = 1.5, y_1 = 2 (terminated)
        #   loss = ((4 - 1.5)^2 + (5 - 2)^2) / 2 = (6.25 + 9) / 2 = 7.625
        (True, [1.5, 2.0], 7.625),
        # target greedy at t=1 is (0, 1) (agent 2's 7 is unavailable): 4 + 3 = 7
        #   y_0 = 1 + 0.5 * 7 = 4.5, y_1 = 2
        #   loss = ((4 - 4.5)^2 + 9) / 2 = 4.625
        (False, [4.5, 2.0], 4.625),
    ],
)
def test_mixer_td_target_double_q_on_and_off(double_q, want_targets, want_loss):
    """Double Q picks the bootstrap action with the online agents and values it with the
    target agents; without it the target agents do both. VDN's Q_tot is the sum of the
    chosen Q_i, so the target is r + gamma * sum_i Q^-_i(t+1, u'_i) over available u'."""
    cfg = config("vdn", f"double_q={str(double_q).lower()}")
    online_obj, target_obj = objective_pair(cfg, MIXER_SPEC)
    batch = episodes(
        MIXER_SPEC,
        actions=[[[2, 0], [1, 1]]],
        reward=[[1.0, 2.0]],
        terminated=[[False, True]],
        unavailable=((0, 1, 1, 2),),  # agent 2 cannot take action 2 at t=1
    )
    online = outputs(
        [
            [
                [[0, 0, 3], [1, 0, 0]],  # t=0: taken (2, 0) -> Q_tot = 3 + 1 = 4
                [[0, 5, 1], [2, 0, 9]],  # t=1: taken (1, 1) -> Q_tot = 5 + 0 = 5
                [[50, 50, 50], [50, 50, 50]],  # t=2: after the termination, never read
            ]
        ]
    )
    target = outputs(
        [
            [
                [[7, 7, 7], [7, 7, 7]],  # t=0: the target's values of t=0 are never read
                [[4, 1, 0], [0, 3, 7]],
                [[60, 60, 60], [60, 60, 60]],
            ]
        ]
    )
    loss, metrics = online_obj(td_batch(batch, online, target), target_obj)
    assert loss.item() == pytest.approx(want_loss)
    assert float(metrics["train/target_mean"]) == pytest.approx(sum(want_targets) / 2)
    assert float(metrics["train/q_taken_mean"]) == pytest.approx((4 + 5) / 2)


def test_mixer_td_bootstraps_through_the_target_mixer():
    """The bootstrap value is the target objective's mixer, not the online one: with the
    target mixer doubling Q_tot, y_0 = 1 + 0.5 * 2 * (1 + 0) = 2 (online greedy (1, 0))."""

    class Doubled(VDNMixer):
        def forward(self, qs: torch.Tensor, ctx: MixContext | None = None) -> torch.Tensor:
            return 2 * qs.sum(dim=-1)

    cfg = config("vdn", "double_q=true")
    online_obj, target_obj = objective_pair(cfg, MIXER_SPEC)
    target_obj.mixer = Doubled()
    batch = episodes(
        MIXER_SPEC,
        actions=[[[2, 0], [1, 1]]],
        reward=[[1.0, 2.0]],
        terminated=[[False, True]],
        unavailable=((0, 1, 1, 2),),
    )
    online = outputs([[[[0, 0, 3], [1, 0, 0]], [[0, 5, 1], [2, 0, 9]], [[0] * 3, [0] * 3]]])
    target = outputs([[[[0] * 3, [0] * 3], [[4, 1, 0], [0, 3, 7]], [[0] * 3, [0] * 3]]])
    _, metrics = online_obj(td_batch(batch, online, target), target_obj)
    # y = (2, 2): the online Q_tot stays the plain sum (4, 5)
    assert float(metrics["train/target_mean"]) == pytest.approx((2.0 + 2.0) / 2)
    assert float(metrics["train/q_taken_mean"]) == pytest.approx(4.5)


# ---------------------------------------------------------------- QTRAN's joint target
class JointTable(nn.Module):
    """A QTRAN joint network with known values: Q_jt(s, u) = payoff[u_1, u_2] + sum_i h_i
    (h_i the agents' one-dimensional GRU outputs) and V_jt(s) = v."""

    def __init__(self, payoff: list, v: float):
        super().__init__()
        self.register_buffer("payoff", torch.tensor(payoff))
        self.v = v

    def forward(self, ctx: MixContext) -> tuple[torch.Tensor, torch.Tensor]:
        assert ctx.actions_onehot is not None and ctx.agent_gru_out is not None
        u1, u2 = ctx.actions_onehot[..., 0, :], ctx.actions_onehot[..., 1, :]
        q_jt = torch.einsum("...a,ab,...b->...", u1, self.payoff, u2)
        q_jt = q_jt + ctx.agent_gru_out[..., 0].sum(dim=-1)
        return q_jt, torch.full_like(q_jt, self.v)


QTRAN_SPEC = EnvSpec(n_agents=2, obs_dim=1, state_dim=1, n_actions=2, episode_limit=1)


@pytest.mark.parametrize(
    ("double_q", "want_y"),
    [
        # online greedy at t=1 is (0, 1); target Q_jt there, with the TARGET agents'
        # hidden outputs (1 + 2): 20 + 3 = 23 -> y = 1 + 0.5 * 23 = 12.5
        (True, 12.5),
        # target greedy at t=1 is (1, 0): 30 + 3 = 33 -> y = 1 + 0.5 * 33 = 17.5
        (False, 17.5),
    ],
)
def test_qtran_joint_target_and_loss(double_q, want_y):
    """y = r + gamma * Q^-_jt(s', u', h^-') with u' the (double-Q) greedy joint action and
    h^-' the target agents' GRU outputs; the loss is L_td + 1 * L_opt + 0.1 * L_nopt."""
    cfg = config("qtran", f"double_q={str(double_q).lower()}", "opt_loss=1.0", "nopt_min_loss=0.1")
    online_obj, target_obj = objective_pair(cfg, QTRAN_SPEC)
    online_obj.joint = JointTable([[1.0, 2.0], [3.0, 4.0]], v=0.5)
    target_obj.joint = JointTable([[10.0, 20.0], [30.0, 40.0]], v=-99.0)
    batch = episodes(QTRAN_SPEC, actions=[[[1, 0]]], reward=[[1.0]], terminated=[[False]])
    online = outputs(
        q=[[[[0, 2], [1, 3]], [[5, 0], [0, 5]]]],  # t=0 taken (1, 0), greedy (1, 1)
        hidden=[[[[0.25], [0.5]], [[100.0], [100.0]]]],  # t=1's online h must not be used
    )
    target = outputs(
        q=[[[[0, 0], [0, 0]], [[0, 5], [5, 0]]]],
        hidden=[[[[0.0], [0.0]], [[1.0], [2.0]]]],
    )
    loss, metrics = online_obj(td_batch(batch, online, target), target_obj)
    # Q_jt(s, u) = payoff[1, 0] + (0.25 + 0.5) = 3.75
    td_loss = (3.75 - want_y) ** 2
    # L_opt: sum_i Q_i(u_bar) = 2 + 3 = 5, Q_jt(u_bar) = 4 + 0.75 = 4.75 -> (5 - 4.75 + 0.5)^2
    l_opt = (5 - 4.75 + 0.5) ** 2  # 0.5625
    # L_nopt: sum_i Q_i(u) = 2 + 1 = 3 -> min(3 - 3.75 + 0.5, 0)^2 = (-0.25)^2
    l_nopt = 0.0625
    assert float(metrics["train/target_mean"]) == pytest.approx(want_y)
    assert float(metrics["train/td_loss"]) == pytest.approx(td_loss)
    assert float(metrics["train/opt_loss"]) == pytest.approx(l_opt)
    assert float(metrics["train/nopt_loss"]) == pytest.approx(l_nopt)
    assert loss.item() == pytest.approx(td_loss + 1.0 * l_opt + 0.1 * l_nopt)


# ---------------------------------------------------------------- WQMIX's weighted loss
WQMIX_SPEC = EnvSpec(n_agents=2, obs_dim=1, state_dim=1, n_actions=2, episode_limit=1)
ALPHA = 0.25


def wqmix_case(algo: str):
    """Three one-step episodes; Q_tot and Q* are sums (VDN mixers), the central agents
    output Q*_i(a) = (1, 3)[a] online and (2, 0)[a] as the target.

    episode  u      r  end        Q_i(t=0)            Q_tot(u)  u_hat   Q*(u_hat)  Q*(u)
    0        (0,0)  2  terminal   (1, 0), (2, 0)      1+2 = 3   (0,0)   1+1 = 2    2
    1        (1,0)  0  terminal   (2, 1), (0, -1)     1+0 = 1   (0,0)   2          3+1 = 4
    2        (1,1)  5  time-out   (0, 1), (3, 2)      1+2 = 3   (1,0)   3+1 = 4    3+3 = 6

    Episode 2 bootstraps from the target Q* at the QMIX agents' greedy action at t=1,
    (0, 1): 2 + 0 = 2, so y = (2, 0, 5 + 0.5 * 2 = 6).
    """
    cfg = config(algo, f"w={ALPHA}", "qmix_loss=1.0", "central_loss=2.0")
    online_obj, target_obj = objective_pair(cfg, WQMIX_SPEC)
    for obj in (online_obj, target_obj):
        obj.mixer = VDNMixer()
        obj.central_mixer = VDNMixer()
    constant_q(online_obj.central_agent, [1.0, 3.0])
    constant_q(target_obj.central_agent, [2.0, 0.0])
    batch = episodes(
        WQMIX_SPEC,
        actions=[[[0, 0]], [[1, 0]], [[1, 1]]],
        reward=[[2.0], [0.0], [5.0]],
        terminated=[[True], [True], [False]],
    )
    online = outputs(
        [
            [[[1, 0], [2, 0]], [[0, 0], [0, 0]]],
            [[[2, 1], [0, -1]], [[0, 0], [0, 0]]],
            [[[0, 1], [3, 2]], [[5, 0], [0, 5]]],
        ]
    )
    target = outputs([[[[0, 0], [0, 0]], [[0, 0], [0, 0]]]] * 3)
    return online_obj(td_batch(batch, online, target), target_obj)


# (Q_tot - y)^2 = (3 - 2)^2, (1 - 0)^2, (3 - 6)^2 = 1, 1, 9
# central: (Q*(u) - y)^2 = (2 - 2)^2, (4 - 0)^2, (6 - 6)^2 = 0, 16, 0 -> 16 / 3
CENTRAL_LOSS = 16 / 3


@pytest.mark.parametrize(
    ("algo", "weights"),
    [
        # CW: 1 where u = u_hat (episode 0) or y > Q*(u_hat) (episode 2: 6 > 4);
        # episode 1 has neither (0 <= 2, u != u_hat): alpha
        ("cw_qmix", [1.0, ALPHA, 1.0]),
        # OW: 1 where Q_tot < y: only episode 2 (3 < 6); episodes 0 (3 >= 2), 1 (1 >= 0)
        ("ow_qmix", [ALPHA, ALPHA, 1.0]),
    ],
)
def test_wqmix_weights_inside_the_loss(algo, weights):
    loss, metrics = wqmix_case(algo)
    # CW: (1 * 1 + 0.25 * 1 + 1 * 9) / 3 = 10.25 / 3 ; OW: (0.25 + 0.25 + 9) / 3 = 9.5 / 3
    qmix_loss = sum(w * e for w, e in zip(weights, [1.0, 1.0, 9.0], strict=True)) / 3
    assert float(metrics["train/target_mean"]) == pytest.approx((2 + 0 + 6) / 3)
    assert float(metrics["train/w_mean"]) == pytest.approx(sum(weights) / 3)
    assert float(metrics["train/qmix_loss"]) == pytest.approx(qmix_loss)
    assert float(metrics["train/central_loss"]) == pytest.approx(CENTRAL_LOSS)
    assert loss.item() == pytest.approx(1.0 * qmix_loss + 2.0 * CENTRAL_LOSS)
