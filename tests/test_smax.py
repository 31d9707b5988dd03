"""SMAX through ddn vs raw JaxMARL, step by step, plus the protocol's edge cases.

Everything but the missing-extra test needs the ``smax`` extra (jaxmarl). JIT
compilation costs seconds per (map, episode limit, batch size), so the tests share a
few configurations: 3m with B = 6 for the behaviour, a reset per map for the shapes.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

import ddn
from ddn.envs.smax import INSTALL_HINT
from ddn.envs.smax import env as smax_mod

HAS_JAXMARL = importlib.util.find_spec("jaxmarl") is not None
requires_jaxmarl = pytest.mark.skipif(not HAS_JAXMARL, reason=INSTALL_HINT)

B = 6


def focus_fire(avail: torch.Tensor) -> torch.Tensor:
    """Attack the lowest-numbered enemy in range, else walk east (action 1), else stop.

    Wins some 3m battles against the heuristic enemy, so wins and losses both occur.
    """
    n_actions = avail.shape[-1]
    idx = torch.arange(n_actions)
    attack = avail & (idx >= 5)
    first_enemy = torch.where(attack, n_actions - idx, 0).argmax(-1)
    east_or_stop = torch.where(avail[..., 1], 1, 4)
    return torch.where(attack.any(-1), first_enemy, east_or_stop)


def random_available(avail: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    scores = torch.rand(avail.shape, generator=gen).masked_fill(~avail, -1.0)
    return scores.argmax(-1)


# ------------------------------------------------------------------ missing extra
def test_missing_jaxmarl_gives_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Works without jaxmarl: its absence is simulated with ``None`` in sys.modules."""
    for name in ("jaxmarl", "jaxmarl.environments", "jaxmarl.environments.smax"):
        monkeypatch.setitem(sys.modules, name, None)
    # Bypass the per-configuration cache, which may already hold a built simulator.
    monkeypatch.setattr(smax_mod, "_build", smax_mod._build.__wrapped__)
    with pytest.raises(ImportError, match=r"pip install 'ddn\[smax\]' \(or pip install jaxmarl\)"):
        ddn.envs.make("smax", num_envs=2, map_name="3m")
    # Also a ValueError, so `ddn train` prints it as a one-line configuration error.
    with pytest.raises(ValueError, match="optional extra"):
        ddn.envs.make("smax", num_envs=2, map_name="3m")


@pytest.mark.slow
def test_import_ddn_does_not_import_jax() -> None:
    code = "import sys, ddn; assert 'smax' in ddn.envs.list_envs(); print('jax' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"


def test_unknown_map_lists_valid_maps() -> None:
    """Checked before jaxmarl is imported, so it holds with or without the extra."""
    with pytest.raises(ValueError, match=r"unknown SMAX map '3z'.*Valid maps: 3m, 8m"):
        ddn.envs.make("smax", num_envs=2, map_name="3z")
    with pytest.raises(ValueError, match="Did you mean '5m_vs_6m'"):
        ddn.envs.make("smax", num_envs=2, map_name="5m_vs_7m")
    with pytest.raises(ValueError, match="attack_mode"):
        ddn.envs.make("smax", num_envs=2, attack_mode="nearest")
    with pytest.raises(ValueError, match="episode_limit must be >= 1"):
        ddn.envs.make("smax", num_envs=2, episode_limit=0)
    with pytest.raises(ValueError, match="scale_features must be true or false"):
        ddn.envs.make("smax", num_envs=2, scale_features="yes")
    with pytest.raises(ValueError, match="shields must be true or false"):
        ddn.envs.make("smax", num_envs=2, map_name="3s_vs_5z", shields=1)


def test_map_list_matches_jaxmarl() -> None:
    if not HAS_JAXMARL:
        pytest.skip(INSTALL_HINT)
    from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO

    from ddn.envs.smax.units import UNITS_MAPS

    # JaxMARL's maps, then ddn's own (medivacs, the spine crawler: tests/test_smax_units.py).
    assert not set(UNITS_MAPS) & set(MAP_NAME_TO_SCENARIO)
    assert set(smax_mod.SMAX_MAPS) == set(MAP_NAME_TO_SCENARIO) | set(UNITS_MAPS)
    limits = {name: m.episode_limit for name, m in UNITS_MAPS.items()}
    assert limits == smax_mod.UNITS_MAP_EPISODE_LIMITS


# ------------------------------------------------------------------ vs raw jaxmarl
class RawSMAX:
    """Raw JaxMARL's HeuristicEnemySMAX, vmapped and jitted, without ddn in the loop.

    Built with ``max_steps = episode_limit - 1``: JaxMARL times out one step after its
    ``max_steps`` (ddn's ``DEFAULT_EPISODE_LIMIT`` explains). Uses ddn's documented key
    chain (per battle ``key, k = split(key)`` before the reset and before each step) and
    JaxMARL's no-auto-reset ``step_env``, so outputs must match ddn's for every battle
    that is still running.
    """

    def __init__(self, map_name: str, episode_limit: int, keys) -> None:
        import jax
        import jax.numpy as jnp
        from jaxmarl import make
        from jaxmarl.environments.smax import map_name_to_scenario

        self.jax, self.jnp = jax, jnp
        self.env = make(
            "HeuristicEnemySMAX",
            scenario=map_name_to_scenario(map_name),
            max_steps=episode_limit - 1,
        )
        self.agents = list(self.env.agents)
        self._split = jax.jit(jax.vmap(jax.random.split))
        self._reset = jax.jit(jax.vmap(self.env.reset))
        self._step = jax.jit(jax.vmap(self.env.step_env))
        self._avail = jax.jit(jax.vmap(self.env.get_avail_actions))
        self.key = keys
        obs, self.state = self._reset(self._next_key())
        self.obs = obs

    def _next_key(self):
        pair = self._split(self.key)
        self.key = pair[:, 0]
        return pair[:, 1]

    def step(self, actions: torch.Tensor):
        act = {
            a: self.jnp.asarray(actions[:, i].numpy().astype("int32"))
            for i, a in enumerate(self.agents)
        }
        self.obs, self.state, rewards, dones, _ = self._step(self._next_key(), self.state, act)
        return rewards, dones

    def tensors(self, scale_features: bool = True) -> dict[str, torch.Tensor]:
        avail = self._avail(self.state)
        obs = torch.stack([_torch(self.obs[a]) for a in self.agents], 1)
        state = _torch(self.obs["world_state"])
        if scale_features:
            obs, state = smac_ranges(self.env, self.state.state, obs, state)
        return {
            "obs": obs,
            "state": state,
            "avail": torch.stack([_torch(avail[a]) for a in self.agents], 1).bool(),
        }


def smac_ranges(env, units, obs: torch.Tensor, state: torch.Tensor):
    """ddn's documented ``scale_features`` transform, written out plainly: cooldowns
    floored at 0 (and divided by the unit's own cooldown in the state), positions in the
    state centred and divided by half the map, unit types divided by the largest type."""
    obs, state = obs.clone(), state.clone()
    n = units.unit_types.shape[1]
    other, own = len(env.unit_features), len(env.own_features)
    for k in range(n - 1):
        col = k * other + env.unit_features.index("weapon_cooldown")
        obs[..., col] = obs[..., col].clamp(min=0)
    col = (n - 1) * other + env.own_features.index("weapon_cooldown")
    obs[..., col] = obs[..., col].clamp(min=0)
    types = _torch(units.unit_types).long()
    alive = _torch(units.unit_alive)
    cooldowns = _torch(env.unit_type_weapon_cooldowns)
    for i in range(n):
        base = i * own
        for axis, size in ((1, env.map_width), (2, env.map_height)):
            centred = (state[:, base + axis] - size / 2) / (size / 2)
            state[:, base + axis] = torch.where(alive[:, i], centred, 0.0)
        state[:, base + 3] = (state[:, base + 3] / cooldowns[types[:, i]]).clamp(min=0)
    state[:, n * own + n :] /= env.unit_type_bits - 1
    return obs, state


def _torch(x) -> torch.Tensor:
    """A copy through numpy: independent of ddn's DLPack path under test."""
    return torch.from_numpy(np.array(x))


def _assert_same(out, raw: RawSMAX, rows: torch.Tensor, scale_features: bool = True) -> None:
    """Raw JaxMARL's arrays exactly, or up to float rounding after the documented scaling."""
    ref = raw.tensors(scale_features)
    for field in ("obs", "state", "avail"):
        got = getattr(out, field)[rows]
        want = ref[field][rows].to(got.dtype)
        if scale_features and field != "avail":
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6, msg=field)
        else:
            assert torch.equal(got, want), f"{field} differs from raw jaxmarl"


@requires_jaxmarl
@pytest.mark.parametrize(
    ("policy", "scale_features"), [("focus_fire", True), ("random", True), ("random", False)]
)
@pytest.mark.slow
def test_matches_raw_jaxmarl_step_by_step(policy: str, scale_features: bool) -> None:
    env = ddn.envs.make("smax", num_envs=B, seed=11, map_name="3m", scale_features=scale_features)
    out = env.reset()
    assert not bool(out.done.any()) and bool((out.reward == 0).all())
    raw = RawSMAX("3m", env.spec.episode_limit, env.reset_keys)
    everyone = torch.ones(B, dtype=torch.bool)
    _assert_same(out, raw, everyone, scale_features)
    gen = torch.Generator().manual_seed(5)
    saw_win = saw_loss = False
    for _ in range(env.spec.episode_limit):
        running = ~out.done
        actions = (
            focus_fire(out.avail) if policy == "focus_fire" else random_available(out.avail, gen)
        )
        prev = out
        out = env.step(actions)
        rewards, dones = raw.step(actions)
        raw_reward = _torch(rewards["ally_0"])
        raw_done = _torch(dones["__all__"])
        # Running battles: identical to raw jaxmarl, reward up to the documented scale.
        _assert_same(out, raw, running, scale_features)
        torch.testing.assert_close(
            out.reward[running], raw_reward[running] * smax_mod.DEFAULT_REWARD_SCALE
        )
        assert torch.equal(out.done[running], raw_done[running])
        assert not bool((out.terminated & out.truncated).any())
        # A win is the step whose raw reward carries the +1 bonus.
        ended = running & out.done
        assert torch.equal(out.won[ended], raw_reward[ended] >= 1.0)
        saw_win |= bool(out.won[ended].any())
        saw_loss |= bool((ended & ~out.won).any())
        # Finished battles stay frozen: same tensors, zero reward, flags kept.
        frozen = ~running
        for field in ("obs", "state", "avail", "terminated", "truncated", "won"):
            assert torch.equal(getattr(out, field)[frozen], getattr(prev, field)[frozen])
        assert bool((out.reward[frozen] == 0).all())
        if bool(out.done.all()):
            break
    assert bool(out.done.all())
    assert not bool((out.won & ~out.terminated).any())
    if policy == "focus_fire":
        assert saw_win and saw_loss, "focus fire on 3m should both win and lose some battles"


@requires_jaxmarl
@pytest.mark.slow
def test_time_out_is_truncation() -> None:
    limit = 4  # the armies start ~16 apart: nobody can die within 4 steps
    env = ddn.envs.make("smax", num_envs=B, seed=2, map_name="3m", episode_limit=limit)
    out = env.reset()
    raw = RawSMAX("3m", limit, env.reset_keys)
    assert env.spec.episode_limit == limit
    for t in range(limit):
        actions = torch.full((B, 3), 4, dtype=torch.long)  # stop
        out = env.step(actions)
        _, dones = raw.step(actions)
        raw_done = _torch(dones["__all__"])
        assert torch.equal(out.truncated, raw_done)
        assert bool(out.truncated.all()) == (t == limit - 1)
    assert not bool(out.terminated.any()) and not bool(out.won.any())
    # Frozen after the time-out: actions are ignored, even unavailable ones.
    again = env.step(torch.full((B, 3), 7, dtype=torch.long))
    assert torch.equal(again.obs, out.obs) and bool(again.truncated.all())
    assert bool((again.reward == 0).all())
    fresh = env.reset()
    assert not bool(fresh.done.any())


# ------------------------------------------------------------------ protocol
@requires_jaxmarl
@pytest.mark.slow
def test_seeding_and_generator_state_reproduce_episodes() -> None:
    def rollout(env, n: int = 8) -> list[torch.Tensor]:
        out = env.reset()
        seen = [out.obs.clone()]
        for _ in range(n):
            out = env.step(focus_fire(out.avail))
            seen += [out.obs.clone(), out.reward.clone()]
        return seen

    a = ddn.envs.make("smax", num_envs=B, seed=7, map_name="3m")
    b = ddn.envs.make("smax", num_envs=B, seed=7, map_name="3m")
    c = ddn.envs.make("smax", num_envs=B, seed=8, map_name="3m")
    first = rollout(a)
    assert all(torch.equal(x, y) for x, y in zip(first, rollout(b), strict=True))
    assert not torch.equal(first[0], rollout(c)[0])
    # Battles within one batch differ (one key per battle).
    assert not torch.equal(first[0][0], first[0][1])
    # Restoring the torch generator replays the next episode (what checkpoints rely on).
    state = a.generator.get_state()
    second = rollout(a)
    a.generator.set_state(state)
    assert all(torch.equal(x, y) for x, y in zip(second, rollout(a), strict=True))


@requires_jaxmarl
@pytest.mark.slow
def test_bad_actions_raise_one_clear_error() -> None:
    env = ddn.envs.make("smax", num_envs=B, seed=0, map_name="3m")
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.zeros(B, 3, dtype=torch.long))
    out = env.reset()
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(B, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="dtype"):
        env.step(torch.zeros(B, 3))
    with pytest.raises(ValueError, match="out of range"):
        env.step(torch.full((B, 3), 8, dtype=torch.long))
    # At t = 0 nobody is in range: attacking is unavailable.
    assert not bool(out.avail[..., 5:].any())
    with pytest.raises(ValueError, match="not available"):
        env.step(torch.full((B, 3), 5, dtype=torch.long))


@requires_jaxmarl
@pytest.mark.parametrize(
    ("map_name", "n_agents", "n_enemies"),
    [("2s3z", 5, 5), ("3s5z", 8, 8), ("5m_vs_6m", 5, 6), ("3s5z_vs_3s6z", 8, 9)],
)
@pytest.mark.slow
def test_shapes_per_map(map_name: str, n_agents: int, n_enemies: int) -> None:
    env = ddn.envs.make("smax", num_envs=2, seed=0, map_name=map_name)
    spec = env.spec
    # JaxMARL's unit-list observation: 13 features per other unit, 10 of its own; world
    # state: 10 features + team + type per unit; actions: 4 moves, stop, one per enemy.
    assert spec.n_agents == n_agents
    assert spec.obs_dim == 13 * (n_agents - 1) + 13 * n_enemies + 10
    assert spec.state_dim == 12 * (n_agents + n_enemies)
    assert spec.n_actions == 5 + n_enemies
    assert spec.episode_limit == 101 and spec.has_win_condition
    out = env.reset()
    assert out.obs.shape == (2, n_agents, spec.obs_dim) and out.obs.dtype == torch.float32
    assert out.state.shape == (2, spec.state_dim) and out.state.dtype == torch.float32
    assert out.avail.shape == (2, n_agents, spec.n_actions) and out.avail.dtype == torch.bool
    for flag in (out.terminated, out.truncated, out.won):
        assert flag.shape == (2,) and flag.dtype == torch.bool
    assert out.reward.shape == (2,) and out.reward.dtype == torch.float32


@requires_jaxmarl
@pytest.mark.slow
def test_outputs_share_memory_with_jax() -> None:
    """On the CPU the hand-over is zero-copy (DLPack), not a numpy round trip."""
    env = ddn.envs.make("smax", num_envs=B, seed=0, map_name="3m")
    out = env.reset()
    obs_jax = env._carry[2]
    assert out.obs.data_ptr() == obs_jax.unsafe_buffer_pointer()


@requires_jaxmarl
@pytest.mark.slow
def test_map_reaches_smax_through_config() -> None:
    from ddn import config as config_mod
    from ddn.experiment import make_env

    cfg = config_mod.resolve("smax", "qmix", map_name="5m_vs_6m")
    assert cfg.env.get("reward_scale") == smax_mod.DEFAULT_REWARD_SCALE
    env = make_env(cfg, 2, 0, torch.device("cpu"))
    assert env.spec.n_agents == 5 and env.spec.n_actions == 11


@pytest.mark.slow
@requires_jaxmarl
def test_privileged_obs_is_the_observation_without_the_sight_test() -> None:
    """privileged_obs=True adds each ally's observation with every living unit filled in
    wherever it is (offsets still divided by the observer's sight range, so beyond 1 out
    of sight); in sight it equals the observation, and it changes nothing else."""
    env = ddn.envs.make("smax", num_envs=4, seed=3, map_name="3m", privileged_obs=True)
    plain = ddn.envs.make("smax", num_envs=4, seed=3, map_name="3m")
    assert env.spec.privileged_obs_dim == env.spec.obs_dim and plain.spec.privileged_obs_dim == 0
    jenv = env.jaxmarl_env
    other_f = len(jenv.unit_features)
    n_units = (env.spec.obs_dim - len(jenv.own_features)) // other_f + 1  # allies + enemies
    gen = torch.Generator().manual_seed(0)
    out, out_plain = env.reset(), plain.reset()
    seen_far = 0
    for _ in range(12):
        assert out_plain.privileged_obs is None
        assert torch.equal(out.obs, out_plain.obs) and torch.equal(out.state, out_plain.state)
        priv, obs = out.privileged_obs.numpy(), out.obs.numpy()
        state = env.jax_state.state
        pos = np.asarray(state.unit_positions)  # [B, units, 2]
        alive = np.asarray(state.unit_alive)
        sight = np.asarray(jenv.unit_type_sight_ranges)[np.asarray(state.unit_types)]
        own = (n_units - 1) * other_f
        np.testing.assert_array_equal(priv[..., own:], obs[..., own:])
        for b in range(4):
            for i in range(env.spec.n_agents):
                for j in range(n_units - 1):
                    j_idx = j if j < i else j + 1
                    block = slice(j * other_f, (j + 1) * other_f)
                    if not (alive[b, i] and alive[b, j_idx]):
                        assert not priv[b, i, block].any()
                        continue
                    offset = (pos[b, j_idx] - pos[b, i]) / sight[b, i]
                    np.testing.assert_allclose(priv[b, i, block][1:3], offset, rtol=1e-5)
                    if np.linalg.norm(offset) < 1:  # in sight: the observation's block
                        np.testing.assert_array_equal(priv[b, i, block], obs[b, i, block])
                    else:
                        assert not obs[b, i, block].any()
                        seen_far += 1
        actions = random_available(out.avail, gen)
        out, out_plain = env.step(actions), plain.step(actions)
    assert seen_far > 0  # units out of sight were seen by the privileged observation


@pytest.mark.parametrize("bad", [-1, -0.5, "two", True, float("nan")])
def test_bad_sight_range_is_one_clear_error(bad, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before anything is built (jaxmarl or not), as one line naming the fix."""
    from ddn.cli import main

    with pytest.raises(ValueError, match=r"sight_range must be a number >= 0 \(or null"):
        ddn.envs.make("smax", num_envs=1, map_name="3m", sight_range=bad)
    code = main(["train", "--env", "smax", "--map", "3m", "--algo", "qmix", "--no-progress",
                 "--set", f"env.sight_range={bad}"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "sight_range must be a number >= 0" in err[0]


@pytest.mark.slow
@requires_jaxmarl
def test_sight_range_limits_only_the_allies_observation() -> None:
    """sight_range r: another unit's block in an ally's obs is filled iff both are alive
    and they are less than r apart (a plain computation from the unit positions), and
    then it is the block the default observation shows (offsets still divided by the
    unit type's own sight range); r = 0 leaves only the own block. The state, avail, the
    reward, the flags, the enemy's behaviour and the privileged observation are those of
    the default env, step after step under the same actions. (The default obs itself is
    checked against raw JaxMARL by test_matches_raw_jaxmarl_step_by_step.)"""
    kw = {"num_envs": 4, "seed": 3, "map_name": "3m"}  # the privileged test's, compiled once
    default = ddn.envs.make("smax", privileged_obs=True, **kw)
    blind = ddn.envs.make("smax", sight_range=0, **kw)
    near = ddn.envs.make("smax", sight_range=3.0, privileged_obs=True, **kw)
    jenv = default.jaxmarl_env
    other_f = len(jenv.unit_features)
    n_units = (default.spec.obs_dim - len(jenv.own_features)) // other_f + 1
    own = (n_units - 1) * other_f
    gen = torch.Generator().manual_seed(0)
    outs = [env.reset() for env in (default, blind, near)]
    shown = hidden = 0
    for _ in range(12):
        ref, out0, out3 = outs
        for out in (out0, out3):
            for field in ("state", "avail", "reward", "terminated", "truncated", "won"):
                assert torch.equal(getattr(out, field), getattr(ref, field)), field
            assert torch.equal(out.obs[..., own:], ref.obs[..., own:])  # own block
        assert torch.equal(out3.privileged_obs, ref.privileged_obs)
        assert not out0.obs[..., :own].any()
        obs, ref_obs, priv = out3.obs.numpy(), ref.obs.numpy(), ref.privileged_obs.numpy()
        state = near.jax_state.state
        pos = np.asarray(state.unit_positions, dtype=np.float64)  # [B, units, 2]
        alive = np.asarray(state.unit_alive)
        for b in range(4):
            for i in range(near.spec.n_agents):
                for j in range(n_units - 1):
                    j_idx = j if j < i else j + 1
                    block = slice(j * other_f, (j + 1) * other_f)
                    dist = np.linalg.norm(pos[b, j_idx] - pos[b, i])
                    if alive[b, i] and alive[b, j_idx] and dist < 3.0:
                        np.testing.assert_array_equal(obs[b, i, block], ref_obs[b, i, block])
                        np.testing.assert_array_equal(obs[b, i, block], priv[b, i, block])
                        shown += 1
                    else:
                        assert not obs[b, i, block].any()
                        hidden += int(bool(ref_obs[b, i, block].any()))  # seen at sight 9
        actions = random_available(ref.avail, gen)
        outs = [env.step(actions) for env in (default, blind, near)]
    assert shown > 0 and hidden > 0  # both sides of the range occurred


# ------------------------------------------------------------------ XLA settings
# One source for both builds: run here (the tests' build, most optimisation passes off:
# conftest.py) and in a fresh process at XLA's full optimisation, what users run.
_ROLLOUT = """
import torch, ddn

def rollout(steps=40):
    env = ddn.envs.make("smax", num_envs=6, seed=0, map_name="3m")
    out = env.reset()
    seen = {"obs": [out.obs], "reward": [], "done": [], "won": []}
    idx = torch.arange(out.avail.shape[-1])
    for _ in range(steps):
        attack = out.avail & (idx >= 5)  # the lowest-numbered enemy in range, else stop
        first = torch.where(attack, out.avail.shape[-1] - idx, 0).argmax(-1)
        out = env.step(torch.where(attack.any(-1), first, 4))
        for key in ("obs", "reward", "done", "won"):
            seen[key].append(getattr(out, key).clone())
    return {key: torch.stack(values) for key, values in seen.items()}
"""


@requires_jaxmarl
@pytest.mark.slow
def test_optimised_build_matches_the_tests_build(tmp_path, monkeypatch) -> None:
    """The suite compiles SMAX with most of XLA's passes off (conftest.py, for speed); a
    fresh process at full optimisation must play the same battles. That process also
    checks ddn's persistent compilation cache: DDN_JAX_CACHE's folder fills up."""
    scope: dict = {}
    exec(_ROLLOUT, scope)
    mine = scope["rollout"]()
    assert bool(mine["done"].any()), "the rollout should finish some battles"
    cache = tmp_path / "cache"
    code = _ROLLOUT + f"\ntorch.save(rollout(), {str(tmp_path / 'full.pt')!r})\n"
    monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "0")
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("DDN_JAX_CACHE", str(cache))
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    full = torch.load(tmp_path / "full.pt")
    for key in ("done", "won"):
        assert torch.equal(full[key], mine[key]), key
    for key in ("obs", "reward"):
        torch.testing.assert_close(full[key], mine[key], rtol=1e-5, atol=1e-5)
    assert any(cache.iterdir()), "the optimised process left no compiled step in the cache"


def test_compilation_cache_folder_follows_the_variables(tmp_path, monkeypatch) -> None:
    from ddn.envs.smax.compiled import compilation_cache_dir

    for var in ("JAX_COMPILATION_CACHE_DIR", "DDN_JAX_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert compilation_cache_dir() == tmp_path / ".cache" / "ddn" / "jax"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compilation_cache_dir() == tmp_path / "xdg" / "ddn" / "jax"
    monkeypatch.setenv("DDN_JAX_CACHE", str(tmp_path / "mine"))
    assert compilation_cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("DDN_JAX_CACHE", "off")
    assert compilation_cache_dir() is None
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))  # JAX's own wins
    assert compilation_cache_dir() == tmp_path / "jax"


def test_compilation_cache_is_set_once_and_skipped_where_it_cannot_be_written(
    tmp_path, monkeypatch
) -> None:
    from ddn.envs.smax import compiled

    class FakeConfig:
        jax_compilation_cache_dir = None

        def update(self, name: str, value: str) -> None:
            setattr(self, name, value)

    class FakeJax:
        config = FakeConfig()

    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("DDN_JAX_CACHE", str(blocker / "jax"))  # under a file: mkdir fails
    compiled._use_compilation_cache(FakeJax)
    assert FakeJax.config.jax_compilation_cache_dir is None
    monkeypatch.setenv("DDN_JAX_CACHE", str(tmp_path / "jax"))
    compiled._use_compilation_cache(FakeJax)
    assert FakeJax.config.jax_compilation_cache_dir == str(tmp_path / "jax")
    assert (tmp_path / "jax").is_dir()
    monkeypatch.setenv("DDN_JAX_CACHE", str(tmp_path / "other"))
    compiled._use_compilation_cache(FakeJax)  # set already: left alone
    assert FakeJax.config.jax_compilation_cache_dir == str(tmp_path / "jax")
