"""SMAX's engine extended with medivacs and the spine crawler (``ddn.envs.smax``).

Most tests drive the engine directly on a small "lab" scenario that holds every new
rule at once (allies: medivac, marine, marauder, medivac; enemies: marine, marauder,
spine crawler, medivac), with hand-placed units and hand-picked actions for both teams.
The rest go through ddn's ``SMAX`` env: the new maps' shapes and rules, and the old maps
bit for bit against raw JaxMARL (with the extension active: ddn runs every map on it).
JIT compilation is the cost, so compiled engines and envs are module-scoped fixtures.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect

import numpy as np
import pytest
import torch

import ddn
from ddn.envs.smax import INSTALL_HINT
from ddn.envs.smax import env as smax_mod

# Every test here compiles the extended SMAX engine with JAX: the slow tier only.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("jaxmarl") is None, reason=INSTALL_HINT),
]

STOP = 4
DT = 1.0 / 16  # SMAX's world step; 8 of them per env step
WORLD_STEPS = 8
HEAL_PER_STEP = 12.6 * DT * WORLD_STEPS  # 6.3 HP per env step
ENERGY_REGEN_PER_STEP = 0.7875 * DT * WORLD_STEPS

# Lab unit indices: allies 0-3, enemies 4-7.
A_MEDIVAC, A_MARINE, A_MARAUDER, A_MEDIVAC2 = 0, 1, 2, 3
E_MARINE, E_MARAUDER, E_CRAWLER, E_MEDIVAC = 4, 5, 6, 7
N_ALLIES = 4
# Far apart: nobody in anybody's range (the largest, the crawler's, is 7).
FAR = [(3, 3), (12, 3), (21, 3), (29, 3), (3, 29), (12, 29), (21, 29), (29, 29)]


def ally_slot(target: int) -> int:
    """An ally's action for attacking enemy unit ``target`` (absolute index)."""
    return 5 + target - N_ALLIES


def enemy_slot(target: int) -> int:
    """An enemy's action for attacking ally unit ``target`` (enemies count in reverse)."""
    return 5 + N_ALLIES - 1 - target


class Lab:
    """The lab scenario's engine, jitted, with helpers to set up and step a battle.

    ``map_name`` builds a :data:`UNITS_MAPS` scenario, or one of JaxMARL's maps on SMAX's
    six unit types, instead (units start at ``FAR``'s first places, not at the map's
    layout); ``shields`` is the engine's (None: the map's own)."""

    def __init__(self, map_name: str | None = None, shields: bool | None = None) -> None:
        from ddn.envs.smax import compiled

        compiled._import_jax()
        import jax
        import jax.numpy as jnp

        from ddn.envs.smax import enemy
        from ddn.envs.smax import units as su

        self.jax, self.jnp, self.su = jax, jnp, su
        lab = su.UnitsMap(
            ally_types=(su.MEDIVAC, 0, 1, su.MEDIVAC),
            enemy_types=(0, 1, su.SPINE_CRAWLER, su.MEDIVAC),
            episode_limit=100,
        )
        scenario, n_types = lab.scenario(), su.NUM_UNIT_TYPES
        if map_name in su.UNITS_MAPS:
            scenario = dataclasses.replace(su.UNITS_MAPS[map_name], positions=None).scenario()
        elif map_name is not None:
            from jaxmarl.environments.smax.smax_env import map_name_to_scenario

            scenario, n_types = map_name_to_scenario(map_name), su.NUM_SMAX_TYPES
        self.wrapper = enemy.UnitsHeuristicEnemySMAX(
            scenario=scenario, max_steps=100, num_unit_types=n_types, shields=shields
        )
        self.engine = self.wrapper._env
        self.agents = list(self.engine.agents)
        self._step = jax.jit(self.engine.step_env)
        self._avail = jax.jit(self.engine.get_avail_actions)
        self._world = jax.jit(self.engine.get_world_state)
        self._obs = jax.jit(self.engine.get_obs_unit_list)
        self._enemy_actions = jax.jit(self.wrapper.get_enemy_actions)
        _, self.start = jax.jit(self.engine.reset)(jax.random.PRNGKey(0))

    def state(self, pos: dict[int, tuple[float, float]] | None = None, **fields: dict):
        """The lab battle with units at ``FAR`` except ``pos``; ``fields`` set per-unit
        values, e.g. ``unit_health={1: 20.0}``; ``unit_alive`` follows health."""
        jnp = self.jnp
        positions = np.array(FAR[: self.engine.num_agents], dtype=np.float32)
        for i, p in (pos or {}).items():
            positions[i] = p
        state = self.start.replace(unit_positions=jnp.asarray(positions))
        for name, values in fields.items():
            arr = np.array(getattr(state, name))
            for i, v in values.items():
                arr[i] = v
            state = state.replace(**{name: jnp.asarray(arr)})
        return state.replace(unit_alive=state.unit_health > 0)

    def step(self, state, actions: dict[int, int] | None = None, seed: int = 0):
        acts = {a: self.jnp.int32(STOP) for a in self.agents}
        for i, a in (actions or {}).items():
            acts[self.agents[i]] = self.jnp.int32(a)
        _, new, rewards, dones, _ = self._step(self.jax.random.PRNGKey(seed), state, acts)
        return new, float(rewards["ally_0"]), bool(dones["__all__"])

    def avail(self, state, unit: int) -> np.ndarray:
        return np.array(self._avail(state)[self.agents[unit]]).astype(bool)

    def enemy_actions(self, state) -> list[int]:
        obs = self._obs(state)
        enemy_obs = self.jnp.stack([obs[a] for a in self.wrapper.enemy_agents])
        key = self.jax.random.PRNGKey(0)
        policy_state = self.wrapper.get_enemy_policy_initial_state(key)
        actions, _ = self._enemy_actions(key, policy_state, enemy_obs)
        return [int(actions[a]) for a in self.wrapper.enemy_agents]


@pytest.fixture(scope="module")
def lab() -> Lab:
    return Lab()


@pytest.fixture(scope="module")
def duel() -> Lab:
    """2s_vs_1sc's engine: stalkers 0 and 1, the spine crawler 2."""
    return Lab("2s_vs_1sc")


def hp(state, i: int) -> float:
    return float(state.unit_health[i])


def energy(state, i: int) -> float:
    return float(state.unit_energy[i])


# ------------------------------------------------------------------ unit table
def test_smax_units_keep_jaxmarls_numbers_and_new_ones_are_the_specs(lab: Lab) -> None:
    from jaxmarl.environments.smax.smax_env import SMAX

    su = lab.su
    defaults = inspect.signature(SMAX.__init__).parameters
    six, eight = su.unit_tables(su.NUM_SMAX_TYPES), su.unit_tables(su.NUM_UNIT_TYPES)
    for name, value in six.items():
        want = defaults[name].default
        if isinstance(value, list):
            assert value == list(want), name
        else:
            assert np.array_equal(np.asarray(value), np.asarray(want)), name
            assert np.array_equal(np.asarray(eight[name])[:6], np.asarray(want)), name
    row = {k: (v[su.MEDIVAC], v[su.SPINE_CRAWLER]) for k, v in eight.items()}
    assert row["unit_type_health"] == (150.0, 300.0)
    assert row["unit_type_attack_ranges"] == (4.0, 7.0)  # heal range, crawler range
    assert row["unit_type_velocities"] == (3.5, 0.0)
    assert float(row["unit_type_weapon_cooldowns"][0]) > 0  # observations divide by it
    assert row["unit_type_attacks"][1] == 25.0
    # Shields (on for the new maps' table, on SMAX's own when asked): the stalker's top
    # 80 of 160 and the zealot's top 50 of 150, SC2's; no other unit has any.
    stalker, zealot = 2, 3
    health = np.asarray(eight["unit_type_health"])
    assert (float(health[stalker]), float(health[zealot])) == (160.0, 150.0)
    assert (su.SHIELD[stalker], su.SHIELD[zealot]) == (80.0, 50.0) and sum(su.SHIELD) == 130.0
    assert (su.SHIELD_REGEN, su.SHIELD_DELAY) == (2.0, 10.0)


# ------------------------------------------------------------------ healing
def test_heal_restores_health_up_to_the_maximum_and_spends_energy(lab: Lab) -> None:
    # Marine 40/45 next to the medivac: the heal stops at 45; marauder 50/125 gets 6.3.
    s = lab.state({A_MEDIVAC: (10, 10), A_MARINE: (11, 10)}, unit_health={A_MARINE: 40.0})
    assert lab.avail(s, A_MEDIVAC)[5 + A_MARINE]
    s1, reward, _ = lab.step(s, {A_MEDIVAC: 5 + A_MARINE})
    assert hp(s1, A_MARINE) == 45.0  # exactly the maximum, never beyond
    assert energy(s1, A_MEDIVAC) == pytest.approx(50 - 5 / 3 + ENERGY_REGEN_PER_STEP, abs=1e-4)
    assert reward == 0.0
    assert not lab.avail(s1, A_MEDIVAC)[5 + A_MARINE]  # undamaged: nothing to heal
    s2, _, _ = lab.step(s1, {A_MEDIVAC: 5 + A_MARINE})  # forced anyway: no change
    assert hp(s2, A_MARINE) == 45.0
    assert energy(s2, A_MEDIVAC) == pytest.approx(energy(s1, A_MEDIVAC) + ENERGY_REGEN_PER_STEP)

    s = lab.state({A_MEDIVAC: (10, 10), A_MARAUDER: (12, 10)}, unit_health={A_MARAUDER: 50.0})
    s1, _, _ = lab.step(s, {A_MEDIVAC: 5 + A_MARAUDER})
    assert hp(s1, A_MARAUDER) == pytest.approx(50 + HEAL_PER_STEP, abs=1e-4)
    spent = 50 + ENERGY_REGEN_PER_STEP - energy(s1, A_MEDIVAC)
    assert spent == pytest.approx(HEAL_PER_STEP / 3, abs=1e-4)  # 1 energy per 3 HP


def test_heal_stops_when_energy_runs_out(lab: Lab) -> None:
    pos = {A_MEDIVAC: (10, 10), A_MARAUDER: (12, 10)}
    # 1 energy, already healing this target: heals until empty, 3 HP per energy.
    s = lab.state(
        pos, unit_health={A_MARAUDER: 50.0}, unit_energy={A_MEDIVAC: 1.0},
        heal_target={A_MEDIVAC: A_MARAUDER},
    )  # fmt: skip
    s1, _, _ = lab.step(s, {A_MEDIVAC: 5 + A_MARAUDER})
    gained = hp(s1, A_MARAUDER) - 50.0
    spent = 1.0 + ENERGY_REGEN_PER_STEP - energy(s1, A_MEDIVAC)
    assert 0 < gained < HEAL_PER_STEP  # cut short by the energy
    assert gained == pytest.approx(3 * spent, abs=1e-4)
    assert energy(s1, A_MEDIVAC) < 0.1  # what regenerated in the last world step(s)
    # 0 energy: nothing at all this step (a restart needs 5 energy).
    s = lab.state(
        pos, unit_health={A_MARAUDER: 50.0}, unit_energy={A_MEDIVAC: 0.0},
        heal_target={A_MEDIVAC: A_MARAUDER},
    )  # fmt: skip
    s1, _, _ = lab.step(s, {A_MEDIVAC: 5 + A_MARAUDER})
    assert hp(s1, A_MARAUDER) == 50.0
    assert energy(s1, A_MEDIVAC) == pytest.approx(ENERGY_REGEN_PER_STEP)
    # 4 energy on a new target: below the 5 needed to start.
    s = lab.state(pos, unit_health={A_MARAUDER: 50.0}, unit_energy={A_MEDIVAC: 4.0})
    s1, _, _ = lab.step(s, {A_MEDIVAC: 5 + A_MARAUDER})
    assert hp(s1, A_MARAUDER) == 50.0
    # 5 energy: starts, and keeps going below 5 on the same target.
    s = lab.state(pos, unit_health={A_MARAUDER: 50.0}, unit_energy={A_MEDIVAC: 5.0})
    s1, _, _ = lab.step(s, {A_MEDIVAC: 5 + A_MARAUDER})
    assert hp(s1, A_MARAUDER) == pytest.approx(50 + HEAL_PER_STEP, abs=1e-4)
    assert energy(s1, A_MEDIVAC) < 5.0


def test_medivac_cannot_heal_itself_or_a_medivac(lab: Lab) -> None:
    s = lab.state(
        {A_MEDIVAC: (10, 10), A_MEDIVAC2: (11, 10)},
        unit_health={A_MEDIVAC: 100.0, A_MEDIVAC2: 100.0},
    )
    avail = lab.avail(s, A_MEDIVAC)
    assert not avail[5 + A_MEDIVAC] and not avail[5 + A_MEDIVAC2]
    for target in (A_MEDIVAC, A_MEDIVAC2):
        s1, _, _ = lab.step(s, {A_MEDIVAC: 5 + target})
        assert hp(s1, A_MEDIVAC) == 100.0 and hp(s1, A_MEDIVAC2) == 100.0
        assert energy(s1, A_MEDIVAC) == pytest.approx(50 + ENERGY_REGEN_PER_STEP)


def test_heal_actions_only_for_damaged_living_allies_in_range(lab: Lab) -> None:
    def heal_slots(**kw) -> np.ndarray:
        return lab.avail(lab.state(**kw), A_MEDIVAC)[5 : 5 + N_ALLIES]

    near = {A_MEDIVAC: (10, 10), A_MARINE: (13.9, 10), A_MARAUDER: (10, 6.05)}
    damaged = {A_MARINE: 20.0, A_MARAUDER: 20.0}
    assert heal_slots(pos=near, unit_health=damaged).tolist() == [False, True, True, False]
    # Full health: nothing to heal.
    assert not heal_slots(pos=near).any()
    # Dead.
    assert heal_slots(pos=near, unit_health={A_MARINE: 0.0, A_MARAUDER: 20.0}).tolist() == [
        False, False, True, False,
    ]  # fmt: skip
    # Out of the heal range of 4 (the marine at 4.1).
    far = {**near, A_MARINE: (14.1, 10)}
    assert heal_slots(pos=far, unit_health=damaged).tolist() == [False, False, True, False]
    # A dead medivac heals nobody, and neither enemy nor marine gets heal slots.
    assert not heal_slots(pos=near, unit_health={**damaged, A_MEDIVAC: 0.0}).any()
    # Out-of-range heals are not applied even if forced.
    s1, _, _ = lab.step(lab.state(pos=far, unit_health=damaged), {A_MEDIVAC: 5 + A_MARINE})
    assert hp(s1, A_MARINE) == 20.0


def test_enemy_medivac_autocasts_when_not_moving(lab: Lab) -> None:
    pos = {E_MEDIVAC: (20, 20), E_MARINE: (22, 20), E_MARAUDER: (20, 23)}
    s = lab.state(pos, unit_health={E_MARINE: 30.0, E_MARAUDER: 62.5})  # both at 2/3
    s1, reward, _ = lab.step(s)  # everyone stops: the medivac heals
    healed = hp(s1, E_MARINE) - 30.0 + hp(s1, E_MARAUDER) - 62.5
    assert healed == pytest.approx(HEAL_PER_STEP, abs=1e-4)
    # SMAX's own reward, abs(health change of the enemies), would pay for this heal.
    assert reward == 0.0
    s1, _, _ = lab.step(s, {E_MEDIVAC: 0})  # moving: no heal
    assert hp(s1, E_MARINE) == 30.0 and hp(s1, E_MARAUDER) == 62.5
    # The enemy medivac has no heal slots (autocast instead).
    assert not lab.avail(s, E_MEDIVAC)[5:].any()


def test_reward_pays_damage_dealt_whatever_the_enemy_heals(lab: Lab) -> None:
    pos = {A_MARINE: (20, 16), E_MARINE: (22, 20), E_MEDIVAC: (22, 21)}
    s = lab.state(pos, unit_health={E_MARINE: 30.0})
    s1, reward, _ = lab.step(s, {A_MARINE: ally_slot(E_MARINE)})
    # One marine shot (9) on the enemy marine, healed at the same time.
    assert hp(s1, E_MARINE) == pytest.approx(30 - 9 + HEAL_PER_STEP, abs=1e-4)
    assert reward == pytest.approx(9 / 45 / 4, abs=1e-6)


def test_spine_crawler_regenerates_unpaid(lab: Lab) -> None:
    s = lab.state(unit_health={E_CRAWLER: 100.0})
    s1, reward, _ = lab.step(s)
    assert hp(s1, E_CRAWLER) == pytest.approx(100 + 0.38 * 0.5, abs=1e-4)
    assert reward == 0.0
    s = lab.state(unit_health={E_CRAWLER: 299.9})
    assert hp(lab.step(s)[0], E_CRAWLER) == 300.0


def test_world_state_carries_medivac_energy(lab: Lab) -> None:
    s = lab.state(unit_energy={A_MEDIVAC: 120.0})
    world = np.array(lab._world(s))
    f = len(lab.engine.own_features)
    assert f == 4 + 8
    assert world[A_MEDIVAC * f + 3] == pytest.approx(0.6)  # 120 / 200
    assert world[E_MEDIVAC * f + 3] == pytest.approx(0.25)  # 50 / 200 at the start
    assert world[A_MARINE * f + 3] == float(s.unit_weapon_cooldowns[A_MARINE])


# ------------------------------------------------------------------ shields
SHIELD_PER_STEP = 2.0 * DT * WORLD_STEPS  # 1 shield point per env step once recharging
CALM_STEPS = 20  # 10 s without damage = 20 env steps


def test_shields_recharge_after_ten_calm_seconds_and_never_the_hp_below(duel: Lab) -> None:
    s = duel.state(unit_health={0: 100.0, 1: 50.0}, unit_shield={0: 20.0, 1: 0.0})
    assert float(s.unit_calm[0]) == 0.0
    for _ in range(CALM_STEPS - 1):
        s, reward, _ = duel.step(s)
    assert (hp(s, 0), hp(s, 1)) == (100.0, 50.0)  # 9.5 s: not yet
    assert reward == 0.0
    s, _, _ = duel.step(s)  # the 160th world step reaches 10 s and recharges once
    assert hp(s, 0) == pytest.approx(100.0 + 2.0 * DT, abs=1e-5)
    s, _, _ = duel.step(s)
    assert hp(s, 0) == pytest.approx(100.0 + 2.0 * DT + SHIELD_PER_STEP, abs=1e-5)
    for _ in range(90):
        s, _, _ = duel.step(s)
    # Full shields on top of the HP left: 20 + 80 (not 160), 50 + 80.
    assert (hp(s, 0), hp(s, 1)) == (160.0, 130.0)
    assert [float(x) for x in s.unit_shield[:2]] == [80.0, 80.0]
    assert hp(s, 2) == 300.0  # the crawler has no shields (and was at full health)


def test_shields_soak_damage_first_and_a_hit_restarts_the_wait(duel: Lab) -> None:
    # Stalker 0 in the crawler's range (7), stalker 1 far away.
    s = duel.state({0: (10.0, 10.0), 2: (10.0, 15.0)}, unit_calm={0: 30.0})
    s, _, _ = duel.step(s, {2: 5})  # the crawler's slot 0 is the last ally: stalker 1
    assert hp(s, 0) == 160.0  # stalker 1 is out of range: no shot
    s, _, _ = duel.step(s, {2: 6})  # slot 1: stalker 0
    assert hp(s, 0) == 160.0 - 25.0
    assert float(s.unit_shield[0]) == 80.0 - 25.0  # the shield took it
    assert float(s.unit_calm[0]) < 0.5  # the wait starts over
    s = duel.state({0: (10.0, 10.0), 2: (10.0, 15.0)}, unit_health={0: 90.0}, unit_shield={0: 10.0})
    s, _, _ = duel.step(s, {2: 6})
    assert hp(s, 0) == 65.0 and float(s.unit_shield[0]) == 0.0  # 10 from the shield, 15 HP
    for _ in range(CALM_STEPS + 80):
        s, _, _ = duel.step(s)
    assert hp(s, 0) == 145.0  # 65 HP + 80 shield


def test_smax_maps_get_sc2_shields_only_when_asked() -> None:
    """``shields=True`` on a JaxMARL map: SC2's shields on SMAX's folded health (the
    stalker's top 80 of 160, the zealot's top 50 of 150), recharging as on 2s_vs_1sc;
    by default SMAX's maps have none and the engine stays SMAX's."""
    from ddn.envs.smax import compiled

    compiled._import_jax()
    from ddn.envs.smax import enemy

    plain = enemy.make_heuristic_env("3s_vs_5z", 100, "closest")._env
    assert not plain.extended and not np.array(plain.unit_type_shields).any()
    kite = Lab("3s_vs_5z", shields=True)  # stalkers 0-2, zealots 3-7
    assert kite.engine.extended
    assert [float(x) for x in kite.start.unit_shield] == [80.0] * 3 + [50.0] * 5
    # A stalker and a zealot that lost their whole shield and some HP, far from anyone.
    s = kite.state(unit_health={0: 60.0, 3: 90.0}, unit_shield={0: 0.0, 3: 0.0})
    for _ in range(CALM_STEPS - 1):
        s, _, _ = kite.step(s)
    assert (hp(s, 0), hp(s, 3)) == (60.0, 90.0)  # 9.5 s without damage: not yet
    for _ in range(1 + 80):
        s, _, _ = kite.step(s)
    # The shields came back on top of the HP left (60 + 80, 90 + 50), the HP did not.
    assert (hp(s, 0), hp(s, 3)) == (140.0, 140.0)
    assert (hp(s, 1), hp(s, 4)) == (160.0, 150.0)  # untouched units stay full


# ------------------------------------------------------------------ spine crawler
def test_spine_crawler_never_moves(lab: Lab) -> None:
    # A marauder overlapping the crawler, the crawler ordered to walk: only the
    # marauder moves, and it takes the whole overlap.
    where = (16.0, 16.0)
    s = lab.state({E_CRAWLER: where, A_MARAUDER: (16.5, 16.0)})
    assert not lab.avail(s, E_CRAWLER)[:4].any() and lab.avail(s, E_CRAWLER)[STOP]
    for t, move in enumerate([0, 1, 2, 3, 0]):
        s, _, _ = lab.step(s, {E_CRAWLER: move}, seed=t)
        assert tuple(np.array(s.unit_positions[E_CRAWLER])) == where
    gap = float(np.linalg.norm(np.array(s.unit_positions[A_MARAUDER]) - np.array(where)))
    assert gap > 1.5  # radii 1.125 + 0.5625: pushed clear (or nearly)
    assert int(s.prev_movement_actions[E_CRAWLER].any()) == 0  # observed as not moving


def test_flying_medivac_does_not_collide_with_ground_units(lab: Lab) -> None:
    s = lab.state({A_MEDIVAC: (16.0, 16.0), A_MARINE: (16.2, 16.0), A_MEDIVAC2: (16.0, 16.5)})
    s1, _, _ = lab.step(s)
    # The marine under the medivac stays; the two medivacs push apart.
    assert np.allclose(np.array(s1.unit_positions[A_MARINE]), (16.2, 16.0))
    medivacs = np.array(s1.unit_positions[A_MEDIVAC]) - np.array(s1.unit_positions[A_MEDIVAC2])
    assert np.linalg.norm(medivacs) > 0.5


# ------------------------------------------------------------------ ground vs air
def test_ground_only_attackers_cannot_target_the_medivac(lab: Lab) -> None:
    s = lab.state(
        {E_MEDIVAC: (16, 16), A_MARINE: (16, 19), A_MARAUDER: (19, 16), E_CRAWLER: (10, 16),
         A_MEDIVAC2: (13, 16)}
    )  # fmt: skip
    slot = ally_slot(E_MEDIVAC)
    assert lab.avail(s, A_MARINE)[slot]  # marines hit air
    assert not lab.avail(s, A_MARAUDER)[slot]
    # The crawler (ground only) cannot target the ally medivac 3 away.
    assert not lab.avail(s, E_CRAWLER)[enemy_slot(A_MEDIVAC2)]
    s1, _, _ = lab.step(s, {A_MARAUDER: slot, E_CRAWLER: enemy_slot(A_MEDIVAC2)})
    assert hp(s1, E_MEDIVAC) == 150.0 and hp(s1, A_MEDIVAC2) == 150.0
    s1, _, _ = lab.step(s, {A_MARINE: slot})
    assert hp(s1, E_MEDIVAC) == 141.0


def test_heuristic_enemy_knows_air_units_and_heals(lab: Lab) -> None:
    # The enemy marauder: the ally medivac is closest, the marine the closest it can hit.
    s = lab.state({E_MARAUDER: (16, 16), A_MEDIVAC2: (16, 18), A_MARINE: (16, 21)})
    assert lab.enemy_actions(s)[E_MARAUDER - N_ALLIES] == enemy_slot(A_MARINE)
    # The crawler shoots the closest ally in range (and never the medivac).
    s = lab.state(
        {E_CRAWLER: (16, 16), A_MARINE: (16, 22.5), A_MARAUDER: (20, 16), A_MEDIVAC: (16, 14)}
    )
    assert lab.enemy_actions(s)[E_CRAWLER - N_ALLIES] == enemy_slot(A_MARAUDER)
    # The enemy medivac: a damaged teammate in range -> stop (autocast heals it) ...
    s = lab.state({E_MEDIVAC: (16, 16), E_MARINE: (18, 16)}, unit_health={E_MARINE: 20.0})
    assert lab.enemy_actions(s)[E_MEDIVAC - N_ALLIES] == STOP
    # ... out of range but in sight -> fly to it (east: action 1) ...
    s = lab.state({E_MEDIVAC: (16, 16), E_MARINE: (24, 16)}, unit_health={E_MARINE: 20.0})
    assert lab.enemy_actions(s)[E_MEDIVAC - N_ALLIES] == 1
    # ... nobody damaged -> follow the army (its marine to the north: action 0).
    s = lab.state({E_MEDIVAC: (16, 16), E_MARINE: (16, 24)})
    assert lab.enemy_actions(s)[E_MEDIVAC - N_ALLIES] == 0


# ------------------------------------------------------------------ win and loss
def test_medivac_win_and_loss_rules(lab: Lab) -> None:
    engine = lab.engine
    dead = {i: 0.0 for i in (E_MARINE, E_MARAUDER, E_CRAWLER)}
    # Only the enemy medivac left: the allies have won.
    s = lab.state(unit_health=dead)
    assert [bool(x) for x in engine.defeated(s)] == [False, True]
    # The last enemy fighter dies this step: reward = its damage + the win bonus.
    s = lab.state(
        {A_MARINE: (20, 16), E_MARINE: (22, 16)},
        unit_health={**dead, E_MARINE: 5.0},
    )
    s1, reward, done = lab.step(s, {A_MARINE: ally_slot(E_MARINE)})
    assert done and bool(s1.unit_alive[E_MEDIVAC])
    assert reward == pytest.approx(5 / 45 / 4 + 1.0, abs=1e-6)
    # Only ally medivacs left: lost, although enemies (and two allies) are alive.
    s = lab.state(unit_health={A_MARINE: 0.0, A_MARAUDER: 0.0})
    assert [bool(x) for x in engine.defeated(s)] == [True, False]
    s1, reward, done = lab.step(s)
    assert done and reward == 0.0
    # Both at once: the loss is checked first, no win bonus.
    s = lab.state(unit_health={**dead, A_MARINE: 0.0, A_MARAUDER: 0.0})
    assert [bool(x) for x in engine.defeated(s)] == [True, True]
    assert lab.step(s)[1] == 0.0
    # Nobody defeated: the battle goes on.
    s1, _, done = lab.step(lab.state())
    assert not done


# ------------------------------------------------------------------ through ddn's env
@pytest.fixture(scope="module")
def mmm2():
    return ddn.envs.make("smax", num_envs=3, seed=3, map_name="MMM2")


@pytest.fixture(scope="module")
def sc():
    return ddn.envs.make("smax", num_envs=3, seed=4, map_name="2s_vs_1sc")


def test_new_map_shapes(mmm2, sc) -> None:
    # SMAX's conventions: 4 moves + stop + one slot per enemy (SMAC adds a no-op: 18, 7);
    # 8 unit types, so 15 features per other unit, 12 own, 14 per unit in the state.
    for env, n, m, limit in ((mmm2, 10, 12, 180), (sc, 2, 1, 300)):
        spec = env.spec
        assert (spec.n_agents, spec.n_actions, spec.episode_limit) == (n, 5 + m, limit)
        assert spec.obs_dim == 15 * (n - 1) + 15 * m + 12
        assert spec.state_dim == 14 * (n + m)
        out = env.reset()
        assert out.obs.shape == (3, n, spec.obs_dim) and out.state.shape == (3, spec.state_dim)
        assert out.avail.shape == (3, n, spec.n_actions)
    assert (mmm2.spec.n_actions, sc.spec.n_actions) == (17, 6)
    # The per-map default gives way to an explicit limit.
    assert ddn.envs.make("smax", map_name="2s_vs_1sc", episode_limit=50).spec.episode_limit == 50


def test_mmm2_units_and_heal_masks_through_ddn(mmm2) -> None:
    import jax.numpy as jnp

    env = mmm2
    out = env.reset()
    st = env.jax_state.state
    types = np.array(st.unit_types[0]).tolist()
    assert types == [1, 1] + [0] * 7 + [6] + [1, 1, 1] + [0] * 8 + [6]
    # World state: 12 features per unit (then teams, types); the ally medivac's cooldown
    # slot holds its energy / 200 (50 at the start), a marine's its cooldown.
    assert float(out.state[0, 9 * 12 + 3]) == pytest.approx(0.25)
    assert float(out.state[0, 2 * 12 + 3]) == 0.0
    gen = torch.Generator().manual_seed(0)
    healed = heal_offered = False
    for _ in range(60):
        st = env.jax_state.state
        health = torch.from_numpy(np.array(st.unit_health))
        pos = np.array(st.unit_positions)
        alive = np.array(st.unit_alive)
        # The medivac's slots 5+j, from the state: ally j alive, not a medivac, damaged,
        # within 4 of the medivac (agent 9); slots for j = 10, 11 do not exist.
        dist = np.linalg.norm(pos[:, :10] - pos[:, 9:10], axis=-1)
        want = alive[:, :10] & (health[:, :10].numpy() < np.array([125.0] * 2 + [45.0] * 7 + [1e9]))
        want &= (dist < 4.0) & alive[:, 9:10]
        want[:, 9] = False
        running = ~out.done
        got = out.avail[:, 9, 5:].numpy()
        assert np.array_equal(got[running.numpy(), :10], want[running.numpy()])
        assert not got[:, 10:].any()
        heal_offered |= bool(got[running.numpy()].any())
        # Marauders never get a slot on the enemy medivac (enemy 11 -> action 16).
        assert not out.avail[:, :2, 16].any()
        # Medivac heals when it can, everybody else random.
        scores = torch.rand(out.avail.shape, generator=gen).masked_fill(~out.avail, -1.0)
        actions = scores.argmax(-1)
        heal = out.avail[:, 9, 5:15]
        actions[:, 9] = torch.where(heal.any(-1), 5 + heal.float().argmax(-1), STOP)
        prev = health
        out = env.step(actions)
        now = torch.from_numpy(np.array(env.jax_state.state.unit_health))
        healed |= bool(((now[:, :10] > prev[:, :10]) & running[:, None]).any())
        if bool(out.done.all()):
            break
    assert heal_offered and healed
    assert bool(jnp.all(env.jax_state.state.unit_energy[:, 9] >= 0))


def test_ddn_env_applies_medivac_win_and_loss(mmm2) -> None:
    env = mmm2
    env.reset()
    key, state, *rest = env._carry
    inner = state.state
    alive = np.array(inner.unit_alive)
    health = np.array(inner.unit_health)
    # Battle 0: every enemy but the medivac dead. Battle 1: only the ally medivac left.
    alive[0, 10:21] = False
    alive[1, :9] = False
    health[~alive] = 0.0
    inner = inner.replace(unit_alive=jnp_array(alive), unit_health=jnp_array(health))
    env._carry = (key, state.replace(state=inner), *rest)
    out = env.step(torch.full((3, 10), STOP, dtype=torch.long))
    assert out.terminated.tolist() == [True, True, False]
    assert out.won.tolist() == [True, False, False]
    assert float(out.reward[0]) >= 10.0  # the win bonus (1) times reward_scale
    assert bool(env.jax_state.state.unit_alive[1, 9])  # lost with its medivac alive


def jnp_array(x: np.ndarray):
    import jax.numpy as jnp

    return jnp.asarray(x)


def test_2s_vs_1sc_layout_and_the_crawler_stays(sc) -> None:
    out = sc.reset()
    start = np.array(sc.jax_state.state.unit_positions)
    assert np.array_equal(start[:, 2], np.tile(np.float32([13.92, 20.04]), (3, 1)))
    stalkers = np.array([[11.12, 10.34], [16.98, 10.37]], dtype=np.float32)
    assert (np.abs(start[:, :2] - stalkers) <= 1.0 + 1e-5).all()
    assert not np.array_equal(start[0, :2], start[1, :2])  # noise per battle
    gen = torch.Generator().manual_seed(1)
    for _ in range(80):
        scores = torch.rand(out.avail.shape, generator=gen).masked_fill(~out.avail, -1.0)
        # Mostly walk north, towards the crawler, so that it fights.
        north = torch.rand(out.avail.shape[:2], generator=gen) < 0.5
        actions = torch.where(north & out.avail[..., 0], 0, scores.argmax(-1))
        out = sc.step(actions)
        pos = np.array(sc.jax_state.state.unit_positions)
        assert np.array_equal(pos[:, 2], start[:, 2])
        if bool(out.done.all()):
            break
    assert float(np.array(sc.jax_state.state.unit_health)[:, :2].min()) < 160.0  # it shot


# ------------------------------------------------------------------ old maps unchanged
@pytest.mark.parametrize(("map_name", "all_rules"), [("3m", True), ("3s5z", True), ("3s5z", False)])
def test_old_maps_match_raw_jaxmarl_with_the_extension_active(
    map_name: str, all_rules: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ddn runs JaxMARL's maps on the extended engine, which skips the new rules there
    (nothing to act on); ``all_rules`` runs every one of them anyway (healing pass, shot
    filter, pinned push, masks, heuristic wrapper), to check they reduce to SMAX's
    arithmetic exactly."""
    from test_smax import RawSMAX, _assert_same, _torch, random_available

    from ddn.envs.smax.engine import UnitsSMAX

    if all_rules:
        monkeypatch.setattr(UnitsSMAX, "skip_unused_rules", False)
        monkeypatch.setattr(smax_mod, "_build", smax_mod._build.__wrapped__)  # no cache
    b = 4
    env = ddn.envs.make("smax", num_envs=b, seed=21, map_name=map_name)
    engine = env.jaxmarl_env._env
    assert isinstance(engine, UnitsSMAX) and engine.unit_type_bits == 6
    assert not bool(engine.unit_type_shields.any())  # SMAX's stalker keeps its 160 health
    assert engine.extended == all_rules
    out = env.reset()
    raw = RawSMAX(map_name, env.spec.episode_limit, env.reset_keys)
    _assert_same(out, raw, torch.ones(b, dtype=torch.bool))
    gen = torch.Generator().manual_seed(8)
    ended = 0
    for _ in range(env.spec.episode_limit):
        running = ~out.done
        actions = random_available(out.avail, gen)
        out = env.step(actions)
        rewards, dones = raw.step(actions)
        _assert_same(out, raw, running)
        raw_reward = _torch(rewards["ally_0"]) * smax_mod.DEFAULT_REWARD_SCALE
        assert torch.equal(out.reward[running], raw_reward[running])
        assert torch.equal(out.done[running], _torch(dones["__all__"])[running])
        ended += int((running & out.terminated).sum())
        if bool(out.done.all()):
            break
    assert ended > 0  # battles were fought to the end, not only timed out
