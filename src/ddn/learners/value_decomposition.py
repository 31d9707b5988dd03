"""The value-decomposition TD learner (VDN, QMIX, Qatten, QPLEX, CW/OW-QMIX, QTRAN).

One update: encode the batch's local inputs x_i once (:mod:`ddn.nets.inputs`), unroll
the online and target agent networks over the whole sampled batch (one GRU call each),
hand both to the family's objective, clip the gradient norm, step the optimizer, and
sync the target networks every ``target_update_interval`` episodes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ddn.buffer import EpisodeBatch
from ddn.config import Config
from ddn.envs import EnvSpec
from ddn.learners.base import TEACHER_PREFIX
from ddn.learners.objectives import TDBatch, build_objective
from ddn.learners.targets import fix_avail
from ddn.nets.agent import AgentOutput, AgentQNetwork, RecurrentQNetwork


def make_optimizer(cfg: Config, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The run's optimizer. ``foreach``: every line of the update rule is one multi-tensor
    op over all parameters instead of a Python loop over them (torch picks it by itself
    only for GPU tensors); on a small network the loop costs more than the arithmetic.
    Same arithmetic, bit for bit (tests/test_learner.py)."""
    if cfg.optimizer == "adam":
        return adam(params, cfg.lr)
    return torch.optim.RMSprop(
        params, lr=cfg.lr, alpha=cfg.optim_alpha, eps=cfg.optim_eps, foreach=True
    )


def adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with the multi-tensor update (see :func:`make_optimizer`)."""
    return torch.optim.Adam(params, lr=lr, foreach=True)


def metric_values(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """An update's scalar metrics as floats, read with one copy to the host (one
    synchronisation on a GPU) instead of one per metric."""
    values = torch.stack([v.detach().reshape(()) for v in metrics.values()]).tolist()
    return dict(zip(metrics, values, strict=True))


def frozen_copy(module: nn.Module) -> nn.Module:
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


def encode_batch(network: RecurrentQNetwork, batch: EpisodeBatch) -> torch.Tensor:
    """The x_i ``network`` reads on ``batch``, [E, T+1, N, D]: its o_i (the network's
    :meth:`~ddn.nets.agent.RecurrentQNetwork.observe` of the stored fields) encoded."""
    obs = network.observe(batch.obs, batch.avail, batch.privileged_obs)
    return network.inputs.episodes(obs, batch.actions)


def unroll_batch(
    network: RecurrentQNetwork, batch: EpisodeBatch, inputs: torch.Tensor | None = None
) -> AgentOutput:
    """``network``'s outputs on every step of ``batch`` (from ``inputs`` where already
    encoded), with the state where it reads it."""
    x = encode_batch(network, batch) if inputs is None else inputs
    out, _ = network.unroll(x, batch.state if network.reads_state else None)
    return out


class VDLearner:
    """Owns the agent network, the objective, their target copies and the optimizer
    (a :class:`~ddn.learners.base.Learner`)."""

    def __init__(
        self,
        cfg: Config,
        spec: EnvSpec,
        device: torch.device,
        agent: RecurrentQNetwork | None = None,
    ):
        """``agent`` replaces the default local-observation agent network (DDN's GGN)."""
        self.cfg, self.spec, self.device = cfg, spec, device
        if agent is None:
            agent = AgentQNetwork(
                spec.obs_dim, spec.n_agents, spec.n_actions, cfg.rnn_hidden_dim,
                cfg.obs_last_action, cfg.obs_agent_id,
            )  # fmt: skip
        self.agent = agent.to(device)
        self.objective = build_objective(cfg, spec).to(device)
        self.target_agent = frozen_copy(self.agent)
        self.target_objective = frozen_copy(self.objective)
        self.params = [*self.agent.parameters(), *self.objective.parameters()]
        self.optimizer = make_optimizer(cfg, self.params)
        self.last_target_update_episode = 0
        self.updates = 0

    @property
    def acting_network(self) -> nn.Module:
        """The network the rollout acts with."""
        return self.agent

    def evaluation_policies(self) -> dict[str, nn.Module]:
        """Networks evaluated greedily at test time, by metric prefix."""
        return {TEACHER_PREFIX: self.agent}

    def evaluation_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """None beyond each policy's own summary."""
        return {}

    def train(self, batch: EpisodeBatch, episode: int) -> dict[str, float]:
        """One gradient step on ``batch``; ``episode`` counts episodes collected so far."""
        metrics, _ = self.td_update(batch.to(self.device), episode)
        return metric_values(metrics)

    def encode(self, batch: EpisodeBatch) -> torch.Tensor:
        """The batch's local inputs x_i, [E, T+1, N, D] (time-major storage): encoded once
        per update and read by every agent network that unrolls the batch."""
        return encode_batch(self.agent, batch)

    def td_update(
        self,
        batch: EpisodeBatch,
        episode: int,
        reward: torch.Tensor | None = None,
        inputs: torch.Tensor | None = None,
        next_actions: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], AgentOutput]:
        """The TD step on ``reward`` (default the batch's), from the encoded ``inputs``
        (default: :meth:`encode`), bootstrapping on ``next_actions`` [E, T, N] where
        given (else the objective's own choice; IGM-DA's DAgger passes its learner's):
        returns the metrics and the online agent outputs it was computed from
        (detached, pre-update)."""
        x = self.encode(batch) if inputs is None else inputs
        state = batch.state if self.agent.reads_state else None
        online, _ = self.agent.unroll(x, state)
        with torch.no_grad():
            target, _ = self.target_agent.unroll(x, state)
        td = TDBatch(
            batch=batch,
            inputs=x,
            online=online,
            target=target,
            reward=batch.reward if reward is None else reward,
            avail=fix_avail(batch.avail),
            mask=batch.filled.float(),
            next_actions=next_actions,
        )
        loss, metrics = self.objective(td, self.target_objective)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.params, self.cfg.grad_norm_clip)
        self.optimizer.step()
        self.updates += 1
        if episode - self.last_target_update_episode >= self.cfg.target_update_interval:
            self.sync_targets()
            self.last_target_update_episode = episode
        metrics["train/grad_norm"] = grad_norm
        return metrics, online.detach()

    def sync_targets(self) -> None:
        self.target_agent.load_state_dict(self.agent.state_dict())
        self.target_objective.load_state_dict(self.objective.state_dict())

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {
            "agent": self.agent.state_dict(),
            "objective": self.objective.state_dict(),
            "target_agent": self.target_agent.state_dict(),
            "target_objective": self.target_objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "last_target_update_episode": self.last_target_update_episode,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        self.objective.load_state_dict(state["objective"])
        self.target_agent.load_state_dict(state["target_agent"])
        self.target_objective.load_state_dict(state["target_objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.last_target_update_episode = int(state["last_target_update_episode"])
        self.updates = int(state["updates"])

    def policy_state_dict(self) -> dict:
        """What evaluation needs: the acting network's weights."""
        return {"agent": self.agent.state_dict()}
