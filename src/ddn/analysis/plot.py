"""Learning curves from run folders' ``metrics.jsonl``."""

from __future__ import annotations

from pathlib import Path

from ddn.run_folder import RunFolder


def metric_series(run_dir: Path, metric: str) -> tuple[list[int], list[float]]:
    """(t_env, value) of every event of ``run_dir`` that carries ``metric``."""
    xs, ys = [], []
    for event in RunFolder(run_dir).metrics():
        value = event.get(metric)
        if value is not None:
            xs.append(int(event["t_env"]))
            ys.append(float(value))
    return xs, ys


def plot_learning_curve(
    run_dir: Path,
    out: Path,
    metrics: tuple[str, ...] = ("test/return_mean", "train/return_mean"),
    title: str | None = None,
) -> Path:
    """Write a PNG of ``metrics`` against environment steps for one run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for metric in metrics:
        xs, ys = metric_series(run_dir, metric)
        if xs:
            ax.plot(xs, ys, marker="o" if metric.startswith("test") else None, ms=3, label=metric)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title or Path(run_dir).name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
