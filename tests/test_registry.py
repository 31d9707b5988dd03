"""The environment registry: names, documented parameters, helpful errors."""

from __future__ import annotations

import pytest

from ddn.envs import get_entry, list_envs, make
from ddn.envs.base import VecEnv

PAPER_PRESET = {
    "n_agents": 8,
    "n_prey": 8,
    "height": 10,
    "width": 10,
    "view": 5,
    "capture_reward": 10.0,
    "punishment": 2.0,
    "episode_limit": 200,
    "privileged_obs": False,  # the unlimited-sight observation (CTDS's teacher), off by default
}


def test_builtin_envs_are_listed():
    envs = list_envs()
    assert {"predator_prey", "matrix"} <= set(envs)
    assert list(envs) == sorted(envs)
    for name, entry in envs.items():
        assert entry.name == name
        assert entry.description


def test_predator_prey_parameters_and_defaults():
    params = get_entry("predator_prey").params()
    assert params == PAPER_PRESET
    assert list(params) == list(PAPER_PRESET)  # documented order
    # Protocol arguments are not parameters.
    assert not {"num_envs", "seed", "device"} & set(params)


def test_matrix_parameters():
    assert set(get_entry("matrix").params()) == {"payoff"}


@pytest.mark.parametrize("name", ["predator_prey", "matrix"])
def test_make_builds_num_envs(name):
    env = make(name, num_envs=3, seed=1)
    assert isinstance(env, VecEnv)
    assert env.num_envs == 3 and env.seed == 1
    out = env.reset()
    assert out.obs.shape[:2] == (3, env.spec.n_agents)


def test_parameter_override():
    env = make("predator_prey", n_agents=3, n_prey=2, height=6, width=7, view=3)
    assert env.spec.n_agents == 3
    assert env.spec.obs_dim == 3 * 3 * 3
    assert env.spec.state_dim == 6 * 7 * 3


def test_typo_suggestions():
    with pytest.raises(ValueError, match="Did you mean 'predator_prey'"):
        get_entry("predator_pray")
    with pytest.raises(ValueError, match="Did you mean 'matrix'"):
        make("matrx")
    with pytest.raises(ValueError, match="Did you mean 'episode_limit'"):
        make("predator_prey", episode_limt=10)


def test_unknown_name_without_close_match_lists_valid():
    with pytest.raises(ValueError, match="unknown environment 'zzz'") as info:
        get_entry("zzz")
    assert "Did you mean" not in str(info.value)
    assert "matrix" in str(info.value) and "predator_prey" in str(info.value)


def test_unknown_parameter_lists_defaults():
    with pytest.raises(ValueError, match=r"Valid parameters: .*episode_limit=200"):
        make("predator_prey", colour="red")
