"""SMAX (JaxMARL's JAX re-implementation of SMAC) as a ddn :class:`VecEnv`.

The ``B`` battles run as one ``jax.vmap``-ed, ``jax.jit``-compiled step against JaxMARL's
scripted (heuristic) enemy, the variant JaxMARL's own baselines train on. Results reach
torch through DLPack, so on the CPU no observation is copied between the two frameworks.

JaxMARL is an optional extra (``pip install 'ddn[smax]'``). Nothing here imports jax or
jaxmarl until an ``SMAX`` is constructed, so ``import ddn`` stays fast and jax-free. The
compiled step lives in :mod:`ddn.envs.smax.compiled`, the engine it runs on (JaxMARL's
plus medivacs and a spine crawler) in :mod:`ddn.envs.smax.engine`.

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

import functools
from typing import Any

import torch

from ddn.envs.base import EnvOutput, VecEnv
from ddn.envs.registry import check_bool, check_float, check_int, register
from ddn.envs.smax.compiled import CompiledSMAX
from ddn.suggest import suggest

#: The maps ddn adds on SMAX's engine (``ddn.envs.smax.units``: medivacs, a spine crawler),
#: with SMAC's episode limits, the default ``episode_limit`` there. Jax-free, like
#: :data:`SMAX_MAPS`; a test checks it against ``ddn.envs.smax.units.UNITS_MAPS``.
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

#: A raw JAX PRNG key is two ``uint32`` words; each is drawn uniformly below this bound.
_KEY_WORD_BOUND = 2**32


@functools.lru_cache(maxsize=32)
def _build(
    map_name: str,
    episode_limit: int,
    attack_mode: str,
    scale_features: bool,
    privileged_obs: bool,
    sight_range: float | None,
    shields: bool | None,
) -> CompiledSMAX:
    """One compiled simulator per configuration.

    Cached so that the training and test environments of a run, and repeated
    constructions in tests, share one ``jax.jit`` cache instead of recompiling.
    """
    return CompiledSMAX(
        map_name, episode_limit, attack_mode, scale_features, privileged_obs, sight_range, shields
    )


def check_sight_range(value: Any) -> float | None:
    """``sight_range``: ``None`` (each unit type's own) or a number >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(
            "parameter sight_range must be a number >= 0 (or null for each unit type's own "
            f"sight range), got {value!r}"
        )
    return float(value)


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
    ``reward_scale``. ``MMM2`` and ``2s_vs_1sc`` are ddn's (``ddn.envs.smax.units``).

    ``scale_features`` (default on) puts features in SMAC's ranges, as PyMARL's mixers
    expect. JaxMARL's weapon cooldowns keep falling below 0 while a unit holds fire
    (0.5 s per step: a marine's feature reads -80 after 100 idle steps), so they are
    floored at 0 in ``obs`` and ``state``. The ``world_state`` carries raw map positions
    (0-32) and cooldowns in seconds, so its positions are centred and divided by half
    the map (SMAC's [-1, 1]), its cooldowns divided by the unit's own cooldown (as the
    observations already are) and its trailing unit types by the largest type. Unscaled,
    these fed QMIX's hypernetworks inputs up to 32 and its values diverged on SMAX
    (docs/smax.md). ``scale_features=False`` gives JaxMARL's arrays unchanged.

    ``sight_range`` (default ``None``: each unit type's own, SMAX's 8-11) is the sight
    range of every ally's ``obs``: another unit's block is zero unless it is nearer than
    that (0: every ally and enemy block zero, the own block stays). Offsets stay divided by
    the unit type's own sight range, so a block shown is the default observation's block.
    Only ``obs`` changes: the state, the reward, ``avail`` (attacks by attack range), the
    enemy's script and ``privileged_obs`` (``privileged_obs=True``: every living unit's
    block, wherever it is) do not. It reaches CTDS's sight-2 student and IGM-DA's
    zero-sight learner (docs/rivals.md).

    ``shields`` (default ``None``: the map's own) switches SC2's plasma shields on or off.
    SMAX's own maps have none: a stalker's 160 health and a zealot's 150 never come back.
    ``True`` gives them SC2's: the top 80 of a stalker's health and the top 50 of a
    zealot's take damage first and recharge 2 per second after 10 s without damage, as on
    ddn's 2s_vs_1sc (where they are on by default). Observations still show the total
    health fraction. It is a departure from SMAX toward SMAC: on 3s_vs_5z, kiting
    stalkers get their shields back as in the game (docs/smax.md#shields-on-smaxs-maps).

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
        privileged_obs: bool = False,
        sight_range: float | None = None,
        shields: bool | None = None,
    ):
        super().__init__(num_envs, seed, device)
        if map_name not in SMAX_MAPS:
            raise ValueError(
                f"unknown SMAX map {map_name!r}.{suggest(str(map_name), list(SMAX_MAPS))} "
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
        self.privileged_obs = check_bool("privileged_obs", privileged_obs)
        self.sight_range = check_sight_range(sight_range)
        self.shields = None if shields is None else check_bool("shields", shields)
        self._sim = _build(
            map_name,
            self.episode_limit,
            attack_mode,
            self.scale_features,
            self.privileged_obs,
            self.sight_range,
            self.shields,
        )
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
            0, _KEY_WORD_BOUND, (self.num_envs, 2), generator=self.generator, device=self.device
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
        _, _, obs, world, avail, term, trunc, won, privileged = self._carry
        dev = self.device
        self._last = EnvOutput(
            obs=_to_torch(obs, dev),
            state=_to_torch(world, dev),
            avail=_to_torch(avail, dev),
            reward=reward,
            terminated=_to_torch(term, dev),
            truncated=_to_torch(trunc, dev),
            won=_to_torch(won, dev),
            privileged_obs=_to_torch(privileged, dev) if self.privileged_obs else None,
        )
        return self._last
