"""EPyMARL-v2 environments in the ``pymarl`` adapter (both APIs, detected or declared),
the env's own errors stopping the run at once, and what a dropped episode does to the
test means and to t_env."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from ddn.cli import main
from ddn.envs import make
from ddn.envs.adapters.pool import MultiAgentEnvVec
from ddn.envs.adapters.worker import is_game_failure
from ddn.envs.errors import EnvError
from ddn.evaluate import evaluate
from ddn.nets.agent import AgentQNetwork
from ddn.rollout import Collector

sys.path.insert(0, str(Path(__file__).parent))  # the fakes, here and (via sys.path) in workers

V1 = "fake_sc2:StarCraft2Env"
V2 = "fake_epymarl:GymmaLike"

pytestmark = pytest.mark.usefixtures("one_thread")


def _vec(target: str, n: int = 2, processes: bool = False, **kwargs) -> MultiAgentEnvVec:
    api = kwargs.pop("api", "auto")
    return make(
        "pymarl", num_envs=n, seed=3, factory=target, factory_kwargs=kwargs,
        processes=processes, has_win_condition=True, api=api,
    )  # fmt: skip


def _play(env: MultiAgentEnvVec, seed: int = 0) -> list:
    gen = torch.Generator().manual_seed(seed)
    out = env.reset()
    trace = [out]
    while not bool(out.done.all()):
        noise = torch.rand(out.avail.shape, generator=gen)
        out = env.step(noise.masked_fill(~out.avail, -1.0).argmax(-1))
        trace.append(out)
    return trace


@pytest.mark.parametrize(
    ("api", "processes"),
    [("auto", False), ("v2", False), pytest.param("auto", True, marks=pytest.mark.slow)],
)
def test_a_v2_env_plays_exactly_like_its_v1_twin(api, processes):
    """The same battle behind both APIs, same seeds and actions: identical outputs step
    by step, time-outs included (v2 says them with truncated=True, no info key)."""
    v1 = _vec(V1, episode_limit=5)
    v2 = _vec(V2, processes=processes, episode_limit=5, api=api)
    try:
        for _ in range(3):  # several episodes: resets too
            t1, t2 = _play(v1), _play(v2)
            assert len(t1) == len(t2)
            for a, b in zip(t1, t2, strict=True):
                for field in ("obs", "state", "avail", "reward", "terminated", "truncated", "won"):
                    assert torch.equal(getattr(a, field), getattr(b, field)), field
        assert bool(t2[-1].truncated.any()) or bool(t2[-1].terminated.any())
    finally:
        v1.close()
        v2.close()


def test_time_out_of_a_v2_env_is_truncated():
    env = _vec(V2, n=1, episode_limit=2, map_name="5m")
    try:
        last = _play(env)[-1]
        # 5 enemies with 3 health cannot all die in 2 steps of 5 attacks: a time-out.
        assert bool(last.truncated.all()) and not bool(last.terminated.any())
    finally:
        env.close()


def test_a_declared_api_that_does_not_match_stops_at_once():
    env = _vec(V2, api="v1")
    env.reset()
    with pytest.raises(EnvError, match=r"env.api=v1 expects 3 \(v1") as info:
        env.step(torch.ones(2, 3, dtype=torch.long))
    assert "fake_epymarl:GymmaLike" in str(info.value) and env.restarts == 0


def test_per_agent_rewards_are_refused_with_the_fix():
    env = _vec(V2, common_reward=False)
    env.reset()
    with pytest.raises(EnvError, match="common_reward=True"):
        env.step(torch.ones(2, 3, dtype=torch.long))


@pytest.mark.parametrize("processes", [False, pytest.param(True, marks=pytest.mark.slow)])
@pytest.mark.parametrize("where", ["step", "reset"])
def test_the_envs_own_error_stops_the_run_with_its_traceback(where, processes):
    env = _vec(V2, processes=processes, raise_in=where, raise_at=2)
    with pytest.raises(EnvError) as info:
        _play(env)
    msg = str(info.value)
    assert f"environment fake_epymarl:GymmaLike (copy 0) raised in {where}()" in msg
    assert f"KeyError: 'injected bug in {where}'" in msg
    assert "fake_epymarl.py" in msg and "Traceback" in msg  # the env's own traceback
    assert env.restarts == 0  # no restart was tried


def test_cli_prints_the_envs_error_and_stops(tmp_path, capsys):
    argv = [
        "train", "--env", "pymarl", "--algo", "vdn", "--out", str(tmp_path / "run"),
        "--no-progress", "--set", f"env.factory={V2}", "--set", "env.processes=false",
        "--set", "env.factory_kwargs={raise_in: step, raise_at: 2}", "--set", "device=cpu",
        "--set", "batch_size_run=2", "--set", "test_nepisode=2", "--t-max", "100",
    ]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("ddn: error: environment fake_epymarl:GymmaLike (copy 0) raised in")
    assert "KeyError: 'injected bug in step'" in err


def test_game_failures_are_told_from_env_bugs():
    assert is_game_failure(ConnectionError("lost"))
    assert is_game_failure(TimeoutError())
    try:
        try:
            raise BrokenPipeError("socket")
        except OSError as exc:
            raise RuntimeError("wrapped by the env") from exc
    except RuntimeError as wrapped:
        assert is_game_failure(wrapped)  # the cause is a lost connection
    assert not is_game_failure(KeyError("bug"))
    assert not is_game_failure(FileNotFoundError("no such map"))
    game_error = type("ProtocolError", (Exception,), {"__module__": "pysc2.lib.protocol"})
    assert is_game_failure(game_error("SC2 went away"))


def test_a_dropped_test_episode_is_left_out_of_the_test_means(tmp_path):
    """Two copies; copy 0 loses its game at step 2 (dropped). The means are copy 1's
    episode alone, as played by the same greedy network on a twin env without the
    failure (same seeds: copy 1 is untouched by copy 0's restart)."""
    broken = _vec(V1, episode_limit=6, game_error_at=2, marker=str(tmp_path / "m"))
    twin = _vec(V1, episode_limit=6)
    torch.manual_seed(0)
    spec = broken.spec
    net = AgentQNetwork(spec.obs_dim, spec.n_agents, spec.n_actions, 8, True, True)
    try:
        metrics = evaluate(net, broken, 2)
        assert broken.dropped_episodes == 1 and broken.dropped.tolist() == [True, False]
        _, stats = Collector(twin, torch.device("cpu")).run(net, epsilon=0.0)
        assert metrics["test/return_mean"] == pytest.approx(float(stats.returns[1]))
        assert metrics["test/ep_length_mean"] == float(stats.lengths[1])
        assert metrics["test/win_rate"] == float(stats.won[1])
        assert metrics["test/return_std"] == 0.0  # one episode
    finally:
        broken.close()
        twin.close()


def test_the_failed_step_is_not_counted_in_t_env(tmp_path):
    from ddn.config import resolve
    from ddn.experiment import Experiment

    overrides = [
        f"env.factory={V1}", "env.processes=false",
        f"env.factory_kwargs={{game_error_at: 3, marker: '{tmp_path / 'm'}'}}",
        "batch_size_run=2", "batch_size=2", "buffer_size=8", "test_nepisode=2",
        "rnn_hidden_dim=8", "mixing_embed_dim=4", "hypernet_embed=8", "device=cpu",
    ]  # fmt: skip
    exp = Experiment(resolve("pymarl", "vdn", overrides=overrides), tmp_path / "run", False)
    exp.iteration()
    assert exp.env.dropped_episodes == 1 and exp.buffer.size == 1
    kept = int(exp.buffer.sample(1).filled.sum())
    # The dropped episode played 2 real steps; its 3rd failed and is not counted.
    assert exp.t_env == kept + 2
