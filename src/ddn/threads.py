"""The thread policy: how many CPU threads torch uses in a ddn process.

torch starts one thread per core. A ddn process takes one, unless told otherwise
(``--threads N``, the config key ``threads``, or ``OMP_NUM_THREADS``), because that is
what measured fastest (``docs/benchmarks.md``, "Threads"): for the small tensors of
most MARL updates a second thread gains nothing, and as soon as another process wants
the core, extra threads cost a great deal. Two ``ddn train`` runs of the matrix game
side by side on 2 cores ran 3.2x slower with torch's default than with one thread each,
and on the shared development machine a second thread made updates of every measured
size, up to the paper's Predator-Prey batch, several times slower. ``ddn sweep`` pins
every run's count through the same config key.

The choice never depends on what else runs at the moment: torch's parallel reductions
split their work by thread count, so the count can change a run's results in the last
bits, and the same run on the same machine must give the same results.
"""

from __future__ import annotations

import os

import torch

EXPLICIT = "set by --threads or the threads key"


def auto_threads() -> tuple[int, str]:
    """The policy's choice and the reason to print: ``OMP_NUM_THREADS`` where the user
    set it (as torch itself would), else 1."""
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        return int(omp), "auto: OMP_NUM_THREADS"
    return 1, "auto"


def apply_threads(requested: int | None) -> tuple[int, str]:
    """Set torch's thread count: ``requested`` if given, else the policy's choice.
    Returns (threads, reason) for the run's header."""
    threads, reason = (requested, EXPLICIT) if requested is not None else auto_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads, reason
