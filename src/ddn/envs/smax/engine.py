"""SMAX's engine with two more unit types (medivac, spine crawler).

JaxMARL's SMAX has no healer and no static building, so SMAC's ``MMM2`` and ``2s_vs_1sc``
cannot be built from its constructor arrays alone. This module subclasses JaxMARL's
:class:`~jaxmarl.environments.smax.SMAX` and :class:`HeuristicEnemySMAX`, overriding only
what the new units change:

- ``_world_step``: medivacs do not shoot; ground-only attackers cannot hit flying units;
  after SMAX's damage pass a *healing pass* heals (own team, capped at max health,
  spending energy), regenerates (the spine crawler's 0.38 HP/s) and recharges shields
  (the stalker's, on the new maps' unit table only).
- ``_push_units_away``: an immobile unit is never pushed (its partner takes the whole
  overlap), and flying and ground units do not collide.
- ``step_env_no_decode``: immobile units' movement is zeroed; heals of this step are
  counted so the reward can ignore them.
- ``get_avail_actions``: a medivac's "attack ally-side slot ``j``" is "heal ally ``j``";
  ground-only attackers lose the slots of flying targets; immobile units cannot move.
- ``compute_reward`` / ``is_terminal`` / :meth:`UnitsSMAX.defeated`: SMAC's medivac rules
  (a team with only medivacs left has lost), and heals never change the reward.
- ``get_world_state``: a medivac's energy / 200 sits where other units have their cooldown.
- the heuristic enemy: ground-only units neither target nor chase flying units, and an
  enemy medivac heals (autocast, see :class:`UnitsSMAX`) or follows its army.

Every rule is written for arbitrary unit tables, and with SMAX's own six unit types
(no healer, no flyer, no immobile unit) each override reduces *exactly* to JaxMARL's
arithmetic: ``ddn.envs.smax.env`` runs every map, old and new, on this engine, and
``tests/test_smax.py`` / ``tests/test_smax_units.py`` check the old maps bit for bit
against raw JaxMARL. Old maps keep SMAX's six-type tables (their one-hot type features
and SMACv2's random unit types would otherwise change); only maps with a medivac or a
spine crawler get the eight-type tables. The unit numbers and the maps are in
:mod:`ddn.envs.smax.units`, the scripted enemy that knows the new units in
:mod:`ddn.envs.smax.enemy`.

Import only after :func:`ddn.envs.smax.compiled._import_jax` (it imports jax and jaxmarl at import
time and jaxmarl prints a banner that module silences).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax.struct import dataclass as struct_dataclass
from jaxmarl.environments.smax.smax_env import SMAX, State

from ddn.envs.smax.units import (
    ENERGY_REGEN,
    FLAGS,
    HEAL_RATE,
    HEALTH_REGEN,
    HP_PER_ENERGY,
    MAX_ENERGY,
    MIN_START_ENERGY,
    NUM_UNIT_TYPES,
    SHIELD,
    SHIELD_DELAY,
    SHIELD_REGEN,
    START_ENERGY,
    UnitsMap,
    unit_tables,
)


@struct_dataclass
class UnitsState(State):
    """SMAX's state plus what the new units need."""

    unit_energy: jax.Array  # [N] medivac energy (0 for units without energy)
    heal_target: jax.Array  # [N] int32: the unit healed in the last world step, or -1
    unit_healed: jax.Array  # [N] HP healed/regenerated so far in this env step
    unit_shield: jax.Array  # [N] the shield part of unit_health (0 for unshielded types)
    unit_calm: jax.Array  # [N] seconds since the unit last took damage


class UnitsSMAX(SMAX):
    """JaxMARL's SMAX with healers, flying units, ground-only attackers, immobile units.

    Medivac actions follow SMAC: for an **ally** medivac, action ``5 + j`` heals ally
    ``j`` (SMAX's attack slots, numbered over the enemies, are reused over the allies;
    slots past the last ally are never available). An **enemy** medivac *autocasts*:
    whenever it is not moving it heals the most damaged (lowest health fraction)
    healable teammate in range. Autocast is how SC2 medivacs heal by default, and it
    sidesteps SMAX's enemy action space, which has one attack slot per opposing unit:
    MMM2's enemy medivac would need 11 heal slots and has 10.

    Healing: 12.6 HP/s (``HEAL_RATE``), 1 energy per ``HP_PER_ENERGY`` HP, energy regenerates
    ``ENERGY_REGEN``/s up to the type's maximum; starting on a target other than the one
    healed in the previous world step needs ``MIN_START_ENERGY``; a target must be alive,
    healable (biological ground unit), not the healer, damaged, and within the healer's
    range; health never exceeds its maximum. Heals come after the world step's damage, so
    a unit killed in a world step is not healed back.

    ``shields=True`` gives SMAX's own maps SC2's shields too: the top 80 of a stalker's 160
    health and the top 50 of a zealot's 150 soak damage first and recharge as above.

    With SMAX's six unit types (JaxMARL's maps) no rule has anything to act on and each
    would compute exactly SMAX's result; the passes are then skipped for speed (run, they
    cost 25-30% of the step on 3m and 3s5z). :attr:`skip_unused_rules` ``= False`` runs them
    anyway: the tests do, to check that they reduce to SMAX's arithmetic.
    """

    #: Skip the healing pass, the action filters, the pinned push and the extra masks
    #: where the unit table has no healer, flyer or immobile type.
    skip_unused_rules: bool = True

    def __init__(
        self,
        *,
        num_unit_types: int = NUM_UNIT_TYPES,
        layout: UnitsMap | None = None,
        shields: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**unit_tables(num_unit_types), **kwargs)
        n = num_unit_types
        self.layout = layout
        self.unit_type_flying = jnp.array(FLAGS["flying"][:n])
        self.unit_type_hits_air = jnp.array(FLAGS["hits_air"][:n])
        self.unit_type_healable = jnp.array(FLAGS["healable"][:n])
        self.unit_type_immobile = jnp.array(FLAGS["immobile"][:n])
        self.unit_type_heal_rates = jnp.array(HEAL_RATE[:n])
        self.unit_type_health_regen = jnp.array(HEALTH_REGEN[:n])
        self.unit_type_start_energy = jnp.array(START_ENERGY[:n])
        self.unit_type_max_energy = jnp.array(MAX_ENERGY[:n])
        # ``shields`` None: SMAX's own maps (six-type table) keep its shieldless units,
        # ddn's maps have SC2's; True or False: SC2's shields on or off whatever the map.
        with_shields = n == NUM_UNIT_TYPES if shields is None else shields
        shield_of_type = SHIELD[:n] if with_shields else (0.0,) * n
        self.unit_type_shields = jnp.array(shield_of_type)
        special = any(FLAGS["flying"][:n] + FLAGS["immobile"][:n]) or any(HEAL_RATE[:n])
        special = special or any(HEALTH_REGEN[:n]) or any(shield_of_type)
        #: Python-level: whether the new rules run (see :attr:`skip_unused_rules`).
        self.extended = special or not self.skip_unused_rules

    # ------------------------------------------------------------------ helpers
    def is_healer(self, types: jax.Array) -> jax.Array:
        return self.unit_type_heal_rates[types] > 0

    def defeated(self, state: State) -> tuple[jax.Array, jax.Array]:
        """``(allies_defeated, enemies_defeated)``: no unit other than a medivac alive.

        SMAC's rules: a team with only medivacs left has lost; the loss is checked first,
        so a step that defeats both teams is not a win (SMAX calls it a draw).
        """
        fighting = state.unit_alive & ~self.is_healer(state.unit_types)
        return ~jnp.any(fighting[: self.num_allies]), ~jnp.any(fighting[self.num_allies :])

    def _slot_targets(self, team: int) -> jax.Array:
        """Absolute unit index targeted by each attack slot of a ``team`` unit."""
        if team == 0:
            return self.num_allies + jnp.arange(self.num_enemies)
        return self.num_allies - 1 - jnp.arange(self.num_allies)

    # ------------------------------------------------------------------ reset / step
    def reset(self, key: jax.Array) -> tuple[dict[str, jax.Array], UnitsState]:
        obs, plain = super().reset(key)
        types = plain.unit_types
        fields = {f.name: getattr(plain, f.name) for f in dataclasses.fields(plain)}
        state = UnitsState(
            **fields,
            unit_energy=self.unit_type_start_energy[types],
            heal_target=jnp.full((self.num_agents,), -1, dtype=jnp.int32),
            unit_healed=jnp.zeros((self.num_agents,)),
            unit_shield=self.unit_type_shields[types],
            unit_calm=jnp.zeros((self.num_agents,)),
        )
        if self.layout is not None and self.layout.positions is not None:
            # A fixed layout (SMAX's generators only know two blobs or SMACv2's spreads).
            start = jnp.array(self.layout.positions)
            r = self.layout.position_noise
            noise = jax.random.uniform(jax.random.fold_in(key, 1), start.shape, minval=-r, maxval=r)
            noise = jnp.where(self.unit_type_immobile[types][:, None], 0.0, noise)
            state = self._push_units_away(state.replace(unit_positions=start + noise))
        # SMAX's reset computed these on its plain state (no energy, default layout).
        obs = self.get_obs(state)
        obs["world_state"] = jax.lax.stop_gradient(self.get_world_state(state))
        return obs, state

    def step_env_no_decode(
        self,
        key: jax.Array,
        state: UnitsState,
        actions: tuple[jax.Array, jax.Array],
        get_state_sequence: bool = False,
    ) -> Any:
        movement, attack = actions
        # Pin immobile units here, not only in the world step, so that the "last
        # movement" others observe is the movement that happened.
        movement = jnp.where(self.unit_type_immobile[state.unit_types][:, None], 0.0, movement)
        state = state.replace(unit_healed=jnp.zeros_like(state.unit_healed))
        return super().step_env_no_decode(key, state, (movement, attack), get_state_sequence)

    def _world_step(
        self, key: jax.Array, state: UnitsState, actions: tuple[jax.Array, jax.Array]
    ) -> UnitsState:
        movement, attack = actions
        if not self.extended:
            return super()._world_step(key, state, actions)
        after = super()._world_step(key, state, (movement, self._shots(state, attack)))
        return self._heal(state, after, movement, attack)

    def _shots(self, state: State, attack: jax.Array) -> jax.Array:
        """Attack actions with the impossible ones turned into no-ops.

        A healer's attack slot is a heal command, not a shot; a ground-only attacker
        cannot hit a flying unit (the masks already forbid both to the learners; this
        also covers the scripted enemy and any action passed in directly).
        """
        idx = jnp.arange(self.num_agents)
        slot = attack - self.num_movement_actions
        target = jnp.where(
            idx < self.num_allies, self.num_allies + slot, self.num_allies - 1 - slot
        )
        target = jnp.clip(target, 0, self.num_agents - 1)
        types = state.unit_types
        hits = self.unit_type_hits_air[types] | ~self.unit_type_flying[types[target]]
        return jnp.where(hits & ~self.is_healer(types), attack, 0)

    def _heal(
        self, before: UnitsState, after: UnitsState, movement: jax.Array, attack: jax.Array
    ) -> UnitsState:
        """The healing pass of one world step (see the class docstring for the rules)."""
        n, dt = self.num_agents, self.time_per_step
        idx = jnp.arange(n)
        types = before.unit_types
        max_hp = self.unit_type_health[types]
        hp = after.unit_health  # after this world step's damage
        rate = self.unit_type_heal_rates[types] * dt
        healer = self.is_healer(types) & before.unit_alive
        receivable = before.unit_alive & (hp > 0) & self.unit_type_healable[types] & (hp < max_hp)
        dist = jnp.linalg.norm(
            before.unit_positions[:, None] - before.unit_positions[None, :], axis=-1
        )
        candidate = (
            healer[:, None]
            & (before.unit_teams[:, None] == before.unit_teams[None, :])
            & (dist < self.unit_type_attack_ranges[types][:, None])
            & receivable[None, :]
            & (idx[:, None] != idx[None, :])
        )
        # Ally healers are commanded (slot j = ally j); enemy healers autocast on the
        # lowest health fraction in range while not moving.
        commanded = jnp.where(
            attack >= self.num_movement_actions, attack - self.num_movement_actions, -1
        )
        commanded = jnp.where(commanded < self.num_allies, commanded, -1)
        autocast = jnp.argmin(jnp.where(candidate, (hp / max_hp)[None, :], 2.0), axis=1)
        still = jnp.all(movement == 0.0, axis=-1)
        target = jnp.where(idx < self.num_allies, commanded, jnp.where(still, autocast, -1))
        safe = jnp.clip(target, 0, n - 1)
        energy = before.unit_energy
        ok = (
            (target >= 0)
            & jnp.take_along_axis(candidate, safe[:, None], axis=1)[:, 0]
            & (energy > 0)
            & ((before.heal_target == target) | (energy >= MIN_START_ENERGY))
        )
        amount = jnp.where(
            ok, jnp.minimum(jnp.minimum(rate, energy * HP_PER_ENERGY), max_hp[safe] - hp[safe]), 0.0
        )
        healed_hp = jnp.minimum(hp + jnp.zeros(n).at[safe].add(amount), max_hp)
        regen = jnp.where(
            before.unit_alive & (healed_hp > 0),
            jnp.minimum(self.unit_type_health_regen[types] * dt, max_hp - healed_hp),
            0.0,
        )
        # Shields soak this world step's damage first; after SHIELD_DELAY seconds without
        # damage they regenerate (the HP below them never does).
        damage = jnp.maximum(before.unit_health - hp, 0.0)
        shield = jnp.maximum(before.unit_shield - damage, 0.0)
        calm = jnp.where(damage > 0, 0.0, before.unit_calm + dt)
        recharge = jnp.where(
            before.unit_alive & (healed_hp > 0) & (calm >= SHIELD_DELAY),
            jnp.minimum(SHIELD_REGEN * dt, self.unit_type_shields[types] - shield),
            0.0,
        )
        new_hp = healed_hp + regen + recharge
        max_energy = self.unit_type_max_energy[types]
        new_energy = jnp.clip(
            energy - amount / HP_PER_ENERGY + jnp.where(max_energy > 0, ENERGY_REGEN * dt, 0.0),
            0.0,
            max_energy,
        )
        return after.replace(
            unit_health=new_hp,
            unit_energy=new_energy,
            heal_target=jnp.where(ok, target, -1).astype(jnp.int32),
            unit_healed=after.unit_healed + (new_hp - hp),
            unit_shield=shield + recharge,
            unit_calm=calm,
        )

    def _push_units_away(self, state: State, firmness: float = 1.0) -> State:
        """SMAX's collision resolution, with immobile units pinned and layers apart.

        SMAX moves each unit of an overlapping pair by half the overlap. Here a unit
        paired with an immobile one takes all of it and the immobile one none, and a
        flying unit does not collide with ground units. The weight is applied before
        SMAX's ``/ 2`` so that without such units the arithmetic is SMAX's exactly.
        """
        if not self.extended:
            return super()._push_units_away(state, firmness)
        n = self.num_agents
        types = state.unit_types
        flying = self.unit_type_flying[types]
        immobile = self.unit_type_immobile[types]
        collide = (
            state.unit_alive[:, None]
            & state.unit_alive[None, :]
            & (flying[:, None] == flying[None, :])
        )
        delta = state.unit_positions[:, None] - state.unit_positions[None, :]
        dist = jnp.linalg.norm(delta, axis=-1) + jnp.identity(n) + 1e-6
        radius = self.unit_type_radiuses[types][:, None] + self.unit_type_radiuses[types][None, :]
        overlap = jnp.where(collide, jax.nn.relu(radius / dist - 1.0), 0.0)
        weight = jnp.where(immobile[None, :], 2.0, 1.0)
        weight = jnp.where(immobile[:, None], 0.0, weight)
        positions = (
            state.unit_positions
            + firmness * jnp.sum(delta * (overlap * weight)[:, :, None], axis=1) / 2
        )
        positions = jnp.where(state.unit_alive[:, None], positions, state.unit_positions)
        return state.replace(unit_positions=positions)

    # ------------------------------------------------------------------ outputs
    def compute_reward(
        self, state: UnitsState, health_before: jax.Array, health_after: jax.Array
    ) -> dict[str, jax.Array]:
        """SMAX's reward with heals removed and SMAC's medivac win rule.

        The health a team gained by healing this step is added back to the damage taken,
        so allies are paid for damage dealt whatever the enemy medivac heals (SMAC's own
        ``abs(delta)`` would pay them *for* a net enemy heal), and win/loss counts
        medivacs as dead.
        """
        fighting = state.unit_alive & ~self.is_healer(state.unit_types)
        return super().compute_reward(
            state.replace(unit_alive=fighting), health_before, health_after - state.unit_healed
        )

    def is_terminal(self, state: State) -> jax.Array:
        allies, enemies = self.defeated(state)
        return allies | enemies | (state.step >= self.max_steps)

    def get_world_state(self, state: State) -> jax.Array:
        """SMAX's world state, with energy / max energy in a medivac's cooldown slot."""
        world = super().get_world_state(state)
        if not self.extended or not isinstance(state, UnitsState):  # (or SMAX's reset)
            return world
        n, f = self.num_agents, len(self.own_features)
        units = world[: n * f].reshape(n, f)
        max_energy = self.unit_type_max_energy[state.unit_types]
        shows_energy = (max_energy > 0) & state.unit_alive
        energy = state.unit_energy / jnp.where(max_energy > 0, max_energy, 1.0)
        units = units.at[:, 3].set(jnp.where(shows_energy, energy, units[:, 3]))
        return jnp.concatenate([units.reshape(-1), world[n * f :]])

    def get_avail_actions(self, state: State) -> dict[str, jax.Array]:
        base = super().get_avail_actions(state)
        if not self.extended:
            return base
        types = state.unit_types
        flying = self.unit_type_flying[types]
        masks = {}
        for team, members in (
            (0, range(self.num_allies)),
            (1, range(self.num_allies, self.num_agents)),
        ):
            agents = [self.agents[i] for i in members]
            mask = jnp.stack([base[a] for a in agents]).astype(jnp.bool_)
            who = jnp.array(list(members))
            t = types[who]
            # Immobile units cannot move (stop stays available).
            moves = (
                jnp.zeros(mask.shape[1], jnp.bool_).at[: self.num_movement_actions - 1].set(True)
            )
            mask = mask & ~(self.unit_type_immobile[t][:, None] & moves[None, :])
            # Ground-only attackers cannot target flying units.
            targets = self._slot_targets(team)
            attack = mask[:, self.num_movement_actions :]
            attack = attack & (self.unit_type_hits_air[t][:, None] | ~flying[targets][None, :])
            # Healers: ally medivacs heal ally j through slot j; enemy ones autocast.
            heal = self._heal_mask(state, who) if team == 0 else jnp.zeros_like(attack)
            attack = jnp.where(self.is_healer(t)[:, None], heal, attack)
            mask = mask.at[:, self.num_movement_actions :].set(attack)
            for k, a in enumerate(agents):
                masks[a] = mask[k].astype(base[a].dtype)
        return masks

    def _heal_mask(self, state: State, who: jax.Array) -> jax.Array:
        """``[len(who), num_enemies]``: slot ``j`` = heal ally ``j`` (SMAC's layout)."""
        j = jnp.arange(self.num_enemies)
        ally = jnp.clip(j, 0, self.num_allies - 1)
        types, hp = state.unit_types, state.unit_health
        target_ok = (
            (j < self.num_allies)
            & state.unit_alive[ally]
            & self.unit_type_healable[types[ally]]
            & (hp[ally] < self.unit_type_health[types[ally]])
        )
        dist = jnp.linalg.norm(
            state.unit_positions[who][:, None] - state.unit_positions[ally][None, :], axis=-1
        )
        in_range = dist < self.unit_type_attack_ranges[types[who]][:, None]
        return (
            state.unit_alive[who][:, None]
            & target_ok[None, :]
            & in_range
            & (who[:, None] != ally[None, :])
        )
