"""The unit types SMAX lacks (medivac, spine crawler) and the maps that need them.

Numbers only (the table JaxMARL's ``SMAX`` constructor takes, the new units' abilities,
healing, shields and energy, and the maps' layouts); the rules that use them are
:mod:`ddn.envs.smax.engine`'s. docs/smax.md sources every number. Imports jax (for the
arrays JaxMARL expects): import only after :func:`ddn.envs.smax.compiled._import_jax`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
from jaxmarl.environments.smax.smax_env import Scenario

# ----------------------------------------------------------------------------- unit table
# Indices into the unit tables; 0-5 are SMAX's own types (marine, marauder, stalker,
# zealot, zergling, hydralisk), 6 and 7 are new. docs/smax.md sources every number.
MEDIVAC = 6
SPINE_CRAWLER = 7
NUM_SMAX_TYPES = 6
NUM_UNIT_TYPES = 8

#: ``name: (SMAX's 6 values, medivac, spine crawler)``. The first six entries are
#: JaxMARL's constructor defaults, unchanged (a test compares them).
_TABLE: dict[str, tuple[Any, ...]] = {
    "unit_type_names": (
        "marine",
        "marauder",
        "stalker",
        "zealot",
        "zergling",
        "hydralisk",
        "medivac",
        "spine_crawler",
    ),
    "unit_type_shorthands": ("m", "M", "s", "Z", "z", "h", "v", "c"),
    # Speeds in game units per second at "faster" speed; the crawler does not move.
    "unit_type_velocities": (3.15, 2.25, 4.13, 3.15, 4.13, 3.15, 3.5, 0.0),
    # The medivac deals no damage (it heals, see HEAL_RATE); the crawler's 25 is its base
    # damage: SMAX models no bonus damage and no armour (its marauder and stalker omit
    # theirs too).
    "unit_type_attacks": (9.0, 10.0, 13.0, 8.0, 5.0, 12.0, 0.0, 25.0),
    # For the medivac this is its heal range.
    "unit_type_attack_ranges": (5.0, 6.0, 6.0, 2.0, 2.0, 5.0, 4.0, 7.0),
    "unit_type_sight_ranges": (9.0, 10.0, 10.0, 9.0, 8.0, 9.0, 11.0, 11.0),
    # Collision radii (the crawler's 2x2 footprint: game data 1.125).
    "unit_type_radiuses": (0.375, 0.5625, 0.625, 0.5, 0.375, 0.625, 0.75, 1.125),
    "unit_type_health": (45.0, 125.0, 160.0, 150.0, 35.0, 80.0, 150.0, 300.0),
    # Observations divide by the cooldown, so the medivac, which never fires, gets a
    # harmless 1.0 rather than 0 (its cooldown feature then reads 0 all game). The
    # crawler's 1.85 s is its normal-speed cooldown (1.32 s at "faster"): SMAX's stalker,
    # the crawler's only opponent, has its normal-speed 1.87 s (1.34 s at "faster"), and
    # only the matching unit keeps the game's crawler-vs-stalker timing (docs/smax.md).
    "unit_type_weapon_cooldowns": (0.61, 1.07, 1.87, 0.86, 0.5, 0.59, 1.0, 1.85),
}

#: Per-type abilities (same order). ``flying``: only units with ``hits_air`` can shoot
#: it and it does not collide with ground units. ``healable``: a biological ground unit,
#: what a medivac can heal (the zealot is biological in SC2; the stalker is not, nor is
#: a building). ``immobile``: never moves, never pushed.
FLAGS: dict[str, tuple[bool, ...]] = {
    "flying": (False, False, False, False, False, False, True, False),
    "hits_air": (True, False, True, False, False, True, False, False),
    "healable": (True, True, False, True, True, True, False, False),
    "immobile": (False, False, False, False, False, False, False, True),
}
#: HP healed per second (the medivac's 12.6 at "faster" speed = 9 HP/s at normal speed).
HEAL_RATE = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 12.6, 0.0)
#: Health regenerated per second (a zerg building on creep: the spine crawler).
HEALTH_REGEN = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.38)
#: Plasma shields: the part of a unit's health that regenerates out of combat. SMAX folds
#: the stalker's 80 HP + 80 shields into 160 health and the zealot's 100 + 50 into 150,
#: none of which regenerates, and its own maps keep it so unless asked (SMAX's
#: ``shields`` parameter); on the eight-type table (MMM2 and 2s_vs_1sc, where only
#: 2s_vs_1sc has a protoss unit) the top 80 of the stalker's 160 is shield. SC2: shields
#: take damage first and regenerate at 2 per second once the unit has taken no damage for
#: 10 s (normal speed, the time base of the stalker's and the crawler's cooldowns here;
#: docs/smax.md).
SHIELD = (0.0, 0.0, 80.0, 50.0, 0.0, 0.0, 0.0, 0.0)
SHIELD_REGEN = 2.0  #: shield points per second once regenerating
SHIELD_DELAY = 10.0  #: seconds without damage before shields regenerate
#: Energy at the start of a battle and its maximum (only the medivac has energy).
START_ENERGY = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 50.0, 0.0)
MAX_ENERGY = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 200.0, 0.0)

HP_PER_ENERGY = 3.0  #: a medivac spends 1 energy per 3 HP healed
ENERGY_REGEN = 0.7875  #: energy per second ("faster" speed; 0.5625 at normal speed)
MIN_START_ENERGY = 5.0  #: energy needed to start healing a new target


def unit_tables(num_types: int = NUM_UNIT_TYPES) -> dict[str, Any]:
    """The first ``num_types`` entries of the unit table, as JaxMARL ``SMAX`` kwargs."""
    if num_types not in (NUM_SMAX_TYPES, NUM_UNIT_TYPES):
        raise ValueError(f"num_types must be {NUM_SMAX_TYPES} or {NUM_UNIT_TYPES}")
    out: dict[str, Any] = {}
    for name, values in _TABLE.items():
        vals = values[:num_types]
        out[name] = list(vals) if isinstance(vals[0], str) else jnp.array(vals)
    return out


# ----------------------------------------------------------------------------- scenarios
@dataclasses.dataclass(frozen=True)
class UnitsMap:
    """A scenario on the extended engine: unit types, SMAC's episode limit, start layout.

    ``positions`` (one ``(x, y)`` per unit, allies first) fixes the start layout, with
    uniform noise of ``+-position_noise`` on mobile units; ``None`` keeps SMAX's default
    (the two teams around (8, 16) and (24, 16), +-2).
    """

    ally_types: tuple[int, ...]
    enemy_types: tuple[int, ...]
    episode_limit: int
    positions: tuple[tuple[float, float], ...] | None = None
    position_noise: float = 0.0

    def scenario(self) -> Scenario:
        types = jnp.array(self.ally_types + self.enemy_types, dtype=jnp.uint8)
        return Scenario(types, len(self.ally_types), len(self.enemy_types), False, False)


_M, _MD, _S, _V, _SC = 0, 1, 2, MEDIVAC, SPINE_CRAWLER  # marine, marauder, stalker, ...

#: The maps SMAX lacks. Unit order follows SMAC: its allies are sorted by unit type
#: (MMM maps: marauders, marines, the medivac last), and the enemies use the same order.
UNITS_MAPS: dict[str, UnitsMap] = {
    # SMAC's MMM2 map file (and SMAClite's): 3 enemy marauders; the paper's Table 1 prints 2.
    "MMM2": UnitsMap((_MD,) * 2 + (_M,) * 7 + (_V,), (_MD,) * 3 + (_M,) * 8 + (_V,), 180),
    # SMAClite's layout of SMAC's map: the crawler north, the stalkers about 10 away, just
    # outside their sight range of 10.
    "2s_vs_1sc": UnitsMap(
        (_S, _S), (_SC,), 300,
        positions=((11.12, 10.34), (16.98, 10.37), (13.92, 20.04)),
        position_noise=1.0,
    ),
}  # fmt: skip
