"""``--env pettingzoo``: PettingZoo parallel envs through the PyMARL adapter.

Checked against the real MPE ``simple_spread`` (``pip install mpe2``; skipped without it)
and a small masked env defined here (action masks, dead agents, no ``state()``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pettingzoo = pytest.importorskip("pettingzoo")

from ddn.envs import make  # noqa: E402
from ddn.envs.adapters.pettingzoo import PettingZooEnv  # noqa: E402,F401  (registers "pettingzoo")

SPREAD = "mpe2:simple_spread_v3"


def _spread_or_skip() -> None:
    pytest.importorskip("mpe2")


def test_simple_spread_matches_the_raw_env() -> None:
    _spread_or_skip()
    from mpe2 import simple_spread_v3

    env = make("pettingzoo", num_envs=2, seed=7, env_fn=SPREAD, env_kwargs={"N": 3})
    spec = env.spec
    assert (spec.n_agents, spec.obs_dim, spec.state_dim, spec.n_actions) == (3, 18, 54, 5)
    assert spec.episode_limit == 25 and not spec.has_win_condition
    gen = torch.Generator().manual_seed(0)
    raws = [simple_spread_v3.parallel_env(N=3) for _ in env.seeds]
    for episode in range(2):  # the 2nd reset continues each copy's random stream
        out = env.reset()
        raw_obs = [
            raw.reset(seed=s if episode == 0 else None)[0]
            for raw, s in zip(raws, env.seeds, strict=True)
        ]
        for b, raw in enumerate(raws):
            expect = np.stack([raw_obs[b][a] for a in raw.possible_agents])
            assert torch.equal(out.obs[b], torch.from_numpy(expect))
            assert torch.equal(out.state[b], torch.from_numpy(raw.state()))
        assert bool(out.avail.all())  # MPE has no masks: every action
        t = 0
        while not bool(out.done.all()):
            actions = torch.randint(0, 5, (2, 3), generator=gen)
            out = env.step(actions)
            t += 1
            for b, raw in enumerate(raws):
                joint = {a: int(actions[b, k]) for k, a in enumerate(raw.possible_agents)}
                obs, rew, _, trunc, _ = raw.step(joint)
                assert float(out.reward[b]) == pytest.approx(sum(rew.values()), rel=1e-6)
                expect = np.stack([obs[a] for a in raw.possible_agents])
                assert torch.equal(out.obs[b], torch.from_numpy(expect))
                assert bool(out.truncated[b]) == all(trunc.values())
        assert t == 25 and bool(out.truncated.all()) and not bool(out.terminated.any())
    env.close()


class MaskedLine(pettingzoo.ParallelEnv):
    """Two agents on a line, action masks in ``infos``, agent_1 leaves at step 2.

    No ``state()``: the adapter must concatenate observations. Rewards 1 and 2 per step;
    both terminate at step 4.
    """

    metadata = {"name": "masked_line_v0"}  # noqa: RUF012

    def __init__(self) -> None:
        from gymnasium import spaces

        self.possible_agents = ["agent_0", "agent_1"]
        self._obs = {
            a: spaces.Box(-10, 10, (k + 1,), np.float32)
            for k, a in enumerate(["agent_0", "agent_1"])
        }
        self._act = {"agent_0": spaces.Discrete(3), "agent_1": spaces.Discrete(2)}

    def observation_space(self, agent: str):
        return self._obs[agent]

    def action_space(self, agent: str):
        return self._act[agent]

    def _observe(self) -> tuple[dict, dict]:
        obs = {
            a: np.full(self._obs[a].shape, self.t + k, np.float32)
            for k, a in enumerate(self.agents)
        }
        infos = {
            a: {"action_mask": np.array([1, 0, 1][: self._act[a].n], np.int8)} for a in self.agents
        }
        return obs, infos

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        self.t = 0
        return self._observe()

    def step(self, actions):
        assert set(actions) == set(self.agents)
        self.t += 1
        rewards = {a: float(k + 1) for k, a in enumerate(self.agents)}
        terms = {a: self.t >= 4 or (a == "agent_1" and self.t >= 2) for a in self.agents}
        truncs = {a: False for a in self.agents}
        self.agents = [a for a in self.agents if not terms[a]]
        obs, infos = self._observe()
        return obs, rewards, terms, truncs, infos


def test_masks_dead_agents_and_concatenated_state() -> None:
    env = make(
        "pettingzoo",
        num_envs=1,
        env_fn="test_pettingzoo:MaskedLine",
        episode_limit=10,
        reward_reduce="mean",
    )
    spec = env.spec
    assert (spec.n_agents, spec.obs_dim, spec.n_actions, spec.state_dim) == (2, 2, 3, 4)
    out = env.reset()
    assert out.avail[0].tolist() == [[True, False, True], [True, False, False]]
    assert out.obs[0].tolist() == [[0.0, 0.0], [1.0, 1.0]]  # agent_0 padded with 0
    assert torch.equal(out.state[0], out.obs[0].reshape(-1))
    rewards = []
    while not bool(out.done.all()):
        out = env.step(torch.tensor([[2, 0]]))
        rewards.append(float(out.reward[0]))
    assert rewards == [1.5, 1.5, 0.5, 0.5]  # mean over both agents; agent_1 gone after 2
    assert bool(out.terminated[0]) and not bool(out.truncated[0])
    env.reset()
    out = env.step(torch.tensor([[2, 0]]))
    out = env.step(torch.tensor([[2, 0]]))
    assert out.avail[0, 1].tolist() == [True, False, False]  # gone: no-op only
    assert out.obs[0, 1].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="not available"):
        env.step(torch.tensor([[1, 0]]))


def test_bad_envs_are_reported() -> None:
    _spread_or_skip()
    with pytest.raises(ValueError, match="only discrete actions"):
        make("pettingzoo", env_fn=SPREAD, env_kwargs={"continuous_actions": True})
    with pytest.raises(ValueError, match="cannot import"):
        make("pettingzoo", env_fn="no_such_module:env")


@pytest.mark.slow
def test_worker_processes_give_the_same_episodes() -> None:
    _spread_or_skip()
    outs = []
    for processes in (False, True):
        env = make("pettingzoo", num_envs=2, seed=3, env_fn=SPREAD, processes=processes)
        gen = torch.Generator().manual_seed(1)
        out = env.reset()
        trace = [out.obs]
        while not bool(out.done.all()):
            out = env.step(torch.randint(0, 5, (2, 3), generator=gen))
            trace.append(out.obs)
        outs.append(torch.stack(trace))
        env.close()
    assert torch.equal(outs[0], outs[1])


@pytest.mark.slow
def test_short_qmix_run(tmp_path: Path) -> None:
    _spread_or_skip()
    from ddn.cli import main

    rc = main(
        [
            "train",
            "--env",
            "pettingzoo",
            "--algo",
            "qmix",
            "--t-max",
            "400",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
            "--set",
            f"env.env_fn={SPREAD}",
            "--set",
            "test_nepisode=2",
            "--set",
            "batch_size=4",
            "--set",
            "batch_size_run=4",
        ]
    )
    assert rc in (0, None)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["finished"] and summary["t_env"] >= 400
