"""Whole episodes as preallocated tensors, padded to the episode limit.

An :class:`EpisodeBatch` holds ``E`` episodes of at most ``T`` transitions. Per-step
fields (obs, state, avail) have ``T + 1`` entries: the last is the state reached by
the last transition, which a time-out bootstraps from.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from ddn.envs import EnvSpec


@dataclass
class EpisodeBatch:
    obs: torch.Tensor  # [E, T+1, N, O]
    state: torch.Tensor  # [E, T+1, S]
    avail: torch.Tensor  # [E, T+1, N, A] bool
    privileged_obs: torch.Tensor  # [E, T+1, N, P]; P = 0 where the env produces none
    actions: torch.Tensor  # [E, T, N] int64
    reward: torch.Tensor  # [E, T] float32
    terminated: torch.Tensor  # [E, T] bool: the transition ended the episode for real
    filled: torch.Tensor  # [E, T] bool: the transition exists (not padding)

    @classmethod
    def zeros(cls, e: int, spec: EnvSpec, device: torch.device | str, dtype=torch.float32):
        t, n = spec.episode_limit, spec.n_agents
        return cls(
            obs=torch.zeros(e, t + 1, n, spec.obs_dim, dtype=dtype, device=device),
            state=torch.zeros(e, t + 1, spec.state_dim, dtype=dtype, device=device),
            avail=torch.zeros(e, t + 1, n, spec.n_actions, dtype=torch.bool, device=device),
            privileged_obs=torch.zeros(
                e, t + 1, n, spec.privileged_obs_dim, dtype=dtype, device=device
            ),
            actions=torch.zeros(e, t, n, dtype=torch.long, device=device),
            reward=torch.zeros(e, t, dtype=torch.float32, device=device),
            terminated=torch.zeros(e, t, dtype=torch.bool, device=device),
            filled=torch.zeros(e, t, dtype=torch.bool, device=device),
        )

    @property
    def num_episodes(self) -> int:
        return self.reward.shape[0]

    @property
    def max_t(self) -> int:
        return self.reward.shape[1]

    def index(self, idx: torch.Tensor | slice, max_t: int | None = None) -> EpisodeBatch:
        """Episodes ``idx``, trimmed to ``max_t`` transitions."""
        t = self.max_t if max_t is None else max_t
        return EpisodeBatch(
            obs=self.obs[idx, : t + 1],
            state=self.state[idx, : t + 1],
            avail=self.avail[idx, : t + 1],
            privileged_obs=self.privileged_obs[idx, : t + 1],
            actions=self.actions[idx, :t],
            reward=self.reward[idx, :t],
            terminated=self.terminated[idx, :t],
            filled=self.filled[idx, :t],
        )

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> EpisodeBatch:
        moved = {}
        for f in fields(self):
            x = getattr(self, f.name)
            cast = dtype if (dtype is not None and x.is_floating_point()) else None
            moved[f.name] = x.to(device=device, dtype=cast, non_blocking=True)
        return EpisodeBatch(**moved)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def episode_bytes(spec: EnvSpec) -> int:
    """Memory of one stored episode (what ``buffer_size`` multiplies)."""
    batch = EpisodeBatch.zeros(1, spec, "meta")
    return sum(x.numel() * x.element_size() for x in batch.tensors().values())


class EpisodeBuffer:
    """A ring of ``capacity`` episodes with uniform sampling.

    ``generator`` (a CPU generator) is the replay-sampling stream: a run passes its own,
    seeded from its seed and saved in its checkpoints, so that sampling neither depends on
    nor shifts any other random stream.
    """

    def __init__(
        self,
        capacity: int,
        spec: EnvSpec,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ):
        self.capacity = capacity
        self.spec = spec
        self.device = torch.device(device)
        self.generator = generator
        self.data = EpisodeBatch.zeros(capacity, spec, self.device)
        self.cursor = 0  # next slot to write
        self.size = 0  # episodes held

    def insert(self, batch: EpisodeBatch) -> None:
        e = batch.num_episodes
        if e > self.capacity:
            raise ValueError(f"cannot insert {e} episodes into a buffer of {self.capacity}")
        slots = (torch.arange(e) + self.cursor) % self.capacity
        slots = slots.to(self.device)
        for name, dst in self.data.tensors().items():
            src = getattr(batch, name).to(self.device)
            length = src.shape[1]  # collected batches are trimmed: pad them back
            dst[slots, :length] = src
            if length < dst.shape[1]:
                dst[slots, length:] = 0
        self.cursor = (self.cursor + e) % self.capacity
        self.size = min(self.size + e, self.capacity)

    def can_sample(self, n: int) -> bool:
        return self.size >= n

    def sample(self, n: int, generator: torch.Generator | None = None) -> EpisodeBatch:
        """``n`` distinct episodes, uniformly, trimmed to the longest one's length; drawn
        from ``generator``, by default the buffer's own."""
        if not self.can_sample(n):
            raise ValueError(f"buffer holds {self.size} episodes, cannot sample {n}")
        g = self.generator if generator is None else generator
        idx = torch.randperm(self.size, generator=g)[:n].to(self.device)
        max_t = int(self.data.filled[idx].sum(dim=1).max())
        return self.data.index(idx, max(max_t, 1))

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """The filled episodes only: slots fill in order from 0 until the ring is full,
        so they are the first ``size``, and a young run's snapshot stays small. (A saved
        slice would carry its whole storage, so a partial one is copied.)"""
        data = self.data.tensors()
        if self.size < self.capacity:
            data = {k: v[: self.size].clone() for k, v in data.items()}
        return {**data, "cursor": self.cursor, "size": self.size, "capacity": self.capacity}

    def load_state_dict(self, state: dict) -> None:
        size = int(state["size"])
        capacity = int(state.get("capacity", state["filled"].shape[0]))  # older: every slot
        if capacity != self.capacity:
            raise ValueError(f"saved buffer has capacity {capacity}, expected {self.capacity}")
        for name, dst in self.data.tensors().items():
            if name not in state and dst.numel() == 0:  # saved before the field existed
                continue
            src = state[name][:size]
            if src.shape[1:] != dst.shape[1:] or src.shape[0] != size:
                raise ValueError(
                    f"saved buffer field {name} has shape {list(state[name].shape)}, "
                    f"expected {[size, *dst.shape[1:]]}"
                )
            dst[:size] = src
            dst[size:] = 0
        self.cursor, self.size = int(state["cursor"]), size
