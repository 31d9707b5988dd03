"""Shared test fixtures, and the test session's JAX settings."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import torch

# Most of the suite's SMAX time is XLA compiling each map's step (10-20 s a map and batch
# size at full optimisation). The tests compare ddn against raw JaxMARL and against rules,
# not XLA's speed, so they compile without most optimisation passes: about half the
# compile time. test_smax.py's test_optimised_build_matches_the_tests_build checks that the
# optimised build (what users run) gives the same battles.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

_CACHE_VAR = "JAX_COMPILATION_CACHE_DIR"


def pytest_configure(config: pytest.Config) -> None:
    # One compilation cache for the session, shared by pytest-xdist's workers and the
    # tests' subprocesses (they inherit the variable), never the user's ~/.cache.
    if _CACHE_VAR not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
        os.environ[_CACHE_VAR] = tempfile.mkdtemp(prefix="ddn-tests-jax-")
        config._ddn_jax_cache = os.environ[_CACHE_VAR]  # type: ignore[attr-defined]
    if "PYTEST_XDIST_WORKER" in os.environ:
        # Workers share the cores: a second torch thread per worker only adds contention.
        torch.set_num_threads(1)


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = getattr(config, "_ddn_jax_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module: its networks are tiny, and a second thread only
    adds contention on a 2-core machine (up to ~8x slower when the other core is busy)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
