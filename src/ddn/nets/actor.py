"""Acting with a recurrent Q network: the one greedy actor.

The rollout (epsilon-greedy on top), greedy evaluation, ``ddn evaluate``/``replay``'s
policies and the deployed student all act through :class:`GreedyActor`: it encodes the
local inputs, advances the network one step, carries the recurrent state and the last
actions, and picks the best available action.
"""

from __future__ import annotations

import torch

from ddn.nets.agent import RecurrentQNetwork
from ddn.nets.masked import masked_argmax


def select_actions(
    q: torch.Tensor, avail: torch.Tensor, epsilon: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Epsilon-greedy over available actions: q, avail [B, N, A] -> actions [B, N].

    With probability epsilon an agent picks uniformly among its available actions;
    ``epsilon = 0`` draws nothing from ``generator``. The draws are made where the
    generator lives (a run's is on the CPU, see :mod:`ddn.rng`) and moved to ``q``'s
    device.
    """
    greedy = masked_argmax(q, avail)
    if epsilon <= 0.0:
        return greedy
    where = q.device if generator is None else generator.device
    noise = torch.rand(avail.shape, device=where, generator=generator).to(q.device)
    random = noise.masked_fill(~avail, -1.0).argmax(dim=-1)
    draw = torch.rand(greedy.shape, device=where, generator=generator).to(q.device)
    return torch.where(draw < epsilon, random, greedy)


class GreedyActor:
    """Acts with ``network`` in ``batch`` episodes at once, one step per :meth:`act`.

    :meth:`reset` starts new episodes (called on construction): it zeroes the recurrent
    state and marks "no previous action" (-1, an all-zero one-hot in x_i).
    """

    def __init__(
        self, network: RecurrentQNetwork, device: torch.device | str = "cpu", batch: int = 1
    ) -> None:
        self.network = network
        self.device = torch.device(device)
        self.reset(batch)

    def reset(self, batch: int) -> None:
        self.hidden = self.network.initial_hidden(batch, self.device)
        self.last_actions = torch.full(
            (batch, self.network.n_agents), -1, dtype=torch.long, device=self.device
        )

    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        avail: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
        epsilon: float = 0.0,
        generator: torch.Generator | None = None,
        privileged_obs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """obs [B, N, O], avail [B, N, A] bool (None: every action), state [B, S] (read
        only by networks that read the state), privileged_obs [B, N, O~] (the env's
        privileged observation, where it has one) -> actions [B, N]: greedy, or
        epsilon-greedy with ``epsilon > 0`` (drawn from ``generator``). What o_i in x_i
        is, the network says (:meth:`~ddn.nets.agent.RecurrentQNetwork.observe`)."""
        net = self.network
        x = net.inputs.encode(net.observe(obs, avail, privileged_obs), self.last_actions)
        q, self.hidden = net.step(x, self.hidden, state if net.reads_state else None)
        if avail is None:
            avail = torch.ones_like(q, dtype=torch.bool)
        actions = select_actions(q, avail, epsilon, generator)
        self.last_actions = actions
        return actions
