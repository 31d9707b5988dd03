"""Predator-Prey with a miscapture penalty (the paper's "stag hunt" grid), vectorized.

Rules: ``shared/spec/predator-prey.md`` (summarised in ``docs/environments.md``).
All ``B`` environments advance together in one compiled call per step: the sequential
sub-steps the rules define (predators move one at a time in a random order, then prey
are resolved one at a time in a random order) are plain loops compiled with numba, in
``ddn.envs.native.predator_prey_kernel``. State lives in numpy arrays shared zero-copy with
torch tensors (``env.grid``, ``env.predator_cell``, ...), so both views stay in sync.

Randomness comes from the env's own :class:`KernelGenerator` through two seams,
:meth:`_reset_noise` and :meth:`_step_noise`, so a plain reference implementation fed
the same draws must agree step for step (``tests/reference_predator_prey.py``). While
``_step_noise`` is not replaced, the step kernel makes its very draws itself (one call
per step instead of two); tests replace it to record or force the draws.

Outputs are fresh arrays per call (see :class:`PredatorPrey`), written by the kernel and
wrapped zero-copy as tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import torch

from ddn.envs.base import EnvOutput, EnvSpec, VecEnv
from ddn.envs.native import predator_prey_kernel as kernel
from ddn.envs.native.predator_prey_kernel import (
    CATCH,
    DOWN,
    EMPTY,
    LEFT,
    N_ACTIONS,
    N_CHANNELS,
    PREDATOR,
    PREY,
    RIGHT,
    STAY,
    UP,
)
from ddn.envs.registry import check_bool, check_float, check_int, register

__all__ = [
    "CATCH",
    "DOWN",
    "EMPTY",
    "LEFT",
    "N_ACTIONS",
    "N_CHANNELS",
    "PREDATOR",
    "PREY",
    "RIGHT",
    "STAY",
    "UP",
    "KernelGenerator",
    "PredatorPrey",
    "ResetNoise",
    "StepNoise",
]


@dataclass
class ResetNoise:
    cells: np.ndarray  # [B, N+M] int64 distinct flat cells: predators first, then prey


@dataclass
class StepNoise:
    predator_order: np.ndarray  # [B, N] int64 permutation: who moves first
    prey_order: np.ndarray  # [B, M] int64 permutation: which prey is resolved first
    prey_u: np.ndarray  # [B, M] float32 in [0, 1): picks prey j's move among free cells


class KernelGenerator:
    """The env's random stream (SplitMix64, advanced by the numba draw kernels).

    It has the checkpoint surface of :class:`torch.Generator` -- ``manual_seed``,
    ``initial_seed``, ``get_state`` (a uint8 tensor) and ``set_state`` -- so that whoever
    saves ``env.generator.get_state()`` (``ddn.experiment``'s checkpoints) and restores it
    replays the env's episodes exactly. It is not a torch generator: torch's samplers do
    not accept it. Its whole state is the 8 bytes of :attr:`state`.
    """

    def __init__(self, seed: int = 0):
        self.state = np.zeros(1, dtype=np.uint64)  # advanced in place by the kernels
        self._seed = 0
        self.manual_seed(seed)

    def manual_seed(self, seed: int) -> KernelGenerator:
        self._seed = int(seed)
        self.state[0] = kernel.seed_state(self._seed & ((1 << 64) - 1))
        return self

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> torch.Tensor:
        """A copy of the stream position, as 8 bytes (uint8)."""
        return torch.from_numpy(self.state.copy().view(np.uint8))

    def set_state(self, new_state: torch.Tensor) -> None:
        if (
            not isinstance(new_state, torch.Tensor)
            or new_state.dtype != torch.uint8
            or new_state.numel() != self.state.nbytes
        ):
            got = (
                f"{new_state.dtype} tensor of {new_state.numel()} elements"
                if isinstance(new_state, torch.Tensor)
                else type(new_state).__name__
            )
            raise ValueError(
                f"a Predator-Prey generator state is a uint8 tensor of {self.state.nbytes} "
                f"bytes (from KernelGenerator.get_state()), got a {got}; a torch.Generator "
                "state (e.g. a checkpoint of an older ddn version) cannot be restored"
            )
        self.state[:] = new_state.detach().cpu().contiguous().numpy().view(np.uint64)


def score_range(params: Mapping[str, Any]) -> tuple[float, float, str]:
    """0 to every prey captured. Not the lowest return reached: miscaptures make early
    returns negative, and a team that only learns to stop trying (return 0, as QMIX does
    under the paper's penalty) would then score best."""
    best = params["n_prey"] * params["capture_reward"]
    return 0.0, float(best), f"0 (no capture) to {best:g} (every prey captured)"


@register(
    "predator_prey",
    "Predator-Prey (stag hunt) with miscapture penalty; defaults are the paper's preset",
    score_range,
)
class PredatorPrey(VecEnv):
    """``n_agents`` predators hunt ``n_prey`` prey on a bounded ``height x width`` grid.

    Two or more predators choosing ``catch`` next to a prey capture it
    (``+capture_reward``, prey removed, catchers frozen); a lone catcher costs
    ``-punishment`` per adjacent prey. ``won`` is always ``False``: the task has no win.

    Every :class:`EnvOutput` holds fresh tensors that the env never writes again, so a
    caller may keep ``out.obs`` etc. across steps (allocating them costs far less than
    copying persistent buffers would). The next actions are checked against the last
    ``out.avail`` itself: do not modify it in place. The step runs on the CPU whatever
    ``device`` is; on another device the outputs are copied there (and actions are
    brought back), while the state tensors (``grid``, ``predator_cell``, ``prey_cell``,
    ``frozen``, ``prey_alive``, ``t``) stay on the CPU. ``generator`` is a
    :class:`KernelGenerator`, not a ``torch.Generator``.
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
        privileged_obs: bool = False,
    ):
        super().__init__(num_envs, seed, device)
        self.generator = KernelGenerator(seed)  # replaces the base class's torch.Generator
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
        check_bool("privileged_obs", privileged_obs)
        # Unlimited sight: the smallest odd window that covers the whole grid from any cell.
        self.full_view = 2 * max(height, width) - 1 if privileged_obs else 0
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
            privileged_obs_dim=self.full_view**2 * N_CHANNELS,
        )
        b, n, m = num_envs, n_agents, n_prey
        self._n_cells = n_cells
        # Cell index n_cells is "nowhere": removed entities are parked there.
        self.nowhere = n_cells
        self._on_cpu = self.device.type == "cpu"
        self._row_of, self._col_of, self._neighbours = kernel.build_tables(height, width)
        # The state, as numpy arrays for the kernels and torch views of the same memory
        # for inspection (and for tests that place entities by hand).
        self._grid = np.zeros((b, n_cells + 1), np.int8)
        self._pred_cell = np.zeros((b, n), np.int64)
        self._prey_cell = np.zeros((b, m), np.int64)
        self._frozen = np.zeros((b, n), np.bool_)
        self._alive = np.zeros((b, m), np.bool_)
        self._t = np.zeros(b, np.int64)
        self._terminated = np.ones(b, np.bool_)
        self._truncated = np.zeros(b, np.bool_)
        self.grid = torch.from_numpy(self._grid)
        self.predator_cell = torch.from_numpy(self._pred_cell)
        self.prey_cell = torch.from_numpy(self._prey_cell)
        self.frozen = torch.from_numpy(self._frozen)
        self.prey_alive = torch.from_numpy(self._alive)
        self.t = torch.from_numpy(self._t)
        # avail of the latest output (what the next actions are checked against); None
        # until the first reset().
        self._avail: np.ndarray | None = None
        # The step kernel's own draws (see _draws_in_kernel), overwritten every step.
        self._noise = StepNoise(
            predator_order=np.zeros((b, n), np.int64),
            prey_order=np.zeros((b, m), np.int64),
            prey_u=np.zeros((b, m), np.float32),
        )

    # ------------------------------------------------------------------ randomness
    def _reset_noise(self) -> ResetNoise:
        cells = np.empty((self.num_envs, self.n_agents + self.n_prey), np.int64)
        kernel.draw_reset_noise(self.generator.state, self._n_cells, cells)
        return ResetNoise(cells=cells)

    def _step_noise(self) -> StepNoise:
        b, n, m = self.num_envs, self.n_agents, self.n_prey
        noise = StepNoise(
            predator_order=np.empty((b, n), np.int64),
            prey_order=np.empty((b, m), np.int64),
            prey_u=np.empty((b, m), np.float32),
        )
        kernel.draw_step_noise(
            self.generator.state, noise.predator_order, noise.prey_order, noise.prey_u
        )
        return noise

    def _draws_in_kernel(self) -> bool:
        """Whether :meth:`_step_noise` is this class's own (not replaced on the instance
        or in a subclass): the step kernel then makes the very same draws itself, from the
        same generator, sparing a call and three allocations per step."""
        return getattr(self._step_noise, "__func__", None) is PredatorPrey._step_noise

    def _as_kernel_array(self, name: str, x: object, dtype: type, shape: tuple) -> np.ndarray:
        """Noise as the kernels take it (C-contiguous, exact dtype); a no-op for drawn noise.

        Hand-made noise (tests) may be any array-like.
        """
        arr = np.ascontiguousarray(x, dtype=dtype)
        if arr.shape != shape:
            raise ValueError(f"noise {name} must have shape {list(shape)}, got {list(arr.shape)}")
        return arr

    # ------------------------------------------------------------------ protocol
    def reset(self) -> EnvOutput:
        noise = self._reset_noise()
        shape = (self.num_envs, self.n_agents + self.n_prey)
        cells = self._as_kernel_array("cells", noise.cells, np.int64, shape)
        code = kernel.reset(
            cells,
            self._grid,
            self._pred_cell,
            self._prey_cell,
            self._frozen,
            self._alive,
            self._t,
            self._terminated,
            self._truncated,
        )
        if code != kernel.OK:
            raise ValueError(f"reset noise: cells must be distinct and in [0, {self._n_cells})")
        b = self.num_envs
        return self._output(torch.zeros(b), torch.zeros(b, dtype=torch.bool))

    def step(self, actions: torch.Tensor) -> EnvOutput:
        if self._avail is None:
            raise RuntimeError("call reset() before step()")
        b, n, m = self.num_envs, self.n_agents, self.n_prey
        # Cheap checks here, the per-element ones in the kernel; any failure is worded by
        # the protocol's validate_actions.
        if not (
            isinstance(actions, torch.Tensor)
            and actions.dtype == torch.int64
            and actions.shape == (b, n)
            and actions.device == self.device
        ):
            self._raise_bad_actions(actions)
        acts = actions.cpu().contiguous().numpy()
        draw = self._draws_in_kernel()
        if draw:
            noise = self._noise  # the kernel draws into these, after checking the actions
        else:
            # Check first here too, so that a rejected step draws nothing.
            if not kernel.check_actions(acts, self._avail, self._terminated, self._truncated):
                self._raise_bad_actions(actions)
            given = self._step_noise()
            noise = StepNoise(
                self._as_kernel_array("predator_order", given.predator_order, np.int64, (b, n)),
                self._as_kernel_array("prey_order", given.prey_order, np.int64, (b, m)),
                self._as_kernel_array("prey_u", given.prey_u, np.float32, (b, m)),
            )
        reward = np.empty(b, np.float32)
        obs, state, avail = self._fresh_views()
        code = kernel.step(
            acts,
            self._avail,
            self.generator.state,
            draw,
            noise.predator_order,
            noise.prey_order,
            noise.prey_u,
            self._grid,
            self._pred_cell,
            self._prey_cell,
            self._frozen,
            self._alive,
            self._t,
            self._terminated,
            self._truncated,
            self._row_of,
            self._col_of,
            self._neighbours,
            self.capture_reward,
            self.punishment,
            self.episode_limit,
            self.view,
            reward,
            obs,
            state,
            avail,
        )
        if code == kernel.BAD_ACTION:
            self._raise_bad_actions(actions)
        if code == kernel.BAD_NOISE:
            raise ValueError("step noise: predator_order / prey_order index out of range")
        won = torch.zeros(b, dtype=torch.bool)
        return self._pack(obs, state, avail, torch.from_numpy(reward), won)

    def _raise_bad_actions(self, actions: object) -> NoReturn:
        """Let the protocol's checks word the error (they find what the fast path found)."""
        running = torch.from_numpy(~(self._terminated | self._truncated)).to(self.device)
        avail = torch.from_numpy(self._avail).to(self.device)
        self.validate_actions(actions, avail, running)  # type: ignore[arg-type]
        raise AssertionError("the kernel rejected actions that validate_actions accepts")

    # ------------------------------------------------------------------ views
    def _fresh_views(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """New obs, state and avail arrays (callers may keep what the env returns)."""
        b, n = self.num_envs, self.n_agents
        return (
            np.empty((b, n, self.spec.obs_dim), np.float32),
            np.empty((b, self.spec.state_dim), np.float32),
            np.empty((b, n, N_ACTIONS), np.bool_),
        )

    def _output(self, reward: torch.Tensor, won: torch.Tensor) -> EnvOutput:
        """Observe the current positions (after reset(), or after a test placed entities)."""
        obs, state, avail = self._fresh_views()
        kernel.observe(
            self._grid,
            self._pred_cell,
            self._prey_cell,
            self._frozen,
            self._alive,
            self._row_of,
            self._col_of,
            self._neighbours,
            self.view,
            obs,
            state,
            avail,
        )
        return self._pack(obs, state, avail, reward, won)

    def _pack(
        self,
        obs: np.ndarray,
        state: np.ndarray,
        avail: np.ndarray,
        reward: torch.Tensor,
        won: torch.Tensor,
    ) -> EnvOutput:
        """Wrap fresh arrays as the step's output; ``avail`` is also what the next actions
        are checked against."""
        self._avail = avail
        privileged = None
        if self.full_view:  # the same encoder, every cell in sight
            privileged = np.empty(
                (self.num_envs, self.n_agents, self.spec.privileged_obs_dim), np.float32
            )
            kernel.observe(
                self._grid, self._pred_cell, self._prey_cell, self._frozen, self._alive,
                self._row_of, self._col_of, self._neighbours, self.full_view, privileged,
                np.empty_like(state), np.empty_like(avail),
            )  # fmt: skip
        out = EnvOutput(
            obs=torch.from_numpy(obs),
            state=torch.from_numpy(state),
            avail=torch.from_numpy(avail),
            reward=reward,
            terminated=torch.from_numpy(self._terminated.copy()),
            truncated=torch.from_numpy(self._truncated.copy()),
            won=won,
            privileged_obs=None if privileged is None else torch.from_numpy(privileged),
        )
        if not self._on_cpu:
            out = EnvOutput(
                **{k: None if v is None else v.to(self.device) for k, v in vars(out).items()}
            )
        return out
