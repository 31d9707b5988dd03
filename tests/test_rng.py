"""The run's random streams (ddn.rng): one seeded generator per purpose."""

from __future__ import annotations

import pytest
import torch

from ddn.config import resolve
from ddn.envs import make
from ddn.experiment import Experiment, build_learner
from ddn.rng import EXPLORATION, IDM_MASK, REPLAY, seeded_generator, stream_seed
from ddn.rollout import Collector

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [
    "env.n_agents=3", "env.n_prey=1", "env.height=5", "env.width=5", "env.episode_limit=20",
    "batch_size_run=4", "batch_size=8", "buffer_size=64", "t_max=200", "test_nepisode=0",
    "rnn_hidden_dim=16", "mixing_embed_dim=8", "hypernet_embed=16", "fusion_dim=8",
    "device=cpu",
]  # fmt: skip


def test_stream_seeds_differ_by_purpose_and_by_run_seed_and_repeat():
    seeds = {stream_seed(s, p) for s in range(4) for p in (EXPLORATION, REPLAY, IDM_MASK)}
    assert len(seeds) == 12
    assert stream_seed(7, REPLAY) == stream_seed(7, REPLAY)
    assert all(0 <= s < 2**63 for s in seeds)
    a = torch.rand(5, generator=seeded_generator(3, EXPLORATION))
    assert torch.equal(a, torch.rand(5, generator=seeded_generator(3, EXPLORATION)))
    assert not torch.equal(a, torch.rand(5, generator=seeded_generator(3, REPLAY)))


def test_an_experiment_draws_each_purpose_from_its_own_seeded_generator(tmp_path):
    cfg = resolve("predator_prey", "ddn", overrides=[*TINY, "seed=5"])
    exp = Experiment(cfg, tmp_path / "run", progress=False)
    streams = {
        EXPLORATION: exp.collector.generator,
        REPLAY: exp.buffer.generator,
        IDM_MASK: exp.learner.idm_generator,
    }
    assert len({id(g) for g in streams.values()}) == 3
    for purpose, generator in streams.items():
        assert torch.equal(generator.get_state(), seeded_generator(5, purpose).get_state())
    state = exp.state()
    assert set(state["rng"]) >= {EXPLORATION, REPLAY}
    assert "idm_generator" in state["learner"]


def test_exploration_does_not_read_or_shift_torchs_global_generator():
    """Collected episodes depend on the exploration generator only: reseeding torch's
    global generator in between changes nothing, and collecting leaves it as it was."""
    env_kw = {"n_agents": 3, "n_prey": 1, "height": 5, "width": 5, "episode_limit": 20}
    cfg = resolve("predator_prey", "qmix", overrides=TINY)
    batches = []
    for global_seed in (0, 1):
        env = make("predator_prey", num_envs=4, seed=0, **env_kw)
        torch.manual_seed(0)
        net = build_learner(cfg, env.spec, torch.device("cpu")).acting_network
        torch.manual_seed(global_seed)
        before = torch.get_rng_state()
        collector = Collector(env, torch.device("cpu"), seeded_generator(0, EXPLORATION))
        batch, _ = collector.run(net, epsilon=0.5)
        assert torch.equal(torch.get_rng_state(), before)
        batches.append(batch)
    assert torch.equal(batches[0].actions, batches[1].actions)
