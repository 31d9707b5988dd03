"""The agents' local inputs x_i = [o_i, u_i^{t-1}, id_i] (ddn.nets.inputs)."""

from __future__ import annotations

import pytest
import torch

from ddn.nets.inputs import LocalInputs


def test_episode_inputs_by_hand():
    """E=1 episode of T=2 transitions, N=2 agents, O=1, A=3. Worked out by hand:
    step 0 has no previous action (zero one-hot), steps 1 and 2 the actions of steps 0
    and 1; the id is the agent's one-hot."""
    obs = torch.tensor([[[[0.5], [-1.0]], [[1.5], [2.0]], [[3.0], [4.0]]]])  # [1, 3, 2, 1]
    actions = torch.tensor([[[2, 0], [1, 1]]])  # [1, 2, 2]
    x = LocalInputs(obs_dim=1, n_agents=2, n_actions=3).episodes(obs, actions)
    expected = torch.tensor(
        [
            [[0.5, 0, 0, 0, 1, 0], [-1.0, 0, 0, 0, 0, 1]],  # t=0: no last action
            [[1.5, 0, 0, 1, 1, 0], [2.0, 1, 0, 0, 0, 1]],  # t=1: last actions 2, 0
            [[3.0, 0, 1, 0, 1, 0], [4.0, 0, 1, 0, 0, 1]],  # t=2: last actions 1, 1
        ]
    )
    assert torch.equal(x[0], expected)
    # [E, T+1] view of time-major storage: what the GRU reads without a copy.
    assert x.transpose(0, 1).is_contiguous()


@pytest.mark.parametrize(
    ("last_action", "agent_id"), [(True, True), (False, True), (True, False), (False, False)]
)
def test_switches_drop_their_parts_and_steps_encode_the_same(last_action, agent_id):
    g = torch.Generator().manual_seed(0)
    e, t, n, o, a = 3, 4, 2, 5, 6
    inputs = LocalInputs(o, n, a, last_action, agent_id)
    obs = torch.randn(e, t + 1, n, o, generator=g)
    actions = torch.randint(0, a, (e, t, n), generator=g)
    x = inputs.episodes(obs, actions)
    assert x.shape == (e, t + 1, n, inputs.dim)
    assert inputs.dim == o + a * last_action + n * agent_id
    assert torch.equal(x[..., :o], obs)  # x_i begins with o_i
    last = torch.cat((torch.full_like(actions[:, :1], -1), actions), dim=1)
    for k in range(t + 1):  # acting encodes one step at a time: the same x_i
        assert torch.equal(inputs.encode(obs[:, k], last[:, k]), x[:, k])
