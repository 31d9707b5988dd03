"""PTDE (Chen et al., 2024): two stages.

* Phase 1 (the training loop): a value-decomposition learner whose agent network is
  :class:`~ddn.nets.rivals.PTDETeacher`, trained by the TD loss only; it acts.
* Phase 2 (:meth:`PTDELearner.phase_two`, once phase 1 is over, or on demand on any
  checkpoint): collect ``ptde_dataset_episodes`` episodes with the teacher acting at
  ``epsilon_finish``, keep (x_i, mu_i) for every agent of every real step (mu_i the
  frozen GIP's mean), and regress the student's z_hat_i = MLP(x_i) onto mu_i
  (:func:`ptde_distill_loss`) with Adam, on a random 80% of the rows; the other 20%
  measure the distillation error. The student is the frozen teacher with the GIP
  replaced by that MLP (:class:`~ddn.nets.rivals.PTDEStudent`).

Phase 2 stops between two of its steps when asked, and its state (dataset, step,
optimiser, sampling generator) is part of the checkpoint, so a run stopped in phase 2
resumes in phase 2.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ddn.buffer import EpisodeBatch
from ddn.config import Config, non_negative, positive
from ddn.envs import EnvSpec, VecEnv
from ddn.learners.base import transfer_rate_metrics
from ddn.learners.value_decomposition import VDLearner, adam, metric_values
from ddn.nets.rivals import PTDEStudent, PTDETeacher
from ddn.rollout import Collector

EVAL_FRACTION = 0.2  # PTDE's held-out share of the dataset
EVAL_ROWS = 65_536  # the held-out rows the distillation error is measured on, at most


@dataclass
class PTDEConfig:
    """PTDE: the GIP module (z width, hypernetwork units, variance floor); test-time
    noise N(0, var_floor) on the student's z_hat; phase 2's dataset (episodes with the
    teacher acting at epsilon_finish) and its offline regression (Adam)."""

    ptde_z_dim: int = positive(64)
    ptde_hyper_dim: int = positive(64)
    ptde_var_floor: float = positive(0.01)
    ptde_z_noise: bool = True
    ptde_dataset_episodes: int = positive(800)
    ptde_distill_steps: int = non_negative(500_000)
    ptde_distill_lr: float = positive(1e-4)
    ptde_distill_batch: int = positive(2048)


def ptde_distill_loss(z_hat: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Phase 2's loss: the squared error summed over z's units, averaged over rows.

    z_hat, mu [R, z]; mu is the frozen teacher's mean (a target: detached)."""
    return ((z_hat - mu.detach()) ** 2).sum(dim=-1).mean()


class PTDELearner:
    def __init__(self, cfg: Config, spec: EnvSpec, device: torch.device):
        self.cfg, self.spec, self.device = cfg, spec, device
        self.teacher = PTDETeacher(
            spec.obs_dim, spec.state_dim, spec.n_agents, spec.n_actions, cfg.rnn_hidden_dim,
            cfg.ptde_z_dim, cfg.ptde_hyper_dim, cfg.ptde_var_floor, cfg.obs_last_action,
            cfg.obs_agent_id,
        )  # fmt: skip
        self.td = VDLearner(cfg, spec, device, agent=self.teacher)
        self.student = PTDEStudent.of(self.teacher, cfg.ptde_z_noise).to(device)
        self.z_optimizer = adam(self.student.z_net.parameters(), cfg.ptde_distill_lr)
        self.phase = 1
        self.distill_step = 0
        self.dataset: dict[str, torch.Tensor] | None = None  # x, mu, train/eval indices
        self.sampler = torch.Generator()
        self.sampler.manual_seed(cfg.seed)
        self.last_metrics: dict[str, float] = {}

    @property
    def acting_network(self) -> nn.Module:
        return self.teacher

    @property
    def student_ready(self) -> bool:
        return self.phase == 3

    @property
    def post_budget_done(self) -> bool:
        """Phase 2 is the post-budget phase (:class:`~ddn.learners.base.PostBudgetLearner`)."""
        return self.student_ready

    def evaluation_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """The transfer rate, once the student exists."""
        if not self.student_ready:
            return {}
        return transfer_rate_metrics(metrics, self.spec.has_win_condition)

    def post_budget(
        self, env: VecEnv, should_stop: Callable[[], bool], progress: bool
    ) -> dict[str, float] | None:
        return self.phase_two(env, should_stop, progress)

    def evaluation_policies(self) -> dict[str, nn.Module]:
        """The student only once phase 2 has trained it."""
        policies: dict[str, nn.Module] = {"test": self.teacher}
        if self.student_ready:
            policies["test_student"] = self.student
        return policies

    def train(self, batch: EpisodeBatch, episode: int) -> dict[str, float]:
        if self.phase != 1:
            raise RuntimeError("PTDE's phase 1 is over: the teacher is frozen")
        metrics, _ = self.td.td_update(batch.to(self.device), episode)
        return metric_values(metrics)

    # ---------------------------------------------------------------- phase 2
    @torch.no_grad()
    def collect_dataset(self, env: VecEnv) -> dict[str, torch.Tensor]:
        """(x_i, mu_i) rows of every agent of every real step of ``ptde_dataset_episodes``
        episodes the teacher plays at epsilon_finish, split 80/20 at random."""
        cfg, collector = self.cfg, Collector(env, self.device)
        xs, mus, episodes = [], [], 0
        while episodes < cfg.ptde_dataset_episodes:
            batch, _ = collector.run(self.teacher, cfg.epsilon_finish)
            keep = min(batch.num_episodes, cfg.ptde_dataset_episodes - episodes)
            batch = batch.index(slice(0, keep))
            x = self.td.encode(batch)[:, :-1]  # [E, T, N, D]
            mu, _ = self.teacher.gip(x, batch.state[:, :-1])
            xs.append(x[batch.filled].flatten(0, 1))  # real steps x agents
            mus.append(mu[batch.filled].flatten(0, 1))
            episodes += keep
        x, mu = torch.cat(xs), torch.cat(mus)
        order = torch.randperm(len(x), generator=self.sampler).to(self.device)
        n_eval = max(1, int(len(x) * EVAL_FRACTION))
        return {"x": x, "mu": mu, "eval": order[:n_eval], "train": order[n_eval:]}

    @torch.no_grad()
    def eval_error(self) -> float:
        """The distillation error on (up to EVAL_ROWS of) the held-out rows."""
        assert self.dataset is not None
        rows = self.dataset["eval"][:EVAL_ROWS]
        x, mu = self.dataset["x"][rows], self.dataset["mu"][rows]
        return float(ptde_distill_loss(self.student.z_hat(x), mu))

    def phase_two(
        self,
        env: VecEnv,
        should_stop: Callable[[], bool] = lambda: False,
        progress: bool = True,
    ) -> dict[str, float] | None:
        """Run (or continue) phase 2; returns its metrics once done, None if stopped."""
        cfg = self.cfg
        if self.phase == 3:
            return self.last_metrics
        if self.phase == 1:
            self.dataset = self.collect_dataset(env)
            self.phase, self.distill_step = 2, 0
            self.last_metrics = {"ptde/distill_error_initial": self.eval_error()}
        assert self.dataset is not None
        train_rows = self.dataset["train"]
        bar = tqdm(
            total=cfg.ptde_distill_steps, initial=self.distill_step, desc="PTDE phase 2",
            unit="step", unit_scale=True, dynamic_ncols=True, disable=not progress,
        )  # fmt: skip
        params = list(self.student.z_net.parameters())
        loss = torch.zeros(())
        try:
            while self.distill_step < cfg.ptde_distill_steps:
                if should_stop():
                    return None
                pick = torch.randint(
                    len(train_rows), (cfg.ptde_distill_batch,), generator=self.sampler
                )
                rows = train_rows[pick.to(train_rows.device)]
                x, mu = self.dataset["x"][rows], self.dataset["mu"][rows]
                loss = ptde_distill_loss(self.student.z_hat(x), mu)
                self.z_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, cfg.grad_norm_clip)
                self.z_optimizer.step()
                self.distill_step += 1
                bar.update(1)
                if self.distill_step % 1000 == 0:
                    bar.set_postfix(
                        train=f"{float(loss.detach()):.4g}", eval=f"{self.eval_error():.4g}"
                    )
        finally:
            bar.close()
        self.last_metrics.update(
            {
                "ptde/distill_error_final": self.eval_error(),
                "ptde/distill_train_loss": float(loss.detach()),
                "ptde/dataset_rows": float(len(self.dataset["x"])),
            }
        )
        self.phase, self.dataset = 3, None  # the dataset is not kept in checkpoints
        return self.last_metrics

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "td": self.td.state_dict(),
            "z_net": self.student.z_net.state_dict(),
            "z_optimizer": self.z_optimizer.state_dict(),
            "phase": self.phase,
            "distill_step": self.distill_step,
            "dataset": self.dataset,
            "sampler": self.sampler.get_state(),
            "last_metrics": {
                k: torch.tensor(v, dtype=torch.float64) for k, v in self.last_metrics.items()
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.td.load_state_dict(state["td"])
        self.student.z_net.load_state_dict(state["z_net"])
        self.z_optimizer.load_state_dict(state["z_optimizer"])
        self.phase, self.distill_step = int(state["phase"]), int(state["distill_step"])
        self.dataset = state["dataset"]
        self.sampler.set_state(state["sampler"])
        self.last_metrics = {k: float(v) for k, v in state["last_metrics"].items()}

    def policy_state_dict(self) -> dict:
        return {"teacher": self.teacher.state_dict(), "student": self.student.state_dict()}
