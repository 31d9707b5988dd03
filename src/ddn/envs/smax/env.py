"""SMAX (JaxMARL's JAX re-implementation of SMAC) as a ddn :class:`VecEnv`.

The ``B`` battles run as one ``jax.vmap``-ed, ``jax.jit``-compiled step against JaxMARL's
scripted (heuristic) enemy, the variant JaxMARL's own baselines train on. Results reach
torch through DLPack, so on the CPU no observation is copied between the two frameworks.

JaxMARL is an optional extra (``pip install 'ddn[smax]'``). Nothing here imports jax or
jaxmarl until an ``SMAX`` is constructed, so ``import ddn`` stays fast and jax-free.

Randomness: every ``reset()`` draws one raw JAX key (two ``uint32`` words) per battle from
``self.generator``; checkpointing that torch generator is therefore enough to replay the
episodes. Per battle, ``key, k = split(key)`` gives the reset key ``k`` and then each
step's key ``k`` (``tests/test_smax.py`` rebuilds this chain for raw JaxMARL).

Differences from JaxMARL's own ``env.step``: finished battles do not auto-reset (the ddn
protocol freezes them until ``reset()``, and the final observation is kept instead of
being replaced by a fresh episode's), the time-out is reported as ``truncated`` instead
of folded into ``done``, ``won`` is explicit, and the team reward is multiplied by
``reward_scale`` (see :data:`DEFAULT_REWARD_SCALE`).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
from collections.abc import Iterator
from typing import Any

import torch

from ddn.envs.base import EnvOutput, EnvSpec, VecEnv
from ddn.envs.registry import _suggest, check_bool, check_float, check_int, register

#: The maps ddn adds on SMAX's engine (``ddn.envs.smax_units``: medivacs, a spine crawler),
#: with SMAC's episode limits, the default ``episode_limit`` there. Jax-free, like
#: :data:`SMAX_MAPS`; a test checks it against ``smax_units.UNITS_MAPS``.
UNITS_MAP_EPISODE_LIMITS: dict[str, int] = {"MMM2": 180, "2s_vs_1sc": 300}

#: Every scenario JaxMARL 0.2 ships (``jaxmarl.environments.smax.MAP_NAME_TO_SCENARIO``),
#: then ddn's own. Kept here so a typo is reported, with the valid names, even where
#: jaxmarl is absent.
SMAX_MAPS: tuple[str, ...] = (
    "3m",
    "8m",
    "25m",
    "5m_vs_6m",
    "10m_vs_11m",
    "27m_vs_30m",
    "2s3z",
    "3s5z",
    "3s_vs_5z",
    "3s5z_vs_3s6z",
    "6h_vs_8z",
    "smacv2_5_units",
    "smacv2_10_units",
    "smacv2_20_units",
    *UNITS_MAP_EPISODE_LIMITS,
)

INSTALL_HINT = "SMAX needs the optional extra: pip install 'ddn[smax]' (or pip install jaxmarl)"

#: SMAX's per-step reward is (enemy health removed / enemy max health), averaged over the
#: enemies, plus 1 on a win: a perfect episode returns about 2. SMAC's shaped reward is
#: normalised so that a perfect episode returns about 20 (``reward_scale_rate`` 20). A
#: factor of 10 puts SMAX returns on SMAC's scale, so PyMARL hyper-parameters tuned for
#: SMAC (learning rate, gradient clip, mixer init) see TD errors of the size they expect;
#: JaxMARL's own value-based baselines scale SMAX rewards by the same 10.
DEFAULT_REWARD_SCALE = 10.0

#: JaxMARL's default ``max_steps=100`` times a battle out on its 101st step: ``is_terminal``
#: compares the step counter before the step increments it. ddn's ``episode_limit`` counts
#: the steps an episode really has (the buffer's length), so the default is 101 and
#: JaxMARL gets ``max_steps = episode_limit - 1``: episodes as long as in JaxMARL's
#: baselines. (SMAC's real limits differ per map, see docs/smax.md.) ddn's own maps default
#: to SMAC's limits instead (:data:`UNITS_MAP_EPISODE_LIMITS`): they have no JaxMARL
#: baseline to match.
DEFAULT_EPISODE_LIMIT = 101


def default_episode_limit(map_name: str) -> int:
    """``episode_limit`` where the user sets none: SMAC's for ddn's maps, else 101."""
    return UNITS_MAP_EPISODE_LIMITS.get(map_name, DEFAULT_EPISODE_LIMIT)


_ATTACK_MODES = ("closest", "random")


class MissingExtraError(ImportError, ValueError):
    """jaxmarl is not installed.

    Also a ``ValueError``, so ``ddn train`` reports it as a one-line configuration error
    (with the install command) rather than a traceback.
    """


def _import_jax() -> tuple[Any, Any, Any]:
    """``(jax, jax.numpy, ddn.envs.smax_units)``, or :class:`MissingExtraError`."""
    # JAX on a GPU grabs 75% of its memory at start-up by default; torch shares that GPU.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        with _quiet_import():
            import jax
            import jax.numpy as jnp
            import jaxmarl.environments.smax  # noqa: F401  (fails first where it is absent)

            from ddn.envs import smax_units
    except ImportError as exc:
        raise MissingExtraError(f"{INSTALL_HINT} ({exc})") from exc
    return jax, jnp, smax_units


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


@functools.lru_cache(maxsize=32)
def _build(map_name: str, episode_limit: int, attack_mode: str, scale_features: bool) -> _Compiled:
    """One compiled simulator per configuration.

    Cached so that the training and test environments of a run, and repeated
    constructions in tests, share one ``jax.jit`` cache instead of recompiling.
    """
    return _Compiled(map_name, episode_limit, attack_mode, scale_features)


class _Compiled:
    """The JaxMARL environment and its vmapped, jitted reset/step over ``B`` battles.

    Every map runs on ``smax_units``' extension of JaxMARL's engine (JaxMARL's own maps
    with SMAX's six unit types, on which it computes exactly what JaxMARL computes).
    """

    def __init__(self, map_name: str, episode_limit: int, attack_mode: str, scale_features: bool):
        jax, jnp, smax_units = _import_jax()
        self.jax, self.jnp = jax, jnp
        env = smax_units.make_heuristic_env(
            map_name,
            max_steps=episode_limit - 1,  # see DEFAULT_EPISODE_LIMIT
            attack_mode=attack_mode,
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

        def pack(obs: dict, state: Any) -> tuple:
            """Agent dicts -> ``obs [N, O]``, ``state [S]``, ``avail [N, A] bool``."""
            obs_arr = jnp.stack([obs[a] for a in agents]).astype(jnp.float32)
            avail = env.get_avail_actions(state)
            avail_arr = jnp.stack([avail[a] for a in agents]).astype(jnp.bool_)
            world = obs["world_state"]
            if scale_features:
                obs_arr, world = scaled_obs(obs_arr), scaled_world(world, state.state)
            return obs_arr, world.astype(jnp.float32), avail_arr

        def reset_one(key: Any) -> tuple:
            key, k_reset = jax.random.split(key)
            obs, state = env.reset(k_reset)
            obs_arr, world, avail = pack(obs, state)
            false = jnp.zeros((), jnp.bool_)
            return (key, state, obs_arr, world, avail, false, false, false)

        def step_one(carry: tuple, actions: Any) -> tuple[tuple, Any]:
            key, state, obs_p, world_p, avail_p, term_p, trunc_p, won_p = carry
            key, k_step = jax.random.split(key)
            act = {a: actions[i] for i, a in enumerate(agents)}
            obs, new_state, rewards, _, _ = env.step_env(k_step, state, act)
            obs_arr, world, avail = pack(obs, new_state)
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
            )
            # Every ally gets the same team reward; frozen battles earn nothing.
            reward = jnp.where(running, rewards[agents[0]], 0.0).astype(jnp.float32)
            return new_carry, reward

        self.reset = jax.jit(jax.vmap(reset_one))
        self.step = jax.jit(jax.vmap(step_one))


def _to_torch(x: Any, device: torch.device) -> torch.Tensor:
    """A JAX array as a torch tensor: zero-copy via DLPack where JAX and torch share a device."""
    t = torch.from_dlpack(x)
    return t if t.device == device else t.to(device)


@register(
    "smax",
    "SMAX (JaxMARL's SMAC in JAX) vs the heuristic enemy; --map picks the scenario "
    "(needs the smax extra)",
)
class SMAX(VecEnv):
    """``num_envs`` SMAX battles of ``map_name`` against JaxMARL's heuristic enemy.

    ``obs`` are JaxMARL's unit-list observations of the allies, ``state`` is its
    ``world_state``, ``avail`` its available-action masks (a dead ally may only
    ``stop``, action 4). ``terminated`` means one side was wiped out (or has only
    medivacs left), ``won`` that the enemies were and the allies were not,
    ``truncated`` that ``episode_limit`` steps passed first (default: 101, SMAC's limit
    on ``MMM2`` and ``2s_vs_1sc``). ``reward`` is JaxMARL's team reward times
    ``reward_scale``. ``MMM2`` and ``2s_vs_1sc`` are ddn's (``ddn.envs.smax_units``).

    ``scale_features`` (default on) puts features in SMAC's ranges, as PyMARL's mixers
    expect. JaxMARL's weapon cooldowns keep falling below 0 while a unit holds fire
    (0.5 s per step: a marine's feature reads -80 after 100 idle steps), so they are
    floored at 0 in ``obs`` and ``state``. The ``world_state`` carries raw map positions
    (0-32) and cooldowns in seconds, so its positions are centred and divided by half
    the map (SMAC's [-1, 1]), its cooldowns divided by the unit's own cooldown (as the
    observations already are) and its trailing unit types by the largest type. Unscaled,
    these fed QMIX's hypernetworks inputs up to 32 and its values diverged on SMAX
    (docs/smax.md). ``scale_features=False`` gives JaxMARL's arrays unchanged.

    Returned tensors may share memory with JAX buffers: treat them as read-only.
    """

    def __init__(
        self,
        num_envs: int = 1,
        seed: int = 0,
        device: str | torch.device = "cpu",
        *,
        map_name: str = "3m",
        reward_scale: float = DEFAULT_REWARD_SCALE,
        episode_limit: int | None = None,
        attack_mode: str = "closest",
        scale_features: bool = True,
    ):
        super().__init__(num_envs, seed, device)
        if map_name not in SMAX_MAPS:
            raise ValueError(
                f"unknown SMAX map {map_name!r}.{_suggest(str(map_name), list(SMAX_MAPS))} "
                f"Valid maps: {', '.join(SMAX_MAPS)}"
            )
        if attack_mode not in _ATTACK_MODES:
            raise ValueError(
                f"parameter attack_mode must be one of {', '.join(_ATTACK_MODES)}, "
                f"got {attack_mode!r}"
            )
        self.map_name = map_name
        self.reward_scale = check_float("reward_scale", reward_scale)
        if episode_limit is None:
            episode_limit = default_episode_limit(map_name)
        self.episode_limit = check_int("episode_limit", episode_limit, 1)
        self.attack_mode = attack_mode
        self.scale_features = check_bool("scale_features", scale_features)
        self._sim = _build(map_name, self.episode_limit, attack_mode, self.scale_features)
        self.spec = self._sim.spec
        self.jaxmarl_env = self._sim.env
        #: The per-battle raw JAX keys drawn by the last ``reset()`` ([B, 2] uint32).
        self.reset_keys: Any = None
        self._carry: tuple | None = None
        self._last: EnvOutput | None = None

    @property
    def jax_state(self) -> Any:
        """The JaxMARL states of the ``B`` battles (batched pytree), for rendering and
        inspection; ``.state`` holds unit positions, health, types and teams."""
        if self._carry is None:
            raise RuntimeError("call reset() first")
        return self._carry[1]

    def _draw_keys(self) -> Any:
        words = torch.randint(
            0, 2**32, (self.num_envs, 2), generator=self.generator, device=self.device
        )
        return self._sim.jnp.asarray(words.cpu().numpy().astype("uint32"))

    def reset(self) -> EnvOutput:
        self.reset_keys = self._draw_keys()
        self._carry = self._sim.reset(self.reset_keys)
        reward = torch.zeros(self.num_envs, dtype=torch.float32, device=self.device)
        return self._output(reward)

    def step(self, actions: torch.Tensor) -> EnvOutput:
        if self._last is None or self._carry is None:
            raise RuntimeError("call reset() before step()")
        last = self._last
        self.validate_actions(actions, last.avail, ~(last.terminated | last.truncated))
        jax_actions = self._sim.jnp.asarray(actions.detach().to("cpu", torch.int32).numpy())
        self._carry, reward = self._sim.step(self._carry, jax_actions)
        reward_t = _to_torch(reward, self.device)
        if self.reward_scale != 1.0:
            reward_t = reward_t * self.reward_scale
        return self._output(reward_t)

    def _output(self, reward: torch.Tensor) -> EnvOutput:
        assert self._carry is not None
        _, _, obs, world, avail, term, trunc, won = self._carry
        dev = self.device
        self._last = EnvOutput(
            obs=_to_torch(obs, dev),
            state=_to_torch(world, dev),
            avail=_to_torch(avail, dev),
            reward=reward,
            terminated=_to_torch(term, dev),
            truncated=_to_torch(trunc, dev),
            won=_to_torch(won, dev),
        )
        return self._last
