"""How winnable is SMAX 2s_vs_1sc? A scripted kiting policy against the spine crawler.

Each stalker waits just outside the crawler's range (7), steps in when its weapon is
ready so that it lands within its own range (6), fires, and steps out while it cools
down. Both stalkers share the cooldown, so they fire together. Prints the win rate over
``--battles`` battles and the crawler's mean health left, for each crawler cooldown in
``--cooldowns`` (docs/smax.md: 1.85 s is the shipped normal-speed value, 1.32 s the
"faster" one). An upper-bound sketch for the learners, not a tuned optimum.

    python benchmarks/smax_new_maps.py [--battles 64] [--cooldowns 1.85 1.32] [--seed 0]

Needs the `smax` extra. Overriding the cooldown edits ``smax_units``' table in this
process only, before the environment is built.
"""

from __future__ import annotations

import argparse

import torch

import ddn
from ddn.envs import smax as smax_env

MOVES = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]])  # actions 0-3
STALKER_STEP = 4.13 * 0.5  # distance a stalker covers in one env step (8 x 1/16 s)
SIGHT = 10.0  # the stalker's sight range: observed positions are divided by it


def kite(out: ddn.envs.EnvOutput) -> torch.Tensor:
    """The volley policy for the 2 stalkers, from their observations.

    Per agent the observation holds the other stalker (15 features), the crawler (15:
    health, relative x, y, ...), then its own (12: health, x, y, cooldown / max, ...).
    """
    obs, avail = out.obs, out.avail
    rel = obs[..., 16:18] * SIGHT  # the crawler, relative to the stalker
    seen = obs[..., 15] > 0
    ready = obs[..., 33] <= 0  # own weapon cooldown
    dist = rel.norm(dim=-1)
    land = (MOVES * STALKER_STEP - rel[..., None, :]).norm(dim=-1)  # distance after each move
    into_range = land < 5.95
    best_in = torch.where(into_range, land, -1.0).argmax(-1)  # the farthest spot in range
    waiting = (land > 7.05) & (land < 8.05)
    best_wait = torch.where(waiting, -land, -99.0).argmax(-1)
    toward = (rel @ MOVES.T).argmax(-1)
    away = (-rel @ MOVES.T).argmax(-1)
    act = torch.where(seen, 4, 0)  # north until the crawler is seen, then stop
    act = torch.where(seen & ready & avail[..., 5], 5, act)
    act = torch.where(
        seen & ready & ~avail[..., 5], torch.where(into_range.any(-1), best_in, toward), act
    )
    cooling_close = seen & ~ready & (dist < 7.05)
    act = torch.where(cooling_close, torch.where(waiting.any(-1), best_wait, away), act)
    return torch.where(avail.gather(-1, act[..., None])[..., 0], act, 4)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--battles", type=int, default=64)
    p.add_argument("--cooldowns", type=float, nargs="+", default=[1.85, 1.32])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    _, _, smax_units = smax_env._import_jax()
    table = smax_units._TABLE["unit_type_weapon_cooldowns"]
    for cooldown in args.cooldowns:
        smax_units._TABLE["unit_type_weapon_cooldowns"] = (*table[:-1], cooldown)
        smax_env._build.cache_clear()
        env = ddn.envs.make("smax", num_envs=args.battles, seed=args.seed, map_name="2s_vs_1sc")
        out = env.reset()
        while not bool(out.done.all()):
            out = env.step(kite(out))
        crawler = env.jax_state.state.unit_health[:, 2]
        print(
            f"crawler cooldown {cooldown:.2f} s: won {out.won.float().mean().item():.3f} of "
            f"{args.battles} battles, crawler health left {float(crawler.mean()):.1f} / 300",
            flush=True,
        )
    smax_units._TABLE["unit_type_weapon_cooldowns"] = table


if __name__ == "__main__":
    main()
