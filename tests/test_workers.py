"""The process-worker adapter (``ddn.envs.adapters``) and ``--env smac``, against a fake SC2.

StarCraft II cannot run here: ``tests/fake_sc2.py`` has ``StarCraft2Env``'s exact
PyMARL interface with deterministic dynamics and injectable crashes and hangs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import ddn.envs.adapters.smac as smac_mod
from ddn.envs import make
from ddn.envs.adapters.factories import ImportFactory
from ddn.envs.adapters.pool import MultiAgentEnvVec
from ddn.envs.errors import MissingExtraError, WorkerError

sys.path.insert(0, str(Path(__file__).parent))  # fake_sc2, here and (via sys.path) in workers
import fake_sc2

FAKE = "fake_sc2:StarCraft2Env"


def _policy(avail: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    noise = torch.rand(avail.shape, generator=gen)
    return noise.masked_fill(~avail, -1.0).argmax(-1)


def _rollout(env: MultiAgentEnvVec, seed: int = 0) -> tuple[list, list]:
    gen = torch.Generator().manual_seed(seed)
    out = env.reset()
    trace = [out]
    actions = []
    while not bool(out.done.all()):
        a = _policy(out.avail, gen)
        actions.append(a)
        out = env.step(a)
        trace.append(out)
    return trace, actions


@pytest.mark.slow
def test_equivalence_simple() -> None:
    """One batch, every step compared to the raw fake (in-process and workers agree)."""
    outs = {}
    for processes in (False, True):
        env = MultiAgentEnvVec(2, seed=3, factory=ImportFactory(FAKE), processes=processes)
        trace, actions = _rollout(env, seed=2)
        outs[processes] = (trace, env.seeds)
        raws = [fake_sc2.StarCraft2Env(seed=s) for s in env.seeds]
        for b, raw in enumerate(raws):
            raw.reset()
            done = False
            for t, a in enumerate(actions):
                if done:
                    assert float(trace[t + 1].reward[b]) == 0.0
                    continue
                r, done, info = raw.step(a[b].tolist())
                out = trace[t + 1]
                assert float(out.reward[b]) == pytest.approx(r)
                assert torch.equal(out.obs[b], torch.tensor(np.stack(raw.get_obs())))
                assert torch.equal(out.state[b], torch.tensor(raw.get_state()))
                assert torch.equal(
                    out.avail[b], torch.tensor(raw.get_avail_actions(), dtype=torch.bool)
                )
                assert bool(out.won[b]) == bool(info.get("battle_won", False))
                limit = bool(info.get("episode_limit", False))
                assert bool(out.truncated[b]) == (done and limit)
                assert bool(out.terminated[b]) == (done and not limit)
        env.close()
    (t0, s0), (t1, s1) = outs[False], outs[True]
    assert s0 == s1 and len(t0) == len(t1)
    assert all(torch.equal(a.obs, b.obs) for a, b in zip(t0, t1, strict=True))


@pytest.mark.slow
def test_crashed_and_hung_workers_are_restarted(tmp_path: Path) -> None:
    """Step 2: one worker dies; step 3: another hangs. Both episodes are dropped."""
    kwargs = {"episode_limit": 30, "crash_at": 2, "hang_at": 3, "marker": str(tmp_path / "m")}
    env = MultiAgentEnvVec(3, seed=0, factory=ImportFactory(FAKE, kwargs), step_timeout=1.0)
    try:
        gen = torch.Generator().manual_seed(0)
        out = env.reset()
        t0 = time.monotonic()
        while not bool(out.done.all()):
            out = env.step(_policy(out.avail, gen))
        assert env.restarts == 2 and env.dropped_episodes == 2
        dropped = env.dropped
        assert int(dropped.sum()) == 2
        assert bool(out.truncated[dropped].all()) and not bool(out.terminated[dropped].any())
        assert not bool(out.won[dropped].any())
        assert time.monotonic() - t0 < 30
        # the run goes on: the next batch is whole
        out = env.reset()
        assert not bool(env.dropped.any())
        while not bool(out.done.all()):
            out = env.step(_policy(out.avail, gen))
        assert env.restarts == 2 and env.dropped_episodes == 2
        assert not bool(env.dropped.any())
    finally:
        env.close()


@pytest.mark.slow
def test_game_error_and_self_restart_drop_the_episode(tmp_path: Path) -> None:
    """A lost connection to the game (ConnectionError) restarts the worker; the env's
    own bugs stop the run instead (tests/test_epymarl.py)."""
    kwargs = {"game_error_at": 2, "self_restart_at": 4, "marker": str(tmp_path / "m")}
    env = MultiAgentEnvVec(2, seed=0, factory=ImportFactory(FAKE, kwargs), step_timeout=5.0)
    try:
        gen = torch.Generator().manual_seed(0)
        out = env.reset()
        while not bool(out.done.all()):
            out = env.step(_policy(out.avail, gen))
        # game_error_at: a worker restart; self_restart_at (the other copy): none
        assert env.restarts == 1 and env.dropped_episodes == 2
        assert bool(env.dropped.all()) and not bool(out.terminated.any())
    finally:
        env.close()


@pytest.mark.slow
def test_self_restart_is_dropped_without_process_restart(tmp_path: Path) -> None:
    kwargs = {"self_restart_at": 2, "marker": str(tmp_path / "m")}
    env = MultiAgentEnvVec(2, seed=0, factory=ImportFactory(FAKE, kwargs), processes=False)
    out = env.reset()
    gen = torch.Generator().manual_seed(0)
    while not bool(out.done.all()):
        out = env.step(_policy(out.avail, gen))
    assert env.restarts == 0 and env.dropped_episodes == 1 and int(env.dropped.sum()) == 1
    env.close()


@pytest.mark.slow
def test_build_errors_are_one_line_value_errors() -> None:
    with pytest.raises(WorkerError, match="not in the fake registry") as info:
        MultiAgentEnvVec(2, factory=ImportFactory(FAKE, {"map_name": "3z"}))
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match="module:callable"):
        make("pymarl", factory="fake_sc2.StarCraft2Env")
    with pytest.raises(ValueError, match="has no attribute"):
        make("pymarl", factory="fake_sc2:Nope")
    with pytest.raises(ValueError, match=r"needs env\.factory"):
        make("pymarl")


@pytest.mark.slow
def test_pymarl_entry_runs_a_user_env() -> None:
    env = make(
        "pymarl",
        num_envs=2,
        seed=1,
        factory=FAKE,
        factory_kwargs={"map_name": "5m"},
        processes=False,
        has_win_condition=True,
    )
    assert env.spec.n_agents == 5 and env.spec.has_win_condition
    trace, _ = _rollout(env)
    assert bool(trace[-1].done.all())
    env.close()


def test_smac_missing_gives_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "smac", None)  # import smac -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'ddn\[smac\]'") as info:
        make("smac", map_name="3s5z")
    assert "SC2PATH" in str(info.value) and isinstance(info.value, ValueError)


@pytest.mark.slow
def test_smac_adapter_against_the_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smac_mod, "SMAC_TARGET", FAKE)
    monkeypatch.setattr(smac_mod, "_preflight", lambda map_name: None)
    env = make("smac", num_envs=2, seed=0, map_name="3m", smac_kwargs={"episode_limit": 6})
    try:
        assert env.spec.has_win_condition and env.spec.episode_limit == 6
        trace, _ = _rollout(env)
        assert bool(trace[-1].done.all())
    finally:
        env.close()


@pytest.mark.slow
def test_training_loop_drops_broken_episodes_and_logs_the_count(tmp_path: Path) -> None:
    """A copy that SMAC-style restarts itself mid-episode: the loop keeps training, the
    broken episode never reaches the replay buffer, and the logs count it."""
    from ddn.config import resolve
    from ddn.experiment import Experiment
    from ddn.logging import read_metrics

    marker = str(tmp_path / "m")
    overrides = [
        f"env.factory={FAKE}", "env.processes=false", "env.has_win_condition=true",
        f"env.factory_kwargs={{self_restart_at: 2, marker: '{marker}'}}",
        "batch_size_run=2", "batch_size=2", "buffer_size=16", "test_nepisode=2",
        "test_interval=1000", "log_interval=10", "save_model=false", "rnn_hidden_dim=8",
        "mixing_embed_dim=4", "hypernet_embed=8", "device=cpu",
    ]  # fmt: skip
    cfg = resolve("pymarl", "qmix", overrides=overrides, t_max=60)
    exp = Experiment(cfg, tmp_path / "run", progress=False)
    exp.iteration()
    assert exp.env.dropped_episodes == 1
    assert exp.buffer.size == 1  # the dropped episode of the two was not stored
    exp.run()
    events = [e for e in read_metrics(tmp_path / "run" / "metrics.jsonl") if "env/restarts" in e]
    assert events and events[-1]["env/dropped_episodes"] == 1.0
