"""The episode replay buffer: ring insertion, padding, sampling, persistence."""

from __future__ import annotations

import pytest
import torch

from ddn.buffer import EpisodeBatch, EpisodeBuffer, episode_bytes
from ddn.envs import EnvSpec

SPEC = EnvSpec(n_agents=2, obs_dim=3, state_dim=4, n_actions=5, episode_limit=6)


def make_batch(ids: list[int], lengths: list[int], spec: EnvSpec = SPEC) -> EpisodeBatch:
    """Episodes tagged by ``ids`` (every value of episode k encodes ids[k]), trimmed to the
    longest length, as the collector returns them."""
    e = len(ids)
    t = max(lengths)
    batch = EpisodeBatch.zeros(e, spec, "cpu").index(slice(None), t)
    batch = EpisodeBatch(**{k: v.clone() for k, v in batch.tensors().items()})
    g = torch.Generator().manual_seed(sum(ids))
    for k, (ep, n) in enumerate(zip(ids, lengths, strict=True)):
        batch.obs[k, : n + 1] = ep + torch.rand(n + 1, spec.n_agents, spec.obs_dim, generator=g)
        batch.state[k, : n + 1] = ep + torch.rand(n + 1, spec.state_dim, generator=g)
        batch.avail[k, : n + 1] = (
            torch.rand(n + 1, spec.n_agents, spec.n_actions, generator=g) < 0.5
        )
        batch.avail[k, : n + 1, :, 0] = True
        batch.actions[k, :n] = torch.randint(0, spec.n_actions, (n, spec.n_agents), generator=g)
        batch.reward[k, :n] = float(ep)
        batch.filled[k, :n] = True
        batch.terminated[k, n - 1] = n < spec.episode_limit
    return batch


def stored(buf: EpisodeBuffer, slot: int, length: int) -> EpisodeBatch:
    return buf.data.index(torch.tensor([slot]), length)


def assert_same_episode(buf: EpisodeBuffer, slot: int, batch: EpisodeBatch, k: int) -> None:
    n = int(batch.filled[k].sum())
    got = stored(buf, slot, batch.max_t)
    want = batch.index(torch.tensor([k]))
    for name, x in want.tensors().items():
        assert torch.equal(got.tensors()[name], x), name
    # Beyond the inserted length the slot is zero padding.
    full = buf.data.index(torch.tensor([slot]))
    t_limit = buf.spec.episode_limit
    assert not full.filled[0, n:].any()
    if batch.max_t < t_limit:
        for name, x in full.tensors().items():
            start = batch.max_t + 1 if x.shape[1] == t_limit + 1 else batch.max_t
            assert not x[0, start:].any(), name


def test_zeros_shapes_and_dtypes():
    b = EpisodeBatch.zeros(3, SPEC, "cpu")
    assert b.obs.shape == (3, 7, 2, 3) and b.state.shape == (3, 7, 4)
    assert b.avail.shape == (3, 7, 2, 5) and b.avail.dtype == torch.bool
    assert b.actions.shape == (3, 6, 2) and b.actions.dtype == torch.long
    assert b.reward.shape == (3, 6) and b.reward.dtype == torch.float32
    assert b.terminated.dtype == torch.bool and b.filled.dtype == torch.bool
    assert b.num_episodes == 3 and b.max_t == 6


def test_insert_and_read_back():
    buf = EpisodeBuffer(5, SPEC)
    batch = make_batch([1, 2], [3, 6])
    buf.insert(batch)
    assert (buf.cursor, buf.size) == (2, 2)
    assert buf.can_sample(2) and not buf.can_sample(3)
    assert_same_episode(buf, 0, batch, 0)
    assert_same_episode(buf, 1, batch, 1)
    assert not buf.data.filled[2:].any()


def test_wrap_around_overwrites_the_oldest():
    buf = EpisodeBuffer(5, SPEC)
    batches = [
        make_batch([1, 2, 3], [2, 6, 4]),
        make_batch([4, 5, 6], [6, 1, 3]),
        make_batch([7, 8, 9], [5, 2, 2]),
    ]
    buf.insert(batches[0])
    assert (buf.cursor, buf.size) == (3, 3)
    buf.insert(batches[1])
    assert (buf.cursor, buf.size) == (1, 5)
    buf.insert(batches[2])
    assert (buf.cursor, buf.size) == (4, 5)
    # Inserts go to slots 0,1,2 | 3,4,0 | 1,2,3: episodes 1-4 are overwritten.
    assert buf.data.reward[:, 0].tolist() == [6.0, 7.0, 8.0, 9.0, 5.0]
    assert_same_episode(buf, 0, batches[1], 2)
    assert_same_episode(buf, 1, batches[2], 0)
    assert_same_episode(buf, 2, batches[2], 1)
    assert_same_episode(buf, 3, batches[2], 2)
    assert_same_episode(buf, 4, batches[1], 1)


def test_shorter_episode_over_a_longer_one_is_zero_padded():
    buf = EpisodeBuffer(1, SPEC)
    long = make_batch([5], [6])
    buf.insert(long)
    short = make_batch([3], [2])
    buf.insert(short)
    assert_same_episode(buf, 0, short, 0)
    assert int(buf.data.filled[0].sum()) == 2
    assert not buf.data.reward[0, 2:].any()
    assert not buf.data.obs[0, 3:].any() and not buf.data.avail[0, 3:].any()


def test_insert_more_than_capacity_fails():
    buf = EpisodeBuffer(2, SPEC)
    with pytest.raises(ValueError, match="cannot insert 3 episodes"):
        buf.insert(make_batch([1, 2, 3], [1, 1, 1]))


def test_sample_distinct_episodes_trimmed_to_the_longest():
    buf = EpisodeBuffer(8, SPEC)
    lengths = [1, 2, 3, 2, 1, 3, 2, 1]
    buf.insert(make_batch(list(range(1, 9)), lengths))
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(50):
        s = buf.sample(4, generator=g)
        ids = s.reward[:, 0].long().tolist()
        assert len(set(ids)) == 4
        seen.update(ids)
        longest = max(lengths[i - 1] for i in ids)
        assert s.max_t == longest
        assert s.obs.shape[1] == longest + 1
        assert s.filled.sum(dim=1).tolist() == [lengths[i - 1] for i in ids]
        # Each sampled episode matches what the buffer holds for it.
        for k, ep in enumerate(ids):
            whole = buf.data.index(torch.tensor([ep - 1]), longest)
            for name, x in whole.tensors().items():
                assert torch.equal(s.tensors()[name][k], x[0]), name
    assert seen == set(range(1, 9))


def test_sample_only_from_filled_slots():
    buf = EpisodeBuffer(10, SPEC)
    buf.insert(make_batch([1, 2, 3], [2, 2, 2]))
    for seed in range(20):
        s = buf.sample(3, generator=torch.Generator().manual_seed(seed))
        assert sorted(s.reward[:, 0].tolist()) == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="cannot sample 4"):
        buf.sample(4)


def test_sample_is_uniform_over_episodes():
    buf = EpisodeBuffer(6, SPEC)
    buf.insert(make_batch(list(range(1, 7)), [1] * 6))
    g = torch.Generator().manual_seed(1)
    counts = torch.zeros(7)
    draws = 3000
    for _ in range(draws):
        counts[buf.sample(2, generator=g).reward[:, 0].long()] += 1
    expected = draws * 2 / 6
    chi2 = float(((counts[1:] - expected) ** 2 / expected).sum())
    assert chi2 < 25.0  # 5 degrees of freedom: p ~ 1e-4


def test_sample_is_reproducible_with_a_generator():
    buf = EpisodeBuffer(8, SPEC)
    buf.insert(make_batch(list(range(1, 9)), [3, 1, 2, 3, 1, 2, 3, 1]))
    a = buf.sample(3, generator=torch.Generator().manual_seed(7))
    b = buf.sample(3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.reward, b.reward)


def test_episode_bytes():
    s = SPEC
    t, n = s.episode_limit, s.n_agents
    want = (
        (t + 1) * n * s.obs_dim * 4  # obs float32
        + (t + 1) * s.state_dim * 4  # state float32
        + (t + 1) * n * s.n_actions * 1  # avail bool
        + t * n * 8  # actions int64
        + t * 4  # reward float32
        + t  # terminated bool
        + t  # filled bool
    )
    assert episode_bytes(s) == want
    buf = EpisodeBuffer(3, s)
    held = sum(x.numel() * x.element_size() for x in buf.data.tensors().values())
    assert held == 3 * want


def test_state_dict_round_trip(tmp_path):
    buf = EpisodeBuffer(4, SPEC)
    buf.insert(make_batch([1, 2, 3], [2, 6, 4]))
    buf.insert(make_batch([4, 5], [1, 3]))
    path = tmp_path / "buffer.pt"
    torch.save(buf.state_dict(), path)
    loaded = EpisodeBuffer(4, SPEC)
    loaded.load_state_dict(torch.load(path, weights_only=True))
    assert (loaded.cursor, loaded.size) == (buf.cursor, buf.size) == (1, 4)
    for name, x in buf.data.tensors().items():
        assert torch.equal(loaded.data.tensors()[name], x), name
    a = buf.sample(4, generator=torch.Generator().manual_seed(3))
    b = loaded.sample(4, generator=torch.Generator().manual_seed(3))
    for name, x in a.tensors().items():
        assert torch.equal(b.tensors()[name], x), name


def test_load_state_dict_copies_the_tensors():
    buf = EpisodeBuffer(2, SPEC)
    buf.insert(make_batch([1], [2]))
    state = {
        k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in buf.state_dict().items()
    }
    other = EpisodeBuffer(2, SPEC)
    other.load_state_dict(state)
    state["reward"].fill_(99.0)
    assert float(other.data.reward[0, 0]) == 1.0


@pytest.mark.parametrize("capacity", [3, 5])
def test_load_state_dict_shape_mismatch(capacity):
    buf = EpisodeBuffer(4, SPEC)
    other = EpisodeBuffer(capacity, SPEC)
    with pytest.raises(ValueError, match=r"saved buffer has capacity 4, expected"):
        other.load_state_dict(buf.state_dict())


def test_snapshot_holds_only_the_filled_episodes(tmp_path):
    buf = EpisodeBuffer(64, SPEC)
    buf.insert(make_batch([1, 2, 3], [2, 6, 4]))
    state = buf.state_dict()
    assert state["obs"].shape[0] == 3 and state["size"] == 3
    torch.save(state, tmp_path / "part.pt")
    full = EpisodeBuffer(64, SPEC)
    for _ in range(22):
        full.insert(make_batch([1, 2, 3], [2, 6, 4]))
    torch.save(full.state_dict(), tmp_path / "full.pt")
    # A slice saved as is would carry the whole preallocated storage.
    assert (tmp_path / "part.pt").stat().st_size * 5 < (tmp_path / "full.pt").stat().st_size
    loaded = EpisodeBuffer(64, SPEC)
    loaded.load_state_dict(torch.load(tmp_path / "part.pt", weights_only=True))
    for name, x in buf.data.tensors().items():
        assert torch.equal(loaded.data.tensors()[name], x), name
    assert (loaded.cursor, loaded.size) == (3, 3)


def test_load_state_dict_other_spec_fails():
    buf = EpisodeBuffer(4, SPEC)
    other_spec = EnvSpec(n_agents=2, obs_dim=3, state_dim=4, n_actions=5, episode_limit=9)
    with pytest.raises(ValueError, match="expected"):
        EpisodeBuffer(4, other_spec).load_state_dict(buf.state_dict())
