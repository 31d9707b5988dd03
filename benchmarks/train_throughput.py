"""End-to-end training throughput of a value-decomposition learner on Predator-Prey.

Runs ddn's own training loop (``Experiment``) on the paper's Predator-Prey (8 predators,
8 prey, 10x10, p = 2) at PyMARL2's QMIX settings: 8 environments, batch 128 episodes,
buffer 1000, Adam lr 1e-3, TD(lambda) 0.5, epsilon annealed over 100k steps, one
update per 8 collected episodes. The buffer is first filled to the batch size (no
updates happen before that, so those steps would flatter the figure); then
``--iterations`` collect+update iterations are timed.

Also reported, in the same run: the time of one learner update on 128 episodes of
200 steps, the FLOPs of that update (counted from the layer shapes), the machine's
fp32 matmul rate, the update's achieved fraction of it, and peak memory.

    python benchmarks/train_throughput.py [--algos qmix ddn_qmix] [--iterations 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ddn.config import resolve
from ddn.experiment import Experiment

PYMARL2 = [
    "batch_size_run=8",
    "batch_size=128",
    "buffer_size=1000",
    "optimizer=adam",
    "lr=0.001",
    "td_lambda=0.5",
    "epsilon_anneal_time=100000",
    "test_nepisode=0",
    "save_model=false",
    "log_interval=100000000",
    "device=cpu",
]


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    """fp32 GFLOP/s of a square matmul: the machine's best case."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def update_flops(cfg, spec, episodes: int, steps: int) -> float:
    """FLOPs of one QMIX-family update, from layer shapes (multiply-add = 2 FLOPs).

    Agent net per agent-step: fc1 (in x H), GRU (2 x H x 3H), head (H x A), run
    forward for the online and target networks and backward (~2x forward) for the
    online one. Mixer per (episode, step): the hypernetworks' matmuls (QMIX layout),
    forward for online and target, backward for online.
    """
    n, a, h = spec.n_agents, spec.n_actions, cfg.rnn_hidden_dim
    d_in = spec.obs_dim + a + n
    agent_macs = d_in * h + 2 * h * 3 * h + h * a
    agent_steps = episodes * (steps + 1) * n
    agent = 2 * agent_macs * agent_steps * (1 + 2 + 1)  # online fwd + bwd (2x) + target fwd
    s, e, he = spec.state_dim, cfg.mixing_embed_dim, cfg.hypernet_embed
    mixer_macs = (s * he + he * n * e) + s * e + (s * he + he * e) + (s * e + e)
    mixer = 2 * mixer_macs * episodes * steps * (1 + 2 + 1)
    return agent + mixer


def measure(algo: str, iterations: int, tmp: Path) -> dict:
    """End-to-end env steps/s of ``algo``'s training loop, and its experiment."""
    cfg = resolve("predator_prey", algo, overrides=[*PYMARL2, "t_max=100000000"])
    exp = Experiment(cfg, tmp / algo, progress=False)
    # Fill the buffer up to one batch (no updates happen before), then time the
    # steady state: Experiment.iteration() is exactly the training loop's body.
    while not exp.buffer.can_sample(cfg.batch_size):
        exp.iteration()
    exp.iteration()  # first update (allocations, warm-up)
    t_env0, t0, cpu0 = exp.t_env, time.perf_counter(), time.process_time()
    for _ in range(iterations):
        exp.iteration()
    steps_per_s = (exp.t_env - t_env0) / (time.perf_counter() - t0)
    # Per second of this process's CPU time: what other processes on a shared machine
    # take from it does not count (compare_commits.py reports both).
    steps_per_cpu_s = (exp.t_env - t_env0) / (time.process_time() - cpu0)
    t2 = time.perf_counter()
    for _ in range(3):
        exp.collector.run(exp.learner.acting_network, 0.5)
    rollout_s = (time.perf_counter() - t2) / 3
    return {
        "algo": algo,
        "exp": exp,
        "env_steps_per_s": steps_per_s,
        "env_steps_per_cpu_s": steps_per_cpu_s,
        "rollout_s_8x200": rollout_s,
    }


def time_updates(results: list[dict], rounds: int) -> None:
    """Median time of one update of each algorithm on the same batch, the algorithms
    interleaved round by round so that machine noise hits them alike."""
    batch = results[0]["exp"].buffer.sample(results[0]["exp"].cfg.batch_size)
    times: dict[str, list[float]] = {r["algo"]: [] for r in results}
    for _ in range(rounds):
        for r in results:
            exp = r["exp"]
            t0 = time.perf_counter()
            exp.learner.train(batch, exp.episode)
            times[r["algo"]].append(time.perf_counter() - t0)
    for r in results:
        r["update_s"] = statistics.median(times[r["algo"]])
        r["batch"] = batch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algos", nargs="+", default=["qmix", "ddn_qmix"],
                   help="the first is the baseline of the update-time ratios")  # fmt: skip
    p.add_argument("--iterations", type=int, default=10, help="timed loop iterations")
    p.add_argument("--rounds", type=int, default=5, help="interleaved update timings")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for algo in args.algos:
            results.append(measure(algo, args.iterations, Path(tmp)))
        time_updates(results, args.rounds)
    base = results[0]
    batch = base["batch"]
    flops = update_flops(base["exp"].cfg, base["exp"].spec, batch.num_episodes, batch.max_t)
    rate = matmul_rate()
    floor_s = flops / (rate * 1e9)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"Predator-Prey (paper preset) at PyMARL2 settings; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor()}")  # fmt: skip
    print(f"{'algo':<12}{'env steps/s':>14}{'update (s)':>12}{'x baseline':>12}"
          f"{'rollout 8x200 (s)':>20}")  # fmt: skip
    for r in results:
        ratio = r["update_s"] / base["update_s"]
        print(f"{r['algo']:<12}{r['env_steps_per_s']:>14,.0f}{r['update_s']:>12.3f}"
              f"{ratio:>12.2f}{r['rollout_s_8x200']:>20.3f}")  # fmt: skip
    print(f"One update = {batch.num_episodes} episodes x {batch.max_t} steps, the same batch "
          f"for every algorithm; median of {args.rounds} interleaved rounds.")  # fmt: skip
    bound = 1600 / (base["rollout_s_8x200"] + floor_s)
    print(f"{base['algo']} update: {flops / 1e9:.1f} GFLOP (layer shapes); fp32 matmul rate "
          f"{rate:.0f} GFLOP/s -> floor {floor_s:.3f} s; achieved "
          f"{100 * floor_s / base['update_s']:.0f}% of it. With the update at that floor the "
          f"loop would run {bound:,.0f} env steps/s.")  # fmt: skip
    print(f"Peak RSS of this process: {peak_mb:,.0f} MB")
    if args.json:
        keep = ("algo", "env_steps_per_s", "env_steps_per_cpu_s", "update_s", "rollout_s_8x200")
        args.json.write_text(json.dumps({
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "results": [{k: r[k] for k in keep} for r in results],
            "baseline_update_gflop": flops / 1e9, "matmul_gflop_s": rate,
            "baseline_update_floor_s": floor_s, "peak_rss_mb": peak_mb,
        }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
