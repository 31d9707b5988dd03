"""SMAX throughput: ddn's ``smax`` environment against raw JaxMARL, same batch, same run.

An *env step* is one joint step of one battle, so one batched step of ``B`` battles
counts ``B`` env steps. Both sides run the same simulator (JaxMARL's
``HeuristicEnemySMAX``, ``vmap`` over ``B`` battles under one ``jit``) and play the same
kind of actions: uniformly random *available* actions drawn with torch
(``torch.rand`` masked with the availability mask, ``argmax``). Timed per batched step:

* raw JaxMARL: actions handed to JAX (one int32 array), one jitted call of
  ``vmap(env.step)`` (JaxMARL's auto-resetting step, which computes a fresh reset for
  every battle every step) or of ``vmap(env.step_env)`` (no reset: exactly the simulator
  work ddn's step does), returning the stacked availability masks too, and the masks
  handed to torch (DLPack);
* ddn: ``env.step(actions)`` (action validation, the jitted step that freezes finished
  battles, DLPack hand-over of obs/state/avail/reward/flags) and ``env.reset()`` once
  every battle has finished.

All sides compute all ``B`` battles every call, so ddn / raw ``step_env`` measures what
ddn's wrapping costs and ddn / raw ``step`` compares with JaxMARL as its loops use it.
ddn also reports *useful* steps/s, counting only battles still running (frozen ones
wait for the batch's last battle, as an episode collector's do).
Each side is warmed up (compiled), then measured ``--repeats`` times interleaved with
the others, each for at least ``--seconds``; the best is reported (noise only slows).

Usage::

    python benchmarks/smax_throughput.py [--maps 3m 3s5z] [--sizes 64 256]
                                         [--seconds 3] [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

import ddn
from ddn.envs.smax import DEFAULT_EPISODE_LIMIT, compiled


def random_available(avail: torch.Tensor) -> torch.Tensor:
    return torch.rand(avail.shape).masked_fill(~avail, -1.0).argmax(-1)


def raw_runner(
    map_name: str, num_envs: int, seed: int, auto_reset: bool = True
) -> Callable[[float], tuple[int, int]]:
    """A timed loop over raw JaxMARL.

    ``auto_reset``: JaxMARL's ``step`` (as its own training loops use it), which also
    computes a fresh reset for every battle every step; otherwise its ``step_env``, the
    exact simulator work ddn's step does (finished battles keep being simulated).
    """
    import jax
    import jax.numpy as jnp

    compiled._import_jax()  # imports jaxmarl with its banner silenced
    from jaxmarl import make
    from jaxmarl.environments.smax import map_name_to_scenario

    env = make(
        "HeuristicEnemySMAX",
        scenario=map_name_to_scenario(map_name),
        max_steps=DEFAULT_EPISODE_LIMIT - 1,
    )
    agents = list(env.agents)

    def stacked_avail(state: Any) -> Any:
        avail = env.get_avail_actions(state)
        return jnp.stack([avail[a] for a in agents]).astype(jnp.bool_)

    def reset(key: Any) -> tuple[Any, Any]:
        _, state = env.reset(key)
        return state, stacked_avail(state)

    def step(key: Any, state: Any, actions: Any) -> tuple[Any, ...]:
        act = {a: actions[i] for i, a in enumerate(agents)}
        if auto_reset:
            obs, state, rewards, dones, _ = env.step(key, state, act)
        else:
            obs, state, rewards, dones, _ = env.step_env(key, state, act)
        return obs, state, rewards, dones, stacked_avail(state)

    v_reset = jax.jit(jax.vmap(reset))
    v_step = jax.jit(jax.vmap(step))
    split = jax.jit(lambda k: jax.random.split(k, num_envs + 1))
    keys = split(jax.random.PRNGKey(seed))
    state, avail = v_reset(keys[1:])
    carry = {"key": keys[0], "state": state, "avail": torch.from_dlpack(avail)}

    def run(seconds: float) -> tuple[int, int]:
        steps, t0 = 0, time.perf_counter()
        while True:
            actions = random_available(carry["avail"])
            jax_actions = jnp.asarray(actions.to(torch.int32).numpy())
            keys = split(carry["key"])
            _, state, _, _, avail = v_step(keys[1:], carry["state"], jax_actions)
            carry.update(key=keys[0], state=state, avail=torch.from_dlpack(avail))
            steps += num_envs
            if steps % (16 * num_envs) == 0 and time.perf_counter() - t0 >= seconds:
                break
        return steps, steps

    return run


def ddn_runner(map_name: str, num_envs: int, seed: int) -> Callable[[float], tuple[int, int]]:
    env = ddn.envs.make("smax", num_envs=num_envs, seed=seed, map_name=map_name)
    state = {"out": env.reset()}

    def run(seconds: float) -> tuple[int, int]:
        steps = useful = 0
        t0 = time.perf_counter()
        out = state["out"]
        while True:
            if bool(out.done.all()):
                out = env.reset()
            running = int((~out.done).sum())
            out = env.step(random_available(out.avail))
            steps += num_envs
            useful += running
            if steps % (16 * num_envs) == 0 and time.perf_counter() - t0 >= seconds:
                break
        state["out"] = out
        return steps, useful

    return run


def measure(run: Callable[[float], tuple[int, int]], seconds: float) -> tuple[float, float]:
    t0 = time.perf_counter()
    steps, useful = run(seconds)
    dt = time.perf_counter() - t0
    return steps / dt, useful / dt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", nargs="+", default=["3m", "3s5z"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import jax

    print(
        f"# python {platform.python_version()}, torch {torch.__version__}, jax {jax.__version__}"
        f" ({jax.default_backend()}), torch threads {torch.get_num_threads()}"
    )
    print(
        "| map | B | raw `step` steps/s | raw `step_env` steps/s | ddn steps/s "
        "| ddn / raw `step` | ddn / raw `step_env` | ddn useful steps/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for map_name in args.maps:
        for b in args.sizes:
            sides = {
                "raw_step": raw_runner(map_name, b, args.seed, auto_reset=True),
                "raw_step_env": raw_runner(map_name, b, args.seed, auto_reset=False),
                "ddn": ddn_runner(map_name, b, args.seed),
            }
            for run in sides.values():
                run(0.5)  # compile and warm up
            best = dict.fromkeys([*sides, "ddn_useful"], 0.0)
            runs: list[dict[str, float]] = []
            for _ in range(args.repeats):  # interleaved, so drifts hit every side alike
                this: dict[str, float] = {}
                for name, run in sides.items():
                    this[name], useful = measure(run, args.seconds)
                    if name == "ddn":
                        this["ddn_useful"] = useful
                runs.append(this)
                best = {k: max(v, this[k]) for k, v in best.items()}
            ratio_step = best["ddn"] / best["raw_step"]
            ratio_env = best["ddn"] / best["raw_step_env"]
            print(
                f"| {map_name} | {b} | {best['raw_step']:,.0f} | {best['raw_step_env']:,.0f} "
                f"| {best['ddn']:,.0f} | {ratio_step:.3f} | {ratio_env:.3f} "
                f"| {best['ddn_useful']:,.0f} |",
                flush=True,
            )
            rows.append({"map": map_name, "num_envs": b, **best, "runs": runs})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"argv": sys.argv[1:], "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
