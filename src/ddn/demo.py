"""``ddn demo``: the main job of a fresh clone (``make demo``).

Trains DDN (on QMIX, the paper's headline) on a small Predator-Prey for a couple of
minutes on 2 CPU cores, then writes a learning-curve PNG of the teacher (GGN) and the
student (LPN), an animated GIF of the student acting from local observations only, and
a summary.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ddn.algorithms import get_algorithm
from ddn.analysis.plot import plot_learning_curve
from ddn.analysis.render import render_predator_prey
from ddn.config import resolve
from ddn.experiment import Experiment
from ddn.run import load_run, policy_fn
from ddn.run_folder import RunFolder

DEMO_ALGO = "ddn"
DEMO_T_MAX = 300_000
# 4 predators, 2 prey on a 6x6 grid, no miscapture penalty: small enough to learn in
# minutes on a laptop (best return 20: both prey captured).
DEMO_OVERRIDES = [
    "env.n_agents=4", "env.n_prey=2", "env.height=6", "env.width=6", "env.episode_limit=50",
    "env.punishment=0.0", "batch_size_run=16", "batch_size=32", "buffer_size=1000",
    "optimizer=adam", "lr=0.001", "epsilon_anneal_time=30000", "test_interval=10000",
    "test_nepisode=32", "log_interval=10000", "save_model_interval=50000",
]  # fmt: skip


def run_demo(out: Path, t_max: int | None = None) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = resolve("predator_prey", DEMO_ALGO, overrides=DEMO_OVERRIDES, t_max=t_max or DEMO_T_MAX)
    run_dir = out / "run"
    folder = RunFolder(run_dir)
    if folder.checkpoints() and not folder.summary_path.is_file():
        exp = Experiment.resume(run_dir)  # an interrupted demo picks up where it stopped
    else:
        exp = Experiment(cfg, run_dir, overwrite=True)  # a finished demo is made again
    print(
        f"Training {DEMO_ALGO} on Predator-Prey ({', '.join(DEMO_OVERRIDES[:6])}) "
        f"for {cfg.t_max:,} steps; run folder {run_dir}"
    )
    started = time.perf_counter()
    summary = exp.run()
    minutes = (time.perf_counter() - started) / 60
    curve = plot_learning_curve(
        run_dir,
        out / "learning_curve.png",
        metrics=("test/return_mean", "test_student/return_mean", "train/return_mean"),
        title="DDN on a small Predator-Prey: teacher (GGN) and student (LPN)",
    )
    which = "student" if get_algorithm(cfg.algo).has_student else "teacher"
    policy = policy_fn(load_run(run_dir).policy(which))
    gif = render_predator_prey(out / "episode.gif", policy=policy, seed=1, **cfg.env)
    result = {
        "algorithm": DEMO_ALGO,
        "t_env": summary["t_env"],
        "test/return_mean (GGN)": summary.get("test/return_mean"),
        "test_student/return_mean (LPN)": summary.get("test_student/return_mean"),
        "best_possible_return": cfg.env["capture_reward"] * cfg.env["n_prey"],
        "train_minutes": round(minutes, 2),
        "learning_curve": str(curve),
        "episode_gif": str(gif["path"]),
        "run_folder": str(run_dir),
    }
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    print("\nDemo summary")
    for key, value in result.items():
        print(f"  {key:<32} {value}")
    return result
