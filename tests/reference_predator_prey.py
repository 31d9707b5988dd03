"""A plain, loop-based reference of ONE Predator-Prey environment, written from the spec.

``shared/spec/predator-prey.md`` gives the rules. This file uses only Python ints, floats
and lists, one environment at a time, so that it reads like the rules themselves. It
consumes exactly the random draws the vectorized ``ddn.envs.native.predator_prey.PredatorPrey``
makes (``ResetNoise`` / ``StepNoise``), which lets the tests compare the two step for step.

Positions are ``(row, col)`` tuples, row 0 at the top; a frozen predator or a captured
prey has position ``None`` (it is off the grid for good).
"""

from __future__ import annotations

RIGHT, DOWN, LEFT, UP, STAY, CATCH = range(6)
N_ACTIONS = 6
# (d_row, d_col) of the four moves, in action order; prey enumerate neighbours the same way.
MOVES = ((0, 1), (1, 0), (0, -1), (-1, 0))
N_CHANNELS = 3  # predator, prey, a third entity type that never appears


class RefPredatorPrey:
    def __init__(
        self,
        n_agents: int = 8,
        n_prey: int = 8,
        height: int = 10,
        width: int = 10,
        view: int = 5,
        capture_reward: float = 10.0,
        punishment: float = 2.0,
        episode_limit: int = 200,
    ):
        self.n_agents = n_agents
        self.n_prey = n_prey
        self.height = height
        self.width = width
        self.view = view
        self.capture_reward = capture_reward
        self.punishment = punishment
        self.episode_limit = episode_limit
        self.predators: list[tuple[int, int] | None] = []
        self.prey: list[tuple[int, int] | None] = []
        self.t = 0
        self.terminated = False
        self.truncated = False

    # ---------------------------------------------------------------- helpers
    def inside(self, row: int, col: int) -> bool:
        return 0 <= row < self.height and 0 <= col < self.width

    def has_predator(self, row: int, col: int) -> bool:
        return (row, col) in self.predators

    def has_prey(self, row: int, col: int) -> bool:
        return (row, col) in self.prey

    def is_free(self, row: int, col: int) -> bool:
        return (
            self.inside(row, col)
            and not self.has_predator(row, col)
            and not self.has_prey(row, col)
        )

    # ---------------------------------------------------------------- episode
    def reset(self, cells: list[int]) -> None:
        """``cells``: flat cells (row * width + col), predators first, then prey."""
        assert len(cells) == self.n_agents + self.n_prey
        assert len(set(cells)) == len(cells)
        positions = [divmod(c, self.width) for c in cells]
        self.predators = list(positions[: self.n_agents])
        self.prey = list(positions[self.n_agents :])
        self.t = 0
        self.terminated = False
        self.truncated = False

    def step(
        self,
        actions: list[int],
        predator_order: list[int],
        prey_order: list[int],
        prey_u: list[float],
    ) -> tuple[float, bool, bool]:
        """One step; returns ``(reward, terminated, truncated)``.

        A finished episode stays as it is: reward 0, flags kept, actions ignored.
        """
        if self.terminated or self.truncated:
            return 0.0, self.terminated, self.truncated

        # 1. Predators move one at a time; walls, predators and prey block.
        for i in predator_order:
            pos = self.predators[i]
            if pos is None:
                continue  # frozen
            a = actions[i]
            if a < STAY:
                d_row, d_col = MOVES[a]
                row, col = pos[0] + d_row, pos[1] + d_col
                if self.is_free(row, col):
                    self.predators[i] = (row, col)

        # 2. Prey, one at a time: capture, miscapture, then a random move if still alive.
        reward = 0.0
        for j in prey_order:
            pos = self.prey[j]
            if pos is None:
                continue  # captured earlier
            row, col = pos
            catchers = []
            for i in range(self.n_agents):
                p = self.predators[i]
                if p is None or actions[i] != CATCH:
                    continue
                if abs(p[0] - row) + abs(p[1] - col) == 1:
                    catchers.append(i)
            if len(catchers) >= 2:
                reward += self.capture_reward
                self.prey[j] = None
                for i in catchers:
                    self.predators[i] = None
                continue
            if len(catchers) == 1:
                reward -= self.punishment
            free = []
            for d_row, d_col in MOVES:
                if self.is_free(row + d_row, col + d_col):
                    free.append((row + d_row, col + d_col))
            if free:
                k = int(float(prey_u[j]) * len(free))
                self.prey[j] = free[k]

        # 3. End of the episode.
        self.t += 1
        if all(p is None for p in self.prey) or all(p is None for p in self.predators):
            self.terminated = True
        elif self.t >= self.episode_limit:
            self.truncated = True
        return reward, self.terminated, self.truncated

    # ---------------------------------------------------------------- views
    def cell_channels(self, row: int, col: int) -> list[float]:
        """The 3 channel values of one cell (all zero outside the grid)."""
        if not self.inside(row, col):
            return [0.0, 0.0, 0.0]
        return [
            1.0 if self.has_predator(row, col) else 0.0,
            1.0 if self.has_prey(row, col) else 0.0,
            0.0,
        ]

    def obs(self) -> list[list[float]]:
        half = self.view // 2
        out = []
        for pos in self.predators:
            if pos is None:
                out.append([0.0] * (self.view * self.view * N_CHANNELS))
                continue
            vec: list[float] = []
            for d_row in range(-half, half + 1):
                for d_col in range(-half, half + 1):
                    vec.extend(self.cell_channels(pos[0] + d_row, pos[1] + d_col))
            out.append(vec)
        return out

    def state(self) -> list[float]:
        vec: list[float] = []
        for row in range(self.height):
            for col in range(self.width):
                vec.extend(self.cell_channels(row, col))
        return vec

    def avail(self) -> list[list[bool]]:
        out = []
        for pos in self.predators:
            mask = [False] * N_ACTIONS
            mask[STAY] = True
            if pos is not None:
                for a, (d_row, d_col) in enumerate(MOVES):
                    row, col = pos[0] + d_row, pos[1] + d_col
                    if self.inside(row, col):
                        mask[a] = True
                        if self.has_prey(row, col):
                            mask[CATCH] = True
            out.append(mask)
        return out
