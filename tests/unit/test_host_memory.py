"""Page faults and glibc's heap for the CPU traffic model (collect/host_memory.py)."""

import platform

import pytest

from memadvise.collect.host_memory import page_fault_cost_s

linux = pytest.mark.skipif(platform.system() != "Linux", reason="getrusage minor faults: Linux")


@linux
def test_the_cost_of_a_fault_is_measured():
    # faults were counted and priced (how much: benchmarks/probe_checks.py; a timing)
    cost = page_fault_cost_s(mib=4, repeats=3)
    assert isinstance(cost, float) and cost >= 0


@linux
@pytest.mark.slow  # a fresh Python process per heap state
def test_pinning_the_heap_stops_fresh_pages_for_reused_sizes():
    import subprocess
    import sys

    # in a fresh process: once pinned, a 2 MiB op output allocated again and again reuses
    # the heap's pages after a few rounds (the free chunks settle: up to ten rounds here);
    # unpinned, with glibc's thresholds fixed at their defaults, each allocation is a
    # fresh mapping: ~512 faults
    code = (
        "import torch\n"
        "from memadvise.collect.host_memory import minor_faults, pin_heap\n"
        "import sys\n"
        "if sys.argv[1] == 'pin': assert pin_heap()\n"
        "x = torch.randn(512, 1024)\n"
        "for _ in range(20): y = x * 2; del y\n"
        "f0 = minor_faults()\n"
        "for _ in range(10): y = x * 2; del y\n"
        "print(minor_faults() - f0)\n"
    )
    env = {"MALLOC_TRIM_THRESHOLD_": str(128 * 1024), "PATH": "/usr/bin:/bin"}  # glibc's defaults, fixed
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's mallopt")
    out = {m: int(subprocess.run([sys.executable, "-c", code, m], capture_output=True, text=True, check=True,
                                 env=env).stdout) for m in ("pin", "nopin")}
    assert out["nopin"] >= 10 * 400, out
    assert out["pin"] <= 2 * 520, out  # at most a region or two grown once, then reused
