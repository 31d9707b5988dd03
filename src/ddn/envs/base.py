"""The vectorized environment protocol every ddn environment speaks.

One object runs ``B`` environments of ``N`` agents in lock-step and exchanges batched
torch tensors. Contract (``docs/environments.md`` has the long form):

* ``reset()`` starts a new episode in **all** ``B`` environments and returns an
  :class:`EnvOutput` whose ``reward`` is zero and whose done flags are all ``False``.
* ``step(actions)`` advances every environment that is still running. Finished
  environments do **not** auto-reset: they wait for the next ``reset()``. While they
  wait they are frozen: their observations and state stay as they were, their reward
  is 0, their ``terminated``/``truncated``/``won`` flags stay as they were when the
  episode ended, and the actions given for them are ignored (not validated). This is
  what an episode collector wants: step until ``(terminated | truncated).all()``.
* ``terminated`` is a real end of the episode (no bootstrapping); ``truncated`` is a
  time-out at ``episode_limit`` (bootstrap from the last state). Never both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass(frozen=True)
class EnvSpec:
    """Static sizes of an environment, what networks and buffers are built from."""

    n_agents: int
    obs_dim: int
    state_dim: int
    n_actions: int
    episode_limit: int
    #: Whether ``won`` carries meaning (SMAC battles, matrix optimum). Loggers report a
    #: win rate only where it does.
    has_win_condition: bool = False
    #: Width of ``EnvOutput.privileged_obs``; 0 where the env produces none. A privileged
    #: observation is what a teacher may read beyond ``obs`` (Predator-Prey's: the same
    #: agent-centred encoding with unlimited sight); a student never reads it.
    privileged_obs_dim: int = 0


@dataclass
class EnvOutput:
    """What ``reset()`` and ``step()`` return; every tensor's first dim is ``B``."""

    obs: torch.Tensor  # [B, N, O] float32
    state: torch.Tensor  # [B, S] float32
    avail: torch.Tensor  # [B, N, A] bool
    reward: torch.Tensor  # [B] float32
    terminated: torch.Tensor  # [B] bool
    truncated: torch.Tensor  # [B] bool
    won: torch.Tensor  # [B] bool
    privileged_obs: torch.Tensor | None = None  # [B, N, P] float32 where P > 0, else None

    @property
    def done(self) -> torch.Tensor:
        return self.terminated | self.truncated


class VecEnv(ABC):
    """Base class: ``num_envs`` environments, one device, one seeded generator."""

    spec: EnvSpec
    #: True where every copy is a process holding a simulator (SMAC's StarCraft II):
    #: the training loop then tests with ``batch_size_run`` copies, not one per episode.
    expensive_copies: ClassVar[bool] = False

    def __init__(self, num_envs: int, seed: int = 0, device: str | torch.device = "cpu"):
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.seed = seed
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    @abstractmethod
    def reset(self) -> EnvOutput:
        """Start a new episode in every environment."""

    @abstractmethod
    def step(self, actions: torch.Tensor) -> EnvOutput:
        """Advance the running environments by one joint action ``[B, N]`` (int64)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most envs hold no resources
        """Release processes or devices held by the environment."""

    def validate_actions(
        self, actions: torch.Tensor, avail: torch.Tensor, running: torch.Tensor
    ) -> None:
        """Raise one clear ``ValueError`` for a malformed or unavailable joint action.

        ``running`` [B] marks the environments whose actions are checked against
        ``avail``; finished ones ignore their actions.
        """
        spec = self.spec
        if not isinstance(actions, torch.Tensor):
            raise ValueError(
                f"actions must be a torch.Tensor of shape [{self.num_envs}, {spec.n_agents}] "
                f"and dtype torch.int64, got {type(actions).__name__}"
            )
        if actions.shape != (self.num_envs, spec.n_agents):
            raise ValueError(
                f"actions must have shape [num_envs, n_agents] = [{self.num_envs}, "
                f"{spec.n_agents}], got {list(actions.shape)}"
            )
        if actions.dtype != torch.int64:
            raise ValueError(
                f"actions must have dtype torch.int64, got {actions.dtype}; "
                "convert with actions.long()"
            )
        if actions.device != self.device:
            raise ValueError(
                f"actions are on {actions.device} but the environment runs on {self.device}; "
                f"move them with actions.to('{self.device}')"
            )
        out_of_range = (actions < 0) | (actions >= spec.n_actions)
        if bool(out_of_range.any()):
            b, i = (int(x) for x in out_of_range.nonzero()[0])
            raise ValueError(
                f"action {int(actions[b, i])} of agent {i} in env {b} is out of range "
                f"[0, {spec.n_actions}); pick actions among out.avail"
            )
        chosen_ok = avail.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        bad = ~chosen_ok & running.unsqueeze(-1)
        if bool(bad.any()):
            b, i = (int(x) for x in bad.nonzero()[0])
            valid = avail[b, i].nonzero().flatten().tolist()
            raise ValueError(
                f"action {int(actions[b, i])} of agent {i} in env {b} is not available "
                f"(available: {valid}); mask unavailable actions with out.avail"
            )
