"""ddn.allocator: large freed CPU tensors are reused without new page faults."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import resource, sys, torch
    from ddn.allocator import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    def update():  # like a learner update: several large tensors alive at once, then freed
        xs = [torch.ones(16 * 2**20) for _ in range(4)]  # 4 x 64 MB, above the mmap threshold
        return sum(float(x[0]) for x in xs)
    for _ in range(3):
        update()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    update()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
@pytest.mark.slow
def test_freed_large_tensor_is_reused_without_page_faults():
    pages = 4 * 64 * 2**20 // 4096
    # Default glibc: a block this large is a fresh mmap each time, so every page faults.
    assert _faults("default") > pages // 2
    # Kept: a later "update" reuses the earlier ones' (already mapped) heap pages.
    assert _faults("keep") < pages // 50


def test_opt_out_by_environment(monkeypatch):
    import ddn.allocator as allocator

    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setenv("DDN_KEEP_FREED_MEMORY", "0")
    assert allocator.keep_freed_memory() is False
