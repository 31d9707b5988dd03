"""SMAX's battles as one compiled JAX step: ``B`` battles, ``jax.vmap``-ed and ``jax.jit``-ed.

:class:`CompiledSMAX` builds JaxMARL's heuristic-enemy environment on ddn's extended
engine (:mod:`ddn.envs.smax.enemy`) and compiles its reset and step over a batch of
battles, with ddn's protocol rules (no auto-reset, frozen finished battles, an explicit
time-out and win) written inside the step. :class:`ddn.envs.smax.env.SMAX` drives it.

Nothing imports jax or jaxmarl until :func:`_import_jax` runs (the first
``CompiledSMAX``), so importing this module stays jax-free.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ddn.envs.base import EnvSpec
from ddn.envs.errors import MissingExtraError

INSTALL_HINT = "SMAX needs the optional extra: pip install 'ddn[smax]' (or pip install jaxmarl)"


def _import_jax() -> tuple[Any, Any, Any]:
    """``(jax, jax.numpy, ddn.envs.smax.enemy)``, or :class:`MissingExtraError`."""
    # JAX on a GPU grabs 75% of its memory at start-up by default; torch shares that GPU.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        with _quiet_import():
            import jax
            import jax.numpy as jnp
            import jaxmarl.environments.smax  # noqa: F401  (fails first where it is absent)

            from ddn.envs.smax import enemy
    except ImportError as exc:
        raise MissingExtraError(f"{INSTALL_HINT} ({exc})") from exc
    _use_compilation_cache(jax)
    return jax, jnp, enemy


CACHE_SWITCH = "DDN_JAX_CACHE"


def compilation_cache_dir() -> Path | None:
    """Where compiled SMAX steps are kept between processes, or None (the cache is off).

    XLA takes 10-20 s per map and batch size to compile a SMAX step, and every run (each
    sweep worker, each evaluation) is a new process: JAX's persistent compilation cache
    lets the second process with the same map and batch size load the step instead. JAX's
    own ``JAX_COMPILATION_CACHE_DIR`` wins when set; else ``DDN_JAX_CACHE`` names the
    folder, ``off`` (or ``0``) turns the cache off, and by default it is
    ``$XDG_CACHE_HOME/ddn/jax`` (``~/.cache/ddn/jax``).
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    chosen = os.environ.get(CACHE_SWITCH, "")
    if chosen.lower() in ("off", "0", "false", "no"):
        return None
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ddn" / "jax"


def _use_compilation_cache(jax: Any) -> None:
    """Point JAX's persistent compilation cache at :func:`compilation_cache_dir` once."""
    if jax.config.jax_compilation_cache_dir:  # set already: by JAX's variable, or by us
        return
    folder = compilation_cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: run uncached rather than fail
        return
    jax.config.update("jax_compilation_cache_dir", str(folder))


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """Silence jaxmarl's import banner and undo its stream swapping.

    jaxmarl 0.2 prints about optional submodules on import, and its mabrax module resets
    ``sys.stdout``/``sys.stderr`` to ``sys.__stdout__``/``sys.__stderr__`` (which would
    defeat ``redirect_stdout`` and silently drop a caller's capture, e.g. pytest's).
    """
    saved = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    sink = io.StringIO()
    sys.stdout = sys.__stdout__ = sink
    try:
        yield
    finally:
        sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__ = saved


class CompiledSMAX:
    """The JaxMARL environment and its vmapped, jitted reset/step over ``B`` battles.

    Every map runs on ``ddn.envs.smax.engine``'s extension of JaxMARL's engine (JaxMARL's own maps
    with SMAX's six unit types, on which it computes exactly what JaxMARL computes).
    """

    def __init__(
        self,
        map_name: str,
        episode_limit: int,
        attack_mode: str,
        scale_features: bool,
        privileged_obs: bool = False,
        sight_range: float | None = None,
        shields: bool | None = None,
    ):
        jax, jnp, enemy = _import_jax()
        self.jax, self.jnp = jax, jnp
        env = enemy.make_heuristic_env(
            map_name,
            max_steps=episode_limit - 1,  # see ddn.envs.smax.env.DEFAULT_EPISODE_LIMIT
            attack_mode=attack_mode,
            shields=shields,
        )
        self.env = env
        self.agents: list[str] = list(env.agents)
        n_allies = env.num_allies
        self.spec = EnvSpec(
            n_agents=n_allies,
            obs_dim=int(env.obs_size),
            state_dim=int(env.state_size),
            n_actions=int(env.num_ally_actions),
            episode_limit=episode_limit,
            has_win_condition=True,
            privileged_obs_dim=int(env.obs_size) if privileged_obs else 0,
        )
        agents = self.agents
        # Feature layouts (JaxMARL's): an observation is (n_units - 1) other-unit blocks,
        # then the unit's own block; the world state is one own-style block per unit,
        # then every unit's team and type.
        own_f, other_f = len(env.own_features), len(env.unit_features)
        n_units = (int(env.obs_size) - own_f) // other_f + 1
        obs_cooldowns = jnp.array(
            [k * other_f + env.unit_features.index("weapon_cooldown") for k in range(n_units - 1)]
            + [(n_units - 1) * other_f + env.own_features.index("weapon_cooldown")]
        )
        half_map = jnp.array([env.map_width, env.map_height], jnp.float32) / 2
        max_type = max(int(env.unit_type_bits) - 1, 1)

        def scaled_obs(obs_arr: Any) -> Any:
            """Cooldowns floored at 0 (see :class:`SMAX`)."""
            return obs_arr.at[:, obs_cooldowns].max(0.0)

        def scaled_world(world: Any, units_state: Any) -> Any:
            """JaxMARL's ``world_state`` in SMAC's ranges (see :class:`SMAX`)."""
            units = world[: n_units * own_f].reshape(n_units, own_f)
            xy = (units[:, 1:3] - half_map) / half_map
            xy = jnp.where(units_state.unit_alive[:, None], xy, 0.0)  # dead units stay 0
            cooldown = units[:, 3] / env.unit_type_weapon_cooldowns[units_state.unit_types]
            units = units.at[:, 1:3].set(xy).at[:, 3].set(jnp.maximum(cooldown, 0.0))
            teams_types = world[n_units * own_f :].at[n_units:].divide(max_type)
            return jnp.concatenate([units.reshape(-1), teams_types])

        def within_sight(state: Any, obs_arr: Any, sight: float) -> Any:
            """Each ally's observation with the sight test at ``sight`` for every ally
            instead of its unit type's own range: another unit's block is filled while
            both are alive and they are less than ``sight`` apart (JaxMARL's strict test);
            ``math.inf`` drops the test (CTDS's teacher observation). Offsets stay divided
            by the observer's own sight range, so a filled block is exactly the block
            JaxMARL's observation shows (beyond that range its offsets exceed 1); the unit
            order and the own block are the observation's (JaxMARL's)."""

            def block(i: Any, j: Any) -> Any:
                j_idx = jnp.where(j < i, j, j + 1)  # allies skip themselves
                dist = jnp.linalg.norm(state.unit_positions[j_idx] - state.unit_positions[i])
                seen = state.unit_alive[i] & state.unit_alive[j_idx] & (dist < sight)
                return jnp.where(seen, env._observe_features(state, i, j_idx), 0.0)

            others = jax.vmap(jax.vmap(block, in_axes=(None, 0)), in_axes=(0, None))(
                jnp.arange(n_allies), jnp.arange(n_units - 1)
            )  # [N, n_units - 1, other_f]
            own = obs_arr[:, (n_units - 1) * other_f :]
            return jnp.concatenate([others.reshape(n_allies, -1), own], axis=-1)

        def pack(obs: dict, state: Any) -> tuple:
            """Agent dicts -> ``obs [N, O]``, ``state [S]``, ``avail [N, A] bool`` and the
            privileged observation (``[N, O]``, or ``[N, 0]`` when not asked for)."""
            obs_arr = jnp.stack([obs[a] for a in agents]).astype(jnp.float32)
            avail = env.get_avail_actions(state)
            avail_arr = jnp.stack([avail[a] for a in agents]).astype(jnp.bool_)
            world = obs["world_state"]
            if sight_range is not None:  # the allies' only: the enemy's script reads its own
                obs_arr = within_sight(state.state, obs_arr, sight_range)
            if privileged_obs:
                privileged = within_sight(state.state, obs_arr, math.inf).astype(jnp.float32)
            else:
                privileged = jnp.zeros((n_allies, 0), jnp.float32)
            if scale_features:
                obs_arr, world = scaled_obs(obs_arr), scaled_world(world, state.state)
                if privileged_obs:
                    privileged = scaled_obs(privileged)
            return obs_arr, world.astype(jnp.float32), avail_arr, privileged

        def reset_one(key: Any) -> tuple:
            key, k_reset = jax.random.split(key)
            obs, state = env.reset(k_reset)
            obs_arr, world, avail, privileged = pack(obs, state)
            false = jnp.zeros((), jnp.bool_)
            return (key, state, obs_arr, world, avail, false, false, false, privileged)

        def step_one(carry: tuple, actions: Any) -> tuple[tuple, Any]:
            key, state, obs_p, world_p, avail_p, term_p, trunc_p, won_p, priv_p = carry
            key, k_step = jax.random.split(key)
            act = {a: actions[i] for i, a in enumerate(agents)}
            obs, new_state, rewards, _, _ = env.step_env(k_step, state, act)
            obs_arr, world, avail, privileged = pack(obs, new_state)
            # A side is defeated when no unit but medivacs is left (SMAC's rule; on maps
            # without medivacs: wiped out). A battle ends when one side is defeated; both
            # at once is a draw (SMAX gives no win bonus then, SMAC counts a loss), so
            # "won" needs an undefeated ally side.
            allies_dead, enemies_dead = env.defeated(new_state)
            ended = allies_dead | enemies_dead
            won = enemies_dead & ~allies_dead
            truncated = ~ended & (new_state.state.step >= episode_limit)
            running = ~(term_p | trunc_p)

            def keep(new: Any, old: Any) -> Any:
                return jnp.where(running, new, old)

            new_carry = (
                key,
                jax.tree.map(keep, new_state, state),
                keep(obs_arr, obs_p),
                keep(world, world_p),
                keep(avail, avail_p),
                keep(ended, term_p),
                keep(truncated, trunc_p),
                keep(won, won_p),
                keep(privileged, priv_p),
            )
            # Every ally gets the same team reward; frozen battles earn nothing.
            reward = jnp.where(running, rewards[agents[0]], 0.0).astype(jnp.float32)
            return new_carry, reward

        self.reset = jax.jit(jax.vmap(reset_one))
        self.step = jax.jit(jax.vmap(step_one))
