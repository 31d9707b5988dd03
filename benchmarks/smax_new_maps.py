"""How winnable is SMAX 2s_vs_1sc? Scripted stalkers against the spine crawler.

Two scripted plans for the 2 stalkers, from their observations (centrally coordinated:
an upper-bound sketch for the learners, not a tuned optimum):

- ``one fight``: both walk in and shoot; the stalker the crawler is hitting steps out of
  its range once it has lost its shields (and more health than its partner), so that the
  crawler, which keeps its target while it is in range, switches to the partner; it then
  walks back in and shoots unharmed. The damage is shared, the battle is one engagement.
- ``recharge``: the same until both stalkers have lost their shields, then both pull back
  out of range until their shields have recharged (SC2's rule: 10 s without damage,
  then 2 per second), then the same fight again to the end.

Prints, per plan, the win rate over ``--battles`` battles, the crawler's mean health left
and the mean battle length (docs/smax.md). Needs the `smax` extra.

    python benchmarks/smax_new_maps.py [--battles 64] [--seed 0]
"""

from __future__ import annotations

import argparse

import torch

import ddn

MOVES = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]])  # actions 0-3
STOP, ATTACK = 4, 5  # the crawler is the only enemy: attack slot 0
SIGHT = 10.0  # the stalker's sight range: observed positions are divided by it
CRAWLER_RANGE = 7.0
SHIELD_FRACTION = 0.5  # 80 of the stalker's 160 health is shield
# Per-agent observation layout: the other stalker (15 features), the crawler (15: health,
# relative x, y, ...), then its own (12: health, x, y, cooldown, ...).
PARTNER_HP, CRAWLER_HP, CRAWLER_XY, OWN_HP = 0, 15, slice(16, 18), 30


def play(battles: int, seed: int, recharge: bool) -> tuple[float, float, float]:
    """Win rate, crawler health left and battle length of one plan."""
    env = ddn.envs.make("smax", num_envs=battles, seed=seed, map_name="2s_vs_1sc")
    out = env.reset()
    hp_before = out.obs[..., OWN_HP].clone()
    last_hit = torch.full((battles, 2), -1)
    stepping_out = torch.zeros(battles, 2, dtype=torch.bool)
    phase = torch.zeros(battles, dtype=torch.long)  # 0 fight, 1 recharge, 2 fight on
    low = torch.zeros(battles, 2)
    length = torch.zeros(battles)
    t = 0
    while not bool(out.done.all()):
        obs, avail = out.obs, out.avail
        hp = obs[..., OWN_HP]
        alive = hp > 0
        last_hit = torch.where(hp < hp_before - 1e-6, t, last_hit)
        hp_before = hp.clone()
        partner_hp = obs[..., PARTNER_HP]
        targeted = last_hit > last_hit.flip(-1)  # hit more recently than the partner
        rel = obs[..., CRAWLER_XY] * SIGHT
        dist = rel.norm(dim=-1)

        shields_gone = (hp <= SHIELD_FRACTION + 1e-4) | ~alive
        pull_back = recharge & (phase == 0) & shields_gone.all(-1)
        low = torch.where(pull_back[:, None], hp, low)
        phase = torch.where(pull_back, 1, phase)
        recharged = (hp >= low + SHIELD_FRACTION - 1e-3) | ~alive
        phase = torch.where((phase == 1) & recharged.all(-1), 2, phase)

        # In the first fight a stalker swaps out once its shields are gone; later, once
        # it is 10% of its health below its partner.
        limit = torch.where((phase == 0)[:, None], SHIELD_FRACTION + 1e-4, partner_hp - 0.1)
        swap = targeted & (partner_hp > 0) & (hp < limit) & (partner_hp > hp)
        stepping_out = (stepping_out | swap) & (dist <= CRAWLER_RANGE + 0.3)

        toward = (rel @ MOVES.T).argmax(-1)
        away = (-rel @ MOVES.T).argmax(-1)
        seen = obs[..., CRAWLER_HP] > 0
        act = torch.where(seen, toward, 0)  # north until the crawler is in sight
        act = torch.where(avail[..., ATTACK], ATTACK, act)
        act = torch.where(stepping_out, away, act)
        wait_out = (phase == 1)[:, None]
        act = torch.where(wait_out, torch.where(dist < CRAWLER_RANGE + 2.5, away, STOP), act)
        act = torch.where(avail.gather(-1, act[..., None])[..., 0], act, STOP)
        length += ~out.done
        out = env.step(act)
        t += 1
    crawler = env.jax_state.state.unit_health[:, 2]
    return out.won.float().mean().item(), float(crawler.mean()), float(length.mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--battles", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    for name, recharge in (("one fight", False), ("recharge", True)):
        won, crawler, length = play(args.battles, args.seed, recharge)
        print(
            f"{name:>9}: won {won:.3f} of {args.battles} battles, crawler health left "
            f"{crawler:.1f} / 300, {length:.0f} steps per battle",
            flush=True,
        )


if __name__ == "__main__":
    main()
