"""JaxMARL's scripted (heuristic) enemy on ddn's extended engine, aware of the new units.

Ground-only units neither target nor chase flying units, and an enemy medivac heals
(autocast, see :class:`ddn.envs.smax.engine.UnitsSMAX`) or follows its army. With SMAX's
own six unit types the policy is JaxMARL's, unchanged. :func:`make_heuristic_env` builds
the environment of any map, JaxMARL's or ddn's. Imports jax: import only after
:func:`ddn.envs.smax.compiled._import_jax`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxmarl.environments.smax.heuristic_enemy import create_heuristic_policy
from jaxmarl.environments.smax.heuristic_enemy_smax_env import HeuristicEnemySMAX
from jaxmarl.environments.smax.smax_env import map_name_to_scenario

from ddn.envs.smax.engine import UnitsSMAX
from ddn.envs.smax.units import NUM_SMAX_TYPES, NUM_UNIT_TYPES, UNITS_MAPS, UnitsMap


def units_heuristic_policy(
    env: UnitsSMAX, base: Callable[..., Any], team: int = 1
) -> Callable[..., Any]:
    """JaxMARL's heuristic (``base``) made aware of flying units and medivacs.

    A ground-only unit gets an observation with the flying opponents blanked (health 0
    reads as "not visible" to the heuristic), so it neither targets nor chases what it
    cannot hit; with no flying unit on the map the observation is unchanged and so are
    the actions. A medivac heals (stops; the engine autocasts on the most damaged
    teammate in range) when a damaged healable teammate is in range, else flies to the
    most damaged one it sees, else follows the centre of its healable teammates.
    """
    f, t_bits = len(env.unit_features), env.unit_type_bits
    team_size = env.num_allies if team == 0 else env.num_enemies
    n_others = env.num_agents - 1
    own_at = n_others * f
    directions = jnp.array([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]])  # actions 0-3
    stop = env.num_movement_actions - 1

    if not env.extended:  # nothing flies, nobody heals: JaxMARL's heuristic as it is
        return base

    def policy(key: jax.Array, policy_state: Any, obs: jax.Array) -> tuple[jax.Array, Any]:
        own_type = jnp.argmax(obs[-t_bits:])
        units = obs[:own_at].reshape(n_others, f)
        unit_types = jnp.argmax(units[:, 7 : 7 + t_bits], axis=1)
        visible = units[:, 0] > 0
        opponent = jnp.arange(n_others) >= team_size - 1  # own team first in the obs
        blank = (
            opponent
            & visible
            & env.unit_type_flying[unit_types]
            & ~env.unit_type_hits_air[own_type]
        )
        seen = jnp.concatenate([jnp.where(blank[:, None], 0.0, units).reshape(-1), obs[own_at:]])
        action, policy_state = base(key, policy_state, seen)

        if team_size == 1:  # no teammate to heal: a lone medivac holds still
            heal_action = jnp.array(stop, dtype=action.dtype)
        else:
            heal_action = _medivac_action(obs, own_type, units[: team_size - 1])
        return jnp.where(env.is_healer(own_type), heal_action, action), policy_state

    def _medivac_action(obs: jax.Array, own_type: jax.Array, mates: jax.Array) -> jax.Array:
        """The medivac's rule, from its own observation (its teammates come first)."""
        health = mates[:, 0]
        rel = mates[:, 1:3] * env.unit_type_sight_ranges[own_type]
        mate_types = jnp.argmax(mates[:, 7 : 7 + t_bits], axis=1)
        healable = (health > 0) & env.unit_type_healable[mate_types]
        damaged = healable & (health < 1.0)
        dist = jnp.linalg.norm(rel, axis=-1)
        heal_now = jnp.any(damaged & (dist < env.unit_type_attack_ranges[own_type]))
        worst = jnp.argmin(jnp.where(damaged, health, 2.0))
        centre = jnp.sum(rel * healable[:, None], axis=0) / jnp.maximum(jnp.sum(healable), 1)
        goal = jnp.where(jnp.any(damaged), rel[worst], centre)
        idle = ~jnp.any(healable) | (~jnp.any(damaged) & (jnp.linalg.norm(centre) < 1.0))
        return jnp.where(heal_now | idle, stop, jnp.argmax(directions @ goal))

    return policy


class UnitsHeuristicEnemySMAX(HeuristicEnemySMAX):
    """JaxMARL's ``HeuristicEnemySMAX`` on :class:`UnitsSMAX` with the extended heuristic."""

    def __init__(
        self,
        enemy_shoots: bool = True,
        attack_mode: str = "closest",
        *,
        num_unit_types: int = NUM_UNIT_TYPES,
        layout: UnitsMap | None = None,
        shields: bool | None = None,
        **env_kwargs: Any,
    ) -> None:
        super().__init__(enemy_shoots=enemy_shoots, attack_mode=attack_mode, **env_kwargs)
        # The parent built a plain SMAX inside itself; rebuild on the extended engine.
        self._env = UnitsSMAX(
            num_unit_types=num_unit_types, layout=layout, shields=shields, **env_kwargs
        )
        self.observation_spaces = {i: self._env.observation_spaces[i] for i in self.agents}
        self.action_spaces = {i: self._env.action_spaces[i] for i in self.agents}
        base = create_heuristic_policy(self._env, 1, shoot=enemy_shoots, attack_mode=attack_mode)
        self.heuristic_policy = units_heuristic_policy(self._env, base, team=1)

    def defeated(self, state: Any) -> tuple[jax.Array, jax.Array]:
        return self._env.defeated(state.state)


def make_heuristic_env(
    map_name: str, max_steps: int, attack_mode: str, shields: bool | None = None
) -> UnitsHeuristicEnemySMAX:
    """The heuristic-enemy environment of any SMAX map, JaxMARL's or :data:`UNITS_MAPS`'.
    ``shields``: SC2's shields on or off (None: the map's own, see :class:`UnitsSMAX`)."""
    if map_name in UNITS_MAPS:
        layout = UNITS_MAPS[map_name]
        return UnitsHeuristicEnemySMAX(
            scenario=layout.scenario(),
            max_steps=max_steps,
            attack_mode=attack_mode,
            num_unit_types=NUM_UNIT_TYPES,
            layout=layout,
            shields=shields,
        )
    # JaxMARL's maps keep SMAX's six unit types: same tensors, same SMACv2 unit draws.
    return UnitsHeuristicEnemySMAX(
        scenario=map_name_to_scenario(map_name),
        max_steps=max_steps,
        attack_mode=attack_mode,
        num_unit_types=NUM_SMAX_TYPES,
        shields=shields,
    )
