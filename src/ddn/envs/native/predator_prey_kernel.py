"""Numba kernels of :class:`ddn.envs.native.predator_prey.PredatorPrey` and its random stream.

Why numba: the rules are sequential (predators move one at a time, then prey are resolved
one at a time), so an eager-torch step is a few hundred tiny ops, and torch's per-op
overhead alone is ~1.7 ms per batched step at ``B = 64``. Compiled loops over
``env x sub-step`` do the same work in microseconds.

Everything here works on C-contiguous numpy arrays owned by the environment object; the
env shares them zero-copy with torch (``torch.from_numpy``). Array shapes (``B`` envs,
``N`` predators, ``M`` prey, ``C = height * width`` cells, ``O = view * view * 3``):

* ``grid`` int8 ``[B, C + 1]``: :data:`EMPTY` / :data:`PREDATOR` / :data:`PREY` per cell;
  the extra cell ``C`` ("nowhere") is where removed entities are parked, always empty;
* ``pred_cell`` int64 ``[B, N]``, ``prey_cell`` int64 ``[B, M]``: flat cells
  ``row * width + col`` (``C`` once removed); ``frozen`` bool ``[B, N]``, ``alive`` bool
  ``[B, M]``, ``t`` int64 ``[B]``, ``terminated`` / ``truncated`` bool ``[B]``;
* outputs ``obs`` float32 ``[B, N, O]``, ``state`` float32 ``[B, C * 3]``, ``avail`` bool
  ``[B, N, 6]``, ``reward`` float32 ``[B]``.

The random stream is SplitMix64 (Steele, Lea & Flood 2014; passes BigCrush): a single
uint64 state in a numpy array of shape ``[1]`` that the draw kernels advance in place, so
every environment object has its own stream and saving its 8 bytes saves the stream.
Numba's own ``np.random`` state is global to the process (shared by every env object), so
it is not used.

Compilation: ``cache=True`` stores the machine code beside this file (or in numba's
user-wide cache, or in ``$NUMBA_CACHE_DIR`` when set); where no cache location is
writable the kernels are compiled in memory on first use instead, with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

# Actions, in the order of the rules (and of the reference implementation).
RIGHT, DOWN, LEFT, UP, STAY, CATCH = range(6)
N_ACTIONS = 6
#: The actions that move (RIGHT, DOWN, LEFT, UP, the first four): the width of the
#: neighbour table and the most free cells around a prey.
N_MOVES = 4
# Cell contents of the occupancy grid.
EMPTY, PREDATOR, PREY = 0, 1, 2
N_CHANNELS = 3  # predators, prey, a third entity type kept empty (reference layout)

# Result codes of the kernels that check their inputs.
OK, BAD_ACTION, BAD_NOISE = 0, 1, 2

_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def _jit(fn: Callable[..., Any]) -> Any:
    """``numba.njit`` with an on-disk cache where one is writable.

    ``error_model="numpy"``: no Python-style zero-division checks in the hot loops (every
    divisor here is the grid width, >= 1).
    """
    try:
        return numba.njit(cache=True, error_model="numpy")(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available for file ..."
        # The same text for every kernel, so that it is shown once.
        warnings.warn(
            "numba finds no writable cache directory for the Predator-Prey kernels, so "
            "every process compiles them on first use (a few seconds); set NUMBA_CACHE_DIR "
            "to a writable directory to keep the compiled code",
            RuntimeWarning,
            stacklevel=1,
        )
        return numba.njit(error_model="numpy")(fn)


# ---------------------------------------------------------------------------- randomness
def seed_state(seed: int) -> int:
    """The SplitMix64 state a seed starts from: the seed hashed once.

    Hashing spreads nearby seeds (0, 1, 2, ...) over the whole 2^64 cycle; unhashed, seed
    ``s + k * gamma`` would replay seed ``s``'s stream ``k`` draws later.
    """
    return _mix64((seed + _GAMMA) & _MASK64)


def _mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


_U_GAMMA = np.uint64(_GAMMA)
_U_MIX1 = np.uint64(_MIX1)
_U_MIX2 = np.uint64(_MIX2)
_U30, _U27, _U31, _U32, _U40 = (np.uint64(k) for k in (30, 27, 31, 32, 40))


# The helpers pass the stream position by value (a uint64 in, the advanced one out): numba
# calls that take arrays pay reference counting per call, which in these loops costs more
# than the draws themselves.
@_jit
def _next_u64(s: np.uint64) -> tuple[np.uint64, np.uint64]:
    """SplitMix64: the advanced state and 64 random bits."""
    s = s + _U_GAMMA
    z = (s ^ (s >> _U30)) * _U_MIX1
    z = (z ^ (z >> _U27)) * _U_MIX2
    return s, z ^ (z >> _U31)


@_jit
def _below(s: np.uint64, n: int) -> tuple[np.uint64, int]:
    """Uniform in ``[0, n)`` by multiply-shift of 32 random bits (bias < n / 2^32)."""
    s, z = _next_u64(s)
    return s, np.int64(((z >> _U32) * np.uint64(n)) >> _U32)


@_jit
def draw_reset_noise(rng: np.ndarray, n_cells: int, cells: np.ndarray) -> None:
    """``cells`` [B, K]: per env, K distinct uniformly random cells of ``0 .. n_cells - 1``."""
    s = rng[0]
    scratch = np.empty(n_cells, np.int64)
    for b in range(cells.shape[0]):
        for c in range(n_cells):
            scratch[c] = c
        for k in range(cells.shape[1]):  # a partial Fisher-Yates shuffle
            s, j = _below(s, n_cells - k)
            j += k
            scratch[k], scratch[j] = scratch[j], scratch[k]
            cells[b, k] = scratch[k]
    rng[0] = s


@_jit
def draw_step_noise(
    rng: np.ndarray, predator_order: np.ndarray, prey_order: np.ndarray, prey_u: np.ndarray
) -> None:
    """Per env: the predators' move order, the prey's order, one float32 in [0, 1) per prey."""
    s = rng[0]
    for b in range(predator_order.shape[0]):
        for order in (predator_order, prey_order):
            for k in range(order.shape[1]):  # Fisher-Yates, "inside-out"
                s, j = _below(s, k + 1)
                order[b, k] = order[b, j]
                order[b, j] = k
        for j in range(prey_u.shape[1]):
            s, z = _next_u64(s)
            # The top 24 bits, scaled: an exact float32 in [0, 1).
            prey_u[b, j] = np.float32((z >> _U40) * (1.0 / (1 << 24)))
    rng[0] = s


# ---------------------------------------------------------------------------- the world
# Row/column offsets of the four moves, in action order (also the prey's move order).
_MOVES = ((0, 1), (1, 0), (0, -1), (-1, 0))


def build_tables(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``row_of``, ``col_of`` [C + 1] and ``neighbours`` [C + 1, 4] (the cell each move
    leads to, -1 where it leaves the grid): lookups, so the hot loops never divide.

    Index ``C`` ("nowhere") is valid too: far from every cell (never adjacent, never in
    a window) and without neighbours.
    """
    n_cells = height * width
    cell = np.arange(n_cells)
    row, col = cell // width, cell % width
    far = -(height + width + 2)
    row_of = np.append(row, far).astype(np.int64)
    col_of = np.append(col, far).astype(np.int64)
    neighbours = np.full((n_cells + 1, N_MOVES), -1, np.int64)
    for a, (dr, dc) in enumerate(_MOVES):
        r, c = row + dr, col + dc
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        neighbours[:n_cells][inside, a] = (r * width + c)[inside]
    return row_of, col_of, neighbours


@_jit
def reset(
    cells: np.ndarray,
    grid: np.ndarray,
    pred_cell: np.ndarray,
    prey_cell: np.ndarray,
    frozen: np.ndarray,
    alive: np.ndarray,
    t: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
) -> int:
    """Place predators then prey on ``cells`` [B, N + M]; :data:`BAD_NOISE` (and nothing
    changed) if some cells are off the grid or not distinct within an env."""
    n, n_cells = pred_cell.shape[1], grid.shape[1] - 1
    taken = np.zeros(n_cells, np.bool_)
    for b in range(cells.shape[0]):
        taken[:] = False
        for k in range(cells.shape[1]):
            c = cells[b, k]
            if c < 0 or c >= n_cells or taken[c]:
                return BAD_NOISE
            taken[c] = True
    grid[:] = EMPTY
    for b in range(cells.shape[0]):
        for k in range(cells.shape[1]):
            c = cells[b, k]
            if k < n:
                grid[b, c] = PREDATOR
                pred_cell[b, k] = c
            else:
                grid[b, c] = PREY
                prey_cell[b, k - n] = c
    frozen[:] = False
    alive[:] = True
    t[:] = 0
    terminated[:] = False
    truncated[:] = False
    return OK


@_jit
def check_actions(
    actions: np.ndarray, avail: np.ndarray, terminated: np.ndarray, truncated: np.ndarray
) -> bool:
    """Whether every action is in range and, in the running envs, available.

    The same test as :meth:`ddn.envs.base.VecEnv.validate_actions`, which the env calls
    to word the error when this says no.
    """
    for b in range(actions.shape[0]):
        running = not (terminated[b] or truncated[b])
        for i in range(actions.shape[1]):
            a = actions[b, i]
            if a < 0 or a >= N_ACTIONS or (running and not avail[b, i, a]):
                return False
    return True


@_jit
def _orders_in_range(predator_order: np.ndarray, prey_order: np.ndarray) -> bool:
    """Guards memory safety against hand-made noise (the drawn one is always in range)."""
    n, m = predator_order.shape[1], prey_order.shape[1]
    for b in range(predator_order.shape[0]):
        for k in range(n):
            if predator_order[b, k] < 0 or predator_order[b, k] >= n:
                return False
        for k in range(m):
            if prey_order[b, k] < 0 or prey_order[b, k] >= m:
                return False
    return True


@_jit
def step(
    actions: np.ndarray,
    last_avail: np.ndarray,
    rng: np.ndarray,
    draw: bool,
    predator_order: np.ndarray,
    prey_order: np.ndarray,
    prey_u: np.ndarray,
    grid: np.ndarray,
    pred_cell: np.ndarray,
    prey_cell: np.ndarray,
    frozen: np.ndarray,
    alive: np.ndarray,
    t: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    row_of: np.ndarray,
    col_of: np.ndarray,
    neighbours: np.ndarray,
    capture_reward: float,
    punishment: float,
    episode_limit: int,
    view: int,
    reward: np.ndarray,
    obs: np.ndarray,
    state: np.ndarray,
    avail: np.ndarray,
) -> int:
    """One whole step: check the actions, draw the noise if ``draw``, advance every running
    env (the rules' steps 1-3), then :func:`observe`.

    ``last_avail`` is the avail the actions are checked against (:func:`check_actions`).
    With ``draw`` the orders and ``prey_u`` are filled by :func:`draw_step_noise` from
    ``rng``; otherwise they are given. Writes ``reward`` (0 in finished envs), ``obs``,
    ``state`` and ``avail``. Returns :data:`BAD_ACTION` or :data:`BAD_NOISE` (an order
    index out of range) having changed nothing, else :data:`OK`.
    """
    if not check_actions(actions, last_avail, terminated, truncated):
        return BAD_ACTION
    if draw:
        draw_step_noise(rng, predator_order, prey_order, prey_u)
    elif not _orders_in_range(predator_order, prey_order):
        return BAD_NOISE
    n, m, nowhere = pred_cell.shape[1], prey_cell.shape[1], grid.shape[1] - 1
    catching = np.empty(n, np.int64)  # predators that chose catch (usually none)
    catchers = np.empty(n, np.int64)  # those beside the prey being resolved
    free = np.empty(N_MOVES, np.int64)  # free neighbour cells of that prey
    # Branches below are written out inline: a jitted helper that takes arrays pays
    # reference counting on every call, more than these loops' work.
    for b in range(actions.shape[0]):
        reward[b] = 0.0
        if terminated[b] or truncated[b]:
            continue  # finished: frozen until reset()

        # 1. Predators move one at a time, in the drawn order; occupied cells block.
        for k in range(n):
            i = predator_order[b, k]
            a = actions[b, i]
            if frozen[b, i] or a >= STAY:
                continue
            cell = pred_cell[b, i]
            target = neighbours[cell, a]
            if target >= 0 and grid[b, target] == EMPTY:
                grid[b, cell] = EMPTY
                grid[b, target] = PREDATOR
                pred_cell[b, i] = target
        n_catching = 0
        for i in range(n):
            if not frozen[b, i] and actions[b, i] == CATCH:
                catching[n_catching] = i
                n_catching += 1

        # 2. Each live prey, in the drawn order: capture, miscapture, then a random move.
        total = 0.0  # float64, rounded once: what a plain-Python sum gives
        for k in range(m):
            j = prey_order[b, k]
            if not alive[b, j]:
                continue
            cell = prey_cell[b, j]
            # Catchers: predators that chose catch, not frozen by an earlier prey of this
            # step, 4-adjacent to the prey after the moves.
            count = 0
            for c in range(n_catching):
                i = catching[c]
                pc = pred_cell[b, i]
                adjacent = abs(row_of[pc] - row_of[cell]) + abs(col_of[pc] - col_of[cell]) == 1
                if not frozen[b, i] and adjacent:
                    catchers[count] = i
                    count += 1
            if count >= 2:
                # Captured: the prey and all its catchers leave the grid for good.
                total += capture_reward
                for c in range(count):
                    i = catchers[c]
                    frozen[b, i] = True
                    grid[b, pred_cell[b, i]] = EMPTY
                    pred_cell[b, i] = nowhere
                grid[b, cell] = EMPTY
                prey_cell[b, j] = nowhere
                alive[b, j] = False
                continue
            if count == 1:
                total -= punishment
            # Free neighbours, enumerated right, down, left, up; pick floor(u * n_free).
            # Branch-free: a cell is always written to the next slot, kept only if free.
            n_free = 0
            for a in range(N_MOVES):
                target = neighbours[cell, a]
                free[n_free] = target
                n_free += (target >= 0) & (grid[b, max(target, 0)] == EMPTY)
            if n_free > 0:  # else surrounded: stays
                target = free[int(np.float64(prey_u[b, j]) * n_free)]
                grid[b, cell] = EMPTY
                grid[b, target] = PREY
                prey_cell[b, j] = target
        reward[b] = total

        # 3. Episode end: termination wins over a simultaneous time-out.
        t[b] += 1
        any_alive, any_free = False, False
        for j in range(m):
            any_alive |= alive[b, j]
        for i in range(n):
            any_free |= not frozen[b, i]
        if not (any_alive and any_free):
            terminated[b] = True
        elif t[b] >= episode_limit:
            truncated[b] = True
    observe(
        grid,
        pred_cell,
        prey_cell,
        frozen,
        alive,
        row_of,
        col_of,
        neighbours,
        view,
        obs,
        state,
        avail,
    )
    return OK


@_jit
def observe(
    grid: np.ndarray,
    pred_cell: np.ndarray,
    prey_cell: np.ndarray,
    frozen: np.ndarray,
    alive: np.ndarray,
    row_of: np.ndarray,
    col_of: np.ndarray,
    neighbours: np.ndarray,
    view: int,
    obs: np.ndarray,
    state: np.ndarray,
    avail: np.ndarray,
) -> None:
    """Fill ``obs``, ``state`` and ``avail`` (every element) from the current positions.

    Per env, zero its rows (while they are in the L1 cache), then set the ones entity by
    entity: ``N * (N + M)`` window tests (subtractions of looked-up rows and columns)
    instead of ``N * view^2`` cell reads, with a branch-free window test.
    """
    n, m, half = pred_cell.shape[1], prey_cell.shape[1], view // 2
    uview = np.uint64(view)
    # The live entities of one env: row, column, channel.
    ent_row = np.empty(n + m, np.int64)
    ent_col = np.empty(n + m, np.int64)
    ent_channel = np.empty(n + m, np.int64)
    # One predator's view: where each entity is written, and what (1 in view, else 0).
    slot = np.empty(n + m, np.int64)
    value = np.empty(n + m, np.float32)
    for b in range(grid.shape[0]):
        obs[b] = 0.0
        state[b] = 0.0
        n_ent = 0
        for i in range(n):
            if not frozen[b, i]:
                c = pred_cell[b, i]
                state[b, c * N_CHANNELS] = 1.0
                ent_row[n_ent], ent_col[n_ent], ent_channel[n_ent] = row_of[c], col_of[c], 0
                n_ent += 1
        for j in range(m):
            if alive[b, j]:
                c = prey_cell[b, j]
                state[b, c * N_CHANNELS + 1] = 1.0
                ent_row[n_ent], ent_col[n_ent], ent_channel[n_ent] = row_of[c], col_of[c], 1
                n_ent += 1
        for i in range(n):
            if frozen[b, i]:
                # A frozen predator sees nothing and may only stay.
                for a in range(N_ACTIONS):
                    avail[b, i, a] = a == STAY
                continue
            cell = pred_cell[b, i]
            # The entity at (r, c) lands at window cell (r - row + half, c - col + half).
            # Branch-free (about one entity in four is in view, at random: a branch would
            # be mispredicted often): an entity out of view writes 0 to element 2, the
            # always-empty third channel of window cell 0. Computing all the targets
            # first, then storing, lets the compiler vectorize the first loop.
            top, left = row_of[cell] - half, col_of[cell] - half
            for e in range(n_ent):
                dr, dc = ent_row[e] - top, ent_col[e] - left
                inside = (np.uint64(dr) < uview) & (np.uint64(dc) < uview)  # 0 <= d < view
                k = (dr * view + dc) * N_CHANNELS + ent_channel[e]
                slot[e] = k if inside else 2
                value[e] = np.float32(inside)
            for e in range(n_ent):
                obs[b, i, slot[e]] = value[e]
            # Moves that stay on the grid; stay; catch beside a live prey.
            prey_next = False
            for a in range(N_MOVES):
                target = neighbours[cell, a]
                avail[b, i, a] = target >= 0
                prey_next |= (target >= 0) & (grid[b, max(target, 0)] == PREY)
            avail[b, i, STAY] = True
            avail[b, i, CATCH] = prey_next
