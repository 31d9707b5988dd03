"""Predator-Prey with a miscapture penalty (the paper's "stag hunt" grid), vectorized.

Rules: ``shared/spec/predator-prey.md`` (summarised in ``docs/environments.md``).
All ``B`` environments advance together as tensors. The only Python loops are over
the sequential sub-steps the rules define: predators move one at a time in a random
order, then prey are resolved one at a time in a random order. Each sub-step is a
handful of batched ops over ``B``; nothing loops over environments.

Randomness is drawn in :meth:`_reset_noise` and :meth:`_step_noise` and nowhere else,
so a plain reference implementation fed the same draws must agree step for step
(``tests/reference_predator_prey.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ddn.envs.base import EnvOutput, EnvSpec, VecEnv
from ddn.envs.registry import check_float, check_int, register

# Actions.
RIGHT, DOWN, LEFT, UP, STAY, CATCH = range(6)
N_ACTIONS = 6
# Row/column offsets of the four moves, in action order (also the prey's move order).
_DR = (0, 1, 0, -1)
_DC = (1, 0, -1, 0)
# Cell contents of the occupancy grid.
EMPTY, PREDATOR, PREY = 0, 1, 2
N_CHANNELS = 3  # predators, prey, a third entity type kept empty (reference layout)


@dataclass
class ResetNoise:
    cells: torch.Tensor  # [B, N+M] distinct flat cells: predators first, then prey


@dataclass
class StepNoise:
    predator_order: torch.Tensor  # [B, N] permutation: who moves first
    prey_order: torch.Tensor  # [B, M] permutation: which prey is resolved first
    prey_u: torch.Tensor  # [B, M] float32 in [0, 1): picks prey j's move among free cells


@register(
    "predator_prey",
    "Predator-Prey (stag hunt) with miscapture penalty; defaults are the paper's preset",
)
class PredatorPrey(VecEnv):
    """``n_agents`` predators hunt ``n_prey`` prey on a bounded ``height x width`` grid.

    Two or more predators choosing ``catch`` next to a prey capture it
    (``+capture_reward``, prey removed, catchers frozen); a lone catcher costs
    ``-punishment`` per adjacent prey. ``won`` is always ``False``: the task has no win.
    """

    def __init__(
        self,
        num_envs: int = 1,
        seed: int = 0,
        device: str | torch.device = "cpu",
        *,
        n_agents: int = 8,
        n_prey: int = 8,
        height: int = 10,
        width: int = 10,
        view: int = 5,
        capture_reward: float = 10.0,
        punishment: float = 2.0,
        episode_limit: int = 200,
    ):
        super().__init__(num_envs, seed, device)
        self.n_agents = check_int("n_agents", n_agents, 1)
        self.n_prey = check_int("n_prey", n_prey, 1)
        self.height = check_int("height", height, 1)
        self.width = check_int("width", width, 1)
        self.view = check_int("view", view, 1)
        if view % 2 == 0:
            raise ValueError(
                f"parameter view must be odd (a window centred on the agent), got {view}"
            )
        self.capture_reward = check_float("capture_reward", capture_reward)
        self.punishment = check_float("punishment", punishment)
        self.episode_limit = check_int("episode_limit", episode_limit, 1)
        n_cells = height * width
        if n_agents + n_prey > n_cells:
            raise ValueError(
                f"{n_agents} predators and {n_prey} prey do not fit on a {height}x{width} grid; "
                "enlarge height/width or use fewer entities"
            )
        self.spec = EnvSpec(
            n_agents=n_agents,
            obs_dim=view * view * N_CHANNELS,
            state_dim=n_cells * N_CHANNELS,
            n_actions=N_ACTIONS,
            episode_limit=episode_limit,
            has_win_condition=False,
        )
        b, dev = num_envs, self.device
        self._n_cells = n_cells
        # Cell index n_cells is "nowhere": removed entities are parked there, so that
        # live entities always hold distinct cells and scatters never collide.
        self.nowhere = n_cells
        self._only_stay = torch.zeros(N_ACTIONS, dtype=torch.bool, device=dev)
        self._only_stay[STAY] = True
        half = view // 2
        self._half = half
        offs = torch.arange(view, device=dev) - half
        pw = width + 2 * half
        # Flat offsets of the view window inside the zero-padded grid, row-major.
        self._window = (offs[:, None] * pw + offs[None, :]).reshape(-1)
        self._padded_width = pw
        self._build_tables()
        # State tensors (filled by reset()).
        self.grid = torch.zeros(b, n_cells + 1, dtype=torch.int8, device=dev)
        self.predator_cell = torch.zeros(b, n_agents, dtype=torch.long, device=dev)
        self.prey_cell = torch.zeros(b, n_prey, dtype=torch.long, device=dev)
        self.frozen = torch.zeros(b, n_agents, dtype=torch.bool, device=dev)
        self.prey_alive = torch.zeros(b, n_prey, dtype=torch.bool, device=dev)
        self.t = torch.zeros(b, dtype=torch.long, device=dev)
        self._terminated = torch.ones(b, dtype=torch.bool, device=dev)
        self._truncated = torch.zeros(b, dtype=torch.bool, device=dev)
        self._avail: torch.Tensor | None = None
        self._last: EnvOutput | None = None

    def _build_tables(self) -> None:
        """Lookup tables over the H*W cells plus "nowhere" (index H*W)."""
        h, w, dev = self.height, self.width, self.device
        slots = h * w + 1
        self._n_slots = slots
        cell = torch.arange(slots, device=dev)
        row, col = cell // w, cell % w
        on_grid = cell < h * w

        def shifted(dr: int, dc: int) -> torch.Tensor:
            """Cell reached by (dr, dc), or the cell itself where that leaves the grid."""
            r, c = row + dr, col + dc
            inside = on_grid & (r >= 0) & (r < h) & (c >= 0) & (c < w)
            return torch.where(inside, r * w + c, cell)

        moves = [shifted(dr, dc) for dr, dc in zip(_DR, _DC, strict=True)]
        self._neighbours = torch.stack(moves, dim=1)  # [slots, 4], in move order
        self._move = torch.stack([*moves, cell, cell], dim=1).reshape(-1)  # [slots * 6]
        dist = (row[:, None] - row[None, :]).abs() + (col[:, None] - col[None, :]).abs()
        adjacent = (dist == 1) & on_grid[:, None] & on_grid[None, :]
        self._adjacent = adjacent.reshape(-1)  # [slots * slots]
        b = self.num_envs
        self._base = torch.arange(b, device=dev) * slots
        self._agent_base = torch.arange(b, device=dev) * self.n_agents
        self._prey_base = torch.arange(b, device=dev) * self.n_prey

    # ------------------------------------------------------------------ randomness
    def _reset_noise(self) -> ResetNoise:
        b, g = self.num_envs, self.generator
        perm = torch.rand(b, self._n_cells, generator=g, device=self.device).argsort(dim=1)
        return ResetNoise(cells=perm[:, : self.n_agents + self.n_prey])

    def _step_noise(self) -> StepNoise:
        b, g, dev = self.num_envs, self.generator, self.device
        return StepNoise(
            predator_order=torch.rand(b, self.n_agents, generator=g, device=dev).argsort(dim=1),
            prey_order=torch.rand(b, self.n_prey, generator=g, device=dev).argsort(dim=1),
            prey_u=torch.rand(b, self.n_prey, generator=g, device=dev),
        )

    # ------------------------------------------------------------------ protocol
    def reset(self) -> EnvOutput:
        noise = self._reset_noise()
        n = self.n_agents
        self.predator_cell = noise.cells[:, :n].clone()
        self.prey_cell = noise.cells[:, n:].clone()
        self.grid.zero_()
        self.grid.scatter_(1, self.predator_cell, PREDATOR)
        self.grid.scatter_(1, self.prey_cell, PREY)
        self.frozen.zero_()
        self.prey_alive.fill_(True)
        self.t.zero_()
        self._terminated.zero_()
        self._truncated.zero_()
        zeros = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        reward = torch.zeros(self.num_envs, dtype=torch.float32, device=self.device)
        return self._output(reward, zeros)

    def step(self, actions: torch.Tensor) -> EnvOutput:
        if self._last is None:
            raise RuntimeError("call reset() before step()")
        running = ~(self._terminated | self._truncated)
        self.validate_actions(actions, self._avail, running)
        noise = self._step_noise()
        # Every lookup below is a 1-D gather on flat views with precomputed tables
        # (fewest torch calls per sub-step: this loop is the env's hot path).
        g = self.grid.view(-1)
        base = self._base  # [B] offset of each env's cells in g
        # Frozen predators and finished environments do nothing.
        act = torch.where(running[:, None] & ~self.frozen, actions, STAY).view(-1)
        pred = self.predator_cell.view(-1)

        # 1. Predators move one at a time, in a random order; occupied cells block.
        flat_order = noise.predator_order + self._agent_base[:, None]  # [B, N] into pred
        for k in range(self.n_agents):
            i = flat_order[:, k]
            cell = pred[i]
            target = self._move[cell * N_ACTIONS + act[i]]
            at_cell, at_target = base + cell, base + target
            seen = g[at_target]
            moving = (seen == EMPTY) & (target != cell)
            g[at_cell] = torch.where(moving, EMPTY, g[at_cell])
            g[at_target] = torch.where(moving, PREDATOR, seen)
            pred[i] = torch.where(moving, target, cell)

        # 2. Each live prey, in a random order: capture, miscapture or a random move.
        reward = torch.zeros(self.num_envs, dtype=torch.float32, device=self.device)
        catching = (act == CATCH).view(self.num_envs, -1)  # frozen ones already "stay"
        at_pred = base[:, None] + self.predator_cell  # [B, N]
        prey = self.prey_cell.view(-1)
        alive_flat = self.prey_alive.view(-1)
        flat_order = noise.prey_order + self._prey_base[:, None]
        u = noise.prey_u.double().view(-1)
        for k in range(self.n_prey):
            j = flat_order[:, k]
            cell = prey[j]
            alive = alive_flat[j] & running
            # Predators 4-adjacent to this prey (post-move positions).
            adjacent = self._adjacent[self.predator_cell * self._n_slots + cell[:, None]]
            catchers = catching & adjacent
            count = catchers.sum(dim=1)
            captured = alive & (count >= 2)
            missed = alive & (count == 1)
            reward += captured * self.capture_reward - missed * self.punishment
            # Captured: the prey and its catchers leave the grid for good.
            newly_frozen = catchers & captured[:, None]
            catching &= ~newly_frozen
            self.frozen |= newly_frozen
            g[at_pred] = torch.where(newly_frozen, EMPTY, g[at_pred])
            self.predator_cell.masked_fill_(newly_frozen, self.nowhere)
            at_pred = base[:, None] + self.predator_cell
            # Survivors move to a uniformly chosen free neighbour cell, if any
            # (off-grid neighbours map to the prey's own cell, which is never free).
            nbrs = self._neighbours[cell]  # [B, 4]
            free = g[base[:, None] + nbrs] == EMPTY
            n_free = free.sum(dim=1)
            # float64 so that floor(u * n) is exact and matches a plain-Python reference.
            pick = (u[j] * n_free).long()
            chosen = (free & (free.cumsum(dim=1) == pick[:, None] + 1)).long().argmax(dim=1)
            target = nbrs.gather(1, chosen[:, None]).squeeze(1)
            moving = alive & ~captured & (n_free > 0)
            at_cell, at_target = base + cell, base + target
            g[at_cell] = torch.where(moving | captured, EMPTY, g[at_cell])
            g[at_target] = torch.where(moving, PREY, g[at_target])
            prey[j] = torch.where(captured, self.nowhere, torch.where(moving, target, cell))
            alive_flat[j] = alive_flat[j] & ~captured

        # 3. Episode ends.
        self.t += running.long()
        ended = ~self.prey_alive.any(dim=1) | self.frozen.all(dim=1)
        terminated = running & ended
        truncated = running & ~ended & (self.t >= self.episode_limit)
        self._terminated |= terminated
        self._truncated |= truncated
        return self._output(reward, torch.zeros_like(running))

    # ------------------------------------------------------------------ views
    def _output(self, reward: torch.Tensor, won: torch.Tensor) -> EnvOutput:
        b, n, hw = self.num_envs, self.n_agents, self._n_cells
        h, w, half, pw = self.height, self.width, self._half, self._padded_width
        cells = self.grid[:, :hw]
        planes = torch.stack(
            (cells == PREDATOR, cells == PREY, torch.zeros_like(cells, dtype=torch.bool)), dim=-1
        ).float()  # [B, H*W, 3]
        state = planes.reshape(b, hw * N_CHANNELS)
        padded = torch.nn.functional.pad(
            planes.view(b, h, w, N_CHANNELS), (0, 0, half, half, half, half)
        ).view(b, -1, N_CHANNELS)
        live_cell = torch.where(self.frozen, 0, self.predator_cell)
        row, col = live_cell // w, live_cell % w
        centre = (row + half) * pw + (col + half)  # [B, N] in padded coordinates
        idx = (centre[:, :, None] + self._window).view(b, -1, 1).expand(-1, -1, N_CHANNELS)
        obs = padded.gather(1, idx).view(b, n, -1) * (~self.frozen)[:, :, None]
        self._avail = self._available_actions(live_cell)
        self._last = EnvOutput(
            obs=obs,
            state=state,
            avail=self._avail,
            reward=reward,
            terminated=self._terminated.clone(),
            truncated=self._truncated.clone(),
            won=won,
        )
        return self._last

    def _available_actions(self, live_cell: torch.Tensor) -> torch.Tensor:
        """[B, N, 6] from the predators' cells (frozen ones given any on-grid cell)."""
        nbrs = self._neighbours[live_cell]  # [B, N, 4]; off-grid moves map to the cell
        inside = nbrs != live_cell[..., None]
        seen = self.grid.view(-1)[self._base[:, None, None] + nbrs]
        prey_next = ((seen == PREY) & inside).any(dim=-1, keepdim=True)
        avail = torch.cat((inside, torch.ones_like(prey_next), prey_next), dim=-1)
        # A frozen predator may only stay.
        return torch.where(self.frozen[..., None], self._only_stay, avail)
