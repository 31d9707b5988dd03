"""The thread policy: how many CPU threads torch uses in a ddn process.

torch starts one thread per core. For the small tensors of most MARL updates a second
thread gains nothing (an op splits its work across threads only above ~32k elements)
and costs a lot as soon as another process wants the core: two `ddn train` runs of the
matrix game side by side on 2 cores each ran 3.2x slower than with one thread each.
So a run takes one thread unless its update is large enough to gain from more, in
which case it takes every core it may use (``docs/benchmarks.md`` has the
measurements behind the threshold). ``--threads N`` (the config key ``threads``)
overrides the choice; ``ddn sweep`` pins every run's count through the same key.

The choice depends on the configuration and the machine only, never on what else runs
at the moment: torch's parallel reductions split their work by thread count, so the
count can change a run's results in the last bits, and the same run on the same machine
must give the same results.
"""

from __future__ import annotations

import os

import torch

# Agent-network rows of one update (episodes x steps x agents) from which a second
# thread paid off on the development machine (docs/benchmarks.md, "Threads").
PARALLEL_ROWS = 16_384


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. under taskset or a
    container's cpuset), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_threads(update_rows: int | None) -> tuple[int, str]:
    """The policy's choice for an update of ``update_rows`` agent-network rows (None: no
    updates, e.g. evaluation), with the reason to print."""
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        return int(omp), "auto: OMP_NUM_THREADS"
    if update_rows is None or update_rows < PARALLEL_ROWS:
        return 1, "auto: small update"
    return usable_cpus(), "auto: large update"


def update_rows(batch_size: int, episode_limit: int, n_agents: int) -> int:
    """Rows the agent network processes per update: every step of every sampled episode,
    per agent (the GRU runs ``episode_limit + 1`` steps)."""
    return batch_size * (episode_limit + 1) * n_agents


def apply_threads(requested: int | None, update_rows: int | None) -> tuple[int, str]:
    """Set torch's thread count: ``requested`` if given, else the policy's choice.
    Returns (threads, reason) for the run's header."""
    if requested is not None:
        threads, reason = requested, "set by --threads or the threads key"
    else:
        threads, reason = auto_threads(update_rows)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads, reason
