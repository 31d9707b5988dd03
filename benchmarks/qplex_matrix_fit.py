"""QPLEX's mixer alone on the matrix game: a full-batch fit of the 9 joint actions.

No agents, no replay and no sampling noise: free per-agent Q tables (2 x 3, init
N(0, 0.1^2)) and ddn's QPLEXMixer fitted by Adam to the whole table
[[8,-12,-12],[-12,0,0],[-12,0,0]] with gradient-norm clipping 10, as the learner does.
Prints, for each seed, the loss and the payoff of the greedy joint action at 8 points
of training. A loss stuck at ~28.4 with greedy payoff 0 is QPLEX's local minimum on this
game (docs/training.md, "Success over seeds").

    python benchmarks/qplex_matrix_fit.py --seeds 4 --steps 2000 --lr 1e-3 --heads 4
"""

from __future__ import annotations

import argparse

import torch
from torch.nn import functional as F

from ddn.envs.native.matrix import NON_MONOTONIC
from ddn.nets.mixers import MixContext, QPLEXMixer


def fit(
    seed: int, steps: int, lr: float, heads: int, layers: int
) -> list[tuple[int, float, float]]:
    """(step, loss, payoff of the greedy joint action) at every eighth of training."""
    torch.manual_seed(seed)
    payoff = torch.tensor(NON_MONOTONIC)
    joint = torch.cartesian_prod(torch.arange(3), torch.arange(3))  # [9, 2]
    reward = payoff[joint[:, 0], joint[:, 1]]
    q = torch.nn.Parameter(torch.randn(2, 3) * 0.1)
    mixer = QPLEXMixer(2, 1, 3, n_heads=heads, adv_hypernet_layers=layers)
    params = [q, *mixer.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    ctx_fixed = {"state": torch.ones(9, 1), "actions_onehot": F.one_hot(joint, 3).float()}
    out = []
    for t in range(1, steps + 1):
        chosen = torch.stack([q[0, joint[:, 0]], q[1, joint[:, 1]]], dim=-1)
        ctx = MixContext(**ctx_fixed, max_qs=q.detach().max(-1).values.expand(9, 2))
        loss = ((mixer(chosen, ctx) - reward) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        if t % (steps // 8) == 0:
            greedy = q.argmax(-1)
            out.append((t, loss.item(), payoff[greedy[0], greedy[1]].item()))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    for seed in range(args.seeds):
        points = fit(seed, args.steps, args.lr, args.heads, args.layers)
        print(seed, " ".join(f"{t}:{loss:.2f}/{g:g}" for t, loss, g in points), flush=True)


if __name__ == "__main__":
    main()
